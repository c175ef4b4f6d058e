//! `pcap:PATH`: each message rebuilt as the packet that was captured
//! ([`PcapFileWriter`]), so that Wireshark and tshark show the original SIP.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context as _;
use hep_transport::Received;

use super::writer::{FileOutput, Format};
use super::{Context, Opened};
use crate::formats::pcap::PcapFileWriter;

/// Packets, stamped with the time they are written when the message has no capture time.
struct Packets(PcapFileWriter);

impl Format for Packets {
    fn write(&mut self, m: &Received) -> io::Result<()> {
        self.0.write(&m.message, SystemTime::now())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Creates (truncates) the pcap file `path`.
///
/// # Errors
/// The file cannot be created.
pub(crate) fn open(path: &Path, cx: &mut Context<'_>) -> anyhow::Result<Opened> {
    let file = PcapFileWriter::create(path)
        .with_context(|| format!("output `{}`: cannot create the file", cx.name))?;
    let stats = cx.counters.output(cx.name, true);
    Ok(Opened::queued(stats, FileOutput(Packets(file))))
}
