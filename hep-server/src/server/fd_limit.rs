//! `[limits] max_connections` against the process's open-files limit.
//!
//! Every TCP/TLS connection takes a file descriptor. A `max_connections` above what the
//! open-files limit (`ulimit -n`, systemd's `LimitNOFILE`, often 1024) leaves is a cap a
//! flood never reaches: the descriptors run out first, and then everything that needs
//! one fails at once: the accepts of every listener, relay connects, the metrics
//! endpoint, files reopened by a reload. So the cap is lowered to fit, and the start
//! says so and how to raise the limit.

/// Descriptors kept for everything but HEP connections: standard streams, the runtime,
/// listening sockets, output files, relay connections, the metrics endpoint's 16.
pub const RESERVED: u64 = 64;

/// The soft open-files limit of this process (`/proc/self/limits`; `None` where it
/// cannot be read, or when it is unlimited).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `max_connections` each of `stream_listeners` TCP/TLS listeners can have within
/// `limit` open files: `configured`, or less when it does not fit (at least 1).
///
/// ```
/// use hep_server::server::fd_limit::fit;
/// assert_eq!(fit(4096, 1, Some(65536)), 4096);
/// assert_eq!(fit(4096, 2, Some(1024)), (1024 - 64) / 2);
/// assert_eq!(fit(4096, 1, None), 4096);
/// ```
pub fn fit(configured: usize, stream_listeners: usize, limit: Option<u64>) -> usize {
    let (Some(limit), Ok(n @ 1..)) = (limit, u64::try_from(stream_listeners)) else {
        return configured;
    };
    let each = limit.saturating_sub(RESERVED) / n;
    usize::try_from(each).map_or(configured, |each| configured.min(each.max(1)))
}

/// `configured` as [`fit`] lowers it for this process's open-files limit; warns when it
/// does.
pub fn fitted_max_connections(configured: usize, stream_listeners: usize) -> usize {
    let limit = open_files_limit();
    let fitted = fit(configured, stream_listeners, limit);
    if fitted < configured {
        let needed = (configured as u64)
            .saturating_mul(stream_listeners as u64)
            .saturating_add(RESERVED);
        tracing::warn!(
            "[limits] max_connections = {configured} does not fit the open-files limit \
             (ulimit -n {}) with {stream_listeners} TCP/TLS listener(s): serving at most \
             {fitted} connections per listener, so that a flood cannot take every file \
             descriptor; raise the limit (ulimit -n, systemd LimitNOFILE=) to at least {needed}",
            limit.unwrap_or_default()
        );
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95603                95603                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), None);
        assert!(open_files_limit().is_some(), "readable on Linux");
    }

    #[test]
    fn a_cap_that_fits_stays_and_one_that_does_not_is_lowered() {
        assert_eq!(fit(100, 2, Some(1024)), 100);
        assert_eq!(fit(4096, 1, Some(200)), 136);
        assert_eq!(fit(4096, 3, Some(64)), 1, "never 0");
        assert_eq!(fit(4096, 0, Some(200)), 4096, "no TCP/TLS listener");
    }
}
