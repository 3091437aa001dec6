#!/usr/bin/env bash
# Compares our SBC with Kamailio (a stateful SIP proxy, another vendor's software) under the same call-rate
# ladder: `sbc-bench cps --target 127.0.0.1:5060 --compare 127.0.0.2:5060`, both targets measured by address,
# interleaved run by run, with ratios. See "Comparing with another SBC or proxy: Kamailio" in benches/README.md.
#
# What it does, from the repository root:
#   1. installs Kamailio if `kamailio` is missing: `apt-get install -y --no-install-recommends kamailio` (Debian
#      12 ships 5.6.3; needs root; the package's systemd service is not started here);
#   2. builds `cargo build --release -p sbc -p sbc-bench` and `-p tests --bin netprobe` (with -j$JOBS);
#   3. starts our sbc with config/examples/bench-loopback.toml (SIP on udp 127.0.0.1:5060, admin API
#      127.0.0.1:8080), adjusted in a temp copy (printed): the harness's addresses if HARNESS_IP/UAS_PORT are not
#      the defaults, and the media port pool (SBC_MEDIA_PORTS, SBC_MEDIA_QUARANTINE, below); waits for /health;
#   4. starts Kamailio with benches/kamailio/kamailio.cfg (udp 127.0.0.2:5060, every INVITE to the harness's
#      callee) in the foreground (-DD -E, pid file and runtime dir in a temp dir, -x fm: see KAMAILIO_MEM) and
#      waits until it listens;
#   5. both targets run pinned to core $TARGET_CORE (taskset, all their processes and threads); sbc-bench pins its
#      SIPp caller and callee to core 0 itself;
#   6. checks that each target carries calls (a 10-call smoke step each), then runs the ladder under `timeout`;
#   7. prints the table and where the JSON, the plot (.svg) and the table (.txt) are; stops sbc and Kamailio on
#      exit, error or Ctrl-C (trap on EXIT; only the processes it started, by pid).
#
# The media port pool: with hold time 0 each call takes two port pairs (one per leg) that then rest for the
# quarantine, so a call-rate ladder needs a pool sized for it (with 40000-49999 and the default 5 s the pool, not
# the SBC, capped the rate near 500 calls/s: 503 `no_ports` for 733 of 3 000 calls at 1 000/s). The example config
# has ports 10000-31999 (below Linux's ephemeral range 32768-60999, where client sockets would take ports from the
# pool) and a quarantine of 1 s: about 5 000 calls/s sustained. SBC_MEDIA_PORTS and SBC_MEDIA_QUARANTINE override
# them (empty: the example's values). Media is still anchored: every call allocates, binds and rewrites.
#
# Needs: root only to install Kamailio; sipp, taskset, ss (iproute2), python3, timeout; free: udp 127.0.0.1:5060,
# tcp 127.0.0.1:8080, udp 127.0.0.2:5060, udp $HARNESS_IP:$UAC_PORT and :$UAS_PORT. Takes about
# RUNS x 2 targets x steps x (STEP + ~2 s), plus the build: about 3.5 min of bench with the defaults on 2 cores.
#
# Environment (all optional):
#   RUNS=3                 complete runs (each climbs the ladder for both targets); the table shows medians
#   STEP=3                 seconds of traffic per step (each step places rate x STEP calls)
#   RATES=200,500,1000,1500,2000,2500,3000   the ladder, calls/s, ascending
#   OUT=target/bench/cps-kamailio.json       the JSON; the plot goes to .svg and the table to .txt next to it
#   BENCH_TIMEOUT=900      seconds before the bench gets SIGTERM (it stops after the current step; SIGKILL 60 s
#                          later)
#   TARGET_CORE=1          the core both targets are pinned to (pinning is off on a single-core machine)
#   HARNESS_IP=127.0.0.1   where the harness's SIPp caller and callee sit (sbc-bench --uac-ip, --uas); another
#                          loopback address (127.0.0.3) keeps clear of other programs on 127.0.0.1
#   UAC_PORT=5061          the caller's SIP port (--uac-port)
#   UAS_PORT=5070          the callee's SIP port (--uas HARNESS_IP:UAS_PORT); both targets route every number there
#   SBC_MEDIA_PORTS=10000-31999   our SBC's media port range (see above; empty: the example's)
#   SBC_MEDIA_QUARANTINE=1s       our SBC's port quarantine (empty: the example's)
#   JOBS=1                 cargo build jobs (-j)
#   BUILD=1                0: skip the cargo builds (use the binaries already in target/release)
#   KAMAILIO_CFG=benches/kamailio/kamailio.cfg
#   SBC_CONFIG=config/examples/bench-loopback.toml
#   KAMAILIO_SHM=2048      Kamailio's shared memory, MB (-m; only touched pages take RAM). tm keeps every
#                          transaction (two per call: INVITE, BYE; about 15 KB each with the cloned request) for
#                          wait_timer, 5 s, after it ends: with 256 MB Kamailio ran out of shared memory at 2500
#                          calls/s ("out of mem", 500 replies), a configuration limit rather than its ceiling
#   KAMAILIO_MEM=fm        Kamailio's memory manager (-x): fm (f_malloc, the fast one, as production setups run it).
#                          Empty: the package's default, q_malloc, built with memory debugging (DBG_SR_MEMORY),
#                          which here cost about 3x the CPU per call (71 % of the core at 1000 calls/s against 24 %
#                          with fm) and failed calls at 1000/s in 2 of 3 tries
#   KAMAILIO_CHILDREN=     UDP receiver processes (kamailio -n); default: the cfg's children=1 (see the cfg on
#                          why more reorder 180 and 200)
#   KEEP_LOGS=0            1: keep the temp dir with both targets' logs and the derived config (path printed)
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
STEP=${STEP:-3}
RATES=${RATES:-200,500,1000,1500,2000,2500,3000}
OUT=${OUT:-target/bench/cps-kamailio.json}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
TARGET_CORE=${TARGET_CORE:-1}
HARNESS_IP=${HARNESS_IP:-127.0.0.1}
UAC_PORT=${UAC_PORT:-5061}
UAS_PORT=${UAS_PORT:-5070}
SBC_MEDIA_PORTS=${SBC_MEDIA_PORTS-10000-31999}
SBC_MEDIA_QUARANTINE=${SBC_MEDIA_QUARANTINE-1s}
JOBS=${JOBS:-1}
BUILD=${BUILD:-1}
KAMAILIO_CFG=${KAMAILIO_CFG:-benches/kamailio/kamailio.cfg}
SBC_CONFIG=${SBC_CONFIG:-config/examples/bench-loopback.toml}
KAMAILIO_SHM=${KAMAILIO_SHM:-2048}
KAMAILIO_MEM=${KAMAILIO_MEM-fm}
KAMAILIO_CHILDREN=${KAMAILIO_CHILDREN:-}
KEEP_LOGS=${KEEP_LOGS:-0}

