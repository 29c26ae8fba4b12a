//! OpenFlow over TLS: the listener's key, certificate and CA, and which
//! host a switch's certificate speaks for.
//!
//! A switch is accepted only with a client certificate that chains to the
//! configured CA and is valid now (rustls and webpki check both during the
//! handshake, which fails, with the reason logged, otherwise). That proves
//! the peer holds a key the CA certified; which host it may be is a second
//! question, answered when its FEATURES_REPLY names a datapath id: the
//! certificate must name that host (a DNS name in its subjectAltName, the
//! host's `name`), so a switch certified for pm2 cannot claim pm1's dpid.
//!
//! rustls (with ring for its cryptography) because it is memory-safe,
//! needs no system OpenSSL to match at run time, and verifies client
//! certificates with webpki, whose name check [`PeerCertificate::binds`]
//! reuses rather than parsing X.509 here.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[tls]` table: PEM files, as Open vSwitch's SSL table names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub private_key: PathBuf,
    pub certificate: PathBuf,
    pub ca_certificate: PathBuf,
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The certificates of the PEM file `ca`, as trust anchors.
fn roots_of(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca, "CA certificate")? {
        roots
            .add(c)
            .map_err(|e| format!("the CA certificate {} is not usable: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// An HTTPS client's TLS: the server's certificate must chain to a
/// certificate of the PEM file `ca` and name the host it is asked for (a
/// client of a private deployment's API, whose CA no system store holds).
pub fn https_client_config(ca: &Path) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots_of(ca)?)
        .with_no_client_auth())
}

impl TlsFiles {
    fn roots(&self) -> Result<RootCertStore, String> {
        roots_of(&self.ca_certificate)
    }

    /// The listener's configuration: TLS 1.2 or 1.3 (Open vSwitch 3.1
    /// offers both), and a client certificate chaining to the CA required.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = provider();
        let roots = self.roots()?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("cannot verify clients against the CA: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_client_cert_verifier(verifier);
        with_our_certificate(config, &self.private_key, &self.certificate)
    }
}

impl TlsFiles {
    /// TLS toward `host`'s OVSDB server (an `ssl:` remote): our key and
    /// certificate for ovsdb-server, which asks for one when it has a CA,
    /// and its certificate checked as a switch's is: chaining to the CA and
    /// naming the host, or, for a host bound by fingerprint, carrying that
    /// fingerprint. The files are read at each connection, so replaced
    /// ones take effect at the next.
    pub fn ovsdb_client_config(
        &self,
        pinned: Option<[u8; 32]>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        self.client_config(pinned.map_or(Names::Checked, Names::OrPinned))
    }

    /// TLS toward a switch that listens (a `pssl:` target, passive mode):
    /// our key and certificate, which Open vSwitch checks against its CA,
    /// and the switch's certificate checked as the listener checks an
    /// accepted switch's: chaining to the CA and valid now at the
    /// handshake; which host it may be, when its FEATURES_REPLY names a
    /// datapath id, by the same rules (the control loop's).
    pub fn switch_client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.client_config(Names::AtFeatures)
    }

    fn client_config(&self, names: Names) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = provider();
        let roots = self.roots()?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("cannot verify servers against the CA: {e}"))?;
        let chain = read_certs(&self.certificate, "certificate")?;
        let key = read_key(&self.private_key)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(HostVerifier { webpki, names }))
            .with_client_auth_cert(chain, key)
            .map_err(|e| misfit(&self.private_key, &self.certificate, e))?;
        Ok(Arc::new(config))
    }
}

/// The PEM text of a `[store]`'s TLS files, as the etcd client takes it.
pub struct EtcdPems {
    pub ca_certificate: Vec<u8>,
    pub certificate: Vec<u8>,
    pub private_key: Vec<u8>,
}

impl fmt::Debug for EtcdPems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.write_str("EtcdPems(..)")
    }
}

