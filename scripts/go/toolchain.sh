#!/usr/bin/env bash
# Print the path of a Go toolchain recent enough to build the Go tools the tests run (promtool, Helm):
# the machine's when it is, else Go's own toolchain module from the Go module proxy, unpacked once into
# .cache/go/<version> (a fresh Debian 12 has no Go, and its golang-go is 1.19).
#   scripts/go/toolchain.sh            # prints the go binary's path
#   GO_VERSION=1.26.9 scripts/go/toolchain.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
go_version="${GO_VERSION:-1.26.8}"
recent_enough() {
  local have
  have="$("$1" env GOVERSION 2>/dev/null)" || return 1
  have="${have#go}"
  [[ "$(printf '%s\n%s\n' "$go_version" "$have" | sort -V | head -n1)" == "$go_version" ]]
}

fetch_go() {
  local arch dir="$root/.cache/go/$go_version"
  if [[ -x "$dir/bin/go" ]]; then echo "$dir/bin/go"; return 0; fi
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
  echo "go: fetching Go $go_version from the Go module proxy into .cache/go (once)" >&2
  mkdir -p "$root/.cache/go"
  python3 - "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-$arch.zip" "$dir" <<'PY'
import io, os, shutil, sys, tempfile, urllib.request, zipfile
url, dest = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=300) as response:
    archive = zipfile.ZipFile(io.BytesIO(response.read()))
staging = tempfile.mkdtemp(dir=os.path.dirname(dest), prefix=".go.")
os.chmod(staging, 0o755)
try:
    for entry in archive.infolist():
        _module, at, tail = entry.filename.partition("@")  # golang.org/toolchain@<version>/<path>
        name = tail.split("/", 1)[1] if at and "/" in tail else ""
        if not name or entry.is_dir():
            continue
        target = os.path.join(staging, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(entry) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        os.chmod(target, (entry.external_attr >> 16) & 0o777 or 0o644)
    os.rename(staging, dest)
except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
PY
  echo "$dir/bin/go"
}

go="$(command -v go || true)"
if [[ -z "$go" && -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go; fi
if [[ -z "$go" ]] || ! recent_enough "$go"; then
  go="$(fetch_go)" || { echo "go: could not fetch Go $go_version from proxy.golang.org" >&2; exit 1; }
fi
echo "$go"

