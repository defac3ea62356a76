"""Ingest against a real Chroma and the real e5 model (loaded once per session)."""

import numpy as np
import pytest

from rag.embed import LazyEmbeddings
from rag.index import Cancelled, Filters, Index, IndexBusy, Writer, commit_due
from rag.ingest import doc_entry, ingest, make_chunks
from rag.load import iter_sources
from rag.retrieve import HybridRetriever
from rag.store import NEVER, visible
from rag.types import Document

SIZE, OVERLAP = 300, 60


def run(index, *roots, **kw):
    return ingest(list(roots), index, SIZE, OVERLAP, **kw)


def chroma_state(index):
    """{chunk_id: (text, doc_id)} of the rows a reader of the current generation sees."""
    rows = index.store.iter_rows(visible(index.manifest.generation))
    return {m["chunk_id"]: (text, m["doc_id"]) for _, text, m in rows}


def assert_consistent(index):
    """Chroma, the manifest and the lexical index describe the same chunks, and nothing
    is left in Chroma but them and the rows that died with the last generation."""
    gen = index.manifest.generation
    state = chroma_state(index)
    expected = {cid for e in index.manifest.docs().values() for cid in e.chunk_ids()}
    assert set(state) == expected
    assert sorted(index.lexical.chunk_ids) == sorted(state)
    every = index.store.collection.get(include=["metadatas"])["metadatas"]
    assert all(m["gen"] <= gen and m["dead"] in (gen, NEVER) for m in every)
    assert len(every) - len(state) == sum(m["dead"] == gen for m in every)


def test_corpus_is_indexed_with_stable_ids_and_seed_metadata(index, corpus_copy):
    report = run(index, corpus_copy)
    assert report.failed == 0 and report.added == 7 and report.chunks_written > 0
    assert_consistent(index)
    assert (index.manifest.model, index.manifest.embed_backend) == (
        index.embeddings.model,
        "openvino",
    )
    state = chroma_state(index)
    assert all(cid == f"{doc}#{cid.rsplit('#', 1)[1]}" for cid, (_, doc) in state.items())
    holding = [cid for cid, (text, _) in state.items() if "泰钢不锈钢终端市场产业园一期" in text]
    assert len(holding) == 1
    seed = index.snapshot().get(holding)[0].chunk
    assert seed.doc_id == "news/2022-08-04-laiwu-signing.txt"
    assert {k: seed.meta[k] for k in ("title", "date", "author", "source")} == {
        "title": "莱芜区集中签约23个“双招双引”项目",
        "date": "2022-08-04",
        "author": "赵国陆",
        "source": "大众日报",
    }


def test_unchanged_corpus_embeds_nothing_and_does_not_load_the_model(tmp_path, e5_dir, corpus_copy):
    first = Index(tmp_path / "data", "c", LazyEmbeddings(str(e5_dir), tmp_path))
    run(first, corpus_copy)
    fresh_model = LazyEmbeddings(str(e5_dir), tmp_path)
    second = run(Index(tmp_path / "data", "c", fresh_model), corpus_copy)
    assert (second.added, second.updated, second.unchanged, second.chunks_written) == (0, 0, 7, 0)
    assert not fresh_model.loaded


def test_editing_a_file_replaces_exactly_its_chunks_and_deleting_removes_them(index, corpus_copy):
    run(index, corpus_copy)
    before = index.store.collection.get(include=["embeddings", "documents"])
    vectors_before = dict(zip(before["ids"], before["embeddings"], strict=True))
    target = corpus_copy / "policies" / "building-economy.md"
    target.write_text(target.read_text("utf-8").replace("50%", "55%"), "utf-8")

    report = run(index, corpus_copy)
    own = index.manifest.get("policies/building-economy.md").chunks
    assert (report.updated, report.unchanged, report.chunks_written) == (1, 6, own)
    assert_consistent(index)
    after = index.store.collection.get(include=["embeddings", "documents"])
    for rid, vec in zip(after["ids"], after["embeddings"], strict=True):
        if not rid.startswith("policies/building-economy.md#"):
            np.testing.assert_array_equal(vec, vectors_before[rid])  # not embedded again
    assert any("55%" in text for text, _ in chroma_state(index).values())
    assert not any(
        "50%" in text and doc == "policies/building-economy.md"
        for text, doc in chroma_state(index).values()
    )

    target.unlink()
    report = run(index, corpus_copy)
    assert (report.removed, report.chunks_removed) == (1, own)
    assert index.manifest.get("policies/building-economy.md") is None
    assert not [c for c in chroma_state(index) if c.startswith("policies/building-economy.md")]
    assert_consistent(index)


