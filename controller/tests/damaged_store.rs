//! The `iris-controller` process on a damaged store: it refuses to start
//! (exit code 1, the file named, what to do), and `--empty-store` moves the
//! damaged store aside untouched and starts with an empty one.

#![allow(clippy::unwrap_used)]

mod launch;

use iris_controller::store::SledStore;
use iris_testbed::controller::ControllerProcess;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\nstore = \"{}\"\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

/// `iris-controller run` on `config`: its exit status and standard error,
/// or `None` (the process killed) if it still runs after `within`.
fn exited_within(config: &Path, within: Duration) -> Option<(ExitStatus, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iris-controller"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > within {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Some((status, stderr))
}

/// Bytes that look like nothing: an xorshift stream.
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn a_database_of_random_bytes_stops_the_controller_with_exit_code_1_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop(SledStore::open(&store).unwrap());
    let db = store.join("db");
    let len = usize::try_from(std::fs::metadata(&db).unwrap().len()).unwrap();
    let random = noise(len.max(4096), 0x9e37_79b9_7f4a_7c15);
    std::fs::write(&db, &random).unwrap();
    let config = config(dir.path());

    let (status, stderr) = exited_within(&config, Duration::from_secs(20))
        .expect("the controller runs on a store whose db is random bytes");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is damaged", db.display()))
            && stderr.contains("--empty-store"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Knowingly: the damaged store goes aside as it was.
    let log = dir.path().join("empty-store.log");
    let wrapper = launch::wrapped_controller(dir.path(), "", "--empty-store");
    let mut c = ControllerProcess::start(&wrapper, &config, &log).unwrap();
    c.wait_log("0 registry entries", Duration::from_secs(10))
        .unwrap();
    let moved = c
        .wait_log("--empty-store: moved the store", Duration::from_secs(1))
        .unwrap();
    c.stop(Duration::from_secs(10)).unwrap();
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("store.set-aside-"))
        .unwrap_or_else(|| panic!("no store set aside: {moved}"));
    assert!(moved.contains(&aside.display().to_string()), "{moved}");
    assert!(std::fs::read(aside.join("db")).unwrap() == random);
}

/// sled panics ("tried to serialize Uninitialized") reading a database of
/// many small writes with noise in its middle: the controller exited 101
/// with sled's panic. It now exits 1 naming the file, as for other damage.
#[test]
fn a_database_sled_panics_on_stops_the_controller_with_exit_code_1_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let db = sled::Config::new().path(&good).open().unwrap();
    for i in 0..20000 {
        db.insert(format!("v1/vi/{i}"), vec![b'x'; 100]).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let config = config(dir.path());
    let store = dir.path().join("store");
    let db = store.join("db");
    // Where sled's segments lie depends on when its threads flushed: try
    // noise at a few offsets until one makes sled panic (the store's own
    // test does the same).
    let mut panicked = false;
    for (k, seed) in (2..10).zip(11..) {
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir(&store).unwrap();
        for file in ["conf", "db"] {
            std::fs::copy(good.join(file), store.join(file)).unwrap();
        }
        let mut bytes = std::fs::read(&db).unwrap();
        let at = bytes.len() * (k - 1) / k;
        bytes[at..at + 2000].copy_from_slice(&noise(2000, seed));
        std::fs::write(&db, bytes).unwrap();
        let Some((status, stderr)) = exited_within(&config, Duration::from_secs(5)) else {
            continue;
        };
        // Other copies are refused for other reasons, always with exit
        // code 1 (these records are not Iris's, so one may open and be
        // refused record by record).
        assert_eq!(status.code(), Some(1), "{stderr}");
        if stderr.contains("sled failed reading it (tried to serialize Uninitialized)") {
            assert!(
                stderr.contains(&format!("{} is damaged", db.display()))
                    && stderr.contains("--empty-store"),
                "{stderr}"
            );
            panicked = true;
            break;
        }
    }
    assert!(panicked, "no damaged copy made sled panic");
}

/// A garbage `conf` beside a valid `db` made sled say the database was
/// "created using a sled version earlier than 0.29"; the controller now
/// names `conf` as damaged and exits 1.
#[test]
fn a_garbage_conf_stops_the_controller_with_exit_code_1_naming_conf() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop(SledStore::open(&store).unwrap());
    let conf = store.join("conf");
    std::fs::write(&conf, noise(100, 3)).unwrap();
    let (status, stderr) = exited_within(&config(dir.path()), Duration::from_secs(20))
        .expect("the controller runs on a store whose conf is garbage");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is damaged", conf.display())) && !stderr.contains("0.29"),
        "{stderr}"
    );
}
