#!/usr/bin/env bash
# Runs the parse benchmark several times (criterion's median per run) and prints the median ratio of the
# reference parser's time to ours, per group. The machine is small and noisy: one run proves nothing.
# Usage: benches/compare.sh [RUNS]   (default 5). Ends with the paired measurement (see sip_parse.rs --paired).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo bench -p sbc-bench --bench sip_parse --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/sip_parse-* | grep -v '\.d$' | head -1)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
  # Core 0 only, so a second core stays free for the rest of the system.
  taskset -c 0 "$bin" --bench --warm-up-time 1 --measurement-time 2 2>/dev/null |
    awk '/^[a-z+]+\/[A-Za-z0-9]+\// {name=$1}
         /time:/ {for (i = 1; i <= NF; i++) if ($i == "time:") break; v = $(i + 3); u = $(i + 4);
                  if (u != "ns" && u != "µs" && u != "ms") next;
                  if (u == "ns") v /= 1000; if (u == "ms") v *= 1000; print name, v}' >>"$out"
done
python3 - "$out" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, v = line.split()
    t[name].append(float(v))
groups = sorted({n.rsplit('/', 1)[0] for n in t if n.startswith('parse')})
print(f"{'group':28} {'sbc-proto µs':>13} {'ezk-sip-types µs':>17} {'ratio (median of runs)':>23}")
for g in groups:
    ours, ref = t[g + '/sbc-proto'], t[g + '/ezk-sip-types']
    ratios = [r / o for o, r in zip(ours, ref)]
    print(f"{g:28} {statistics.median(ours):13.2f} {statistics.median(ref):17.2f} {statistics.median(ratios):22.2f}x")
PY

# The paired measurement (ours and the reference in alternating short batches, ratio per pair): steadier than
# criterion's one-function-at-a-time on a VM whose speed drifts. Median over the runs of each run's median ratio.
echo
paired=$(mktemp)
trap 'rm -f "$out" "$paired"' EXIT
for _ in $(seq "$runs"); do
  taskset -c 0 "$bin" --paired | awk '/^parse\+serialize/ {sub("x", "", $4); print $1, $2, $3, $4}' >>"$paired"
done
python3 - "$paired" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, o, r, ratio = line.split()
    t[name].append((float(o), float(r), float(ratio)))
print(f"{'paired':28} {'sbc-proto µs':>13} {'ezk-sip-types µs':>17} {'ratio: median, min-max':>25}")
for name, v in sorted(t.items()):
    ratios = [x[2] for x in v]
    print(f"{name:28} {statistics.median(x[0] for x in v):13.2f} {statistics.median(x[1] for x in v):17.2f} "
          f"{statistics.median(ratios):12.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
PY