impl TlsFiles {
    /// The files as PEM text, each checked to hold what it should and the
    /// key to fit the certificate (the etcd client would only say so at
    /// its first connection, in fewer words).
    pub fn etcd_pems(&self) -> Result<EtcdPems, String> {
        self.roots()?;
        let chain = read_certs(&self.certificate, "certificate")?;
        let key = read_key(&self.private_key)?;
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(chain, key)
            .map_err(|e| misfit(&self.private_key, &self.certificate, e))?;
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        Ok(EtcdPems {
            ca_certificate: read(&self.ca_certificate)?,
            certificate: read(&self.certificate)?,
            private_key: read(&self.private_key)?,
        })
    }
}

/// webpki's check of a server, where a certificate bound to its host by
/// fingerprint stands in for the host's name, or the name is checked later:
/// the chain, validity and signatures are always webpki's.
#[derive(Debug)]
struct HostVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    names: Names,
}

/// How a server's certificate must name its host.
#[derive(Debug, Clone, Copy)]
enum Names {
    /// The name the client connects to, in its subjectAltName.
    Checked,
    /// That name, or else this SHA-256 fingerprint.
    OrPinned([u8; 32]),
    /// Not at the handshake: a switch's host is known only from its
    /// FEATURES_REPLY, and checked then ([`PeerCertificate`]).
    AtFeatures,
}

impl rustls::client::danger::ServerCertVerifier for HostVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        // webpki checks the name last: a name error means all else held.
        let name_only = matches!(
            verdict,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
            ))
        );
        let stands_in = match self.names {
            Names::Checked => false,
            Names::OrPinned(pin) => <[u8; 32]>::from(Sha256::digest(end_entity.as_ref())) == pin,
            Names::AtFeatures => true,
        };
        match name_only && stands_in {
            true => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            false => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The API's TLS: a key and certificate, and no client certificates (its
/// clients prove themselves with a bearer token).
pub fn api_server_config(
    private_key: &Path,
    certificate: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth();
    with_our_certificate(config, private_key, certificate)
}

/// ring rather than aws-lc-rs, which would add a CMake build of a large C
/// library; ring lacks only the post-quantum key exchange, which Open
/// vSwitch 3.1's OpenSSL 3.0 does not offer either.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn with_our_certificate(
    config: rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>,
    private_key: &Path,
    certificate: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = read_certs(certificate, "certificate")?;
    let key = read_key(private_key)?;
    let config = config
        .with_single_cert(chain, key)
        .map_err(|e| misfit(private_key, certificate, e))?;
    Ok(Arc::new(config))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read the private key {}: {e}", path.display()))
}

fn misfit(private_key: &Path, certificate: &Path, e: rustls::Error) -> String {
    format!(
        "the private key {} does not fit the certificate {}: {e}",
        private_key.display(),
        certificate.display()
    )
}

/// A SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it
/// (`AB:CD:…`), or as 64 hex digits.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bytes: Option<Vec<u8>> = (hex.len() == 64 && hex.is_ascii())
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "{text:?} is not a SHA-256 fingerprint; write the 32 bytes `openssl x509 -noout \
                 -fingerprint -sha256 -in CERT` prints (AB:CD:…)"
            )
        })
}

/// The certificate a switch presented, already verified against the CA.
#[derive(Clone)]
pub struct PeerCertificate {
    der: CertificateDer<'static>,
    sha256: [u8; 32],
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerCertificate(sha256 {self})")
    }
}

/// The SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints
/// it.
impl fmt::Display for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.sha256.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl PeerCertificate {
    pub fn new(der: CertificateDer<'static>) -> Self {
        let sha256 = Sha256::digest(der.as_ref()).into();
        Self { der, sha256 }
    }

    /// Its SHA-256 fingerprint.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Whether the certificate names `host` among its subjectAltName DNS
    /// names (webpki's check, which ignores the subject's CN as RFC 6125
    /// asks).
    pub fn binds(&self, host: &str) -> bool {
        let Ok(name) = ServerName::try_from(host) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.der)
            .is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// A TLS client with the CA `ca` as its roots and, if given, `me` as its
/// client certificate.
#[cfg(test)]
pub(crate) async fn connect_for_tests(
    addr: std::net::SocketAddr,
    ca: &Path,
    me: Option<&iris_testbed::pki::CertFiles>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match me {
        Some(me) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&me.certificate)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&me.private_key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("controller").unwrap(), tcp)
        .await
}
