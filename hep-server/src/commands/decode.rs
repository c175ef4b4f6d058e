//! `hep-server decode [--format json|text] FILE...`.
//!
//! Every file (`-`: standard input, read to its end, at most once) is read with
//! [`CaptureReader`] (datagram, HEP3 stream, pcap or pcapng) and every HEP message in it
//! is decoded and written to `out` as a JSON record ([`record`](crate::formats::record)) or a text
//! line ([`text`](crate::formats::text)). A message that cannot be taken out or decoded is reported
//! on `err` as `FILE: WHERE: WHAT` and counted, and decoding goes on; so does a file that
//! cannot be read. In a HEP3 stream, bytes that are not a frame are reported with their
//! byte offset and skipped up to the next `HEP3`, and the frames after them decode. The
//! last line on `err` is `decoded N messages, M errors`; the binary exits 1 when M is
//! not 0.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;

use hep_proto::{DecodeError, DecodeOptions};

use crate::cli::{DecodeArgs, DecodeFormat};
use crate::formats::capture_file::{CaptureReader, Location};
use crate::formats::record::write_json_line;
use crate::formats::text::TextLine;

/// What a `decode` run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Messages decoded and written.
    pub messages: u64,
    /// Files, packets and messages that failed.
    pub errors: u64,
}

impl fmt::Display for DecodeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A fixed shape (no singular forms), for scripts that read it.
        write!(
            f,
            "decoded {} messages, {} errors",
            self.messages, self.errors
        )
    }
}

/// Runs `decode`: the file `-` from `stdin`, records to `out`, problems and the summary
/// line to `err`.
///
/// # Errors
/// Only when writing to `out` or `err` fails (e.g. a closed pipe); bad input is
/// reported on `err` and counted in the summary instead.
pub fn run<I: Read, O: Write, E: Write>(
    args: &DecodeArgs,
    stdin: I,
    out: &mut O,
    err: &mut E,
) -> io::Result<DecodeSummary> {
    let mut summary = DecodeSummary::default();
    let options = DecodeOptions::default();
    let mut stdin = Some(stdin);
    for path in &args.files {
        let input = if path.as_os_str() == "-" {
            Input::Stdin(stdin.take())
        } else {
            Input::File(path)
        };
        decode_file(input, args.format, &options, out, err, &mut summary)?;
    }
    out.flush()?;
    writeln!(err, "{summary}")?;
    Ok(summary)
}

/// A file to decode: a path, or standard input (`None` once it has been read).
enum Input<'a, I> {
    File(&'a Path),
    Stdin(Option<I>),
}

impl<I: Read> Input<'_, I> {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Stdin(_) => "-".to_owned(),
        }
    }

    fn open(self) -> Result<CaptureReader, String> {
        match self {
            Self::File(path) => CaptureReader::open(path).map_err(|e| e.to_string()),
            Self::Stdin(None) => Err("standard input was read already: give `-` once".to_owned()),
            Self::Stdin(Some(mut stdin)) => {
                let mut data = Vec::new();
                stdin
                    .read_to_end(&mut data)
                    .map_err(|e| format!("cannot read standard input: {e}"))?;
                CaptureReader::from_bytes(Bytes::from(data)).map_err(|e| e.to_string())
            }
        }
    }
}

fn decode_file<I: Read, O: Write, E: Write>(
    input: Input<'_, I>,
    format: DecodeFormat,
    options: &DecodeOptions,
    out: &mut O,
    err: &mut E,
    summary: &mut DecodeSummary,
) -> io::Result<()> {
    let name = input.name();
    let reader = match input.open() {
        Ok(r) => r,
        Err(e) => {
            summary.errors += 1;
            out.flush()?;
            return writeln!(err, "{name}: {e}");
        }
    };
    tracing::debug!(file = %name, format = %reader.format(), "decoding");
    for item in reader {
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                summary.errors += 1;
                out.flush()?;
                writeln!(err, "{name}: {e}")?;
                continue;
            }
        };
        let msg = match options.decode(&frame.wire) {
            Ok(msg) => msg,
            Err(e) => {
                summary.errors += 1;
                out.flush()?;
                writeln!(err, "{name}: {}", DecodeProblem(frame.location, e))?;
                continue;
            }
        };
        match format {
            DecodeFormat::Json => write_json_line(&mut *out, &msg, frame.recv.as_ref())?,
            DecodeFormat::Text => writeln!(out, "{}", TextLine::new(&msg, frame.recv.as_ref()))?,
        }
        summary.messages += 1;
    }
    Ok(())
}

/// A decode error where it happened; for a whole file that is not HEP at all, says what
/// was expected.
struct DecodeProblem(Location, DecodeError);

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Location::File, e @ DecodeError::UnknownVersion(_)) => write!(
                f,
                "not a HEP datagram, HEP3 stream or pcap/pcapng file: {e}"
            ),
            (Location::File, e) => write!(f, "{e}"),
            (loc, e) => write!(f, "{loc}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let s = DecodeSummary {
            messages: 12,
            errors: 1,
        };
        assert_eq!(s.to_string(), "decoded 12 messages, 1 errors");
        assert_eq!(
            DecodeSummary::default().to_string(),
            "decoded 0 messages, 0 errors"
        );
    }
}
