#!/usr/bin/env sh
# Run the benchmark suite on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS) and keep the JSON.
set -eu
cd "$(dirname "$0")/.."
exec taskstream bench --json bench/results.json "$@"
