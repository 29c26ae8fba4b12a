//! The HTTP client for the controller's and the gateways' APIs (reqwest,
//! as the gateway uses it), with the bodies of `iris-schemas`.
//!
//! The testbed is synchronous, and some of its callers run inside a tokio
//! runtime of their own (the bench's driver); each request therefore runs
//! on a runtime of its own on a thread of its own, which blocks neither.
//! Connections are not pooled: each request uses one connection, so no
//! connection outlives the runtime it was made on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long one request may take, connection and body included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one API at `addr`, with its bearer token, if any.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its
/// own, so that a caller inside a runtime is not blocked in it.
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(fut))
                .map_err(|e| Error::io("starting the HTTP client's runtime", e))
        })
        .join()
        .map_err(|_| Error::Usage("the HTTP client's thread panicked".into()))?
    })
}

impl ApiClient {
    pub fn new(addr: SocketAddr, token: Option<String>) -> Result<Self> {
        Self::build(format!("http://{addr}"), token, reqwest::Client::builder())
    }

    /// [`Self::new`] for an API that speaks HTTPS, trusting only the CA
    /// certificate (PEM) in `ca`, which must certify `addr`'s IP; without
    /// `ca`, the system's roots.
    pub fn https(
        addr: SocketAddr,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| Error::io_at("reading", ca, e))?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::Usage(format!("{} is not a PEM certificate: {e}", ca.display()))
            })?;
            builder = builder.tls_certs_only([ca]);
        }
        Self::build(format!("https://{addr}"), token, builder)
    }

    fn build(base: String, token: Option<String>, builder: reqwest::ClientBuilder) -> Result<Self> {
        let http = builder
            .connect_timeout(HTTP_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| Error::io("building the HTTP client", std::io::Error::other(e)))?;
        Ok(Self { base, token, http })
    }

    /// `method path` with `body` as JSON, its headers set (the token, the
    /// content type), not sent yet.
    pub(crate) fn builder(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::RequestBuilder> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Error::Usage(format!("{method:?} is not an HTTP method: {e}")))?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Ok(req)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request; the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String)> {
        self.request_typed(method, path, body)
            .map(|(status, _, body)| (status, body))
    }

    /// [`Self::request`], with the response's content type too (empty when
    /// none).
    pub fn request_typed(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String, String)> {
        let req = self.builder(method, path, body)?.timeout(HTTP_TIMEOUT);
        let what = format!("{method} {}", self.url(path));
        block_on(async move {
            let fail = |e: reqwest::Error| Error::io(&what, std::io::Error::other(e));
            let resp = req.send().await.map_err(fail)?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let text = resp.text().await.map_err(fail)?;
            Ok((status, content_type, text))
        })?
    }

    /// A GET answered with 200 and the JSON of `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (status, body) = self.request("GET", path, None)?;
        if status != 200 {
            return Err(Error::UnexpectedOutput {
                command: format!("GET {path}"),
                reason: format!("status {status}"),
                output: body,
            });
        }
        serde_json::from_str(&body).map_err(|e| Error::UnexpectedOutput {
            command: format!("GET {path}"),
            reason: format!("not the JSON expected: {e}"),
            output: body,
        })
    }
}
