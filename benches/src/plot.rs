//! Minimal SVG line charts for end-of-run reports.
//!
//! Scenario code converts its results into [`Panel`]s of [`Series`] and calls [`write_svg`]; this module knows
//! nothing about SIP or media. SVG is used because it needs no system fonts: plotters is built without `ttf`, so
//! text is sized by a rough estimate and the viewer's own font renders it.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use anyhow::Context as _;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line on a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend entry; series with the same name share a colour across all panels of a figure.
    pub name: String,
    /// `(x, y)` points, joined in the order given. Non-finite points are skipped and break the line.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed, e.g. for a target or a second run to compare against.
    pub dashed: bool,
}

/// One panel: an x axis, a y axis, some series.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Caption above the panel.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// Logarithmic y axis; values `<= 0` are clamped to a floor below the smallest positive value.
    pub log_y: bool,
    /// Lines to draw.
    pub series: Vec<Series>,
}

impl Series {
    /// A solid series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, dashed: false }
    }
}

const WIDTH: u32 = 900;
const TITLE_HEIGHT: u32 = 40;
const PANEL_HEIGHT: u32 = 320;
const LEGEND_ROW: u32 = 18;
const FONT: &str = "sans-serif";
/// Above this many points a series is drawn as a plain line.
const MAX_MARKERS: usize = 80;

/// Tableau 10: distinguishable on white and reasonably colour-blind friendly.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Colour plus marker shape; the shape changes each time the palette wraps so that series stay distinct.
#[derive(Debug, Clone, Copy)]
struct Look {
    color: RGBColor,
    marker: u8,
}

/// Writes `panels` stacked vertically into one SVG file at `path` (creating parent directories), under `title`.
pub fn write_svg(path: &Path, title: &str, panels: &[Panel]) -> anyhow::Result<()> {
    let svg = render_svg(title, panels)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// Renders the figure to an SVG document in memory.
pub fn render_svg(title: &str, panels: &[Panel]) -> anyhow::Result<String> {
    let looks = assign_looks(panels);
    // A panel grows when its legend would not fit, rather than letting the legend run off the bottom.
    let heights: Vec<u32> = panels
        .iter()
        .map(|p| {
            // Three spare rows for the log-floor note.
            let rows = u32::try_from(p.series.len()).unwrap_or(u32::MAX).saturating_add(3);
            PANEL_HEIGHT.max(LEGEND_ROW.saturating_mul(rows).saturating_add(70))
        })
        .collect();
    let total = TITLE_HEIGHT + heights.iter().sum::<u32>().max(PANEL_HEIGHT);
    let legend_w = legend_width(panels);

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, total)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, (FONT, 26).into_font().style(FontStyle::Bold))?;
        let mut breaks = Vec::with_capacity(heights.len());
        let mut y = 0;
        for h in &heights {
            y += *h;
            breaks.push(y);
        }
        breaks.pop();
        let areas = body.split_by_breakpoints(Vec::<u32>::new(), breaks);
        for (panel, area) in panels.iter().zip(areas) {
            draw_panel(&area, panel, &looks, legend_w)?;
        }
        root.present()?;
    }
    Ok(out)
}

/// Gives each distinct series name a look, in order of first appearance across the whole figure.
fn assign_looks(panels: &[Panel]) -> HashMap<String, Look> {
    // A series' colour follows the first word of its name, so `local p50` and `local p99` (dashed) share
    // `local`'s colour: the reader follows one target across panels and percentiles.
    let mut groups: HashMap<&str, Look> = HashMap::new();
    let mut looks = HashMap::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        let n = groups.len();
        let look = *groups.entry(group(&s.name)).or_insert(Look {
            color: PALETTE[n % PALETTE.len()],
            marker: u8::try_from(n / PALETTE.len() % 3).unwrap_or(0),
        });
        looks.entry(s.name.clone()).or_insert(look);
    }
    looks
}

