use super::*;

/// Parses `text` with plain OpenFlow and OVSDB allowed, as every test but
/// those of the transport takes it.
fn parse_plain(text: &str, base: &Path) -> Result<Config, ParseError> {
    Config::parse(
        &format!("plain_openflow = true\nplain_ovsdb = true\n{text}"),
        base,
    )
}

const GOOD: &str = r#"
listen = "127.0.0.1:6653"
api = "127.0.0.1:8181"
store = "/tmp/iris-store"

[bridge]
name = "br-iris"
datapath_type = "netdev"

[keepalive]
echo_interval_secs = 2
echo_timeout_secs = 0.5

[[host]]
name = "pm1"
underlay_ip = "10.0.0.1"
role = "compute"
ovsdb = "unix:/run/pm1/db.sock"

[[host]]
name = "gw1"
underlay_ip = "10.0.0.9"
role = "gateway"
ovsdb = "tcp:10.0.0.9:6640"
datapath_id = "00000000000000a9"

[[vi]]
id = 1
name = "acme"
gre_key = 1001
gateways = ["gw1"]
seed = "acme.csv"

[[vi]]
id = 2
name = "globex"
gre_key = 1002
"#;

fn seeded_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.csv"),
        "mac,ip,vlan,behind\n52:54:00:00:00:01,10.1.1.1,100\n52:54:00:00:00:02, 10.1.1.2 ,,gw1\n\
         # a comment\n52:54:00:00:00:03,,7\n",
    )
    .unwrap();
    dir
}

