//! VIs added and removed at run time (`[vi_api]`, haas): the state file
//! that keeps them across restarts, and the changes the API makes.
//!
//! A change is validated whole ([`Config::with_runtime_vis`]), written to
//! the state file (a temporary file, synced, renamed over the old one: a
//! crash leaves the old file or the new, never half of one), and only then
//! made the gateway's configuration: the control core's, and the bridge
//! plan the keeper follows, which adds or removes the VI's WAN port.

use crate::api::Shared;
use crate::config::{Config, RuntimeVi, ViApi, ViSpec};
use iris_controller::config::ConfigError;
#[cfg(test)]
use iris_controller::model::ViId;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    vis: Vec<RuntimeVi>,
}

/// Why the runtime VIs could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state file {0} is damaged ({1}); it holds the VIs added at run time: repair it, or \
         move it away to start without them"
    )]
    Damaged(PathBuf, String),
    #[error("cannot read the state file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write the state file {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error(
        "the VIs in the state file {0} no longer fit the configuration: {problems}; change the \
         configuration, or remove those VIs from the file",
        problems = list(.1)
    )]
    Conflict(PathBuf, Vec<ConfigError>),
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.key, e.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `config` with the runtime VIs of its state file, if it has `[vi_api]`
/// and the file exists. A file that is not what the gateway wrote, or
/// whose VIs clash with the configuration, is refused, never dropped.
pub fn restore(config: Config) -> Result<Config, StateError> {
    let Some(api) = &config.vi_api else {
        return Ok(config);
    };
    let path = api.state_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(config),
        Err(e) => return Err(StateError::Read(path, e)),
    };
    let state: StateFile = serde_json::from_str(&text)
        .map_err(|e| StateError::Damaged(path.clone(), e.to_string()))?;
    for v in &state.vis {
        if let Some((at, p)) = config.check_runtime_vi(v.id, &v.spec()).into_iter().next() {
            return Err(StateError::Damaged(path, format!("VI {}: {at}: {p}", v.id)));
        }
    }
    let n = state.vis.len();
    let config = config
        .with_runtime_vis(state.vis)
        .map_err(|e| StateError::Conflict(path.clone(), e))?;
    if n > 0 {
        tracing::info!("{n} VIs added at run time restored from {}", path.display());
    }
    Ok(config)
}

/// Writes `vis` as the state file of `api`, atomically.
pub fn save(api: &ViApi, vis: &[RuntimeVi]) -> Result<(), StateError> {
    let path = api.state_file();
    let werr = |e| StateError::Write(path.clone(), e);
    std::fs::create_dir_all(&api.state_dir).map_err(werr)?;
    let tmp = api
        .state_dir
        .join(format!(".{}.tmp", crate::config::runtime::STATE_FILE));
    let text = serde_json::to_vec_pretty(&StateFile { vis: vis.to_vec() })
        .map_err(|e| werr(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(werr)?;
    sync_dir(&api.state_dir).map_err(werr)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Replaced,
    /// The VI was already so: nothing changed.
    Unchanged,
}

/// Why a change was refused; nothing changed.
#[derive(Debug)]
pub enum Refused {
    /// The request is wrong on its own: `(JSON pointer, detail)`.
    Invalid(Vec<(String, String)>),
    /// It clashes with the configuration or another runtime VI.
    Conflict(Vec<ConfigError>),
    /// The VI is one of the configuration file's.
    FileVi(u32),
    State(StateError),
}

/// Makes `next` the gateway's runtime VIs: kept in the state file first,
/// then the control core's and the bridge's.
fn commit(shared: &Shared, api: &ViApi, next: Vec<RuntimeVi>) -> Result<(), Refused> {
    let config = shared
        .control()
        .config()
        .with_runtime_vis(next)
        .map_err(Refused::Conflict)?;
    save(api, &config.runtime).map_err(Refused::State)?;
    shared.set_config(Arc::new(config));
    Ok(())
}

/// `PUT /v1/vis/{id}`.
pub fn put(shared: &Shared, api: &ViApi, id: u32, spec: ViSpec) -> Result<Put, Refused> {
    let config = shared.control().config().clone();
    let problems = config.check_runtime_vi(id, &spec);
    if !problems.is_empty() {
        return Err(Refused::Invalid(problems));
    }
    if config.is_file_vi(id) {
        return Err(Refused::FileVi(id));
    }
    let vi = RuntimeVi::new(id, spec);
    let mut next = config.runtime.clone();
    let outcome = match next.iter_mut().find(|v| v.id == id) {
        Some(old) if *old == vi => return Ok(Put::Unchanged),
        Some(old) => {
            *old = vi;
            Put::Replaced
        }
        None => {
            next.push(vi);
            Put::Created
        }
    };
    commit(shared, api, next)?;
    Ok(outcome)
}

/// `DELETE /v1/vis/{id}`: true when it was there.
pub fn delete(shared: &Shared, api: &ViApi, id: u32) -> Result<bool, Refused> {
    let config = shared.control().config().clone();
    if config.is_file_vi(id) {
        return Err(Refused::FileVi(id));
    }
    let mut next = config.runtime.clone();
    let before = next.len();
    next.retain(|v| v.id != id);
    if next.len() == before {
        return Ok(false);
    }
    commit(shared, api, next)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
