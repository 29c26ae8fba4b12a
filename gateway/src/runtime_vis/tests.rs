#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{PeerSpec, RawVlan};
use crate::control::Control;
use crate::metrics::Metrics;

/// The config tests' haas gateway (VIs 1 and 2, keys 1001 and 1002, peers
/// gw-acme 203.0.113.2 and gw-globex 203.0.113.3) with `[vi_api]` in `dir`.
fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("token"), "0123456789abcdef0123\n").unwrap();
    Config::parse(&format!(
        "{}\n[vi_api]\ntoken_file = \"{}\"\nstate_dir = \"{}\"\n",
        crate::config::tests::HAAS,
        dir.join("token").display(),
        dir.join("state").display()
    ))
    .unwrap()
}

fn shared(config: Config) -> Arc<Shared> {
    let metrics = Arc::new(Metrics::default());
    Shared::new(
        Control::new(Arc::new(config), metrics.clone()),
        metrics,
        None,
    )
}

/// The hash of a runtime peer's token, `gw-initech-reports-to-gw-haas-0123`.
const INITECH_TOKEN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$9fulfxWZ5fzGcCMdQy2QcA$AX6+QeLZJELTOxRWOBQDDJT0UlVLWcTZnX+fFJCM9ko";

fn spec(key: u32, peer: &str, ip: &str, vlans: &[&str]) -> ViSpec {
    ViSpec {
        gre_key: key,
        peer: PeerSpec {
            name: peer.into(),
            wan_ip: ip.parse().unwrap(),
            api: "http://127.0.0.1:9183".into(),
            token_hash: Some(INITECH_TOKEN_HASH.into()),
        },
        vlans: vlans.iter().map(|v| RawVlan::Text((*v).into())).collect(),
    }
}

fn conflict_text(r: Result<Put, Refused>) -> String {
    match r {
        Err(Refused::Conflict(errors)) => list(&errors),
        other => panic!("not a conflict: {other:?}"),
    }
}

#[test]
fn a_runtime_vi_is_carried_kept_and_restored_and_a_put_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(dir.path()));
    let api = s.control().config().vi_api.clone().unwrap();
    let vi = spec(1005, "gw-initech", "203.0.113.9", &["100-199"]);
    assert_eq!(put(&s, &api, 5, vi.clone()).unwrap(), Put::Created);
    assert_eq!(put(&s, &api, 5, vi.clone()).unwrap(), Put::Unchanged);
    // A second VI to the same new peer shares it.
    let other = spec(1006, "gw-initech", "203.0.113.9", &["300"]);
    assert_eq!(put(&s, &api, 6, other).unwrap(), Put::Created);
    {
        let c = s.control();
        let config = c.config();
        assert_eq!(config.vi(ViId(5)).unwrap().gre_key, 1005);
        assert_eq!(config.vi(ViId(5)).unwrap().peer, "gw-initech");
        assert_eq!(config.peers.len(), 3, "{:?}", config.peers);
        let plan = crate::run::bridge_plan(config);
        let names: Vec<&str> = plan.wan_ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["w1-p0", "w2-p1", "w5-r", "w6-r"]);
    }
    // A report from the new peer for the new VI is followed.
    let report: crate::report::PeerReport = serde_json::from_value(serde_json::json!({
        "from": "gw-initech",
        "macs": [{"vi": 5, "vlan": 150, "mac": "52:54:00:00:05:01", "seq": 1,
                  "kind": "presence", "ips": []}]
    }))
    .unwrap();
    let answer = s
        .control()
        .peer_report(std::time::Instant::now(), &report)
        .unwrap();
    assert_eq!(answer.results[0].outcome, crate::report::Outcome::Followed);

    // Restarted: the state file gives both back.
    let again = restore(config(dir.path())).unwrap();
    assert_eq!(again.runtime, s.control().config().runtime);
    assert_eq!(again.vi(ViId(6)).unwrap().gre_key, 1006);

    // Replaced, then deleted: gone from the file too, its MACs forgotten.
    let changed = spec(1005, "gw-initech", "203.0.113.9", &["100-149"]);
    assert_eq!(put(&s, &api, 5, changed).unwrap(), Put::Replaced);
    assert!(delete(&s, &api, 5).unwrap());
    assert!(!delete(&s, &api, 5).unwrap(), "gone already is fine");
    assert_eq!(s.control().table().len(), 0);
    let again = restore(config(dir.path())).unwrap();
    assert!(again.vi(ViId(5)).is_none());
    assert_eq!(again.runtime.iter().map(|v| v.id).collect::<Vec<_>>(), [6]);
}

