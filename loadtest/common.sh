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
