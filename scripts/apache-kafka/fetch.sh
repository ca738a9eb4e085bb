#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (and all runtime dependencies) from Maven Central into
# .cache/apache-kafka/<version>/lib once, so tests don't spend their time on Maven. make test
# (scripts/system-deps.sh) runs this before the tests. The version and the caching live in
# processors/devservices/apache_kafka.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" -m processors.devservices.apache_kafka fetch
