//! Training-curve plots as standalone SVG, written with `std` only so that a run can leave a
//! viewable report next to its metrics without pulling a plotting stack into the build.

use std::fmt::Write as _;

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in drawing order; non-finite coordinates are skipped when rendering.
    pub points: Vec<(f64, f64)>,
}

/// A panel: a title, an x-axis label, a y-axis label and one or more series drawn as polylines
/// (with small circle markers when a series has < 60 points).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Panel {
    /// Heading drawn above the plot area.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// Curves sharing this panel's axes; each gets the next palette colour.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 80.0;
const MARGIN_R: f64 = 160.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 52.0;
const PLOT_W: f64 = WIDTH - MARGIN_L - MARGIN_R;
const PLOT_H: f64 = PANEL_H - MARGIN_T - MARGIN_B;
const LEGEND_ROW: f64 = 18.0;
const LEGEND_MAX_CHARS: usize = 18;
/// Sparse series (e.g. a handful of dev evaluations) are hard to read as bare line segments.
const MARKER_LIMIT: usize = 60;

/// Matplotlib's "tab10": familiar to readers and distinguishable for common colour blindness.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf",
];
/// Once the palette wraps, a dash pattern keeps series 10+ distinguishable from series 0–9.
const DASHES: [&str; 4] = ["", "6 3", "2 2", "8 3 2 3"];

/// Renders panels stacked vertically (each 760x300 px) into one SVG document string.
///
/// The output depends only on the input (fixed float precision, no maps), so reports can be
/// diffed and cached.
pub fn render_svg(panels: &[Panel]) -> String {
    let height = PANEL_H * panels.len().max(1) as f64;
    let mut out = String::new();
    w(
        &mut out,
        format_args!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {WIDTH:.0} {height:.0}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
        ),
    );
    w(
        &mut out,
        format_args!(
            "<rect x=\"0\" y=\"0\" width=\"{WIDTH:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>\n"
        ),
    );
    if panels.is_empty() {
        note(&mut out, WIDTH / 2.0, PANEL_H / 2.0, "no data");
    }
    for (i, panel) in panels.iter().enumerate() {
        render_panel(&mut out, panel, i as f64 * PANEL_H);
    }
    out.push_str("</svg>\n");
    out
}

/// Exponential moving average (smoothing factor alpha in (0,1]) of a series' y values, for a
/// smoothed loss curve.
///
/// Smaller `alpha` smooths more; `alpha = 1` returns the input. Out-of-range `alpha` is clamped
/// into (0, 1] (NaN counts as 1). Points with a non-finite coordinate are dropped so that one
/// diverged step does not poison every later value. The average starts at the first y rather
/// than at 0, so the curve is not biased towards 0 at the start.
pub fn ema(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let alpha = if alpha.is_nan() {
        1.0
    } else {
        alpha.clamp(1e-6, 1.0)
    };
    let mut out = Vec::with_capacity(points.len());
    let mut state: Option<f64> = None;
    for &(x, y) in points {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        // The incremental form keeps a constant input exactly constant, unlike
        // `alpha·y + (1 − alpha)·s`, which can drift by an ulp.
        let s = match state {
            None => y,
            Some(s) => s + alpha * (y - s),
        };
        state = Some(s);
        out.push((x, s));
    }
    out
}

/// How a [`Scatter`] maps x values onto its horizontal axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XScale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic. Points with x ≤ 0 have no place on it: they are left out and
    /// counted in a note on the plot.
    Log,
    /// Logarithmic when the positive x values span more than a factor of 20, else linear: a
    /// budget sweep from 0.01% to 5% of the base is unreadable on a linear axis.
    #[default]
    Auto,
}

/// A scatter plot: unconnected points, each series with its own colour and marker shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scatter {
    /// Heading drawn above the plot area.
    pub title: String,
    /// Label under the x axis (" (log scale)" is appended when the axis is logarithmic).
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// Linear, logarithmic, or chosen from the data.
    pub x_scale: XScale,
    /// Point sets; each gets the next colour and marker shape and a legend entry.
    pub series: Vec<Series>,
}

/// The x span (max / min of the positive values) above which [`XScale::Auto`] goes logarithmic.
const AUTO_LOG_SPAN: f64 = 20.0;

