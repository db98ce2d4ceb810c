#!/usr/bin/env bash
# Compares socks5d with microsocks and Dante on this machine, loopback only.
#
# Each server is pinned to core 0 (taskset -c 0) and the load generator to core 1. Every
# server is started fresh, measured with `socks5d-loadgen all` (idle connections first, then
# handshakes, relay throughput and, for socks5d, admin requests), and stopped. One table of
# absolute numbers and ratios vs microsocks is printed at the end.
#
# Usage: bash bench/compare.sh [options]
#   --servers LIST        comma-separated subset of microsocks,dante,socks5d (default: all three)
#   --handshake-secs S    handshake run length (default 5)
#   --concurrency N       handshake cycles in flight (default 32)
#   --streams N           parallel bulk transfers (default 4)
#   --bytes SIZE          bytes per transfer, K/M/G suffixes (default 1G)
#   --direction up|down   bulk direction (default up)
#   --idle LIST           idle connection counts (default 1000,10000, lowered to what the
#                         open-file limit allows: each proxied connection needs 2 descriptors)
#   --admin-secs S        admin run length (default 5)
#   --long                longer runs: 20 s handshakes, 4 x 4G transfers, 15 s admin
#   --dante-auth M        none (default) or username. Dante checks usernames against the
#                         system's password database, so `username` creates a temporary system
#                         user (removed at the end) whose password hash is SHA-512 with 1000
#                         rounds; with Debian's default yescrypt hash the password check alone
#                         costs ~12 ms of CPU per handshake, which would measure libcrypt, not Dante
#   --socks5d PATH        socks5d binary (default target/release/socks5d)
#   --no-build            do not run cargo build --release
#   --out DIR             keep the JSON results and server logs in DIR (default: a temp dir)
# Bounded: with the defaults a run takes about 2-4 minutes; every loadgen phase has its own
# time limit and the whole run is capped by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

servers="microsocks,dante,socks5d"
hs_secs=5 concurrency=32 streams=4 bytes=1G direction=up idle="" admin_secs=5
dante_auth=none socks5d_bin=target/release/socks5d build=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --handshake-secs) hs_secs=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    --streams) streams=$2; shift ;;
    --bytes) bytes=$2; shift ;;
    --direction) direction=$2; shift ;;
    --idle) idle=$2; shift ;;
    --admin-secs) admin_secs=$2; shift ;;
    --long) hs_secs=20 bytes=4G admin_secs=15 ;;
    --dante-auth) dante_auth=$2; shift ;;
    --socks5d) socks5d_bin=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }

# --- tools -----------------------------------------------------------------------------------
need=()
command -v microsocks >/dev/null || need+=(microsocks)
[ -x /usr/sbin/danted ] || need+=(dante-server)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package enables a danted service; it is not wanted here (and not running without
# systemd). Our Dante runs from its own config below.

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
pids=()
created_user=""
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$created_user" ]; then userdel "$created_user" 2>/dev/null || true; fi
  if [ -z "$out" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

user=bench pass=benchpw1
admin_user=admin admin_pass=adminpw1

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

measure() { # name port pid [extra loadgen args...]
  local name=$1 port=$2 pid=$3
  shift 3
  log "measuring $name (pid $pid, port $port)"
  # Never more than 4 minutes for one server, whatever the flags say about each phase.
  timeout 240 taskset -c 1 "$loadgen" all --json --name "$name" \
    --proxy "127.0.0.1:$port" --server-pid "$pid" \
    --handshake-secs "$hs_secs" --concurrency "$concurrency" \
    --streams "$streams" --bytes "$bytes" --direction "$direction" \
    --idle "$idle" --admin-secs "$admin_secs" "$@" >"$work/$name.json" || {
    echo "compare.sh: loadgen failed against $name" >&2
    rm -f "$work/$name.json"
  }
  if [ -s "$work/$name.json" ]; then
    grep -E '"(per_sec|errors|first_error|error|ratio|rss_per_connection_kib|server_cpu_us_per_handshake|established)"' \
      "$work/$name.json" | sed 's/^ */  /' >&2 || true
  fi
}

IFS=, read -r -a list <<<"$servers"
results=()
for s in "${list[@]}"; do
  case "$s" in
    microsocks)
      port=21081
      taskset -c 0 microsocks -i 127.0.0.1 -p "$port" -u "$user" -P "$pass" \
        >"$work/microsocks.log" 2>&1 &
      pid=$!; pids+=("$pid")
      if wait_port "$port" 5; then
        measure microsocks "$port" "$pid" --auth "$user:$pass"
      else echo "microsocks did not start" >&2; fi
      stop "$pid"
      ;;
    dante)
      port=21082
      method=none auth_args=()
      if [ "$dante_auth" = username ]; then
        method=username
        duser=s5bench
        if ! id "$duser" >/dev/null 2>&1; then
          useradd -M -s /usr/sbin/nologin "$duser"
          created_user=$duser
        fi
        echo "$duser:$pass" | chpasswd -c SHA512 -s 1000
        auth_args=(--auth "$duser:$pass")
      fi
      cat >"$work/sockd.conf" <<CONF
logoutput: $work/dante.log
internal: 127.0.0.1 port = $port
external: 127.0.0.1
clientmethod: none
socksmethod: $method
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }
socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 }
CONF
      taskset -c 0 /usr/sbin/danted -f "$work/sockd.conf" -p "$work/danted.pid" \
        >"$work/dante.stderr" 2>&1 &
      pid=$!; pids+=("$pid")
      if wait_port "$port" 10; then
        sleep 0.5 # Dante starts its child processes after binding
        measure dante "$port" "$pid" "${auth_args[@]}"
      else echo "dante did not start: $(tail -3 "$work/dante.stderr" "$work/dante.log" 2>/dev/null)" >&2; fi
      stop "$pid"
      ;;
    socks5d)
      port=21083 aport=21084
      if [ ! -x "$socks5d_bin" ]; then
        echo "socks5d: $socks5d_bin not found; skipped" >&2
        continue
      fi
      extra=()
      # Enough connection slots for the idle run (the default limit is 1024).
      if "$socks5d_bin" --help 2>&1 | grep -q -- --max-connections; then
        extra+=(--max-connections 20000)
      fi
      taskset -c 0 "$socks5d_bin" -l 127.0.0.1 -p "$port" -L 127.0.0.1 -P "$aport" \
        -u "$user:$pass" -a "$admin_user:$admin_pass" --admin-transport tcp "${extra[@]}" \
        >"$work/socks5d.log" 2>"$work/socks5d.stderr" &
      pid=$!; pids+=("$pid")
      if wait_port "$port" 5; then
        measure socks5d "$port" "$pid" --auth "$user:$pass" \
          --admin "127.0.0.1:$aport" --admin-auth "$admin_user:$admin_pass"
      else echo "socks5d did not start: $(tail -3 "$work/socks5d.stderr")" >&2; fi
      stop "$pid"
      ;;
    *) echo "compare.sh: unknown server $s" >&2; exit 2 ;;
  esac
  [ -s "$work/$s.json" ] && results+=("$work/$s.json")
done

log "results ($(nproc) cores; servers on core 0, load generator on core 1)"
echo "relay: $streams x $bytes $direction; handshakes: ${hs_secs}s at concurrency $concurrency; idle: $idle"
if [ ${#results[@]} -gt 0 ]; then
  "$loadgen" table --baseline "$(basename "${results[0]}" .json)" "${results[@]}"
fi
[ -n "$out" ] && echo "JSON results and server logs in $out"