fn group(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// One legend column width for the whole figure, so that panels line up.
fn legend_width(panels: &[Panel]) -> u32 {
    let longest = panels.iter().flat_map(|p| &p.series).map(|s| legend_text(s).chars().count()).max().unwrap_or(0);
    // ~7 px per character at the legend's font size, plus the swatch.
    u32::try_from(longest * 7 + 50).unwrap_or(u32::MAX).clamp(110, 360)
}

fn legend_text(s: &Series) -> String {
    if s.points.iter().any(|&(x, y)| x.is_finite() && y.is_finite()) {
        s.name.clone()
    } else {
        format!("{} (no data)", s.name)
    }
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    looks: &HashMap<String, Look>,
    legend_w: u32,
) -> anyhow::Result<()> {
    let (w, _) = area.dim_in_pixel();
    let (plot_area, legend_area) = area.split_horizontally(w.saturating_sub(legend_w));

    let finite: Vec<(f64, f64)> =
        panel.series.iter().flat_map(|s| &s.points).copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let mut floor_note = None;
    if finite.is_empty() {
        draw_chart(&plot_area, panel, looks, 0.0..1.0, 0.0..1.0, &|v| fmt_tick(*v), None)?;
    } else {
        let x = axis_range(finite.iter().map(|p| p.0), false);
        if panel.log_y {
            let floor = log_floor(finite.iter().map(|p| p.1));
            if finite.iter().any(|p| p.1 < floor) {
                floor_note = Some(floor);
            }
            let ys = log_range(finite.iter().map(|p| p.1.max(floor)));
            draw_chart(&plot_area, panel, looks, x, ys.log_scale(), &|v| fmt_tick(*v), Some(floor))?;
        } else {
            let ys = axis_range(finite.iter().map(|p| p.1), true);
            let unit = axis_unit(&ys);
            draw_chart(&plot_area, panel, looks, x, ys, &|v| fmt_scaled(*v, unit), None)?;
        }
    }
    draw_legend(&legend_area, panel, looks, floor_note)
}

/// `floor` is `Some` for log axes: y values are clamped up to it.
fn draw_chart<Y>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    looks: &HashMap<String, Look>,
    x: Range<f64>,
    y: Y,
    y_fmt: &dyn Fn(&f64) -> String,
    floor: Option<f64>,
) -> anyhow::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_unit = axis_unit(&x);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 20))
        .margin_top(4)
        .margin_left(8)
        .margin_right(12)
        .margin_bottom(4)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
        .bold_line_style(RGBColor(0xd0, 0xd0, 0xd0))
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&|v| fmt_scaled(*v, x_unit))
        .y_label_formatter(y_fmt)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;

    let mut any = false;
    for s in &panel.series {
        let look = looks[&s.name];
        let style = ShapeStyle { color: look.color.to_rgba(), filled: true, stroke_width: 2 };
        let markers = shows_markers(s);
        for seg in segments(&s.points, floor) {
            any = true;
            if s.dashed {
                chart.draw_series(DashedLineSeries::new(seg.iter().copied(), 8, 5, style))?;
            } else {
                chart.draw_series(LineSeries::new(seg.iter().copied(), style))?;
            }
            // A lone point has no line, so it always gets a marker or it would vanish.
            if markers || seg.len() == 1 {
                match look.marker {
                    0 => chart.draw_series(seg.iter().map(|&p| Circle::new(p, 3, style)))?,
                    1 => chart.draw_series(seg.iter().map(|&p| TriangleMarker::new(p, 4, style)))?,
                    _ => chart.draw_series(seg.iter().map(|&p| Cross::new(p, 3, style)))?,
                };
            }
        }
    }
    if !any {
        let pa = chart.plotting_area().strip_coord_spec();
        let (pw, ph) = pa.dim_in_pixel();
        let style = TextStyle::from((FONT, 18).into_font())
            .color(&RGBColor(0x80, 0x80, 0x80))
            .pos(Pos::new(HPos::Center, VPos::Center));
        pa.draw_text("no data", &style, (i32::try_from(pw / 2)?, i32::try_from(ph / 2)?))?;
    }
    Ok(())
}

/// Dense series (long soaks) would turn markers into a smear and bloat the SVG, so they get a plain line.
fn shows_markers(s: &Series) -> bool {
    s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).count() <= MAX_MARKERS
}

