use super::*;

/// A haas gateway with two peers, one VI each (other tests start from it).
pub(crate) const HAAS: &str = r#"
[gateway]
name = "gw-haas"
kind = "haas"
dc = "haas-dc"
wan_ip = "203.0.113.1"
ovsdb = "unix:/run/db.sock"
listen = "127.0.0.1:9180"

[controller]
url = "http://127.0.0.1:18080/"

[[peer]]
name = "gw-acme"
wan_ip = "203.0.113.2"
api = "http://127.0.0.1:9181"

[[peer]]
name = "gw-globex"
wan_ip = "203.0.113.3"
api = "http://127.0.0.1:9182"

[[vi]]
id = 1
gre_key = 1001
peer = "gw-acme"
vlans = ["100-199", "untagged"]

[[vi]]
id = 2
gre_key = 1002
peer = "gw-globex"
vlans = ["100-199", 7]
"#;

/// An iaas gateway with two VIs on one trunk.
pub(crate) const IAAS: &str = r#"
[gateway]
name = "gw-acme"
kind = "iaas"
dc = "acme-dc"
wan_ip = "203.0.113.2"
ovsdb = "unix:/run/db.sock"
openflow = "unix:/run/br-gw.mgmt"
trunk = "gw1-trunk"
wan_mtu = "clamp"

[[peer]]
name = "gw-haas"
wan_ip = "203.0.113.1"
api = "http://127.0.0.1:9180"

[[vi]]
id = 1
gre_key = 1001
peer = "gw-haas"
vlans = ["100-199"]

