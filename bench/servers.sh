# Starting and stopping the servers the benchmarks compare, loopback only. Sourced by
# bench/compare.sh and bench/syscalls.sh; not a script of its own.
#
# Servers (names as in --servers):
#   microsocks         apt package microsocks; user/pass
#   dante              apt package dante-server (/usr/sbin/danted); CONNECT and UDP ASSOCIATE;
#                      no authentication unless dante_auth=username (see compare.sh --help)
#   fast-socks5        crate fast-socks5 $FAST_SOCKS5_VERSION, its example `server` (cargo
#                      install --example server); user/pass; UDP with --allow-udp
#   merino             crate merino $MERINO_VERSION; user/pass from a CSV file; CONNECT only
#   socks5d-RUNTIME    target/release/socks5d --runtime RUNTIME (tokio, smol, async-std); user/pass,
#                      admin port (TCP) on the SOCKS port + 1
#
# The crates are installed with `cargo install --root "$peers"` (default target/bench-peers:
# kept between runs, never on PATH), pinned to the versions below with --locked.
#
# Callers set: work (a scratch directory), user, pass, admin_user, admin_pass, socks5d_bin,
# dante_auth (none|username), and may set peers, server_cpus (default 0).
# After server_start NAME PORT: srv_pid (the server's main process), srv_args (the load
# generator's authentication/admin arguments), srv_udp (1 if the server relays UDP).

FAST_SOCKS5_VERSION=1.0.0
MERINO_VERSION=0.1.3
peers=${peers:-target/bench-peers}
server_cpus=${server_cpus:-0}
created_user=${created_user:-}

srv_log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }

# peers_install NAME...: installs what the named servers need and is missing.
peers_install() {
  local need=() s
  for s in "$@"; do
    case "$s" in
      microsocks) command -v microsocks >/dev/null || need+=(microsocks) ;;
      dante) [ -x /usr/sbin/danted ] || need+=(dante-server) ;;
    esac
  done
  command -v taskset >/dev/null || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    srv_log "installing ${need[*]} (apt-get)"
    apt-get update -qq
    # Debian's dante-server package enables a danted service; it is not wanted here (and not
    # running without systemd). Our Dante runs from its own config.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  for s in "$@"; do
    case "$s" in
      fast-socks5)
        if [ ! -x "$peers/bin/fast-socks5-server" ]; then
          srv_log "cargo install fast-socks5 $FAST_SOCKS5_VERSION --example server (into $peers)"
          # --force: cargo may remember an install whose binary has been renamed or removed.
          cargo install -q --locked --force --root "$peers" --version "$FAST_SOCKS5_VERSION" \
            fast-socks5 --example server
          # The example is called `server`: give it a name that says what it is.
          mv "$peers/bin/server" "$peers/bin/fast-socks5-server"
        fi
        ;;
      merino)
        if [ ! -x "$peers/bin/merino" ]; then
          srv_log "cargo install merino $MERINO_VERSION (into $peers)"
          cargo install -q --locked --force --root "$peers" --version "$MERINO_VERSION" merino
        fi
        ;;
    esac
  done
}

