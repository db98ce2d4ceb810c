#!/usr/bin/env bash
# Compares socks5d (on each of its runtimes) with microsocks, Dante, fast-socks5 and merino on
# this machine, loopback only, all in one run and all measured by socks5d-loadgen.
#
# Each server is pinned to core 0 (taskset -c 0) and the load generator to core 1. Every
# server is started fresh, measured with `socks5d-loadgen all` (idle connections first, then
# handshakes, relay throughput, request/response exchanges, the UDP relay where the server
# has one, and, for socks5d, admin requests), and stopped. One table of absolute numbers and
# ratios vs the first server (microsocks by default) is printed at the end.
#
# Usage: bash bench/compare.sh [options]
#   --servers LIST        comma-separated subset of microsocks,dante,fast-socks5,merino,socks5d
#                         (default: all five)
#   --runtime LIST        socks5d's runtimes, one socks5d run each: tokio,smol,async-std
#                         (default tokio,smol; columns socks5d-tokio, socks5d-smol)
#   --duration S          a short run: every timed phase S seconds (handshakes, each rr size,
#                         each UDP arm, admin), 4 x 256M transfers, idle 1000 only
#   --handshake-secs S    handshake run length (default 5)
#   --concurrency N       handshake cycles in flight (default 32)
#   --streams N           parallel bulk transfers (default 4)
#   --bytes SIZE          bytes per transfer, K/M/G suffixes (default 1G)
#   --direction up|down   bulk direction (default up)
#   --idle LIST           idle connection counts (default 1000,10000, lowered to what the
#                         open-file limit allows: each proxied connection needs 2 descriptors)
#   --rr-connections C    request/response connections (default 32)
#   --rr-responses LIST   response sizes, one run each (default 1K,16K,256K; requests 1K)
#   --rr-secs S           seconds per response size (default 3)
#   --udp-flows N         UDP flows (one association each; default 4), 1200-byte datagrams
#   --udp-secs S          seconds per UDP arm, direct and proxied (default 3)
#   --admin-secs S        admin run length (default 5)
#   --long                longer runs: 20 s handshakes, 4 x 4G transfers, 10 s rr, 10 s UDP,
#                         15 s admin
#   --dante-auth M        none (default) or username. Dante checks usernames against the
#                         system's password database, so `username` creates a temporary system
#                         user (removed at the end) whose password hash is SHA-512 with 1000
#                         rounds; with Debian's default yescrypt hash the password check alone
#                         costs ~12 ms of CPU per handshake, which would measure libcrypt, not Dante
#   --socks5d PATH        socks5d binary (default target/release/socks5d)
#   --peers DIR           where fast-socks5 and merino are installed (cargo install --root;
#                         default target/bench-peers, kept between runs)
#   --no-build            do not run cargo build --release
#   --out DIR             keep the JSON results and server logs in DIR (default: a temp dir)
# Bounded: with the defaults a run takes about 6-9 minutes (plus the first installs); every
# loadgen phase has its own time limit and each server's measurement is capped by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/servers.sh

servers="microsocks,dante,fast-socks5,merino,socks5d" runtimes="tokio,smol"
hs_secs=5 concurrency=32 streams=4 bytes=1G direction=up idle="" admin_secs=5
rr_conns=32 rr_responses=1K,16K,256K rr_secs=3 udp_flows=4 udp_secs=3
dante_auth=none socks5d_bin=target/release/socks5d build=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --runtime) runtimes=$2; shift ;;
    --duration)
      hs_secs=$2 rr_secs=$2 udp_secs=$2 admin_secs=$2 bytes=256M
      [ -n "$idle" ] || idle=1000
      shift ;;
    --handshake-secs) hs_secs=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    --streams) streams=$2; shift ;;
    --bytes) bytes=$2; shift ;;
    --direction) direction=$2; shift ;;
    --idle) idle=$2; shift ;;
    --rr-connections) rr_conns=$2; shift ;;
    --rr-responses) rr_responses=$2; shift ;;
    --rr-secs) rr_secs=$2; shift ;;
    --udp-flows) udp_flows=$2; shift ;;
    --udp-secs) udp_secs=$2; shift ;;
    --admin-secs) admin_secs=$2; shift ;;
    --long) hs_secs=20 bytes=4G rr_secs=10 udp_secs=10 admin_secs=15 ;;
    --dante-auth) dante_auth=$2; shift ;;
    --socks5d) socks5d_bin=$2; shift ;;
    --peers) peers=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

