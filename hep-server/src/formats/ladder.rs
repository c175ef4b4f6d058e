//! A call flow as a ladder diagram in the terminal, the way sngrep's call flow screen and
//! Homer's flow view show it: one column (lifeline) per `address:port`, one arrow per
//! message, the capture time on the left.
//!
//! ```text
//! 12 messages between 3 addresses, first at 2026-11-26T05:21:49.909050Z
//! (left: seconds since the first message, Δ since the previous one)
//! Call-ID 1-13274@127.0.0.1
//!
//!                        127.0.0.1:5061     127.0.0.1:5060     127.0.0.1:5070
//!                        ───────┬──────     ───────┬──────     ───────┬──────
//! +0.000000                     ├──── INVITE ─────>│                  │
//! +0.000695  Δ0.000695          │                  ├──── INVITE ─────>│
//! +0.000960  Δ0.000265          │                  │<── 180 Ringing ──┤
//! ...
//! ```
//!
//! # Layout
//! - **Columns** are the distinct addresses in the order they first appear (in time
//!   order), each named in a header row: by its alias when [`render_named`] is given
//!   `[aliases]` ([`crate::aliases`]), with the address on a second row under it. All columns are equally wide: wide enough for
//!   the longest label on an arrow and the longest address, so every label fits between
//!   two neighbouring lifelines.
//! - **Arrows** start at the sender's lifeline (`├`, `┤`) and point at the receiver's
//!   (`──>│`, `│<──`); the label sits in the part of the arrow next to the sender, and an
//!   arrow that passes other columns crosses their lifelines (`┼`). A message an address
//!   sends to itself is a loop to the right of its lifeline, on two lines.
//! - **Time**: the header gives the capture time of the first message (UTC, RFC 3339 with
//!   microseconds); each arrow shows its offset from the first message (`+0.000813`) and
//!   its distance to the previous one (`Δ0.000431`), in seconds. Arrows are sorted by
//!   time; arrows with equal times keep their input order.
//! - **Legs**: with more than one Call-ID in the flow (correlated legs, e.g. both sides of
//!   a B2BUA), a legend lists each Call-ID with a marker (`[1]`, `[2]` ...), and each arrow
//!   carries its leg's marker, so the legs stay apart without color too. With
//!   [`LadderStyle::color`] each leg's arrows and legend line also get their own color
//!   (six colors, repeating after the sixth leg; the markers never repeat).
//! - **Wide flows** are never cut: a flow with many columns makes lines as wide as they
//!   need to be (the terminal wraps them, `less -S` scrolls them), and labels are never
//!   shortened. Widths are counted in characters, so labels with double-width characters
//!   (CJK) misalign the columns to their right; SIP methods and addresses are ASCII.
//! - **Untrusted text**: labels, addresses and Call-IDs come from captured packets, so
//!   control characters in them (a terminal escape sequence, say) are shown escaped
//!   (`\x1b`) by [`Escaped`], never sent to the terminal.
//! - [`LadderStyle::ascii`] draws with `|`, `-`, `+`, `<`, `>` and `d` for `Δ`, for
//!   terminals without UTF-8.
//!
//! An empty flow prints one line, [`EMPTY`].
//!
//! ```
//! use hep_server::formats::ladder::{Arrow, LadderStyle, render};
//!
//! let arrow = |ts_usec, src: &str, dst: &str, label: &str| Arrow {
//!     ts_usec,
//!     src: src.into(),
//!     dst: dst.into(),
//!     label: label.into(),
//!     call_id: "a@b".into(),
//! };
//! let flow = [
//!     arrow(1_700_000_000_000_000, "10.0.0.1:5060", "10.0.0.2:5060", "INVITE"),
//!     arrow(1_700_000_000_000_813, "10.0.0.2:5060", "10.0.0.1:5060", "200 OK"),
//! ];
//! let mut out = Vec::new();
//! render(&flow, &LadderStyle::default(), &mut out).unwrap();
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.starts_with("2 messages between 2 addresses, first at 2023-11-14T22:13:20.000000Z"));
//! assert!(text.contains("+0.000813  Δ0.000813"));
//! assert!(text.contains("│<─── 200 OK ────┤"));
//! ```

use std::ffi::OsStr;
use std::io;

use hep_proto::{HepMessage, ProtoType};

use crate::aliases::Aliases;
use crate::formats::text::{Endpoint, Escaped};
use crate::time::UtcTimestamp;
use hep_proto::sip::{SipSummary, StartLine};

/// What [`render`] prints for a flow without messages.
pub const EMPTY: &str = "no messages: the call flow is empty";

/// One message of a call flow: an arrow from `src` to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_usec: i64,
    /// The sender, `ip:port` (`[ip]:port` for IPv6).
    pub src: String,
    /// The receiver, `ip:port` (`[ip]:port` for IPv6).
    pub dst: String,
    /// What is written on the arrow: the SIP method (`INVITE`), the status and reason
    /// (`180 Ringing`), or for other payloads the protocol type's name (`log`).
    pub label: String,
    /// The leg this message belongs to (the SIP Call-ID); may be empty.
    pub call_id: String,
}

