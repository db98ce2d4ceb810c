#!/usr/bin/env bash
# The benchmark of issue 13 ("Users at rest", BENCHMARKS.md), in one run, loopback only:
#   (a) SOCKS5 username/password handshakes/s: this build (users hashed in the store, warm
#       cache) vs the clear-text build before the store (84a94e1^1), interleaved A B A B ...;
#   (b) the cold argon2id cost per verification (criterion, `cargo bench -p socks5d-store`)
#       and the first login of a user through the server (cold) vs its next logins (warm);
#   (c) one good client's handshakes/s alone vs beside FLOOD wrong-password clients (looping,
#       from other loopback addresses): the good user's name with a wrong password, and
#       FLOOD distinct unknown names (verified against the decoy hash).
# Server pinned to SERVER_CPUS, load generator to LOADGEN_CPUS (as bench/before_after.sh).
#
# Usage: bash bench/store_bench.sh
# Environment (defaults):
#   BEFORE=PATH      socks5d release binary of 84a94e1^1; default: built once in
#                    target/store-bench/before (a git worktree, a few minutes the first time)
#   SECS=5           seconds per handshake run
#   PAIRS=3          interleaved before/after pairs in (a), rounds in (c)
#   CONCURRENCY=32   handshakes in flight in (a)
#   COLD_USERS=10    users whose first login is timed in (b)
#   FLOOD=200        wrong-password clients in (c)
#   CRITERION=1      0 leaves out the criterion bench in (b)
#   SERVER_CPUS=0 LOADGEN_CPUS=1
# Results: a table on stdout; every loadgen JSON in target/store-bench/<UTC time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SECS=${SECS:-5} PAIRS=${PAIRS:-3} CONCURRENCY=${CONCURRENCY:-32} COLD_USERS=${COLD_USERS:-10}
FLOOD=${FLOOD:-200} CRITERION=${CRITERION:-1} SERVER_CPUS=${SERVER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
base_rev=84a94e1^1
out=target/store-bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
py=/usr/bin/python3
[ -x $py ] || { echo "store_bench.sh: needs $py" >&2; exit 1; }

echo "# store_bench.sh $(date -u '+%F %T UTC'), $(nproc) CPUs, $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
echo "# load before: $(uptime)"

cargo build -q --release -p socks5d -p socks5d-bench
after=$root/target/release/socks5d
loadgen=$root/target/release/socks5d-loadgen
if [ -z "${BEFORE:-}" ]; then
  wt=$root/target/store-bench/before
  if [ ! -x "$wt/target/release/socks5d" ]; then
    [ -d "$wt" ] || git worktree add -q --detach "$wt" "$base_rev"
    (cd "$wt" && cargo build -q --release -p socks5d)
  fi
  BEFORE=$wt/target/release/socks5d
fi
echo "# before: $BEFORE ($base_rev), after: $after"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$out"/state-*
}
trap cleanup EXIT

