//! Every peer at once: [`Cluster::ask_all`] sends one GET to each peer in parallel and
//! waits for all of them, each within its deadline; [`Cluster::ask`] asks one.
//!
//! Each request carries the cluster's token (`Authorization: Bearer`), the loop guard
//! ([`super::LOCAL_HEADER`]) and the capture ids the caller may read
//! ([`super::CAPTURE_IDS_HEADER`]), and is timed and counted per peer
//! ([`super::metrics`]).

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;

use super::client::{self, PeerAnswer, PeerError};
use super::metrics::{Outcome, PeerMetrics};
use super::{CAPTURE_IDS_HEADER, ClusterConfig, LOCAL_HEADER, LOCAL_VALUE, Peer};

/// A peer that did not answer in time or failed, as the results name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unanswered {
    /// The peer's URL, as configured.
    pub peer: String,
    /// What went wrong.
    pub error: String,
}

impl Unanswered {
    /// `peer` failed with `error`.
    pub fn new(peer: &Peer, error: impl std::fmt::Display) -> Self {
        Self {
            peer: peer.url().to_owned(),
            error: error.to_string(),
        }
    }
}

/// The peers of this node, and their counters.
#[derive(Debug, Clone)]
pub struct Cluster {
    config: Arc<ClusterConfig>,
    /// [`ClusterConfig::node_name`], resolved once.
    name: Arc<str>,
    metrics: Arc<PeerMetrics>,
}

impl Cluster {
    /// The peers of `config`, counted in `metrics`.
    pub fn new(config: ClusterConfig, metrics: Arc<PeerMetrics>) -> Self {
        Self {
            name: config.node_name().into(),
            config: Arc::new(config),
            metrics,
        }
    }

    /// This node's name, as its results give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether there is any peer to ask.
    pub fn has_peers(&self) -> bool {
        !self.config.peers.is_empty()
    }

    /// The headers of a request to a peer for a caller who may read `capture_ids`
    /// (`None`: all).
    fn headers(&self, capture_ids: Option<&[u32]>) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = vec![(
            HeaderName::from_static(LOCAL_HEADER),
            HeaderValue::from_static(LOCAL_VALUE),
        )];
        if let Some(token) = &self.config.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            h.push((header::AUTHORIZATION, v));
        }
        if let Some(ids) = capture_ids {
            let list = if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            };
            if let Ok(v) = HeaderValue::from_str(&list) {
                h.push((HeaderName::from_static(CAPTURE_IDS_HEADER), v));
            }
        }
        h
    }

    /// `GET path_and_query` on the peer at `index`, timed and counted.
    ///
    /// # Errors
    /// What [`client::get`] returns.
    pub async fn ask(
        &self,
        index: usize,
        path_and_query: &str,
        capture_ids: Option<&[u32]>,
    ) -> Result<PeerAnswer, PeerError> {
        let Some(peer) = self.config.peers.get(index) else {
            return Err(PeerError::Failed(format!("no peer {index}")));
        };
        let started = Instant::now();
        let answer = client::get(
            peer,
            path_and_query,
            &self.headers(capture_ids),
            self.config.timeout(),
        )
        .await;
        let outcome = match &answer {
            Ok(_) => Outcome::Ok,
            Err(PeerError::Timeout(_)) => Outcome::Timeout,
            Err(PeerError::Failed(_)) => Outcome::Error,
        };
        self.metrics.observe(peer.url(), outcome, started.elapsed());
        if let Err(e) = &answer {
            tracing::debug!(peer = %peer, error = %e, "cluster: a peer did not answer");
        }
        answer
    }

    /// `GET path_and_query` on every peer at once; the answers in the order of the
    /// peers, each within the deadline.
    pub async fn ask_all(
        &self,
        path_and_query: &str,
        capture_ids: Option<&[u32]>,
    ) -> Vec<(Peer, Result<PeerAnswer, PeerError>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.config.peers.len() {
            let (this, target) = (self.clone(), path_and_query.to_owned());
            let ids = capture_ids.map(<[u32]>::to_vec);
            tasks.spawn(async move { (i, this.ask(i, &target, ids.as_deref()).await) });
        }
        let mut answers: Vec<Option<Result<PeerAnswer, PeerError>>> =
            vec![None; self.config.peers.len()];
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, a)) = done {
                answers[i] = Some(a);
            }
        }
        self.config
            .peers
            .iter()
            .cloned()
            .zip(answers)
            .map(|(p, a)| {
                (
                    p,
                    a.unwrap_or_else(|| Err(PeerError::Failed("the request's task failed".into()))),
                )
            })
            .collect()
    }

    /// `GET path_and_query` on every peer at once, for something one node holds (a call,
    /// a message): the first `200` to arrive, and its peer; the other requests are
    /// dropped then. A `404` is an answer (not there); anything else is named.
    ///
    /// # Errors
    /// No peer answered `200`: the peers that did not answer (empty when every peer
    /// answered `404`).
    pub async fn find(
        &self,
        path_and_query: &str,
        capture_ids: Option<&[u32]>,
    ) -> Result<(Peer, PeerAnswer), Vec<Unanswered>> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.config.peers.len() {
            let (this, target) = (self.clone(), path_and_query.to_owned());
            let ids = capture_ids.map(<[u32]>::to_vec);
            tasks.spawn(async move { (i, this.ask(i, &target, ids.as_deref()).await) });
        }
        let mut failed: Vec<(usize, Unanswered)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let Ok((i, answer)) = done else { continue };
            let peer = &self.config.peers[i];
            match answer {
                Ok(a) if a.status == StatusCode::OK => {
                    tasks.abort_all();
                    return Ok((peer.clone(), a));
                }
                Ok(a) if a.status == StatusCode::NOT_FOUND => {}
                Ok(a) => failed.push((i, Unanswered::new(peer, a.status_error()))),
                Err(e) => failed.push((i, Unanswered::new(peer, e))),
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        Err(failed.into_iter().map(|(_, u)| u).collect())
    }

    /// The peer whose [`Peer::authority`] is `authority`, and its index.
    pub fn peer_by_authority(&self, authority: &str) -> Option<(usize, &Peer)> {
        self.config
            .peers
            .iter()
            .enumerate()
            .find(|(_, p)| p.authority() == authority)
    }
}
