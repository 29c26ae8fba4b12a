//! The broker's API over HTTPS (`[api_tls]`), with a throwaway CA made
//! here, spoken to by a rustls client that trusts that CA: the token still
//! asked for, plain HTTP and a client of another CA refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use iris_testbed::controller::{ControllerConfig, ControllerProcess};
use iris_testbed::pki::Pki;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request over TLS to `addr`, the server checked against `ca` as
/// `127.0.0.1`; the whole answer, or why not.
async fn https(addr: SocketAddr, ca: &Path, request: &str) -> Result<String, String> {
    let config = iris_controller::tls::https_client_config(ca)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply)
}

fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_its_certificate_and_still_asks_for_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "iris").unwrap();
    let other = Pki::new(dir.path(), "other").unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let (broker, _) = https_broker(dir.path(), &pki, controller.api_addr()).await;
    let addr: SocketAddr = broker.base.trim_start_matches("http://").parse().unwrap();
    let ca = &pki.ca_certificate;

    let reply = https(addr, ca, &request("GET", "/healthz", None, ""))
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let create = |token| request("POST", "/v1/providers", token, r#"{"name":"acme"}"#);
    let reply = https(addr, ca, &create(None)).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    let reply = https(addr, ca, &create(Some(ADMIN))).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let reply = https(addr, ca, &request("GET", "/v1/providers", Some(ADMIN), ""))
        .await
        .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("acme"),
        "{reply}"
    );

    // A client that trusts another CA does not get through.
    let e = https(addr, &other.ca_certificate, &create(Some(ADMIN)))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Plain HTTP gets no HTTP answer from the TLS port.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request("GET", "/healthz", None, "").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply).await;
    assert!(!reply.starts_with(b"HTTP/1.1"), "{reply:?}");
    broker.shut().await;
}

#[test]
fn tls_settings_that_cannot_work_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-token"), ADMIN).unwrap();
    let keys = |text: &str| match iris_api::config::Config::parse(text, dir.path()).unwrap_err() {
        iris_controller::config::ParseError::Invalid(errors) => {
            errors.into_iter().map(|e| e.key).collect::<Vec<_>>()
        }
        e => panic!("not a validation error: {e:?}"),
    };
    let head = "admin_token_file = \"admin-token\"\n";
    assert_eq!(
        keys(&format!(
            "{head}[api_tls]\nprivate_key = \"none.pem\"\ncertificate = \"none.pem\"\n\
             [controller]\nurl = \"https://127.0.0.1:8080\"\nca_certificate = \"none.pem\"\n"
        )),
        ["api_tls", "controller.ca_certificate"]
    );
    assert_eq!(
        keys(&format!(
            "{head}[controller]\nurl = \"http://127.0.0.1:8080\"\nca_certificate = \"ca.pem\"\n"
        )),
        ["controller.ca_certificate"]
    );
}

/// A broker whose API speaks HTTPS with a certificate of `pki`'s CA, as
/// `127.0.0.1`, on the controller at `controller`; its `https://` base.
async fn https_broker(dir: &Path, pki: &Pki, controller: SocketAddr) -> (BrokerHandle, String) {
    let plain = broker_config(dir, controller);
    let ours = pki.issue("127.0.0.1").unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"broker-store\"\nadmin_token_file = \"admin-token\"\n\
         [api_tls]\nprivate_key = {:?}\ncertificate = {:?}\n\
         [controller]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        ours.private_key,
        ours.certificate,
        plain.controller_url,
        iris_testbed::controller::API_TOKEN_FILE
    );
    let config = iris_api::config::Config::parse(&text, dir).unwrap();
    assert!(
        config.summary().contains("listen https://127.0.0.1:0"),
        "{}",
        config.summary()
    );
    let broker = start_broker(&config).await;
    let base = broker.base.replacen("http://", "https://", 1);
    (broker, base)
}