log() { srv_log "$@"; }
read -r -a list <<<"$(servers_expand "$servers" "$runtimes")"

# --- tools -----------------------------------------------------------------------------------
peers_install "${list[@]}"

if [ "$build" = 1 ]; then
  log "cargo build --release"
  cargo build --release -q -p socks5d-bench
  cargo build --release -q -p socks5d --bin socks5d 2>/dev/null || echo "(socks5d binary did not build)" >&2
fi
loadgen=target/release/socks5d-loadgen

# --- limits ----------------------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ -z "$idle" ]; then
  # A proxied connection costs the server two descriptors (client and destination sides).
  fit=$(( (nofile - 100) / 2 ))
  big=10000
  if [ "$fit" -lt "$big" ]; then
    echo "note: the open-file limit is $nofile (hard), so the large idle run holds $fit connections instead of 10000" >&2
    big=$fit
  fi
  idle="1000,$big"
fi

work=${out:-$(mktemp -d /tmp/socks5d-compare.XXXXXX)}
mkdir -p "$work"
cleanup() {
  server_stop
  if [ -n "$created_user" ]; then userdel "$created_user" 2>/dev/null || true; fi
  if [ -z "$out" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

user=bench pass=benchpw1
admin_user=admin admin_pass=adminpw1

measure() { # name port pid [extra loadgen args...]
  local name=$1 port=$2 pid=$3
  shift 3
  log "measuring $name (pid $pid, port $port)"
  # Never more than 6 minutes for one server, whatever the flags say about each phase.
  timeout 360 taskset -c 1 "$loadgen" all --json --name "$name" \
    --proxy "127.0.0.1:$port" --server-pid "$pid" \
    --handshake-secs "$hs_secs" --concurrency "$concurrency" \
    --streams "$streams" --bytes "$bytes" --direction "$direction" \
    --idle "$idle" --rr-connections "$rr_conns" --rr-responses "$rr_responses" \
    --rr-secs "$rr_secs" --udp-flows "$udp_flows" --udp-secs "$udp_secs" \
    --admin-secs "$admin_secs" "$@" >"$work/$name.json" || {
    echo "compare.sh: loadgen failed against $name" >&2
    rm -f "$work/$name.json"
  }
  if [ -s "$work/$name.json" ]; then
    grep -E '"(per_sec|datagrams_per_sec|errors|first_error|error|ratio|rss_per_connection_kib|server_cpu_us_per_(handshake|exchange|datagram)|established)"' \
      "$work/$name.json" | sed 's/^ */  /' >&2 || true
  fi
}

results=()
port=21081
for s in "${list[@]}"; do
  port=$((port + 2)) # socks5d's admin port is port + 1
  if ! server_start "$s" "$port"; then
    continue
  fi
  skip=()
  [ "$srv_udp" = 1 ] || skip=(--skip udp)
  measure "$s" "$port" "$srv_pid" "${srv_args[@]}" "${skip[@]}"
  server_stop
  [ -s "$work/$s.json" ] && results+=("$work/$s.json")
done

log "results ($(nproc) cores; servers on core 0, load generator on core 1)"
echo "relay: $streams x $bytes $direction; handshakes: ${hs_secs}s at concurrency $concurrency; idle: $idle"
echo "rr: $rr_conns connections, 1K requests, responses $rr_responses, ${rr_secs}s each; udp: $udp_flows flows x 1200 B, ${udp_secs}s per arm"
if [ ${#results[@]} -gt 0 ]; then
  "$loadgen" table --baseline "$(basename "${results[0]}" .json)" "${results[@]}"
fi
if [ -n "$out" ]; then echo "JSON results and server logs in $out"; fi
