//! What `SIGHUP` does to a running gateway: read its configuration file
//! again and put in place what may change while it runs, the encrypted
//! WAN's keys (docs/gateway.md, "Rotating the keys"). A file that changed
//! anything else is refused whole, naming what changed, and the gateway
//! goes on as it was; so is a file that does not load.

use crate::config::encryption::Keys;
use crate::config::Config;
use iris_controller::config::LoadError;
use std::path::Path;
use tokio::sync::watch;
use tracing::{info, warn};

/// What reading the file again found.
#[derive(Debug)]
pub enum Reload {
    /// Nothing that a reload applies changed.
    Unchanged,
    /// New keys, and the configuration that holds them.
    Keys(Keys, Box<Config>),
}

/// Why a reload applied nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error(
        "{path}: {} changed; only the encrypted WAN's keys (the key in \
         [wan.encryption] private_key_file, each [peer.encryption] public_key) change while the \
         gateway runs: restart it for the rest. Nothing was applied",
        changed.join(", ")
    )]
    NeedsRestart {
        path: String,
        changed: Vec<&'static str>,
    },
}

/// Reads `path` again and compares it with `running`, the file as the
/// gateway runs it (VIs added at run time are not part of it).
pub fn reload(path: &Path, running: &Config) -> Result<Reload, ReloadError> {
    let new = Config::load(path)?;
    let changed = changed_beyond_keys(running, &new);
    if !changed.is_empty() {
        return Err(ReloadError::NeedsRestart {
            path: path.display().to_string(),
            changed,
        });
    }
    match (&running.encryption, &new.encryption) {
        (Some(old), Some(e)) if old.keys() != e.keys() => Ok(Reload::Keys(e.keys(), Box::new(new))),
        _ => Ok(Reload::Unchanged),
    }
}

/// The parts of `new` that differ from `running` other than the keys,
/// as the file names them.
fn changed_beyond_keys(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut new = new.clone();
    if let (Some(old), Some(e)) = (&running.encryption, &mut new.encryption) {
        *e = e.with_keys(&old.keys());
    }
    let mut changed = Vec::new();
    let mut differs = |same: bool, what: &'static str| {
        if !same {
            changed.push(what);
        }
    };
    let r = running;
    differs(r.name == new.name, "[gateway] name");
    differs(r.kind == new.kind, "[gateway] kind");
    differs(r.dc == new.dc, "[gateway] dc");
    differs(r.wan_ip == new.wan_ip, "[gateway] wan_ip");
    differs(r.bridge == new.bridge, "[gateway] bridge");
    differs(r.ovsdb == new.ovsdb, "[gateway] ovsdb");
    differs(r.openflow == new.openflow, "[gateway] openflow");
    differs(r.trunk == new.trunk, "[gateway] trunk");
    differs(r.mtu == new.mtu, "the WAN's MTU");
    differs(r.listen == new.listen, "[gateway] listen");
    differs(
        r.controller == new.controller
            && r.controller_token == new.controller_token
            && r.controller_ca == new.controller_ca,
        "[controller]",
    );
    differs(
        r.allow_unauthenticated_peers == new.allow_unauthenticated_peers,
        "[gateway] allow_unauthenticated_peers",
    );
    differs(r.peers == new.peers, "[[peer]]");
    differs(r.vis == new.vis, "[[vi]]");
    differs(
        r.encryption.is_some() == new.encryption.is_some(),
        "[wan.encryption] (added or removed)",
    );
    if r.encryption.is_some() && new.encryption.is_some() {
        differs(
            r.encryption == new.encryption,
            "[wan.encryption] or [peer.encryption] (other than the keys)",
        );
    }
    differs(r.vi_api == new.vi_api, "[vi_api]");
    if changed.is_empty() && *r != new {
        changed.push("the file");
    }
    changed
}

/// Reloads on `SIGHUP`: new keys go to the encrypted WAN through `keys`,
/// and `file` becomes the file read; whatever happens is logged.
pub fn on_hangup(path: &Path, file: &mut Config, keys: Option<&watch::Sender<Keys>>) {
    match (reload(path, file), keys) {
        (Ok(Reload::Unchanged), _) => info!(
            "SIGHUP: {} read again; the encrypted WAN's keys are as they were, nothing to apply",
            path.display()
        ),
        (Ok(Reload::Keys(k, new)), Some(tx)) => {
            tx.send_replace(k);
            *file = *new;
            info!(
                "SIGHUP: {}: new keys for the encrypted WAN put in place",
                path.display()
            );
        }
        // A gateway whose WAN is encrypted always has the channel.
        (Ok(Reload::Keys(..)), None) => {
            warn!("SIGHUP: the encrypted WAN is not running; nothing applied");
        }
        (Err(e), _) => warn!("SIGHUP: {e}"),
    }
}

#[cfg(test)]
mod tests;
