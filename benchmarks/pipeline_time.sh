#!/usr/bin/env bash
# Times the main command on a fresh clone: setup, a first run, and a second run with nothing changed
# (every stage cached). Prints one Markdown table row per measurement.
#   usage: benchmarks/pipeline_time.sh [REPO]   (default: this checkout)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
export PREFECT_SERVER_ANALYTICS_ENABLED=false

seconds() { local start=$SECONDS; "$@" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }; echo $((SECONDS - start)); }
setup=$(seconds make setup)
first=$(seconds make run)
metrics=$(grep -E '^[a-z_]+ +test_' "$work/log" | awk '{sub(",", "", $3); printf "%s %s %s, ", $1, $2, $3}')
second=$(seconds make run)
cached=$(grep -c 'Cached(type=COMPLETED)' "$work/log" || true)

echo "| measurement | seconds |"
echo "| --- | --- |"
echo "| make setup (uv sync from the lock file) | $setup |"
echo "| first make run (primary test metric: ${metrics%, }) | $first |"
echo "| second make run, nothing changed ($cached stages cached) | $second ($((100 * second / first))% of the first) |"
