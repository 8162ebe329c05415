//! Plots drawn as inline SVG, server-side: a few lines over a time axis shared by every
//! plot of a report, with bands and marks across it.
//!
//! Each plot is its own `<svg class="plot">` with a `<title>` and an `aria-label`, so a
//! reader's tools and the tests find it by what it shows. Only finite values reach the
//! output: a missing or non-finite sample breaks its line instead of drawing to NaN or
//! infinity, and every number written goes through [`num`], so no attribute can read
//! `NaN`. Text comes in raw and is escaped here.

use std::fmt::Write as _;

use super::text::escape;

/// The viewBox's width; the page scales it to its own.
pub const WIDTH: f64 = 960.0;
/// Room on the left for the value axis's labels.
pub const LEFT: f64 = 64.0;
/// Room on the right.
pub const RIGHT: f64 = 16.0;
/// Room above the drawing area for the plot's name and legend.
const TOP: f64 = 22.0;
/// Room below it for the time axis's labels.
const BOTTOM: f64 = 20.0;

/// The time axis every plot shares: from the start to `end_ms`.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    end_ms: u64,
}

/// One plot: lines over the shared axis.
pub struct Plot {
    /// What it shows, e.g. `requests/s`: its heading, title and aria-label.
    pub label: String,
    /// Which plot it is, for the page's CSS and the tests: `rate`, `errors`, `series`…
    pub kind: &'static str,
    /// Its height in the viewBox.
    pub height: f64,
    /// The lines, drawn in order.
    pub lines: Vec<Line>,
}

/// A line of samples.
pub struct Line {
    /// Its name in the legend (none for a plot's only line).
    pub name: Option<String>,
    /// Its CSS class (its colour).
    pub class: &'static str,
    /// (milliseconds since the start, value); none where there was nothing to measure.
    pub points: Vec<(u64, Option<f64>)>,
    /// Drawn as steps — a sampled state holds until the next sample, the last until the
    /// run's end — rather than straight from sample to sample.
    pub step: bool,
}

/// A span of time drawn across a plot: a fault window.
pub struct Band {
    /// Its start, milliseconds since the start.
    pub start_ms: u64,
    /// Its end; none for a fault never removed, drawn to the axis's end.
    pub end_ms: Option<u64>,
    /// What it was, shown on hover.
    pub label: String,
}

/// A moment drawn across a plot: the abort.
pub struct Mark {
    /// Milliseconds since the start.
    pub at_ms: u64,
    /// What happened, shown on hover.
    pub label: String,
}

/// What every plot draws beside its own lines.
pub struct Overlay<'a> {
    /// The shared time axis.
    pub axis: Axis,
    /// The fault windows.
    pub bands: &'a [Band],
    /// The abort, if any.
    pub mark: Option<&'a Mark>,
}

// === impl Axis ===

impl Axis {
    /// An axis long enough for `end_ms`, and never empty (at least a second).
    pub fn new(end_ms: u64) -> Axis {
        Axis {
            end_ms: end_ms.max(1000),
        }
    }

    /// Where `ms` is across the drawing area (clamped to the axis).
    pub fn x(self, ms: u64) -> f64 {
        let fraction = ms.min(self.end_ms) as f64 / self.end_ms as f64;
        LEFT + fraction * (WIDTH - LEFT - RIGHT)
    }

    /// The axis's end, milliseconds.
    pub fn end_ms(self) -> u64 {
        self.end_ms
    }

    /// Tick times: a round step giving at most 8 intervals.
    fn ticks(self) -> Vec<u64> {
        const STEPS: [u64; 14] = [
            100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
            600_000, 1_800_000,
        ];
        let step = STEPS
            .into_iter()
            .find(|step| self.end_ms / step <= 8)
            .unwrap_or(self.end_ms.div_ceil(8).max(1));
        (0..=self.end_ms / step).map(|i| i * step).collect()
    }

    /// Writes the time axis's grid lines and labels at `bottom`.
    fn write(self, svg: &mut String, top: f64, bottom: f64) {
        for t in self.ticks() {
            let x = num(self.x(t));
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>\
                 <text class=\"tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                num(top),
                num(bottom),
                num(bottom + 14.0),
                tick_time(t)
            );
        }
    }
}

// === impl Plot ===