#[test]
fn a_bad_vi_is_refused_with_its_field_and_a_clash_with_what_collides() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(dir.path()));
    let api = s.control().config().vi_api.clone().unwrap();
    // Checked as a [[vi]] and [[peer]] are: each problem at its field.
    let Err(Refused::Invalid(problems)) = put(
        &s,
        &api,
        0,
        spec(0, "gw haas", "127.0.0.1", &["100-99", "5000"]),
    ) else {
        panic!("not refused as invalid");
    };
    let at: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        at,
        [
            "#/peer/name",
            "#/peer/wan_ip",
            "path:id",
            "#/gre_key",
            "#/vlans/0",
            "#/vlans/1"
        ],
        "{problems:?}"
    );
    // A key, a peer name or address, or VLANs on one peer already taken.
    let key = conflict_text(put(
        &s,
        &api,
        5,
        spec(1001, "gw-initech", "203.0.113.9", &["100"]),
    ));
    assert!(
        key.contains("1001 is already vi[0] (VI 1 in the configuration)'s"),
        "{key}"
    );
    let name = conflict_text(put(
        &s,
        &api,
        5,
        spec(1005, "gw-acme", "203.0.113.9", &["100"]),
    ));
    assert!(name.contains("\"gw-acme\" is already peer[0]"), "{name}");
    let ip = conflict_text(put(
        &s,
        &api,
        5,
        spec(1005, "gw-initech", "203.0.113.2", &["100"]),
    ));
    assert!(ip.contains("203.0.113.2 is already peer[0]"), "{ip}");
    // The file's peer with another token is another peer of its name.
    let mut acme = spec(1005, "gw-acme", "203.0.113.2", &["300"]);
    acme.peer.api = "http://127.0.0.1:9181".into();
    let name = conflict_text(put(&s, &api, 5, acme.clone()));
    assert!(name.contains("\"gw-acme\" is already peer[0]"), "{name}");
    assert!(
        name.contains("\"gw-acme\" has another token_hash here"),
        "{name}"
    );
    // Without the hash of its token, a new peer is refused at that field.
    let mut open = spec(1005, "gw-initech", "203.0.113.9", &["100"]);
    open.peer.token_hash = None;
    let Err(Refused::Invalid(problems)) = put(&s, &api, 5, open) else {
        panic!("a peer without a token_hash was not refused");
    };
    assert_eq!(problems[0].0, "#/peer/token_hash", "{problems:?}");
    // The file's peer itself, given whole, is that peer: a VLAN clash on it.
    acme.peer.token_hash = Some(crate::config::tests::ACME_TOKEN_HASH.into());
    acme.vlans = vec![RawVlan::Text("150".into())];
    let vlans = conflict_text(put(&s, &api, 5, acme.clone()));
    assert!(
        vlans.contains("overlaps vi[0] (VI 1 in the configuration).vlans[0]"),
        "{vlans}"
    );
    // Two runtime VIs name each other by id.
    acme.vlans = vec![RawVlan::Text("300".into())];
    assert_eq!(put(&s, &api, 5, acme).unwrap(), Put::Created);
    let other = conflict_text(put(
        &s,
        &api,
        6,
        spec(1005, "gw-initech", "203.0.113.9", &["100"]),
    ));
    assert!(other.contains("is already VI 5 (run time)'s"), "{other}");
    // The file's VIs are the file's.
    assert!(matches!(
        put(
            &s,
            &api,
            1,
            spec(1009, "gw-initech", "203.0.113.9", &["100"])
        ),
        Err(Refused::FileVi(1))
    ));
    assert!(matches!(delete(&s, &api, 2), Err(Refused::FileVi(2))));
    // Nothing refused was kept.
    let kept = restore(config(dir.path())).unwrap();
    assert_eq!(kept.runtime.iter().map(|v| v.id).collect::<Vec<_>>(), [5]);
}

#[test]
fn a_damaged_or_clashing_state_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let file = c.vi_api.as_ref().unwrap().state_file();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{\"vis\": [{\"id\": 5,").unwrap();
    let e = restore(config(dir.path())).unwrap_err().to_string();
    assert!(
        e.contains(&file.display().to_string()) && e.contains("damaged"),
        "{e}"
    );
    // Well-formed, but a VI the configuration now has under that key.
    let clash = RuntimeVi::new(5, spec(1002, "gw-initech", "203.0.113.9", &["100"]));
    save(c.vi_api.as_ref().unwrap(), &[clash]).unwrap();
    let e = restore(config(dir.path())).unwrap_err().to_string();
    assert!(
        e.contains(&file.display().to_string()) && e.contains("1002 is already"),
        "{e}"
    );
    // A bad entry is named, not dropped.
    std::fs::write(
        &file,
        format!(
            r#"{{"vis":[{{"id":5,"gre_key":0,"peer":{{"name":"gw-i","wan_ip":"203.0.113.9","api":"http://127.0.0.1:9","token_hash":"{INITECH_TOKEN_HASH}"}},"vlans":["1"]}}]}}"#
        ),
    )
    .unwrap();
    let e = restore(config(dir.path())).unwrap_err().to_string();
    assert!(e.contains("VI 5: #/gre_key"), "{e}");
}

#[test]
fn no_vi_api_on_an_iaas_gateway_and_a_short_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    let text = |base: &str| {
        format!(
            "{base}\n[vi_api]\ntoken_file = \"{}\"\nstate_dir = \"{}\"\n",
            dir.path().join("short").display(),
            dir.path().display()
        )
    };
    let keys = |t: String| match Config::parse(&t).unwrap_err() {
        iris_controller::config::ParseError::Invalid(e) => {
            e.into_iter().map(|e| e.key).collect::<Vec<_>>()
        }
        e => panic!("{e:?}"),
    };
    assert_eq!(
        keys(text(crate::config::tests::HAAS)),
        ["vi_api.token_file"]
    );
    assert_eq!(keys(text(crate::config::tests::IAAS)), ["vi_api"]);
}
