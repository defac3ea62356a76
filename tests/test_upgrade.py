"""An index written by the previous release is used by this one as it is (issue 17).

The previous release's code is checked out of this repository's history into a temporary
folder and run with this venv (its dependencies are this one's); it indexes corpus/ and
answers. Then this version answers from the same data dir, without re-indexing, and
says the same; `rag ingest` over it finds nothing to redo and `rag doctor` is content.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import CORPUS, REPO, run_rag

# The last release that landed (stop 24). Moved forward when an index format changes on
# purpose, together with the migration it then needs.
PREVIOUS_RELEASE = "ab38bf6f30e1f20d5ce293572f306e911a67e071"
QUESTIONS = ("莱芜区上半年实际使用外资多少？", "飞地项目的税收怎么分成？", "写字楼租金补贴多少？")


def test_an_index_of_the_previous_release_is_used_as_it_is(tmp_path, e5_dir):
    old = tmp_path / "previous"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(old)], check=True)
    checkout = subprocess.run(
        ["git", "-C", str(old), "checkout", "-q", PREVIOUS_RELEASE], capture_output=True, text=True
    )
    assert checkout.returncode == 0, f"a clone with history is needed: {checkout.stderr}"
    env = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDING_MODEL": str(e5_dir)}

    def previous(*args: str, code: str = "from rag.cli import main; main()"):
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env={**os.environ, **env, "PYTHONPATH": str(old)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = previous(code="import rag.cli; print(rag.cli.__file__)")
    assert where.stdout.strip() == str(old / "rag" / "cli.py")  # the old code runs
    indexed = previous("ingest", str(CORPUS))
    assert indexed.returncode == 0, indexed.stderr
    before = [json.loads(previous("ask", "--json", q).stdout) for q in QUESTIONS]

    after = []
    for q in QUESTIONS:  # the answers of that release: without the reading model it added
        done = run_rag("ask", "--json", q, env={**env, "RAG_READER": "none"})
        assert done.returncode == 0, done.stderr
        after.append(json.loads(done.stdout))
    for old_answer, new_answer in zip(before, after, strict=True):
        assert new_answer["generation"] == old_answer["generation"]  # not rebuilt
        assert new_answer["answer"] == old_answer["answer"]
        assert [c["chunk_id"] for c in new_answer["citations"]] == [
            c["chunk_id"] for c in old_answer["citations"]
        ]
    assert "3227万美元" in after[0]["answer"]
    read = json.loads(run_rag("ask", "--json", QUESTIONS[0], env=env).stdout)
    assert read["answer"].startswith("3227万美元") and read["generation"] == before[0]["generation"]

    again = run_rag("ingest", str(CORPUS), env=env)
    assert again.returncode == 0 and "0 added, 0 updated" in again.stdout + again.stderr
    doctor = run_rag("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout
