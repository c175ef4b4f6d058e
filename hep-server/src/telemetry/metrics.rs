//! Prometheus metrics: text exposition at `GET /metrics`.
//!
//! Every counter lives where the work happens (listeners, callbacks, outputs) as a
//! relaxed atomic; a scrape walks the [`Collect`] sources and groups the samples by
//! metric family, as the text format requires. The HTTP side is a deliberately small
//! HTTP/1.1 responder: one request per connection, `GET /metrics` only, bounded request
//! size and time, and at most [`MAX_CONNECTIONS`] at once, so that it costs nothing when
//! nobody scrapes and cannot be held open.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::sync;

/// A source of metric samples.
pub trait Collect: Send + Sync {
    /// Adds this source's samples.
    fn collect(&self, out: &mut Samples);
}

/// Metric type, as in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in cumulative buckets (`_bucket{le}`, `_sum`, `_count`), added with
    /// [`Samples::histogram`].
    Histogram,
}

#[derive(Debug, Default)]
struct Family {
    help: &'static str,
    kind: Option<Kind>,
    samples: Vec<Sample>,
}

/// One sample: its labels, in the order given, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    labels: Vec<(String, String)>,
    value: u64,
    /// What follows the family's name: `_bucket`, `_sum`, `_count` for a histogram.
    suffix: &'static str,
    /// The value is in millionths (a histogram's `_sum` of seconds counted in µs).
    micros: bool,
}

impl Sample {
    /// The `(name, value)` label pairs, unescaped.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The sample's value (for a histogram's `_sum`, in millionths of its unit).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// What follows the family's name: empty, or `_bucket`, `_sum`, `_count`.
    pub fn suffix(&self) -> &'static str {
        self.suffix
    }
}

/// A histogram's state, for [`Samples::histogram`]: cumulative counts per upper bound,
/// the sum of the observations in millionths of the unit (µs for seconds), the count.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSnapshot<'a> {
    /// The upper bounds, ascending, in the unit (seconds), without `+Inf`.
    pub bounds: &'a [f64],
    /// Observations `<=` each bound (not cumulative: each bucket's own), one more for
    /// `+Inf`.
    pub buckets: &'a [u64],
    /// The sum of the observations, in millionths of the unit.
    pub sum_micros: u64,
}

/// Samples grouped by family, rendered in the Prometheus text format (or read as they
/// are: the drop warnings read `hep_dropped_total` here).
#[derive(Debug, Default)]
pub struct Samples {
    families: BTreeMap<&'static str, Family>,
}

impl Samples {
    /// Declares a family (name, help text, type) so that it is printed even with no samples.
    pub fn declare(&mut self, name: &'static str, help: &'static str, kind: Kind) {
        let f = self.families.entry(name).or_default();
        f.help = help;
        f.kind = Some(kind);
    }

    /// Adds one sample; `labels` are (name, value) pairs, values escaped when rendered.
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families.entry(name).or_default().samples.push(Sample {
            labels,
            value,
            suffix: "",
            micros: false,
        });
    }

    /// Adds one sample of a value kept in millionths of its unit (µs for a counter of
    /// seconds), rendered in the unit with six decimals.
    pub fn sample_micros(&mut self, name: &'static str, labels: &[(&str, &str)], micros: u64) {
        self.sample(name, labels, micros);
        if let Some(last) = self
            .families
            .get_mut(name)
            .and_then(|f| f.samples.last_mut())
        {
            last.micros = true;
        }
    }

    /// Adds one histogram's samples: `_bucket{le}` for each bound and `+Inf`
    /// (cumulative), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &'static str,
        labels: &[(&str, &str)],
        h: HistogramSnapshot<'_>,
    ) {
        let owned: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let samples = &mut self.families.entry(name).or_default().samples;
        let mut cumulative = 0;
        let les = h
            .bounds
            .iter()
            .map(|b| format!("{b}"))
            .chain(["+Inf".to_owned()]);
        for (le, n) in les.zip(h.buckets) {
            cumulative += n;
            let mut l = owned.clone();
            l.push(("le".to_owned(), le));
            samples.push(Sample {
                labels: l,
                value: cumulative,
                suffix: "_bucket",
                micros: false,
            });
        }
        samples.push(Sample {
            labels: owned.clone(),
            value: h.sum_micros,
            suffix: "_sum",
            micros: true,
        });
        samples.push(Sample {
            labels: owned,
            value: cumulative,
            suffix: "_count",
            micros: false,
        });
    }

    /// The samples of family `name`, in the order they were added.
    pub fn family(&self, name: &str) -> &[Sample] {
        self.families.get(name).map_or(&[], |f| &f.samples)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, f) in &self.families {
            if !f.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", f.help);
            }
            match f.kind {
                Some(Kind::Counter) => {
                    let _ = writeln!(out, "# TYPE {name} counter");
                }
                Some(Kind::Gauge) => {
                    let _ = writeln!(out, "# TYPE {name} gauge");
                }
                Some(Kind::Histogram) => {
                    let _ = writeln!(out, "# TYPE {name} histogram");
                }
                None => {}
            }
            for sample in &f.samples {
                out.push_str(name);
                out.push_str(sample.suffix);
                if !sample.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in sample.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let v = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        let _ = write!(out, "{k}=\"{v}\"");
                    }
                    out.push('}');
                }
                if sample.micros {
                    let v = sample.value;
                    let _ = writeln!(out, " {}.{:06}", v / 1_000_000, v % 1_000_000);
                } else {
                    let _ = writeln!(out, " {}", sample.value);
                }
            }
        }
        out
    }
}