port=$((22000 + RANDOM % 20000))
# start NAME BIN ARGS...: starts a server on a fresh port pair; sets $pid and $proxy.
start() {
  local name=$1 bin=$2
  shift 2
  port=$((port + 2))
  taskset -c "$SERVER_CPUS" "$bin" -p $port -P $((port + 1)) --admin-transport tcp \
    --log-level error "$@" >"$out/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  proxy=127.0.0.1:$port
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    kill -0 $pid 2>/dev/null || { echo "$name did not start:" >&2; cat "$out/$name.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "$name did not start within 10 s" >&2
  exit 1
}
# A fresh state directory per server, removed at exit.
state_dir() { mkdir -p "$out/state-$1" && echo "$out/state-$1"; }
lg() { taskset -c "$LOADGEN_CPUS" "$loadgen" "$@"; }
# drain PID: waits (at most 60 s) until the server has used under 10 % of a CPU for 0.5 s: a
# flood leaves verifications queued for clients that are gone (the server finishes every
# verification it started), which would otherwise slow the next run down.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
drain() {
  local t0 t1 hz
  hz=$(getconf CLK_TCK)
  for _ in $(seq 120); do
    t0=$(ticks "$1")
    sleep 0.5
    t1=$(ticks "$1")
    [ $((t1 - t0)) -lt $((hz / 20)) ] && return
  done
  echo "warning: server $1 still busy after 60 s" >&2
}
# field FILE EXPR: a value of a loadgen JSON file (EXPR in Python on `r`).
field() { $py -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }

echo
echo "## (a) user/pass handshakes/s, concurrency $CONCURRENCY, ${SECS} s per run, interleaved"
start before "$BEFORE" -u bench:bench-password -a root:rootpw
before_pid=$pid before_proxy=$proxy
start after "$after" --state-dir "$(state_dir after)" -u bench:bench-password -a root:rootpw
after_pid=$pid after_proxy=$proxy
# Warm the after build's cache (its first login costs one argon2id verification).
lg handshake --proxy "$after_proxy" --auth bench:bench-password --concurrency 1 \
  --handshake-count 1 --json >/dev/null
printf '%-6s %-7s %13s %9s %9s %16s %7s\n' pair build handshakes/s p50_us p99_us server_cpu_us/hs errors
for i in $(seq "$PAIRS"); do
  for b in before after; do
    if [ $b = before ]; then p=$before_proxy s=$before_pid; else p=$after_proxy s=$after_pid; fi
    f=$out/a-$i-$b.json
    lg handshake --proxy "$p" --auth bench:bench-password --server-pid "$s" \
      --concurrency "$CONCURRENCY" --handshake-secs "$SECS" --json >"$f"
    h='r["handshake"]'
    printf '%-6s %-7s %13.0f %9.0f %9.0f %16.1f %7d\n' "$i" $b "$(field "$f" "$h['per_sec']")" \
      "$(field "$f" "$h['p50_us']")" "$(field "$f" "$h['p99_us']")" \
      "$(field "$f" "$h['server_cpu_us_per_handshake'] or 0")" "$(field "$f" "$h['errors']")"
  done
done
$py - "$out" "$PAIRS" <<'PY'
import json, sys, statistics as st
out, n = sys.argv[1], int(sys.argv[2])
rate = lambda i, b: json.load(open(f"{out}/a-{i}-{b}.json"))["handshake"]["per_sec"]
ratios = [rate(i, "after") / rate(i, "before") for i in range(1, n + 1)]
mb = st.mean(rate(i, "before") for i in range(1, n + 1))
ma = st.mean(rate(i, "after") for i in range(1, n + 1))
print(f"mean: before {mb:.0f}/s, after {ma:.0f}/s: after/before {ma / mb:.3f}; "
      f"per pair {', '.join(f'{r:.3f}' for r in ratios)} (target: within 5 %)")
PY
kill "$before_pid" "$after_pid"

echo
echo "## (b) cold argon2id verification; first login through the server"
if [ "$CRITERION" = 1 ]; then
  # On the server's CPUs, as the server's verifications run.
  taskset -c "$SERVER_CPUS" cargo bench -q -p socks5d-store --bench store -- argon2id_cold_verify 2>&1 |
    tee "$out/criterion.txt" | grep -E 'argon2id_cold_verify|time:' || true
fi
users=()
for i in $(seq "$COLD_USERS"); do users+=(-u "cold$i:cold-password-$i"); done
start cold "$after" --state-dir "$(state_dir cold)" "${users[@]}" -a root:rootpw
cold_pid=$pid
for i in $(seq "$COLD_USERS"); do
  lg handshake --proxy "$proxy" --auth "cold$i:cold-password-$i" --concurrency 1 \
    --server-pid "$cold_pid" --handshake-count 1 --json >"$out/b-cold-$i.json"
  lg handshake --proxy "$proxy" --auth "cold$i:cold-password-$i" --concurrency 1 \
    --handshake-count 100 --json >"$out/b-warm-$i.json"
done
$py - "$out" "$COLD_USERS" <<'PY'
import json, sys, statistics as st
out, n = sys.argv[1], int(sys.argv[2])
get = lambda k, i: json.load(open(f"{out}/b-{k}-{i}.json"))["handshake"]
cold = [get("cold", i) for i in range(1, n + 1)]
warm = [get("warm", i) for i in range(1, n + 1)]
bad = sum(h["errors"] for h in cold + warm)
c = sorted(h["p50_us"] for h in cold)
w = sorted(h["p50_us"] for h in warm)
print(f"first login (cold, whole cycle), {n} users: median {st.median(c) / 1000:.1f} ms, "
      f"min {c[0] / 1000:.1f} ms, max {c[-1] / 1000:.1f} ms")
cpu = [h["server_cpu_us_per_handshake"] for h in cold if h["server_cpu_us_per_handshake"] is not None]
if cpu:
    print(f"server CPU per first login: mean {st.mean(cpu) / 1000:.1f} ms "
          f"(10 ms clock ticks: only the mean of {len(cpu)} means something)")
print(f"next logins (warm, p50 of 100 each): median {st.median(w):.0f} µs; "
      f"cold - warm: {(st.median(c) - st.median(w)) / 1000:.1f} ms; {bad} errors")
PY
kill "$cold_pid"

echo
echo "## (c) one good client (concurrency 1) alone vs beside $FLOOD wrong-password clients, ${SECS} s per run"
start flood "$after" --state-dir "$(state_dir flood)" -u good:good-password -a root:rootpw
flood_pid=$pid
lg handshake --proxy "$proxy" --auth good:good-password --concurrency 1 --handshake-count 1 \
  --json >/dev/null
printf '%-6s %-15s %10s %8s %8s %12s %9s %7s %10s\n' round run good_hs/s p50_us p99_us flood_tries/s rejected closed timed_out
for i in $(seq "$PAIRS"); do
  for k in alone same-user distinct-users; do
    f=$out/c-$i-$k.json
    case $k in
      alone) extra=() ;;
      same-user) extra=(--flood "$FLOOD" --flood-auth good:wrong-password) ;;
      distinct-users) extra=(--flood "$FLOOD" --flood-auth 'nobody{i}:wrong-password') ;;
    esac
    lg handshake --proxy "$proxy" --auth good:good-password --server-pid "$flood_pid" \
      --concurrency 1 --handshake-secs "$SECS" "${extra[@]}" --json >"$f"
    h='r["handshake"]'
    fl='(r.get("flood") or {})'
    printf '%-6s %-15s %10.0f %8.0f %8.0f %12.1f %9s %7s %10s\n' "$i" $k "$(field "$f" "$h['per_sec']")" \
      "$(field "$f" "$h['p50_us']")" "$(field "$f" "$h['p99_us']")" \
      "$(field "$f" "$fl.get('attempts_per_sec', 0)")" "$(field "$f" "$fl.get('rejected', '-')")" \
      "$(field "$f" "$fl.get('closed', '-')")" "$(field "$f" "$fl.get('timed_out', '-')")"
    drain "$flood_pid"
  done
done
$py - "$out" "$PAIRS" <<'PY'
import json, sys, statistics as st
out, n = sys.argv[1], int(sys.argv[2])
rate = lambda i, k: json.load(open(f"{out}/c-{i}-{k}.json"))["handshake"]["per_sec"]
alone = st.mean(rate(i, "alone") for i in range(1, n + 1))
for k in ("same-user", "distinct-users"):
    m = st.mean(rate(i, k) for i in range(1, n + 1))
    print(f"{k}: good client {m:.0f}/s vs alone {alone:.0f}/s: {m / alone:.3f} (target >= 0.80)")
PY
kill "$flood_pid"
echo
echo "# load after: $(uptime)"
echo "# JSON: $out"
