#!/usr/bin/env bash
# Build Prometheus' promtool (the alert rules' checker and unit-test runner) from the Go module proxy
# into .cache/promtool/<version>/promtool once; later runs find it there and only print its path.
# make test runs this before the tests (tests/deploy/ run `promtool check rules` and `test rules`).
# Only the promtool package is built, without debug symbols (-trimpath -ldflags=-s) and without the
# cloud service-discovery plugins (-tags remove_all_sd: static scrape targets only), which would
# triple the build.
#   scripts/promtool/fetch.sh            # prints the binary's path
#   PROMTOOL_VERSION=v0.315.1 scripts/promtool/fetch.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="${PROMTOOL_VERSION:-v0.316.0}"
dest="$root/.cache/promtool/$version"
binary="$dest/promtool"

if [[ -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi

# The Go that builds it: one on the machine when it is recent enough for Prometheus' go.mod, else Go's
# own toolchain module from the Go module proxy, unpacked once into .cache/go (Debian 12 ships 1.19).
go_version="${PROMTOOL_GO_VERSION:-1.26.8}"
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
  echo "promtool: fetching Go $go_version from the Go module proxy into .cache/go (once)" >&2
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
  go="$(fetch_go)" || { echo "promtool: could not fetch Go $go_version from proxy.golang.org" >&2; exit 1; }
fi

mkdir -p "$dest"
staging="$(mktemp -d "$dest/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "promtool $version: building from the Go module proxy (once; a few minutes)" >&2
start=$SECONDS
GOBIN="$staging" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
  "$go" install -trimpath -ldflags=-s -tags remove_all_sd "github.com/prometheus/prometheus/cmd/promtool@$version"
"$staging/promtool" --version >/dev/null
mv -f "$staging/promtool" "$binary"
echo "promtool $version: built in $((SECONDS - start)) s" >&2
echo "$binary"
