//! `json:PATH|-`: one JSON record per message and line
//! ([`write_json_line`](crate::formats::record::write_json_line)), to a file or to
//! standard output (`-`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use hep_transport::Received;

use super::writer::{FileOutput, Format};
use super::{Context, Opened};
use crate::formats::record::write_json_line;

/// JSON lines, buffered.
struct JsonLines(Box<dyn Write + Send>);

impl Format for JsonLines {
    fn write(&mut self, m: &Received) -> io::Result<()> {
        write_json_line(&mut self.0, &m.message, Some(&m.info))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Creates (truncates) the file `path`, or takes standard output for `None`.
///
/// # Errors
/// The file cannot be created.
pub(crate) fn open(path: Option<&Path>, cx: &mut Context<'_>) -> anyhow::Result<Opened> {
    let out: Box<dyn Write + Send> = match path {
        Some(p) => Box::new(BufWriter::with_capacity(
            256 * 1024,
            File::create(p)
                .with_context(|| format!("output `{}`: cannot create the file", cx.name))?,
        )),
        None => Box::new(BufWriter::with_capacity(256 * 1024, io::stdout())),
    };
    let stats = cx.counters.output(cx.name, true);
    Ok(Opened::queued(stats, FileOutput(JsonLines(out))))
}
