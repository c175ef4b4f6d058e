//! One GET to one peer: a connection of its own (no pool: a search asks each peer once
//! or twice), HTTP/1.1 with hyper's client, the whole exchange (connect, request, the
//! answer's body) within the peer's deadline, the body at most [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use bytes::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Peer;

/// The largest answer taken from a peer (a call's pcap of the API's 10,000 messages at
/// most, 6 KiB each); a larger one is an error.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// What a peer answered.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// Why a peer gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The deadline passed.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// It could not be reached, or the exchange failed.
    #[error("{0}")]
    Failed(String),
}

/// `GET path_and_query` on `peer` with `headers`, within `deadline`.
///
/// # Errors
/// [`PeerError::Timeout`] past the deadline; [`PeerError::Failed`] when it cannot be
/// reached, the exchange fails, or the answer is over [`MAX_ANSWER_BYTES`].
pub async fn get(
    peer: &Peer,
    path_and_query: &str,
    headers: &[(HeaderName, HeaderValue)],
    deadline: Duration,
) -> Result<PeerAnswer, PeerError> {
    let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    tokio::time::timeout(deadline, exchange(peer, path_and_query, headers))
        .await
        .map_err(|_| PeerError::Timeout(ms))?
}

async fn exchange(
    peer: &Peer,
    path_and_query: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<PeerAnswer, PeerError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| PeerError::Failed(format!("{what}: {e}"));
    let stream = TcpStream::connect((peer.host(), peer.port()))
        .await
        .map_err(|e| failed("connect", &e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = http1::handshake::<_, Body>(TokioIo::new(stream))
        .await
        .map_err(|e| failed("handshake", &e))?;
    // The connection is driven beside the request; it ends with this exchange (dropped
    // with it when the deadline passes).
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get(path_and_query)
        .header(header::HOST, peer.authority())
        .body(Body::empty())
        .map_err(|e| failed("request", &e))?;
    for (k, v) in headers {
        request.headers_mut().insert(k.clone(), v.clone());
    }
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed("request", &e))?;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(Body::new(body), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                failed(
                    &format!("answer (at most {} MiB)", MAX_ANSWER_BYTES >> 20),
                    &e,
                )
            })?;
        Ok(PeerAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

impl PeerAnswer {
    /// The body as JSON, when the status is 200; else an error naming the status and
    /// the peer's error message.
    ///
    /// # Errors
    /// A status other than 200, or a body that is not JSON.
    pub fn json(&self) -> Result<serde_json::Value, PeerError> {
        if self.status != StatusCode::OK {
            return Err(self.status_error());
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| PeerError::Failed(format!("answer is not JSON: {e}")))
    }

    /// The error of an answer other than 200: its status, and its error's code and
    /// message when it has one.
    pub fn status_error(&self) -> PeerError {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or("");
        let message = v["error"]["message"].as_str().unwrap_or("");
        PeerError::Failed(format!(
            "answered {} {code}: {message}",
            self.status.as_u16()
        ))
    }
}