def test_exact_duplicate_documents_are_indexed_once(index, tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    text = "明川区外资奖励办法\n第一条 外资到账超过500万美元的，按到资额2%给予奖励。"
    (folder / "a.txt").write_text(text, "utf-8")
    (folder / "b.txt").write_text(text, "utf-8")
    report = run(index, folder)
    assert (report.added, report.duplicates) == (1, 1)
    assert list(index.manifest.docs()) == ["a.txt"]


@pytest.fixture
def two_roots(index, corpus_copy, tmp_path):
    """The corpus and, from another folder, one more document: what a rebuild of the
    corpus alone drops."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "extra.txt").write_text("第一条 另一目录的文件：补贴三十三万元。", "utf-8")
    run(index, corpus_copy)
    run(index, other)


def test_rebuild_reads_its_folder_again_and_leaves_other_folders_alone(
    index, corpus_copy, two_roots
):
    report = run(index, corpus_copy, rebuild=True)
    assert (report.added, report.unchanged, report.removed) == (7, 0, 0)
    assert "extra.txt" in index.manifest.docs()  # another folder's: not this run's to drop
    assert_consistent(index)


def test_rebuild_drops_only_files_gone_from_its_own_folder(index, corpus_copy, two_roots):
    (corpus_copy / "policies" / "building-economy.md").unlink()
    report = run(index, corpus_copy, rebuild=True)
    assert report.removed == 1
    assert "policies/building-economy.md" not in index.manifest.docs()
    assert "extra.txt" in index.manifest.docs()
    assert_consistent(index)


@pytest.fixture
def two_kbs(index, tmp_path):
    """Two folders in two knowledge bases, as an office keeps public and internal papers."""
    roots = {}
    for kb, name, text in (
        ("公开", "kbpub", "第一条 公开文件：楼宇入驻奖励二十万元。"),
        ("内部资料", "kbsec", "第一条 内部文件：人才公寓补贴三万元。"),
    ):
        root = tmp_path / name
        root.mkdir()
        (root / f"{name}.txt").write_text(text, "utf-8")
        run(index, root, kb=kb)
        roots[kb] = root
    return roots


def test_rebuild_of_one_knowledge_base_keeps_the_others(index, two_kbs):
    report = run(index, two_kbs["公开"], kb="公开", rebuild=True)
    assert (report.added, report.removed) == (1, 0)
    assert {e.kb for e in index.manifest.docs().values()} == {"公开", "内部资料"}
    assert_consistent(index)


def test_a_corrected_title_survives_reingest_and_rebuild(index, corpus_copy):
    run(index, corpus_copy)
    doc_id = "policies/building-economy.md"
    with index.writer() as writer:
        writer.edit(doc_id, {"title": "人工更正的标题"})
        writer.commit()
    target = corpus_copy / "policies" / "building-economy.md"
    target.write_text(target.read_text("utf-8").replace("50%", "55%"), "utf-8")
    run(index, corpus_copy)  # the file changed: read again
    assert index.manifest.get(doc_id).title == "人工更正的标题"
    run(index, corpus_copy, rebuild=True)
    assert index.manifest.get(doc_id).title == "人工更正的标题"
    assert index.snapshot().document_rows(doc_id)[0].text.startswith("人工更正的标题")


def test_mirror_removes_the_knowledge_bases_other_documents_once_confirmed(
    index, two_kbs, tmp_path
):
    other = tmp_path / "more"
    other.mkdir()
    (other / "more.txt").write_text("第一条 另一目录：厂房租金补贴五成。", "utf-8")
    run(index, other, kb="公开")
    asked = []
    with pytest.raises(Cancelled):  # refused: nothing changes
        run(index, two_kbs["公开"], kb="公开", mirror=True, confirm=lambda d: asked.append(d))
    assert asked == [["more.txt"]]
    assert len(index.manifest.docs()) == 3
    report = run(index, two_kbs["公开"], kb="公开", mirror=True, confirm=lambda d: True)
    assert report.removed == 1
    assert set(index.manifest.docs()) == {"kbpub.txt", "kbsec.txt"}  # 内部资料 untouched
    assert_consistent(index)


def test_an_interrupted_rebuild_leaves_the_index_whole(index, corpus_copy, two_roots):
    """Part rebuilt, part as it was, nothing dropped before the rebuild's last publish."""
    before = dict(index.manifest.docs())
    start = index.manifest.generation
    with pytest.raises(Cancelled):  # stopped once the rebuild has published once
        run(
            index,
            corpus_copy,
            rebuild=True,
            commit_chunks=1,
            cancelled=lambda: index.manifest.generation > start,
        )
    after = index.manifest.docs()
    assert after.keys() == before.keys()
    assert any(after[d].gen > before[d].gen for d in after)  # some were rebuilt and published
    assert_consistent(index)
    hits = HybridRetriever(index=index).search("莱芜区上半年实际使用外资多少？", 3)
    assert hits and hits[0].chunk.doc_id == "news/2022-08-04-laiwu-signing.txt"


def test_what_a_killed_writer_staged_is_removed_and_what_it_published_stays(index, corpus_copy):
    """A kill leaves rows of an unpublished generation and rows marked dead by it."""
    run(index, corpus_copy)
    published = chroma_state(index)
    vectors_kept = index.sentences.count()
    gen = index.manifest.generation
    doc = index.manifest.get("policies/enclave-economy.md")
    killed = Writer(index)  # as if its process died: neither commit nor abort runs
    killed.put(doc, [], progress=None)
    index.store.mark_dead(doc.record_ids(), gen + 1)
    from rag.ingest import make_chunks
    from rag.types import Document

    staged = make_chunks(Document("new.txt", "新文件\n第一条 新条款。", {}), 300, 60)
    killed.put(doc.__class__("new.txt", "default", "x", "h", "t", 0, 0), staged)
    killed._flush()
    assert index.manifest.generation == gen and chroma_state(index) == published
    assert index.manifest.staging  # what tells the next writer to look for leftovers
    assert index.sentences.count() > vectors_kept  # the staged chunk's, kept before its row

    reopened = Index(index.data_dir, "test", index.embeddings)
    report = run(reopened, corpus_copy)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 7)
    assert chroma_state(reopened) == published
    assert reopened.sentences.count() == vectors_kept
    assert_consistent(reopened)
    assert not reopened.manifest.staging  # a clean run: the next one skips the scan


