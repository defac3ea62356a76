"""`rag ingest` as a user runs it: the installed console script in a subprocess."""

import json
import os
import signal
import subprocess
import time

from rag.chain import open_index
from rag.config import Settings
from rag.store import visible
from tests.conftest import RAG, run_rag


def test_ingest_builds_the_index_from_the_corpus_with_the_bundled_model(corpus_copy):
    first = run_rag("ingest", str(corpus_copy), "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {k: report[k] for k in ("added", "updated", "unchanged", "removed", "failed")} == {
        "added": 7,
        "updated": 0,
        "unchanged": 0,
        "removed": 0,
        "failed": 0,
    }
    assert report["chunks_written"] > 0 and report["seconds"] > 0

    second = run_rag("ingest", str(corpus_copy), "--json")
    again = json.loads(second.stdout)
    assert (again["unchanged"], again["chunks_written"]) == (7, 0)


def test_bad_files_are_named_with_a_reason_and_the_run_goes_on(tmp_path, e5_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ok.txt").write_text("明川区楼宇经济办法\n第一条 首年租金补贴50%。", "utf-8")
    (folder / "fake.txt").write_bytes(b"\x00\x01\x02" * 100)
    (folder / "notes.xyz").write_text("?", "utf-8")
    result = run_rag("ingest", str(folder), env={"RAG_EMBEDDING_MODEL": str(e5_dir)})
    assert result.returncode == 0, result.stderr
    assert "fake.txt: binary content, not text" in result.stderr
    assert "notes.xyz: unsupported format '.xyz'" in result.stderr
    assert "1 added" in result.stdout and "2 failed" in result.stdout
    assert "Traceback" not in result.stderr


def test_nothing_readable_exits_non_zero_with_one_line_reason(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    result = run_rag("ingest", str(tmp_path / "empty.txt"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: nothing could be read")
    assert "Traceback" not in result.stderr


def test_bad_configuration_is_a_clear_error(tmp_path):
    result = run_rag("ingest", env={"RAG_CHUNK_SIZE": "many"})
    assert result.returncode == 2
    assert "RAG_CHUNK_SIZE" in result.stderr and "Traceback" not in result.stderr


def test_killed_ingest_keeps_what_it_published_and_the_next_run_repairs_the_rest(tmp_path, e5_dir):
    """SIGKILL part-way through, run again: no missing, duplicate or half-written chunks,
    and the manifest, Chroma and the lexical index agree."""
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(700):
        (folder / f"doc{n:04d}.txt").write_text(
            f"第{n}号通知\n第一条 对第{n}号园区新引进项目给予{n + 10}万元奖励。"
            f"第二条 本通知自2024年{n % 12 + 1}月1日起施行，有效期{n % 5 + 1}年。",
            "utf-8",
        )
    # Publish every 64 chunks, so that a kill lands between two generations.
    env = {**os.environ, "RAG_EMBEDDING_MODEL": str(e5_dir), "RAG_COMMIT_CHUNKS": "64"}
    proc = subprocess.Popen(
        [RAG, "ingest", str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    settings = Settings(embedding_model=str(e5_dir))
    manifest = open_index(settings).manifest
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if 0 < manifest.totals()[0] < 700:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    published = manifest.totals()[0]
    assert 0 < published < 700

    result = run_rag("ingest", str(folder), "--json", env={"RAG_EMBEDDING_MODEL": str(e5_dir)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unchanged"] >= published  # what was published was not embedded again
    assert report["added"] + report["unchanged"] == 700 and report["failed"] == 0

    index = open_index(settings)
    rows = index.store.iter_rows(visible(index.manifest.generation))
    chunk_ids = [meta["chunk_id"] for _, _, meta in rows]
    assert len(chunk_ids) == len(set(chunk_ids))
    expected = {cid for e in index.manifest.docs().values() for cid in e.chunk_ids()}
    assert set(chunk_ids) == expected
    assert {cid.split("#")[0] for cid in chunk_ids} == {f"doc{n:04d}.txt" for n in range(700)}
    assert sorted(index.lexical.chunk_ids) == sorted(chunk_ids)


def test_mirror_needs_a_confirmation_and_says_what_it_removes(tmp_path, e5_dir):
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir)}
    folders = {}
    for name in ("a", "b"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / f"{name}.txt").write_text(f"第一条 {name}区厂房补贴十万元。", "utf-8")
        assert run_rag("ingest", str(folders[name]), env=env).returncode == 0
    unconfirmed = run_rag(
        "ingest", str(folders["a"]), "--mirror", env=env, stdin=subprocess.DEVNULL
    )
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert run_rag("ingest", str(folders["a"]), "--yes", env=env).returncode == 2
    mirrored = run_rag("ingest", str(folders["a"]), "--mirror", "--yes", "--json", env=env)
    assert mirrored.returncode == 0, mirrored.stderr
    assert "b.txt" in mirrored.stderr and json.loads(mirrored.stdout)["removed"] == 1
    index = open_index(Settings(embedding_model=str(e5_dir)))
    assert list(index.manifest.docs()) == ["a.txt"]