/// Drawn beside the chart rather than inside it, so it can never hide data.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    looks: &HashMap<String, Look>,
    floor_note: Option<f64>,
) -> anyhow::Result<()> {
    // Start level with the top of the plotting area (below the caption).
    let mut y = 34;
    let row = i32::try_from(LEGEND_ROW)?;
    let text = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for s in &panel.series {
        let look = looks[&s.name];
        let style = ShapeStyle { color: look.color.to_rgba(), filled: true, stroke_width: 2 };
        let (x0, x1, xm) = (4, 30, 17);
        if s.dashed {
            area.draw(&DashedPathElement::new([(x0, y), (x1, y)], 6, 4, style))?;
        } else {
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], style))?;
        }
        if shows_markers(s) {
            match look.marker {
                0 => area.draw(&Circle::new((xm, y), 3, style))?,
                1 => area.draw(&TriangleMarker::new((xm, y), 4, style))?,
                _ => area.draw(&Cross::new((xm, y), 3, style))?,
            }
        }
        area.draw_text(&legend_text(s), &text, (x1 + 6, y))?;
        y += row;
    }
    // Zeros cannot sit on a log axis; say where they were put so a flat floor line is not read as data.
    if let Some(floor) = floor_note {
        let note = text.color(&RGBColor(0x60, 0x60, 0x60));
        y += row / 2;
        area.draw_text("values \u{2264} 0", &note, (4, y))?;
        area.draw_text(&format!("shown at {}", fmt_tick(floor)), &note, (4, y + row))?;
    }
    Ok(())
}

/// Splits a series at non-finite points so gaps show as gaps rather than misleading straight lines.
fn segments(points: &[(f64, f64)], floor: Option<f64>) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![];
    let mut cur = vec![];
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            cur.push((x, floor.map_or(y, |f| y.max(f))));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Data range plus a small margin; `from_zero` keeps 0 in range (counts, rates, delays).
fn axis_range(values: impl Iterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    if lo == hi {
        // Zero span would make plotters divide by zero; widen around the value.
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return if from_zero && lo == 0.0 { 0.0..d } else { lo - d..hi + d };
    }
    let m = (hi - lo) * 0.04;
    let lo = if from_zero && lo >= 0.0 { lo } else { lo - m };
    let hi = if from_zero && hi <= 0.0 { hi } else { hi + m };
    lo..hi
}

/// Where non-positive values sit on a log axis: a decade below the smallest positive value.
fn log_floor(values: impl Iterator<Item = f64>) -> f64 {
    let min_pos = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    if min_pos.is_finite() {
        min_pos / 10.0
    } else {
        0.001
    }
}

/// Multiplicative margin, since an additive one would be invisible at the top or negative at the bottom.
fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0) {
        return 0.001..1.0;
    }
    if lo == hi {
        return lo / 10.0..hi * 10.0;
    }
    lo / 1.3..hi * 1.3
}

/// Tick labels for log axes, which span decades: each value picks its own SI suffix.
fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return if a == 0.0 { "0".into() } else { format!("{v}") };
    }
    if a < 1e-3 {
        return format!("{v:.0e}");
    }
    fmt_scaled(v, axis_unit(&(0.0..v)))
}