def test_a_second_writer_is_refused(index):
    second = Index(index.data_dir, "test", index.embeddings)
    with index.writer(), pytest.raises(IndexBusy, match="another process"), second.writer():
        pass


def test_a_document_edited_into_a_copy_of_another_loses_its_old_chunks(index, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("甲办法\n第一条 首年租金补贴50%。", "utf-8")
    (folder / "b.txt").write_text("乙办法\n第一条 飞地项目奖励60%。", "utf-8")
    run(index, folder)
    (folder / "b.txt").write_text((folder / "a.txt").read_text("utf-8"), "utf-8")
    report = run(index, folder)
    assert report.duplicates == 1 and list(index.manifest.docs()) == ["a.txt"]
    assert_consistent(index)
    assert not any("60%" in text for text, _ in chroma_state(index).values())


def test_a_moved_corpus_folder_is_taken_over_without_embedding(tmp_path, e5_dir, corpus_copy):
    index = Index(tmp_path / "data", "c", LazyEmbeddings(str(e5_dir), tmp_path))
    run(index, corpus_copy)
    moved = corpus_copy.rename(tmp_path / "moved")
    fresh_model = LazyEmbeddings(str(e5_dir), tmp_path)
    report = run(Index(tmp_path / "data", "c", fresh_model), moved)
    assert (report.unchanged, report.failed, report.removed) == (7, 0, 0)
    assert not fresh_model.loaded
    assert {
        e.origin for e in Index(tmp_path / "data", "c", fresh_model).manifest.docs().values()
    } == {str(moved.resolve())}


def test_an_index_refuses_a_different_embedding_model(index, corpus_copy, tmp_path):
    run(index, corpus_copy)
    with pytest.raises(RuntimeError, match="was built with the embedding model"):
        Index(index.data_dir, "test", LazyEmbeddings("/elsewhere/multilingual-e5-small", tmp_path))


def test_a_document_bigger_than_one_chroma_write_is_written_edited_and_removed_in_batches(
    index, tmp_path, monkeypatch
):
    """Chroma takes at most `max_batch` rows a write (5,461 here): every write path splits."""
    from rag.store import Store

    monkeypatch.setattr(Store, "max_batch", property(lambda self: 7))
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "big.txt").write_text(
        "大文件\n" + "".join(f"第{n}条 企业引进第{n}类项目给予{n}万元奖励。\n" for n in range(400)),
        "utf-8",
    )
    run(index, folder)
    chunks = index.manifest.get("big.txt").chunks
    assert chunks > 3 * 7
    assert_consistent(index)
    with index.writer() as writer:
        writer.edit("big.txt", {"title": "大文件（改）"})
    assert {
        m["title"]
        for m in index.store.collection.get(include=["metadatas"])["metadatas"]
        if m["dead"] == NEVER
    } == {"大文件（改）"}
    assert_consistent(index)
    (folder / "big.txt").unlink()
    assert run(index, folder).chunks_removed == chunks
    assert_consistent(index)
    assert chroma_state(index) == {}