fn invalid(text: &str, dir: &Path) -> Vec<ConfigError> {
    match parse_plain(text, dir) {
        Err(ParseError::Invalid(e)) => e,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn syntax(text: &str) -> String {
    match Config::parse(text, Path::new(".")) {
        Err(ParseError::Syntax(m)) => m,
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn a_complete_file_validates_into_model_types() {
    let dir = seeded_dir();
    let c = parse_plain(GOOD, dir.path()).unwrap();
    assert_eq!(c.listen, ListenAddr::Tcp("127.0.0.1:6653".parse().unwrap()));
    assert_eq!(c.api, "127.0.0.1:8181".parse().unwrap());
    assert_eq!(
        c.bridge,
        BridgeConfig {
            name: "br-iris".into(),
            datapath_type: "netdev".into(),
            controller: "tcp:127.0.0.1:6653".into(),
            openflow: OpenFlowMode::Active,
        }
    );
    assert_eq!(c.session().echo_interval, Duration::from_secs(2));
    assert_eq!(c.session().echo_timeout, Duration::from_millis(500));
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.hosts[0].host.datapath_id, derived_datapath_id("pm1"));
    assert_eq!(c.hosts[1].host.datapath_id, 0xa9);
    assert_eq!(c.hosts[1].host.role, HostRole::Gateway);
    assert_eq!(c.hosts[0].controller, None);
    assert_eq!(c.vis[0].gateways, vec![HostName("gw1".into())]);
    assert_eq!(
        c.seeds[&ViId(1)],
        vec![
            SeedEntry {
                mac: "52:54:00:00:00:01".parse().unwrap(),
                ip: Some("10.1.1.1".parse().unwrap()),
                vlan: Vlan::Tagged(100),
                location: None,
            },
            SeedEntry {
                mac: "52:54:00:00:00:02".parse().unwrap(),
                ip: Some("10.1.1.2".parse().unwrap()),
                vlan: Vlan::Untagged,
                location: Some(Location::BehindGateway {
                    gateway: HostName("gw1".into()),
                }),
            },
            SeedEntry {
                mac: "52:54:00:00:00:03".parse().unwrap(),
                ip: None,
                vlan: Vlan::Tagged(7),
                location: None,
            },
        ]
    );
    assert!(!c.seeds.contains_key(&ViId(2)));
    let summary = c.summary();
    assert!(summary.contains("gw1 gateway underlay=10.0.0.9 dpid=00000000000000a9"));
    assert!(summary.contains("seeded=3"), "{summary}");
}

#[test]
fn an_empty_file_takes_the_defaults() {
    let c = parse_plain("", Path::new(".")).unwrap();
    assert_eq!(c.listen, ListenAddr::Tcp("0.0.0.0:6653".parse().unwrap()));
    assert_eq!(c.api, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.bridge.name, "br-int");
    assert_eq!(c.bridge.datapath_type, "system");
    assert_eq!(c.bridge.controller, "tcp:127.0.0.1:6653");
    assert_eq!(c.echo_interval, Duration::from_secs(5));
    assert!(c.hosts.is_empty() && c.vis.is_empty());
}

#[test]
fn a_typo_is_refused_with_the_key_it_meant() {
    let m = syntax("[[vi]]\nid = 1\nname = \"a\"\ngre_kye = 5\n");
    assert!(m.contains("unknown field `gre_kye`"), "{m}");
    assert!(m.contains("did you mean `gre_key`?"), "{m}");
    assert!(m.contains("line 4"), "{m}");
    let m = syntax("lsiten = \"0.0.0.0:6653\"\n");
    assert!(m.contains("did you mean `listen`?"), "{m}");
    // Nothing close: no guess, but the list of keys is still there.
    let m = syntax("[bridge]\nfrobnicate = 1\n");
    assert!(!m.contains("did you mean"), "{m}");
    assert!(m.contains("`datapath_type`"), "{m}");
}

#[test]
fn wrong_values_name_the_key_and_what_to_write() {
    let errors = invalid(
        r#"
listen = "localhost:6653"
api = "8080"
[bridge]
name = "a-bridge-name-too-long"
datapath_type = "kernel"
controller = "ssl:1.2.3.4"
[keepalive]
echo_interval_secs = 0
[[host]]
name = "pm 1"
underlay_ip = "0.0.0.0"
role = "compute"
ovsdb = "/var/run/openvswitch/db.sock"
datapath_id = "xyz"
"#,
        Path::new("."),
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "listen",
            "api",
            "bridge.datapath_type",
            "bridge.name",
            "bridge.controller",
            "keepalive.echo_interval_secs",
            "host[0].name",
            "host[0].ovsdb",
            "host[0].underlay_ip",
            "host[0].datapath_id",
        ]
    );
    let text = |k: &str| errors.iter().find(|e| e.key == k).unwrap().problem.clone();
    assert!(text("listen").contains("IP:PORT"));
    assert!(text("bridge.datapath_type").contains("\"netdev\""));
    assert!(text("host[0].ovsdb").contains("unix:PATH, tcp:IP:PORT or ssl:IP:PORT"));
}

#[test]
fn role_must_be_one_of_the_two() {
    let m = syntax(
        "[[host]]\nname = \"a\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"computer\"\novsdb = \"tcp:1.1.1.1:6640\"\n",
    );
    assert!(m.contains("unknown variant `computer`"), "{m}");
    assert!(m.contains("`compute`"), "{m}");
}

#[test]
fn names_ids_keys_and_addresses_must_be_unique() {
    let errors = invalid(
        r#"
[[host]]
name = "pm1"
underlay_ip = "10.0.0.1"
role = "compute"
ovsdb = "unix:/a"
datapath_id = "1"
[[host]]
name = "pm1"
underlay_ip = "10.0.0.1"
role = "gateway"
ovsdb = "unix:/b"
datapath_id = "0x1"
[[vi]]
id = 1
name = "a"
gre_key = 10
[[vi]]
id = 1
name = "a"
gre_key = 10
gateways = ["pm1", "nowhere"]
"#,
        Path::new("."),
    );
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for want in [
        "host[1].name: \"pm1\" is already host[0]",
        "host[1].underlay_ip: 10.0.0.1 is already host[0]'s",
        "host[1].datapath_id: 0000000000000001 is already host[0]'s",
        "vi[1].id: the same id as vi[0]",
        "vi[1].name: the same name as vi[0]",
        "vi[1].gre_key: the same gre_key as vi[0]",
        "vi[1].gateways[1]: \"nowhere\" is not a host in this file",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {lines:#?}"
        );
    }
}

#[test]
fn a_gateway_must_have_the_gateway_role() {
    let errors = invalid(
        r#"
[[host]]
name = "pm1"
underlay_ip = "10.0.0.1"
role = "compute"
ovsdb = "unix:/a"
[[vi]]
id = 3
name = "a"
gre_key = 10
gateways = ["pm1"]
"#,
        Path::new("."),
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].problem.contains("role = \"gateway\""));
}

#[test]
fn zero_ids_and_keys_are_refused() {
    let errors = invalid(
        "[[vi]]\nid = 0\nname = \"a\"\ngre_key = 0\n",
        Path::new("."),
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["vi[0].id", "vi[0].gre_key"]);
    let errors = invalid(
        "[[vi]]\nid = 16777216\nname = \"a\"\ngre_key = 1\n",
        Path::new("."),
    );
    assert!(
        errors[0].problem.contains("use 1 to 16777215"),
        "{errors:?}"
    );
}

#[test]
fn seed_files_report_the_line_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.csv"),
        "52:54:00:00:00:01,10.1.1.1,100\n52:54:00:00:00:0g,10.1.1.2\n52:54:00:00:00:03,10.1.1.300\n\
         52:54:00:00:00:04,10.1.1.4,4095\n52:54:00:00:00:05\n52:54:00:00:00:06,10.1.1.1,100\n\
         52:54:00:00:00:07,10.1.1.7,,gw9\n",
    )
    .unwrap();
    let errors = invalid(
        "[[vi]]\nid = 1\nname = \"a\"\ngre_key = 1\nseed = \"s.csv\"\n",
        dir.path(),
    );
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines.contains(
            &"vi[0].seed (line 7): gw9 is not a gateway of vi1; a MAC can only live behind one \
              of the VI's gateways"
                .to_owned()
        ),
        "{lines:#?}"
    );
    for (line, want) in [
        (2, "is not a MAC address"),
        (3, "is not an IPv4 address"),
        (4, "4095 is not a VLAN id"),
        (5, "found 1 column(s)"),
        (6, "10.1.1.1 on vlan100 contradicts line 1"),
    ] {
        let prefix = format!("vi[0].seed (line {line}): ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(want)),
            "missing line {line} {want:?} in {lines:#?}"
        );
    }
}

