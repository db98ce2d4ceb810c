#!/usr/bin/env bash
# Server CPU per handshake, CONNECT to the echo server's IPv4 address against CONNECT to the
# name `localhost` (ATYP 03), on each runtime (issue 16: a domain CONNECT at most 1.1 times
# the IPv4 one). Per runtime, one server with the resolver cache (default TTL) and one with
# it off (--dns-cache-ttl 0); the rounds alternate IPv4 / name on the same server (which one
# goes first alternates too).
#
#   bash bench/dns_bench.sh [ROUNDS] [SECS]      (defaults: 5 rounds of 3 s per kind)
#
# Needs the release build (cargo build --release -p socks5d -p socks5d-bench). Ports
# 11180-11181. The server is pinned to core 0, the load generator to core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-3}
runtimes=${RUNTIMES:-tokio smol}
server=target/release/socks5d
loadgen=target/release/socks5d-loadgen
port=11180
admin=11181

cpu() { # PID [--target-host NAME]: prints server µs per handshake, handshakes/s, errors
  local pid=$1
  shift
  taskset -c 1 "$loadgen" handshake --json --proxy "127.0.0.1:$port" --auth bench:benchpw1 \
    --server-pid "$pid" --handshake-secs "$secs" "$@" |
    python3 -c 'import json,sys; h=json.load(sys.stdin)["handshake"]; print("%.1f %.0f %d" % (h["server_cpu_us_per_handshake"], h["per_sec"], h["errors"]))'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rt in $runtimes; do
  for ttl in 30 0; do
    taskset -c 0 "$server" -l 127.0.0.1 -p $port -L 127.0.0.1 -P $admin -u bench:benchpw1 \
      -a admin:adminpw1 --admin-transport tcp --in-memory --runtime "$rt" \
      --dns-cache-ttl "$ttl" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
      sleep 0.1
    done
    v4=() name=()
    for r in $(seq "$rounds"); do
      # Which kind goes first alternates between rounds.
      if ((r % 2)); then
        a=$(cpu $pid)
        b=$(cpu $pid --target-host localhost)
      else
        b=$(cpu $pid --target-host localhost)
        a=$(cpu $pid)
      fi
      echo "$rt ttl=$ttl round $r: ipv4 $a | localhost $b (µs/handshake handshakes/s errors)"
      v4+=("${a%% *}") name+=("${b%% *}")
    done
    kill $pid
    wait $pid 2>/dev/null || true
    m4=$(printf '%s\n' "${v4[@]}" | median)
    mn=$(printf '%s\n' "${name[@]}" | median)
    echo "$rt ttl=$ttl median: ipv4 $m4 µs, localhost $mn µs, ratio $(awk "BEGIN {printf \"%.3f\", $mn / $m4}")"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