SBC_SIP=127.0.0.1:5060
SBC_API=127.0.0.1:8080
KAM_SIP=127.0.0.2:5060
UAS=$HARNESS_IP:$UAS_PORT
# The harness's own endpoints, for every sbc-bench call below.
HERE=(--uac-ip "$HARNESS_IP" --uac-port "$UAC_PORT" --uas "$UAS")

say() { echo "compare.sh: $*" >&2; }
die() { say "$*"; exit 1; }

work=$(mktemp -d /tmp/sbc-bench-kamailio.XXXXXX)
sbc_pid=
kam_pid=
kam_children=

# Stops one process this script started, by pid: SIGTERM, SIGKILL after 5 s.
stop() {
  local name=$1 pid=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) still running after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop kamailio "$kam_pid"
  # Kamailio's main process takes its children with it; any still there (pids recorded at start) go too.
  for p in $kam_children; do
    [[ $(cat /proc/"$p"/comm 2>/dev/null) == kamailio ]] && kill -KILL "$p" 2>/dev/null || true
  done
  stop sbc "$sbc_pid"
  if [[ $rc -ne 0 || $KEEP_LOGS == 1 ]]; then
    say "logs kept in $work (sbc.log, kamailio.log, sbc.toml)"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
# On Ctrl-C or SIGTERM during the ladder, sbc-bench gets SIGTERM too (through timeout): it stops after the
# current step and tears down its SIPp; then the targets go.
bench_pid=
on_signal() {
  if [[ -n $bench_pid ]] && kill -0 "$bench_pid" 2>/dev/null; then
    say "stopping sbc-bench after the current step"
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

need() { command -v "$1" >/dev/null || die "$1 is missing ($2)"; }
need sipp "apt-get install sipp"
need taskset "util-linux"
need ss "iproute2"
need python3 "apt-get install python3"
need timeout "coreutils"

# 1. Kamailio.
if ! command -v kamailio >/dev/null; then
  [[ $(id -u) -eq 0 ]] || die "kamailio is missing; installing it needs root: apt-get install -y --no-install-recommends kamailio"
  say "kamailio is missing: installing it with apt-get install -y --no-install-recommends kamailio"
  apt-get install -y --no-install-recommends kamailio >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends kamailio >&2; }
fi
say "$(kamailio -v 2>&1 | head -1)"
kam_args=(-f "$KAMAILIO_CFG" -A "UAS_URI=\"sip:$UAS\"")
kamailio -c "${kam_args[@]}" >"$work/kamailio-check.log" 2>&1 ||
  { cat "$work/kamailio-check.log" >&2; die "kamailio -c: $KAMAILIO_CFG does not parse"; }

