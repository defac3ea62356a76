import gzip
import json

import pytest

from rag.load import LoadFailure, Source, decode_text, iter_sources, split_front_matter

POLICY = "明川区楼宇经济扶持办法\n第一条 对新入驻企业给予首年租金50%补贴。\n第二条 本办法自2024年1月1日起施行。"


def loaded(root):
    """{doc_id: Document} and [LoadFailure] for everything under root."""
    docs, failures = {}, []
    for item in iter_sources(root):
        if isinstance(item, LoadFailure):
            failures.append(item)
            continue
        assert isinstance(item, Source)
        try:
            docs[item.doc_id] = item.load()
        except ValueError as err:
            failures.append(LoadFailure(item.location, str(err)))
    return docs, failures


def test_gbk_and_utf8_bom_files_decode_to_the_same_text(tmp_path):
    (tmp_path / "gbk.txt").write_bytes(POLICY.encode("gbk"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + POLICY.encode("utf-8"))
    docs, failures = loaded(tmp_path)
    assert failures == []
    assert docs["gbk.txt"].text == docs["bom.txt"].text == POLICY
    assert docs["gbk.txt"].meta["title"] == "明川区楼宇经济扶持办法"


def test_big5_is_not_mistaken_for_gbk():
    text = "本報訊 台北市政府今日公布投資獎勵辦法，對新設企業給予補貼。"
    assert decode_text(text.encode("big5")) == text


def test_short_gbk_text_decodes_as_gbk():
    assert decode_text("外资".encode("gbk")) == "外资"


def test_gb18030_only_characters_decode():
    text = "䶮字与𠀀字的政策文件"
    assert decode_text(text.encode("gb18030")) == text


def test_binary_empty_and_unknown_files_are_reported_by_name_and_skipped(tmp_path):
    (tmp_path / "good.md").write_text(POLICY, "utf-8")
    (tmp_path / "image.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\u3000\n", "utf-8")
    (tmp_path / "table.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / ".hidden.txt").write_text(POLICY, "utf-8")
    docs, failures = loaded(tmp_path)
    assert list(docs) == ["good.md"]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in failures}
    assert reasons == {
        "image.txt": "binary content, not text",
        "empty.txt": "empty file",
        "blank.md": "no text after cleaning",
        "table.xlsx": "unsupported format '.xlsx'",
    }


def test_front_matter_gives_metadata_and_is_not_indexed():
    text, meta = split_front_matter(
        "---\ntitle: 示例政策\ndate: 2024-03-15\nsample_notice: 示例文本，地区为虚构\n---\n正文。"
    )
    assert text == "正文。"
    assert meta == {"title": "示例政策", "date": "2024-03-15", "notice": "示例文本，地区为虚构"}


def test_shipped_policies_say_they_are_samples_in_first_line_and_metadata(tmp_path):
    from tests.conftest import CORPUS

    docs, failures = loaded(CORPUS)
    assert failures == []
    policies = [d for d in docs.values() if d.doc_id.startswith("policies/")]
    assert len(policies) >= 5
    for doc in policies:
        assert "示例" in doc.text.split("\n", 1)[0] and "虚构" in doc.text.split("\n", 1)[0]
        assert "虚构" in doc.meta["notice"] and doc.meta["doc_type"] == "policy"
        assert doc.meta["date"] and doc.meta["source"]


def test_html_keeps_text_drops_scripts_and_reads_meta(tmp_path):
    (tmp_path / "a.html").write_text(
        "<html><head><title>外资奖励办法</title><meta name='date' content='2025年1月10日'>"
        "<script>var x = '不应出现';</script></head>"
        "<body><h1>外资奖励办法</h1><p>第一条 到资超过500万美元的，给予奖励。</p></body></html>",
        "utf-8",
    )
    docs, _ = loaded(tmp_path)
    doc = docs["a.html"]
    assert "不应出现" not in doc.text and "500万美元" in doc.text
    assert doc.meta["title"] == "外资奖励办法" and doc.meta["date"] == "2025-01-10"


def test_docx_paragraphs_and_tables_are_read(tmp_path):
    import docx

    d = docx.Document()
    d.core_properties.title = "人才保障办法"
    d.add_paragraph("第一条 为引进高层次人才，制定本办法。")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "安家补贴"
    table.rows[0].cells[1].text = "最高100万元"
    d.save(tmp_path / "talent.docx")
    docs, _ = loaded(tmp_path)
    assert "高层次人才" in docs["talent.docx"].text
    assert "安家补贴 最高100万元" in docs["talent.docx"].text
    assert docs["talent.docx"].meta["title"] == "人才保障办法"


def test_pdf_text_layer_is_read_and_a_broken_pdf_is_reported(tmp_path):
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(tmp_path / "policy.pdf"))
    c.setTitle("飞地经济政策")
    c.setAuthor("明川区")
    c.setFont("STSong-Light", 12)
    c.drawString(72, 720, "第五条 飞地项目投产后三年内按区级财政贡献的60%给予奖励。")
    c.save()
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    docs, failures = loaded(tmp_path)
    assert "60%给予奖励" in docs["policy.pdf"].text
    assert docs["policy.pdf"].meta["title"] == "飞地经济政策"
    assert [f.path.rsplit("/", 1)[-1] for f in failures] == ["broken.pdf"]


@pytest.mark.parametrize("name", ["records.jsonl", "records.jsonl.gz"])
def test_jsonl_records_use_their_id_and_bad_lines_are_reported(tmp_path, name):
    lines = [
        json.dumps(
            {"id": "n1", "text": "外资到账3227万美元。", "title": "新闻一", "date": "2022-08-04"},
            ensure_ascii=False,
        ),
        "{not json",
        json.dumps({"id": "n2"}),
        json.dumps({"text": "没有编号"}, ensure_ascii=False),
        json.dumps({"id": "n3", "text": "第二条记录。", "source": "大众日报"}, ensure_ascii=False),
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    docs, failures = loaded(tmp_path)
    assert sorted(docs) == ["n1", "n3"]
    assert docs["n1"].meta["title"] == "新闻一" and docs["n1"].meta["date"] == "2022-08-04"
    assert docs["n3"].meta["source"] == "大众日报"
    assert [f.path.rsplit(":", 1)[-1] for f in failures] == ["2", "3", "4"]


def test_a_missing_path_is_a_failure_not_an_exception(tmp_path):
    _, failures = loaded(tmp_path / "nope")
    assert failures[0].reason == "no such file or folder"
