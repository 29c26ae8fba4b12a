//! `ssl:` remotes against a real ovsdb-server serving `pssl:` with a
//! throwaway CA: the client checks the server's certificate (its CA and
//! the name it was told to expect), the server checks the client's, and a
//! server that accepts and never answers the handshake cannot hold the
//! caller past the connect timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::OvsdbServer;
use ovsdb::{Client, Error, Options, Remote, Tls};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA, and certificates it issues for a DNS name, as PEM files.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = common_name(&format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Self {
            cert,
            key,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// (key file, certificate file) for `dns`.
    fn issue(&self, dns: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        params.distinguished_name = common_name(dns);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let k = self.dir.join(format!("{}-{dns}-key.pem", self.name));
        let c = self.dir.join(format!("{}-{dns}-cert.pem", self.name));
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&c, cert.pem()).unwrap();
        (k, c)
    }
}

/// rcgen names every certificate alike by default, and OpenSSL takes a
/// leaf named as its issuer for self-signed.
fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// TLS options trusting `ca`, presenting `me`, expecting `server_name`.
fn options(ca: &Path, me: &(PathBuf, PathBuf), server_name: &str) -> Options {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)] // ring lacks only the post-quantum exchange, as OVS's OpenSSL does
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(&me.1)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_file(&me.0).unwrap(),
        )
        .unwrap();
    Options {
        tls: Some(Tls::new(Arc::new(config), server_name).unwrap()),
        connect_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

#[tokio::test]
async fn ssl_remotes_check_both_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "iris");
    let rogue = Ca::new(dir.path(), "rogue");
    let server_cert = ca.issue("pm1");
    let controller = ca.issue("controller");
    let server = OvsdbServer::start_ssl(&server_cert, &ca.ca_file());
    let remote = server.ssl_remote();

    // Both sides proven: the session works.
    let client = Client::connect_with(&remote, options(&ca.ca_file(), &controller, "pm1"))
        .await
        .unwrap_or_else(|e| panic!("{e}; the server's log:\n{}", server.log()));
    assert!(client
        .list_dbs()
        .await
        .unwrap()
        .contains(&"Open_vSwitch".to_owned()));

    // The server's certificate does not name the host we expect.
    let Err(e @ Error::Tls { .. }) =
        Client::connect_with(&remote, options(&ca.ca_file(), &controller, "pm2")).await
    else {
        panic!("a certificate for pm1 was taken for pm2");
    };
    assert!(e.to_string().contains("not valid for name"), "{e}");

    // We do not trust the server's CA.
    let Err(e @ Error::Tls { .. }) =
        Client::connect_with(&remote, options(&rogue.ca_file(), &controller, "pm1")).await
    else {
        panic!("a server of an untrusted CA was taken");
    };
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    // The server does not trust ours: with TLS 1.3 the client learns it at
    // its first request, which fails rather than hangs.
    let stranger = rogue.issue("controller");
    match Client::connect_with(&remote, options(&ca.ca_file(), &stranger, "pm1")).await {
        Err(Error::Tls { .. }) => {}
        Ok(c) => {
            let r = tokio::time::timeout(Duration::from_secs(10), c.list_dbs()).await;
            assert!(
                matches!(r, Ok(Err(Error::Disconnected(_)))),
                "a client of an untrusted CA was answered: {r:?}"
            );
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn ssl_without_settings_and_a_silent_server_fail_with_what_to_check() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let remote: Remote = format!("ssl:{addr}").parse().unwrap();
    let Err(e @ Error::NoTls { .. }) = Client::connect(&remote).await else {
        panic!("an ssl: remote without TLS settings was tried");
    };
    assert!(e.to_string().contains("needs a private key"), "{e}");

    // A server that accepts and says nothing: the handshake gives up with
    // the connect timeout.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "iris");
    let me = ca.issue("controller");
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let remote: Remote = format!("ssl:{}", silent.local_addr().unwrap())
        .parse()
        .unwrap();
    let started = Instant::now();
    let Err(Error::ConnectTimeout { .. }) =
        Client::connect_with(&remote, options(&ca.ca_file(), &me, "pm1")).await
    else {
        panic!("a silent server did not time out");
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(silent);
}
