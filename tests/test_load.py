import gzip
import io
import json
import logging
import re
import stat
import warnings
import zipfile

import pytest

from rag.load import (
    LoadFailure,
    NoTextError,
    Source,
    UnreadableError,
    decode_text,
    html_text,
    iter_sources,
    read_front_matter,
    title_line,
    unpack_zip,
)

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


def load_errors(root):
    """{doc_id: the UnreadableError its load raised} for everything under root."""
    errors = {}
    for item in iter_sources(root):
        if isinstance(item, Source):
            try:
                item.load()
            except UnreadableError as err:
                errors[item.doc_id] = err
    return errors


def pdf_bytes(*lines):
    """A one-page PDF with a Chinese text layer (no lines: a page with no text, like a scan)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setFont("STSong-Light", 12)
    for i, line in enumerate(lines):
        c.drawString(72, 720 - 20 * i, line)
    c.showPage()
    c.save()
    return buf.getvalue()


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
    (tmp_path / "slides.pptx").write_bytes(b"PK\x03\x04")
    (tmp_path / ".hidden.txt").write_text(POLICY, "utf-8")
    docs, failures = loaded(tmp_path)
    assert list(docs) == ["good.md"]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in failures}
    assert reasons == {
        "image.txt": "binary content, not text",
        "empty.txt": "empty file",
        "blank.md": "no text after cleaning",
        "table.xlsx": "not a readable .xlsx (BadZipFile: File is not a zip file)",
        "slides.pptx": "unsupported format '.pptx'",
    }


def test_front_matter_gives_metadata_and_is_not_indexed():
    text, meta, _ = read_front_matter(
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
    assert "安家补贴，最高100万元" in docs["talent.docx"].text
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


# --- symlinks: only files inside the folder given are read ---


def test_symlinks_leading_outside_the_folder_are_reported_and_never_read(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "good.md").write_text(POLICY, "utf-8")
    (root / "sub" / "外资.txt").write_text("外资奖励办法正文。", "utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("数据库密码：不应被索引", "utf-8")
    private = tmp_path / "private"
    private.mkdir()
    (private / "工资.txt").write_text("工资表：不应被索引", "utf-8")
    (root / "passwd.txt").symlink_to(secret)
    (root / "leak").symlink_to(private, target_is_directory=True)
    (root / "sub" / "up.txt").symlink_to("../../secret.txt")  # relative, still outside
    docs, failures = loaded(root)
    assert sorted(docs) == ["good.md", "sub/外资.txt"]
    assert all("不应被索引" not in doc.text for doc in docs.values())
    reasons = {f.path.removeprefix(f"{root}/"): f.reason for f in failures}
    assert sorted(reasons) == ["leak", "passwd.txt", "sub/up.txt"]
    for reason in reasons.values():
        assert "symlink" in reason and "outside" in reason


def test_symlinks_that_stay_inside_the_folder_are_fine_and_loops_do_not_hang(tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "飞地.md").write_text(POLICY, "utf-8")
    (tmp_path / "最新.md").symlink_to(tmp_path / "policies" / "飞地.md")
    # a folder linked inside is already read at its real path; following it could loop
    (tmp_path / "again").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "circle.txt").symlink_to(tmp_path / "circle.txt")
    docs, failures = loaded(tmp_path)
    assert sorted(docs) == ["policies/飞地.md", "最新.md"]
    assert [(f.path.rsplit("/", 1)[-1], f.reason) for f in failures] == [
        ("circle.txt", "broken symlink; skipped")
    ]


# --- HTML: only block elements break lines ---


def test_inline_html_elements_do_not_split_a_sentence():
    text, _ = html_text(
        "<html><body><p>给予一次性奖励<img src='x.png'>，最高不超过<b>200</b>万元。</p>"
        "<p>对<a href='/q'>重点项目</a>按<span style='color:red'><strong>60%</strong></span>"
        "<em>予以</em><font color='red'>补助</font>。</p></body></html>"
    )
    lines = [line for line in text.split("\n") if line.strip()]
    assert lines == ["给予一次性奖励，最高不超过200万元。", "对重点项目按60%予以补助。"]


def test_html_blocks_br_and_table_rows_start_lines_and_cells_are_spaced():
    text, _ = html_text(
        "<body><h2>申报条件</h2><div>第一条 注册在本区\n    的企业。<br>第二条 依法纳税。</div>"
        "<ul><li>安家补贴</li><li>租房补贴</li></ul>"
        "<table><tr><th>项目</th><th>标准</th></tr><tr><td>安家补贴</td><td>最高100万元</td></tr>"
        "</table><pre>代码  对齐</pre></body>"
    )
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    assert lines == [
        "申报条件",
        "第一条 注册在本区的企业。",  # a source line break inside Chinese text is no break
        "第二条 依法纳税。",
        "安家补贴",
        "租房补贴",
        "项目 标准",
        "安家补贴 最高100万元",
        "代码  对齐",
    ]


# --- PDF: pypdf's repair notes stay off stderr ---


def test_a_pdf_pypdf_repairs_is_read_without_log_records_or_warnings(tmp_path, caplog, capfd):
    data = pdf_bytes("第五条 飞地项目投产后三年内按区级财政贡献的60%给予奖励。")
    # a wrong startxref offset: pypdf recovers, and logs "incorrect startxref pointer"
    data = re.sub(rb"startxref\s+(\d+)", lambda m: b"startxref\n%d" % (int(m[1]) + 7), data)
    (tmp_path / "policy.pdf").write_bytes(data)
    pypdf_level = logging.getLogger("pypdf").level
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs, failures = loaded(tmp_path)
    assert failures == [] and "60%给予奖励" in docs["policy.pdf"].text
    assert [r for r in caplog.records if r.name.startswith("pypdf")] == []
    assert caught == [] and capfd.readouterr().err == ""
    assert logging.getLogger("pypdf").level == pypdf_level


# --- no text is not the same as failed ---


def test_files_without_text_raise_no_text_error_and_empty_or_broken_ones_do_not(tmp_path):
    import docx

    (tmp_path / "scan.pdf").write_bytes(pdf_bytes())
    docx.Document().save(tmp_path / "images.docx")
    (tmp_path / "menu.html").write_text("<body><script>var a = '菜单';</script></body>", "utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "spaces.md").write_bytes(b" \n\t\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    errors = load_errors(tmp_path)
    no_text = {name: str(err) for name, err in errors.items() if isinstance(err, NoTextError)}
    assert no_text == {
        "scan.pdf": "no text on its 1 page(s), not even by OCR",
        "images.docx": ".docx has no text (only images?)",
        "menu.html": "no text after cleaning",
    }
    assert str(errors["empty.txt"]) == str(errors["spaces.md"]) == "empty file"
    assert sorted(set(errors) - set(no_text)) == ["broken.pdf", "empty.txt", "spaces.md"]


# --- unpacking uploaded zips ---


def make_zip(entries):
    """A .zip of {name: bytes}; a name given as bytes is stored raw, without the UTF-8 flag,
    as Windows (GBK) and macOS (UTF-8) archivers write them."""
    buf = io.BytesIO()
    raw_names = {}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            if isinstance(name, bytes):  # an ASCII stand-in of the same length, swapped below
                stand_in = f"{len(raw_names):0{len(name)}d}"
                raw_names[stand_in.encode()] = name
                name = stand_in
            zf.writestr(name, data)
    data = buf.getvalue()
    for stand_in, raw in raw_names.items():  # names are in no checksum
        data = data.replace(stand_in, raw)
    return data


def unpacked(data, **limits):
    """({path: text}, [LoadFailure]) of a zip."""
    files, failures = {}, []
    for item in unpack_zip(data, **limits):
        if isinstance(item, LoadFailure):
            failures.append(item)
        else:
            files[item[0]] = item[1].decode("utf-8")
    return files, failures


def test_zip_names_written_in_gbk_or_unflagged_utf8_come_out_as_chinese():
    data = make_zip(
        {
            "政策文件/飞地经济政策.txt".encode("gbk"): "飞地项目按60%给予奖励。".encode(),
            "外资/奖励办法.md".encode(): "到资500万美元给予奖励。".encode(),  # macOS Archive Utility
            "说明.md": "UTF-8 标志位已设置。".encode(),
        }
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # what Python alone makes of them
        assert "政策文件/飞地经济政策.txt" not in zf.namelist()
    files, failures = unpacked(data)
    assert failures == []
    assert files == {
        "政策文件/飞地经济政策.txt": "飞地项目按60%给予奖励。",
        "外资/奖励办法.md": "到资500万美元给予奖励。",
        "说明.md": "UTF-8 标志位已设置。",
    }


def test_zip_slip_absolute_paths_and_symlinks_are_refused_and_the_rest_unpacked():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/cron.d/evil.txt", "恶意")
        zf.writestr("政策/../../逃逸.txt", "恶意")
        zf.writestr("..\\..\\windows.txt", "恶意")
        zf.writestr("/etc/passwd.txt", "恶意")
        zf.writestr("C:/Windows/system.txt", "恶意")
        link = zipfile.ZipInfo("链接.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("政策/楼宇经济.txt", "首年租金补贴50%。")
    files, failures = unpacked(buf.getvalue())
    assert files == {"政策/楼宇经济.txt": "首年租金补贴50%。"}
    reasons = {f.path: f.reason for f in failures}
    assert list(reasons) == [
        "../../etc/cron.d/evil.txt",
        "政策/../../逃逸.txt",
        "../../windows.txt",
        "/etc/passwd.txt",
        "C:/Windows/system.txt",
        "链接.txt",
    ]
    assert all(r.endswith("skipped") for r in reasons.values())
    assert "(..)" in reasons["政策/../../逃逸.txt"] and "absolute" in reasons["/etc/passwd.txt"]
    assert "symlink" in reasons["链接.txt"]


def test_zip_nested_folders_are_kept_and_hidden_mac_and_unsupported_entries_are_not():
    data = make_zip(
        {
            "招商/2024/飞地/政策.txt": "飞地政策正文。".encode(),
            "招商/2024/外资.md": "外资政策正文。".encode(),
            "招商/.DS_Store": b"\x00\x01",
            ".git/config.txt": b"[core]",
            "__MACOSX/招商/._外资.md": b"\x00\x05",
            "招商/统计表.pptx": b"PK\x03\x04",
        }
    )
    files, failures = unpacked(data)
    assert files == {
        "招商/2024/飞地/政策.txt": "飞地政策正文。",
        "招商/2024/外资.md": "外资政策正文。",
    }
    assert failures == [LoadFailure("招商/统计表.pptx", "unsupported format '.pptx'")]


def test_a_zip_bomb_stops_at_the_byte_limit_counted_as_unpacked():
    one_mib = ("外资" * (2**20 // 6 + 1)).encode()[: 2**20]  # compresses a thousandfold
    data = make_zip({f"第{i}份.txt": one_mib for i in range(1, 6)})
    assert len(data) < 50_000
    out = list(unpack_zip(data, max_total_bytes=2 * 2**20 + 2**19))
    assert [item[0] for item in out[:2]] == ["第1份.txt", "第2份.txt"]
    assert len(out) == 3 and out[2].path == "第3份.txt"
    assert "more than 2 MiB" in out[2].reason and out[2].reason.endswith("stopped")


def test_a_zip_stops_after_max_files_and_refuses_entries_over_max_file_bytes(monkeypatch):
    data = make_zip({f"{i}.txt": f"第{i}条。".encode() for i in range(1, 6)})
    files, failures = unpacked(data, max_files=3)
    assert list(files) == ["1.txt", "2.txt", "3.txt"]
    assert failures == [LoadFailure("4.txt", "more than 3 files in the zip; stopped")]
    monkeypatch.setattr("rag.load.MAX_FILE_BYTES", 100)
    files, failures = unpacked(make_zip({"大.txt": ("补贴" * 100).encode(), "小.txt": b"ok"}))
    assert files == {"小.txt": "ok"}
    assert failures == [LoadFailure("大.txt", "larger than 100 bytes")]


def test_a_corrupt_zip_is_one_failure_and_a_damaged_entry_only_its_own():
    assert [(f.path, f.reason[:20]) for f in unpack_zip(b"PK\x03\x04 not really a zip")] == [
        ("", "not a readable .zip ")
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("坏.txt", "原始内容AAAA")
        zf.writestr("好.txt", "完好的内容")
    data = buf.getvalue().replace(b"AAAA", b"BBBB")  # the CRC no longer matches
    files, failures = unpacked(data)
    assert files == {"好.txt": "完好的内容"}
    assert [f.path for f in failures] == ["坏.txt"] and "cannot unpack" in failures[0].reason


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("明川区楼宇经济扶持办法\n第一条 对新入驻企业给予补贴。", "明川区楼宇经济扶持办法"),
        # a policy flattened to one line by a web export: the lead before the first space
        (
            "市商务局关于做好外资企业复工复产服务和多举措加强招商引资工作的通知 "
            "各区商务主管部门、外资招商部门：为贯彻落实党中央、国务院关于疫情防控的部署……",
            "市商务局关于做好外资企业复工复产服务和多举措加强招商引资工作的通知",
        ),
        # not titles: a sentence, a clause ending in a comma or colon, a byline
        ("对新入驻企业给予首年租金50%补贴。", ""),
        ("为贯彻落实党中央、国务院关于做好疫情防控工作的部署要求， 现就有关事项通知如下。" * 2, ""),
        ("各区商务主管部门、外资招商部门： " + "为贯彻落实党中央的部署要求，现通知如下" * 3, ""),
        ("刘占崑/摄 " + "11月26日，在卡塔尔多哈974球场进行的世界杯D组比赛中，法国队获胜" * 2, ""),
    ],
)
def test_a_title_is_the_first_line_or_a_one_line_records_lead(text, title):
    assert title_line(text) == title


def test_front_matter_with_yaml_aliases_is_refused_before_it_expands(tmp_path):
    """A "billion laughs": each level lists the one before nine times. Nine levels took the
    server past 15 GB; three (729 strings, were they expanded) show the refusal."""
    (tmp_path / "bomb.md").write_text(
        '---\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "title: *c\n---\n外资政策正文。\n",
        "utf-8",
    )
    (tmp_path / "anchor.md").write_text("---\ntitle: &t 外资政策\n---\n外资政策正文。\n", "utf-8")
    errors = {doc_id: str(err) for doc_id, err in load_errors(tmp_path).items()}
    reason = "front matter uses YAML aliases or anchors (*name, &name)"
    assert errors == {"bomb.md": reason, "anchor.md": reason}


def test_front_matter_over_its_size_limit_is_refused_and_a_small_one_still_read(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("rag.load.MAX_FRONT_MATTER_BYTES", 100)
    fields = "".join(f"field{i}: 值\n" for i in range(20))
    (tmp_path / "big.md").write_text(f"---\n{fields}title: 标题\n---\n大的正文。\n", "utf-8")
    (tmp_path / "small.md").write_text(
        "---\ntitle: 小标题\ndate: 2024-03-15\n---\n正文。\n", "utf-8"
    )
    docs, failures = loaded(tmp_path)
    assert docs["small.md"].meta["title"] == "小标题"
    assert docs["small.md"].meta["date"] == "2024-03-15"
    assert failures == [LoadFailure(str(tmp_path / "big.md"), "front matter larger than 100 bytes")]


def test_lists_and_mappings_in_metadata_are_left_out_with_a_note_not_stored_as_repr(tmp_path):
    (tmp_path / "policy.md").write_text(
        "---\ntitle: 外资政策\nauthor: [张三, 李四]\nsource: {name: 商务局}\ntags: [外资]\n---\n"
        "第一条 外资企业给予奖励。\n",
        "utf-8",
    )
    records = [
        {
            "id": "r1",
            "text": "记录正文。",
            "title": ["标题"],
            "source": {"a": 1},
            "date": "2024-03-15",
        },
        {"id": ["r2"], "text": "编号是一个列表。"},
    ]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (tmp_path / "records.jsonl").write_text(lines, "utf-8")
    docs, failures = loaded(tmp_path)
    assert sorted(docs) == ["policy.md", "r1"]
    assert not [v for doc in docs.values() for v in doc.meta.values() if v.startswith(("[", "{"))]
    policy, record = docs["policy.md"], docs["r1"]
    assert (policy.meta["title"], policy.meta["author"], policy.meta["source"]) == (
        "外资政策",
        "",
        "",
    )
    assert policy.notes == (  # tags is no metadata field: dropped without a word
        "front matter: author is not text (a list or mapping?); left out",
        "front matter: source is not text (a list or mapping?); left out",
    )
    assert record.meta["date"] == "2024-03-15" and record.meta["source"] == ""
    assert record.notes == (
        "record: title is not text (a list or mapping?); left out",
        "record: source is not text (a list or mapping?); left out",
    )
    assert failures == [
        LoadFailure(f"{tmp_path / 'records.jsonl'}:2", 'record needs an "id" (a string or number)')
    ]


def test_an_over_long_record_line_is_skipped_and_the_records_around_it_load(tmp_path, monkeypatch):
    monkeypatch.setattr("rag.load.MAX_RECORD_BYTES", 1000)
    first = json.dumps({"id": "n1", "text": "外资到账3227万美元。"}, ensure_ascii=False)
    at_limit = json.dumps({"id": "n2", "text": "x" * 976})  # 1000 bytes, then its newline
    assert len(at_limit) == 1000
    data = f"{first}\n{'a' * 5000}\n{at_limit}\n".encode()
    (tmp_path / "records.jsonl.gz").write_bytes(gzip.compress(data))
    docs, failures = loaded(tmp_path)
    assert sorted(docs) == ["n1", "n2"]
    assert failures == [
        LoadFailure(f"{tmp_path / 'records.jsonl.gz'}:2", "record longer than 1000 bytes; skipped")
    ]


def test_a_jsonl_gz_unpacking_past_its_limit_stops_there_with_a_reason(tmp_path, monkeypatch):
    """3 MB of .jsonl.gz unpacked to 3 GB of "a" with no newline, all of it held."""
    monkeypatch.setattr("rag.load.MAX_UNPACKED_RECORDS_BYTES", 64 * 1024)
    first = json.dumps({"id": "n1", "text": "外资到账3227万美元。"}, ensure_ascii=False)
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(first.encode() + b"\n" + b"a" * 2**20))
    assert path.stat().st_size < 5000
    docs, failures = loaded(tmp_path)
    assert list(docs) == ["n1"]
    assert failures == [
        LoadFailure(str(path), "unpacks to more than 65536 bytes (a gzip bomb?); stopped")
    ]
