//! Real `redis-server` processes for tests: one Redis, a 3-master Redis
//! Cluster (with or without a replica per master), or a primary with a
//! replica under three sentinels, on 127.0.0.1 with free ports, killed when
//! dropped.

use crate::scratch::ScratchDir;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A port that was free a moment ago, for servers that cannot take port 0
/// and tell which they got (Redis, haproxy); the caller retries if it
/// loses the race.
pub fn free_port(also_free_plus: Option<u16>) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port();
        match also_free_plus {
            None => return port,
            Some(offset) => {
                if let Some(bus) = port.checked_add(offset)
                    && TcpListener::bind(("127.0.0.1", bus)).is_ok()
                {
                    return port;
                }
            }
        }
    }
}

/// One `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    /// With TLS: the CA file clients must trust.
    pub tls_ca: Option<PathBuf>,
    _dir: ScratchDir,
}

impl RedisServer {
    /// Starts a Redis with no persistence on a free port.
    pub async fn start() -> RedisServer {
        Self::start_with(&[], None).await
    }

    /// Starts a Redis with extra `redis-server` arguments (`--requirepass x`).
    pub async fn start_with_args(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Self::start_with(&extra, None).await
    }

    /// Starts a Redis that speaks only TLS, with a certificate for
    /// 127.0.0.1 from a CA made for this test (see [`RedisServer::tls_ca`]).
    pub async fn start_tls() -> RedisServer {
        let dir = ScratchDir::new("redis-tls");
        make_certificates(dir.path());
        let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let extra = [
            "--tls-cert-file".to_owned(),
            file("redis.crt"),
            "--tls-key-file".to_owned(),
            file("redis.key"),
            "--tls-ca-cert-file".to_owned(),
            file("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        Self::start_in(dir, &extra, None, true).await
    }

    async fn start_with(extra: &[String], bus_offset: Option<u16>) -> RedisServer {
        Self::start_in(ScratchDir::new("redis"), extra, bus_offset, false).await
    }

    async fn start_in(dir: ScratchDir, extra: &[String], bus_offset: Option<u16>, tls: bool) -> RedisServer {
        let tls_ca = tls.then(|| dir.path().join("ca.crt"));
        for _ in 0..10 {
            let port = free_port(bus_offset);
            if let Some(child) = spawn(port, extra, dir.path(), tls_ca.as_deref()).await {
                return RedisServer { child: Some(child), port, extra: extra.to_vec(), tls_ca, _dir: dir };
            }
        }
        panic!("could not start redis-server (is it installed? scripts/test.sh installs it)");
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; its standard output.
    pub async fn cli(&self, args: &[&str]) -> String {
        cli(self.port, self.tls_ca.as_deref(), args, None).await
    }

    /// Runs `redis-cli -x ARGS`: the last argument is `stdin`, bytes as they are.
    pub async fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        cli(self.port, self.tls_ca.as_deref(), args, Some(stdin)).await
    }

    /// Runs several commands, one per line, on one `redis-cli` connection,
    /// back to back.
    pub async fn script(&self, lines: &str) -> String {
        cli(self.port, self.tls_ca.as_deref(), &[], Some(lines.as_bytes())).await
    }

    /// Kills the server at once (SIGKILL): no goodbye to its clients.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, &self.extra, self._dir.path(), self.tls_ca.as_deref()).await {
                self.child = Some(child);
                return;
            }
        }
        panic!("could not restart redis-server on port {}", self.port);
    }
}