async fn irisctl(base: &str, ca: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_irisctl"));
    cmd.env_remove("IRIS_API_TOKEN")
        .env_remove("IRIS_CA_CERTIFICATE")
        .env("IRIS_API_URL", base)
        .env("IRIS_API_TOKEN", ADMIN);
    if let Some(ca) = ca {
        cmd.arg("--ca-certificate").arg(ca);
    }
    cmd.args(args).output().await.unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irisctl_speaks_https_to_the_broker_trusting_the_ca_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "iris").unwrap();
    let other = Pki::new(dir.path(), "other").unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let (broker, base) = https_broker(dir.path(), &pki, controller.api_addr()).await;

    let ca = Some(pki.ca_certificate.as_path());
    let made = irisctl(&base, ca, &["provider", "create", "acme"]).await;
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let list = irisctl(&base, ca, &["--output", "json", "provider", "list"]).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let providers: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(providers[0]["name"], "acme", "{providers}");

    // Another CA, or the system's roots: unreachable (3), and why.
    for ca in [Some(other.ca_certificate.as_path()), None] {
        let refused = irisctl(&base, ca, &["provider", "list"]).await;
        assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("UnknownIssuer") || stderr(&refused).contains("issuer"),
            "{}",
            stderr(&refused)
        );
    }
    // A CA for a plain URL is a usage error (2), as is an unreadable one.
    let plain = irisctl(&broker.base, ca, &["provider", "list"]).await;
    assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
    let missing = dir.path().join("no-ca.pem");
    let unreadable = irisctl(&base, Some(&missing), &["provider", "list"]).await;
    assert_eq!(unreadable.status.code(), Some(2), "{}", stderr(&unreadable));
    assert!(
        stderr(&unreadable).contains("no-ca.pem"),
        "{}",
        stderr(&unreadable)
    );
    broker.shut().await;
}

/// The controller's API over HTTPS (its `[api_tls]`), called by a broker
/// that trusts the controller's CA: a VI made through the broker is on the
/// controller; a broker trusting another CA makes none, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_calls_a_controller_whose_api_speaks_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "iris").unwrap();
    let other = Pki::new(dir.path(), "other").unwrap();
    let api_cert = pki.issue("127.0.0.1").unwrap();
    let mut config = ControllerConfig::new(
        dir.path().join("of.sock"),
        dir.path().join("controller-store"),
    );
    config.api_tls = Some(iris_testbed::controller::ApiTls {
        files: api_cert,
        ca_certificate: pki.ca_certificate.clone(),
    });
    let path = config.write(dir.path()).unwrap();
    let controller = ControllerProcess::start(
        &controller_binary(),
        &path,
        &dir.path().join("controller.log"),
    )
    .unwrap();
    let api = controller.api_addr();

    let broker_with = |ca: &Path| {
        let text = format!(
            "listen = \"127.0.0.1:0\"\nstore = \"broker-store-{}\"\nadmin_token_file = \"admin-token\"\n\
             [controller]\nurl = \"https://{api}\"\ntoken_file = \"{}\"\nca_certificate = {:?}\n",
            ca.file_stem().unwrap().to_string_lossy(),
            iris_testbed::controller::API_TOKEN_FILE,
            ca
        );
        iris_api::config::Config::parse(&text, dir.path()).unwrap()
    };
    std::fs::write(dir.path().join("admin-token"), ADMIN).unwrap();
    let vi = serde_json::json!({"name": "net", "gateway": "203.0.113.7",
        "vlans": {"first": 100, "last": 199},
        "addressing": {"mode": "static_pool", "cidr": "10.1.1.0/24", "reserved": ["10.1.1.1"]}});

    let config = broker_with(&pki.ca_certificate);
    assert!(
        config
            .summary()
            .contains(&format!("controller https://{api}"))
            && config.summary().contains("CA "),
        "{}",
        config.summary()
    );
    let broker = start_broker(&config).await;
    let (_, token) = provider(&broker.base, "acme").await;
    let (s, _, made) = call(
        &broker.base,
        Some(&token),
        "POST",
        "/v1/vis",
        Some(vi.clone()),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key = made["tunnel_key"].as_u64().unwrap();
    let token_text =
        std::fs::read_to_string(dir.path().join(iris_testbed::controller::API_TOKEN_FILE)).unwrap();
    let reply = https(
        api,
        &pki.ca_certificate,
        &request("GET", "/v1/vis", Some(token_text.trim()), ""),
    )
    .await
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains(&format!("\"id\":{key}")),
        "{reply}"
    );
    broker.shut().await;

    let broker = start_broker(&broker_with(&other.ca_certificate)).await;
    let (_, token) = provider(&broker.base, "acme").await;
    let (s, _, refused) = call(&broker.base, Some(&token), "POST", "/v1/vis", Some(vi)).await;
    assert_eq!(s, 502, "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("UnknownIssuer"), "{refused}");
    let (s, _, vis) = call(&broker.base, Some(&token), "GET", "/v1/vis", None).await;
    assert_eq!(s, 200, "{vis}");
    assert_eq!(vis["items"].as_array().map(Vec::len), Some(0), "{vis}");
    broker.shut().await;
}
