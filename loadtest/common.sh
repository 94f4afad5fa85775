# Shared by run.sh and idle.sh (sourced, from the repository root): builds
# the servers and the generator, and installs the Node `ws` peer into
# target/loadtest (nothing of it is committed).
out=target/loadtest
mkdir -p "$out"
cargo build --release --bin switchyard --bin switchyard-loadtest --bin bare-broadcast
if [ ! -d "$out/node_modules/ws" ]; then
  (cd "$out" && npm install --silent --no-audit --no-fund ws >/dev/null)
fi

# The PID of the process listening on 127.0.0.1:$1 (node runs in a subshell).
listener_pid() {
  ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# Starts server $1 (switchyard, bare or node-ws) on 127.0.0.1:$2, pinned to
# CPU 0, waits until it listens, and prints "PID URL TARGET" (TARGET for
# the generator's --target). switchyard runs with the per-connection rate
# limit lifted (the publisher sends far more than a client would), and
# with its ping interval set to $PING_INTERVAL when that is set (idle.sh
# sets 5s, so that idle figures include heartbeats).
start_server() {
  local name=$1 port=$2
  case "$name" in
    switchyard)
      SWITCHYARD_CLIENT__COMMANDS_PER_SECOND=100000000 SWITCHYARD_CLIENT__COMMANDS_BURST=100000000 \
        SWITCHYARD_CLIENT__MAX_QUEUE_BYTES=67108864 SWITCHYARD_CLIENT__PING_INTERVAL="${PING_INTERVAL:-25s}" RUST_LOG=warn \
        taskset -c 0 target/release/switchyard serve --listen "127.0.0.1:$port" >"$out/$name-$port.log" 2>&1 &
      local url="ws://127.0.0.1:$port/ws" target=switchyard-json ;;
    bare)
      taskset -c 0 target/release/bare-broadcast "127.0.0.1:$port" >"$out/$name-$port.log" 2>&1 &
      local url="ws://127.0.0.1:$port/" target=plain ;;
    node-ws)
      NODE_PATH="$PWD/$out/node_modules" taskset -c 0 node loadtest/peers/ws-broadcast.js 127.0.0.1 "$port" \
        >"$out/$name-$port.log" 2>&1 &
      local url="ws://127.0.0.1:$port/" target=plain ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
  for _ in $(seq 100); do
    ss -Hltn "sport = :$port" | grep -q . && break
    sleep 0.1
  done
  echo "$(listener_pid "$port") $url $target"
}

# Stops the server listening on $2 (PID $1) and waits until the port is free.
stop_server() {
  kill "$1" 2>/dev/null || true
  while ss -Hltn "sport = :$2" | grep -q .; do sleep 0.1; done
}