# 2. Build.
if [[ $BUILD == 1 ]]; then
  say "building: cargo build -j$JOBS --release -p sbc -p sbc-bench; cargo build -j$JOBS --release -p tests --bin netprobe"
  cargo build -j"$JOBS" --release -p sbc -p sbc-bench
  cargo build -j"$JOBS" --release -p tests --bin netprobe
fi
for b in sbc sbc-bench netprobe; do
  [[ -x target/release/$b ]] || die "target/release/$b is missing (run with BUILD=1)"
done

# The addresses must be free: another bench or SBC on them would take our calls.
busy() { # u|t ADDR:PORT
  ss -Hn "-${1}l" "src $2" 2>/dev/null | grep -q .
}
for a in "$SBC_SIP" "$KAM_SIP" "$HARNESS_IP:$UAC_PORT" "$UAS"; do
  ! busy u "$a" || die "UDP $a is already in use: $(ss -Hnulp "src $a" | head -1)"
done
! busy t "$SBC_API" || die "TCP $SBC_API is already in use: $(ss -Hntlp "src $SBC_API" | head -1)"

# Our SBC's configuration: the example, with the harness's addresses and the media pool (see the header).
python3 - "$SBC_CONFIG" "$work/sbc.toml" "$HARNESS_IP" "$UAS" "$SBC_MEDIA_PORTS" "$SBC_MEDIA_QUARANTINE" <<'PY'
import re, sys
src, dst, ip, uas, ports, quarantine = sys.argv[1:]
text = open(src).read()
def sub(pattern, repl, text):
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != 1:
        sys.exit(f"compare.sh: {src}: expected one match of {pattern!r}, found {n}")
    return new
text = sub(r'source = \["127\.0\.0\.1/32"\]', f'source = ["{ip}/32"]', text)
text = sub(r'gateways = \["udp:127\.0\.0\.1:5070"\]', f'gateways = ["udp:{uas}"]', text)
if ports:
    text = sub(r'^ports = ".*"$', f'ports = "{ports}"', text)
if quarantine:
    text = sub(r'^(ports = ".*")$', rf'\1\nquarantine = "{quarantine}"', text)
open(dst, "w").write(text)
PY
target/release/sbc check-config "$work/sbc.toml" >&2 || die "the derived config $work/sbc.toml does not check"
say "sbc config: $SBC_CONFIG with caller $HARNESS_IP, callee $UAS, media ports ${SBC_MEDIA_PORTS:-as shipped}, quarantine ${SBC_MEDIA_QUARANTINE:-as shipped}"

pin=()
if [[ $(nproc) -ge 2 ]]; then
  pin=(taskset -c "$TARGET_CORE")
  say "pinning: sbc and kamailio on core $TARGET_CORE (SIPp on core 0, by sbc-bench)"
else
  say "pinning: off (a single core)"
fi

# 3. Our SBC.
"${pin[@]}" target/release/sbc --config "$work/sbc.toml" >"$work/sbc.log" 2>&1 &
sbc_pid=$!
for i in $(seq 100); do
  kill -0 "$sbc_pid" 2>/dev/null || { tail -20 "$work/sbc.log" >&2; die "sbc exited at start"; }
  if target/release/netprobe http-get "$SBC_API" /health >/dev/null 2>&1 && busy u "$SBC_SIP"; then
    break
  fi
  [[ $i -lt 100 ]] || { tail -20 "$work/sbc.log" >&2; die "sbc did not answer http://$SBC_API/health within 20 s"; }
  sleep 0.2
done
say "sbc (pid $sbc_pid) healthy, SIP on udp $SBC_SIP"

# 4. Kamailio.
mkdir -p "$work/run"
kam_args+=(-DD -E -P "$work/kamailio.pid" -Y "$work/run" -m "$KAMAILIO_SHM")
[[ -z $KAMAILIO_MEM ]] || kam_args+=(-x "$KAMAILIO_MEM")
[[ -z $KAMAILIO_CHILDREN ]] || kam_args+=(-n "$KAMAILIO_CHILDREN")
"${pin[@]}" kamailio "${kam_args[@]}" >"$work/kamailio.log" 2>&1 &
kam_pid=$!
for i in $(seq 100); do
  kill -0 "$kam_pid" 2>/dev/null || { tail -20 "$work/kamailio.log" >&2; die "kamailio exited at start"; }
  busy u "$KAM_SIP" && break
  [[ $i -lt 100 ]] || { tail -20 "$work/kamailio.log" >&2; die "kamailio did not listen on udp $KAM_SIP within 20 s"; }
  sleep 0.2
done
sleep 0.5
kam_children=$(pgrep -P "$kam_pid" || true)
say "kamailio (pid $kam_pid, $(echo $kam_children | wc -w) child processes) listening on udp $KAM_SIP, calls to $UAS; kamailio ${kam_args[*]}"

