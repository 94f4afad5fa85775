# Shared by run.sh and idle.sh (sourced, from the repository root): builds
# the servers and the generator, and installs the Node `ws` peer into
# target/loadtest (nothing of it is committed).
out=target/loadtest
mkdir -p "$out"
# 10,000 subscribers or 19,000 idle clients need more files than the
# default soft limit (the hard limit here is 20,000).
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin switchyard --bin switchyard-loadtest --bin bare-broadcast --bin raw-broadcast --bin trivial-backend
if [ ! -d "$out/node_modules/@socket.io/redis-adapter" ]; then
  (cd "$out" && npm install --silent --no-audit --no-fund ws socket.io @socket.io/redis-adapter redis >/dev/null)
fi
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }

# The arguments of the side-by-side scripts, SIZE DURATION RATES..., each
# defaulting to the caller's ($1, $2, and $3 as space-separated rates),
# followed by the script's own arguments. Sets size, duration and rates.
take_args() {
  local default_size=$1 default_duration=$2 default_rates=$3
  shift 3
  size=${1:-$default_size}
  duration=${2:-$default_duration}
  shift $(($# < 2 ? $# : 2))
  rates=("$@")
  # shellcheck disable=SC2206 # the defaults are space-separated numbers
  [ ${#rates[@]} -gt 0 ] || rates=($default_rates)
}

# The PID of the process listening on 127.0.0.1:$1 (node runs in a subshell).
listener_pid() {
  ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# Waits until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 100); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

# A switchyard node on 127.0.0.1:$1 (internal listener on $1+500), pinned
# to CPU 0, with the per-connection rate limit lifted (the publisher sends
# far more than a client would), its outbound queue at $MAX_QUEUE_BYTES
# (64 MiB unless set: bursts of a throughput run are not slow consumers;
# slow.sh keeps the 1 MiB default), compression off unless the caller sets
# SWITCHYARD_CLIENT__COMPRESSION (the peers compress nothing either), and its ping interval set to
# $PING_INTERVAL when that is set (idle.sh sets 5s, so that idle figures
# include heartbeats). Further environment comes from the caller.
start_switchyard() {
  local binary=${SWITCHYARD_BINARY:-target/release/switchyard}
  SWITCHYARD_CLIENT__COMPRESSION="${SWITCHYARD_CLIENT__COMPRESSION:-false}" \
  SWITCHYARD_CLIENT__COMMANDS_PER_SECOND=100000000 SWITCHYARD_CLIENT__COMMANDS_BURST=100000000 \
    SWITCHYARD_CLIENT__MAX_QUEUE_BYTES="${MAX_QUEUE_BYTES:-67108864}" SWITCHYARD_CLIENT__PING_INTERVAL="${PING_INTERVAL:-25s}" \
    SWITCHYARD_API_KEY=loadtest RUST_LOG=warn \
    taskset -c 0 "$binary" serve --listen "127.0.0.1:$1" --internal-listen "127.0.0.1:$(($1 + 500))" \
    >"$out/switchyard-$1.log" 2>&1 &
}

start_redis() {
  taskset -c 0 redis-server --bind 127.0.0.1 --port "$1" --save "" --appendonly no >"$out/redis-$1.log" 2>&1 &
}

# Starts server $1 on 127.0.0.1:$2 (and, for clusters, a second process on
# $2+50 and Redis on $2+1000), everything pinned to CPU 0, waits until it
# listens, and prints "PIDS URL PUBLISH_URL TARGET SCRAPE": the PIDs whose
# CPU and memory count (comma-separated), where subscribers and the
# publisher connect, the generator's --target, and switchyard's metrics
# listeners (comma-separated; "-" for peers).
#   switchyard        one node, in-memory broker
#   switchyard-deflate  the same with client.compression on (idle.sh's
#                     clients then offer permessage-deflate)
#   switchyard-delayed  the same with client.write_delay at $WRITE_DELAY
#                     (1ms unless set): fewer, larger writes
#   switchyard-sse    one node, subscribers over Server-Sent Events (the
#                     fallback transport), the publisher over a WebSocket
#   switchyard-sse-delayed  the same with client.write_delay at $WRITE_DELAY
#                     (1ms unless set)
#   switchyard-before the same with the binary $BEFORE (an earlier build,
#                     for before/after runs of a change; also
#                     switchyard-redis-before)
#   switchyard-proxy  one node whose clients are named by the connect proxy,
#                     against trivial-backend on $2+2000 (pinned to CPU 1,
#                     with the generator: its CPU is the application's)
#   switchyard-redis  two nodes over one Redis: subscribers on the second,
#                     the publisher on the first (scenario 3)
#   switchyard-redis-cluster  two nodes over a three-shard Redis Cluster
#                     (primaries on $2+1000..$2+1002, no replicas):
#                     subscribers on the second node, the publisher on the
#                     first; its CPU counts the nodes and every shard
#   bare              bare-broadcast, the ceiling of our stack
#   raw               raw-broadcast: tokio alone (hand-written handshake
#                     and framing, one broadcast ring, one write per batch),
#                     the floor of a Rust fan-out
#   raw-envelope      the same, each message wrapped as switchyard's JSON
#                     `pub` push (the same bytes on the wire)
#   raw-envelope-work the same, each writer spinning $RAW_WORK_NS (500
#                     unless set) before each write: user work between sends
#   switchyard-delta  one node whose default namespace allows deltas
#   switchyard-delta-deflate  the same with client.compression on
#   node-ws           the classic Node `ws` broadcast
#   node-ws-deflate   the same with permessage-deflate on every message
#   socketio          two Socket.IO processes with @socket.io/redis-adapter
#                     over one Redis: subscribers on the second, the
#                     publisher on the first
#   switchyard-pusher one node (in-memory broker) with the Pusher app
#                     1001/app-key/app-secret: subscribers on /app/app-key,
#                     publications through the Pusher HTTP API
#   sockudo           sockudo (the Rust Pusher server; $SOCKUDO, else
#                     `sockudo` on the PATH: `cargo install sockudo
#                     --locked`), memory adapter, the same app, the same
#                     two paths; its API rate limiter and its default app's
#                     limits (100 connections, 100 backend events/s) lifted
#                     as switchyard has none on them, its metrics on $2+500
start_server() {
  local name=$1 port=$2 second=$(($2 + 50)) redis=$(($2 + 1000))
  case "$name" in
    switchyard)
      start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-deflate)
      SWITCHYARD_CLIENT__COMPRESSION=true start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-delta | switchyard-delta-deflate)
      local compression=false
      [ "$name" = switchyard-delta-deflate ] && compression=true
      SWITCHYARD_NAMESPACES__DEFAULT__DELTA=true SWITCHYARD_CLIENT__COMPRESSION=$compression start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-delayed)
      SWITCHYARD_CLIENT__WRITE_DELAY="${WRITE_DELAY:-1ms}" start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-sse | switchyard-sse-delayed)
      local delay=0s
      [ "$name" = switchyard-sse-delayed ] && delay=${WRITE_DELAY:-1ms}
      SWITCHYARD_CLIENT__WRITE_DELAY=$delay start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-sse" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-proxy)
      taskset -c 1 target/release/trivial-backend "127.0.0.1:$((port + 2000))" >"$out/backend-$port.log" 2>&1 &
      local backend=$!
      wait_port "$((port + 2000))"
      SWITCHYARD_PROXY__CONNECT__URL="http://127.0.0.1:$((port + 2000))/connect" \
        SWITCHYARD_PROXY__CONNECT__MAX_IN_FLIGHT="${PROXY_MAX_IN_FLIGHT:-1024}" start_switchyard "$port"
      wait_port "$port"
      # The backend's PID goes last: stopped with the node, not counted as its CPU.
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500)) $backend" ;;
    switchyard-before)
      [ -x "${BEFORE:-}" ] || { echo "switchyard-before needs BEFORE=<an earlier switchyard binary>" >&2; return 1; }
      SWITCHYARD_BINARY=$BEFORE start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500))" ;;
    switchyard-redis | switchyard-redis-before)
      local binary=target/release/switchyard
      if [ "$name" = switchyard-redis-before ]; then
        [ -x "${BEFORE:-}" ] || { echo "$name needs BEFORE=<an earlier switchyard binary>" >&2; return 1; }
        binary=$BEFORE
      fi
      start_redis "$redis"
      wait_port "$redis"
      SWITCHYARD_BINARY=$binary SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis" start_switchyard "$port"
      SWITCHYARD_BINARY=$binary SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis" start_switchyard "$second"
      wait_port "$port" && wait_port "$second"
      echo "$(listener_pid "$port"),$(listener_pid "$second"),$(listener_pid "$redis")" \
        "ws://127.0.0.1:$second/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500)),127.0.0.1:$((second + 500))" ;;
    switchyard-redis-cluster)
      local shard shards=() urls=()
      for shard in "$redis" "$((redis + 1))" "$((redis + 2))"; do
        rm -f "$out/nodes-$shard.conf"
        taskset -c 0 redis-server --bind 127.0.0.1 --port "$shard" --save "" --appendonly no --cluster-enabled yes \
          --cluster-config-file "$PWD/$out/nodes-$shard.conf" >"$out/redis-$shard.log" 2>&1 &
        wait_port "$shard"
        shards+=("127.0.0.1:$shard")
        urls+=("\"redis://127.0.0.1:$shard\"")
      done
      redis-cli --cluster create "${shards[@]}" --cluster-replicas 0 --cluster-yes >"$out/cluster-create.log" 2>&1
      until redis-cli -p "$redis" cluster info | grep -q 'cluster_state:ok'; do sleep 0.1; done
      local list
      list="[$(IFS=,; echo "${urls[*]}")]"
      SWITCHYARD_BROKER__REDIS_CLUSTER="$list" start_switchyard "$port"
      SWITCHYARD_BROKER__REDIS_CLUSTER="$list" start_switchyard "$second"
      wait_port "$port" && wait_port "$second"
      echo "$(listener_pid "$port"),$(listener_pid "$second"),$(listener_pid "$redis"),$(listener_pid "$((redis + 1))"),$(listener_pid "$((redis + 2))")" \
        "ws://127.0.0.1:$second/ws ws://127.0.0.1:$port/ws switchyard-json" \
        "127.0.0.1:$((port + 500)),127.0.0.1:$((second + 500))" ;;
    bare)
      taskset -c 0 target/release/bare-broadcast "127.0.0.1:$port" >"$out/$name-$port.log" 2>&1 &
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ ws://127.0.0.1:$port/ plain -" ;;
    raw | raw-envelope | raw-envelope-work)
      local flags=
      [ "$name" != raw ] && flags=--envelope
      [ "$name" = raw-envelope-work ] && flags="$flags --work-ns ${RAW_WORK_NS:-500}"
      # shellcheck disable=SC2086 # words to split
      taskset -c 0 target/release/raw-broadcast "127.0.0.1:$port" $flags >"$out/$name-$port.log" 2>&1 &
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ ws://127.0.0.1:$port/ plain -" ;;
    node-ws | node-ws-deflate)
      local ws_deflate=0
      [ "$name" = node-ws-deflate ] && ws_deflate=1
      WS_DEFLATE=$ws_deflate NODE_PATH="$PWD/$out/node_modules" taskset -c 0 node loadtest/peers/ws-broadcast.js 127.0.0.1 "$port" \
        >"$out/$name-$port.log" 2>&1 &
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/ ws://127.0.0.1:$port/ plain -" ;;
    socketio)
      start_redis "$redis"
      wait_port "$redis"
      for p in "$port" "$second"; do
        PING_INTERVAL_MS="$(ping_ms)" NODE_PATH="$PWD/$out/node_modules" taskset -c 0 \
          node loadtest/peers/socketio-broadcast.js 127.0.0.1 "$p" "redis://127.0.0.1:$redis" >"$out/$name-$p.log" 2>&1 &
      done
      wait_port "$port" && wait_port "$second"
      local path="socket.io/?EIO=4&transport=websocket"
      echo "$(listener_pid "$port"),$(listener_pid "$second"),$(listener_pid "$redis")" \
        "ws://127.0.0.1:$second/$path ws://127.0.0.1:$port/$path socket-io -" ;;
    switchyard-pusher)
      printf '[[pusher.apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\nenable_client_messages = true\n' \
        >"$out/pusher-app.toml"
      SWITCHYARD_CONFIG="$PWD/$out/pusher-app.toml" start_switchyard "$port"
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/app/app-key?protocol=7" \
        "ws://127.0.0.1:$port/app/app-key?protocol=7 pusher 127.0.0.1:$((port + 500))" ;;
    sockudo)
      local sockudo=${SOCKUDO:-sockudo}
      command -v "$sockudo" >/dev/null || { echo "sockudo is needed: cargo install sockudo --locked (or SOCKUDO=<path>)" >&2; return 1; }
      HOST=127.0.0.1 PORT=$port SOCKUDO_DEFAULT_APP_ID=1001 SOCKUDO_DEFAULT_APP_KEY=app-key \
        SOCKUDO_DEFAULT_APP_SECRET=app-secret SOCKUDO_ENABLE_CLIENT_MESSAGES=true RUST_LOG=warn \
        METRICS_HOST=127.0.0.1 METRICS_PORT=$((port + 500)) RATE_LIMITER_ENABLED=false \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000000 \
        SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=100000000 SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=10 \
        taskset -c 0 "$sockudo" >"$out/$name-$port.log" 2>&1 &
      wait_port "$port"
      echo "$(listener_pid "$port") ws://127.0.0.1:$port/app/app-key?protocol=7" \
        "ws://127.0.0.1:$port/app/app-key?protocol=7 pusher -" ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
}