/// Every source of the running server.
///
/// Clones share one list, so that a source registered after the endpoint started (an
/// output added by a reload) is served by it.
#[derive(Default, Clone)]
pub struct Registry {
    sources: Arc<RwLock<Vec<Arc<dyn Collect>>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source (to every clone of this registry).
    pub fn register(&self, source: Arc<dyn Collect>) {
        sync::write(&self.sources).push(source);
    }

    /// Collects every source.
    pub fn gather(&self) -> Samples {
        let sources = sync::read(&self.sources).clone();
        let mut s = Samples::default();
        for src in &sources {
            src.collect(&mut s);
        }
        s
    }
}

/// Metrics connections served at once; one more is closed at accept. Scrapers send one
/// request at a time; the bound keeps a flood of idle connections to this port from
/// taking the file descriptors the HEP listeners need (each may take 5 s to send its
/// request and 5 s to take its answer).
pub const MAX_CONNECTIONS: usize = 16;

/// How long a metrics connection may take to send its request, and then to take its
/// answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `shutdown` completes, at most
/// [`MAX_CONNECTIONS`] connections at once.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors and the like: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics connection refused: {MAX_CONNECTIONS} already open");
            drop(stream);
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &registry).await {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
            drop(slot);
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    // Read the request head, bounded in size and time.
    let head = tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf[len..]).await?;
            len += n;
            if n == 0 || buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                return Ok::<_, std::io::Error>(());
            }
        }
    })
    .await;
    if head.is_err() {
        return Ok(());
    }
    let request_line = buf[..len].split(|&b| b == b'\n').next().unwrap_or_default();
    let (status, body, ctype) = if request_line.starts_with(b"GET /metrics ")
        || request_line.starts_with(b"GET /metrics?")
    {
        (
            "200 OK",
            registry.gather().render(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    } else {
        (
            "404 Not Found",
            "only GET /metrics is served here\n".to_owned(),
            "text/plain; charset=utf-8",
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Bounded too: a scraper that never reads must not hold its slot.
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "writing the answer"))?
}

/// Binds the metrics endpoint.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl Collect for Two {
        fn collect(&self, out: &mut Samples) {
            out.declare(
                "hep_dropped_total",
                "Messages not delivered, by stage and reason.",
                Kind::Counter,
            );
            out.sample(
                "hep_dropped_total",
                &[("stage", "auth"), ("reason", "wrong_key")],
                3,
            );
            out.sample("hep_received_total", &[("transport", "udp")], 10);
        }
    }

    #[test]
    fn families_are_grouped_and_typed() {
        let r = Registry::new();
        r.register(Arc::new(Two));
        r.register(Arc::new(Two));
        let text = r.gather().render();
        let expected = "# HELP hep_dropped_total Messages not delivered, by stage and reason.\n\
            # TYPE hep_dropped_total counter\n\
            hep_dropped_total{stage=\"auth\",reason=\"wrong_key\"} 3\n\
            hep_dropped_total{stage=\"auth\",reason=\"wrong_key\"} 3\n\
            hep_received_total{transport=\"udp\"} 10\n\
            hep_received_total{transport=\"udp\"} 10\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn samples_can_be_read_as_they_are() {
        let r = Registry::new();
        r.register(Arc::new(Two));
        let s = r.gather();
        let dropped = s.family("hep_dropped_total");
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].label("reason"), Some("wrong_key"));
        assert_eq!(dropped[0].label("output"), None);
        assert_eq!(dropped[0].value(), 3);
        assert!(s.family("hep_nothing_total").is_empty());
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Samples::default();
        s.sample("m", &[("v", "a\"b\\c\nd")], 1);
        assert_eq!(s.render(), "m{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Registry::new();
        r.register(Arc::new(Two));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, r, async {
            let _ = rx.await;
        }));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("hep_received_total{transport=\"udp\"} 10"));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        tx.send(()).unwrap();
        server.await.unwrap();
    }

    /// A source with a large exposition (about 6 MB), more than the socket buffers of
    /// both ends hold.
    struct Large;
    impl Collect for Large {
        fn collect(&self, out: &mut Samples) {
            for i in 0..100_000 {
                out.sample("hep_test_total", &[("n", &format!("{i:058}"))], 1);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scraper_that_never_reads_its_answer_does_not_hold_its_slot() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, client) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let mut client = client.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let r = Registry::new();
        r.register(Arc::new(Large));
        // The paused clock jumps to the next timer whenever both ends wait: the
        // answer must end on its own timer, before this one.
        let answered =
            tokio::time::timeout(Duration::from_secs(60), answer(accepted.unwrap().0, &r)).await;
        assert!(answered.is_ok(), "the write waited for the client forever");
        drop(client);
    }
}