# 5. Both targets pinned: check what taskset set (every thread of sbc, every Kamailio process).
if [[ ${#pin[@]} -gt 0 ]]; then
  for p in $(ls /proc/"$sbc_pid"/task) $kam_pid $kam_children; do
    aff=$(taskset -cp "$p" 2>/dev/null | awk '{print $NF}') || continue
    [[ $aff == "$TARGET_CORE" ]] || die "pid/tid $p runs on cores $aff, not $TARGET_CORE"
  done
fi

# 6. A smoke step per target: 10 calls at 10/s must all complete, or the ladder would measure a misrouting.
for t in "$SBC_SIP" "$KAM_SIP"; do
  json="$work/smoke-${t//[:.]/_}.json"
  timeout --kill-after=10 60 target/release/sbc-bench cps --target "$t" --no-compare "${HERE[@]}" --runs 1 \
    --rates 10 --step-secs 1 --out "$json" >"$work/smoke.out" 2>"$work/smoke.err" ||
    { cat "$work/smoke.err" >&2; die "smoke step against $t failed to run"; }
  python3 - "$json" "$t" <<'PY' || { cat "$work/smoke.err" >&2; die "smoke step against $t: calls did not complete (does it route every number to $UAS?)"; }
import json, sys
d = json.load(open(sys.argv[1]))
step = d["ladders"][0]["steps"][0]
print(f"compare.sh: smoke step against {sys.argv[2]}: {step['successful']}/{step['calls']} calls completed", file=sys.stderr)
sys.exit(0 if step["pass"] else 1)
PY
done

# CPU time (utime + stime, clock ticks) of a target's processes: sbc-bench measures a target's CPU only when it
# starts the target itself, so this script takes it over the whole ladder, per target.
ticks() { # PID...
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(sed 's/.*) //' /proc/"$p"/stat | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# 7. The ladder.
mkdir -p "$(dirname "$OUT")"
txt=${OUT%.json}.txt
say "$(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cmd=(target/release/sbc-bench cps --target "$SBC_SIP" --compare "$KAM_SIP" "${HERE[@]}"
  --runs "$RUNS" --step-secs "$STEP" --rates "$RATES" --out "$OUT")
say "running: ${cmd[*]}"
sbc_t0=$(ticks "$sbc_pid")
kam_t0=$(ticks "$kam_pid" $kam_children)
timeout --signal=TERM --kill-after=60 "$BENCH_TIMEOUT" "${cmd[@]}" >"$txt" &
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=
cat "$txt"
sbc_t1=$(ticks "$sbc_pid")
kam_t1=$(ticks "$kam_pid" $kam_children)
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in "$sbc_pid" "$kam_pid"; do
  kill -0 "$p" 2>/dev/null || say "warning: target pid $p exited during the bench (logs in $work)"
done
# Both targets log warnings and errors only: say how many there were (out of memory, failed sends, ...).
for f in sbc kamailio; do
  n=$(grep -c -E 'ERROR|WARN|CRITICAL' "$work/$f.log" || true)
  [[ $n -eq 0 ]] || { say "$f logged $n warnings/errors (kept in $work/$f.log), the most frequent:"; KEEP_LOGS=1
    sed -E 's/\x1b\[[0-9;]*m//g' "$work/$f.log" | grep -oE '(ERROR|WARN|CRITICAL).*' | cut -c1-160 | sort | uniq -c | sort -rn | head -3 >&2; }
done
[[ $rc -ne 124 ]] || say "the bench ran into BENCH_TIMEOUT=$BENCH_TIMEOUT s"
[[ $rc -eq 0 ]] || die "sbc-bench exited with status $rc"
# CPU per completed call over the whole bench: each target was idle while the other was measured, so its CPU
# time is (nearly) all its own calls' work; clock ticks of 10 ms, so short runs are coarse.
python3 - "$OUT" "$SBC_SIP" "$((sbc_t1 - sbc_t0))" "$KAM_SIP" "$((kam_t1 - kam_t0))" <<'PY' | tee -a "$txt"
import json, sys
d = json.load(open(sys.argv[1]))
print("CPU per completed call over the whole bench (utime+stime of the target's processes on its core, all steps)")
for label, ticks in ((sys.argv[2], int(sys.argv[3])), (sys.argv[4], int(sys.argv[5]))):
    calls = sum(s["successful"] for l in d["ladders"] if l["target"] == label for s in l["steps"])
    per = f"{ticks * 10 / calls:.3f} ms/call" if calls else "-"
    print(f"  {label:<30}{ticks / 100:>8.2f} s CPU {calls:>8} calls  {per}")
PY
say "results: table $txt, every step $OUT, plot ${OUT%.json}.svg"
