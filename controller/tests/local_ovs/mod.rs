//! Open vSwitch daemons of a test's own, in a directory of the test's,
//! for the tests that run the controller process against real switches.
//! Needs root and Open vSwitch.

#![allow(dead_code)]

use iris_testbed::pki::CertFiles;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One ovsdb-server and ovs-vswitchd in `dir`, stopped (its bridges
/// deleted first, so no tap device stays behind) when dropped.
pub struct Ovs {
    dir: PathBuf,
    pub bridges: Vec<String>,
}

impl Ovs {
    /// With `dummy`, vswitchd's datapaths are OVS's dummy ones (no tap
    /// device): a second userspace datapath in one namespace would clash
    /// with the first over its `ovs-netdev` device.
    pub fn start(dir: &Path, dummy: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = dir.join("conf.db");
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg("/usr/share/openvswitch/vswitch.ovsschema"));
        let ovs = Self {
            dir: dir.to_owned(),
            bridges: Vec::new(),
        };
        let p = |name: &str| dir.join(name).display().to_string();
        run(Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", p("db.sock")))
            .arg("--remote=db:Open_vSwitch,Open_vSwitch,manager_options")
            .arg("--private-key=db:Open_vSwitch,SSL,private_key")
            .arg("--certificate=db:Open_vSwitch,SSL,certificate")
            .arg("--ca-cert=db:Open_vSwitch,SSL,ca_cert")
            .arg(format!("--pidfile={}", p("ovsdb-server.pid")))
            .arg(format!("--unixctl={}", p("ovsdb-server.ctl")))
            .arg(format!("--log-file={}", p("ovsdb-server.log")))
            .arg("--detach"));
        ovs.vsctl(&["--no-wait", "init"]);
        run(Command::new("ovs-vswitchd")
            .arg(format!("unix:{}", p("db.sock")))
            .arg(format!("--pidfile={}", p("ovs-vswitchd.pid")))
            .arg(format!("--unixctl={}", p("ovs-vswitchd.ctl")))
            .arg(format!("--log-file={}", p("ovs-vswitchd.log")))
            .args(dummy.then_some("--enable-dummy=override"))
            .env("OVS_RUNDIR", dir)
            .arg("--detach"));
        ovs
    }

    /// The port ovsdb-server listens on for `pssl:0:127.0.0.1`, from its log.
    pub fn pssl_port(&self) -> u16 {
        let log = self.dir.join("ovsdb-server.log");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(p) = text
                .lines()
                .filter(|l| l.contains("0:127.0.0.1: listening"))
                .find_map(|l| l.split("listening on port ").nth(1))
                .and_then(|p| p.trim().parse().ok())
            {
                return p;
            }
            assert!(
                Instant::now() < until,
                "no pssl port in {}:\n{text}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn db(&self) -> String {
        format!("unix:{}", self.dir.join("db.sock").display())
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db={}", self.db()))
            .args(args))
    }

    pub fn set_ssl(&self, me: &CertFiles, ca: &Path) {
        self.vsctl(&[
            "set-ssl",
            &me.private_key.display().to_string(),
            &me.certificate.display().to_string(),
            &ca.display().to_string(),
        ]);
    }

    /// The flows of `bridge`, through vswitchd's management socket.
    pub fn flows(&self, bridge: &str) -> Vec<String> {
        let mgmt = self.dir.join(format!("{bridge}.mgmt"));
        let out = run(Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "--no-stats", "dump-flows"])
            .arg(format!("unix:{}", mgmt.display())));
        out.lines()
            .filter(|l| l.contains("cookie=0x4952"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for b in &self.bridges {
            let _ = Command::new("ovs-vsctl")
                .arg(format!("--db={}", self.db()))
                .args(["--if-exists", "del-br", b])
                .output();
        }
        for daemon in ["ovs-vswitchd", "ovsdb-server"] {
            let pidfile = self.dir.join(format!("{daemon}.pid"));
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                let _ = Command::new("kill").arg(pid.trim()).output();
            }
        }
    }
}

pub fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free loopback ports, none handed out before in this test
/// process (a controller told to dial its own listening port talks to
/// itself).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ports = iris_testbed::ports::free_ports(std::net::Ipv4Addr::LOCALHOST.into(), N).unwrap();
    std::array::from_fn(|i| ports[i])
}