impl Plot {
    /// The plot as one `<svg>` element, with `overlay` drawn under its lines.
    pub fn render(&self, overlay: &Overlay<'_>) -> String {
        let bottom = self.height - BOTTOM;
        let scale = Scale::of(&self.lines, TOP, bottom);
        let label = escape(&self.label);
        let mut svg = format!(
            "<svg class=\"plot plot-{}\" role=\"img\" aria-label=\"{label}\" \
             viewBox=\"0 0 {} {}\"><title>{label}</title>",
            self.kind,
            num(WIDTH),
            num(self.height)
        );
        for band in overlay.bands {
            band.write(&mut svg, overlay.axis, TOP, bottom);
        }
        overlay.axis.write(&mut svg, TOP, bottom);
        scale.write(&mut svg);
        let _ = write!(
            svg,
            "<text class=\"heading\" x=\"{}\" y=\"14\">{label}</text>",
            num(LEFT)
        );
        if !self.lines.iter().any(Line::has_values) {
            let _ = write!(
                svg,
                "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples</text>",
                num((LEFT + WIDTH - RIGHT) / 2.0),
                num((TOP + bottom) / 2.0)
            );
        }
        for line in &self.lines {
            line.write(&mut svg, overlay.axis, &scale);
        }
        self.legend(&mut svg);
        if let Some(mark) = overlay.mark {
            mark.write(&mut svg, overlay.axis, TOP, bottom);
        }
        svg.push_str("</svg>");
        svg
    }

    /// The lines' names, right-aligned above the drawing area.
    fn legend(&self, svg: &mut String) {
        let mut x = WIDTH - RIGHT;
        for line in self.lines.iter().rev() {
            let Some(name) = &line.name else { continue };
            let _ = write!(
                svg,
                "<text class=\"legend {}\" x=\"{}\" y=\"14\" text-anchor=\"end\">■ {}</text>",
                line.class,
                num(x),
                escape(name)
            );
            // About 7 units a character at 11px, the square and a space included.
            x -= 16.0 + 7.0 * (name.chars().count() + 2) as f64;
        }
    }
}

// === impl Line ===

impl Line {
    fn has_values(&self) -> bool {
        self.points.iter().any(|(_, v)| finite(*v).is_some())
    }

    /// The line as one `<path>`; a gap wherever a value is missing, a dot for a sample
    /// between two gaps (a zero-length segment with round caps).
    fn write(&self, svg: &mut String, axis: Axis, scale: &Scale) {
        let mut d = String::new();
        // Whether the pen is down, and whether it has drawn since it was put down.
        let (mut down, mut lone) = (false, false);
        for &(ms, value) in &self.points {
            let x = num(axis.x(ms));
            let Some(v) = finite(value) else {
                if self.step && down {
                    let _ = write!(d, "H{x}");
                    lone = false;
                }
                down = false;
                continue;
            };
            let y = num(scale.y(v));
            if !down {
                if lone {
                    d.push_str("l0 0");
                }
                let _ = write!(d, "M{x} {y}");
                (down, lone) = (true, true);
            } else if self.step {
                let _ = write!(d, "H{x}V{y}");
                lone = false;
            } else {
                let _ = write!(d, "L{x} {y}");
                lone = false;
            }
        }
        if self.step && down {
            let _ = write!(d, "H{}", num(axis.x(axis.end_ms())));
            lone = false;
        }
        if lone {
            d.push_str("l0 0");
        }
        if !d.is_empty() {
            let _ = write!(svg, "<path class=\"line {}\" d=\"{d}\"/>", self.class);
        }
    }
}

// === impl Band ===

impl Band {
    fn write(&self, svg: &mut String, axis: Axis, top: f64, bottom: f64) {
        let x0 = axis.x(self.start_ms);
        let x1 = axis.x(self.end_ms.unwrap_or(axis.end_ms()));
        let _ = write!(
            svg,
            "<rect class=\"band{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            if self.end_ms.is_none() { " open" } else { "" },
            num(x0),
            num(top),
            num((x1 - x0).max(1.0)),
            num(bottom - top),
            escape(&self.label)
        );
    }
}

// === impl Mark ===

impl Mark {
    fn write(&self, svg: &mut String, axis: Axis, top: f64, bottom: f64) {
        let x = num(axis.x(self.at_ms));
        let _ = write!(
            svg,
            "<line class=\"abort\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"><title>{}</title></line>",
            num(top),
            num(bottom),
            escape(&self.label)
        );
    }
}

/// The value axis: from `lo` (0, or below if a value is negative) to a round `hi`.
struct Scale {
    lo: f64,
    hi: f64,
    top: f64,
    bottom: f64,
}

// === impl Scale ===

