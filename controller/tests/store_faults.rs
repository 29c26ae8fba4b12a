//! The `iris-controller` process when its store fails under it.
//!
//! A disk that fills up: the write that no longer fits is answered 503,
//! the controller exits with code 1 and says why, and once there is room
//! again it restarts with every write it acknowledged and none it
//! refused. Both ways a write reaches the sled store are filled: sled's
//! own records (single writes on an empty journal) and the journal
//! (bursts and seeds). The disk is a small tmpfs mounted for the test
//! (root, as `make test` runs), filled with a file down to a few hundred
//! KiB.
//!
//! A `kill -9` in the middle of a stream of writes, journaled and not: the
//! restarted controller holds every write acknowledged before the kill.

#![allow(clippy::unwrap_used)]

use iris_testbed::api_client::ApiClient;
use iris_testbed::controller::ControllerProcess;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted on a directory of its own; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_kib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// KiB free for files.
    fn free_kib(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(self.path()).unwrap();
        s.blocks_available() * s.fragment_size() / 1024
    }

    /// A file that leaves `kib` KiB free.
    fn fill_leaving(&self, kib: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let size = self.free_kib().saturating_sub(kib) * 1024;
        let f = std::fs::File::create(&filler).unwrap();
        // tmpfs allocates as it is written, not for a sparse length.
        let mut w = std::io::BufWriter::new(f);
        let block = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64);
            std::io::Write::write_all(&mut w, &block[..n as usize]).unwrap();
            left -= n;
        }
        std::io::Write::flush(&mut w).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a controller that outlived a failed assertion keeps it
        // busy until it is gone.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn config(dir: &Path, store: &Path) -> PathBuf {
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\nstore = \"{}\"\n",
            store.display()
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path, log: &Path) -> ControllerProcess {
    ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_iris-controller")),
        config,
        log,
    )
    .unwrap()
}

/// Registry entries the controller holds, MACs and IPs.
fn entries(c: &ControllerProcess) -> (usize, usize) {
    let all: Value = c.get_json("/v1/registry?vi=1").unwrap();
    let macs = all.as_array().unwrap();
    let ips = macs
        .iter()
        .map(|e| e["ips"].as_array().unwrap().len())
        .sum();
    (macs.len(), ips)
}

fn mac(n: usize, kind: u8) -> String {
    format!(
        "52:54:{kind:02x}:{:02x}:{:02x}:{:02x}",
        n >> 16 & 0xff,
        n >> 8 & 0xff,
        n & 0xff
    )
}

/// One write: how it is sent, the path that reads it back, and the
/// registry entries (MACs, IPs) it adds.
struct Write {
    method: &'static str,
    path: String,
    body: Value,
    read_back: String,
    adds: (usize, usize),
}

/// Seed `n` of `rows` MACs of kind `kind`, each with an IP.
fn seed(n: usize, rows: usize, kind: u8) -> Write {
    let body: Vec<Value> = (n * rows..(n + 1) * rows)
        .map(|k| {
            json!({
                "mac": mac(k, kind),
                "ip": format!("10.{}.{}.{}", k / 62_500, k / 250 % 250, k % 250 + 1),
                "vlan": 10
            })
        })
        .collect();
    Write {
        method: "POST",
        path: "/v1/vis/1/seed".into(),
        body: Value::Array(body),
        // Its last row: a seed this small is stored whole or not at all.
        read_back: format!("/v1/registry/1/10/{}", mac((n + 1) * rows - 1, kind)),
        adds: (rows, rows),
    }
}

/// A PUT of MAC `n` of kind `kind`, with no location and no IP.
fn put(n: usize, kind: u8) -> Write {
    let path = format!("/v1/registry/1/10/{}", mac(n, kind));
    Write {
        method: "PUT",
        path: path.clone(),
        body: json!({"location": null, "ips": []}),
        read_back: path,
        adds: (1, 0),
    }
}

