#!/usr/bin/env bash
# Build Prometheus' promtool (the alert rules' checker and unit-test runner) from the Go module proxy
# into .cache/promtool/<version>/promtool once; later runs find it there and only print its path.
# make test runs this before the tests (tests/deploy/ run `promtool check rules` and `test rules`).
# Only the promtool package is built (scripts/go/build-tool.sh), without the cloud service-discovery
# plugins (-tags remove_all_sd: static scrape targets only), which would triple the build.
#   scripts/promtool/fetch.sh            # prints the binary's path
#   PROMTOOL_VERSION=v0.315.1 scripts/promtool/fetch.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "$root/scripts/go/build-tool.sh" promtool "${PROMTOOL_VERSION:-v0.316.0}" \
  github.com/prometheus/prometheus/cmd/promtool --version -tags remove_all_sd