def test_dense_search_returns_what_chromas_own_filter_returns_while_a_writer_stages_rows(
    index, corpus_copy
):
    """Dense search reads unfiltered rows and keeps what the generation's lexical index
    says is visible; rows a running writer has staged, and filters, must not leak."""
    run(index, corpus_copy)
    snapshot = index.snapshot()
    seed = "news/2022-08-04-laiwu-signing.txt"
    question = "莱芜区上半年实际使用外资多少？"
    vector = np.asarray(index.embeddings.embed_query(question), np.float32)
    cases = [Filters(), Filters(source="大众日报"), Filters(doc_type="policy")]

    def exact(filters, k):
        return [s.record_id for s in index.store.query(vector, k, snapshot.where(filters))]

    with index.writer() as writer:  # stage the seed's new text: rows of the next generation
        source = next(s for s in iter_sources(corpus_copy) if getattr(s, "doc_id", "") == seed)
        doc = source.load()
        changed = Document(doc.doc_id, doc.text.replace("3227万美元", "9999万美元"), doc.meta)
        writer.put(doc_entry(changed, "default", seed, "x", ""), make_chunks(changed, 300, 60))
        writer._flush()
        staged = [m for m in index.store.collection.get(include=["metadatas"])["metadatas"]
                  if m["gen"] == writer.gen]  # fmt: skip
        assert staged  # the writer's rows are in Chroma, next to the published ones
        for filters in cases:
            for k in (3, 10, 40):
                got = [s.record_id for s in snapshot.dense_search(vector, k, filters)]
                assert got == exact(filters, k), (filters, k)
        writer.abort()


def test_commits_are_spaced_by_their_cost_so_a_long_run_stays_linear():
    """A commit rewrites the whole lexical index: on a big index the next one waits ten
    times as long as the last took, whatever the chunk count says."""
    # A small index: the chunk count or the minute decides.
    assert commit_due(2000, since=5.0, last_cost=0.1, chunks=2000, seconds=60.0)
    assert not commit_due(1999, since=5.0, last_cost=0.1, chunks=2000, seconds=60.0)
    assert commit_due(10, since=60.0, last_cost=0.1, chunks=2000, seconds=60.0)
    assert not commit_due(0, since=600.0, last_cost=0.1, chunks=2000, seconds=60.0)
    # A big one: the last commit took 20 s, so 2,000 chunks 30 s later wait …
    assert not commit_due(2000, since=30.0, last_cost=20.0, chunks=2000, seconds=60.0)
    assert not commit_due(9000, since=199.0, last_cost=20.0, chunks=2000, seconds=60.0)
    # … until ten times that has passed.
    assert commit_due(9000, since=200.0, last_cost=20.0, chunks=2000, seconds=60.0)


