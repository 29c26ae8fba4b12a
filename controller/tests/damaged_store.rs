//! The `iris-controller` process on a damaged store: it refuses to start
//! (exit code 1, the file named, what to do), and `--empty-store` moves the
//! damaged store aside untouched and starts with an empty one.

#![allow(clippy::unwrap_used)]

mod launch;

use iris_controller::store::SledStore;
use iris_testbed::controller::ControllerProcess;
use std::path::Path;
use std::process::{Command, Stdio};
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

#[test]
fn a_database_of_random_bytes_stops_the_controller_with_exit_code_1_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop(SledStore::open(&store).unwrap());
    let db = store.join("db");
    let len = usize::try_from(std::fs::metadata(&db).unwrap().len()).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..len.max(4096))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&db, &random).unwrap();
    let config = config(dir.path());

    let mut child = Command::new(env!("CARGO_BIN_EXE_iris-controller"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the controller runs on a store whose db is random bytes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
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
