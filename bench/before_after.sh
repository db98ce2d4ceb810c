#!/usr/bin/env bash
# Handshakes and relay ratio of two socks5d builds, on each runtime, in one run on this machine
# (loopback only; server pinned to core 0, load generator to core 1), for the "one driver"
# redesign: the build before it and the build after it.
#
# Usage: bash bench/before_after.sh BEFORE_BIN AFTER_BIN [HANDSHAKE_SECS]
#   BEFORE_BIN / AFTER_BIN: socks5d release binaries; each is run with every --runtime it
#   accepts among tokio, smol and async-std. Results go to stdout as one table.
set -euo pipefail
before=$1 after=$2 secs=${3:-5}
cd "$(dirname "$0")/.."
loadgen=target/release/socks5d-loadgen
[ -x "$loadgen" ] || cargo build -q --release -p socks5d-bench
port=21300
printf '%-8s %-10s %12s %14s %12s\n' build runtime handshakes/s cpu_us/handshake relay_ratio
for build in before after; do
  bin=$before; [ $build = after ] && bin=$after
  for rt in tokio smol async-std; do
    "$bin" --help | grep -q -- "$rt" || continue
    port=$((port + 2))
    taskset -c 0 "$bin" -p $port -P $((port + 1)) --admin-transport tcp --runtime "$rt" \
      -u bench:bench -a root:root >/dev/null 2>&1 &
    pid=$!
    sleep 0.5
    hs=$(taskset -c 1 "$loadgen" handshake --proxy 127.0.0.1:$port --auth bench:bench \
      --server-pid $pid --handshake-secs "$secs" --json)
    rl=$(taskset -c 1 "$loadgen" relay --proxy 127.0.0.1:$port --auth bench:bench \
      --server-pid $pid --streams 4 --bytes 256M --json)
    kill $pid; wait $pid 2>/dev/null || true
    python3 - "$build" "$rt" "$hs" "$rl" <<'PY'
import json, sys
build, rt = sys.argv[1], sys.argv[2]
hs, rl = json.loads(sys.argv[3])["handshake"], json.loads(sys.argv[4])["relay"]
rate = round(hs["per_sec"])
cpu = round(hs["server_cpu_us_per_handshake"] or 0, 1)
ratio = round(rl["ratio"] or 0, 3)
print(f"{build:<8} {rt:<10} {rate!s:>12} {cpu!s:>14} {ratio!s:>12}")
PY
  done
done
