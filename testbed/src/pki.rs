//! A throwaway certificate authority for one test run: the controller's
//! and each switch's key and certificate, written as PEM files the
//! controller's `[tls]` table and Open vSwitch's SSL table take.
//!
//! rcgen (with ring, as the controller's rustls uses) makes them in
//! process, in milliseconds, with no `openssl` or `ovs-pki` run and no
//! state outside the directory given; a run's keys die with its directory.

use crate::error::Error;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
};
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Error>;

/// One key and its certificate, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub private_key: PathBuf,
    pub certificate: PathBuf,
}

/// A CA whose certificate is in `ca_certificate`.
pub struct Pki {
    dir: PathBuf,
    /// Prefixes every file, so that two CAs may share a directory.
    name: String,
    ca: Certificate,
    ca_key: KeyPair,
    pub ca_certificate: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({})", self.ca_certificate.display())
    }
}

fn failed(what: &str, e: rcgen::Error) -> Error {
    Error::Usage(format!("making {what}: {e}"))
}

impl Pki {
    /// A new CA named `name`, its files in `dir` (`<name>-ca.pem`).
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        let key = KeyPair::generate().map_err(|e| failed("a CA key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| failed("a CA certificate", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} CA"));
        params.distinguished_name = dn;
        let cert = params
            .self_signed(&key)
            .map_err(|e| failed("a CA certificate", e))?;
        let ca_certificate = dir.join(format!("{name}-ca.pem"));
        write(&ca_certificate, &cert.pem())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            ca: cert,
            ca_key: key,
            ca_certificate,
        })
    }

    /// A key and a certificate for `name` (its subjectAltName DNS name and
    /// CN), valid from a day ago for a year, in `<CA name>-<name>-key.pem`
    /// and `…-cert.pem`.
    pub fn issue(&self, name: &str) -> Result<CertFiles> {
        let now = time::OffsetDateTime::now_utc();
        self.issue_valid(
            name,
            name,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    /// As [`Pki::issue`], but expired a day ago.
    pub fn issue_expired(&self, name: &str) -> Result<CertFiles> {
        let now = time::OffsetDateTime::now_utc();
        self.issue_valid(
            name,
            &format!("{name}-expired"),
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
    }

    fn issue_valid(
        &self,
        name: &str,
        file: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<CertFiles> {
        let key = KeyPair::generate().map_err(|e| failed("a key", e))?;
        let mut params = CertificateParams::new(vec![name.to_owned()])
            .map_err(|e| failed(&format!("a certificate for {name}"), e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .map_err(|e| failed(&format!("a certificate for {name}"), e))?;
        let files = CertFiles {
            private_key: self.dir.join(format!("{}-{file}-key.pem", self.name)),
            certificate: self.dir.join(format!("{}-{file}-cert.pem", self.name)),
        };
        write(&files.private_key, &key.serialize_pem())?;
        write(&files.certificate, &cert.pem())?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io_at("writing", path, e))
}