#[test]
fn seed_files_may_be_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "[[entry]]\nmac = \"02:00:00:00:00:01\"\nip = \"10.0.0.1\"\n\n[[entry]]\nmac = \"02:00:00:00:00:02\"\nip = \"10.0.0.2\"\nvlan = 7\n",
    )
    .unwrap();
    let entries = parse_seed(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].vlan, Vlan::Untagged);
    assert_eq!(entries[1].vlan, Vlan::Tagged(7));
    let behind_gw = parse_seed(
        "[[entry]]\nmac = \"02:00:00:00:00:01\"\nbehind = \"gw\"\n",
        &path,
    )
    .unwrap();
    assert_eq!(behind_gw[0].ip, None);
    assert!(
        matches!(&behind_gw[0].location, Some(Location::BehindGateway { gateway }) if gateway.0 == "gw")
    );
    let err = parse_seed(
        "[[entry]]\nmac = \"x\"\nip = \"10.0.0.1\"\nvlan = 0\n",
        &path,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["entry[0].mac", "entry[0].vlan"]);
    let err = parse_seed(
        "[[entry]]\nmac = \"02:00:00:00:00:01\"\nipv4 = \"10.0.0.1\"\n",
        &path,
    )
    .unwrap_err();
    assert!(err[0].problem.contains("unknown field `ipv4`"), "{err:?}");
}

#[test]
fn a_missing_seed_file_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let errors = invalid(
        "[[vi]]\nid = 1\nname = \"a\"\ngre_key = 1\nseed = \"missing.csv\"\n",
        dir.path(),
    );
    assert_eq!(errors[0].key, "vi[0].seed");
    assert!(errors[0].problem.contains("missing.csv"));
    assert!(errors[0]
        .problem
        .contains("relative to the configuration file"));
}

#[test]
fn unix_listener_points_switches_at_the_socket() {
    let c = parse_plain("listen = \"unix:/run/iris/of.sock\"\n", Path::new(".")).unwrap();
    assert_eq!(c.bridge.controller, "unix:/run/iris/of.sock");
}

#[test]
fn datapath_ids_parse_and_derive_stably() {
    assert_eq!(parse_datapath_id("00000000000000a1"), Ok(0xa1));
    assert_eq!(parse_datapath_id("0xA1"), Ok(0xa1));
    assert!(parse_datapath_id("0").is_err());
    assert!(parse_datapath_id("00000000000000000001").is_err());
    assert_eq!(derived_datapath_id("pm1"), derived_datapath_id("pm1"));
    assert_ne!(derived_datapath_id("pm1"), derived_datapath_id("pm2"));
    assert_eq!(derived_datapath_id("pm1") >> 48, 0x1415);
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "plain_openflow = true\n[[vi]]\nid = 0\nname = \"a\"\ngre_key = 1\n",
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: 1 problem(s):", path.display())),
        "{e}"
    );
    assert!(e.contains("\n  vi[0].id: 0 is not a usable VI id"), "{e}");
    let e = Config::load(&dir.path().join("nope.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.toml: cannot read"), "{e}");
}

#[test]
fn specs_round_trip_through_the_model() {
    let h = HostSpec {
        name: "pm1".into(),
        underlay_ip: "10.0.0.1".parse().unwrap(),
        role: RoleSpec::Gateway,
        ovsdb: "tcp:10.0.0.1:6640".into(),
        datapath_id: Some("0000000000000042".into()),
        controller: Some("unix:/run/pm1/iris-controller.sock".into()),
    };
    assert_eq!(HostSpec::from_host(&h.to_host("h").unwrap()), h);
    let v = ViSpec {
        id: 4,
        name: "x".into(),
        gre_key: 9,
        gateways: vec!["gw".into()],
        seed: None,
    };
    assert_eq!(ViSpec::from_vi(&v.to_vi("v").unwrap()), v);
}

#[test]
fn api_limits_take_their_defaults_and_refuse_unusable_values() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse_plain("", dir.path()).unwrap();
    assert_eq!(c.api_limits, ApiLimits::default());
    let c = parse_plain(
        "[api_limits]\nmax_connections = 8\nheader_timeout_secs = 2.5\nshutdown_grace_secs = 1",
        dir.path(),
    )
    .unwrap();
    assert_eq!(c.api_limits.max_connections, Some(8));
    assert_eq!(c.api_limits.header_timeout, Duration::from_millis(2500));
    assert_eq!(c.api_limits.shutdown_grace, Duration::from_secs(1));
    let errors = invalid(
        "[api_limits]\nmax_connections = 0\nheader_timeout_secs = 0\nbody_timeout_secs = -1\n\
         shutdown_grace_secs = 7200",
        dir.path(),
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api_limits.max_connections",
            "api_limits.header_timeout_secs",
            "api_limits.body_timeout_secs",
            "api_limits.shutdown_grace_secs"
        ],
        "{errors:?}"
    );
    assert!(errors[0].problem.contains("write 1 to 65536"), "{errors:?}");
}

const PM1: &str = "[[host]]\nname = \"pm1\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"compute\"\n";

