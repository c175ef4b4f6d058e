//! MOS from jitter, delay and loss: the simplified ITU-T G.107 E-model that
//! heplify-server applies to `X-RTP-Stat` (after Cole and Rosenbluth, "Voice over IP
//! performance monitoring", 2001), so that an operator comparing the two sees the same
//! figure for the same inputs.
//!
//! - effective latency `el = 2 x jitter + one-way delay + 10` (ms; 10 ms for the codec);
//! - `R = 93.2 - el / 40` when `el < 160`, else `93.2 - (el - 120) / 10`;
//! - `R -= 2.5 x loss%`;
//! - `MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)`, with `MOS = 1` for `R <= 0` and
//!   `4.5` for `R >= 100` (G.107 Annex B), so always in `[1, 4.5]`.
//!
//! It assumes G.711 with packet-loss concealment (no equipment impairment `Ie`): a
//! compressed codec scores lower in reality. The full G.107 needs the codec's `Ie` and
//! `Bpl`, which none of the three sources carries.

/// The R factor of a stream with `jitter_ms` of interarrival jitter, `delay_ms` one-way
/// delay and `loss_pct` percent of its packets lost (negative or non-finite inputs are
/// read as 0).
pub fn r_factor(jitter_ms: f64, delay_ms: f64, loss_pct: f64) -> f64 {
    let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let el = 2.0 * clean(jitter_ms) + clean(delay_ms) + 10.0;
    let r = if el < 160.0 {
        93.2 - el / 40.0
    } else {
        93.2 - (el - 120.0) / 10.0
    };
    r - 2.5 * clean(loss_pct)
}

/// The MOS (1 to 4.5) of an R factor.
pub fn mos_of_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
}

/// The MOS of a stream; see the [module docs](self).
///
/// ```
/// use hep_server::qos::emodel::mos;
/// // A clean stream: el = 10, R = 92.95, MOS = 4.404.
/// assert!((mos(0.0, 0.0, 0.0) - 4.404).abs() < 0.001);
/// // 5% loss costs 12.5 points of R: 4.04.
/// assert!((mos(0.0, 0.0, 5.0) - 4.041).abs() < 0.001);
/// ```
pub fn mos(jitter_ms: f64, delay_ms: f64, loss_pct: f64) -> f64 {
    mos_of_r(r_factor(jitter_ms, delay_ms, loss_pct))
}
