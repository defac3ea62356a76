"""The CLI's consoles print document text as is: no `:x:` → ❌ in `rag ask --json`."""

from rag import cli


def test_emoji_codes_in_document_text_are_printed_unchanged():
    for console in (cli.out, cli.err):
        with console.capture() as captured:
            console.print('{"a": ":x: 不合格"}', markup=False)
        assert captured.get() == '{"a": ":x: 不合格"}\n'