#[test]
fn passive_mode_lets_every_switch_listen_beside_its_ovsdb() {
    use crate::ovs_manager::{target_of, ManagerConfig};
    let text = format!(
        "[bridge]\nopenflow = \"passive\"\n\n{PM1}ovsdb = \"unix:/run/pm1/db.sock\"\n\n\
         [[host]]\nname = \"pm2\"\nunderlay_ip = \"10.0.0.2\"\nrole = \"compute\"\n\
         ovsdb = \"tcp:192.0.2.2:6640\"\n\n\
         [[host]]\nname = \"pm3\"\nunderlay_ip = \"10.0.0.3\"\nrole = \"compute\"\n\
         ovsdb = \"tcp:192.0.2.3:6640\"\ncontroller = \"tcp:192.0.2.100:6653\"\n"
    );
    let c = parse_plain(&text, Path::new(".")).unwrap();
    assert_eq!(c.bridge.openflow, OpenFlowMode::Passive);
    assert!(c.summary().contains("openflow=passive"), "{}", c.summary());
    let manager = ManagerConfig {
        bridge: c.bridge.name.clone(),
        datapath_type: ovsdb::vswitch::DatapathType::Netdev,
        default_controller: c.bridge.controller.clone(),
        replicas: Vec::new(),
        openflow: c.bridge.openflow,
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        tls: None,
    };
    let targets: Vec<String> = c.hosts.iter().map(|m| target_of(&manager, m)).collect();
    assert_eq!(
        targets,
        [
            "punix:/run/pm1/br-int.iris.sock",
            "ptcp:6653:192.0.2.2",
            // A host's own target wins: this one stays active.
            "tcp:192.0.2.100:6653",
        ]
    );
    // With TLS a TCP remote's switch listens with pssl:, a unix one's
    // stays on its local socket.
    let over_tls = ManagerConfig {
        tls: Some(crate::ovs_manager::OvsdbTls {
            files: crate::tls::TlsFiles {
                private_key: "key.pem".into(),
                certificate: "cert.pem".into(),
                ca_certificate: "ca.pem".into(),
            },
            host_sha256: Default::default(),
        }),
        ..manager.clone()
    };
    assert_eq!(
        target_of(&over_tls, &c.hosts[0]),
        "punix:/run/pm1/br-int.iris.sock"
    );
    assert_eq!(target_of(&over_tls, &c.hosts[1]), "pssl:6653:192.0.2.2");
    let dialled: Vec<Option<ListenAddr>> = targets
        .iter()
        .map(|t| ListenAddr::of_passive_target(t).unwrap())
        .collect();
    assert_eq!(
        dialled,
        [
            Some(ListenAddr::Unix("/run/pm1/br-int.iris.sock".into())),
            Some(ListenAddr::Tcp("192.0.2.2:6653".parse().unwrap())),
            None,
        ]
    );
}

#[test]
fn the_openflow_mode_and_passive_targets_are_checked() {
    let dir = Path::new(".");
    let errors = invalid("[bridge]\nopenflow = \"listen\"\n", dir);
    assert_eq!(errors[0].key, "bridge.openflow");
    assert!(errors[0].problem.contains("\"passive\""), "{errors:?}");

    let errors = invalid(
        "[bridge]\nopenflow = \"passive\"\ncontroller = \"tcp:10.0.0.100:6653\"\n",
        dir,
    );
    assert_eq!(errors[0].key, "bridge.controller");
    assert!(errors[0].problem.contains("remove this key"), "{errors:?}");

    let errors = invalid("[bridge]\ncontroller = \"ptcp:6653:10.0.0.1\"\n", dir);
    assert_eq!(errors[0].key, "bridge.controller");
    assert!(errors[0].problem.contains("passive target"), "{errors:?}");

    for (target, says) in [
        ("ptcp:6653", "ptcp:PORT:IP"),
        ("ptcp:6653:0.0.0.0", "ptcp:PORT:IP"),
        ("pssl:6653:10.0.0.1", "needs listen = \"ssl:IP:PORT\""),
    ] {
        let text = format!("{PM1}ovsdb = \"unix:/run/pm1/db.sock\"\ncontroller = \"{target}\"\n");
        let errors = invalid(&text, dir);
        assert_eq!(errors[0].key, "host[0].controller", "{target}");
        assert!(errors[0].problem.contains(says), "{target}: {errors:?}");
    }
    // A host may listen while the others connect.
    let text =
        format!("{PM1}ovsdb = \"unix:/run/pm1/db.sock\"\ncontroller = \"ptcp:6653:10.0.0.1\"\n");
    let c = parse_plain(&text, dir).unwrap();
    assert_eq!(c.bridge.openflow, OpenFlowMode::Active);
    assert_eq!(c.hosts[0].controller.as_deref(), Some("ptcp:6653:10.0.0.1"));
}

#[test]
fn an_entry_with_a_fault_of_its_own_is_still_checked_for_every_other() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "52:54:00:00:00:01,224.0.0.1\n").unwrap();
    let errors = invalid(
        r#"
[[host]]
name = "gw1"
underlay_ip = "10.0.0.9"
role = "gateway"
ovsdb = "unix:/run/db.sock"
[[host]]
name = "pm 2"
underlay_ip = "10.0.0.9"
role = "compute"
ovsdb = "unix:/run/db.sock"
[[vi]]
id = 1
name = "a"
gre_key = 0
gateways = ["gw1", "gw1"]
seed = "a.csv"
[[vi]]
id = 1
name = "b"
gre_key = 7
"#,
        dir.path(),
    );
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for want in [
        // host[1]'s bad name hides none of its clashes.
        "host[1].name: \"pm 2\" is not a usable name",
        "host[1].underlay_ip: 10.0.0.9 is already host[0]'s",
        "host[1].ovsdb: unix:/run/db.sock is already host[0]'s",
        // vi[0]'s zero key hides neither its doubled gateway nor its seed.
        "vi[0].gre_key: 0 means",
        "vi[0].gateways[1]: \"gw1\" is already gateways[0]",
        "vi[0].seed (line 1): 224.0.0.1 is a multicast address",
        "vi[1].id: the same id as vi[0]",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {lines:#?}"
        );
    }
    // The seed of a VI at fault is read against that VI as written, not
    // only when another VI happens to have its id.
    let errors = invalid(
        "[[vi]]\nid = 3\nname = \"c\"\ngre_key = 0\nseed = \"a.csv\"\n",
        dir.path(),
    );
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for want in [
        "vi[0].gre_key: 0 means",
        "vi[0].seed (line 1): 224.0.0.1 is a multicast address",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {lines:#?}"
        );
    }
}

