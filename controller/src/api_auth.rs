//! Bearer tokens for the northbound API.
//!
//! The configuration holds only argon2 hashes of the tokens (PHC strings,
//! as `iris-controller hash-token` prints them), so a copy of the file or
//! of a backup does not hand out the API. A request names its token in
//! `Authorization: Bearer …`; every request needs one except GET and HEAD
//! on the routes the configuration leaves open (`/healthz` and `/metrics`
//! by default). A missing or wrong token is answered 401 before any
//! handler runs, so nothing is read from the body and nothing changes.
//!
//! argon2 is slow on purpose (tens of milliseconds a check, far more in a
//! debug build). A token that passed once is remembered by its SHA-256 for
//! the life of the process, so a client that keeps using it costs a hash
//! per request; checks of unknown tokens run one at a time on the blocking
//! pool, so guessing costs the guesser argon2's price and cannot take the
//! runtime's workers.

use crate::api::Problem;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use password_hash::{PasswordHashString, SaltString};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tracing::warn;

/// The shortest token `hash-token` accepts: 128 bits of base64 or hex
/// would be 22 or 32 characters; 16 keeps a typed passphrase possible.
pub const MIN_TOKEN_LEN: usize = 16;

/// The routes answered to GET and HEAD without a token unless the
/// configuration says otherwise: probes and scrapers rarely carry secrets,
/// and the API's own description holds none.
pub fn default_open_routes() -> BTreeSet<String> {
    ["/healthz", "/metrics", "/v1/openapi.json"]
        .map(String::from)
        .into()
}

/// Hashes `token` as the configuration's `token_hashes` take it.
pub fn hash_token(token: &str) -> Result<String, String> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token has {} characters; use at least {MIN_TOKEN_LEN} (e.g. \
             `openssl rand -hex 32`)",
            token.chars().count()
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the token holds whitespace or control characters, which an Authorization header \
             cannot carry as written; use letters, digits and punctuation"
                .into(),
        );
    }
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the token: {e}"))
}

/// Checks one configured hash: a PHC string of an argon2 variant.
pub fn parse_hash(text: &str) -> Result<PasswordHashString, String> {
    let hash = PasswordHash::new(text).map_err(|e| {
        format!(
            "not an argon2 hash ({e}); the file holds hashes, never tokens: put the token through \
             `iris-controller hash-token` and write what it prints"
        )
    })?;
    if !matches!(hash.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") {
        return Err(format!(
            "a {} hash; write an argon2 hash as `iris-controller hash-token` prints it",
            hash.algorithm
        ));
    }
    Ok(hash.serialize())
}

/// Who may use the API: the token hashes and the routes open without one.
#[derive(Debug, Clone)]
pub struct ApiAuth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hashes: Vec<PasswordHashString>,
    open: BTreeSet<String>,
    /// SHA-256 of tokens that passed a check.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One argon2 check at a time.
    checking: Semaphore,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Missing,
    Malformed,
    Wrong,
}

impl ApiAuth {
    pub fn new(hashes: Vec<PasswordHashString>, open: BTreeSet<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                hashes,
                open,
                verified: Mutex::default(),
                checking: Semaphore::new(1),
            }),
        }
    }

    fn is_open(&self, method: &Method, path: &str) -> bool {
        matches!(*method, Method::GET | Method::HEAD) && self.inner.open.contains(path)
    }

    /// Whether `token` matches one of the configured hashes.
    async fn check(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.known(&digest) {
            return true;
        }
        let Ok(_turn) = self.inner.checking.acquire().await else {
            return false;
        };
        // Another request may have checked the same token meanwhile.
        if self.known(&digest) {
            return true;
        }
        let inner = self.inner.clone();
        let token = token.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            inner.hashes.iter().any(|h| {
                Argon2::default()
                    .verify_password(token.as_bytes(), &h.password_hash())
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if ok {
            self.inner
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(digest);
        }
        ok
    }

    fn known(&self, digest: &[u8; 32]) -> bool {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(digest)
    }

    /// Whether a request may go on, from its method, path and
    /// `Authorization` header (taken out of the request first: a body is
    /// not `Sync`, so the request cannot be held across the check).
    async fn admit(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<(), Refused> {
        if self.is_open(method, path) {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(Refused::Missing);
        };
        let token = value
            .split_once(' ')
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()))
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Malformed)?;
        if self.check(token).await {
            Ok(())
        } else {
            Err(Refused::Wrong)
        }
    }
}

/// `router` with every request checked by `auth` first.
pub fn guarded(router: axum::Router, auth: ApiAuth) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(auth, require_token))
}

/// Axum middleware: answers 401 unless the request may go on.
pub async fn require_token(State(auth): State<ApiAuth>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let why = match auth.admit(&method, &path, authorization.as_deref()).await {
        Ok(()) => return next.run(req).await,
        Err(why) => why,
    };
    let detail = match why {
        Refused::Missing => format!(
            "{method} {path} needs a token: send `Authorization: Bearer <token>`; nothing was \
             changed"
        ),
        Refused::Malformed => {
            "the Authorization header is not `Bearer <token>`; nothing was changed".to_owned()
        }
        Refused::Wrong => {
            "the bearer token matches none of the configured token_hashes; nothing was changed"
                .to_owned()
        }
    };
    if why != Refused::Missing {
        warn!(%method, %path, "API request refused: {detail}");
    }
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iris\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_token_and_refuses_others() {
        let token = "correct-horse-battery-staple";
        let hash = parse_hash(&hash_token(token).unwrap()).unwrap();
        let argon = Argon2::default();
        assert!(argon
            .verify_password(token.as_bytes(), &hash.password_hash())
            .is_ok());
        assert!(argon
            .verify_password(b"correct-horse-battery-stapl", &hash.password_hash())
            .is_err());
    }

    #[test]
    fn short_tokens_plain_tokens_and_other_hashes_are_refused() {
        assert!(hash_token("short").unwrap_err().contains("at least 16"));
        assert!(hash_token("has a\ttab in it!!").is_err());
        assert!(parse_hash("my-secret-token-1234")
            .unwrap_err()
            .contains("hash-token"));
        let err =
            parse_hash("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA").unwrap_err();
        assert!(err.contains("pbkdf2"), "{err}");
    }
}