srv_wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# server_start NAME PORT: starts NAME on 127.0.0.1:PORT pinned to $server_cpus; returns 0 once
# it accepts connections, 1 if it did not start (its log says why).
server_start() {
  local name=$1 port=$2
  srv_pid="" srv_args=() srv_udp=0
  case "$name" in
    microsocks)
      taskset -c "$server_cpus" microsocks -i 127.0.0.1 -p "$port" -u "$user" -P "$pass" \
        >"$work/$name.log" 2>&1 &
      srv_pid=$!
      srv_args=(--auth "$user:$pass")
      ;;
    dante)
      local method=none
      if [ "$dante_auth" = username ]; then
        method=username
        local duser=s5bench
        if ! id "$duser" >/dev/null 2>&1; then
          useradd -M -s /usr/sbin/nologin "$duser"
          created_user=$duser
        fi
        echo "$duser:$pass" | chpasswd -c SHA512 -s 1000
        srv_args=(--auth "$duser:$pass")
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
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect udpassociate }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: udpreply }
socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 }
CONF
      taskset -c "$server_cpus" /usr/sbin/danted -f "$work/sockd.conf" -p "$work/danted.pid" \
        >"$work/dante.stderr" 2>&1 &
      srv_pid=$!
      srv_udp=1
      ;;
    fast-socks5)
      # RUST_LOG unset: the example logs nothing below `error` then.
      env -u RUST_LOG taskset -c "$server_cpus" "$peers/bin/fast-socks5-server" \
        --listen-addr "127.0.0.1:$port" --allow-udp --public-addr 127.0.0.1 \
        password --username "$user" --password "$pass" >"$work/$name.log" 2>&1 &
      srv_pid=$!
      srv_args=(--auth "$user:$pass")
      srv_udp=1
      ;;
    merino)
      printf 'username,password\n%s,%s\n' "$user" "$pass" >"$work/merino-users.csv"
      env -u RUST_LOG taskset -c "$server_cpus" "$peers/bin/merino" -i 127.0.0.1 -p "$port" \
        -u "$work/merino-users.csv" >"$work/$name.log" 2>&1 &
      srv_pid=$!
      srv_args=(--auth "$user:$pass")
      ;;
    socks5d-*)
      local rt=${name#socks5d-} aport=$((port + 1)) extra=()
      if [ ! -x "$socks5d_bin" ]; then
        echo "$name: $socks5d_bin not found" >&2
        return 1
      fi
      local help
      help=$("$socks5d_bin" --help 2>&1 || true)
      # Enough connection slots for the idle run (the default limit is 1024).
      if grep -q -- --max-connections <<<"$help"; then extra+=(--max-connections 20000); fi
      if grep -q -- --runtime <<<"$help"; then
        extra+=(--runtime "$rt")
      elif [ "$rt" != tokio ]; then
        echo "$name: this socks5d has no --runtime flag" >&2
        return 1
      fi
      # UDP ASSOCIATE is served by the socks5d that has --no-udp to turn it off.
      if grep -q -- --no-udp <<<"$help"; then srv_udp=1; fi
      # A fresh state directory per start (the embedded store; older builds ignore it).
      mkdir -p "$work/state-$name"
      STATE_DIRECTORY="$work/state-$name" \
        taskset -c "$server_cpus" "$socks5d_bin" -l 127.0.0.1 -p "$port" -L 127.0.0.1 -P "$aport" \
        -u "$user:$pass" -a "$admin_user:$admin_pass" --admin-transport tcp "${extra[@]}" \
        >"$work/$name.log" 2>"$work/$name.stderr" &
      srv_pid=$!
      srv_args=(--auth "$user:$pass" --admin "127.0.0.1:$aport" --admin-auth "$admin_user:$admin_pass")
      ;;
    *)
      echo "unknown server $name" >&2
      return 1
      ;;
  esac
  if srv_wait_port "$port" 10; then
    # Dante starts its child processes after binding.
    if [ "$name" = dante ]; then sleep 0.5; fi
    return 0
  fi
  echo "$name did not start: $(tail -3 "$work/$name".{log,stderr} "$work"/dante.{log,stderr} 2>/dev/null)" >&2
  server_stop
  return 1
}

# server_stop: stops the server server_start started (SIGTERM, then SIGKILL after 5 s).
server_stop() {
  [ -n "${srv_pid:-}" ] || return 0
  kill "$srv_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}

# servers_expand LIST RUNTIMES: prints the server names, `socks5d` expanded to one
# socks5d-RUNTIME per runtime.
servers_expand() {
  local s r out=()
  IFS=, read -r -a _list <<<"$1"
  IFS=, read -r -a _rts <<<"$2"
  for s in "${_list[@]}"; do
    if [ "$s" = socks5d ]; then
      for r in "${_rts[@]}"; do out+=("socks5d-$r"); done
    else
      out+=("$s")
    fi
  done
  echo "${out[@]}"
}
