//! The controller's northbound API as the broker calls it: VIs, registry
//! seeds, and the registry and VM ports a drain reads (docs/api.md).

use crate::config::Secret;
use iris_schemas::northbound::{EntryInfo, VmPortInfo};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Why the controller did not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("controller: {0}")]
pub struct NorthboundError(pub String);

#[derive(Debug, Clone)]
pub struct Controller {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
    /// The HaaS gateway hosts every VI is carried through (the broker's
    /// `haas_gateways`): MACs of the operator's own data center live
    /// behind them in the registry.
    gateways: Vec<String>,
}

impl Controller {
    /// The controller at `base`; `ca`, for an `https://` one, the CA its
    /// certificate chains to.
    pub fn new(
        base: &str,
        token: Option<Secret>,
        gateways: Vec<String>,
        ca: Option<&Path>,
    ) -> Result<Self, String> {
        let http = iris_controller::http_client::trusting(
            reqwest::Client::builder().timeout(Duration::from_secs(10)),
            ca,
        )?
        .build()
        .map_err(|e| {
            format!(
                "the controller's HTTP client: {}",
                iris_controller::http_client::error_text(&e)
            )
        })?;
        Ok(Self {
            http,
            base: base.to_owned(),
            token,
            gateways,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        absent_ok: bool,
    ) -> Result<(), NorthboundError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            NorthboundError(format!(
                "{method} {path}: {}",
                iris_controller::http_client::error_text(&e)
            ))
        })?;
        let status = resp.status();
        if status.is_success() || (absent_ok && status == reqwest::StatusCode::NOT_FOUND) {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(NorthboundError(format!(
            "{method} {path}: {status}: {text}"
        )))
    }

    /// `GET path` as `T`; `None` when the controller answers 404.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, NorthboundError> {
        let what = || format!("GET {path}");
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| {
            NorthboundError(format!(
                "{}: {}",
                what(),
                iris_controller::http_client::error_text(&e)
            ))
        })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(NorthboundError(format!("{}: {}", what(), resp.status())));
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| NorthboundError(format!("{}: {e}", what())))
    }

    /// The registry entries of VI `vi`, every VLAN.
    pub async fn registry(&self, vi: u32) -> Result<Vec<EntryInfo>, NorthboundError> {
        Ok(self
            .get(&format!("/v1/registry?vi={vi}"))
            .await?
            .unwrap_or_default())
    }

    /// The VM port `name` of host `host` (a PM's name), if the controller
    /// has found it in that host's OVSDB.
    pub async fn vm_port(
        &self,
        host: &str,
        name: &str,
    ) -> Result<Option<VmPortInfo>, NorthboundError> {
        self.get(&format!("/v1/vm-ports/{host}/{name}")).await
    }

    /// The ids of the VIs the controller has, whoever made them.
    pub async fn vi_ids(&self) -> Result<std::collections::BTreeSet<u32>, NorthboundError> {
        let vis: Vec<serde_json::Value> = self
            .get("/v1/vis")
            .await?
            .ok_or_else(|| NorthboundError("GET /v1/vis: 404 Not Found".into()))?;
        Ok(vis
            .iter()
            .filter_map(|v| v["id"].as_u64().and_then(|id| u32::try_from(id).ok()))
            .collect())
    }

    /// Creates (or confirms) the VI `key` with GRE key `key`, carried
    /// through the configured HaaS gateways.
    pub async fn put_vi(&self, key: u32, name: &str) -> Result<(), NorthboundError> {
        let body = json!({"id": key, "name": name, "gre_key": key, "gateways": self.gateways});
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/vis/{key}"),
            Some(body),
            false,
        )
        .await
    }

    /// Deletes the VI and its registry entries; gone already is fine.
    pub async fn delete_vi(&self, key: u32) -> Result<(), NorthboundError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/v1/vis/{key}"),
            None,
            true,
        )
        .await
    }

    /// Seeds an untagged MAC with its address so ARP for it is answered.
    pub async fn seed(&self, vi: u32, mac: &str, ips: &[String]) -> Result<(), NorthboundError> {
        let body = json!({"location": null, "ips": ips});
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/registry/{vi}/untagged/{mac}"),
            Some(body),
            false,
        )
        .await
    }

    pub async fn unseed(&self, vi: u32, mac: &str) -> Result<(), NorthboundError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/v1/registry/{vi}/untagged/{mac}"),
            None,
            true,
        )
        .await
    }
}
