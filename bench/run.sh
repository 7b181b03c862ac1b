#!/usr/bin/env sh
# Run the benchmark suite on Apache Kafka and the embedded broker (or --broker ..., --bootstrap) and keep the JSON.
# From the checkout root: the suite (bench/) is not in the installed package; taskstream finds it here.
set -eu
cd "$(dirname "$0")/.."
exec taskstream bench --json bench/results.json "$@"
