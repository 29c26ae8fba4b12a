#!/usr/bin/env bash
# Seeds the fuzz corpora with OpenFlow 1.3 messages from encoders that are
# not ours: every Ryu `*.packet` (and the truncated one) and every `hex:`
# record of OVS's ofp-print tests. The corpora are gitignored; run this
# before the first `cargo fuzz run`. CONFORMANCE_DIR overrides where the
# corpus lives (default: shared/ beside the repository's checkout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${CONFORMANCE_DIR:-$here/../../../shared/conformance}
[[ -d $src/ryu/of13 ]] || {
  echo "no conformance corpus at $src: set CONFORMANCE_DIR" >&2
  exit 1
}

for target in decode frames; do
  out=$here/corpus/$target
  mkdir -p "$out"
  for f in "$src"/ryu/of13/*.packet "$src"/ryu/of13/*.truncated*; do
    [[ $f == *.json ]] && continue
    cp "$f" "$out/ryu-$(basename "$f")"
  done
  n=0
  while read -r hex; do
    n=$((n + 1))
    printf '%s' "$hex" | xxd -r -p >"$out/ovs-print-$n.bin"
  done < <(sed -n 's/^hex: //p' "$src/ovs/ofp-print-of13.txt")
  echo "$target: $(ls "$out" | wc -l) seeds in $out"
done