/// One SI suffix for a whole linear axis, so ticks read "5k, 10k, 15k" rather than "5000, 10k, 15k".
fn axis_unit(r: &Range<f64>) -> (f64, &'static str) {
    let a = r.start.abs().max(r.end.abs());
    // "k" only from 10k up: "2500" reads better than "2.5k".
    [(1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")]
        .into_iter()
        .find(|(threshold, _, _)| a >= *threshold)
        .map_or((1.0, ""), |(_, scale, suffix)| (scale, suffix))
}

/// At most four significant digits, trailing zeros dropped.
fn fmt_scaled(v: f64, (scale, suffix): (f64, &str)) -> String {
    if v == 0.0 {
        return "0".into();
    }
    format!("{}{suffix}", fmt_sig(v / scale))
}

fn fmt_sig(v: f64) -> String {
    let mag = v.abs().log10().floor();
    // Saturating cast: `mag` is small and finite here.
    let decimals = (3.0 - mag).clamp(0.0, 6.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_path(tag: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("sbc-bench-plot-{}-{n}-{tag}", std::process::id())).join("out.svg")
    }

    /// Writes through the public entry point (including directory creation) and returns the file's text.
    fn write_and_read(tag: &str, title: &str, panels: &[Panel]) -> String {
        let path = tmp_path(tag);
        write_svg(&path, title, panels).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(&format!(">\n{title}\n<")), "figure title missing");
        for p in panels {
            for text in [&p.title, &p.x_label, &p.y_label] {
                assert!(svg.contains(&format!(">\n{text}\n<")), "{text:?} missing");
            }
            for s in &p.series {
                assert!(svg.contains(&s.name), "series {:?} missing", s.name);
            }
        }
        assert!(!svg.contains("NaN") && !svg.contains("=\"inf") && !svg.contains("=\"-inf"), "non-finite leaked");
        svg
    }

    fn panel(title: &str, log_y: bool, series: Vec<Series>) -> Panel {
        Panel { title: title.into(), x_label: "calls/s".into(), y_label: "PDD (ms)".into(), log_y, series }
    }

    #[test]
    fn typical_figure() {
        let rates = [50.0, 100.0, 200.0, 400.0, 800.0];
        let svg = write_and_read(
            "typical",
            "cps: call rate vs post-dial delay",
            &[
                panel(
                    "p50 / p99",
                    false,
                    vec![
                        Series::new("sbc p50", rates.iter().map(|&r| (r, r / 40.0)).collect()),
                        Series {
                            dashed: true,
                            ..Series::new("sbc p99", rates.iter().map(|&r| (r, r / 8.0)).collect())
                        },
                    ],
                ),
                panel("failures", true, vec![Series::new("sbc", vec![(50.0, 0.0), (400.0, 3.0), (800.0, 120.0)])]),
            ],
        );
        assert!(svg.contains("<polyline") || svg.contains("<path"), "no lines drawn");
        assert!(svg.contains("<circle"), "no markers drawn");
    }

    #[test]
    fn same_name_same_colour_across_panels() {
        let looks = assign_looks(&[
            panel("a", false, vec![Series::new("sbc", vec![(0.0, 1.0)]), Series::new("b2bua", vec![])]),
            panel("b", false, vec![Series::new("other", vec![]), Series::new("sbc", vec![(0.0, 1.0)])]),
        ]);
        assert_eq!(looks["sbc"].color, PALETTE[0]);
        assert_eq!(looks["b2bua"].color, PALETTE[1]);
        assert_eq!(looks["other"].color, PALETTE[2]);
    }

    #[test]
    fn empty_panels_and_series() {
        let svg = write_and_read(
            "empty",
            "empty",
            &[
                panel("no series", false, vec![]),
                panel("empty series", true, vec![Series::new("idle", vec![])]),
                panel("only junk", false, vec![Series::new("junk", vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)])]),
            ],
        );
        assert_eq!(svg.matches(">\nno data\n<").count(), 3);
        assert!(svg.contains("idle (no data)"));
    }

    #[test]
    fn single_point_and_flat_values() {
        write_and_read(
            "single",
            "single",
            &[
                panel("one point", false, vec![Series::new("one", vec![(5.0, 7.0)])]),
                panel("flat zero", false, vec![Series::new("zeros", vec![(0.0, 0.0), (0.0, 0.0)])]),
                panel("flat log", true, vec![Series::new("flat", vec![(1.0, 3.0), (2.0, 3.0)])]),
                panel("negative", false, vec![Series::new("neg", vec![(-2.0, -1.0), (2.0, -5.0)])]),
            ],
        );
    }

    #[test]
    fn log_axis_with_zeros_and_gaps() {
        let svg = write_and_read(
            "log",
            "loss",
            &[
                panel(
                    "loss",
                    true,
                    vec![Series::new("loss", vec![(0.0, 0.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 40.0), (4.0, -1.0)])],
                ),
                panel("all zero", true, vec![Series::new("zero", vec![(0.0, 0.0), (1.0, 0.0)])]),
            ],
        );
        assert!(!svg.contains(">\nno data\n<"));
    }

    #[test]
    fn ranges() {
        assert_eq!(axis_range([3.0, 3.0].into_iter(), true), 0.0..3.0 + 0.12);
        assert_eq!(axis_range([0.0].into_iter(), true), 0.0..1.0);
        assert_eq!(axis_range([10.0].into_iter(), false), 9.0..11.0);
        assert_eq!(log_floor([0.0, 0.5, 2.0].into_iter()), 0.05);
        assert_eq!(log_floor([0.0].into_iter()), 0.001);
        let r = log_range([4.0].into_iter());
        assert!(r.start < 4.0 && r.end > 4.0);
    }

    #[test]
    fn ticks() {
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(fmt_tick(0.001), "0.001");
        assert_eq!(fmt_tick(2500.0), "2500");
        assert_eq!(fmt_tick(12500.0), "12.5k");
        assert_eq!(fmt_tick(1_500_000.0), "1.5M");
        assert_eq!(fmt_tick(-40.0), "-40");
        assert_eq!(fmt_scaled(5000.0, axis_unit(&(0.0..20000.0))), "5k");
        assert_eq!(fmt_scaled(250.0, axis_unit(&(0.0..1000.0))), "250");
    }

    /// Not a check: writes realistic figures for eyeballing layout changes
    /// (`cargo test -p sbc-bench plot::tests::sample -- --ignored --nocapture`, then open the printed paths).
    #[test]
    #[ignore]
    fn sample() {
        let dir = std::env::temp_dir();
        let rates: Vec<f64> = (1..=12).map(|i| f64::from(i) * 100.0).collect();
        let pdd = |base: f64, knee: f64| -> Vec<(f64, f64)> {
            rates.iter().map(|&r| (r, base + (r / knee).powi(4) * base)).collect()
        };
        let cps = [
            Panel {
                title: "Post-dial delay".into(),
                x_label: "offered call rate (calls/s)".into(),
                y_label: "PDD (ms)".into(),
                log_y: false,
                series: vec![
                    Series::new("sbc p50", pdd(4.0, 900.0)),
                    Series { dashed: true, ..Series::new("sbc p99", pdd(11.0, 800.0)) },
                    Series::new("baseline p50", pdd(3.0, 1100.0)),
                    Series { dashed: true, ..Series::new("baseline p99", pdd(8.0, 1000.0)) },
                ],
            },
            Panel {
                title: "Failed calls".into(),
                x_label: "offered call rate (calls/s)".into(),
                y_label: "failures (%)".into(),
                log_y: true,
                series: vec![
                    Series::new(
                        "sbc p50",
                        rates.iter().map(|&r| (r, if r < 900.0 { 0.0 } else { (r - 850.0) / 40.0 })).collect(),
                    ),
                    Series::new(
                        "baseline p50",
                        rates.iter().map(|&r| (r, if r < 1100.0 { 0.0 } else { 0.3 })).collect(),
                    ),
                ],
            },
            Panel { title: "Timeouts".into(), x_label: "calls/s".into(), y_label: "count".into(), ..Panel::default() },
        ];
        let soak = [Panel {
            title: "Active calls".into(),
            x_label: "time (s)".into(),
            y_label: "calls".into(),
            log_y: false,
            series: vec![
                Series::new(
                    "sbc",
                    (0..600)
                        .map(f64::from)
                        .map(|t| {
                            (
                                t,
                                if (300.0..310.0).contains(&t) {
                                    f64::NAN
                                } else {
                                    20000.0 * (1.0 - (-t / 60.0).exp())
                                },
                            )
                        })
                        .collect(),
                ),
                Series { dashed: true, ..Series::new("target", vec![(0.0, 20000.0), (599.0, 20000.0)]) },
            ],
        }];
        let edges = [
            panel("one point", false, vec![Series::new("one", vec![(5.0, 7.0)])]),
            panel(
                "flat log, zeros and a gap",
                true,
                vec![
                    Series::new("flat", vec![(1.0, 3.0), (2.0, 3.0)]),
                    Series::new("loss", vec![(0.0, 0.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 40.0), (4.0, -1.0)]),
                    Series::new("idle", vec![]),
                ],
            ),
            panel("negative", false, vec![Series::new("neg", vec![(-2.0, -1.0), (2.0, -5.0)])]),
        ];
        for (name, title, panels) in [
            ("plot-sample-cps.svg", "cps: call rate vs post-dial delay and failures", &cps[..]),
            ("plot-sample-soak.svg", "soak: active calls over time", &soak[..]),
            ("plot-sample-edges.svg", "edge cases", &edges[..]),
        ] {
            let path = dir.join(name);
            write_svg(&path, title, panels).unwrap();
            println!("{}", path.display());
        }
    }
}
