#!/bin/sh
# Install 招商政策问答 from this offline bundle. Never touches the network: every package
# comes from wheels/, checked against SHA256SUMS and requirements.lock first.
#
#   ./install.sh PREFIX [--data-dir DIR]      (default data dir: /var/lib/policy-rag)
#
# Installing a newer bundle over an older one replaces PREFIX/venv and PREFIX/share,
# keeps PREFIX/etc/rag.toml and the data dir (the index, uploads, keys, grants).
set -eu

fail() { echo "install.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 PREFIX [--data-dir DIR]" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
prefix=$1
shift
data_dir=/var/lib/policy-rag
while [ $# -gt 0 ]; do
    case $1 in
        --data-dir) [ $# -ge 2 ] || usage; data_dir=$2; shift 2 ;;
        *) usage ;;
    esac
done
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
case $data_dir in /*) ;; *) data_dir=$(pwd)/$data_dir ;; esac

# 1. Python: the wheels are built for one minor version (numpy, torch… are binary).
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || fail "no $python: install Python 3.11 or newer (Debian: apt-get install python3)"
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
want=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python"])' "$here/manifest.json")
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "Python $have is too old: 3.11 or newer is needed"
[ "$have" = "$want" ] || fail "this bundle is built for Python $want, and $python is $have: use a bundle built on Python $have, or PYTHON=python$want $0 …"
"$python" -c 'import venv, ensurepip' 2>/dev/null || fail "$python cannot make virtual environments (Debian: apt-get install python$have-venv)"

# 2. Disk: the unpacked packages, and a little room besides.
need_kb=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["install_bytes"] * 12 // 10 // 1024)' "$here/manifest.json")
probe=$prefix
while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done
free_kb=$(df -Pk "$probe" | awk 'NR == 2 { print $4 }')
[ "$free_kb" -ge "$need_kb" ] || fail "not enough free disk under $probe: $((need_kb / 1024)) MiB needed, $((free_kb / 1024)) MiB free"

# 3. Integrity: every file as it was built.
echo "checking the bundle's files…"
(cd "$here" && sha256sum --check --quiet --strict SHA256SUMS) || fail "the bundle is damaged or was changed (see the lines above); copy it again"

# 4. The virtual environment, from the wheelhouse only. An upgrade keeps the old one
#    aside until the new one is complete (a venv cannot be moved: its scripts name it).
mkdir -p "$prefix"
rm -rf "$prefix/venv.old"
[ ! -d "$prefix/venv" ] || mv "$prefix/venv" "$prefix/venv.old"
restore() {
    rm -rf "$prefix/venv"
    [ ! -d "$prefix/venv.old" ] || mv "$prefix/venv.old" "$prefix/venv"
    fail "installing the packages failed (see above); the installation is as it was"
}
echo "installing into $prefix/venv…"
"$python" -m venv "$prefix/venv" || restore
PIP_CONFIG_FILE=/dev/null "$prefix/venv/bin/python" -m pip install --quiet \
    --no-index --find-links "$here/wheels" --only-binary=:all: --require-hashes \
    --disable-pip-version-check --no-cache-dir -r "$here/requirements.lock" || restore
rm -rf "$prefix/venv.old"

# 5. Shared files, the command, and a configuration that an upgrade never overwrites.
rm -rf "$prefix/share"
cp -R "$here/share" "$prefix/share"
cp "$here/manifest.json" "$prefix/share/manifest.json"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@DATA_DIR@|$data_dir|g" \
    "$here/share/policy-rag.service" > "$prefix/share/policy-rag.service"
mkdir -p "$prefix/etc" "$prefix/bin"
if [ ! -f "$prefix/etc/rag.toml" ]; then
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@DATA_DIR@|$data_dir|g" \
        "$here/share/rag.toml.example" > "$prefix/etc/rag.toml"
    kept=""
else
    kept=" (kept: $prefix/etc/rag.toml)"
fi
cat > "$prefix/bin/rag" <<WRAPPER
#!/bin/sh
RAG_CONFIG=\${RAG_CONFIG:-$prefix/etc/rag.toml} exec "$prefix/venv/bin/rag" "\$@"
WRAPPER
chmod 755 "$prefix/bin/rag"

version=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$here/manifest.json")
cat <<DONE
policy-rag $version installed in $prefix$kept.

Next:
  $prefix/bin/rag doctor                          # check the installation
  $prefix/bin/rag ingest $prefix/share/corpus     # index the seed documents (or your folder)
  $prefix/bin/rag serve                           # the chat and API on 127.0.0.1:7860

As a service (systemd, user policy-rag, data in $data_dir):
  useradd --system --home-dir $data_dir --shell /usr/sbin/nologin policy-rag
  cp $prefix/share/policy-rag.service /etc/systemd/system/
  systemctl daemon-reload && systemctl enable --now policy-rag
  journalctl -u policy-rag -f
DONE
