#!/usr/bin/env bash
# The built-in tasks on a fresh clone: how long the main command takes (setup, a first run, a second run with
# nothing changed: every stage cached), and whether each task tells a better model from a worse one (the default
# configuration's test metric against a deliberately weaker one's, each weaker run a challenger in the registry).
# Prints two Markdown tables.
#   usage: [KEEP=1] benchmarks/builtin_tasks.sh [REPO]   (default: this checkout; KEEP=1 keeps the clone)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $work/clone" >&2 || trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
export PREFECT_SERVER_ANALYTICS_ENABLED=false

# task | the weaker configuration (--set arguments) | what it changes
WEAKER=(
  "language-id|--set tasks.language-id.train.epochs=2|2 epochs instead of 15"
  "digit-classification|--set tasks.digit-classification.train.epochs=5|5 epochs instead of 30"
  "keyword-spotting|--set tasks.keyword-spotting.train.epochs=4|4 epochs instead of 20"
  "translation-de-en|--set tasks.translation-de-en.train.epochs=3|3 epochs instead of 8"
  "connected-digits|--set tasks.connected-digits.train.epochs=1|1 epoch instead of 5"
)

seconds() { local start=$SECONDS; "$@" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }; echo $((SECONDS - start)); }
# The primary test metric of a task in the last command's results table: "test_accuracy 0.9284".
metric() { grep -E "^$1 +test_" "$work/log" | awk '{sub(",", "", $3); print $2, $3}'; }

setup=$(seconds make setup)
first=$(seconds make run)
declare -A default
for row in "${WEAKER[@]}"; do default[${row%%|*}]=$(metric "${row%%|*}"); done
second=$(seconds make run)
cached=$(grep -c 'Cached(type=COMPLETED)' "$work/log" || true)

echo "| measurement | seconds |"
echo "| --- | --- |"
echo "| make setup (uv sync from the lock file) | $setup |"
echo "| first make run (every built-in task) | $first |"
echo "| second make run, nothing changed ($cached stages cached) | $second ($((100 * second / first))% of the first) |"
echo
echo "| task | default: test metric | weaker configuration | its test metric | training + evaluation (s) |"
echo "| --- | --- | --- | --- | --- |"
for row in "${WEAKER[@]}"; do
  IFS='|' read -r task arguments change <<< "$row"
  # shellcheck disable=SC2086
  took=$(seconds .venv/bin/attnflow run --task "$task" $arguments)
  echo "| $task | ${default[$task]} | \`attnflow run --task $task $arguments\` ($change) | $(metric "$task") | $took |"
done
