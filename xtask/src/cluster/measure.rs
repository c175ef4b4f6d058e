//! Figures read from the processes: histogram quantiles from Prometheus buckets, counters
//! summed over the nodes of a role, CPU per message.

use crate::bench::procs::Metrics;

/// The `q` quantile (0-1) of the histogram `name` summed over several scrapes, in the
/// histogram's unit, interpolated linearly inside the bucket that holds it (as
/// Prometheus's `histogram_quantile` does); `None` without observations.
pub(crate) fn quantile(scrapes: &[Metrics], name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    // Cumulative counts by upper bound, summed over scrapes and label sets.
    let mut bounds: Vec<(f64, f64)> = Vec::new();
    for m in scrapes {
        for (labels, count) in m.family(&bucket) {
            let Some(le) = label(labels, "le") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            match bounds.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => bounds.push((le, count)),
            }
        }
    }
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &bounds {
        if count >= rank {
            if le.is_infinite() {
                // Above the last finite bound: that bound is all that is known.
                return Some(lower.0);
            }
            let width = count - lower.1;
            let within = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// The value of `key` in a label text `a="x",b="y"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// The sum of counter `name` over several scrapes (every label set).
pub(crate) fn total(scrapes: &[Metrics], name: &str) -> u64 {
    scrapes.iter().map(|m| m.sum(name, &[])).sum()
}

/// Microseconds of CPU per message from clock ticks.
pub(crate) fn cpu_us_per_message(ticks: u64, clk_tck: f64, messages: u64) -> f64 {
    if messages == 0 {
        return 0.0;
    }
    ticks as f64 / clk_tck * 1e6 / messages as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(text: &str) -> Metrics {
        Metrics::parse(text)
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_summed_over_nodes() {
        let a = metrics(
            "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"0.01\"} 50\nh_bucket{le=\"0.1\"} 100\n\
             h_bucket{le=\"+Inf\"} 100\nh_count 100\n",
        );
        let b = metrics(
            "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"0.01\"} 50\nh_bucket{le=\"0.1\"} 100\n\
             h_bucket{le=\"+Inf\"} 100\n",
        );
        let both = [a, b];
        let p50 = quantile(&both, "h", 0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p99 = quantile(&both, "h", 0.99).unwrap();
        assert!((p99 - 0.0982).abs() < 1e-6, "{p99}");
        assert_eq!(quantile(&both, "other", 0.5), None);
        assert_eq!(total(&both, "h_count"), 100);
    }

    #[test]
    fn cpu_per_message() {
        assert!((cpu_us_per_message(100, 100.0, 1_000_000) - 1.0).abs() < 1e-9);
        assert!(cpu_us_per_message(5, 100.0, 0).abs() < f64::EPSILON);
    }
}
