#!/usr/bin/env bash
# Build Helm (renders and lints the chart in deploy/helm/patchgate) from the Go module proxy into
# .cache/helm/<version>/helm once; later runs find it there and only print its path.
# make test runs this before the tests (tests/deploy/test_helm*.py run `helm lint` and `helm template`).
# Only the helm command is built (scripts/go/build-tool.sh).
#   scripts/helm/fetch.sh            # prints the binary's path
#   HELM_VERSION=v4.3.1 scripts/helm/fetch.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "$root/scripts/go/build-tool.sh" helm "${HELM_VERSION:-v4.3.2}" helm.sh/helm/v4/cmd/helm "version --short"
