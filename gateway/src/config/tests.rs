use super::*;

/// The argon2 hashes of the tokens in `tests/data/gw-acme.token` and
/// `tests/data/gw-globex.token` (`iris-gateway hash-token`).
pub(crate) const ACME_TOKEN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$klXP6w8Gq/NpeNbwMKtjzA$eenL2mEEHM+6MkPuUrOwDPtn7cdHf0QlIe4QfsrbrME";
pub(crate) const GLOBEX_TOKEN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$zVLOKMfNMuzh8FmzvdFOOA$7Q6q3ptUOB9XsmiSLGfYXStb6p55QAC2VwEoMJQk4LQ";

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
token_hash = "$argon2id$v=19$m=19456,t=2,p=1$klXP6w8Gq/NpeNbwMKtjzA$eenL2mEEHM+6MkPuUrOwDPtn7cdHf0QlIe4QfsrbrME"

[[peer]]
name = "gw-globex"
wan_ip = "203.0.113.3"
api = "http://127.0.0.1:9182"
token_hash = "$argon2id$v=19$m=19456,t=2,p=1$zVLOKMfNMuzh8FmzvdFOOA$7Q6q3ptUOB9XsmiSLGfYXStb6p55QAC2VwEoMJQk4LQ"

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
pub(crate) const IAAS: &str = concat!(
    r#"
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
token_file = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/tests/data/gw-acme.token"
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
"#
);

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
    assert!(
        s.contains("  gw-acme wan_ip=203.0.113.2 api=http://127.0.0.1:9181 token=hashed vis=[1]"),
        "{s}"
    );
    assert_eq!(
        c.peer("gw-acme")
            .and_then(|p| p.token_hash.as_ref())
            .map(|h| h.as_str()),
        Some(ACME_TOKEN_HASH)
    );
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
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
        .replace("http://127.0.0.1:18080/", "ftp://ctl:1")
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
    assert!(errs[4].problem.contains("not http or https"), "{}", errs[4]);
}

