//! A real `ovsdb-server` (and, where needed, `ovs-vswitchd`) per test, each in
//! its own temporary directory, killed when the test ends however it ends.
//! `ovs-vsctl` against the same socket is the independent ground truth.

#![allow(dead_code)]
// Each test binary uses a different part.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovsdb::Remote;

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The full path of an Open vSwitch program, or a panic that says how to get it.
pub fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: these tests run a real Open vSwitch; \
                 install it with scripts/install-deps.sh"
            )
        })
}

fn schema() -> &'static Path {
    let schema = Path::new(SCHEMA);
    assert!(
        schema.is_file(),
        "{SCHEMA} not found: install Open vSwitch with scripts/install-deps.sh"
    );
    schema
}

/// Panics unless running as root (needed for network namespaces and taps).
pub fn require_root(what: &str) {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert_eq!(
        uid, "0",
        "{what} needs root (network namespaces, tap devices); run as root"
    );
}

fn run(program_name: &str, args: &[&str]) -> String {
    let out = Command::new(program(program_name))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program_name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // A stopped process must be continued to die cleanly; SIGKILL works either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `ovsdb-server` serving a fresh `Open_vSwitch` database.
pub struct OvsdbServer {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub sock: PathBuf,
    pub tcp_port: u16,
    pub ssl_port: Option<u16>,
    server: Option<Guard>,
}

impl OvsdbServer {
    /// A database initialised as `ovs-vsctl init` leaves it.
    pub fn start() -> Self {
        let server = Self::start_uninitialised();
        server.vsctl("init");
        server
    }

    /// A database with no rows at all.
    pub fn start_uninitialised() -> Self {
        Self::launch(&[])
    }

    /// [`Self::start`], serving `pssl:` too with `(key, certificate)` and
    /// asking clients for a certificate of `ca`.
    pub fn start_ssl(me: &(PathBuf, PathBuf), ca: &Path) -> Self {
        // Both listeners log alike, so this one's port is chosen here.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self::launch(&[
            format!("--remote=pssl:{port}:127.0.0.1"),
            format!("--private-key={}", me.0.display()),
            format!("--certificate={}", me.1.display()),
            format!("--ca-cert={}", ca.display()),
        ]);
        wait_until(
            "ovsdb-server to listen on pssl:",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        server.vsctl("init");
        Self {
            ssl_port: Some(port),
            ..server
        }
    }

    fn launch(extra: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("iris-ovsdb-")
            .tempdir()
            .unwrap();
        let db = dir.path().join("conf.db");
        let sock = dir.path().join("db.sock");
        let log = dir.path().join("ovsdb-server.log");
        run(
            "ovsdb-tool",
            &["create", db.to_str().unwrap(), schema().to_str().unwrap()],
        );
        let child = Command::new(program("ovsdb-server"))
            .arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg("--remote=ptcp:0:127.0.0.1")
            .args(extra)
            .arg(format!(
                "--unixctl={}",
                dir.path().join("ovsdb-server.ctl").display()
            ))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("ovsdb-server.pid").display()
            ))
            .arg(format!("--log-file={}", log.display()))
            .arg("-vconsole:off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard = Guard(child);
        let mut tcp_port = 0;
        wait_until("ovsdb-server to listen", Duration::from_secs(10), || {
            let log = fs::read_to_string(&log).unwrap_or_default();
            let ports: Vec<u16> = log
                .lines()
                .filter_map(|l| l.split("listening on port ").nth(1))
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            // The one port not chosen by the caller is ptcp:'s (a fixed
            // port is not logged).
            tcp_port = ports
                .iter()
                .copied()
                .find(|p| !extra.iter().any(|e| e.contains(&format!(":{p}:"))))
                .unwrap_or(0);
            // The socket file appears at bind(), a moment before listen():
            // only a successful connect says the server is ready.
            tcp_port != 0 && std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        Self {
            dir,
            db,
            sock,
            tcp_port,
            ssl_port: None,
            server: Some(guard),
        }
    }

    pub fn unix_remote(&self) -> Remote {
        format!("unix:{}", self.sock.display()).parse().unwrap()
    }

    pub fn tcp_remote(&self) -> Remote {
        format!("tcp:127.0.0.1:{}", self.tcp_port).parse().unwrap()
    }

    pub fn ssl_remote(&self) -> Remote {
        format!(
            "ssl:127.0.0.1:{}",
            self.ssl_port.expect("started with start_ssl")
        )
        .parse()
        .unwrap()
    }

    /// Runs `ovs-vsctl` against this server and returns its output. The
    /// command line is split at whitespace.
    pub fn vsctl(&self, command: &str) -> String {
        let db = format!("--db=unix:{}", self.sock.display());
        let mut all = vec![db.as_str(), "--no-wait", "--timeout=10"];
        all.extend(command.split_whitespace());
        run("ovs-vsctl", &all)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("ovsdb-server.log")).unwrap_or_default()
    }

    pub fn db_len(&self) -> u64 {
        fs::metadata(&self.db).unwrap().len()
    }

    fn pid(&self) -> u32 {
        self.server.as_ref().expect("server running").0.id()
    }

    pub fn kill(&mut self) {
        self.server = None;
    }

    /// Freezes the server (SIGSTOP): the socket stays open, nothing answers.
    pub fn freeze(&self) {
        run("kill", &["-STOP", &self.pid().to_string()]);
    }
}

/// An `ovs-vswitchd` on the userspace datapath in a network namespace of its
/// own, so the devices it creates never touch the host.
pub struct Vswitchd {
    _process: Guard,
    pub log: PathBuf,
}

impl Vswitchd {
    pub fn start(server: &OvsdbServer) -> Self {
        require_root("ovs-vswitchd");
        let dir = server.dir.path();
        let log = dir.join("ovs-vswitchd.log");
        let child = Command::new(program("unshare"))
            .arg("--net")
            .arg("--")
            .arg(program("ovs-vswitchd"))
            .arg(format!("unix:{}", server.sock.display()))
            .arg(format!(
                "--pidfile={}",
                dir.join("ovs-vswitchd.pid").display()
            ))
            .arg(format!(
                "--unixctl={}",
                dir.join("ovs-vswitchd.ctl").display()
            ))
            .arg(format!("--log-file={}", log.display()))
            .arg("--disable-system")
            .arg("-vconsole:off")
            .env("OVS_RUNDIR", dir)
            .env("OVS_LOGDIR", dir)
            .env("OVS_DBDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            _process: Guard(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
