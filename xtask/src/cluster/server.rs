//! The hep-server processes of a cluster (edges and consumers): started, crashed,
//! restarted and stopped by PID, each bounded in time, with their metrics and CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::bench::procs::{Metrics, children_of, cpu_ticks, scrape};
use crate::interop::proc::{Ports, Proc, wait_for};

/// How long a hep-server may take until its metrics answer.
const START_LIMIT: Duration = Duration::from_secs(30);

/// One `hep-server run`, which can be crashed and started again with the same arguments.
#[derive(Debug)]
pub(crate) struct HepServer {
    /// `edge1`, `consumer2`: names its logs.
    name: String,
    /// The binary.
    bin: PathBuf,
    /// `run`'s arguments (without `--metrics`, added here).
    args: Vec<String>,
    /// Where its metrics answer (`--metrics`).
    metrics: SocketAddr,
    /// Where its logs go.
    dir: PathBuf,
    /// The longest one start may live (its `timeout`).
    max_life: Duration,
    /// The running process.
    proc: Option<Proc>,
    /// How many times it was started.
    starts: usize,
    /// CPU ticks of the earlier, ended processes.
    ended_ticks: u64,
}

impl HepServer {
    /// Starts `hep-server run ARGS --metrics 127.0.0.1:PORT` and waits until its metrics
    /// answer.
    ///
    /// # Errors
    /// It cannot be started, exits, or its metrics do not answer within 30 s.
    pub(crate) fn start(
        name: &str,
        bin: &Path,
        args: Vec<String>,
        dir: &Path,
        ports: &Ports,
        max_life: Duration,
    ) -> Result<Self> {
        let mut server = Self {
            name: name.to_owned(),
            bin: bin.to_path_buf(),
            args,
            metrics: SocketAddr::from(([127, 0, 0, 1], ports.free()?)),
            dir: dir.to_path_buf(),
            max_life,
            proc: None,
            starts: 0,
            ended_ticks: 0,
        };
        server.launch()?;
        Ok(server)
    }

    /// The name given at start.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        let log = self.dir.join(format!("{}-{}.log", self.name, self.starts));
        let mut args = vec!["run".to_owned()];
        args.extend(self.args.iter().cloned());
        args.extend(["--metrics".to_owned(), self.metrics.to_string()]);
        println!(
            "==> {}: hep-server {}",
            self.name,
            args.iter()
                .map(|a| if a.contains(';') {
                    format!("'{a}'")
                } else {
                    a.clone()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        let bin = self.bin.to_string_lossy().into_owned();
        let mut proc = Proc::start(&self.name, &bin, &args, &log, self.max_life)?;
        let metrics = self.metrics;
        let waited = wait_for(&format!("{}'s metrics", self.name), START_LIMIT, || {
            proc.ensure_running()?;
            Ok(scrape(metrics).is_ok())
        });
        if let Err(err) = waited {
            proc.stop();
            return Err(err).with_context(|| format!("{} log: {}", self.name, proc.log_tail(8)));
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// The hep-server process (the child of its `timeout`), while it runs.
    fn server_pid(&self) -> Option<u32> {
        let wrapper = self.proc.as_ref()?.pid();
        children_of(wrapper).first().copied()
    }

    /// CPU ticks of every process this server has been, the running one included.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        self.ended_ticks + self.server_pid().map_or(0, cpu_ticks)
    }

    /// A crash: `SIGKILL`, nothing flushed.
    pub(crate) fn kill(&mut self) {
        self.ended_ticks += self.server_pid().map_or(0, cpu_ticks);
        if let Some(mut proc) = self.proc.take() {
            proc.kill_group();
            println!("==> {}: killed (SIGKILL)", self.name);
        }
    }

    /// `SIGTERM` (a clean shutdown: what it holds is delivered), `SIGKILL` after 5 s.
    pub(crate) fn stop(&mut self) {
        self.ended_ticks += self.server_pid().map_or(0, cpu_ticks);
        if let Some(mut proc) = self.proc.take() {
            proc.stop();
        }
    }

    /// Starts it again with the same arguments (its store, spool and durable names).
    ///
    /// # Errors
    /// As [`HepServer::start`].
    pub(crate) fn restart(&mut self) -> Result<()> {
        if self.proc.is_some() {
            self.stop();
        }
        self.launch()
    }

    /// Whether it is running.
    pub(crate) fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// Its metrics now.
    ///
    /// # Errors
    /// It does not answer.
    pub(crate) fn scrape(&self) -> Result<Metrics> {
        scrape(self.metrics).with_context(|| format!("scraping {}'s metrics", self.name))
    }

    /// The last lines of its current log.
    pub(crate) fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map_or_else(String::new, |p| p.log_tail(6))
    }
}

impl Drop for HepServer {
    fn drop(&mut self) {
        self.stop();
    }
}