#[test]
fn host_addresses_must_be_a_hosts_own() {
    for bad in ["127.0.0.1", "224.0.0.1", "0.0.0.0", "255.255.255.255"] {
        let text = format!(
            "[[host]]\nname = \"pm1\"\nunderlay_ip = \"{bad}\"\nrole = \"compute\"\n\
             ovsdb = \"unix:/a\"\n"
        );
        let lines: Vec<String> = invalid(&text, Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("host[0].underlay_ip: {bad} is"))),
            "{lines:#?}"
        );
    }
    let linklocal = "[[host]]\nname = \"pm1\"\nunderlay_ip = \"169.254.0.1\"\nrole = \"compute\"\n\
                     ovsdb = \"unix:/a\"\n";
    assert!(parse_plain(linklocal, Path::new(".")).is_ok());
}

#[test]
fn the_store_must_be_named_and_a_relative_one_sits_beside_the_file() {
    let lines: Vec<String> = invalid("store = \"\"\n", Path::new("/etc/iris"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(lines.iter().any(|l| l.starts_with("store: ")), "{lines:#?}");
    let c = parse_plain("store = \"state\"\n", Path::new("/etc/iris")).unwrap();
    assert_eq!(c.store, Path::new("/etc/iris/state"));
    let c = parse_plain("store = \"/var/lib/iris\"\n", Path::new("/etc/iris")).unwrap();
    assert_eq!(c.store, Path::new("/var/lib/iris"));
}

#[test]
fn the_api_and_openflow_need_ports_of_their_own() {
    for (listen, api) in [
        ("127.0.0.1:6653", "127.0.0.1:6653"),
        ("0.0.0.0:6653", "127.0.0.1:6653"),
        ("tcp:10.0.0.1:6653", "0.0.0.0:6653"),
    ] {
        let text = format!("listen = \"{listen}\"\napi = \"{api}\"\n");
        let lines: Vec<String> = invalid(&text, Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(lines.iter().any(|l| l.starts_with("api: ")), "{lines:#?}");
    }
    for (listen, api) in [
        ("127.0.0.1:6653", "127.0.0.2:6653"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("unix:/run/iris.sock", "127.0.0.1:6653"),
    ] {
        let text = format!("listen = \"{listen}\"\napi = \"{api}\"\n");
        assert!(parse_plain(&text, Path::new(".")).is_ok(), "{text}");
    }
}

#[test]
fn an_api_without_tokens_is_refused_beyond_loopback_and_warned_about_on_it() {
    let problems = |text: &str| match parse_plain(text, Path::new(".")) {
        Err(ParseError::Invalid(e)) => e,
        other => panic!("{text}: {other:?}"),
    };
    for api in ["0.0.0.0:8080", "10.0.0.100:8080"] {
        let e = problems(&format!("api = \"{api}\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "api_auth.token_hashes");
        assert!(e[0].problem.contains("hash-token"), "{e:?}");
        // Behind a proxy that authenticates, an operator may say so.
        let text = format!("api = \"{api}\"\n[api_auth]\nallow_unauthenticated = true\n");
        let c = parse_plain(&text, Path::new(".")).unwrap();
        assert_eq!(c.warnings().len(), 1);
    }
    let c = parse_plain("api = \"127.0.0.1:8080\"\n", Path::new(".")).unwrap();
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("asks for no token"), "{warnings:?}");

    let hash = crate::api_auth::hash_token("a-token-of-twenty-chars").unwrap();
    let text = format!("api = \"0.0.0.0:8080\"\n[api_auth]\ntoken_hashes = [\"{hash}\"]\n");
    let c = parse_plain(&text, Path::new(".")).unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    assert_eq!(c.api_auth.token_hashes.len(), 1);
    assert!(c.api_auth.open_routes.contains("/healthz"));
    assert!(
        c.summary().contains("bearer token (1 hashes)"),
        "{}",
        c.summary()
    );

    // A token written where its hash belongs, both keys at once, a route
    // that is no path.
    let e = problems(
        "[api_auth]\ntoken_hashes = [\"my-plain-secret-token\"]\nallow_unauthenticated = true\n\
         open_routes = [\"healthz\"]\n",
    );
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api_auth.token_hashes[0]",
            "api_auth.open_routes[0]",
            "api_auth.allow_unauthenticated"
        ],
        "{e:?}"
    );
}

#[test]
fn openflow_is_tls_unless_plain_is_allowed_explicitly() {
    let problems = |text: &str, base: &Path| match Config::parse(text, base) {
        Err(ParseError::Invalid(e)) => e,
        other => panic!("{text}: {other:?}"),
    };
    // The default listener and every plain one need plain_openflow.
    for text in [
        "",
        "listen = \"tcp:127.0.0.1:6653\"\n",
        "listen = \"unix:/run/of.sock\"\n",
    ] {
        let e = problems(text, Path::new("."));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "listen");
        assert!(e[0].problem.contains("plain_openflow = true"), "{e:?}");
    }
    let e = problems("listen = \"ssl:0.0.0.0:6653\"\n", Path::new("."));
    assert_eq!(e[0].key, "tls", "{e:?}");

    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
    let ours = pki.issue("controller").unwrap();
    let tls = format!(
        "[tls]\nprivate_key = \"{}\"\ncertificate = \"{}\"\nca_certificate = \"iris-ca.pem\"\n",
        ours.private_key.display(),
        ours.certificate.display()
    );
    let c = Config::parse(&format!("listen = \"ssl:0.0.0.0:6653\"\n{tls}"), dir.path()).unwrap();
    assert_eq!(c.bridge.controller, "ssl:127.0.0.1:6653");
    let files = c.openflow_tls.as_ref().unwrap();
    assert_eq!(files.ca_certificate, dir.path().join("iris-ca.pem"));
    assert!(
        c.summary().contains("listen:    ssl:0.0.0.0:6653"),
        "{}",
        c.summary()
    );

    // A key that is not the certificate's, a missing CA, [tls] without an
    // ssl: listener, and passive mode over TLS.
    let other = pki.issue("pm1").unwrap();
    let wrong_key = tls.replace(
        &ours.private_key.display().to_string(),
        &other.private_key.display().to_string(),
    );
    let e = problems(
        &format!("listen = \"ssl:0.0.0.0:6653\"\n{wrong_key}"),
        dir.path(),
    );
    assert!(
        e[0].key == "tls" && e[0].problem.contains("does not fit"),
        "{e:?}"
    );
    let no_ca = tls.replace("iris-ca.pem", "missing-ca.pem");
    let e = problems(
        &format!("listen = \"ssl:0.0.0.0:6653\"\n{no_ca}"),
        dir.path(),
    );
    assert!(
        e[0].key == "tls" && e[0].problem.contains("missing-ca.pem"),
        "{e:?}"
    );
    let e = problems(
        &format!("listen = \"0.0.0.0:6653\"\nplain_openflow = true\n{tls}"),
        dir.path(),
    );
    assert_eq!(e[0].key, "tls", "{e:?}");
    // Passive mode over TLS: a switch's own target is pssl:, not ptcp:.
    let passive = format!(
        "listen = \"ssl:0.0.0.0:6653\"\n[bridge]\nopenflow = \"passive\"\n{tls}\n{PM1}\
         ovsdb = \"unix:/run/pm1/db.sock\"\ncontroller = \"pssl:6653:10.0.0.1\"\n"
    );
    let c = Config::parse(&passive, dir.path()).unwrap();
    assert_eq!(c.bridge.openflow, OpenFlowMode::Passive);
    let e = problems(&passive.replace("pssl:", "ptcp:"), dir.path());
    assert!(
        e[0].key == "host[0].controller" && e[0].problem.contains("write pssl:PORT:IP"),
        "{e:?}"
    );
}

#[test]
fn ovsdb_is_ssl_with_tls_tcp_only_when_allowed_and_unix_always() {
    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
    let ours = pki.issue("controller").unwrap();
    let tls = format!(
        "listen = \"ssl:0.0.0.0:6653\"\n[tls]\nprivate_key = {:?}\ncertificate = {:?}\n\
         ca_certificate = \"iris-ca.pem\"\n",
        ours.private_key, ours.certificate
    );
    let host = |ovsdb: &str| {
        format!("\n[[host]]\nname = \"pm1\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"compute\"\novsdb = \"{ovsdb}\"\n")
    };
    let ovsdb_problem = |text: String| match Config::parse(&text, dir.path()) {
        Err(ParseError::Invalid(e)) => {
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].key, "host[0].ovsdb", "{e:?}");
            e[0].problem.clone()
        }
        other => panic!("{text}: {other:?}"),
    };

    // With [tls]: ssl: and unix: are taken, tcp: only with plain_ovsdb.
    let c = Config::parse(&format!("{tls}{}", host("ssl:192.0.2.1:6640")), dir.path()).unwrap();
    assert_eq!(c.hosts[0].host.ovsdb_remote, "ssl:192.0.2.1:6640");
    assert_eq!(
        c.ovsdb_transport,
        OvsdbTransport {
            tls: true,
            plain_tcp: false
        }
    );
    Config::parse(&format!("{tls}{}", host("unix:/run/pm1.sock")), dir.path()).unwrap();
    let why = ovsdb_problem(format!("{tls}{}", host("tcp:192.0.2.1:6640")));
    assert!(why.contains("plain_ovsdb = true"), "{why}");
    Config::parse(
        &format!("plain_ovsdb = true\n{tls}{}", host("tcp:192.0.2.1:6640")),
        dir.path(),
    )
    .unwrap();

    // Without [tls], ssl: has nothing to speak TLS with.
    let why = ovsdb_problem(format!(
        "plain_openflow = true\nplain_ovsdb = true\n{}",
        host("ssl:192.0.2.1:6640")
    ));
    assert!(why.contains("no [tls] table"), "{why}");
    let why = ovsdb_problem(format!("plain_openflow = true\n{}", host("ssl:192.0.2.1")));
    assert!(why.contains("need IP:PORT"), "{why}");
}

