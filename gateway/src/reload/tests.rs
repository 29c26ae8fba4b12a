use super::*;
use crate::config::encryption::{generate_key, key_text};
use crate::config::tests::encrypted;

/// A gateway's file with its key in `dir/name` and the peer's public key
/// `peer`, written to `dir/gw.toml`.
fn write(dir: &Path, key: &str, peer: &[u8; 32], edit: impl Fn(String) -> String) -> Config {
    let text = encrypted(
        &dir.join(key),
        &format!(
            "public_key = \"{}\"\ninner_ip = \"10.254.0.1\"",
            key_text(peer)
        ),
    );
    let path = dir.join("gw.toml");
    std::fs::write(&path, edit(text)).unwrap();
    Config::load(&path).unwrap()
}

#[test]
fn new_keys_alone_are_applied_and_anything_more_refuses_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let (mine, next) = (dir.path().join("a.key"), dir.path().join("b.key"));
    let (_, next_public) = (generate_key(&mine).unwrap(), generate_key(&next).unwrap());
    let peer = [7u8; 32];
    let running = write(dir.path(), "a.key", &peer, |t| t);
    assert!(matches!(
        reload(&path, &running).unwrap(),
        Reload::Unchanged
    ));

    // The gateway's own key and the peer's, each alone and both.
    for (key, peer) in [("b.key", peer), ("a.key", [9u8; 32]), ("b.key", [9u8; 32])] {
        write(dir.path(), key, &peer, |t| t);
        let Reload::Keys(keys, new) = reload(&path, &running).unwrap() else {
            panic!("{key} {peer:?}: the keys were not taken");
        };
        assert_eq!(keys.peers, vec![peer]);
        let own = keys.private_key.public();
        assert_eq!(own == next_public, key == "b.key");
        assert_eq!(new.encryption.unwrap().keys(), keys);
    }

    // A new key with anything else changed: nothing applied, and what
    // changed named.
    write(dir.path(), "b.key", &peer, |t| {
        t.replace("dc = \"acme-dc\"", "dc = \"other-dc\"")
            .replace("10.254.0.2/24", "10.254.0.3/24")
    });
    let e = reload(&path, &running).unwrap_err();
    let said = e.to_string();
    assert!(matches!(e, ReloadError::NeedsRestart { .. }), "{said}");
    assert!(said.contains("[gateway] dc"), "{said}");
    assert!(said.contains("other than the keys"), "{said}");
    assert!(said.contains("Nothing was applied"), "{said}");

    // Encryption taken away, and a file that does not load.
    std::fs::write(&path, crate::config::tests::IAAS).unwrap();
    let said = reload(&path, &running).unwrap_err().to_string();
    assert!(said.contains("added or removed"), "{said}");
    std::fs::write(&path, "[gateway]\nname = 1\n").unwrap();
    assert!(matches!(reload(&path, &running), Err(ReloadError::Load(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(reload(&path, &running), Err(ReloadError::Load(_))));
}
