//! Who is calling: bearer tokens, each scoped to admin or one provider.
//!
//! A token the API makes is `iris.<token id>.<secret>`; only an argon2 hash
//! of it is kept (the controller's [`hash_token`]), found by the id it
//! carries. A token that passed once is remembered by its SHA-256 while its
//! record exists, so argon2's price is paid once, not per request; checks
//! of unknown tokens run one at a time on the blocking pool. The bootstrap
//! admin token of the configuration is compared by its SHA-256.
//!
//! [`hash_token`]: iris_controller::api_auth::hash_token

use crate::api::{config_secret::Admin, problem};
use crate::service::{random_hex, Broker};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use iris_controller::api::Problem;
use iris_schemas::broker::Scope;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The caller of a request, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
}

#[derive(Debug, Clone)]
pub struct Auth {
    broker: Arc<Broker>,
    admin: Admin,
    /// SHA-256 of tokens that passed, to their token id.
    verified: Arc<Mutex<HashMap<[u8; 32], String>>>,
    checking: Arc<Semaphore>,
}

/// A fresh token for `id`.
pub fn token_text(id: &str) -> String {
    format!("iris.{id}.{}", random_hex(24))
}

/// The argon2 hash of a fresh token.
pub async fn hash(token: &str) -> Result<String, Problem> {
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || iris_controller::api_auth::hash_token(&token))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot hash the new token",
            )
        })
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    pub fn new(broker: Arc<Broker>, admin: Admin) -> Self {
        Self {
            broker,
            admin,
            verified: Arc::default(),
            checking: Arc::new(Semaphore::new(1)),
        }
    }

    /// The scope of `token`, if it is one.
    async fn scope_of(&self, token: &str) -> Option<Scope> {
        let d = digest(token);
        if d == self.admin.0 {
            return Some(Scope::Admin);
        }
        let id = token.strip_prefix("iris.")?.split('.').next()?.to_owned();
        let known = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&d)
            .cloned();
        let record = self.broker.records.lock().await.tokens.get(&id).cloned()?;
        if known.as_deref() == Some(id.as_str()) {
            return Some(record.info.scope);
        }
        let _turn = self.checking.acquire().await.ok()?;
        let token = token.to_owned();
        let hash = record.hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(token.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(d, id);
        Some(record.info.scope)
    }
}

/// Axum middleware: 401 unless the request carries a known token; the
/// caller goes into the request's extensions.
pub async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let detail = match value {
        None => {
            "this route needs a token: send `Authorization: Bearer <token>`; nothing was changed"
        }
        Some(v) => {
            let token = v
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .filter(|t| !t.is_empty());
            match token {
                None => "the Authorization header is not `Bearer <token>`; nothing was changed",
                Some(t) => match auth.scope_of(t).await {
                    Some(scope) => {
                        req.extensions_mut().insert(Caller { scope });
                        return next.run(req).await;
                    }
                    None => "the bearer token is unknown or revoked; nothing was changed",
                },
            }
        }
    };
    let mut response = problem(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iris-api\""),
    );
    response
}