#[test]
fn host_fingerprints_name_a_host_and_a_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
    let ours = pki.issue("controller").unwrap();
    let fp = "9A:3F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";
    let text = |table: &str| {
        format!(
            "listen = \"ssl:0.0.0.0:6653\"\n[tls]\nprivate_key = {:?}\ncertificate = {:?}\n\
             ca_certificate = \"iris-ca.pem\"\n[tls.host_sha256]\n{table}\n\
             [[host]]\nname = \"pm1\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"compute\"\n\
             ovsdb = \"unix:/run/pm1.sock\"\n",
            ours.private_key, ours.certificate
        )
    };
    let c = Config::parse(&text(&format!("pm1 = \"{fp}\"")), dir.path()).unwrap();
    let bound = c.host_sha256[&HostName("pm1".into())];
    assert_eq!(bound[0], 0x9a);
    assert_eq!(bound[31], 0xdd);
    let bare = fp.replace(':', "").to_lowercase();
    assert!(Config::parse(&text(&format!("pm1 = \"{bare}\"")), dir.path()).is_ok());
    match Config::parse(&text("pm9 = \"zz\""), dir.path()) {
        Err(ParseError::Invalid(e)) => {
            let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(
                keys,
                ["tls.host_sha256.pm9", "tls.host_sha256.pm9"],
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_store_table_names_sled_or_an_etcd_cluster_and_every_fault_at_once() {
    let etc = Path::new("/etc/iris");
    let c = parse_plain("[store]\nbackend = \"sled\"\npath = \"state\"\n", etc).unwrap();
    assert_eq!(
        (c.store.as_path(), c.etcd),
        (Path::new("/etc/iris/state"), None)
    );
    let c = parse_plain(
        "[store]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \
         \"http://etcd2.dc1:2379/\"]\nprefix = \"iris/dc1/\"\nrequest_timeout_secs = 2.5\n\
         max_txn_ops = 1000\n",
        etc,
    )
    .unwrap();
    let e = c.etcd.clone().unwrap();
    assert_eq!(
        e.endpoints,
        ["http://10.0.0.1:2379", "http://etcd2.dc1:2379/"]
    );
    assert_eq!(e.prefix, "iris/dc1/");
    assert_eq!(e.request_timeout, Duration::from_millis(2500));
    assert_eq!(e.dial_timeout, Duration::from_secs(5));
    assert_eq!(e.max_txn_ops, 1000);
    assert!(
        c.summary()
            .contains("store:     etcd http://10.0.0.1:2379,"),
        "{}",
        c.summary()
    );

    let lines: Vec<String> = invalid(
        "[store]\nbackend = \"etcd\"\npath = \"x\"\nendpoints = [\"10.0.0.1:2379\", \
         \"https://10.0.0.2:2379\", \"http://10.0.0.3\", \"http://10.0.0.4:2379\", \
         \"http://10.0.0.4:2379\", \"http://h:99999\"]\nprefix = \"/iris\"\n\
         dial_timeout_secs = 0\nmax_txn_ops = 1\n",
        etc,
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    for (starts, says) in [
        ("store.path: ", "backend = \"sled\""),
        ("store.endpoints[0]: ", "not a URL"),
        (
            "store.endpoints[1]: ",
            "speaks TLS: give [store] private_key",
        ),
        ("store.endpoints[2]: ", "has no port"),
        ("store.endpoints[4]: ", "listed twice"),
        ("store.endpoints[5]: ", "not a port"),
        ("store.prefix: ", "ending in \"/\""),
        ("store.dial_timeout_secs: ", "(0, 3600]"),
        ("store.max_txn_ops: ", "--max-txn-ops"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(starts) && l.contains(says)),
            "no {starts}…{says} in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let lines: Vec<String> = invalid("[store]\nbackend = \"etcd\"\n", etc)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("store.endpoints: ")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("store.prefix: ")),
        "{lines:#?}"
    );
    let lines: Vec<String> = invalid("[store]\nbackend = \"sled\"\nprefix = \"a/\"\n", etc)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines[0].starts_with("store.prefix: ") && lines[0].contains("etcd"),
        "{lines:#?}"
    );
    assert!(invalid("[store]\nbackend = \"zookeeper\"\n", etc)[0]
        .to_string()
        .starts_with("store.backend: "));
    let m = syntax("[store]\nbackend = \"etcd\"\nendpoint = []\n");
    assert!(
        m.contains("unknown field `endpoint`") && m.contains("did you mean `endpoints`"),
        "{m}"
    );
}

#[test]
fn components_without_tls_refuse_ssl_remotes_at_once() {
    assert!(check_plain_ovsdb_remote("unix:/run/ovs/db.sock", "the gateway").is_ok());
    assert!(check_plain_ovsdb_remote("tcp:127.0.0.1:6640", "the gateway").is_ok());
    let why = check_plain_ovsdb_remote("ssl:127.0.0.1:6640", "the gateway").unwrap_err();
    assert!(why.contains("the gateway does not speak"), "{why}");
    let why = check_plain_ovsdb_remote("ssl:nowhere", "the gateway").unwrap_err();
    assert!(why.contains("need IP:PORT"), "{why}");
}

#[test]
fn an_etcd_store_over_tls_takes_https_members_and_its_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
    let ours = pki.issue("controller").unwrap();
    let table = |endpoints: &str, files: &str| {
        format!(
            "[store]\nbackend = \"etcd\"\nprefix = \"iris/dc1/\"\nendpoints = [{endpoints}]\n{files}"
        )
    };
    let files = format!(
        "private_key = {:?}\ncertificate = {:?}\nca_certificate = \"iris-ca.pem\"\n",
        ours.private_key, ours.certificate
    );
    let c = parse_plain(
        &table("\"https://10.0.0.11:2379\", \"https://etcd2:2379\"", &files),
        dir.path(),
    )
    .unwrap();
    let tls = c.etcd.unwrap().tls.unwrap();
    assert_eq!(tls.ca_certificate, dir.path().join("iris-ca.pem"));

    let problems = |text: String| match parse_plain(&text, dir.path()) {
        Err(ParseError::Invalid(e)) => e,
        other => panic!("{text}: {other:?}"),
    };
    let e = problems(table("\"https://10.0.0.11:2379\"", ""));
    assert_eq!(e[0].key, "store.endpoints[0]", "{e:?}");
    assert!(e[0].problem.contains("speaks TLS"), "{e:?}");
    let e = problems(table("\"http://10.0.0.11:2379\"", &files));
    assert!(
        e[0].problem
            .contains("every member is reached over https://"),
        "{e:?}"
    );
    let e = problems(table(
        "\"https://10.0.0.11:2379\"",
        &format!("certificate = {:?}\n", ours.certificate),
    ));
    assert_eq!(e[0].key, "store", "{e:?}");
    assert!(e[0].problem.contains("together"), "{e:?}");
    let e = problems(table(
        "\"https://10.0.0.11:2379\"",
        &files.replace("iris-ca.pem", "missing.pem"),
    ));
    assert!(e[0].problem.contains("missing.pem"), "{e:?}");
    let e = problems(format!(
        "[store]\nbackend = \"sled\"\npath = \"s\"\n{files}"
    ));
    assert!(
        e.iter().all(|e| e.problem.contains("backend = \"etcd\"")),
        "{e:?}"
    );
}

