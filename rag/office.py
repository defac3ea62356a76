"""Old office formats: Word 97–2003 `.doc` and WPS Office `.wps`, read by LibreOffice
headless (Debian: `apt-get install libreoffice-writer-nogui`), which converts them to
.docx for the .docx reader (rag.load), so their tables keep their headers too.

Why LibreOffice and not antiword or catdoc: those read `.doc` only (not `.wps`), have not
been maintained for years and lose tables; LibreOffice reads both and is in every
distribution's archive, so it installs offline from a mirror. It is optional: without
it these two formats are refused with a message saying what to install.

The zip-based formats (.docx, .xlsx, .ofd) are read by libraries that unpack every part
into memory; `check_unpacked_size` refuses a zip bomb before they see it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

CONVERT_SECONDS = 120  # a large .doc converts in seconds; a hung converter is stopped
# What the parts of a .docx, .xlsx or .ofd may unpack to, together. Their XML compresses
# 10-20x, so a real document of the largest upload (50 MiB, mostly images, which do not
# compress) stays well under it; python-docx and openpyxl then hold a parsed tree about
# five times the XML's size, so this keeps a worker under about a gigabyte, where a
# 5 MB .docx holding 900 MB of document.xml took 4.6 GB. The same budget as an uploaded
# .zip's (rag.load.unpack_zip).
MAX_UNPACKED_BYTES = 200 * 2**20


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


def check_unpacked_size(data: bytes) -> None:
    """Refuse (OfficeError) a zip whose parts unpack to more than MAX_UNPACKED_BYTES by the
    sizes its directory states: zipfile never unpacks a part past its stated size (a lie
    fails the CRC check), so they bound what the readers unpack. Bytes that are no readable
    zip pass: the format's own reader then says what is wrong with them, in its words."""
    limit = MAX_UNPACKED_BYTES
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # zipfile raises all sorts on a malformed archive
        return
    with archive:
        parts = archive.infolist()
        for info in parts:
            if info.file_size > limit:
                raise OfficeError(
                    f"{info.filename} is {size_text(info.file_size)} unpacked "
                    f"(limit {size_text(limit)})"
                )
        stated = sum(info.file_size for info in parts)
        if stated > limit:
            raise OfficeError(f"its parts unpack to {size_text(stated)} (limit {size_text(limit)})")


def size_text(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"