/// Fills the disk under a running controller with `write(n)` for n = 0, 1,
/// …: the writes acknowledged before one was refused, checked after a
/// restart with room again.
fn fill_the_disk_with(leave_kib: u64, write: impl Fn(usize) -> Write) {
    let disk = Tmpfs::mount(16 * 1024);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &disk.path().join("store"));
    let mut c = start(&config, &work.path().join("first.log"));
    let vi = json!({"id": 1, "name": "acme", "gre_key": 1001, "gateways": []});
    let (status, text) = c.request("PUT", "/v1/vis/1", Some(&vi)).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    let filler = disk.fill_leaving(leave_kib);

    let (mut acked, mut expected) = (Vec::new(), (0, 0));
    let refused = loop {
        let n = acked.len();
        assert!(n < 100_000, "{leave_kib} KiB never filled up");
        let w = write(n);
        let (status, text) = c.request(w.method, &w.path, Some(&w.body)).unwrap();
        if !(200..300).contains(&status) {
            break (status, text);
        }
        acked.push(w.read_back);
        expected = (expected.0 + w.adds.0, expected.1 + w.adds.1);
    };
    assert!(
        !acked.is_empty(),
        "the first write was refused: {refused:?}"
    );
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(refused.1.contains("retry"), "{}", refused.1);
    let status = c.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(status.code(), Some(1), "{}", c.log_tail(10));
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    assert!(
        log.contains("No space left on device"),
        "{}",
        c.log_tail(10)
    );
    assert!(!log.contains("panicked"), "{}", c.log_tail(10));

    std::fs::remove_file(filler).unwrap();
    let c = start(&config, &work.path().join("second.log"));
    assert_eq!(entries(&c), expected, "after {} writes", acked.len());
    // And each by name: the right ones, not only as many.
    for path in &acked {
        let (status, text) = c.request("GET", path, None).unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    }
    c.stop(Duration::from_secs(10)).unwrap();
}

#[test]
fn single_writes_on_a_full_disk_are_refused_and_every_acknowledged_one_survives() {
    // One entry per PUT: sled's own records, the journal being empty.
    fill_the_disk_with(200, |n| put(n, 1));
}

#[test]
fn seeds_on_a_full_disk_are_refused_and_every_acknowledged_one_survives() {
    // 200 MACs and their IPs per seed: 400 writes, appended to the journal.
    fill_the_disk_with(600, |n| seed(n, 200, 2));
}

/// Seeds of 50 MACs with their IPs (100 writes: journaled) and single
/// PUTs (journaled while the journal holds entries, sled's records once
/// a larger write folded it), taking turns, until the API stops
/// answering: the writes acknowledged.
fn write_until_gone(api: std::net::SocketAddr, from: usize) -> Vec<Write> {
    const ROWS: usize = 50;
    let client = ApiClient::new(api, None).unwrap();
    let mut acked = Vec::new();
    for n in from.. {
        let w = if n % 2 == 0 {
            seed(n, ROWS, 3)
        } else {
            put(n, 4)
        };
        match client.request(w.method, &w.path, Some(&w.body)) {
            Ok((status, _)) if (200..300).contains(&status) => acked.push(w),
            // Refused while it went down, or no answer: not acknowledged.
            _ => break,
        }
    }
    acked
}

#[test]
fn every_write_acknowledged_before_a_kill_9_is_there_after_the_restart() {
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &work.path().join("store"));
    let mut acked: Vec<Write> = Vec::new();
    let mut c = start(&config, &work.path().join("0.log"));
    let vi = json!({"id": 1, "name": "acme", "gre_key": 1001, "gateways": []});
    let (status, text) = c.request("PUT", "/v1/vis/1", Some(&vi)).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    // Kills at different points of the stream, each on the store the
    // last one left.
    for (round, after_ms) in [700u64, 1300, 400].into_iter().enumerate() {
        let api = c.api_addr();
        let from = acked.len();
        let writer = std::thread::spawn(move || write_until_gone(api, from));
        std::thread::sleep(Duration::from_millis(after_ms));
        c.kill().unwrap();
        let got = writer.join().unwrap();
        assert!(!got.is_empty(), "round {round}: nothing was acknowledged");
        eprintln!(
            "round {round}: {} writes acknowledged before the kill",
            got.len()
        );
        acked.extend(got);

        c = start(&config, &work.path().join(format!("{}.log", round + 1)));
        for w in &acked {
            let (status, text) = c.request("GET", &w.read_back, None).unwrap();
            assert_eq!(status, 200, "round {round}: {}: {text}", w.read_back);
        }
        // At most the one write under way when the kill came is there too.
        let expected = acked
            .iter()
            .fold((0, 0), |t, w| (t.0 + w.adds.0, t.1 + w.adds.1));
        let (macs, ips) = entries(&c);
        assert!(
            (expected.0..=expected.0 + 50).contains(&macs)
                && (expected.1..=expected.1 + 50).contains(&ips),
            "round {round}: {macs} MACs and {ips} IPs, {expected:?} acknowledged"
        );
    }
    c.stop(Duration::from_secs(10)).unwrap();
}