[[vi]]
id = 2
gre_key = 1002
peer = "gw-haas"
vlans = ["200-299", "untagged"]
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text) {
        Err(ParseError::Invalid(e)) => e,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn keys(text: &str) -> Vec<String> {
    errors(text).into_iter().map(|e| e.key).collect()
}

#[test]
fn a_haas_config_reads_whole() {
    let c = Config::parse(HAAS).unwrap();
    assert_eq!(c.kind, Kind::Haas);
    assert_eq!(c.bridge, "br-int");
    assert_eq!(c.controller.as_deref(), Some("http://127.0.0.1:18080"));
    assert_eq!(c.mtu, MtuPolicy::Wan(9000));
    assert_eq!(c.vis.len(), 2);
    // Two VIs may reuse VLANs when they reach different peers: the GRE
    // key, not the tag, selects the VI.
    let v1 = c.vi(ViId(1)).unwrap();
    assert!(v1.vlans.contains_vlan(Vlan::Untagged));
    assert!(v1.vlans.contains_vlan(Vlan::Tagged(150)));
    assert!(!v1.vlans.contains_vlan(Vlan::Tagged(200)));
    assert!(c.vi(ViId(2)).unwrap().vlans.contains_vlan(Vlan::Tagged(7)));
    let s = c.summary();
    assert!(s.contains("  gw-acme wan_ip=203.0.113.2 api=http://127.0.0.1:9181 vis=[1]"));
    assert!(
        s.contains("  vi2 gre_key=1002 peer=gw-globex vlans=7,100-199"),
        "{s}"
    );
}

#[test]
fn an_iaas_config_reads_whole() {
    let c = Config::parse(IAAS).unwrap();
    assert_eq!(c.bridge, "br-gw");
    assert_eq!(c.mtu, MtuPolicy::Clamp);
    assert_eq!(c.vi_of_vlan(Vlan::Tagged(250)).map(|v| v.id), Some(ViId(2)));
    assert_eq!(c.vi_of_vlan(Vlan::Untagged).map(|v| v.id), Some(ViId(2)));
    assert_eq!(c.vi_of_vlan(Vlan::Tagged(300)), None);
    assert!(c
        .summary()
        .contains("datapath:   openflow=unix:/run/br-gw.mgmt trunk=gw1-trunk"));
}

#[test]
fn a_misspelt_key_is_named_with_the_key_meant() {
    let text = HAAS.replace("gre_key = 1002", "gre_kee = 1002");
    match Config::parse(&text) {
        Err(ParseError::Syntax(m)) => {
            assert!(m.contains("unknown field `gre_kee`"), "{m}");
            assert!(m.ends_with("did you mean `gre_key`?"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let text = HAAS
        .replace("wan_ip = \"203.0.113.3\"", "wan_ip = \"203.0.113.2\"")
        .replace("gre_key = 1002", "gre_key = 1001")
        .replace(
            "vlans = [\"100-199\", 7]",
            "vlans = [\"5000\", \"9-3\", \"x\"]",
        )
        .replace("peer = \"gw-globex\"", "peer = \"gw-globx\"");
    let errs = errors(&text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "peer[1].wan_ip",
            "vi[1].gre_key",
            "vi[1].peer",
            "vi[1].vlans[0]",
            "vi[1].vlans[1]",
            "vi[1].vlans[2]"
        ]
    );
    assert!(errs[2].problem.contains("write one of gw-acme, gw-globex"));
    assert!(errs[4].problem.contains("write \"3-9\""), "{}", errs[4]);
}

#[test]
fn vlans_of_vis_on_one_peer_must_not_overlap() {
    let text = HAAS.replace("peer = \"gw-globex\"", "peer = \"gw-acme\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "vi[1].vlans[0]");
    assert!(
        errs[0]
            .problem
            .starts_with("100-199 overlaps vi[0].vlans[0] (100-199)"),
        "{}",
        errs[0]
    );
    // Within one VI as well, untagged included.
    let text = HAAS.replace("[\"100-199\", 7]", "[\"100-199\", 150]");
    assert_eq!(keys(&text), ["vi[1].vlans[1]"]);
}

#[test]
fn on_an_iaas_trunk_every_vi_needs_its_own_vlans() {
    // Two peers, one trunk: overlapping VLANs are still ambiguous.
    let text = IAAS.replace("[\"200-299\", \"untagged\"]", "[\"150-160\"]");
    assert_eq!(keys(&text), ["vi[1].vlans[0]"]);
}

#[test]
fn kind_specific_keys_are_required_and_refused() {
    let no_controller = HAAS.replace("[controller]\nurl = \"http://127.0.0.1:18080/\"", "");
    assert_eq!(keys(&no_controller), ["controller"]);
    let with_trunk = HAAS.replace("listen =", "trunk = \"eth1\"\nlisten =");
    assert_eq!(keys(&with_trunk), ["gateway.trunk"]);
    let bare = IAAS
        .replace("openflow = \"unix:/run/br-gw.mgmt\"\n", "")
        .replace("trunk = \"gw1-trunk\"\n", "");
    assert_eq!(keys(&bare), ["gateway.openflow", "gateway.trunk"]);
    let with_controller = format!("{IAAS}\n[controller]\nurl = \"http://127.0.0.1:1\"\n");
    assert_eq!(keys(&with_controller), ["controller"]);
}

#[test]
fn addresses_urls_names_and_mtu_are_checked() {
    let text = HAAS
        .replace("wan_ip = \"203.0.113.1\"", "wan_ip = \"127.0.0.1\"")
        .replace("http://127.0.0.1:18080/", "https://ctl:1")
        .replace("api = \"http://127.0.0.1:9182\"", "api = \"not a url\"")
        .replace(
            "listen = \"127.0.0.1:9180\"",
            "listen = \"here\"\nwan_mtu = 1500",
        )
        .replace("name = \"gw-globex\"", "name = \"gw-haas\"")
        .replace("ovsdb = \"unix:/run/db.sock\"", "ovsdb = \"db.sock\"");
    let errs = errors(&text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gateway.wan_ip",
            "gateway.ovsdb",
            "gateway.listen",
            "gateway.wan_mtu",
            "controller.url",
            "peer[1].name",
            "peer[1].api",
            // The VI that named the renamed peer names none now.
            "vi[1].peer",
        ]
    );
    assert!(errs[3].problem.contains("at least 1546"), "{}", errs[3]);
}

#[test]
fn a_vi_id_or_key_the_controller_would_refuse_is_refused() {
    let text = HAAS
        .replace("id = 2", "id = 0")
        .replace("gre_key = 1002", "gre_key = 0");
    assert_eq!(keys(&text), ["vi[1].id", "vi[1].gre_key"]);
    let text = HAAS.replace("id = 2", "id = 1");
    assert_eq!(keys(&text), ["vi[1].id"]);
}

#[test]
fn the_controllers_token_comes_from_a_file_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    let with = |f: &Path| {
        HAAS.replace(
            "url = \"http://127.0.0.1:18080/\"",
            &format!(
                "url = \"http://127.0.0.1:18080/\"\ntoken_file = \"{}\"",
                f.display()
            ),
        )
    };
    let c = Config::parse(&with(&file)).unwrap();
    assert_eq!(
        c.controller_token.as_ref().map(Token::expose),
        Some("s3cret-token")
    );
    assert!(c.summary().contains("(with a bearer token)"));
    assert!(!c.summary().contains("s3cret"));
    assert!(!format!("{c:?}").contains("s3cret"));

    // A missing file, an empty one, or one with a space: refused at the key.
    let missing = dir.path().join("nope");
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    std::fs::write(dir.path().join("spaced"), "two words\n").unwrap();
    for (f, says) in [
        (missing, "cannot read"),
        (dir.path().join("empty"), "holds no token"),
        (dir.path().join("spaced"), "printable ASCII"),
    ] {
        let e = errors(&with(&f));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "controller.token_file");
        assert!(e[0].problem.contains(says), "{e:?}");
    }
}

/// The configuration's JSON Schema is the one checked in (`IRIS_BLESS=1`
/// rewrites it), takes both example files and refuses what the parser
/// refuses for its shape.
#[test]
fn config_schema_is_checked_in_and_agrees_with_the_parser() {
    let schema = json_schema();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/config/gateway.schema.json");
    if let Err(e) = iris_schemas::northbound::generated::check_or_bless(&path, &schema) {
        panic!("{e}");
    }
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |text: &str| -> serde_json::Value { toml::from_str(text).unwrap() };
    for text in [HAAS, IAAS] {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(text))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    for bad in [
        HAAS.replace("gre_key = 1001", "gre_kee = 1001"),
        HAAS.replace("kind = \"haas\"", "kind = \"cloud\""),
        HAAS.replace("vlans = [\"100-199\", 7]", "vlans = [true]"),
    ] {
        assert!(!validator.is_valid(&as_json(&bad)), "{bad}");
        assert!(Config::parse(&bad).is_err(), "the parser refuses it too");
    }
}
