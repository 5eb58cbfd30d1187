#!/usr/bin/env bash
# Runs `stockd-load run` against two `stockd` binaries alternately (old, new, old, new, ...),
# each on a fresh 3-process cluster, with the same arguments, and prints each run's reserve
# line and the new/old ratio of the throughput and of the reserve p50 of every pair, then the
# medians. Ratios within one run are the result on a shared, noisy machine (SPEC section 5).
#
# Usage: scripts/stockd-ab.sh STOCKD_LOAD OLD_STOCKD NEW_STOCKD PAIRS [run arguments...]
# Example (docs/BENCHMARKS.md, "The server's shared state"):
#   scripts/stockd-ab.sh target/release/stockd-load /tmp/old-target/release/stockd \
#       target/release/stockd 3 --mode closed --concurrency 256 --duration 5 --warmup 1
set -euo pipefail
load=$1 old=$2 new=$3 pairs=$4
shift 4
line() { grep -E '^  reserve ' | head -1; }
rate() { awk '{ print $2 }'; }
p50() { awk '{ print $3 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rates=() p50s=()
for i in $(seq "$pairs"); do
    out_old=$("$load" run --quiet --stockd "$old" "$@" --out "/tmp/stockd-ab-$$-old-$i" | line)
    out_new=$("$load" run --quiet --stockd "$new" "$@" --out "/tmp/stockd-ab-$$-new-$i" | line)
    rm -rf "/tmp/stockd-ab-$$-old-$i" "/tmp/stockd-ab-$$-new-$i"
    echo "pair $i old: $out_old"
    echo "pair $i new: $out_new"
    r=$(ratio "$(echo "$out_new" | rate)" "$(echo "$out_old" | rate)")
    l=$(ratio "$(echo "$out_new" | p50)" "$(echo "$out_old" | p50)")
    rates+=("$r") p50s+=("$l")
    echo "pair $i: reserve/s new/old x$r, reserve p50 new/old x$l"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median of $pairs pairs: reserve/s new/old x$(median "${rates[@]}"), p50 new/old x$(median "${p50s[@]}")"
