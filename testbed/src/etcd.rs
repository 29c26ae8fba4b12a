//! A three-member etcd cluster on loopback, for controllers on the etcd
//! store: each member a direct child ([`Process`]) with its own data
//! directory under the cluster's directory, removed when the cluster is
//! dropped. Ports are ones the kernel hands out, so parallel runs do not
//! collide; a member can be killed (SIGKILL) and restored on its data.
//! [`EtcdCluster::start_tls`] runs the same cluster with TLS between the
//! members and to their clients, each side proving itself with a
//! certificate of the run's CA.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::pki::{CertFiles, Pki};
use crate::process::{tail_of, Process};
use crate::readiness::{poll_until, Probe};

/// How long a member (or the cluster) has to answer after a start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One member: its name, ports and files, and the process while it runs.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Process>,
}

/// A running etcd cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<ClusterTls>,
}

/// The files of a cluster run with TLS: the members' (one certificate for
/// 127.0.0.1 serves all), a client's, and the CA both sides trust.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub member: CertFiles,
    pub client: CertFiles,
    pub ca_certificate: PathBuf,
}

impl EtcdCluster {
    /// Starts `members` members with their data under `dir` (created) and
    /// waits until the cluster has a leader. A port taken by another
    /// process between choosing the ports ([`crate::ports`]) and etcd's
    /// bind makes a member exit: the cluster is then started afresh on
    /// other ports, up to 3 times.
    pub fn start(dir: &Path, members: usize) -> Result<Self> {
        Self::start_with(dir, members, None)
    }

    /// [`Self::start`] with TLS everywhere: members certified by `pki` for
    /// 127.0.0.1, which ask every client and peer for a certificate of the
    /// same CA; [`Self::tls`] has the files a client needs.
    pub fn start_tls(dir: &Path, members: usize, pki: &Pki) -> Result<Self> {
        let tls = ClusterTls {
            member: pki.issue("127.0.0.1")?,
            client: pki.issue("etcd-client")?,
            ca_certificate: pki.ca_certificate.clone(),
        };
        Self::start_with(dir, members, Some(tls))
    }

    fn start_with(dir: &Path, members: usize, tls: Option<ClusterTls>) -> Result<Self> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::start_once(dir, members, tls.clone()) {
                Err(e @ Error::NotReady { .. }) if tries < 3 => {
                    eprintln!("iris-testbed: etcd did not start ({e}); again on other ports");
                }
                started => return started,
            }
        }
    }

    fn start_once(dir: &Path, members: usize, tls: Option<ClusterTls>) -> Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::fs::create_dir_all(dir).map_err(|e| Error::io_at("creating", dir, e))?;
        let ports = crate::ports::free_ports(Ipv4Addr::LOCALHOST.into(), 2 * members)?;
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(format!("etcd{i}.data")),
                log: dir.join(format!("etcd{i}.log")),
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={scheme}://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "iris-{}-{}",
            std::process::id(),
            dir.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        let mut cluster = Self {
            dir: dir.to_owned(),
            members,
            initial_cluster,
            token,
            tls,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_writable()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let client = self.url(m.client_port);
        let peer = self.url(m.peer_port);
        let mut command = Command::new("etcd");
        if let Some(t) = &self.tls {
            for side in ["", "peer-"] {
                command
                    .arg(format!("--{side}cert-file"))
                    .arg(&t.member.certificate)
                    .arg(format!("--{side}key-file"))
                    .arg(&t.member.private_key)
                    .arg(format!("--{side}trusted-ca-file"))
                    .arg(&t.ca_certificate)
                    .arg(format!("--{side}client-cert-auth"));
            }
        }
        command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            // Ignored once the data directory exists (a restore).
            .args(["--initial-cluster-state", "new"])
            // Loopback: a quicker election than the WAN-minded defaults.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        let name = m.name.clone();
        let log = m.log.clone();
        let process = Process::spawn(name, command, Some(&log))?;
        self.members[i].process = Some(process);
        Ok(())
    }

    fn url(&self, port: u16) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Every member's client URL, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| self.url(m.client_port))
            .collect()
    }

    /// With [`Self::start_tls`]: the files a client connects with.
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members running now.
    pub fn running(&self) -> usize {
        self.members.iter().filter(|m| m.process.is_some()).count()
    }

    /// Kills member `i` with SIGKILL, as a machine that died; its data
    /// directory stays.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let m = self
            .members
            .get_mut(i)
            .ok_or_else(|| Error::Usage(format!("no etcd member {i}")))?;
        if let Some(mut p) = m.process.take() {
            p.signal(Signal::SIGKILL)?;
            p.stop(Duration::from_secs(1))?;
        }
        Ok(())
    }

    /// Starts member `i` again on its data directory and waits until the
    /// cluster takes writes (when a quorum is running).
    pub fn restore(&mut self, i: usize) -> Result<()> {
        if i >= self.members.len() {
            return Err(Error::Usage(format!("no etcd member {i}")));
        }
        if self.members[i].process.is_none() {
            self.spawn(i)?;
        }
        if self.running() > self.members.len() / 2 {
            self.wait_writable()?;
        }
        Ok(())
    }

    /// Waits until a write through `etcdctl` to every running member
    /// succeeds: the cluster has a leader and a quorum.
    pub fn wait_writable(&mut self) -> Result<()> {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.process.is_some())
            .map(|m| self.url(m.client_port))
            .collect();
        let tls_args: Vec<String> = self
            .tls
            .iter()
            .flat_map(|t| {
                [
                    format!("--cacert={}", t.ca_certificate.display()),
                    format!("--cert={}", t.client.certificate.display()),
                    format!("--key={}", t.client.private_key.display()),
                ]
            })
            .collect();
        let members = &mut self.members;
        poll_until("the etcd cluster", START_TIMEOUT, || {
            for m in members.iter_mut() {
                if let Some(p) = m.process.as_mut() {
                    p.ensure_running()?;
                }
            }
            let mut last = String::new();
            for e in &endpoints {
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", e, "--command-timeout=1s"])
                    .args(&tls_args)
                    .args(["put", "iris-testbed/ready", "yes"])
                    .output()
                    .map_err(|e| Error::io("running etcdctl", e))?;
                if !out.status.success() {
                    last = format!("{e}: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
            }
            Ok(if last.is_empty() {
                Probe::Ready(())
            } else {
                Probe::NotYet(last)
            })
        })
    }

    /// The last lines of member `i`'s log, for a failure's message.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.members
            .get(i)
            .map_or_else(String::new, |m| tail_of(&m.log, lines))
    }

    /// Where the members' data and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            drop(m.process.take());
            if let Err(e) = std::fs::remove_dir_all(&m.data_dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("iris-testbed: cannot remove {}: {e}", m.data_dir.display());
                }
            }
        }
    }
}
