//! The HaaS gateways' `/v1/vis` API as the broker calls it
//! (docs/gateway.md, "VIs at run time"): every VI the broker has is pushed
//! to every gateway of `haas_gateways` with an API, with the operator's
//! gateway as its peer, and removed with the VI. [`Gateways::reconcile`]
//! makes each gateway's runtime VIs exactly the broker's.

use crate::config::GatewayApi;
use iris_schemas::broker::{Vi, ViGateway};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The port of the operator gateway's API when its endpoint has none.
pub const DEFAULT_PEER_PORT: u16 = 9180;

/// Why a gateway did not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("gateway {gateway}: {detail}")]
pub struct GatewayError {
    pub gateway: String,
    /// The gateway's HTTP status, if it answered.
    pub status: Option<u16>,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Gateways {
    http: reqwest::Client,
    apis: Vec<GatewayApi>,
}

/// The name the HaaS gateways know the operator's gateway of `vi` by.
pub fn peer_name(vi: &Vi) -> String {
    vi.spec
        .gateway_name
        .clone()
        .unwrap_or_else(|| vi.id.clone())
}

/// The body of `PUT /v1/vis/{key}` for `vi`: its tunnel key, the
/// operator's gateway as the peer (with the hash of its token), its VLAN
/// range.
pub fn vi_body(vi: &Vi) -> Value {
    let endpoint = vi.spec.gateway.as_str();
    let (ip, port) = match endpoint.parse::<std::net::SocketAddrV4>() {
        Ok(a) => (a.ip().to_string(), a.port()),
        Err(_) => (endpoint.to_owned(), DEFAULT_PEER_PORT),
    };
    let vlans = &vi.spec.vlans;
    let mut peer =
        json!({"name": peer_name(vi), "wan_ip": ip, "api": format!("http://{ip}:{port}")});
    if let Some(h) = &vi.spec.gateway_token_hash {
        peer["token_hash"] = Value::String(h.clone());
    }
    json!({
        "gre_key": vi.tunnel_key,
        "peer": peer,
        "vlans": [format!("{}-{}", vlans.first, vlans.last)],
    })
}

impl Gateways {
    pub fn new(apis: Vec<GatewayApi>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { http, apis }
    }

    /// What the operator's gateway needs of each HaaS gateway for `vi`.
    pub fn ends(&self, vi: &Vi) -> Vec<ViGateway> {
        self.apis
            .iter()
            .map(|g| ViGateway {
                name: g.name.clone(),
                wan_ip: g.wan_ip.to_string(),
                gre_key: vi.tunnel_key,
                peer_name: peer_name(vi),
            })
            .collect()
    }

    async fn send(
        &self,
        g: &GatewayApi,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, GatewayError> {
        let err = |status, detail| GatewayError {
            gateway: g.name.clone(),
            status,
            detail,
        };
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", g.api))
            .bearer_auth(g.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| err(None, format!("{method} {path}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|p| p["detail"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(err(
            Some(status.as_u16()),
            format!("{method} {path}: {status}: {detail}"),
        ))
    }

    /// Pushes `vi` to every gateway; on a failure, takes it back from
    /// those that took it and says why.
    pub async fn put_vi(&self, vi: &Vi) -> Result<(), GatewayError> {
        let body = vi_body(vi);
        let path = format!("/v1/vis/{}", vi.tunnel_key);
        for (i, g) in self.apis.iter().enumerate() {
            if let Err(e) = self.send(g, reqwest::Method::PUT, &path, Some(&body)).await {
                for done in &self.apis[..i] {
                    if let Err(undo) = self.send(done, reqwest::Method::DELETE, &path, None).await {
                        tracing::warn!("{undo}; the broker's reconciliation removes it");
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes VI `key` from every gateway (gone already is fine).
    pub async fn delete_vi(&self, key: u32) -> Result<(), GatewayError> {
        let path = format!("/v1/vis/{key}");
        for g in &self.apis {
            self.send(g, reqwest::Method::DELETE, &path, None).await?;
        }
        Ok(())
    }

    /// Makes every gateway's runtime VIs (`origin` `api`) exactly `vis`:
    /// each pushed (a PUT of what is there already changes nothing), every
    /// other one removed. Every gateway is tried; the first failure is
    /// returned.
    pub async fn reconcile(&self, vis: &[Vi]) -> Result<(), GatewayError> {
        let want: BTreeMap<u32, &Vi> = vis.iter().map(|v| (v.tunnel_key, v)).collect();
        let mut first = None;
        for g in &self.apis {
            if let Err(e) = self.reconcile_one(g, &want).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn reconcile_one(
        &self,
        g: &GatewayApi,
        want: &BTreeMap<u32, &Vi>,
    ) -> Result<(), GatewayError> {
        let listed: Vec<Value> = self
            .send(g, reqwest::Method::GET, "/v1/vis", None)
            .await?
            .json()
            .await
            .map_err(|e| GatewayError {
                gateway: g.name.clone(),
                status: None,
                detail: format!("GET /v1/vis: {e}"),
            })?;
        for v in &listed {
            let id = v["id"].as_u64().and_then(|i| u32::try_from(i).ok());
            if let Some(id) = id.filter(|id| v["origin"] == "api" && !want.contains_key(id)) {
                tracing::info!(gateway = %g.name, "removing VI {id}, which the broker does not have");
                self.send(g, reqwest::Method::DELETE, &format!("/v1/vis/{id}"), None)
                    .await?;
            }
        }
        // Each VI alone: one the gateway refuses does not hold up the rest.
        let mut first = None;
        for (key, vi) in want {
            let put = self
                .send(
                    g,
                    reqwest::Method::PUT,
                    &format!("/v1/vis/{key}"),
                    Some(&vi_body(vi)),
                )
                .await;
            if let Err(e) = put {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
