//! A real PostgreSQL server for tests: a fresh cluster in a scratch
//! directory on a free port, killed when dropped. The server refuses to run
//! as root, so when the tests run as root it runs as the `postgres` user.

use crate::redis::free_port;
use crate::scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

pub struct PostgresServer {
    child: Child,
    pub port: u16,
    dir: ScratchDir,
}

/// Where Debian puts the server's programs (`initdb`, `postgres`).
fn bin(program: &str) -> PathBuf {
    for version in ["17", "16", "15"] {
        let path = Path::new("/usr/lib/postgresql").join(version).join("bin").join(program);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(program)
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program args` as the `postgres` user when running as root.
fn command(program: &str, args: &[&str]) -> Command {
    let program = bin(program);
    let mut command = match is_root() {
        true => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        }
        false => Command::new(&program),
    };
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    command
}

/// Whether a server answers on `port` within a few seconds.
async fn ready(port: u16) -> bool {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    for _ in 0..250 {
        if tokio_postgres::connect(&url, tokio_postgres::NoTls).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

impl PostgresServer {
    /// A new cluster (trust authentication, no fsync) with a database
    /// `app`, listening on 127.0.0.1.
    pub async fn start() -> PostgresServer {
        let dir = ScratchDir::new("postgres");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create the data directory");
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown the scratch directory");
            assert!(status.success(), "chown postgres failed");
        }
        let data_path = data.to_string_lossy().into_owned();
        let initdb = command("initdb", &["-D", &data_path, "-A", "trust", "-U", "postgres"]).status().await;
        assert!(initdb.is_ok_and(|s| s.success()), "initdb failed");
        let socket_dir = dir.path().to_string_lossy().into_owned();
        for _ in 0..20 {
            let port = free_port(None);
            let port_arg = port.to_string();
            let args = [
                "-D",
                &data_path,
                "-p",
                &port_arg,
                "-k",
                &socket_dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ];
            let mut child = command("postgres", &args).spawn().expect("start postgres");
            if ready(port).await {
                let server = PostgresServer { child, port, dir };
                let created = server.client("postgres").await.batch_execute("CREATE DATABASE app").await;
                created.expect("create the database");
                return server;
            }
            // Lost the port to someone else, or not up: try another.
            let _ = child.kill().await;
        }
        panic!("postgres did not start");
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `postgres://postgres@127.0.0.1:PORT/app`
    pub fn url(&self) -> String {
        self.url_of("app")
    }

    /// A connection to `database`, its connection task running.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url_of(database), tokio_postgres::NoTls).await.expect("connect to postgres");
        tokio::spawn(connection);
        client
    }

    /// The scratch directory the cluster lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