impl Scale {
    fn of(lines: &[Line], top: f64, bottom: f64) -> Scale {
        let values = lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|(_, v)| finite(*v)));
        let (min, max) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let lo = if min < 0.0 { -round_up(-min) } else { 0.0 };
        let hi = if max > 0.0 { round_up(max) } else { 0.0 };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        Scale {
            lo,
            hi,
            top,
            bottom,
        }
    }

    fn y(&self, v: f64) -> f64 {
        let fraction = (v - self.lo) / (self.hi - self.lo);
        self.bottom - fraction.clamp(0.0, 1.0) * (self.bottom - self.top)
    }

    /// Grid lines and labels at the bottom, middle and top of the value axis.
    fn write(&self, svg: &mut String) {
        for v in [self.lo, (self.lo + self.hi) / 2.0, self.hi] {
            let y = num(self.y(v));
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{y}\" dy=\"4\" text-anchor=\"end\">{}</text>",
                num(LEFT),
                num(WIDTH - RIGHT),
                num(LEFT - 6.0),
                tick_value(v)
            );
        }
    }
}

/// `v` if it is a finite number.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at least `v` (`v` finite and positive).
fn round_up(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|r| *r >= v)
        .unwrap_or(10.0 * magnitude)
}

/// A coordinate as written: two decimals at most, and never `NaN` or `inf` (0 instead,
/// which only a bug upstream could reach).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A value axis label: `0`, `2.5`, `150`, `1.2k`.
fn tick_value(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{}k", num((v / 1000.0 * 10.0).round() / 10.0))
    } else {
        num((v * 100.0).round() / 100.0)
    }
}

/// A time axis label: `0 s`, `15 s`, `2.5 s`, `2 min`.
fn tick_time(ms: u64) -> String {
    if ms >= 120_000 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: Vec<(u64, Option<f64>)>, step: bool) -> Line {
        Line {
            name: None,
            class: "x",
            points,
            step,
        }
    }

    fn render(lines: Vec<Line>, bands: &[Band]) -> String {
        let plot = Plot {
            label: "p".into(),
            kind: "test",
            height: 120.0,
            lines,
        };
        plot.render(&Overlay {
            axis: Axis::new(10_000),
            bands,
            mark: None,
        })
    }

    #[test]
    fn numbers_are_short_and_never_nan() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(f64::INFINITY), "0");
    }

    #[test]
    fn the_value_axis_is_round() {
        assert_eq!(round_up(0.7), 1.0);
        assert_eq!(round_up(1.0), 1.0);
        assert_eq!(round_up(3.0), 5.0);
        assert_eq!(round_up(431.0), 500.0);
        assert_eq!(round_up(2100.0), 2500.0);
    }

    #[test]
    fn a_missing_or_non_finite_value_breaks_the_line() {
        let svg = render(
            vec![line(
                vec![
                    (0, Some(1.0)),
                    (1000, Some(2.0)),
                    (2000, None),
                    (3000, Some(f64::NAN)),
                    (4000, Some(1.0)),
                    (5000, Some(f64::INFINITY)),
                    (6000, Some(2.0)),
                    (7000, Some(1.0)),
                ],
                false,
            )],
            &[],
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let d = svg.split("class=\"line x\" d=\"").nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        // Three pieces: two points, a lone point (a dot), two points.
        assert_eq!(d.matches('M').count(), 3, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
        assert_eq!(d.matches("l0 0").count(), 1, "{d}");
    }

    #[test]
    fn a_step_line_holds_each_value_until_the_next_and_the_last_to_the_end() {
        let svg = render(
            vec![line(vec![(0, Some(0.0)), (5000, Some(2.0))], true)],
            &[],
        );
        let end = num(Axis::new(10_000).x(10_000));
        assert!(
            svg.contains(&format!("H{}V", num(Axis::new(10_000).x(5000)))),
            "{svg}"
        );
        assert!(svg.contains(&format!("H{end}\"")), "{svg}");
    }

    #[test]
    fn a_plot_without_values_says_so() {
        let svg = render(vec![line(vec![(0, None), (1, Some(f64::NAN))], false)], &[]);
        assert!(svg.contains("no samples"));
        assert!(!svg.contains("<path"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn a_band_never_removed_reaches_the_end_of_the_axis() {
        let bands = [Band {
            start_ms: 5000,
            end_ms: None,
            label: "kill <x>".into(),
        }];
        let svg = render(vec![], &bands);
        let axis = Axis::new(10_000);
        let width = num(axis.x(10_000) - axis.x(5000));
        assert!(svg.contains(&format!("class=\"band open\" x=\"{}\"", num(axis.x(5000)))));
        assert!(svg.contains(&format!("width=\"{width}\"")), "{svg}");
        assert!(svg.contains("<title>kill &lt;x&gt;</title>"));
    }

    #[test]
    fn the_time_axis_has_round_ticks() {
        assert_eq!(Axis::new(0).ticks(), [0, 200, 400, 600, 800, 1000]);
        assert_eq!(Axis::new(30_000).ticks().len(), 7);
        assert_eq!(tick_time(15_000), "15 s");
        assert_eq!(tick_time(2_500), "2.5 s");
        assert_eq!(tick_time(180_000), "3 min");
    }
}
