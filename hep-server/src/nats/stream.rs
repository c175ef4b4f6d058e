//! Connecting to the servers, and the stream both roles make sure of.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// The stream's configuration: every partition's subject, on disk, `replicas` copies,
/// each message kept `max_age` whether it was read or not (limits retention), and when
/// the servers' storage is full they refuse new messages (the edges hold them in their
/// spools).
///
/// Not a work queue: in a work queue each replica removes a message when the consumer's
/// acknowledgement reaches it. In nats-server 2.9 a replica that does not hold the
/// message yet proposes its deletion to the stream instead, and a replica that applies a
/// delete of a sequence past its last one fails (`stream store EOF`) and resets the
/// stream's cluster state, deleting its Raft state ("Resetting stream cluster state";
/// nats-server changed that only in 2025, nats-io/nats-server#7348). With the Raft state
/// of two of the three replicas gone after a stream leader's `SIGKILL`, the stream and
/// its consumers disagreed: in the proof's failed runs the new leader stored messages
/// (the edges' retries and new ones) at sequences the consumers had already passed, and
/// acknowledged them to the edges; they stayed in the stream and never reached a store
/// (308 and 943 of 21,000 lost). With limits retention an acknowledgement moves only the
/// consumer, and nothing is deleted but by age, which each replica does by itself.
pub fn config(spec: &StreamSpec) -> stream::Config {
    stream::Config {
        name: spec.stream.clone(),
        subjects: vec![format!("{}.*", spec.subject)],
        retention: stream::RetentionPolicy::Limits,
        max_age: spec.max_age,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        num_replicas: spec.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Whether a stream of this retention loses acknowledged messages to nats-server 2.9's
/// replica resets (see [`config`]).
pub fn removes_on_ack(retention: stream::RetentionPolicy) -> bool {
    !matches!(retention, stream::RetentionPolicy::Limits)
}

/// Said once per process: the stream was made as a work queue (by an older hep-server).
static WARNED_RETENTION: AtomicBool = AtomicBool::new(false);

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
    if removes_on_ack(info.config.retention) && !WARNED_RETENTION.swap(true, Ordering::Relaxed) {
        tracing::error!(
            stream = %name,
            retention = ?info.config.retention,
            "nats: the stream removes messages once acknowledged (made by an older \
             hep-server): with nats-server 2.9 a stream leader's crash can lose acknowledged \
             messages; make it again with limits retention once it is drained (docs/SCALE-OUT.md, \
             \"The stream\")"
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::NatsOutputSpec;

    #[test]
    fn the_stream_keeps_messages_by_age_not_until_acknowledged() {
        let spec = NatsOutputSpec::parse("nats:a:1,b:2,c:3;max_age=2h").unwrap();
        let c = config(&spec.stream);
        assert_eq!(c.retention, stream::RetentionPolicy::Limits);
        assert!(!removes_on_ack(c.retention));
        assert_eq!(c.max_age, Duration::from_secs(7_200));
        assert_eq!(c.num_replicas, 3);
        assert_eq!(c.discard, stream::DiscardPolicy::New);
        assert_eq!(c.storage, stream::StorageType::File);
        assert_eq!(c.subjects, ["hep.*"]);
        assert_eq!(c.duplicate_window, DUPLICATE_WINDOW);
        for old in [
            stream::RetentionPolicy::WorkQueue,
            stream::RetentionPolicy::Interest,
        ] {
            assert!(removes_on_ack(old), "{old:?}");
        }
    }
}
