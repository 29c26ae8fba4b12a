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
//! runtime's workers ([`TokenCheck`], which the gateway's peer API uses
//! too).

use crate::api::Problem;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
/// A checked argon2 hash, as [`parse_hash`] gives it.
pub use password_hash::PasswordHashString;
use password_hash::SaltString;
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

/// Reads a token, one line without its line end, from `input` (standard
/// input for the binaries' `hash-token`, which keeps it out of the shell's
/// history and the process list).
pub fn read_token_line(mut input: impl std::io::BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let token = line.strip_suffix('\n').unwrap_or(&line);
    Ok(token.strip_suffix('\r').unwrap_or(token).to_owned())
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

/// The token of an `Authorization` header's value, if it is `Bearer <token>`.
pub fn bearer_token(value: &str) -> Option<&str> {
    value
        .split_once(' ')
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()))
        .filter(|t| !t.is_empty())
}

/// Checks bearer tokens against argon2 hashes, paying argon2's price once
/// per token and hash: a pair that matched is remembered by the token's
/// SHA-256 and the hash's text for the life of the checker; checks of
/// pairs not remembered run one at a time on the blocking pool, so
/// guessing costs the guesser argon2's price and cannot take the runtime's
/// workers. A wrong token is never remembered. argon2 compares its output
/// in constant time; the remembered pairs are found by a digest of the
/// token, which says nothing of the token itself.
#[derive(Debug)]
pub struct TokenCheck {
    verified: Mutex<HashSet<([u8; 32], String)>>,
    checking: Semaphore,
}

impl Default for TokenCheck {
    fn default() -> Self {
        Self {
            verified: Mutex::default(),
            checking: Semaphore::new(1),
        }
    }
}

impl TokenCheck {
    /// Whether `token` matches one of `hashes`.
    pub async fn any(&self, token: &str, hashes: &[PasswordHashString]) -> bool {
        !self.matching(token, hashes, true).await.is_empty()
    }

    /// The indices of the `hashes` that `token` matches, all of them (so a
    /// caller can tell a token that two owners share).
    pub async fn all(&self, token: &str, hashes: &[PasswordHashString]) -> Vec<usize> {
        self.matching(token, hashes, false).await
    }

    async fn matching(
        &self,
        token: &str,
        hashes: &[PasswordHashString],
        first_only: bool,
    ) -> Vec<usize> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        {
            let verified = self.verified();
            for (i, h) in hashes.iter().enumerate() {
                if verified.contains(&(digest, h.as_str().to_owned())) {
                    if first_only {
                        return vec![i];
                    }
                    found.push(i);
                } else {
                    unknown.push(i);
                }
            }
        }
        if unknown.is_empty() {
            return found;
        }
        let Ok(_turn) = self.checking.acquire().await else {
            return found;
        };
        // Another request may have checked the same token meanwhile: what
        // it proved costs no second argon2 run.
        let mut candidates: Vec<(usize, PasswordHashString)> = Vec::new();
        {
            let verified = self.verified();
            for i in unknown {
                if verified.contains(&(digest, hashes[i].as_str().to_owned())) {
                    if first_only {
                        return vec![i];
                    }
                    found.push(i);
                } else {
                    candidates.push((i, hashes[i].clone()));
                }
            }
        }
        if candidates.is_empty() {
            found.sort_unstable();
            return found;
        }
        let owned = token.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let mut matched = Vec::new();
            for (i, h) in candidates {
                if Argon2::default()
                    .verify_password(owned.as_bytes(), &h.password_hash())
                    .is_ok()
                {
                    matched.push((i, h.as_str().to_owned()));
                    if first_only {
                        break;
                    }
                }
            }
            matched
        })
        .await
        .unwrap_or_default();
        let mut verified = self.verified();
        for (i, text) in matched {
            verified.insert((digest, text));
            found.push(i);
        }
        found.sort_unstable();
        found
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashSet<([u8; 32], String)>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
    tokens: TokenCheck,
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
                tokens: TokenCheck::default(),
            }),
        }
    }

    fn is_open(&self, method: &Method, path: &str) -> bool {
        matches!(*method, Method::GET | Method::HEAD) && self.inner.open.contains(path)
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
        let token = bearer_token(value).ok_or(Refused::Malformed)?;
        if self.inner.tokens.any(token, &self.inner.hashes).await {
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

    #[tokio::test]
    async fn a_token_check_names_every_hash_a_token_matches_and_remembers_only_matches() {
        let hash = |t: &str| parse_hash(&hash_token(t).unwrap()).unwrap();
        let (a, b) = ("token-of-peer-a-0123", "token-of-peer-b-0123");
        let hashes = [hash(a), hash(b), hash(a)];
        let check = TokenCheck::default();
        assert_eq!(check.all(a, &hashes).await, [0, 2]);
        assert_eq!(check.all(b, &hashes).await, [1]);
        assert!(check.all("token-of-nobody-0123", &hashes).await.is_empty());
        assert!(check.any(b, &hashes).await);
        assert!(!check.any("token-of-peer-a-012", &hashes).await);
        // Remembered: a match, per token and hash; never a wrong token.
        assert_eq!(check.verified().len(), 3);
        assert_eq!(check.all(a, &hashes[..1]).await, [0]);
        assert!(check.all(a, &hashes[1..2]).await.is_empty());
    }

    #[test]
    fn a_token_line_loses_its_line_end_and_nothing_else() {
        let read = |s: &str| read_token_line(s.as_bytes()).unwrap();
        assert_eq!(read("token\n"), "token");
        assert_eq!(read("token\r\n"), "token");
        assert_eq!(read("token"), "token");
        assert_eq!(read(" token \nnext\n"), " token ");
        assert!(read_token_line(&b"\xff\n"[..]).is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header_value() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
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
