#!/usr/bin/env bash
# Pauses of a 3-process stockd cluster while it takes snapshots under a steady checkout load
# (docs/BENCHMARKS.md, "Snapshots off the apply path"). Starts three `stockd` processes on
# loopback (own data directories, own ports), loads SKUS balances and runs an open-loop
# checkout at RATE/s with `stockd-load run --connect`, samples every node's `stockctl status
# --json` every 5 s, then prints per node: the longest apply pause and read wait of the
# measured window (from the per-second maxima the status keeps) and since start, and the
# snapshots taken in the window; then the checkout latencies stockd-load measured.
#
# Usage: scripts/snapshot-pauses.sh STOCKD STOCKD_LOAD STOCKCTL OUT_DIR [stockd flags...]
# Environment: SKUS (default 1000000), RATE (2000), DURATION (60), WARMUP (5), BASE_PORT (7710).
# Example:
#   scripts/snapshot-pauses.sh target/release/stockd target/release/stockd-load \
#       target/release/stockctl /tmp/pauses-new --snapshot-every 20000
set -euo pipefail
stockd=$(realpath "$1") load=$(realpath "$2") stockctl=$(realpath "$3") out=$4
shift 4
skus=${SKUS:-1000000} rate=${RATE:-2000} duration=${DURATION:-60} warmup=${WARMUP:-5}
base=${BASE_PORT:-7710}
mkdir -p "$out"
root=$(mktemp -d /tmp/stockd-pauses.XXXXXX)
pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$root"
}
trap stop EXIT
addrs=() peers=()
for id in 1 2 3; do
    addrs+=("127.0.0.1:$((base + id - 1))")
    peers+=(--peer "$id=127.0.0.1:$((base + id - 1))")
    "$stockd" certs --ca-dir "$root/ca" --out "$root/n$id" > /dev/null
done
for id in 1 2 3; do
    "$stockd" --id "$id" --listen "${addrs[$((id - 1))]}" --data-dir "$root/n$id" \
        --ca-dir "$root/ca" "${peers[@]}" "$@" > "$out/n$id.log" 2>&1 &
    pids+=($!)
done
connect=$(IFS=,; echo "${addrs[*]}")
status() { "$stockctl" --connect "$connect" --ca "$root/ca/ca.pem" status --json 2>/dev/null; }
for _ in $(seq 100); do
    status | grep -q '"role":"Leader"' && break
    sleep 0.2
done
(
    while true; do
        echo "{\"at_ms\": $(date +%s%3N), \"nodes\": $(status || echo null)}" >> "$out/status.jsonl"
        sleep 5
    done
) &
sampler=$!
pids+=("$sampler")
started_ms=$(date +%s%3N)
"$load" run --connect "$connect" --ca "$root/ca/ca.pem" --scenario checkout --skus "$skus" \
    --mode open --rate "$rate" --duration "$duration" --warmup "$warmup" --out "$out/load" \
    > "$out/load.txt" 2> "$out/load.err" || { cat "$out/load.err"; exit 1; }
ended_ms=$(date +%s%3N)
sleep 1
echo "{\"at_ms\": $(date +%s%3N), \"nodes\": $(status || echo null)}" >> "$out/status.jsonl"
kill "$sampler" 2>/dev/null || true
loaded_s=$(grep -o 'loaded [0-9]* balances in [0-9.]* s' "$out/load.err" | awk '{print $5}')
python3 - "$out" "$started_ms" "$loaded_s" "$warmup" "$ended_ms" <<'EOF' | tee "$out/summary.txt"
import json, sys
out, started, loaded, warmup, ended = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
begin = started + int((loaded + warmup) * 1000)
samples = [json.loads(line) for line in open(f"{out}/status.jsonl")]
samples = [s for s in samples if s["nodes"]]
print(f"measured window: {(ended - begin) / 1000:.1f} s after loading ({loaded:.1f} s) and warm-up")
nodes = {}
for sample in samples:
    for n in sample["nodes"]:
        st = n.get("status")
        if st:
            nodes.setdefault(st["node"]["id"], []).append((sample["at_ms"], st))
for nid, seen in sorted(nodes.items()):
    apply = read = 0
    for _, st in seen:
        for sec in st["pauses"]["recent"]:
            if begin <= sec["start_ms"] < ended:
                apply = max(apply, sec["apply_pause_max_us"])
                read = max(read, sec["read_wait_max_us"])
    before = [st for at, st in seen if at <= begin] or [seen[0][1]]
    last = seen[-1][1]
    first = before[-1]
    snaps = sorted({st["snapshot_index"] for at, st in seen if at >= begin} - {first["snapshot_index"]})
    built = last["snapshots"]["built_total"] - first["snapshots"]["built_total"]
    lb = last["snapshots"]["last"]
    print(f"node {nid} ({last['role']}): window apply_pause_max={apply / 1000:.3f} ms "
          f"read_wait_max={read / 1000:.3f} ms; since start {last['pauses']['apply_pause_max_us'] / 1000:.3f} / "
          f"{last['pauses']['read_wait_max_us'] / 1000:.3f} ms; snapshots in window at {snaps} "
          f"(built {built}); last build {lb}; balances {last['ledger']['balances']}, "
          f"dedup {last['ledger']['dedup_entries']}, applied {last['applied_index']}")
EOF
grep -iE 'reserve|commit|achieved|late' "$out/load.txt" | head -20
