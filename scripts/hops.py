#!/usr/bin/env python3
"""Where a replicated write's time goes: reads the hop traces of a local cluster's nodes
(server/src/hops.rs; `STOCKD_HOP_TRACE=PREFIX` writes PREFIX.PID per node) and prints, for
every entry the leader proposed alone in its log append, the time between its steps:

  proposed -> appended -> rpc_sent (first peer) -> peer_received (first peer)
  -> peer_answered -> rpc_answered (first answer: a majority of three) -> applying -> answered

then the same split by slice of the total (where the tail's time goes), then how long an entry
waited for its first AppendEntries by how many AppendEntries were in flight when it was
appended (openraft 0.9 keeps one in flight per follower), then the leader's whole part of a
client's request: frame read -> reply queued.

usage: scripts/hops.py PREFIX      (docs/BENCHMARKS.md, section Z)
"""
import bisect
import collections
import glob
import statistics
import sys

STEPS = ["proposed", "appended", "rpc_sent", "peer_received", "peer_answered",
         "rpc_answered", "applying", "answered"]


def read(prefix):
    events = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 5:
                    events.append((int(parts[0]), int(parts[1]), parts[2], int(parts[3]),
                                   int(parts[4])))
    events.sort()
    return events


def pct(values, q):
    return values[min(len(values) - 1, int(len(values) * q))]


def timelines(events):
    """Per log index of a one-entry append on the leader: the time of each step."""
    proposals = collections.Counter(e[1] for e in events if e[2] == "proposed")
    if not proposals:
        sys.exit("no 'proposed' step in the traces: was the trace on for the leader?")
    leader = proposals.most_common(1)[0][0]
    first = collections.defaultdict(dict)
    proposed = []
    for t, pid, hop, a, b in events:
        if pid == leader:
            if hop == "proposed":
                proposed.append(t)
            elif hop == "appended" and a == b and a > 0:
                first[a].setdefault("appended", t)
            elif hop in ("rpc_sent", "rpc_answered") and a > 0 and (hop != "rpc_sent" or a == b):
                first[a].setdefault(hop, t)
            elif hop in ("applying", "answered"):
                first[a].setdefault(hop, t)
        elif hop in ("peer_received", "peer_answered") and a == b and a > 0:
            first[a].setdefault(hop, t)
    rows = []
    for index, steps in first.items():
        if "appended" not in steps:
            continue
        k = bisect.bisect_right(proposed, steps["appended"]) - 1
        if k < 0:
            continue
        steps["proposed"] = proposed[k]
        if all(s in steps for s in STEPS):
            rows.append([steps[s] for s in STEPS])
    return leader, rows


def in_flight(events, leader):
    """Append -> first send of each entry, by AppendEntries in flight at the append."""
    out, sent, waits = 0, {}, collections.defaultdict(list)
    appended = []
    for t, pid, hop, a, b in events:
        if pid != leader:
            continue
        if hop == "rpc_sent":
            out += 1
            if a == b and a > 0:
                sent.setdefault(a, t)
        elif hop == "rpc_answered":
            out -= 1
        elif hop == "appended" and a == b and a > 0:
            appended.append((t, a, out))
    for t, index, busy in appended:
        if index in sent:
            waits[min(busy, 2)].append(sent[index] - t)
    return waits, len(appended)


def frames(events, leader):
    """Frame read -> reply queued on the leader, matched by frame id in order."""
    opened, spans = collections.defaultdict(collections.deque), []
    for t, pid, hop, a, _b in events:
        if pid != leader:
            continue
        if hop == "frame":
            opened[a].append(t)
        elif hop == "replied" and opened[a]:
            spans.append(t - opened[a].popleft())
    return sorted(spans)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    events = read(sys.argv[1])
    leader, rows = timelines(events)
    if not rows:
        sys.exit("no entry with every step traced")
    print(f"leader pid {leader}; {len(rows)} entries with every step traced (us)")
    names = [f"{STEPS[i]} -> {STEPS[i + 1]}" for i in range(len(STEPS) - 1)]
    gaps = [[r[i + 1] - r[i] for r in rows] for i in range(len(STEPS) - 1)]
    totals = sorted(r[-1] - r[0] for r in rows)
    print(f"{'step':40} {'p50':>6} {'p90':>6} {'p99':>6}")
    for name, values in zip(names, gaps):
        v = sorted(values)
        print(f"{name:40} {pct(v, .5):6} {pct(v, .9):6} {pct(v, .99):6}")
    print(f"{'total: proposed -> answered':40} {pct(totals, .5):6} {pct(totals, .9):6} "
          f"{pct(totals, .99):6}")

    print("\nmean of each step by slice of the total (us)")
    ordered = sorted(range(len(rows)), key=lambda i: rows[i][-1] - rows[i][0])
    print(f"{'slice':12} {'total':>6} " + " ".join(f"{s[:9]:>9}" for s in STEPS[1:]))
    for lo, hi in [(0, .5), (.5, .9), (.9, .98), (.98, 1)]:
        part = ordered[int(len(rows) * lo):int(len(rows) * hi)]
        if not part:
            continue
        total = statistics.mean(rows[i][-1] - rows[i][0] for i in part)
        means = [statistics.mean(gaps[g][i] for i in part) for g in range(len(gaps))]
        print(f"{lo:4.2f}-{hi:4.2f}   {total:6.0f} " + " ".join(f"{m:9.0f}" for m in means))

    waits, appended = in_flight(events, leader)
    print("\nappended -> first rpc_sent, by AppendEntries in flight at the append (us)")
    for busy in sorted(waits):
        v = sorted(waits[busy])
        label = f"{busy}{'+' if busy == 2 else ''} in flight"
        print(f"{label:12} {len(v):6} entries ({100 * len(v) / appended:4.1f}%)  p50 "
              f"{pct(v, .5):5}  p90 {pct(v, .9):5}  p99 {pct(v, .99):5}")

    spans = frames(events, leader)
    if spans:
        print(f"\nframe read -> reply queued on the leader (us), {len(spans)} frames: p50 "
              f"{pct(spans, .5)}  p90 {pct(spans, .9)}  p99 {pct(spans, .99)}")


if __name__ == "__main__":
    main()
