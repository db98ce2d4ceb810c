#!/usr/bin/env bash
# Handshake cost in system calls and in user-space CPU, per server, loopback only.
#
# For each server: start it fresh (pinned to core 0, load generator on core 1, as compare.sh),
# warm it up with 200 handshakes, then
#   1. CPU: `socks5d-loadgen handshake` for --cpu-secs without strace; reports the server's
#      CPU time per handshake and the user-space share of it (utime / (utime + stime) of the
#      whole process tree, from /proc/PID/stat);
#   2. system calls: attach `strace -c -f` to every process of the server's tree (all their
#      threads), run exactly --count handshakes, detach, and divide strace's counts by the
#      number of handshakes that succeeded.
# A handshake is the load generator's full cycle: TCP connect, greeting, RFC 1929 user/pass,
# CONNECT to its echo server, 32 bytes echoed, close (see BENCHMARKS.md). The counts include
# whatever else the server does meanwhile (timers, its reactor's idle wake-ups): with the
# clients kept busy that is little, and it is part of what a handshake costs.
#
# Usage: bash bench/syscalls.sh [options]
#   --servers LIST      as compare.sh: microsocks,dante,fast-socks5,merino,socks5d
#                       (default: socks5d)
#   --runtime LIST      socks5d's runtimes (default tokio,smol)
#   --count N           handshakes under strace (default 2000)
#   --concurrency C     handshake cycles in flight (default 32)
#   --cpu-secs S        length of the CPU run (default 3)
#   --dante-auth M      none (default) or username (see compare.sh --help)
#   --socks5d PATH      socks5d binary (default target/release/socks5d)
#   --peers DIR         where fast-socks5 and merino are installed (default target/bench-peers)
#   --no-build          do not run cargo build --release
#   --out DIR           keep strace's output, the JSON results and server logs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/servers.sh

servers=socks5d runtimes=tokio,smol count=2000 concurrency=32 cpu_secs=3
dante_auth=none socks5d_bin=target/release/socks5d build=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --runtime) runtimes=$2; shift ;;
    --count) count=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    --cpu-secs) cpu_secs=$2; shift ;;
    --dante-auth) dante_auth=$2; shift ;;
    --socks5d) socks5d_bin=$2; shift ;;
    --peers) peers=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "syscalls.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

read -r -a list <<<"$(servers_expand "$servers" "$runtimes")"
command -v strace >/dev/null || {
  srv_log "installing strace (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
}
peers_install "${list[@]}"
if [ "$build" = 1 ]; then
  srv_log "cargo build --release"
  cargo build --release -q -p socks5d-bench
  cargo build --release -q -p socks5d --bin socks5d 2>/dev/null || echo "(socks5d binary did not build)" >&2
fi
loadgen=target/release/socks5d-loadgen

work=${out:-$(mktemp -d /tmp/socks5d-syscalls.XXXXXX)}
mkdir -p "$work"
strace_pid=""
cleanup() {
  if [ -n "$strace_pid" ]; then kill -INT "$strace_pid" 2>/dev/null || true; wait "$strace_pid" 2>/dev/null || true; fi
  server_stop
  if [ -n "$created_user" ]; then userdel "$created_user" 2>/dev/null || true; fi
  if [ -z "$out" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

user=bench pass=benchpw1
admin_user=admin admin_pass=adminpw1

tree() { # pid: the pid and its descendants
  local c
  echo "$1"
  for c in $(pgrep -P "$1" || true); do tree "$c"; done
}

json_num() { # file key: the first number under "key"
  grep -m1 "\"$2\":" "$1" | sed 's/.*: *//; s/,$//'
}

summary=()
port=21181
for s in "${list[@]}"; do
  port=$((port + 2))
  server_start "$s" "$port" || continue
  # srv_args starts with --auth USER:PASS where the server wants it (then admin flags).
  hs() { timeout 300 taskset -c 1 "$loadgen" handshake --proxy "127.0.0.1:$port" \
    --concurrency "$concurrency" "${srv_args[@]:0:2}" "$@"; }
  srv_log "$s: warm-up"
  hs --handshake-count 200 >/dev/null
  srv_log "$s: CPU, ${cpu_secs}s without strace"
  hs --handshake-secs "$cpu_secs" --server-pid "$srv_pid" --json >"$work/$s.cpu.json"
  srv_log "$s: $count handshakes under strace -c -f"
  pargs=()
  for p in $(tree "$srv_pid"); do pargs+=(-p "$p"); done
  : >"$work/$s.strace.stderr"
  strace -c -f -S calls -o "$work/$s.strace" "${pargs[@]}" 2>"$work/$s.strace.stderr" &
  strace_pid=$!
  # Attached once strace has said so for every process given.
  for ((i = 0; i < 100; i++)); do
    attached=$(grep -c 'attached' "$work/$s.strace.stderr" || true)
    [ "${attached:-0}" -ge $((${#pargs[@]} / 2)) ] && break
    sleep 0.1
  done
  hs --handshake-count "$count" --handshake-secs 300 --json >"$work/$s.strace.json"
  kill -INT "$strace_pid"
  wait "$strace_pid" || true
  strace_pid=""
  server_stop

  n=$(json_num "$work/$s.strace.json" handshakes)
  errs=$(json_num "$work/$s.strace.json" errors)
  cpu_us=$(json_num "$work/$s.cpu.json" server_cpu_us_per_handshake)
  share=$(json_num "$work/$s.cpu.json" server_user_share)
  cpu_n=$(json_num "$work/$s.cpu.json" handshakes)
  echo
  echo "== $s: $n handshakes under strace -c -f ($errs errors, concurrency $concurrency)"
  # strace -c: "% time seconds usecs/call calls [errors] syscall", then a dashed line and
  # "100.00 seconds [usecs] calls [errors] total".
  awk -v n="$n" '
    /^-/ || /^%/ || NF < 5 { next }
    {
      name = $NF; calls = $4; errors = (NF == 6) ? $5 : 0
      if (name == "total") { total = calls; next }
      printf "  %-20s %9d calls %8.2f per handshake %8d errors\n", name, calls, calls / n, errors
    }
    END { printf "  %-20s %9d calls %8.2f per handshake\n", "total", total, total / n }
  ' "$work/$s.strace"
  per=$(awk -v n="$n" '$NF == "total" { printf "%.2f", $4 / n }' "$work/$s.strace")
  share_pct=$(awk -v v="$share" 'BEGIN { if (v == "null" || v == "") print "-"; else printf "%.1f", v * 100 }')
  cpu_us=$(awk -v v="$cpu_us" 'BEGIN { if (v == "null" || v == "") print "-"; else printf "%.1f", v }')
  echo "  CPU without strace: $cpu_us µs per handshake over $cpu_n handshakes, $share_pct % of it in user space"
  summary+=("$(printf '| %-16s | %8s | %10s | %6s |' "$s" "$per" "$cpu_us" "$share_pct")")
done

echo
echo "| server           | syscalls | CPU µs     | user % |"
echo "|------------------|---------:|-----------:|-------:|"
printf '%s\n' "${summary[@]}"
echo "(syscalls per handshake under strace -c -f over $count handshakes; CPU per handshake and its user-space share without strace over ${cpu_secs}s; concurrency $concurrency)"
if [ -n "$out" ]; then echo "strace output, JSON results and server logs in $out"; fi
