//! The `iris-controller` process on a disk that fills up: the write that
//! no longer fits is answered 503, the controller exits with code 1 and
//! says why, and once there is room again it restarts with every write it
//! acknowledged and none it refused. Both ways a write reaches the sled
//! store are filled: sled's own records (single writes on an empty
//! journal) and the journal (bursts and seeds).
//!
//! The disk is a small tmpfs mounted for the test (root, as `make test`
//! runs), filled with a file down to a few hundred KiB.

#![allow(clippy::unwrap_used)]

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
    fill_the_disk_with(200, |n| {
        let path = format!("/v1/registry/1/10/{}", mac(n, 1));
        Write {
            method: "PUT",
            path: path.clone(),
            body: json!({"location": null, "ips": []}),
            read_back: path,
            adds: (1, 0),
        }
    });
}

#[test]
fn seeds_on_a_full_disk_are_refused_and_every_acknowledged_one_survives() {
    // 200 MACs and their IPs per seed: 400 writes, appended to the journal.
    const ROWS: usize = 200;
    fill_the_disk_with(600, |n| {
        let rows: Vec<Value> = (n * ROWS..(n + 1) * ROWS)
            .map(|k| {
                json!({
                    "mac": mac(k, 2),
                    "ip": format!("10.{}.{}.{}", k / 62_500, k / 250 % 250, k % 250 + 1),
                    "vlan": 10
                })
            })
            .collect();
        Write {
            method: "POST",
            path: "/v1/vis/1/seed".into(),
            body: Value::Array(rows),
            // Its last row: a seed is stored whole or not at all.
            read_back: format!("/v1/registry/1/10/{}", mac((n + 1) * ROWS - 1, 2)),
            adds: (ROWS, ROWS),
        }
    });
}
