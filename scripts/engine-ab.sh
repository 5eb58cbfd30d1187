#!/usr/bin/env bash
# Runs two builds of `reserve_loop` alternately (old, new, old, new, ...) with the same
# arguments and prints each run's result line and the new/old ratio of every pair, then the
# median ratio. Ratios within one run are the result on a shared, noisy machine (SPEC section
# 5); single absolute figures are notes.
#
# Usage: scripts/engine-ab.sh OLD_BINARY NEW_BINARY PAIRS [reserve_loop arguments...]
# Example (docs/BENCHMARKS.md, "Paged layout"):
#   git worktree add /tmp/old-engine 2f38054
#   (cd /tmp/old-engine && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p benches --bin reserve_loop)
#   cargo build --release -p benches --bin reserve_loop
#   scripts/engine-ab.sh /tmp/old-target/release/reserve_loop target/release/reserve_loop 3 122 8192 1 warm
set -euo pipefail
old=$1 new=$2 pairs=$3
shift 3
rate() { grep -o '[0-9]* reservations/s' | head -1 | cut -d' ' -f1; }
expiry() { grep -o '[0-9]* holds/s' | head -1 | cut -d' ' -f1; }
ratios=() expiry_ratios=()
for i in $(seq "$pairs"); do
    out_old=$("$old" "$@")
    out_new=$("$new" "$@")
    echo "pair $i old: $(echo "$out_old" | tr '\n' ' ')"
    echo "pair $i new: $(echo "$out_new" | tr '\n' ' ')"
    r=$(awk -v a="$(echo "$out_new" | rate)" -v b="$(echo "$out_old" | rate)" 'BEGIN { printf "%.2f", a / b }')
    e=$(awk -v a="$(echo "$out_new" | expiry)" -v b="$(echo "$out_old" | expiry)" 'BEGIN { printf "%.2f", a / b }')
    ratios+=("$r") expiry_ratios+=("$e")
    echo "pair $i: reservations/s new/old x$r, expiry holds/s new/old x$e"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median of $pairs pairs: reservations/s new/old x$(median "${ratios[@]}"), expiry new/old x$(median "${expiry_ratios[@]}")"
