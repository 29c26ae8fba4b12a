//! Leader election among controllers that share an etcd store: each
//! replica is a [`Candidate`] holding an etcd lease kept alive in the
//! background, and campaigns on `<prefix>iris/leader` with etcd's election
//! service. One wins ([`Leadership`]); the others wait in the campaign as
//! standbys and one of them wins when the leader resigns or its lease
//! expires (the leader died, or lost the cluster, for `ttl`).
//!
//! Nothing here touches a switch or the store: `replica.rs` claims the
//! OpenFlow MASTER role on winning, drops to SLAVE when
//! [`Candidate::alive`] turns false, and guards the store's commits with
//! [`Leadership::fence`] so that a deposed leader's late write is refused.

use crate::store::etcd::EtcdConfig;
use crate::store::StoreError;
use etcd_client::{Client, Compare, CompareOp, LeaderKey, ResignOptions};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The election's key, after the store's prefix.
const ELECTION: &str = "iris/leader";

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: "etcd",
        message: e.to_string(),
    }
}

/// One controller taking part in the election.
pub struct Candidate {
    client: Client,
    name: String,
    id: String,
    lease: i64,
    alive: watch::Receiver<bool>,
    keepalive: JoinHandle<()>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Having won: the election key this controller holds.
#[derive(Debug, Clone)]
pub struct Leadership {
    key: LeaderKey,
}

impl Leadership {
    /// A comparison that holds only while this leadership does: added to a
    /// store transaction, it makes etcd refuse the write of a leader that
    /// was deposed meanwhile.
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.key().to_vec(), CompareOp::Equal, self.key.rev())
    }

    /// The election key's revision: grows with every new leadership.
    pub fn generation(&self) -> i64 {
        self.key.rev()
    }

    /// The election key this leadership holds.
    pub fn key(&self) -> &[u8] {
        self.key.key()
    }
}

impl Candidate {
    /// Joins the election of the store `config` names as `id` (what the
    /// others see as the leader's name: e.g. its API address), with a
    /// lease of `ttl`, kept alive every third of it.
    pub async fn join(config: &EtcdConfig, id: &str, ttl: Duration) -> Result<Self, StoreError> {
        Self::join_election(config, ELECTION, id, ttl).await
    }

    /// Joins the election under `election` (after the store's prefix)
    /// instead: the broker's replicas hold one of their own.
    pub async fn join_election(
        config: &EtcdConfig,
        election: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        // No request timeout: a campaign waits as long as it takes. etcd
        // closes a connection pinged more often than every 5 s
        // (--grpc-keepalive-min-time), which broke a waiting campaign.
        let options = config
            .connect_options()?
            .with_keep_alive(crate::store::etcd::KEEPALIVE, config.request_timeout);
        let mut client = Client::connect(config.endpoints.clone(), Some(options))
            .await
            .map_err(unavailable)?;
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = tokio::time::timeout(config.request_timeout, client.lease_grant(secs, None))
            .await
            .map_err(|_| unavailable("no answer to the lease grant in time"))?
            .map_err(unavailable)?
            .id();
        let (tx, alive) = watch::channel(true);
        let keepalive = tokio::spawn(keep_alive(client.clone(), lease, ttl, tx));
        Ok(Self {
            client,
            name: format!("{}{election}", config.prefix),
            id: id.to_owned(),
            lease,
            alive,
            keepalive,
        })
    }

    /// Campaigns, and waits (a standby) until this candidate leads; a
    /// campaign cut short (a member died under it) is made again, which
    /// etcd takes as the same one (the key is the lease's), for as long as
    /// the lease lives.
    pub async fn campaign(&self) -> Result<Leadership, StoreError> {
        loop {
            let mut c = self.client.clone();
            match c
                .campaign(self.name.as_str(), self.id.as_str(), self.lease)
                .await
            {
                Ok(resp) => {
                    let key = resp
                        .leader()
                        .cloned()
                        .ok_or_else(|| unavailable("etcd named no leader key"))?;
                    return Ok(Leadership { key });
                }
                Err(e) if !*self.alive.borrow() => {
                    return Err(unavailable(format!("the lease is lost ({e})")));
                }
                Err(e) => {
                    tracing::debug!("campaign cut short ({e}); campaigning again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The current leader's id, if there is a leader.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.leading().await?.map(|(id, _)| id))
    }

    /// The current leader's id and generation (what its
    /// [`Leadership::generation`] says), if there is a leader.
    pub async fn leading(&self) -> Result<Option<(String, i64)>, StoreError> {
        let mut c = self.client.clone();
        match c.leader(self.name.as_str()).await {
            Ok(resp) => Ok(resp.kv().map(|kv| {
                (
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.create_revision(),
                )
            })),
            // etcd's words when nobody campaigns.
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Gives leadership up at once, for the next standby to take.
    pub async fn resign(&self, leadership: Leadership) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        c.resign(Some(ResignOptions::new().with_leader(leadership.key)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// `true` while this candidate's lease lives; once `false`, whatever it
    /// won is lost (etcd deleted its key), and it must act as a standby.
    pub fn alive(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// Stops keeping the lease alive without revoking it: what a killed
    /// controller leaves, for the lease to expire after its ttl.
    pub fn abandon(self) {
        self.keepalive.abort();
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Renews `lease` every third of `ttl`; reports it lost (`false`) once no
/// renewal has succeeded for `ttl`, or etcd says it expired.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, alive: watch::Sender<bool>) {
    let every = ttl / 3;
    let mut renewed = Instant::now();
    let mut stream = None;
    loop {
        if stream.is_none() {
            stream = tokio::time::timeout(every, client.lease_keep_alive(lease))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some((keeper, responses)) = stream.as_mut() {
            let answered = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(every, answered).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    tracing::trace!(lease, ttl = r.ttl(), "lease renewed");
                    renewed = Instant::now();
                }
                Ok(Ok(Some(_))) => {
                    // Expired: etcd has deleted what the lease held.
                    let _ = alive.send(false);
                    return;
                }
                _ => stream = None,
            }
        }
        if renewed.elapsed() >= ttl {
            let _ = alive.send(false);
            return;
        }
        // Renewed: again in a third of the ttl; else retry soon.
        let pause = if stream.is_some() {
            every
        } else {
            Duration::from_millis(100)
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests;