def test_a_document_staged_twice_in_one_generation_is_its_last_version(index):
    """A writer may be handed one document twice before it commits: still queued (both
    versions would fall in one embedding batch and write one record id twice) or already
    written. The last version is what readers see, and the earlier one's rows and sentence
    vectors go."""
    first = Document("twice.txt", "第一条 首版条款：补贴七十七万元。" * 12, {"title": "试行办法"})
    second = Document("twice.txt", "第一条 二版条款：补贴八十八万元。", {"title": "试行办法"})
    third = Document("twice.txt", "第一条 三版条款：补贴九十九万元。", {"title": "试行办法"})

    def stage(writer, doc):
        writer.put(doc_entry(doc, "default", "o", doc.content_hash, ""), make_chunks(doc, 60, 0))

    with index.writer() as writer:
        stage(writer, first)
        stage(writer, second)  # the first is still queued
        writer._flush()
        stage(writer, third)  # the second is written
        writer.commit()
    rows = index.store.collection.get(include=["documents", "metadatas"])
    assert len(rows["ids"]) == index.manifest.get("twice.txt").chunks == 1
    assert "九十九万元" in rows["documents"][0]
    assert index.sentences.count() == 1  # the first two versions' went with their rows
    snapshot = index.snapshot()
    assert [c for c in snapshot.lexical.row if c.startswith("twice.txt#")] == ["twice.txt#0"]
    assert "九十九万元" in snapshot.document_text("twice.txt")


def test_a_manifest_an_older_version_wrote_gains_the_corrections_column(tmp_path):
    """Data dirs outlive versions: a manifest without `corrected` is read as it was, and
    a correction made now is kept in it."""
    import sqlite3

    from rag.manifest import Manifest, edited

    path = tmp_path / "manifest.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE docs (doc_id TEXT PRIMARY KEY, kb TEXT NOT NULL, origin TEXT NOT NULL,"
            " source_hash TEXT NOT NULL, text_hash TEXT NOT NULL, chunks INTEGER NOT NULL,"
            " gen INTEGER NOT NULL, title TEXT NOT NULL DEFAULT '', date TEXT NOT NULL DEFAULT '',"
            " source TEXT NOT NULL DEFAULT '', doc_type TEXT NOT NULL DEFAULT '',"
            " original TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL DEFAULT '')"
        )
        db.execute(
            "INSERT INTO docs VALUES ('a.md','default','o','s','t',1,1,'旧标题','','','','','')"
        )
    manifest = Manifest(path)
    entry = manifest.get("a.md")
    assert (entry.title, entry.corrected, entry.corrections()) == ("旧标题", "", {})
    fixed = edited(entry, {"title": "新标题"}, 1)
    fixed = edited(fixed, {"date": "2024-05-06"}, 1)
    assert fixed.corrections() == {"title": "新标题", "date": "2024-05-06"}
    manifest.publish(1, [fixed], [])
    assert Manifest(path).get("a.md").corrections() == fixed.corrections()


def test_a_renamed_file_or_folder_is_indexed_under_its_new_name_in_one_run(index, corpus_copy):
    """Its text was under the old id, which this run removes: it is no duplicate of that."""
    run(index, corpus_copy)
    (corpus_copy / "news").rename(corpus_copy / "新闻")
    (corpus_copy / "新闻" / "2022-08-04-laiwu-signing.txt").rename(
        corpus_copy / "新闻" / "莱芜签约.txt"
    )
    report = run(index, corpus_copy)
    assert report.duplicates == 0 and report.removed == report.added > 0
    docs = index.manifest.docs()
    assert "新闻/莱芜签约.txt" in docs and not any(d.startswith("news/") for d in docs)
    hits = HybridRetriever(index=index).search("莱芜区上半年实际使用外资多少？", 3)
    assert hits[0].chunk.doc_id == "新闻/莱芜签约.txt"
