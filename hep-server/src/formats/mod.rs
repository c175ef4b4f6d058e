//! How a message is written out or read back, apart from where it goes: the outputs and
//! `search` write these, `decode` reads capture files.
//!
//! - [`hep`]: the HEP bytes a received message goes on as (relays, the store);
//! - [`record`]: the JSON record of a message ([`record::write_json_line`]);
//! - [`text`]: the one-line human-readable form ([`text::TextLine`]);
//! - [`ladder`]: a call flow as a ladder diagram in the terminal (`search`);
//! - [`pcap`]: messages rebuilt as the packets that were captured, in a pcap file;
//! - [`capture_file`]: HEP messages out of files: raw datagrams, HEP3 stream captures,
//!   pcap/pcapng (Ethernet, Linux cooked, raw IP, loopback; IPv4/IPv6; UDP, and TCP
//!   reassembled), with receive info from the packet headers.

pub mod capture_file;
pub mod hep;
pub mod ladder;
pub mod pcap;
pub mod record;
pub mod text;