# $PING_INTERVAL (e.g. 5s) in milliseconds, 25 s when unset.
ping_ms() {
  local interval=${PING_INTERVAL:-25s}
  echo $((${interval%s} * 1000))
}

# For a run on switchyard-redis-cluster (server $1 on port $2, label $3):
# appends each shard's commands and CPU since it started (each run starts a
# fresh Cluster) to $out/shards.md: how publications spread over shards.
shard_stats() {
  [ "$1" = switchyard-redis-cluster ] || return 0
  local shard=$(($2 + 1000)) i stats
  [ -s "$out/shards.md" ] || {
    echo "| run | shard | FCALL calls | SPUBLISH calls | Redis CPU s |"
    echo "| --- | --- | ---: | ---: | ---: |"
  } >"$out/shards.md"
  for i in 0 1 2; do
    stats=$(redis-cli -p "$((shard + i))" info all)
    echo "| $3 | $((shard + i)) | $(echo "$stats" | grep -o 'cmdstat_fcall:calls=[0-9]*' | cut -d= -f2) |" \
      "$(echo "$stats" | grep -o 'cmdstat_spublish:calls=[0-9]*' | cut -d= -f2) |" \
      "$(echo "$stats" | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.2f", s}') |" >>"$out/shards.md"
  done
}

# Stops the processes $1 (comma-separated PIDs) and waits until they are gone.
stop_server() {
  local pid
  for pid in ${1//,/ }; do kill "$pid" 2>/dev/null || true; done
  for pid in ${1//,/ }; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
}

# The generator's publishing arguments for server $1 started on port $2:
# with PUBLISH_VIA=fcall (switchyard-redis) or http (any switchyard), as a
# backend would; else nothing (a client publishes).
publish_via() {
  case "$1" in
    switchyard-pusher | sockudo) echo "--publish-via pusher-api --publish-to 127.0.0.1:$2"; return ;;
  esac
  case "${PUBLISH_VIA:-client}:$1" in
    fcall:switchyard-redis) echo "--publish-via fcall --publish-to 127.0.0.1:$(($2 + 1000))" ;;
    http:switchyard | http:switchyard-redis) echo "--publish-via http --publish-to 127.0.0.1:$2" ;;
  esac
}

# The generator's --scrape argument for a SCRAPE field of start_server.
scrape_args() {
  [ "$1" = "-" ] || echo "--scrape $1"
}