/// An `https://` controller (its API with `[api_tls]`): the system's CAs,
/// or the one `ca_certificate` names, read at once; a CA for a plain
/// `http://` url is refused.
#[test]
fn an_https_controller_is_trusted_through_the_ca_given() {
    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
    let with = |url: &str, ca: Option<&Path>| {
        let ca = ca.map_or_else(String::new, |p| format!("\nca_certificate = {p:?}"));
        HAAS.replace(
            "url = \"http://127.0.0.1:18080/\"",
            &format!("url = \"{url}\"{ca}"),
        )
    };
    let c = Config::parse(&with("https://ctl.example:8443/", None)).unwrap();
    assert_eq!(c.controller.as_deref(), Some("https://ctl.example:8443"));
    assert!(
        c.summary().contains("trusting the system's CAs"),
        "{}",
        c.summary()
    );
    let c = Config::parse(&with("https://ctl.example:8443", Some(&pki.ca_certificate))).unwrap();
    assert_eq!(
        c.controller_ca.as_deref(),
        Some(pki.ca_certificate.as_path())
    );
    assert!(
        c.summary().contains("trusting the CA in"),
        "{}",
        c.summary()
    );
    let missing = dir.path().join("no-ca.pem");
    let errs = errors(&with("https://ctl.example:8443", Some(&missing)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "controller.ca_certificate");
    assert!(errs[0].problem.contains("no-ca.pem"), "{}", errs[0]);
    let errs = errors(&with("http://127.0.0.1:18080", Some(&pki.ca_certificate)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "controller.ca_certificate");
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

/// The token file of the peer of [`IAAS`], and [`IAAS`] with another.
fn iaas_token_file() -> String {
    format!("{}/tests/data/gw-acme.token", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_peer_without_a_token_is_refused_unless_explicitly_allowed() {
    let no_hash = HAAS.replace(&format!("token_hash = \"{ACME_TOKEN_HASH}\"\n"), "");
    let e = errors(&no_hash);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].key, "peer[0].token_hash");
    assert!(e[0].problem.contains("iris-gateway hash-token"), "{}", e[0]);
    assert!(
        e[0].problem.contains("allow_unauthenticated_peers"),
        "{}",
        e[0]
    );
    let no_file = IAAS.replace(&format!("token_file = \"{}\"\n", iaas_token_file()), "");
    assert_eq!(keys(&no_file), ["peer[0].token_file"]);

    // Allowed, it is said loudly, by check-config's summary and warnings.
    let allow = |t: &str| t.replace("ovsdb =", "allow_unauthenticated_peers = true\novsdb =");
    for (text, open) in [(allow(&no_hash), "gw-acme"), (allow(&no_file), "gw-haas")] {
        let c = Config::parse(&text).unwrap();
        assert!(c.allow_unauthenticated_peers);
        let w = c.warnings().join("\n");
        assert!(w.contains("UNAUTHENTICATED PEERS ALLOWED"), "{w}");
        assert!(w.contains(open), "{w}");
        let s = c.summary();
        assert!(
            s.contains("peer auth:  UNAUTHENTICATED PEERS ALLOWED"),
            "{s}"
        );
        assert!(
            s.contains(&format!("  {open} ")) && s.contains(" token=NONE "),
            "{s}"
        );
    }
}

#[test]
fn a_peers_token_file_and_hash_are_checked_at_their_keys_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let with_file = |f: &Path| IAAS.replace(&iaas_token_file(), &f.display().to_string());
    let c = Config::parse(IAAS).unwrap();
    let token = std::fs::read_to_string(iaas_token_file()).unwrap();
    let token = token.trim();
    assert_eq!(
        c.peer("gw-haas").unwrap().token.as_ref().map(Token::expose),
        Some(token)
    );
    assert!(
        c.summary().contains("token=from token_file"),
        "{}",
        c.summary()
    );
    assert!(!c.summary().contains(token) && !format!("{c:?}").contains(token));

    // Missing, empty, unreadable (a directory), short: refused at the key.
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    std::fs::write(dir.path().join("short"), "short-token\n").unwrap();
    for (f, says) in [
        (dir.path().join("nope"), "cannot read"),
        (dir.path().join("empty"), "holds no token"),
        (dir.path().to_path_buf(), "cannot read"),
        (dir.path().join("short"), "shorter than 16"),
    ] {
        let e = errors(&with_file(&f));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "peer[0].token_file", "{e:?}");
        assert!(e[0].problem.contains(says), "{f:?}: {e:?}");
    }

    // A token where its hash belongs, and each key on the wrong kind.
    let plain = HAAS.replace(ACME_TOKEN_HASH, "gw-acme-reports-to-gw-haas-0123456789");
    let e = errors(&plain);
    assert_eq!(e[0].key, "peer[0].token_hash");
    assert!(e[0].problem.contains("never tokens"), "{e:?}");
    assert!(e[0].problem.contains("iris-gateway hash-token"), "{e:?}");
    let haas_file = HAAS.replace(
        "api = \"http://127.0.0.1:9181\"",
        &format!(
            "api = \"http://127.0.0.1:9181\"\ntoken_file = \"{}\"",
            iaas_token_file()
        ),
    );
    assert_eq!(keys(&haas_file), ["peer[0].token_file"]);
    let iaas_hash = IAAS.replace(
        "api = \"http://127.0.0.1:9180\"",
        &format!("api = \"http://127.0.0.1:9180\"\ntoken_hash = \"{GLOBEX_TOKEN_HASH}\""),
    );
    assert_eq!(keys(&iaas_hash), ["peer[0].token_hash"]);
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

/// [`IAAS`] with `[wan.encryption]` keyed from `key_file`, and the peer's
/// end given as `peer_table`.
pub(crate) fn encrypted(key_file: &Path, peer_table: &str) -> String {
    IAAS.replace(
        "wan_mtu = \"clamp\"\n",
        &format!(
            "\n[wan.encryption]\nprivate_key_file = \"{}\"\naddress = \"10.254.0.2/24\"\n",
            key_file.display()
        ),
    )
    .replace(
        "api = \"http://127.0.0.1:9180\"\n",
        &format!("api = \"http://127.0.0.1:9180\"\n\n[peer.encryption]\n{peer_table}\n"),
    )
}

const PEER_KEY: &str = "public_key = \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"";

#[test]
fn the_encrypted_wan_reads_whole_and_never_prints_the_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("gw.key");
    let public = encryption::generate_key(&key).unwrap();
    let secret = std::fs::read_to_string(&key).unwrap();
    let c = Config::parse(&encrypted(
        &key,
        &format!("{PEER_KEY}\ninner_ip = \"10.254.0.1\""),
    ))
    .unwrap();
    let e = c.encryption.as_ref().unwrap();
    assert_eq!(e.private_key.public(), public);
    assert_eq!(e.listen_port, 51820);
    assert_eq!((e.bridge.as_str(), e.tap.as_str()), ("br-wg", "wg-tap"));
    let peer = e.peer("gw-haas").unwrap();
    assert_eq!(peer.endpoint.to_string(), "203.0.113.1:51820");
    assert_eq!(peer.inner_ip.to_string(), "10.254.0.1");
    let s = c.summary();
    assert!(s.contains(&encryption::key_text(&public)), "{s}");
    assert!(!s.contains(secret.trim()) && !format!("{c:?}").contains(secret.trim()));
    // The GRE runs between the inner addresses.
    let plan = crate::run::bridge_plan(&c);
    assert_eq!(plan.wan_ports[0].remote_ip.to_string(), "10.254.0.1");
    assert_eq!(
        plan.wan_ports[0].local_ip.map(|i| i.to_string()).as_deref(),
        Some("10.254.0.2")
    );
    // The MTU statement says what WireGuard adds: 1546 bytes of GRE frame
    // are 1612 on the wire.
    assert_eq!(
        c.mtu_statement(),
        "wan mtu 9000, encrypted (a 1500-byte guest frame needs 1546 inside WireGuard, 1612 \
         on the wire; the tunnel carries 8928)"
    );
    let wg = crate::run::wireguard_plan(&c).unwrap();
    assert_eq!(
        (wg.mtu, wg.listen.to_string().as_str()),
        (8928, "203.0.113.2:51820")
    );
}

#[test]
fn every_encryption_problem_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("gw.key");
    let own = encryption::key_text(&encryption::generate_key(&key).unwrap());
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    let peer = format!("{PEER_KEY}\ninner_ip = \"10.254.0.1\"");
    for (text, key_path, says) in [
        (
            encrypted(&dir.path().join("nope"), &peer),
            "wan.encryption.private_key_file",
            "cannot read",
        ),
        (
            encrypted(&bad_key, &peer),
            "wan.encryption.private_key_file",
            "not base64",
        ),
        (
            encrypted(&key, &peer).replace("10.254.0.2/24", "203.0.113.9/24"),
            "wan.encryption.address",
            "overlaps this gateway's wan_ip",
        ),
        (
            encrypted(&key, &peer).replace("10.254.0.2/24", "10.254.0.2"),
            "wan.encryption.address",
            "no prefix",
        ),
        (
            encrypted(&key, &peer).replace("10.254.0.2/24", "10.254.0.2/31"),
            "wan.encryption.address",
            "/8 to",
        ),
        (
            encrypted(&key, "public_key = \"abc\"\ninner_ip = \"10.254.0.1\""),
            "peer[0].encryption.public_key",
            "not base64",
        ),
        (
            encrypted(
                &key,
                &format!("public_key = \"{own}\"\ninner_ip = \"10.254.0.1\""),
            ),
            "peer[0].encryption.public_key",
            "own public key",
        ),
        (
            encrypted(&key, &format!("{PEER_KEY}\ninner_ip = \"10.9.0.1\"")),
            "peer[0].encryption.inner_ip",
            "outside",
        ),
        (
            encrypted(&key, &format!("{PEER_KEY}\ninner_ip = \"10.254.0.2\"")),
            "peer[0].encryption.inner_ip",
            "own inner address",
        ),
        (
            encrypted(&key, &format!("{peer}\nendpoint = \"somewhere\"")),
            "peer[0].encryption.endpoint",
            "not IPV4:PORT",
        ),
        (
            encrypted(&key, &peer)
                .replace("address = ", "netns = \"/run/netns/none-such\"\naddress = "),
            "wan.encryption.netns",
            "cannot open",
        ),
        (
            encrypted(&key, &peer).replace("address = ", "listen_port = 0\naddress = "),
            "wan.encryption.listen_port",
            "not a UDP port",
        ),
        (
            encrypted(&key, &peer).replace("address = ", "tap = \"br-gw\"\naddress = "),
            "wan.encryption.tap",
            "already the gateway's bridge",
        ),
        (
            encrypted(&key, &peer).replace("trunk = ", "wan_mtu = 1600\ntrunk = "),
            "gateway.wan_mtu",
            "at least 1612",
        ),
        // A peer without its end, and one given an end on a plain WAN.
        (
            IAAS.replace(
                "wan_mtu = \"clamp\"\n",
                &format!(
                    "\n[wan.encryption]\nprivate_key_file = \"{}\"\naddress = \"10.254.0.2/24\"\n",
                    key.display()
                ),
            ),
            "peer[0].encryption",
            "give this peer's public_key",
        ),
        (
            IAAS.replace(
                "api = \"http://127.0.0.1:9180\"\n",
                &format!("api = \"http://127.0.0.1:9180\"\n\n[peer.encryption]\n{peer}\n"),
            ),
            "peer[0].encryption",
            "not encrypted",
        ),
    ] {
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|e| e.key == key_path && e.problem.contains(says)),
            "{key_path}: {e:?}"
        );
    }
    // Clamping on an encrypted WAN leaves guests what both headers leave.
    let c =
        Config::parse(&encrypted(&key, &peer).replace("trunk = ", "wan_mtu = \"clamp\"\ntrunk = "))
            .unwrap();
    assert_eq!(
        c.mtu_statement(),
        "clamp, encrypted (guests get at most 1394 bytes across the WAN; the tunnel carries 1440)"
    );
}