#[test]
fn a_cluster_names_this_replica_among_its_peers_and_every_fault_at_once() {
    let etc = Path::new("/etc/iris");
    let store = "[store]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\"]\n\
                 prefix = \"iris/dc1/\"\n";
    let peers = "[[cluster.replica]]\nname = \"ctl1\"\nopenflow = \"tcp:10.0.0.11:6653\"\n\
                 api = \"http://10.0.0.11:8080/\"\n\
                 [[cluster.replica]]\nname = \"ctl2\"\nopenflow = \"tcp:10.0.0.12:6653\"\n\
                 api = \"http://10.0.0.12:8080\"\n";
    let c = parse_plain(&format!("{store}[cluster]\nname = \"ctl2\"\n{peers}"), etc).unwrap();
    let cluster = c.cluster.clone().unwrap();
    assert_eq!(cluster.name, "ctl2");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(2));
    assert_eq!(cluster.api_of("ctl1"), Some("http://10.0.0.11:8080"));
    assert!(
        c.summary().contains("cluster:   replica ctl2 of 2"),
        "{}",
        c.summary()
    );

    let lines: Vec<String> = invalid(
        "bridge.controller = \"tcp:10.0.0.1:6653\"\n[cluster]\nname = \"ctl9\"\n\
         lease_ttl_secs = 1\n\
         [[cluster.replica]]\nname = \"ctl1\"\nopenflow = \"10.0.0.11:6653\"\n\
         api = \"10.0.0.11:8080\"\n\
         [[cluster.replica]]\nname = \"ctl1\"\nopenflow = \"tcp:10.0.0.12:6653\"\n\
         api = \"http://10.0.0.12\"\n",
        etc,
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    for (starts, says) in [
        ("cluster: ", "backend = \"etcd\""),
        ("bridge.controller: ", "each replica's openflow target"),
        ("cluster.lease_ttl_secs: ", "2 to 60"),
        ("cluster.replica[0].openflow: ", ""),
        ("cluster.replica[0].api: ", "not an API URL"),
        ("cluster.replica[1].name: ", "names two replicas"),
        ("cluster.replica[1].api: ", "the port included"),
        ("cluster.name: ", "none of the [[cluster.replica]] names"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(starts) && l.contains(says)),
            "no {starts}…{says} in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 8, "{lines:#?}");
    // This replica's URL says how its own API speaks.
    let lines: Vec<String> = invalid(
        &format!(
            "{store}[cluster]\nname = \"ctl1\"\n{}",
            peers.replace("http://10.0.0.11", "https://10.0.0.11")
        ),
        etc,
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        lines.len() == 1 && lines[0].contains("plain HTTP"),
        "{lines:#?}"
    );

    // `api_ca`: the CA a standby trusts to forward to an HTTPS leader,
    // relative to the file; a key that could do nothing is refused.
    let dir = tempfile::tempdir().unwrap();
    let pki = iris_testbed::pki::Pki::new(dir.path(), "api").unwrap();
    let https_peer = peers.replace("http://10.0.0.11", "https://10.0.0.11");
    let with_ca = |ca: &str, peers: &str| {
        format!("{store}[cluster]\nname = \"ctl2\"\napi_ca = {ca:?}\n{peers}")
    };
    let c = parse_plain(&with_ca("api-ca.pem", &https_peer), dir.path()).unwrap();
    assert!(
        c.summary()
            .contains("writes to an HTTPS leader forwarded trusting /"),
        "{}",
        c.summary()
    );
    assert_eq!(
        c.cluster.unwrap().api_ca.as_deref(),
        Some(pki.ca_certificate.as_path())
    );
    for (ca, peers, says) in [
        ("api-ca.pem", peers, "no replica's API speaks HTTPS"),
        ("missing.pem", &https_peer[..], "missing.pem"),
    ] {
        let lines: Vec<String> = invalid(&with_ca(ca, peers), dir.path())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("cluster.api_ca: ") && lines[0].contains(says),
            "{lines:#?}"
        );
    }
}