/// How [`render`] draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LadderStyle {
    /// Color the legs and the header with ANSI escapes; see [`color_for`].
    pub color: bool,
    /// Draw with ASCII characters only, for terminals without UTF-8.
    pub ascii: bool,
}

/// Whether to color output that goes to a terminal (`out_is_terminal`, from
/// [`std::io::IsTerminal`]): yes, unless `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>) or `TERM` is `dumb`.
///
/// ```
/// use std::io::IsTerminal as _;
/// let color = hep_server::formats::ladder::color_for(std::io::stdout().is_terminal());
/// # let _ = color;
/// assert!(!hep_server::formats::ladder::color_for(false));
/// ```
pub fn color_for(out_is_terminal: bool) -> bool {
    color_from_env(
        out_is_terminal,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

fn color_from_env(out_is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    out_is_terminal && no_color.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"))
}

/// The arrow of a HEP message: its capture time (0 when it carries none, as HEPv1 does),
/// source and destination as the text line writes them ([`Endpoint`]), and
///
/// - for SIP (or a payload without a protocol type that reads as SIP): the method of a
///   request, `code reason` of a response, and the Call-ID;
/// - for anything else: the protocol type's name (`log`, `rtcp`, the id for types
///   without a name, `-` without a type), and the HEP correlation id, which agents set to
///   the Call-ID of the call a log line or RTCP report belongs to, so it joins that leg.
///
/// ```
/// use hep_proto::{HepMessage, ProtoType};
/// use hep_server::formats::ladder::arrow_of;
///
/// let msg = HepMessage::builder()
///     .src("[::1]:5070".parse().unwrap())
///     .dst("[::1]:5060".parse().unwrap())
///     .timestamp(1_700_000_000, 5)
///     .proto_type(ProtoType::Sip)
///     .payload("SIP/2.0 180 Ringing\r\nCall-ID: abc@h\r\n\r\n")
///     .build();
/// let arrow = arrow_of(&msg);
/// assert_eq!(arrow.ts_usec, 1_700_000_000_000_005);
/// assert_eq!((arrow.src.as_str(), arrow.dst.as_str()), ("[::1]:5070", "[::1]:5060"));
/// assert_eq!((arrow.label.as_str(), arrow.call_id.as_str()), ("180 Ringing", "abc@h"));
/// ```
pub fn arrow_of(msg: &HepMessage) -> Arrow {
    let ts_usec = msg.ts_sec.map_or(0, |s| {
        i64::from(s) * 1_000_000 + i64::from(msg.ts_usec.unwrap_or(0))
    });
    let may_be_sip = matches!(msg.proto_type, None | Some(ProtoType::Sip));
    let sip = may_be_sip
        .then(|| SipSummary::parse(msg.payload.bytes()))
        .flatten();
    let label = match sip.map(|s| s.start) {
        Some(StartLine::Request { method, .. }) => method.to_owned(),
        Some(StartLine::Response { code, reason: "" }) => code.to_string(),
        Some(StartLine::Response { code, reason }) => format!("{code} {reason}"),
        None => msg
            .proto_type
            .map_or_else(|| "-".to_owned(), |t| t.to_string()),
    };
    let call_id = match (sip.and_then(|s| s.call_id), &msg.correlation_id) {
        (Some(id), _) => id.to_owned(),
        (None, Some(id)) => String::from_utf8_lossy(id).into_owned(),
        (None, None) => String::new(),
    };
    Arrow {
        ts_usec,
        src: Endpoint::src(msg).to_string(),
        dst: Endpoint::dst(msg).to_string(),
        label,
        call_id,
    }
}

/// Draws `arrows` as a ladder diagram on `out`; see the [module docs](self) for the
/// layout. `arrows` need not be sorted.
///
/// # Errors
/// Only those of writing to `out`.
pub fn render(arrows: &[Arrow], style: &LadderStyle, out: &mut dyn io::Write) -> io::Result<()> {
    render_named(arrows, style, &Aliases::default(), out)
}

/// [`render`], with the columns named by `aliases` ([`crate::aliases`]): a column whose
/// address has an alias is headed by the alias, with the address on the line under it
/// (sngrep shows the alias alone; the address stays visible here).
///
/// ```
/// use hep_server::aliases::Aliases;
/// use hep_server::formats::ladder::{Arrow, LadderStyle, render_named};
///
/// let arrow = Arrow {
///     ts_usec: 0,
///     src: "10.0.0.1:5060".into(),
///     dst: "10.0.0.2:5060".into(),
///     label: "INVITE".into(),
///     call_id: "a@b".into(),
/// };
/// let aliases = Aliases::new([("10.0.0.2", "proxy")]).unwrap();
/// let mut out = Vec::new();
/// render_named(&[arrow], &LadderStyle::default(), &aliases, &mut out).unwrap();
/// let text = String::from_utf8(out).unwrap();
/// let header: Vec<&str> = text.lines().skip(4).take(2).collect();
/// assert!(header[0].contains("10.0.0.1:5060") && header[0].trim_end().ends_with("proxy"));
/// assert!(header[1].trim() == "10.0.0.2:5060", "{text}");
/// ```
///
/// # Errors
/// Only those of writing to `out`.
pub fn render_named(
    arrows: &[Arrow],
    style: &LadderStyle,
    aliases: &Aliases,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    if arrows.is_empty() {
        return writeln!(out, "{EMPTY}");
    }
    let glyphs = if style.ascii { &ASCII } else { &UNICODE };
    let paint = Paint { on: style.color };

    // Stable: equal times keep their input order.
    let mut order: Vec<&Arrow> = arrows.iter().collect();
    order.sort_by_key(|a| a.ts_usec);

    let flow = Flow::new(&order, aliases);
    let layout = Layout::new(&flow);
    let margin = Margin::new(&order, &flow, glyphs);

    // The header: when, how many, which legs, which columns.
    let first = order[0].ts_usec;
    let when = UtcTimestamp::new(
        first.div_euclid(1_000_000),
        // In 0..1_000_000, so it fits.
        first.rem_euclid(1_000_000) as u32,
    );
    writeln!(
        out,
        "{} between {}, first at {when}",
        count(order.len(), "message", "messages"),
        count(flow.lanes.len(), "address", "addresses")
    )?;
    writeln!(
        out,
        "(left: seconds since the first message, {} since the previous one)",
        glyphs.delta
    )?;
    match flow.legs.as_slice() {
        [] => {}
        [only] => writeln!(out, "Call-ID {only}")?,
        legs => {
            for (i, leg) in legs.iter().enumerate() {
                let line = format!("{} Call-ID {leg}", marker(i));
                writeln!(out, "{}", paint.leg(i, &line))?;
            }
        }
    }
    writeln!(out)?;

    // Column names (an alias, or the address), and under an alias its address.
    let mut tops = layout.blank(glyphs, false);
    for (i, (name, addr)) in flow.names.iter().zip(&flow.lanes).enumerate() {
        let len = width(name).max(width(addr));
        let start = layout.x(i) - len / 2;
        for cell in &mut tops[start..start + len] {
            *cell = glyphs.dash;
        }
        tops[layout.x(i)] = glyphs.top;
    }
    let names = centred(&layout, flow.names.iter().map(|n| Some(n.as_str())), |n| {
        paint.bold(n)
    });
    let aliased = flow.names.iter().zip(&flow.lanes).any(|(n, a)| n != a);
    let addresses = aliased.then(|| {
        let under = flow
            .names
            .iter()
            .zip(&flow.lanes)
            .map(|(n, a)| (n != a).then_some(a.as_str()));
        centred(&layout, under, str::to_owned)
    });
    let pad = " ".repeat(margin.width());
    writeln!(out, "{pad}{names}")?;
    if let Some(addresses) = addresses {
        writeln!(out, "{pad}{addresses}")?;
    }
    writeln!(out, "{}", Row::plain(tops).line(&pad, paint))?;

    let mut previous = first;
    for (i, arrow) in order.iter().enumerate() {
        let leg = flow.leg_of(arrow);
        let offset = arrow.ts_usec.saturating_sub(first);
        let delta = (i > 0).then(|| arrow.ts_usec.saturating_sub(previous));
        let left = margin.line(offset, delta, leg);
        previous = arrow.ts_usec;
        for (n, row) in layout
            .arrow(&flow, arrow, leg, glyphs)
            .into_iter()
            .enumerate()
        {
            let left = if n == 0 { left.as_str() } else { pad.as_str() };
            writeln!(out, "{}", row.line(left, paint))?;
        }
    }
    Ok(())
}

/// `texts` (one per lane, `None`: nothing there) centred on the lanes' lifelines, each
/// written through `show` (which may add escapes of no width).
fn centred<'a>(
    layout: &Layout,
    texts: impl Iterator<Item = Option<&'a str>>,
    show: impl Fn(&str) -> String,
) -> String {
    let mut line = String::new();
    let mut at = 0;
    for (i, text) in texts.enumerate() {
        let Some(text) = text else { continue };
        let len = width(text);
        let start = layout.x(i) - len / 2;
        line.push_str(&" ".repeat(start.saturating_sub(at)));
        line.push_str(&show(text));
        at = start + len;
    }
    line
}

/// `1 message`, `2 messages`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The marker of leg `i` (0-based): `[1]`.
fn marker(i: usize) -> String {
    format!("[{}]", i + 1)
}

/// Text from a packet, with control characters escaped.
fn safe(s: &str) -> String {
    Escaped(s.as_bytes()).to_string()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

// ===== what is in the flow =====

/// The columns and legs of a flow, with its text made safe to print.
struct Flow {
    /// Addresses, escaped, in order of first appearance.
    lanes: Vec<String>,
    /// Each lane's name: its alias, escaped, or its address.
    names: Vec<String>,
    /// Non-empty Call-IDs, escaped, in order of first appearance.
    legs: Vec<String>,
    /// The longest label, escaped, in characters.
    label_width: usize,
}

impl Flow {
    fn new(order: &[&Arrow], aliases: &Aliases) -> Self {
        let mut lanes: Vec<String> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut legs: Vec<String> = Vec::new();
        let mut label_width = 0;
        for arrow in order {
            for addr in [&arrow.src, &arrow.dst] {
                let shown = safe(addr);
                if !lanes.contains(&shown) {
                    names.push(
                        aliases
                            .name_of_text(addr)
                            .map_or_else(|| shown.clone(), safe),
                    );
                    lanes.push(shown);
                }
            }
            let id = safe(&arrow.call_id);
            if !id.is_empty() && !legs.contains(&id) {
                legs.push(id);
            }
            label_width = label_width.max(width(&safe(&arrow.label)));
        }
        Self {
            lanes,
            names,
            legs,
            label_width,
        }
    }

    fn lane_of(&self, addr: &str) -> usize {
        let addr = safe(addr);
        // Every address of every arrow was added in `new`.
        self.lanes.iter().position(|l| *l == addr).unwrap_or(0)
    }

    fn leg_of(&self, arrow: &Arrow) -> Option<usize> {
        let id = safe(&arrow.call_id);
        self.legs.iter().position(|l| *l == id)
    }
}

// ===== the left margin =====

/// The time offsets and leg markers left of the diagram.
struct Margin {
    offset_width: usize,
    delta_width: usize,
    /// Leg markers are shown only with more than one leg.
    marker_width: usize,
    delta: &'static str,
}

impl Margin {
    fn new(order: &[&Arrow], flow: &Flow, glyphs: &Glyphs) -> Self {
        let first = order[0].ts_usec;
        let last = order[order.len() - 1].ts_usec;
        let offset_width = seconds("+", last.saturating_sub(first)).len();
        let delta_width = order
            .windows(2)
            .map(|w| {
                width(&seconds(
                    glyphs.delta,
                    w[1].ts_usec.saturating_sub(w[0].ts_usec),
                ))
            })
            .max()
            .unwrap_or(0);
        let marker_width = if flow.legs.len() > 1 {
            marker(flow.legs.len() - 1).len()
        } else {
            0
        };
        Self {
            offset_width,
            delta_width,
            marker_width,
            delta: glyphs.delta,
        }
    }

    /// How wide the margin is, in characters, including the space that ends it.
    fn width(&self) -> usize {
        self.line(0, None, None).chars().count()
    }

    fn line(&self, offset: i64, delta: Option<i64>, leg: Option<usize>) -> String {
        let offset = seconds("+", offset);
        let delta = delta.map_or_else(String::new, |d| seconds(self.delta, d));
        // `format!` pads by characters, so `Δ` counts as one.
        let mut line = format!(
            "{offset:>ow$}  {delta:>dw$} ",
            ow = self.offset_width,
            dw = self.delta_width
        );
        if self.marker_width > 0 {
            let m = leg.map_or_else(String::new, marker);
            line.push_str(&format!("{m:>mw$} ", mw = self.marker_width));
        }
        line
    }
}

/// Microseconds as seconds with six decimals after `prefix`: `+0.000813`.
fn seconds(prefix: &str, usec: i64) -> String {
    let usec = usec.max(0);
    format!("{prefix}{}.{:06}", usec / 1_000_000, usec % 1_000_000)
}

// ===== the diagram =====

/// Where the lifelines are.
struct Layout {
    lanes: usize,
    /// Distance between neighbouring lifelines.
    gap: usize,
}

impl Layout {
    fn new(flow: &Flow) -> Self {
        let address_width = flow
            .lanes
            .iter()
            .chain(&flow.names)
            .map(|l| width(l))
            .max()
            .unwrap_or(0);
        // A label needs a space and two dashes on each side, an arrow head and the room
        // of a self-loop's corner; addresses need some air between them.
        let gap = (flow.label_width + 8).max(address_width + 4).max(12);
        Self {
            lanes: flow.lanes.len(),
            gap,
        }
    }

    /// The position of lane `i`'s lifeline.
    const fn x(&self, i: usize) -> usize {
        self.gap / 2 + i * self.gap
    }

    /// A row of lifelines (or of spaces), wide enough for a self-loop right of the last.
    fn blank(&self, glyphs: &Glyphs, lifelines: bool) -> Vec<char> {
        let mut cells = vec![' '; self.x(self.lanes.saturating_sub(1)) + self.gap];
        if lifelines {
            for i in 0..self.lanes {
                cells[self.x(i)] = glyphs.line;
            }
        }
        cells
    }

    /// The rows of one arrow: one, or two for a message to itself.
    fn arrow(&self, flow: &Flow, arrow: &Arrow, leg: Option<usize>, g: &Glyphs) -> Vec<Row> {
        let from = self.x(flow.lane_of(&arrow.src));
        let to = self.x(flow.lane_of(&arrow.dst));
        let label: Vec<char> = format!(" {} ", safe(&arrow.label)).chars().collect();
        let mut cells = self.blank(g, true);
        // Lifelines between the two ends are crossed.
        let cross = |cells: &mut [char], a: usize, b: usize| {
            for cell in &mut cells[a..b] {
                *cell = if *cell == g.line { g.cross } else { g.dash };
            }
        };
        // The label is centred in the `len` cells from `start`.
        let put = |cells: &mut [char], start: usize, len: usize| {
            let at = start + len.saturating_sub(label.len()) / 2;
            cells[at..at + label.len()].copy_from_slice(&label);
        };
        if from < to {
            cross(&mut cells, from + 1, to - 1);
            cells[from] = g.tee_right;
            cells[to - 1] = g.right;
            put(&mut cells, from + 1, self.gap - 2);
            vec![Row::leg(cells, from, to - 1, leg)]
        } else if from > to {
            cross(&mut cells, to + 2, from);
            cells[to + 1] = g.left;
            cells[from] = g.tee_left;
            put(&mut cells, from - (self.gap - 2), self.gap - 2);
            vec![Row::leg(cells, to + 1, from, leg)]
        } else {
            // A loop right of the lifeline, ending a cell before the next one.
            let corner = from + self.gap - 2;
            let mut back = cells.clone();
            cross(&mut cells, from + 1, corner);
            cells[from] = g.tee_right;
            cells[corner] = g.loop_top;
            put(&mut cells, from + 1, corner - from - 1);
            cross(&mut back, from + 2, corner);
            back[from + 1] = g.left;
            back[corner] = g.loop_bottom;
            vec![
                Row::leg(cells, from, corner, leg),
                Row::leg(back, from + 1, corner, leg),
            ]
        }
    }
}

/// One line of the diagram, and the cells its leg color covers.
struct Row {
    cells: Vec<char>,
    colored: Option<(usize, usize, usize)>,
}

impl Row {
    const fn plain(cells: Vec<char>) -> Self {
        Self {
            cells,
            colored: None,
        }
    }

    /// Cells `first..=last` are leg `leg`'s arrow.
    fn leg(cells: Vec<char>, first: usize, last: usize, leg: Option<usize>) -> Self {
        Self {
            cells,
            colored: leg.map(|leg| (first, last, leg)),
        }
    }

    /// The row after `left`, without trailing spaces.
    fn line(&self, left: &str, paint: Paint) -> String {
        let mut line = String::from(left);
        match self.colored {
            Some((first, last, leg)) if paint.on => {
                line.extend(&self.cells[..first]);
                let arrow: String = self.cells[first..=last].iter().collect();
                line.push_str(&paint.leg(leg, &arrow));
                line.extend(&self.cells[last + 1..]);
            }
            _ => line.extend(&self.cells),
        }
        line.truncate(line.trim_end().len());
        line
    }
}

// ===== characters and colors =====

/// The characters the diagram is drawn with.
struct Glyphs {
    line: char,
    dash: char,
    cross: char,
    top: char,
    tee_right: char,
    tee_left: char,
    right: char,
    left: char,
    loop_top: char,
    loop_bottom: char,
    delta: &'static str,
}

const UNICODE: Glyphs = Glyphs {
    line: '│',
    dash: '─',
    cross: '┼',
    top: '┬',
    tee_right: '├',
    tee_left: '┤',
    right: '>',
    left: '<',
    loop_top: '┐',
    loop_bottom: '┘',
    delta: "Δ",
};

const ASCII: Glyphs = Glyphs {
    line: '|',
    dash: '-',
    cross: '+',
    top: '+',
    tee_right: '|',
    tee_left: '|',
    right: '>',
    left: '<',
    loop_top: '+',
    loop_bottom: '+',
    delta: "d",
};

/// Leg colors (ANSI foreground: cyan, yellow, magenta, green, blue, red).
const LEG_COLORS: [&str; 6] = [
    "\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m",
];
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// ANSI colors, or nothing.
#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn leg(self, leg: usize, text: &str) -> String {
        self.wrap(LEG_COLORS[leg % LEG_COLORS.len()], text)
    }

    fn bold(self, text: &str) -> String {
        self.wrap(BOLD, text)
    }

    fn wrap(self, escape: &str, text: &str) -> String {
        if self.on {
            format!("{escape}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(ts_usec: i64, src: &str, dst: &str, label: &str, call_id: &str) -> Arrow {
        Arrow {
            ts_usec,
            src: src.into(),
            dst: dst.into(),
            label: label.into(),
            call_id: call_id.into(),
        }
    }

    fn draw(arrows: &[Arrow], style: LadderStyle) -> String {
        let mut out = Vec::new();
        render(arrows, &style, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn plain(arrows: &[Arrow]) -> String {
        draw(arrows, LadderStyle::default())
    }

    /// The lines that draw arrows (they start with the `+` offset).
    fn arrow_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.trim_start().starts_with('+'))
            .collect()
    }

    /// The row naming the columns: the one above their `┬` marks.
    fn header(text: &str) -> &str {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.iter().position(|l| l.contains('┬')).unwrap() - 1]
    }

    /// The diagram part of a line: from the first lifeline on.
    fn drawn(line: &str) -> &str {
        let at = line.find(['│', '├', '|']).unwrap();
        &line[at..]
    }

    /// The character column of the first `c` in `line`.
    fn column_of(line: &str, c: char) -> usize {
        line.chars().position(|x| x == c).unwrap()
    }

    const A: &str = "10.0.0.1:5060";
    const B: &str = "10.0.0.2:5060";
    const C: &str = "10.0.0.3:5060";

    #[test]
    fn an_aliased_column_is_headed_by_its_alias_with_the_address_under_it() {
        let flow = [
            arrow(0, "10.0.0.1:5060", "10.0.0.2:5060", "INVITE", "a"),
            arrow(1, "10.0.0.2:5060", "192.0.2.9:5070", "INVITE", "a"),
        ];
        let aliases =
            Aliases::new([("10.0.0.0/8", "core"), ("10.0.0.2:5060", "proxy")]).expect("aliases");
        let mut out = Vec::new();
        render_named(&flow, &LadderStyle::default(), &aliases, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tops = lines.iter().position(|l| l.contains('┬')).unwrap();
        let (names, addresses) = (lines[tops - 2], lines[tops - 1]);
        // Each name and address centred on its column's lifeline.
        let ticks: Vec<usize> = lines[tops]
            .char_indices()
            .filter(|(_, c)| *c == '┬')
            .map(|(i, _)| lines[tops][..i].chars().count())
            .collect();
        let centre = |line: &str, text: &str| {
            let at = line
                .find(text)
                .unwrap_or_else(|| panic!("{text} in {line:?}"));
            line[..at].chars().count() + text.len() / 2
        };
        assert_eq!(centre(names, "core"), ticks[0], "{text}");
        assert_eq!(centre(names, "proxy"), ticks[1], "{text}");
        assert_eq!(
            centre(names, "192.0.2.9:5070"),
            ticks[2],
            "an address without alias"
        );
        assert_eq!(centre(addresses, "10.0.0.1:5060"), ticks[0], "{text}");
        assert_eq!(centre(addresses, "10.0.0.2:5060"), ticks[1], "{text}");
        assert!(!addresses.contains("192.0.2.9"), "named once: {text}");
        // Without aliases, no line of addresses.
        assert_eq!(lines.len(), plain(&flow).lines().count() + 1);
    }

    #[test]
    fn columns_are_in_order_of_first_appearance() {
        let text = plain(&[
            arrow(0, C, B, "INVITE", ""),
            arrow(1, B, A, "INVITE", ""),
            arrow(2, A, C, "BYE", ""),
        ]);
        let header = header(&text);
        let (c, b, a) = (
            header.find(C).unwrap(),
            header.find(B).unwrap(),
            header.find(A).unwrap(),
        );
        assert!(c < b && b < a, "{header}");
        assert_eq!(header.matches(":5060").count(), 3, "each address once");
    }

    #[test]
    fn columns_follow_time_not_input_order() {
        let text = plain(&[arrow(5, B, C, "ACK", ""), arrow(1, A, B, "INVITE", "")]);
        let header = header(&text);
        assert!(
            header.find(A).unwrap() < header.find(B).unwrap(),
            "{header}"
        );
        assert!(
            header.find(B).unwrap() < header.find(C).unwrap(),
            "{header}"
        );
    }

    #[test]
    fn requests_point_right_and_responses_point_left() {
        let text = plain(&[
            arrow(0, A, B, "INVITE", ""),
            arrow(1, B, A, "180 Ringing", ""),
        ]);
        let lines = arrow_lines(&text);
        let invite = drawn(lines[0]);
        assert!(
            invite.starts_with("├──") && invite.ends_with("──>│"),
            "{text}"
        );
        assert!(invite.contains("─ INVITE ─"), "{text}");
        let ringing = drawn(lines[1]);
        assert!(
            ringing.starts_with("│<──") && ringing.ends_with("──┤"),
            "{text}"
        );
        assert!(ringing.contains("─ 180 Ringing ─"), "{text}");
        assert_eq!(
            width(invite),
            width(ringing),
            "both span one column: {text}"
        );
    }

    #[test]
    fn arrows_cross_the_lifelines_between_their_ends() {
        let text = plain(&[
            arrow(0, A, B, "INVITE", ""),
            arrow(1, B, C, "INVITE", ""),
            arrow(2, C, A, "BYE", ""),
            arrow(3, A, C, "200 OK", ""),
        ]);
        let lines = arrow_lines(&text);
        let bye = lines[2];
        assert_eq!(bye.matches('┼').count(), 1, "{text}");
        assert!(bye.find('<').unwrap() < bye.find('┼').unwrap(), "{bye}");
        assert!(
            bye.find(" BYE ").unwrap() > bye.find('┼').unwrap(),
            "label next to the sender: {bye}"
        );
        let ok = lines[3];
        assert_eq!(ok.matches('┼').count(), 1, "{text}");
        assert!(ok.find(" 200 OK ").unwrap() < ok.find('┼').unwrap(), "{ok}");
        // Lifelines line up under the header's column marks.
        let tops = text.lines().nth(4).unwrap();
        let top_at: Vec<usize> = tops
            .char_indices()
            .filter(|(_, c)| *c == '┬')
            .map(|(i, _)| i)
            .collect();
        let column = |line: &str, i: usize| line.char_indices().nth(i).map(|(_, c)| c);
        let top_cols: Vec<usize> = top_at.iter().map(|&b| tops[..b].chars().count()).collect();
        for line in &lines {
            for &x in &top_cols {
                assert!(
                    matches!(column(line, x), Some('│' | '├' | '┤' | '┼')),
                    "column {x} of {line}"
                );
            }
        }
    }

    #[test]
    fn a_message_to_itself_is_a_loop() {
        let text = plain(&[arrow(0, A, A, "OPTIONS", ""), arrow(1, A, B, "INFO", "")]);
        let lines: Vec<&str> = text.lines().skip(5).collect();
        assert!(lines[0].trim_start().starts_with('+'), "{text}");
        assert!(drawn(lines[0]).starts_with("├──"), "{text}");
        assert!(
            lines[0].contains("─ OPTIONS ─") && lines[0].contains("──┐"),
            "{text}"
        );
        assert!(
            drawn(lines[1]).starts_with("│<──"),
            "no time on the way back: {text}"
        );
        assert!(lines[1].contains("──┘"), "{text}");
        assert_eq!(column_of(lines[0], '┐'), column_of(lines[1], '┘'), "{text}");
        assert_eq!(column_of(lines[0], '├'), column_of(lines[1], '│'), "{text}");
        assert!(
            column_of(lines[0], '┐')
                < lines[2]
                    .chars()
                    .collect::<Vec<_>>()
                    .iter()
                    .rposition(|&c| c == '│')
                    .unwrap(),
            "the loop stays left of the next lifeline: {text}"
        );
        assert!(lines[2].contains(" INFO "), "{text}");
    }

    #[test]
    fn offsets_count_from_the_first_message_and_deltas_from_the_previous() {
        let text = plain(&[
            arrow(1_000_000_000_000, A, B, "INVITE", ""),
            arrow(1_000_000_000_382, B, A, "100 Trying", ""),
            arrow(1_000_000_000_813, B, A, "180 Ringing", ""),
            arrow(1_000_002_500_000, B, A, "200 OK", ""),
        ]);
        let margins: Vec<Vec<&str>> = arrow_lines(&text)
            .iter()
            .map(|l| l.split_whitespace().take(2).collect())
            .collect();
        assert_eq!(margins[0][0], "+0.000000");
        assert_eq!(margins[1], ["+0.000382", "Δ0.000382"]);
        assert_eq!(margins[2], ["+0.000813", "Δ0.000431"]);
        assert_eq!(margins[3], ["+2.500000", "Δ2.499187"]);
        assert!(
            text.contains("first at 1970-01-12T13:46:40.000000Z"),
            "{text}"
        );
    }

    #[test]
    fn arrows_are_sorted_by_time_and_equal_times_keep_input_order() {
        let text = plain(&[
            arrow(20, A, B, "ACK", ""),
            arrow(10, A, B, "INVITE", ""),
            arrow(10, B, A, "100 Trying", ""),
            arrow(10, B, A, "180 Ringing", ""),
        ]);
        let labels: Vec<&str> = arrow_lines(&text)
            .iter()
            .map(|l| {
                ["ACK", "INVITE", "100 Trying", "180 Ringing"]
                    .into_iter()
                    .find(|w| l.contains(w))
                    .unwrap()
            })
            .collect();
        assert_eq!(labels, ["INVITE", "100 Trying", "180 Ringing", "ACK"]);
    }

    #[test]
    fn two_legs_get_distinct_markers_and_a_legend() {
        let text = plain(&[
            arrow(0, A, B, "INVITE", "leg-a@x"),
            arrow(1, B, C, "INVITE", "leg-b@y"),
            arrow(2, C, B, "200 OK", "leg-b@y"),
            arrow(3, B, A, "200 OK", "leg-a@x"),
        ]);
        assert!(
            text.contains("\n[1] Call-ID leg-a@x\n[2] Call-ID leg-b@y\n"),
            "{text}"
        );
        let markers: Vec<&str> = arrow_lines(&text)
            .iter()
            .map(|l| {
                if l.contains("[1]") {
                    "[1]"
                } else if l.contains("[2]") {
                    "[2]"
                } else {
                    ""
                }
            })
            .collect();
        assert_eq!(markers, ["[1]", "[2]", "[2]", "[1]"], "{text}");
    }

    #[test]
    fn one_leg_needs_no_markers() {
        let text = plain(&[
            arrow(0, A, B, "INVITE", "only@x"),
            arrow(1, B, A, "200 OK", "only@x"),
        ]);
        assert!(text.contains("\nCall-ID only@x\n"), "{text}");
        assert!(!text.contains("[1]"), "{text}");
    }

    #[test]
    fn color_paints_each_leg_and_no_color_emits_no_escapes() {
        let flow = [
            arrow(0, A, B, "INVITE", "leg-a@x"),
            arrow(1, B, C, "INVITE", "leg-b@y"),
        ];
        let colored = draw(
            &flow,
            LadderStyle {
                color: true,
                ascii: false,
            },
        );
        let lines = arrow_lines(&colored);
        assert!(
            lines[0].contains(&format!("{}├", LEG_COLORS[0])),
            "{colored:?}"
        );
        assert!(
            lines[1].contains(&format!("{}├", LEG_COLORS[1])),
            "{colored:?}"
        );
        assert!(colored.contains(&format!("{}[2] Call-ID leg-b@y{RESET}", LEG_COLORS[1])));
        assert!(colored.contains(&format!("{BOLD}{A}{RESET}")));
        assert!(!plain(&flow).contains('\x1b'));
        // Apart from the escapes, the picture is the same.
        let stripped = colored
            .replace(RESET, "")
            .replace(BOLD, "")
            .replace(LEG_COLORS[0], "")
            .replace(LEG_COLORS[1], "");
        assert_eq!(stripped, plain(&flow));
    }

    #[test]
    fn color_follows_the_terminal_and_no_color() {
        let no_color = |v| Some(OsStr::new(v));
        assert!(color_from_env(true, None, None));
        assert!(!color_from_env(false, None, None));
        assert!(!color_from_env(true, no_color("1"), None));
        assert!(
            color_from_env(true, no_color(""), None),
            "empty NO_COLOR is unset"
        );
        assert!(!color_from_env(true, None, Some(OsStr::new("dumb"))));
        assert!(color_from_env(
            true,
            None,
            Some(OsStr::new("xterm-256color"))
        ));
    }

    #[test]
    fn empty_input_says_so_in_one_line() {
        assert_eq!(plain(&[]), format!("{EMPTY}\n"));
    }

    #[test]
    fn long_labels_and_many_columns_are_never_cut() {
        let reason = "603 Decline because the callee is in a meeting until the afternoon";
        let mut flow = vec![arrow(0, A, B, reason, "")];
        let addrs: Vec<String> = (0..20).map(|i| format!("[2001:db8::{i:x}]:5060")).collect();
        for (i, w) in addrs.windows(2).enumerate() {
            flow.push(arrow(i as i64 + 1, &w[0], &w[1], "INVITE", ""));
        }
        flow.push(arrow(100, &addrs[19], A, "BYE", ""));
        let text = plain(&flow);
        assert!(text.contains(&format!(" {reason} ")), "{text}");
        for a in &addrs {
            assert!(header(&text).contains(a.as_str()));
        }
        let bye = arrow_lines(&text).pop().unwrap();
        assert_eq!(
            bye.matches('┼').count(),
            20,
            "crosses every column between: {bye}"
        );
    }

    #[test]
    fn control_characters_from_packets_are_escaped() {
        let text = plain(&[arrow(0, A, B, "INVITE\x1b[2J", "evil\x07@x")]);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(
            text.contains(r"INVITE\x1b[2J") && text.contains(r"evil\x07@x"),
            "{text}"
        );
    }

    #[test]
    fn ascii_style_uses_ascii_only() {
        let text = draw(
            &[
                arrow(0, A, B, "INVITE", ""),
                arrow(7, B, A, "200 OK", ""),
                arrow(9, B, B, "X", ""),
            ],
            LadderStyle {
                color: false,
                ascii: true,
            },
        );
        assert!(text.is_ascii(), "{text}");
        assert!(text.contains("|--- INVITE ---->|"), "{text}");
        assert!(text.contains("|<--- 200 OK ----|"), "{text}");
        assert!(
            text.contains("|----- X ------+") && text.contains("|<-------------+"),
            "{text}"
        );
        assert!(text.contains("d0.000007"), "{text}");
    }

    #[test]
    fn arrow_of_a_non_sip_message_names_its_type_and_keeps_the_correlation_id() {
        let msg = HepMessage::builder()
            .src("127.0.0.1:5060".parse().unwrap())
            .dst("127.0.0.1:9060".parse().unwrap())
            .proto_type(ProtoType::Log)
            .correlation_id("1-2@h")
            .payload("kamailio hlog: INVITE from 127.0.0.1:5061")
            .build();
        let a = arrow_of(&msg);
        assert_eq!(
            (a.label.as_str(), a.call_id.as_str(), a.ts_usec),
            ("log", "1-2@h", 0)
        );
        let unknown = HepMessage::builder()
            .proto_type(ProtoType::Other(250))
            .build();
        assert_eq!(arrow_of(&unknown).label, "250");
        assert_eq!(arrow_of(&unknown).src, "-");
    }

    #[test]
    fn arrow_of_a_response_without_reason_is_its_code() {
        let msg = HepMessage::builder().payload("SIP/2.0 183\r\n\r\n").build();
        assert_eq!(arrow_of(&msg).label, "183");
        assert_eq!(arrow_of(&msg).call_id, "");
    }
}
