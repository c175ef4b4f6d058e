//! Connecting to the servers, and the stream both roles make sure of.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::StreamSpec;

/// How long JetStream API calls and publish acknowledgements may take: a stream leader's
/// election takes 4 to 9 s in nats-server 2.9 (the peers' notes), so an ack that waits
/// longer than this is sent again (the `Nats-Msg-Id` makes that safe).
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// How long JetStream remembers a `Nats-Msg-Id` to drop a copy: longer than an election
/// and a retry; a copy after it is still dropped by the consumer's store (its key).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Connects to `spec`'s servers as `name`, in the background: the client reconnects
/// forever, trying each server in turn, so an edge starts (and spools) with every server
/// down.
///
/// # Errors
/// The URLs are not valid.
pub async fn connect(
    spec: &StreamSpec,
    name: &str,
) -> Result<jetstream::Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(API_TIMEOUT))
        // A reconnect every 0.1 s to 1 s: a restarted server is found within a second.
        .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(1000)))
        .connect(spec.urls.as_slice())
        .await?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(API_TIMEOUT)
        .build(client))
}

/// The stream's configuration: every partition's subject, on disk, `replicas` copies, a
/// work queue (a message is removed once its consumer acknowledged it; no limit by age,
/// so nothing unread is dropped: when the servers' storage is full they refuse new
/// messages and the edges hold them in their spools).
pub fn config(spec: &StreamSpec) -> stream::Config {
    stream::Config {
        name: spec.stream.clone(),
        subjects: vec![format!("{}.*", spec.subject)],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        num_replicas: spec.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Makes sure the stream exists, and that it takes the partitions' subjects. With
/// `may_create` (a node's first contact) a missing stream is made as [`config`] says;
/// without (once the node has seen it), a missing stream is an error and nothing is
/// made: a cluster that restarts answers "no stream" until it has recovered its streams
/// from disk, and a stream made then would be a new, empty one in place of the one being
/// recovered.
///
/// # Errors
/// The servers did not answer, the stream is missing (and may not be made), or it
/// exists with other subjects (named).
pub async fn ensure(
    js: &jetstream::Context,
    spec: &StreamSpec,
    may_create: bool,
) -> anyhow::Result<stream::Stream> {
    let name = &spec.stream;
    let mut s = if may_create {
        js.get_or_create_stream(config(spec))
            .await
            .map_err(|e| anyhow::anyhow!("stream `{name}`: {e}"))?
    } else {
        js.get_stream(name).await.map_err(|e| {
            anyhow::anyhow!(
                "stream `{name}`: {e} (not made again while this node runs: a restarting \
                 cluster recovers it)"
            )
        })?
    };
    let want = format!("{}.*", spec.subject);
    let info = s
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream `{name}`: {e}"))?;
    if !info.config.subjects.iter().any(|x| *x == want || x == ">") {
        anyhow::bail!(
            "stream `{name}` exists with subjects {:?}, not `{want}`: another stream name, or \
             `subject=` as when it was made",
            info.config.subjects
        );
    }
    Ok(s)
}
