//! The controller binary behind a shell wrapper, for the process tests
//! that start it through the testbed's harness (which runs `BINARY run
//! --config FILE`) but need a limit set first or an argument added.

use std::path::{Path, PathBuf};

/// A script in `dir` that runs `setup` (shell lines), then `exec`s the
/// controller with its own arguments followed by `extra_args`. `exec`
/// keeps the pid, so the harness's signals reach the controller.
pub fn wrapped_controller(dir: &Path, setup: &str, extra_args: &str) -> PathBuf {
    let path = dir.join("wrapped-iris-controller");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{setup}\nexec {} \"$@\" {extra_args}\n",
            env!("CARGO_BIN_EXE_iris-controller")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}
