//! The broker's API over HTTPS (`[api_tls]`), with a throwaway CA made
//! here, spoken to by a rustls client that trusts that CA: the token still
//! asked for, plain HTTP and a client of another CA refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
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
    let plain = broker_config(dir.path(), controller.api_addr());
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
    let config = iris_api::config::Config::parse(&text, dir.path()).unwrap();
    assert!(
        config.summary().contains("listen https://127.0.0.1:0"),
        "{}",
        config.summary()
    );
    let broker = start_broker(&config).await;
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
             [controller]\nurl = \"https://127.0.0.1:8080\"\n"
        )),
        ["api_tls", "controller.url"]
    );
}