/// Starts redis-server on `port` (its TLS port when `tls_ca` is given);
/// None if it did not come up (port taken).
async fn spawn(port: u16, extra: &[String], dir: &std::path::Path, tls_ca: Option<&std::path::Path>) -> Option<Child> {
    let ports = match tls_ca {
        None => ["--port".to_owned(), port.to_string(), "--tls-port".to_owned(), "0".to_owned()],
        Some(_) => ["--port".to_owned(), "0".to_owned(), "--tls-port".to_owned(), port.to_string()],
    };
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(ports)
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run redis-server");
    // Up when it answers PING; gone if the process exits (port taken).
    for _ in 0..500 {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if answers(port, tls_ca).await {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill().await;
    None
}

/// Whether a Redis answers on `port` (PONG, or NOAUTH when it wants a password).
async fn answers(port: u16, tls_ca: Option<&std::path::Path>) -> bool {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(tls_args(tls_ca))
        .arg("PING")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run redis-cli");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    text.contains("PONG") || text.contains("NOAUTH")
}

fn tls_args(tls_ca: Option<&std::path::Path>) -> Vec<String> {
    match tls_ca {
        Some(ca) => vec!["--tls".to_owned(), "--cacert".to_owned(), ca.to_string_lossy().into_owned()],
        None => Vec::new(),
    }
}

/// A CA (`ca.crt`), and a certificate for 127.0.0.1 signed by it
/// (`redis.crt`, `redis.key`), made with openssl in `dir`.
pub fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (scripts/test.sh installs it)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=switchyard test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

async fn cli(port: u16, tls_ca: Option<&std::path::Path>, args: &[&str], stdin: Option<&[u8]>) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(tls_args(tls_ca));
    // With a command, stdin is its last argument; without, it holds commands.
    if stdin.is_some() && !args.is_empty() {
        command.arg("-x");
    }
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = command.spawn().expect("run redis-cli");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(bytes) = stdin {
        let _ = input.write_all(bytes).await;
    }
    drop(input);
    let output = child.wait_with_output().await.expect("redis-cli output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A 3-master Redis Cluster, with a replica per master or none.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub async fn start() -> RedisCluster {
        Self::start_with_replicas(0).await
    }

    /// Three masters with `replicas` replicas each; a master unreachable for
    /// a second (`cluster-node-timeout`) is replaced by its replica.
    pub async fn start_with_replicas(replicas: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            // The cluster bus listens on port + 10000.
            // A replica's first sync starts at once (not after the default 5 s).
            let extra: Vec<String> =
                ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0"]
                    .map(str::to_owned)
                    .to_vec();
            nodes.push(RedisServer::start_with(&extra, Some(10000)).await);
        }
        let addresses: Vec<String> = nodes.iter().map(RedisServer::address).collect();
        let replicas = replicas.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        nodes[0].cli(&args).await;
        let cluster = RedisCluster { nodes };
        // `cluster_state:fail` for a moment after creation: wait for `ok`
        // everywhere, and for every replica to be in sync (a replica that
        // never synced does not take over).
        crate::within("the cluster to be ok", async {
            for node in &cluster.nodes {
                while !node.cli(&["CLUSTER", "INFO"]).await.contains("cluster_state:ok") {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                loop {
                    let replication = node.cli(&["INFO", "replication"]).await;
                    if replication.contains("role:master") || replication.contains("master_link_status:up") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await;
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The answer of the first node that answers (some may be killed).
    async fn ask(&self, args: &[&str]) -> String {
        for node in &self.nodes {
            let answer = node.cli(args).await;
            if !answer.trim().is_empty() {
                return answer;
            }
        }
        panic!("no node of the cluster answers {args:?}");
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub async fn slot_of(&self, key: &str) -> u16 {
        self.ask(&["CLUSTER", "KEYSLOT", key]).await.trim().parse().expect("a slot number")
    }

    /// The index in `nodes` of the master that owns `slot`.
    pub async fn owner_of(&self, slot: u16) -> usize {
        let shards = self.ask(&["CLUSTER", "SLOTS"]).await;
        // Lines: start, end, ip, port, id, ... per range.
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        for window in lines.windows(4) {
            if let (Ok(start), Ok(end), Ok(port)) =
                (window[0].parse::<u16>(), window[1].parse::<u16>(), window[3].parse::<u16>())
                && (start..=end).contains(&slot)
                && window[2] == "127.0.0.1"
            {
                return self.nodes.iter().position(|n| n.port == port).expect("an owner among our nodes");
            }
        }
        panic!("no owner for slot {slot} in:\n{shards}");
    }

    /// Moves `slot` (which holds no keys) from its owner to another master.
    /// Returns the new owner's index.
    pub async fn move_slot(&self, slot: u16) -> usize {
        let from = self.owner_of(slot).await;
        let to = (from + 1) % self.nodes.len();
        let id = |i: usize| async move { self.nodes[i].cli(&["CLUSTER", "MYID"]).await.trim().to_owned() };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let slot = slot.to_string();
        self.nodes[to].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]).await;
        self.nodes[from].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]).await;
        for node in &self.nodes {
            node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).await;
        }
        to
    }
}
