#!/usr/bin/env bash
# Build Helm (renders and lints the chart in deploy/helm/patchgate) from the Go module proxy into
# .cache/helm/<version>/helm once; later runs find it there and only print its path.
# make test runs this before the tests (tests/deploy/test_helm*.py run `helm lint` and `helm template`).
# Only the helm command is built, without debug symbols (-trimpath -ldflags=-s).
#   scripts/helm/fetch.sh            # prints the binary's path
#   HELM_VERSION=v4.3.1 scripts/helm/fetch.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="${HELM_VERSION:-v4.3.2}"
dest="$root/.cache/helm/$version"
binary="$dest/helm"

if [[ -x "$binary" ]] && "$binary" version --short >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi

go="$("$root/scripts/go/toolchain.sh")"

mkdir -p "$dest"
staging="$(mktemp -d "$dest/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "helm $version: building from the Go module proxy (once; a few minutes)" >&2
start=$SECONDS
GOBIN="$staging" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
  "$go" install -trimpath -ldflags=-s "helm.sh/helm/v4/cmd/helm@$version"
"$staging/helm" version --short >/dev/null
mv -f "$staging/helm" "$binary"
echo "helm $version: built in $((SECONDS - start)) s" >&2
echo "$binary"
