"""Old office formats: Word 97–2003 `.doc` and WPS Office `.wps`, read by LibreOffice
headless (Debian: `apt-get install libreoffice-writer-nogui`), which converts them to
.docx for the .docx reader (rag.load), so their tables keep their headers too.

Why LibreOffice and not antiword or catdoc: those read `.doc` only (not `.wps`), have not
been maintained for years and lose tables; LibreOffice reads both and is in every
distribution's archive, so it installs offline from a mirror. It is optional: without
it these two formats are refused with a message saying what to install.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CONVERT_SECONDS = 120  # a large .doc converts in seconds; a hung converter is stopped


class OfficeError(ValueError):
    """A file LibreOffice could not convert, or no LibreOffice; the message says why."""


def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the container Word 97–2003 and WPS write
# What else portals serve under a .doc name: RTF, and HTML saved by Word ("网页格式").
OTHER_STARTS = (b"{\\rtf", b"<html", b"<!doctype", b"<?xml", b"mime-version")


def to_docx(data: bytes, suffix: str) -> bytes:
    """The .docx LibreOffice makes of a `.doc` / `.wps` file's bytes. A file that is none
    of what a .doc may be is refused first: LibreOffice would take any bytes for text."""
    head = data[:64].lstrip().lower()
    if not (data.startswith(OLE) or head.startswith(OTHER_STARTS)):
        raise OfficeError(f"not a Word 97–2003 or WPS file (no OLE header), despite {suffix}")
    program = soffice()
    if program is None:
        raise OfficeError(
            f"reading {suffix} needs LibreOffice: apt-get install libreoffice-writer-nogui"
        )
    with tempfile.TemporaryDirectory(prefix="rag-office-") as tmp:
        work = Path(tmp)
        source = work / f"in{suffix}"
        source.write_bytes(data)
        # Its own profile: a LibreOffice the user has open would otherwise take the job.
        profile = (work / "profile").as_uri()
        try:
            done = subprocess.run(
                [
                    program,
                    f"-env:UserInstallation={profile}",
                    "--headless",
                    "--convert-to",
                    "docx:MS Word 2007 XML",
                    "--outdir",
                    str(work),
                    str(source),
                ],
                capture_output=True,
                text=True,
                timeout=CONVERT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise OfficeError(f"LibreOffice took over {CONVERT_SECONDS} s to read it") from None
        target = work / "in.docx"
        if done.returncode != 0 or not target.is_file():
            why = (done.stderr or done.stdout).strip().splitlines()
            raise OfficeError(f"LibreOffice could not read it ({why[-1] if why else 'no output'})")
        return target.read_bytes()