/// Renders a scatter plot as a standalone 760x300 SVG document; deterministic like
/// [`render_svg`].
pub fn render_scatter_svg(plot: &Scatter) -> String {
    let mut out = String::new();
    w(
        &mut out,
        format_args!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH:.0}\" height=\"{PANEL_H:.0}\" \
             viewBox=\"0 0 {WIDTH:.0} {PANEL_H:.0}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n\
             <rect x=\"0\" y=\"0\" width=\"{WIDTH:.0}\" height=\"{PANEL_H:.0}\" fill=\"#ffffff\"/>\n"
        ),
    );
    let points = || {
        plot.series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| finite(p))
    };
    let positive: Vec<f64> = points().map(|p| p.0).filter(|&x| x > 0.0).collect();
    let log = match plot.x_scale {
        XScale::Linear => false,
        XScale::Log => true,
        XScale::Auto => {
            let (lo, hi) = min_max(positive.iter().copied()).unwrap_or((1.0, 1.0));
            hi / lo > AUTO_LOG_SPAN
        }
    };
    let shown = |p: &(f64, f64)| finite(p) && (!log || p.0 > 0.0);
    let hidden = points().filter(|p| !shown(p)).count();
    // Markers are drawn whole: a 5% margin keeps the extreme ones off the frame.
    let pad = |(lo, hi): (f64, f64)| {
        let m = (hi - lo) * 0.05;
        if m.is_finite() && m > 0.0 {
            (lo - m, hi + m)
        } else {
            (lo, hi)
        }
    };
    let (xl, xh) = if log {
        min_max(positive.iter().copied()).unwrap_or((1.0, 10.0))
    } else {
        pad(min_max(points().map(|p| p.0)).unwrap_or((0.0, 1.0)))
    };
    let (yl, yh) = pad(min_max(points().filter(|p| shown(p)).map(|p| p.1)).unwrap_or((0.0, 1.0)));
    let (xa, x_labels) = if log {
        log_axis(xl, xh)
    } else {
        let a = nice_axis(xl, xh);
        let labels = a.ticks.iter().map(|&t| a.label(t)).collect();
        (a, labels)
    };
    let ya = nice_axis(yl, yh);
    let px = |x: f64| MARGIN_L + xa.frac(if log { x.log10() } else { x }) * PLOT_W;
    let py = |y: f64| MARGIN_T + (1.0 - ya.frac(y)) * PLOT_H;
    let x_ticks: Vec<(f64, String)> = xa
        .ticks
        .iter()
        .zip(x_labels)
        .map(|(&t, l)| (MARGIN_L + xa.frac(t) * PLOT_W, l))
        .collect();
    let y_ticks: Vec<(f64, String)> = ya.ticks.iter().map(|&t| (py(t), ya.label(t))).collect();
    let x_label = if log {
        format!("{} (log scale)", plot.x_label)
    } else {
        plot.x_label.clone()
    };
    draw_frame(
        &mut out,
        [&plot.title, &x_label, &plot.y_label],
        &x_ticks,
        &y_ticks,
    );

    for (i, series) in plot.series.iter().enumerate() {
        for p in series.points.iter().filter(|p| shown(p)) {
            shape_marker(&mut out, i, px(p.0), py(p.1), "point");
        }
    }
    let (left, right, top) = (MARGIN_L, MARGIN_L + PLOT_W, MARGIN_T);
    if points().all(|p| !shown(p)) {
        note(&mut out, left + PLOT_W / 2.0, top + PLOT_H / 2.0, "no data");
    }
    let lx = right + 14.0;
    if hidden > 0 {
        // Under the legend, in the right margin, where it cannot cover a point.
        w(
            &mut out,
            format_args!(
                "<text x=\"{lx:.2}\" y=\"{:.2}\" font-size=\"10\" fill=\"#888888\">{}\
                 <tspan x=\"{lx:.2}\" dy=\"1.2em\">(log axis) not shown</tspan></text>\n",
                top + PLOT_H - 14.0,
                escape(&format!("{hidden} point(s) at x ≤ 0"))
            ),
        );
    }
    let max_rows = (PLOT_H / LEGEND_ROW).floor() as usize;
    let listed = if plot.series.len() > max_rows {
        max_rows - 1
    } else {
        plot.series.len()
    };
    for (i, series) in plot.series.iter().take(listed).enumerate() {
        let y = top + 10.0 + i as f64 * LEGEND_ROW;
        shape_marker(&mut out, i, lx + 8.0, y, "key");
        w(
            &mut out,
            format_args!(
                "<text x=\"{:.2}\" y=\"{y:.2}\" dy=\"0.35em\" font-size=\"11\" fill=\"#222222\">{}</text>\n",
                lx + 20.0,
                escape(&truncate(&series.name, LEGEND_MAX_CHARS))
            ),
        );
    }
    if listed < plot.series.len() {
        w(
            &mut out,
            format_args!(
                "<text x=\"{lx:.2}\" y=\"{:.2}\" dy=\"0.35em\" font-size=\"11\" fill=\"#666666\">+{} more</text>\n",
                top + 10.0 + listed as f64 * LEGEND_ROW,
                plot.series.len() - listed
            ),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Writing into a `String` cannot fail, so the `fmt::Result` carries no information.
fn w(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

/// Escapes text for element content and attribute values alike, and drops characters that XML
/// 1.0 forbids outright (a stray control byte in a run name would otherwise make the whole file
/// unreadable).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The legend column is narrow; long names would run off the canvas.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn note(out: &mut String, x: f64, y: f64, text: &str) {
    w(
        out,
        format_args!(
            "<text x=\"{x:.2}\" y=\"{y:.2}\" font-size=\"14\" fill=\"#888888\" text-anchor=\"middle\" \
             font-style=\"italic\">{}</text>\n",
            escape(text)
        ),
    );
}

/// An axis extent and its tick positions.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
    /// Whether tick labels use scientific notation; decided per axis so labels stay uniform.
    sci: bool,
}

impl Axis {
    /// Maps `v` to [0, 1]. Halving first keeps `hi - lo` finite for ranges near ±f64::MAX.
    fn frac(&self, v: f64) -> f64 {
        let den = self.hi * 0.5 - self.lo * 0.5;
        if den > 0.0 {
            (v * 0.5 - self.lo * 0.5) / den
        } else {
            0.5
        }
    }

    fn label(&self, v: f64) -> String {
        format_tick(v, self.step, self.sci)
    }
}

/// Picks an axis covering `[lo, hi]` whose ticks are multiples of a 1/2/5 × 10^k step.
///
/// The axis is widened to whole steps so that the frame starts and ends on a labelled tick.
/// Among the steps giving 4–8 ticks it prefers 6 ticks, then the tightest fit. Such a step
/// always exists: consecutive 1/2/5 steps differ by at most 2.5×, so some step puts
/// `range / step` in (2, 5], which yields 3–6 intervals after widening.
fn nice_axis(lo: f64, hi: f64) -> Axis {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() && lo <= hi {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if lo == hi {
        // A constant series still needs a visible range; 10% keeps the value's own scale.
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo = (lo - pad).max(f64::MIN);
        hi = (hi + pad).min(f64::MAX);
        if lo == hi {
            lo -= 1.0;
            hi += 1.0;
        }
    }
    let range = hi - lo;
    if range.is_finite() && range > 0.0 {
        if let Some(axis) = nice_steps(lo, hi, range) {
            return axis;
        }
    }
    linear_axis(lo, hi)
}

fn nice_steps(lo: f64, hi: f64, range: f64) -> Option<Axis> {
    // Guards against float noise such as 3e-5 / 1e-5 = 3.0000000000000004 adding a tick.
    const EPS: f64 = 1e-9;
    let e = range.log10().floor() as i32;
    let mut best: Option<(f64, f64, f64, f64, f64)> = None; // (badness, -fit, step, first, n)
    for k in (e - 2)..=(e + 1) {
        for m in [1.0, 2.0, 5.0] {
            let step = m * 10f64.powi(k);
            if !(step.is_finite() && step > 0.0) {
                continue;
            }
            let first = (lo / step + EPS).floor();
            let last = (hi / step - EPS).ceil();
            let n = last - first;
            if !(3.0..=7.0).contains(&n) || !(first * step).is_finite() || !(last * step).is_finite() {
                continue;
            }
            let badness = (n - 5.0).abs();
            let fit = range / (n * step);
            let better = match best {
                None => true,
                Some((b, f, ..)) => badness < b || (badness == b && -fit < f),
            };
            if better {
                best = Some((badness, -fit, step, first, n));
            }
        }
    }
    let (_, _, step, first, n) = best?;
    let ticks: Vec<f64> = (0..=n as usize)
        .map(|j| {
            let v = (first + j as f64) * step;
            // (first + j)·step can land a hair off zero; "-0" or "1e-17" labels look broken.
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect();
    // EPS and rounding can leave the last tick an ulp inside the data (3·1e-5 < 3e-5);
    // clamping keeps every point inside the frame.
    let (alo, ahi) = ((first * step).min(lo), ((first + n) * step).max(hi));
    Some(Axis {
        lo: alo,
        hi: ahi,
        step,
        sci: use_sci(alo, ahi),
        ticks,
    })
}

/// Fallback for ranges too wide to difference in f64: five evenly spaced, unrounded ticks.
fn linear_axis(lo: f64, hi: f64) -> Axis {
    let ticks: Vec<f64> = (0..=4)
        .map(|j| {
            let t = j as f64 / 4.0;
            lo * (1.0 - t) + hi * t
        })
        .collect();
    let step = (hi * 0.25 - lo * 0.25).abs().max(f64::MIN_POSITIVE);
    Axis {
        lo,
        hi,
        step,
        sci: true,
        ticks,
    }
}

fn use_sci(lo: f64, hi: f64) -> bool {
    let m = lo.abs().max(hi.abs());
    m > 0.0 && !(1e-3..1e15).contains(&m)
}

/// Formats a tick compactly with just enough digits to tell neighbouring ticks apart.
fn format_tick(v: f64, step: f64, sci: bool) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    let step_exp = step.abs().log10().floor() as i32;
    let a = v.abs();
    let s = if sci {
        let v_exp = a.log10().floor() as i32;
        let prec = (v_exp - step_exp).clamp(0, 15) as usize;
        let s = format!("{v:.prec$e}");
        match s.split_once('e') {
            Some((mant, exp)) => format!("{}e{exp}", trim_zeros(mant)),
            None => s,
        }
    } else if a >= 1e3 {
        let (scale_exp, suffix) = if a >= 1e12 {
            (12, "T")
        } else if a >= 1e9 {
            (9, "G")
        } else if a >= 1e6 {
            (6, "M")
        } else {
            (3, "k")
        };
        let prec = (scale_exp - step_exp).clamp(0, 12) as usize;
        let scaled = v / 10f64.powi(scale_exp);
        format!("{}{suffix}", trim_zeros(&format!("{scaled:.prec$}")))
    } else {
        let prec = (-step_exp).clamp(0, 15) as usize;
        trim_zeros(&format!("{v:.prec$}"))
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

fn render_panel(out: &mut String, panel: &Panel, y0: f64) {
    let mut x_range: Option<(f64, f64)> = None;
    let mut y_range: Option<(f64, f64)> = None;
    for &(x, y) in panel
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| finite(p))
    {
        x_range = Some(x_range.map_or((x, x), |(a, b)| (a.min(x), b.max(x))));
        y_range = Some(y_range.map_or((y, y), |(a, b)| (a.min(y), b.max(y))));
    }
    let has_data = x_range.is_some();
    let (xl, xh) = x_range.unwrap_or((0.0, 1.0));
    let (yl, yh) = y_range.unwrap_or((0.0, 1.0));
    let xa = nice_axis(xl, xh);
    let ya = nice_axis(yl, yh);
    let px = |x: f64| MARGIN_L + xa.frac(x) * PLOT_W;
    let py = |y: f64| MARGIN_T + (1.0 - ya.frac(y)) * PLOT_H;
    let (left, right, top) = (MARGIN_L, MARGIN_L + PLOT_W, MARGIN_T);

    w(out, format_args!("<g transform=\"translate(0,{y0:.0})\">\n"));
    let x_ticks: Vec<(f64, String)> = xa.ticks.iter().map(|&t| (px(t), xa.label(t))).collect();
    let y_ticks: Vec<(f64, String)> = ya.ticks.iter().map(|&t| (py(t), ya.label(t))).collect();
    draw_frame(
        out,
        [&panel.title, &panel.x_label, &panel.y_label],
        &x_ticks,
        &y_ticks,
    );

    for (i, series) in panel.series.iter().enumerate() {
        let (colour, dash) = style(i);
        let pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(finite)
            .map(|(x, y)| (px(x), py(y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        // Thousands of steps collapse onto few pixels; dropping repeats keeps files small
        // without changing the picture.
        let mut coords = String::new();
        let mut prev = String::new();
        for &(x, y) in &pts {
            let c = format!("{x:.2},{y:.2}");
            if c != prev {
                if !coords.is_empty() {
                    coords.push(' ');
                }
                coords.push_str(&c);
                prev = c;
            }
        }
        w(
            out,
            format_args!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" stroke-linejoin=\"round\" \
                 stroke-linecap=\"round\"{dash} points=\"{coords}\"/>\n"
            ),
        );
        if pts.len() < MARKER_LIMIT {
            for &(x, y) in &pts {
                marker(out, x, y, colour);
            }
        }
    }

    if !has_data {
        note(out, left + PLOT_W / 2.0, top + PLOT_H / 2.0, "no data");
    }

    let lx = right + 14.0;
    let max_rows = (PLOT_H / LEGEND_ROW).floor() as usize;
    let shown = if panel.series.len() > max_rows {
        max_rows - 1
    } else {
        panel.series.len()
    };
    for (i, series) in panel.series.iter().take(shown).enumerate() {
        let (colour, dash) = style(i);
        let y = top + 10.0 + i as f64 * LEGEND_ROW;
        w(
            out,
            format_args!(
                "<line x1=\"{lx:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n",
                lx + 20.0
            ),
        );
        if series.points.iter().filter(|p| finite(p)).count() < MARKER_LIMIT {
            marker(out, lx + 10.0, y, colour);
        }
        w(
            out,
            format_args!(
                "<text x=\"{:.2}\" y=\"{y:.2}\" dy=\"0.35em\" font-size=\"11\" fill=\"#222222\">{}</text>\n",
                lx + 26.0,
                escape(&truncate(&series.name, LEGEND_MAX_CHARS))
            ),
        );
    }
    if shown < panel.series.len() {
        w(
            out,
            format_args!(
                "<text x=\"{lx:.2}\" y=\"{:.2}\" dy=\"0.35em\" font-size=\"11\" fill=\"#666666\">+{} more</text>\n",
                top + 10.0 + shown as f64 * LEGEND_ROW,
                panel.series.len() - shown
            ),
        );
    }
    out.push_str("</g>\n");
}

/// Title, grid, frame, labelled ticks (pixel position, label) and axis labels of one plot area.
fn draw_frame(
    out: &mut String,
    [title, x_label, y_label]: [&str; 3],
    x_ticks: &[(f64, String)],
    y_ticks: &[(f64, String)],
) {
    let (left, right, top, bottom) = (MARGIN_L, MARGIN_L + PLOT_W, MARGIN_T, MARGIN_T + PLOT_H);
    w(
        out,
        format_args!(
            "<text x=\"{left:.2}\" y=\"26\" font-size=\"15\" font-weight=\"bold\" fill=\"#222222\">{}</text>\n",
            escape(title)
        ),
    );

    // Grid first so that the frame and curves paint over it.
    for (x, _) in x_ticks {
        w(
            out,
            format_args!(
                "<line x1=\"{x:.2}\" y1=\"{top:.2}\" x2=\"{x:.2}\" y2=\"{bottom:.2}\" stroke=\"#e5e5e5\" stroke-width=\"1\"/>\n"
            ),
        );
    }
    for (y, _) in y_ticks {
        w(
            out,
            format_args!(
                "<line x1=\"{left:.2}\" y1=\"{y:.2}\" x2=\"{right:.2}\" y2=\"{y:.2}\" stroke=\"#e5e5e5\" stroke-width=\"1\"/>\n"
            ),
        );
    }
    w(
        out,
        format_args!(
            "<rect x=\"{left:.2}\" y=\"{top:.2}\" width=\"{PLOT_W:.2}\" height=\"{PLOT_H:.2}\" fill=\"none\" \
             stroke=\"#555555\" stroke-width=\"1\"/>\n"
        ),
    );
    for (x, label) in x_ticks {
        w(
            out,
            format_args!(
                "<line x1=\"{x:.2}\" y1=\"{bottom:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#555555\" stroke-width=\"1\"/>\n\
                 <text x=\"{x:.2}\" y=\"{:.2}\" font-size=\"11\" fill=\"#444444\" text-anchor=\"middle\">{}</text>\n",
                bottom + 4.0,
                bottom + 17.0,
                escape(label)
            ),
        );
    }
    for (y, label) in y_ticks {
        w(
            out,
            format_args!(
                "<line x1=\"{:.2}\" y1=\"{y:.2}\" x2=\"{left:.2}\" y2=\"{y:.2}\" stroke=\"#555555\" stroke-width=\"1\"/>\n\
                 <text x=\"{:.2}\" y=\"{y:.2}\" dy=\"0.35em\" font-size=\"11\" fill=\"#444444\" text-anchor=\"end\">{}</text>\n",
                left - 4.0,
                left - 7.0,
                escape(label)
            ),
        );
    }
    w(
        out,
        format_args!(
            "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" fill=\"#222222\" text-anchor=\"middle\">{}</text>\n",
            left + PLOT_W / 2.0,
            PANEL_H - 12.0,
            escape(x_label)
        ),
    );
    w(
        out,
        format_args!(
            "<text transform=\"translate(18,{:.2}) rotate(-90)\" font-size=\"12\" fill=\"#222222\" \
             text-anchor=\"middle\">{}</text>\n",
            top + PLOT_H / 2.0,
            escape(y_label)
        ),
    );
}

fn style(i: usize) -> (&'static str, String) {
    let colour = PALETTE[i % PALETTE.len()];
    let dash = DASHES[(i / PALETTE.len()) % DASHES.len()];
    let dash = if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    };
    (colour, dash)
}

/// `(min, max)` of the values, or `None` when there are none.
fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| {
        Some(acc.map_or((v, v), |(a, b): (f64, f64)| (a.min(v), b.max(v))))
    })
}

/// A logarithmic axis over `[lo, hi]` (both > 0), in log10 units, widened to whole decades,
/// with the tick labels in data units. Ticks are at 1, 2 and 5 × 10^k over a span of up to two
/// decades, at every decade up to six, and at every n-th decade beyond.
fn log_axis(lo: f64, hi: f64) -> (Axis, Vec<String>) {
    let (lo, hi) = if lo > 0.0 && hi >= lo && hi.is_finite() {
        (lo, hi)
    } else {
        (1.0, 10.0)
    };
    let e0 = lo.log10().floor() as i32;
    let e1 = (hi.log10().ceil() as i32).max(e0 + 1);
    let decades = e1 - e0;
    let (mantissas, every): (&[f64], i32) = if decades <= 2 {
        (&[1.0, 2.0, 5.0], 1)
    } else if decades <= 6 {
        (&[1.0], 1)
    } else {
        (&[1.0], (decades + 5) / 6)
    };
    let mut ticks = Vec::new();
    let mut labels = Vec::new();
    for e in (e0..=e1).filter(|e| (e - e0) % every == 0) {
        for &m in mantissas {
            let v = m * 10f64.powi(e);
            if v <= 10f64.powi(e1) * (1.0 + 1e-9) {
                ticks.push(v.log10());
                labels.push(log_label(m, e));
            }
        }
    }
    let axis = Axis {
        lo: e0 as f64,
        hi: e1 as f64,
        step: 1.0,
        ticks,
        sci: false,
    };
    (axis, labels)
}

/// `m × 10^e` as plain decimals where that is short (0.001 … 10000), else as `me±k`.
fn log_label(m: f64, e: i32) -> String {
    if (-3..=4).contains(&e) {
        let v = m * 10f64.powi(e);
        trim_zeros(&format!("{v:.prec$}", prec = (-e).max(0) as usize))
    } else {
        format!("{m}e{e}")
    }
}

/// Marker shapes for scatter series, cycled together with the palette: series `i` and `j < 30`
/// apart never look the same.
const SHAPES: usize = 6;

/// A scatter marker of series `i` centred on (x, y); `class` tells data points from legend keys.
fn shape_marker(out: &mut String, i: usize, x: f64, y: f64, class: &str) {
    let colour = PALETTE[i % PALETTE.len()];
    let paint = format!("class=\"{class}\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"0.8\"");
    let poly = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|(dx, dy)| format!("{:.2},{:.2}", x + dx, y + dy))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match i % SHAPES {
        0 => w(
            out,
            format_args!("<circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"4.5\" {paint}/>\n"),
        ),
        1 => w(
            out,
            format_args!(
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"8\" height=\"8\" {paint}/>\n",
                x - 4.0,
                y - 4.0
            ),
        ),
        2 => w(
            out,
            format_args!(
                "<polygon points=\"{}\" {paint}/>\n",
                poly(&[(0.0, -5.5), (5.0, 3.5), (-5.0, 3.5)])
            ),
        ),
        3 => w(
            out,
            format_args!(
                "<polygon points=\"{}\" {paint}/>\n",
                poly(&[(0.0, -5.5), (5.5, 0.0), (0.0, 5.5), (-5.5, 0.0)])
            ),
        ),
        4 => w(
            out,
            format_args!(
                "<polygon points=\"{}\" {paint}/>\n",
                poly(&[(0.0, 5.5), (5.0, -3.5), (-5.0, -3.5)])
            ),
        ),
        _ => w(
            out,
            format_args!(
                "<polygon points=\"{}\" {paint}/>\n",
                poly(&[
                    (-1.8, -5.0),
                    (1.8, -5.0),
                    (1.8, -1.8),
                    (5.0, -1.8),
                    (5.0, 1.8),
                    (1.8, 1.8),
                    (1.8, 5.0),
                    (-1.8, 5.0),
                    (-1.8, 1.8),
                    (-5.0, 1.8),
                    (-5.0, -1.8),
                    (-1.8, -1.8),
                ])
            ),
        ),
    }
}

fn marker(out: &mut String, x: f64, y: f64, colour: &str) {
    w(
        out,
        format_args!(
            "<circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"2.8\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>\n"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tag-balance check: every opened element is closed in order, quotes pair up and
    /// every `&` starts a predefined entity.
    fn assert_well_formed(svg: &str) {
        fn check_entities(s: &str) {
            for (i, _) in s.match_indices('&') {
                let rest = &s[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| rest.starts_with(e)),
                    "bare & in {s:?}"
                );
            }
        }
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            assert!(!text.contains('>'), "stray > in text {text:?}");
            check_entities(text);
            let end = start + rest[start..].find('>').expect("unterminated tag");
            let tag = &rest[start + 1..end];
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            check_entities(tag);
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched close {tag:?}"
                );
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("tag name").to_string());
            }
            rest = &rest[end + 1..];
        }
        assert!(rest.trim().is_empty(), "trailing content {rest:?}");
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    fn assert_basic(svg: &str) {
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("</svg>").count(), 1);
        for (i, _) in svg.match_indices("<polyline") {
            let tag = &svg[i..i + svg[i..].find('>').unwrap()];
            assert!(tag.contains(" points=\""), "polyline without points: {tag}");
        }
        assert!(
            !svg.contains("NaN") && !svg.contains("inf"),
            "non-finite number leaked"
        );
        assert_well_formed(svg);
    }

    fn polyline_points(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.match_indices(" points=\"")
            .map(|(i, m)| {
                let start = i + m.len();
                let body = &svg[start..start + svg[start..].find('"').unwrap()];
                body.split(' ')
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    fn panel(title: &str, series: Vec<Series>) -> Panel {
        Panel {
            title: title.into(),
            x_label: "step".into(),
            y_label: "value".into(),
            series,
        }
    }

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }

    fn is_nice_step(step: f64) -> bool {
        let k = step.log10().floor();
        let m = step / 10f64.powf(k);
        [1.0, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-9)
    }

    fn check_axis(lo: f64, hi: f64) -> Axis {
        let a = nice_axis(lo, hi);
        assert!(is_nice_step(a.step), "step {} for [{lo}, {hi}]", a.step);
        assert!(
            (4..=8).contains(&a.ticks.len()),
            "{} ticks for [{lo}, {hi}]",
            a.ticks.len()
        );
        assert!(
            a.lo <= lo && a.hi >= hi,
            "axis [{}, {}] misses [{lo}, {hi}]",
            a.lo,
            a.hi
        );
        for &t in &a.ticks {
            let q = t / a.step;
            assert!(
                (q - q.round()).abs() < 1e-6,
                "tick {t} not a multiple of {}",
                a.step
            );
        }
        a
    }

    fn labels(a: &Axis) -> Vec<String> {
        a.ticks.iter().map(|&t| a.label(t)).collect()
    }

    #[test]
    fn renders_well_formed_svg() {
        let loss: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 2.0 / (1.0 + i as f64 * 0.05)))
            .collect();
        let smooth = ema(&loss, 0.1);
        let svg = render_svg(&[
            panel("Loss", vec![series("train", loss), series("train (EMA)", smooth)]),
            panel(
                "Dev",
                vec![series(
                    "accuracy",
                    vec![(100.0, 0.5), (200.0, 0.7), (300.0, 0.75)],
                )],
            ),
        ]);
        assert_basic(&svg);
        assert!(svg.contains("height=\"600\""));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("<circle"), "sparse series gets markers");
    }

    #[test]
    fn nan_and_inf_points_are_skipped() {
        let pts = vec![
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 3.0),
            (f64::INFINITY, 2.0),
            (3.0, f64::NEG_INFINITY),
            (f64::NAN, f64::NAN),
        ];
        let svg = render_svg(&[panel("p", vec![series("s", pts)])]);
        assert_basic(&svg);
        let lines = polyline_points(&svg);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), 2);
        // Two data markers plus the legend's.
        assert_eq!(svg.matches("<circle").count(), 3);
        // The skipped points must not stretch the axes either.
        let (x0, x1) = (lines[0][0].0, lines[0][1].0);
        assert!(x1 - x0 > PLOT_W * 0.5);
    }

    #[test]
    fn text_is_escaped() {
        let p = Panel {
            title: "a<b & c>d".into(),
            x_label: "\"x\" <step>".into(),
            y_label: "y's & \u{1}".into(),
            series: vec![series("<&>", vec![(0.0, 1.0), (1.0, 2.0)])],
        };
        let svg = render_svg(&[p]);
        assert_basic(&svg);
        assert!(svg.contains("a&lt;b &amp; c&gt;d"));
        assert!(svg.contains("&quot;x&quot; &lt;step&gt;"));
        assert!(svg.contains("y&apos;s &amp; <"), "control character dropped");
        assert!(svg.contains(">&lt;&amp;&gt;<"));
        assert!(!svg.contains("a<b") && !svg.contains("<&>"));
    }

    #[test]
    fn nice_ticks() {
        let a = check_axis(0.0, 0.93);
        assert_eq!(a.step, 0.2);
        assert_eq!(labels(&a), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);

        let a = check_axis(0.5, 0.5);
        assert!(a.lo < 0.5 && a.hi > 0.5);
        assert!(labels(&a).iter().any(|l| l == "0.5"));

        let a = check_axis(1e-6, 3e-5);
        assert_eq!(
            labels(&a),
            ["0", "5e-6", "1e-5", "1.5e-5", "2e-5", "2.5e-5", "3e-5"]
        );

        let a = check_axis(0.0, 12345.0);
        assert_eq!(a.step, 2000.0);
        assert_eq!(labels(&a).last().unwrap(), "14k");

        for (lo, hi) in [
            (0.0, 1.0),
            (0.0, 0.0),
            (-3.0, 7.0),
            (0.37, 0.41),
            (0.0512, 2.31),
            (1e9, 1e9 + 1.0),
            (0.0, 1e12),
            (-1e300, 1e300),
            (1.0, 1.0 + 1e-12),
            (123.0, 98765.0),
        ] {
            check_axis(lo, hi);
        }
        // Ranges too wide to subtract still give finite, ordered ticks.
        let a = nice_axis(-f64::MAX, f64::MAX);
        assert!(a.ticks.iter().all(|t| t.is_finite()));
        assert!(a.ticks.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn tick_labels_are_compact() {
        assert_eq!(format_tick(0.25, 0.05, false), "0.25");
        assert_eq!(format_tick(1200.0, 200.0, false), "1.2k");
        assert_eq!(format_tick(1000.0, 500.0, false), "1k");
        assert_eq!(format_tick(500.0, 500.0, false), "500");
        assert_eq!(format_tick(2_500_000.0, 500_000.0, false), "2.5M");
        assert_eq!(format_tick(3e-5, 1e-5, true), "3e-5");
        assert_eq!(format_tick(2.5e-5, 5e-6, true), "2.5e-5");
        assert_eq!(format_tick(-1.5, 0.5, false), "-1.5");
        assert_eq!(format_tick(0.0, 0.1, false), "0");
    }

    #[test]
    fn ema_of_constant_is_constant() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 0.7)).collect();
        for alpha in [0.01, 0.1, 0.5, 1.0] {
            let e = ema(&pts, alpha);
            assert_eq!(e.len(), pts.len());
            assert!(e.iter().all(|&(_, y)| y == 0.7));
        }
    }

    #[test]
    fn ema_smooths_and_skips_non_finite() {
        let pts = [(0.0, 0.0), (1.0, f64::NAN), (2.0, 10.0), (f64::INFINITY, 5.0)];
        assert_eq!(ema(&pts, 0.5), vec![(0.0, 0.0), (2.0, 5.0)]);
        assert_eq!(ema(&pts, 1.0), vec![(0.0, 0.0), (2.0, 10.0)]);
        assert_eq!(ema(&pts, f64::NAN), ema(&pts, 1.0));
        assert!(ema(&[], 0.3).is_empty());
    }

    #[test]
    fn degenerate_inputs_render() {
        let cases = vec![
            vec![],
            vec![panel("empty panel", vec![])],
            vec![panel("empty series", vec![series("nothing", vec![])])],
            vec![panel(
                "all nan",
                vec![series("nan", vec![(f64::NAN, 1.0), (1.0, f64::NAN)])],
            )],
            vec![panel("single", vec![series("one", vec![(5.0, 0.3)])])],
            vec![panel(
                "constant",
                vec![series("flat", (0..100).map(|i| (i as f64, 1.5)).collect())],
            )],
            vec![panel(
                "huge x",
                vec![series("wide", vec![(0.0, 1.0), (1e300, 2.0)])],
            )],
            vec![panel(
                "widest x",
                vec![series("wide", vec![(-f64::MAX, 1.0), (f64::MAX, 2.0)])],
            )],
            vec![panel("zero", vec![series("z", vec![(0.0, 0.0), (0.0, 0.0)])])],
        ];
        for panels in cases {
            let svg = render_svg(&panels);
            assert_basic(&svg);
            let no_points = panels
                .iter()
                .all(|p| p.series.iter().all(|s| !s.points.iter().any(finite)));
            assert_eq!(svg.contains("no data"), no_points, "{svg}");
            for line in polyline_points(&svg) {
                for (x, y) in line {
                    assert!((MARGIN_L - 0.01..=MARGIN_L + PLOT_W + 0.01).contains(&x));
                    assert!((MARGIN_T - 0.01..=MARGIN_T + PLOT_H + 0.01).contains(&y));
                }
            }
        }
    }

    #[test]
    fn many_series_get_distinct_styles_and_legend_overflow() {
        let many: Vec<Series> = (0..25)
            .map(|i| series(&format!("run {i}"), vec![(0.0, i as f64), (1.0, i as f64 + 1.0)]))
            .collect();
        let svg = render_svg(&[panel("many", many)]);
        assert_basic(&svg);
        let styles: Vec<(&str, String)> = (0..25).map(style).collect();
        for i in 0..styles.len() {
            for j in 0..i {
                assert_ne!(styles[i], styles[j]);
            }
        }
        assert!(svg.contains(" more</text>"));
    }

    fn scatter(series: Vec<Series>, x_scale: XScale) -> Scatter {
        Scatter {
            title: "Dev accuracy vs. budget".into(),
            x_label: "delta (% of base)".into(),
            y_label: "accuracy".into(),
            x_scale,
            series,
        }
    }

    fn circle_centres(svg: &str) -> Vec<(f64, f64)> {
        let attr = |tag: &str, name: &str| -> f64 {
            let i = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[i..i + tag[i..].find('"').unwrap()].parse().unwrap()
        };
        svg.match_indices("<circle")
            .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap()])
            .filter(|tag| tag.contains("class=\"point\""))
            .map(|tag| (attr(tag, "cx"), attr(tag, "cy")))
            .collect()
    }

    #[test]
    fn scatter_draws_one_marker_per_point_and_a_legend() {
        let svg = render_scatter_svg(&scatter(
            vec![
                series("pa-ffn", vec![(0.1, 0.6), (0.4, 0.65), (f64::NAN, 0.7)]),
                series("lora", vec![(0.2, 0.62), (0.5, 0.61)]),
            ],
            XScale::Auto,
        ));
        assert_basic(&svg);
        assert!(!svg.contains("log scale"), "a span of 5 stays linear");
        assert!(!svg.contains("<polyline"), "points are not connected");
        assert_eq!(svg.matches("class=\"point\"").count(), 4);
        assert_eq!(svg.matches("class=\"key\"").count(), 2);
        assert!(svg.contains(">pa-ffn<") && svg.contains(">lora<"));
        let centres = circle_centres(&svg);
        assert_eq!(centres.len(), 2, "series 0 uses circles, series 1 another shape");
        for (x, y) in centres {
            assert!((MARGIN_L..=MARGIN_L + PLOT_W).contains(&x));
            assert!((MARGIN_T..=MARGIN_T + PLOT_H).contains(&y));
        }
        assert_eq!(
            render_scatter_svg(&scatter(vec![series("a", vec![(1.0, 2.0)])], XScale::Auto)),
            render_scatter_svg(&scatter(vec![series("a", vec![(1.0, 2.0)])], XScale::Auto))
        );
    }

    #[test]
    fn scatter_goes_logarithmic_over_a_factor_of_20_and_drops_non_positive_x() {
        let pts = vec![(0.0, 0.5), (0.01, 0.55), (0.3, 0.6), (5.0, 0.7)];
        let svg = render_scatter_svg(&scatter(vec![series("r", pts.clone())], XScale::Auto));
        assert_basic(&svg);
        assert!(svg.contains("delta (% of base) (log scale)"));
        for label in [">0.01<", ">0.1<", ">1<", ">10<"] {
            assert!(svg.contains(label), "missing tick {label}");
        }
        assert_eq!(svg.matches("class=\"point\"").count(), 3);
        assert!(svg.contains("1 point(s) at x ≤ 0<tspan"));
        // Equal spacing of decades: 0.01 → 0.1 → 1 → 10 over the plot width.
        let centres = circle_centres(&svg);
        let x_of = |v: f64| MARGIN_L + (v.log10() + 2.0) / 3.0 * PLOT_W;
        for ((x, _), v) in centres.iter().zip([0.01, 0.3, 5.0]) {
            assert!((x - x_of(v)).abs() < 0.01, "{x} vs {}", x_of(v));
        }
        let linear = render_scatter_svg(&scatter(vec![series("r", pts)], XScale::Linear));
        assert!(!linear.contains("log scale") && linear.matches("class=\"point\"").count() == 4);
        // A forced log axis over less than a decade still gets labelled ticks.
        let narrow = render_scatter_svg(&scatter(
            vec![series("r", vec![(2.0, 1.0), (3.0, 2.0)])],
            XScale::Log,
        ));
        assert_basic(&narrow);
        for label in [">1<", ">2<", ">5<", ">10<"] {
            assert!(narrow.contains(label), "missing tick {label}");
        }
    }

    #[test]
    fn log_axis_labels_and_ticks() {
        assert_eq!(log_label(1.0, -2), "0.01");
        assert_eq!(log_label(5.0, -3), "0.005");
        assert_eq!(log_label(2.0, 0), "2");
        assert_eq!(log_label(1.0, 4), "10000");
        assert_eq!(log_label(1.0, 6), "1e6");
        assert_eq!(log_label(5.0, -5), "5e-5");
        let (a, labels) = log_axis(1e-6, 1e6);
        assert_eq!((a.lo, a.hi), (-6.0, 6.0));
        assert!(labels.len() <= 8, "{labels:?}");
        assert!(a.ticks.windows(2).all(|p| p[0] < p[1]));
        let (a, _) = log_axis(0.0, f64::NAN);
        assert!(a.lo < a.hi);
    }

    #[test]
    fn scatter_degenerate_inputs_and_many_series() {
        for plot in [
            scatter(vec![], XScale::Auto),
            scatter(vec![series("nan", vec![(f64::NAN, 1.0)])], XScale::Auto),
            scatter(vec![series("zero", vec![(0.0, 1.0)])], XScale::Log),
        ] {
            let svg = render_scatter_svg(&plot);
            assert_basic(&svg);
            assert!(svg.contains("no data"));
        }
        let many: Vec<Series> = (0..25)
            .map(|i| series(&format!("s{i}"), vec![(i as f64, 1.0)]))
            .collect();
        let svg = render_scatter_svg(&scatter(many, XScale::Linear));
        assert_basic(&svg);
        assert!(svg.contains(" more</text>"));
        let looks: Vec<(usize, usize)> = (0..30).map(|i| (i % PALETTE.len(), i % SHAPES)).collect();
        for i in 0..looks.len() {
            for j in 0..i {
                assert_ne!(looks[i], looks[j]);
            }
        }
    }

    #[test]
    fn output_is_deterministic() {
        let make = || {
            let pts: Vec<(f64, f64)> = (0..300)
                .map(|i| (i as f64 * 3.7, (i as f64 * 0.37).sin() + 1.0 / 3.0))
                .collect();
            render_svg(&[panel(
                "d",
                vec![series("s", pts.clone()), series("e", ema(&pts, 0.2))],
            )])
        };
        assert_eq!(make(), make());
    }
}
