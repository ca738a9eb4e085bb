#!/usr/bin/env bash
# Build one Go command from the Go module proxy into .cache/<name>/<version>/<name> once; later runs
# find it there and only print its path. Used by scripts/promtool/fetch.sh and scripts/helm/fetch.sh.
# The binary is built without debug symbols (-trimpath -ldflags=-s), static (CGO_ENABLED=0), in a
# staging folder, and moved into place only once it answers its version flag.
#   scripts/go/build-tool.sh NAME VERSION PACKAGE VERSION_FLAG [go install flags...]
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 NAME VERSION PACKAGE VERSION_FLAG [go install flags...]" >&2
  exit 2
fi
name="$1" version="$2" package="$3" version_flag="$4"
shift 4
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/.cache/$name/$version"
binary="$dest/$name"

if [[ -x "$binary" ]] && "$binary" $version_flag >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi

go="$("$root/scripts/go/toolchain.sh")"

mkdir -p "$dest"
staging="$(mktemp -d "$dest/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "$name $version: building from the Go module proxy (once; a few minutes)" >&2
start=$SECONDS
GOBIN="$staging" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
  "$go" install -trimpath -ldflags=-s "$@" "$package@$version"
"$staging/$name" $version_flag >/dev/null
mv -f "$staging/$name" "$binary"
echo "$name $version: built in $((SECONDS - start)) s" >&2
echo "$binary"
