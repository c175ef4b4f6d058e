//! Outputs that cannot run together: two writing one file or directory (or both standard
//! output), or a relay sending to a listener of this collector.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path, PathBuf};

use hep_transport::{HepDestination, ListenOn, ListenSpec};

use super::OutputSpec;

/// Outputs that cannot work together, or an output that would feed a listener of ours;
/// see [`Config::check_outputs`](crate::config::Config::check_outputs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutputConflict {
    /// The index in `outputs` of the second output concerned.
    pub(crate) output: usize,
    message: String,
}

/// Where an output writes that no other output may also write.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Stdout,
    /// A file (`json:`, `pcap:`) or a directory (`store:`, a relay's `spool=`).
    Path(PathBuf),
}

impl Target {
    fn of(spec: &OutputSpec) -> Option<Self> {
        match spec {
            OutputSpec::Stdout | OutputSpec::Json(None) => Some(Self::Stdout),
            _ => spec.path().map(|p| Self::Path(resolved_path(p))),
        }
    }
}

/// The first conflict among `outputs` (each as written, and parsed), or with `listeners`.
pub(crate) fn conflict<'a>(
    listeners: impl IntoIterator<Item = &'a ListenOn> + Clone,
    outputs: &[(&str, &OutputSpec)],
) -> Option<OutputConflict> {
    let mut targets: Vec<(&str, Target)> = Vec::new();
    for (i, (written, spec)) in outputs.iter().enumerate() {
        if let Some(dest) = spec.relay_destination()
            && let Some(l) = listeners
                .clone()
                .into_iter()
                .find(|l| relays_to(dest, &l.spec))
        {
            return Some(OutputConflict {
                output: i,
                message: format!(
                    "output `{written}` sends to listener `{}`: it would receive what it \
                     relays, again and again (relay to another collector)",
                    l.spec
                ),
            });
        }
        let Some(target) = Target::of(spec) else {
            continue;
        };
        if let Some((first, _)) = targets.iter().find(|(_, t)| *t == target) {
            let what = match &target {
                Target::Stdout => {
                    "standard output, where their lines would interleave (keep one)".to_owned()
                }
                Target::Path(p) => format!(
                    "{} (each output needs a file or directory of its own)",
                    p.display()
                ),
            };
            return Some(OutputConflict {
                output: i,
                message: format!("outputs `{first}` and `{written}` both write {what}"),
            });
        }
        targets.push((written, target));
    }
    None
}

/// Whether what a relay to `dest` sends arrives at the listener `listen`: the same
/// transport and port, and the destination is the listener's address, or the listener
/// is on every address (`0.0.0.0`, or `::`, which takes IPv4 too) and the destination
/// is a loopback address, an unspecified one (which connects to this host) or
/// `localhost`. Other names are not resolved, nor this host's other addresses listed:
/// the relay's mark catches those loops at run time (`docs/CONFIG.md`).
fn relays_to(dest: &HepDestination, listen: &ListenSpec) -> bool {
    if dest.transport() != listen.transport || dest.port() != listen.addr.port() {
        return false;
    }
    let to = match (dest.host().as_ip(), dest.host().as_name()) {
        (Some(ip), _) => ip.to_canonical(),
        (None, Some(name)) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return false,
    };
    let on = listen.addr.ip().to_canonical();
    let this_host = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    to == on
        || (on.is_unspecified() && this_host(to) && (on.is_ipv6() || to.is_ipv4()))
        || (to.is_unspecified() && on.is_loopback() && on.is_ipv4() == to.is_ipv4())
}

/// `path` absolute, without `.` and `..`, and with symlinks resolved as far as it exists
/// (the rest is created later): two spellings of one file give one path.
pub(crate) fn resolved_path(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path));
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut tail = Vec::new();
    let mut head = lexical.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(head) {
            return tail.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_owned());
                head = parent;
            }
            _ => return lexical,
        }
    }
}
