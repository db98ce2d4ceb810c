#!/usr/bin/env bash
# Handshakes and relay ratio of two socks5d builds, on each runtime, in one run on this machine
# (loopback only; server pinned to core 0, load generator to core 1), for the "one driver"
# redesign: the build before it and the build after it.
#
# Usage: bash bench/before_after.sh BEFORE_BIN AFTER_BIN [HANDSHAKE_SECS] [ROUNDS]
#   BEFORE_BIN / AFTER_BIN: socks5d release binaries; each is run with every --runtime it
#   accepts among tokio, smol and async-std. The two builds alternate within each round
#   (before, after, before, ...) so that the machine's noise falls on both; each row is one
#   run, and the summary gives the median of the rounds and the ratios after/before and
#   smol/tokio.
# Environment: RUNTIMES (default "tokio smol async-std"), RELAY_BYTES per stream (default
# 256M), STREAMS (default 4); HANDSHAKE_SECS 0 in the arguments skips the handshake runs
# (their columns then read 0).
set -euo pipefail
before=$1 after=$2 secs=${3:-5} rounds=${4:-3}
runtimes=${RUNTIMES:-tokio smol async-std} relay_bytes=${RELAY_BYTES:-256M} streams=${STREAMS:-4}
cd "$(dirname "$0")/.."
loadgen=target/release/socks5d-loadgen
[ -x "$loadgen" ] || cargo build -q --release -p socks5d-bench
port=21300
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
printf '%-6s %-8s %-10s %12s %14s %12s\n' round build runtime handshakes/s cpu_us/handshake relay_ratio
for round in $(seq "$rounds"); do
  for rt in $runtimes; do
    for build in before after; do
      bin=$before; [ $build = after ] && bin=$after
      "$bin" --help | grep -q -- "$rt" || continue
      port=$((port + 2))
      state=$(mktemp -d)  # a fresh embedded store per run (the build before ignores it)
      STATE_DIRECTORY=$state taskset -c 0 "$bin" -p $port -P $((port + 1)) --admin-transport tcp \
        --runtime "$rt" -u bench:bench -a root:root >/dev/null 2>&1 &
      pid=$!
      sleep 0.5
      hs='{"handshake":{"per_sec":0,"server_cpu_us_per_handshake":0}}'
      if [ "$secs" != 0 ]; then
        hs=$(taskset -c 1 "$loadgen" handshake --proxy 127.0.0.1:$port --auth bench:bench \
          --server-pid $pid --handshake-secs "$secs" --json)
      fi
      rl=$(taskset -c 1 "$loadgen" relay --proxy 127.0.0.1:$port --auth bench:bench \
        --server-pid $pid --streams "$streams" --bytes "$relay_bytes" --json)
      kill $pid; wait $pid 2>/dev/null || true
      rm -rf "$state"
      python3 - "$round" "$build" "$rt" "$hs" "$rl" <<'PY' | tee -a "$rows"
import json, sys
rnd, build, rt = sys.argv[1], sys.argv[2], sys.argv[3]
hs, rl = json.loads(sys.argv[4])["handshake"], json.loads(sys.argv[5])["relay"]
rate = round(hs["per_sec"])
cpu = round(hs["server_cpu_us_per_handshake"] or 0, 1)
ratio = round(rl["ratio"] or 0, 3)
print(f"{rnd:<6} {build:<8} {rt:<10} {rate!s:>12} {cpu!s:>14} {ratio!s:>12}")
PY
    done
  done
done
python3 - "$rows" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, build, rt, rate, cpu, ratio = line.split()
    runs.setdefault((build, rt), []).append((float(rate), float(cpu), float(ratio)))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in runs.items()}
print("\nmedians of the rounds:")
print(f"{'build':<8} {'runtime':<10} {'handshakes/s':>12} {'cpu_us/hs':>10} {'relay':>7}")
for (build, rt), (rate, cpu, ratio) in sorted(med.items()):
    print(f"{build:<8} {rt:<10} {rate:>12.0f} {cpu:>10.1f} {ratio:>7.3f}")
print("\nratios:")
for rt in ("tokio", "smol", "async-std"):
    if ("before", rt) in med and ("after", rt) in med:
        b, a = med[("before", rt)], med[("after", rt)]
        hs = f"handshakes/s {a[0] / b[0]:.2f}, cpu/hs {a[1] / b[1]:.2f}, " if b[0] else ""
        print(f"{rt:<10} after/before {hs}relay {a[2] / b[2]:.2f}")
for build in ("before", "after"):
    if (build, "tokio") in med and (build, "smol") in med and med[(build, "tokio")][0]:
        print(f"{build:<8} smol/tokio handshakes/s {med[(build, 'smol')][0] / med[(build, 'tokio')][0]:.2f}")
PY
