#!/usr/bin/env bash
# A CPU profile of our sbc's call path: `sbc-bench cps` holds one steady rate against the local sbc (media
# anchored, pinned to core 1, as in the Kamailio + rtpengine comparison) while `perf record` samples the sbc; the
# stacks are folded and drawn as a flame graph. See "Where the CPU of a call goes" in benches/README.md.
#
#   benches/perf/cps-flamegraph.sh                       # 1000 calls/s, 10 s of samples -> benches/perf/cps-flamegraph.svg
#   RATE=800 SECS=15 OUT=/tmp/f.svg FOLDED=/tmp/f.folded benches/perf/cps-flamegraph.sh   # keep the folded stacks
#
# Needs root, perf (Debian: linux-perf) and inferno's `inferno-collapse-perf` and `inferno-flamegraph`
# (`cargo install inferno`); the release build has line tables (profile.release debug = 1), so the stacks are
# unwound from DWARF (Rust's release code keeps no frame pointers).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-1000}
SECS=${SECS:-10}
OUT=${OUT:-benches/perf/cps-flamegraph.svg}
SBC=${SBC:-target/release/sbc}

die() { echo "cps-flamegraph.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, perf on another process)"
for p in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$p" >/dev/null || die "$p is missing (perf: apt-get install linux-perf; inferno: cargo install inferno)"
done
[[ -x target/release/sbc-bench && -x $SBC ]] || die "build first: cargo build --release -p sbc -p sbc-bench -p tests --bins"

work=$(mktemp -d)
bench_pid=
cleanup() {
  [[ -z $bench_pid ]] || kill -TERM "$bench_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# One step long enough for the warm-up, the samples and some slack.
step=$((SECS + 8))
target/release/sbc-bench cps --target "local:$SBC" --no-compare --media --runs 1 --rates "$RATE" \
  --step-secs "$step" --out "$work/cps.json" >"$work/cps.txt" 2>"$work/cps.err" &
bench_pid=$!

# The sbc the harness started: a child of `ip netns exec` ... exec'd, so its name is the binary's file name (as the
# kernel keeps it: at most 15 characters), `sbc` unless SBC names another build.
# sbc-bench first brings the release build up to date (cargo), which may take minutes.
sbc_pid=
sbc_name=$(basename "$SBC" | cut -c1-15)
while kill -0 "$bench_pid" 2>/dev/null; do
  sbc_pid=$(pgrep -n -x "$sbc_name" -P "$bench_pid" || true)
  [[ -n $sbc_pid ]] && break
  sleep 0.1
done
[[ -n $sbc_pid ]] || { cat "$work/cps.err" >&2; die "no sbc started by sbc-bench"; }
sleep 4 # the step's first seconds: the UAS starts, the rate settles
echo "cps-flamegraph.sh: perf record on sbc pid $sbc_pid for $SECS s at $RATE calls/s" >&2
perf record -F 499 -g --call-graph dwarf,32768 -p "$sbc_pid" -o "$work/perf.data" -- sleep "$SECS" 2>"$work/perf.err" ||
  { cat "$work/perf.err" >&2; die "perf record failed"; }
wait "$bench_pid" || true
bench_pid=
grep -E '^\[run' "$work/cps.err" >&2 || true

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
mkdir -p "$(dirname "$OUT")"
inferno-flamegraph --title "sbc call path at $RATE calls/s (cps, media anchored, one core)" \
  --minwidth 0.2 <"$work/folded" >"$OUT"
echo "cps-flamegraph.sh: $OUT" >&2
[[ -z ${FOLDED:-} ]] || cp "$work/folded" "$FOLDED"
# Per thread (the first frame of each stack is the thread's name).
awk '{ n = $NF; total += n; split($0, f, ";"); t[f[1]] += n }
     END { for (k in t) printf "thread %5.1f %%  %s\n", 100 * t[k] / total, k }' "$work/folded" | sort -k2 -rn
# What the flame graph says in numbers: the functions the samples were in (self time), and the frames most
# samples passed through (total time, each frame counted once per stack), in percent of all samples.
awk '{ n = $NF; $NF = ""; total += n; k = split($0, f, ";"); sub(/ +$/, "", f[k]); self[f[k]] += n
       delete seen; for (i = 1; i <= k; i++) { g = f[i]; sub(/ +$/, "", g); if (!(g in seen)) { seen[g] = 1; incl[g] += n } } }
     END { for (s in self) printf "self  %5.1f %%  %s\n", 100 * self[s] / total, s | "sort -k2 -rn | head -25"
           close("sort -k2 -rn | head -25")
           for (s in incl) printf "total %5.1f %%  %s\n", 100 * incl[s] / total, s | "sort -k2 -rn | head -60" }' \
  "$work/folded" | cut -c1-200
