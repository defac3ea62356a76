"""The CLI's consoles print document text as is: no `:x:` → ❌ in `rag ask --json`."""

from rag import cli


def test_emoji_codes_in_document_text_are_printed_unchanged():
    for console in (cli.out, cli.err):
        with console.capture() as captured:
            console.print('{"a": ":x: 不合格"}', markup=False)
        assert captured.get() == '{"a": ":x: 不合格"}\n'


def test_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    """`rag … > file` on a full disk: say so in one line and exit non-zero."""
    import os
    import subprocess

    from tests.conftest import RAG

    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [RAG, "keys", "list"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "RAG_DATA_DIR": str(tmp_path)},
        )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: No space left on device"
