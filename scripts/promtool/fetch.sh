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

go="$("$root/scripts/go/toolchain.sh")"

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
