#!/usr/bin/env bash
# Prints each codec benchmark's median and its 95% confidence interval, in
# nanoseconds, from criterion's last run, as the rows of docs/benchmarks.md.
# Usage: ofp/benches/medians.sh [criterion dir]
# (default: $CARGO_TARGET_DIR/criterion, else target/criterion).
set -euo pipefail

dir=${1:-${CARGO_TARGET_DIR:-target}/criterion}
[[ -d $dir ]] || {
  echo "no criterion results in $dir: run 'cargo bench -p ofp' first" >&2
  exit 1
}
echo "| benchmark | median (ns) | 95% CI of the median (ns) |"
echo "|---|---:|---|"
find "$dir" -path '*/new/estimates.json' | sort | while read -r f; do
  name=${f#"$dir"/}
  name=${name%/new/estimates.json}
  jq -r --arg n "$name" '.median as $m
    | "| `\($n)` | \($m.point_estimate * 10 | round / 10) | \($m.confidence_interval.lower_bound * 10 | round / 10) – \($m.confidence_interval.upper_bound * 10 | round / 10) |"' "$f"
done
