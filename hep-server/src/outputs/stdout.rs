//! `stdout`: one human-readable line per message on standard output
//! ([`TextLine`](crate::formats::text::TextLine)).

use std::io::{self, BufWriter, Stdout, Write as _};

use hep_transport::Received;

use super::writer::{FileOutput, Format};
use super::{Context, Opened};
use crate::formats::text::TextLine;

/// Text lines, buffered.
struct TextLines(BufWriter<Stdout>);

impl Format for TextLines {
    fn write(&mut self, m: &Received) -> io::Result<()> {
        writeln!(self.0, "{}", TextLine::new(&m.message, Some(&m.info)))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Opens standard output for text lines.
pub(crate) fn open(cx: &mut Context<'_>) -> Opened {
    let stats = cx.counters.output(cx.name, true);
    let lines = TextLines(BufWriter::with_capacity(256 * 1024, io::stdout()));
    Opened::queued(stats, FileOutput(lines))
}
