//! What a search writes besides the chosen network: the evaluated population as CSV, an SVG
//! scatter plot of accuracy against latency with the Pareto front, and one JSON line per
//! generation.

use crate::evolution::{pareto_front, Candidate, GenerationLog};

/// `arch,val_acc,latency_ms,on_pareto_front` (compact arch; accuracy with six decimals),
/// one row per candidate in the given order.
pub fn population_csv(candidates: &[Candidate]) -> String {
    let front = pareto_front(&points(candidates));
    let mut s = String::from("arch,val_acc,latency_ms,on_pareto_front\n");
    for (c, f) in candidates.iter().zip(front) {
        s.push_str(&format!("{},{:.6},{:.6},{}\n", c.arch.to_compact(), c.accuracy.val, c.latency_ms, f as u8));
    }
    s
}

fn points(candidates: &[Candidate]) -> Vec<(f64, f64)> {
    candidates.iter().map(|c| (c.latency_ms, c.accuracy.val)).collect()
}

/// One generation as a line of JSON.
pub fn generation_json(g: &GenerationLog) -> String {
    serde_json::json!({
        "generation": g.generation,
        "best_score": g.best.score,
        "best_val_acc": g.best.accuracy.val,
        "best_arch": g.best.arch.to_compact(),
        "best_latency_ms": g.best.latency_ms,
        "population_mean": g.population_mean,
        "evaluated": g.evaluated,
    })
    .to_string()
}

/// Round numbers for axis ticks: about `n` steps of 1, 2 or 5 times a power of ten.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The scatter plot: latency (ms) on x, validation accuracy (%) on y; every evaluated
/// architecture grey, the Pareto front red and joined, the budget a dashed line (and the
/// search's own limit, when a margin put it below the budget, a dotted one), the chosen
/// architecture circled.
pub fn pareto_svg(candidates: &[Candidate], budget_ms: f64, limit_ms: Option<f64>, chosen: &Candidate, title: &str) -> String {
    let (w, h) = (720.0, 480.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 55.0);
    let pts = points(candidates);
    let front = pareto_front(&pts);
    let lat_max = pts.iter().map(|p| p.0).fold(budget_ms, f64::max);
    let lat_min = pts.iter().map(|p| p.0).fold(lat_max, f64::min);
    let acc_max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let acc_min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let (acc_min, acc_max) = if acc_min.is_finite() { (acc_min, acc_max) } else { (0.0, 1.0) };
    let pad = |lo: f64, hi: f64| {
        let d = ((hi - lo) * 0.05).max(1e-3);
        (lo - d, hi + d)
    };
    let (x0, x1) = pad(lat_min, lat_max);
    let (y0, y1) = pad(acc_min * 100.0, acc_max * 100.0);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| h - bottom - (y * 100.0 - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    // Axes, ticks and grid.
    let (px0, px1, py0, py1) = (left, w - right, h - bottom, top);
    s.push_str(&format!(
        "<rect x=\"{px0}\" y=\"{py1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
        px1 - px0,
        py0 - py1
    ));
    for t in ticks(x0, x1, 8) {
        let x = sx(t);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{py1}\" x2=\"{x:.1}\" y2=\"{py0}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            py0 + 16.0,
            trim(t)
        ));
    }
    for t in ticks(y0, y1, 6) {
        let y = sy(t / 100.0);
        s.push_str(&format!(
            "<line x1=\"{px0}\" y1=\"{y:.1}\" x2=\"{px1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            px0 - 6.0,
            y + 4.0,
            trim(t)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">predicted latency (ms)</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">validation accuracy (%)</text>\n",
        (px0 + px1) / 2.0,
        h - 12.0,
        (py0 + py1) / 2.0,
        (py0 + py1) / 2.0
    ));
    // The points: the others first, then the front on top.
    for (p, f) in pts.iter().zip(&front) {
        if !f {
            s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#999\" fill-opacity=\"0.5\"/>\n", sx(p.0), sy(p.1)));
        }
    }
    let mut fp: Vec<(f64, f64)> = pts.iter().zip(&front).filter(|(_, f)| **f).map(|(p, _)| *p).collect();
    fp.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !fp.is_empty() {
        let path: Vec<String> = fp.iter().map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1))).collect();
        s.push_str(&format!("<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n", path.join(" ")));
        for p in &fp {
            s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#d62728\"/>\n", sx(p.0), sy(p.1)));
        }
    }
    if let Some(limit) = limit_ms.filter(|l| *l < budget_ms) {
        let lx = sx(limit);
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{py1}\" x2=\"{lx:.1}\" y2=\"{py0}\" stroke=\"#1f77b4\" stroke-dasharray=\"2 3\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" fill=\"#1f77b4\">search limit {:.2} ms</text>\n",
            lx - 4.0,
            py0 - 24.0,
            limit
        ));
    }
    let bx = sx(budget_ms);
    s.push_str(&format!(
        "<line x1=\"{bx:.1}\" y1=\"{py1}\" x2=\"{bx:.1}\" y2=\"{py0}\" stroke=\"#1f77b4\" stroke-dasharray=\"6 4\" stroke-width=\"1.5\"/>\
         <text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" fill=\"#1f77b4\">budget {} ms</text>\n",
        bx - 4.0,
        py1 + 14.0,
        trim(budget_ms)
    ));
    s.push_str(&format!(
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"8\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">chosen: {:.2} %, {:.2} ms</text>\n",
        sx(chosen.latency_ms),
        sy(chosen.accuracy.val),
        sx(chosen.latency_ms) - 12.0,
        sy(chosen.accuracy.val) + 20.0,
        chosen.accuracy.val * 100.0,
        chosen.latency_ms
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#555\">{} architectures evaluated; red: Pareto front</text>\n</svg>\n",
        px0 + 6.0,
        py0 - 8.0,
        candidates.len()
    ));
    s
}

/// One search's evaluated architectures on a comparison plot.
pub struct Series<'a> {
    pub name: &'a str,
    /// An SVG color.
    pub color: &'a str,
    pub candidates: &'a [Candidate],
}

/// A point marked on a comparison plot (a measured winner): a cross and a label.
pub struct Marker {
    pub label: String,
    pub latency_ms: f64,
    pub val: f64,
    pub color: String,
}

/// Several searches on the same axes: latency (ms, each search's own prediction, as it
/// would deploy) on x, validation accuracy (%) on y; each search's points faint, its Pareto
/// front drawn in its color; the budget a dashed line; markers (measured winners) as crosses.
pub fn compare_svg(series: &[Series], budget_ms: f64, markers: &[Marker], title: &str) -> String {
    let (w, h) = (760.0, 500.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 55.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| points(s.candidates))
        .chain(markers.iter().map(|m| (m.latency_ms, m.val)))
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let lat_max = all.iter().map(|p| p.0).fold(budget_ms, f64::max);
    let lat_min = all.iter().map(|p| p.0).fold(lat_max, f64::min);
    let acc_max = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let acc_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let (acc_min, acc_max) = if acc_min.is_finite() { (acc_min, acc_max) } else { (0.0, 1.0) };
    let pad = |lo: f64, hi: f64| {
        let d = ((hi - lo) * 0.05).max(1e-3);
        (lo - d, hi + d)
    };
    let (x0, x1) = pad(lat_min, lat_max);
    let (y0, y1) = pad(acc_min * 100.0, acc_max * 100.0);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| h - bottom - (y * 100.0 - y0) / (y1 - y0) * (h - top - bottom);
    let (px0, px1, py0, py1) = (left, w - right, h - bottom, top);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n\
         <rect x=\"{px0}\" y=\"{py1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
        w / 2.0,
        esc(title),
        px1 - px0,
        py0 - py1
    );
    for t in ticks(x0, x1, 8) {
        let x = sx(t);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{py1}\" x2=\"{x:.1}\" y2=\"{py0}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            py0 + 16.0,
            trim(t)
        ));
    }
    for t in ticks(y0, y1, 6) {
        let y = sy(t / 100.0);
        s.push_str(&format!(
            "<line x1=\"{px0}\" y1=\"{y:.1}\" x2=\"{px1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            px0 - 6.0,
            y + 4.0,
            trim(t)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency (ms): predicted from each search's own table; crosses measured</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">validation accuracy (%)</text>\n",
        (px0 + px1) / 2.0,
        h - 12.0,
        (py0 + py1) / 2.0,
        (py0 + py1) / 2.0
    ));
    for (i, se) in series.iter().enumerate() {
        let pts = points(se.candidates);
        let front = pareto_front(&pts);
        for p in &pts {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"{}\" fill-opacity=\"0.18\"/>\n",
                sx(p.0),
                sy(p.1),
                se.color
            ));
        }
        let mut fp: Vec<(f64, f64)> = pts.iter().zip(&front).filter(|(_, f)| **f).map(|(p, _)| *p).collect();
        fp.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !fp.is_empty() {
            let path: Vec<String> = fp.iter().map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1))).collect();
            s.push_str(&format!("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"/>\n", path.join(" "), se.color));
            for p in &fp {
                s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>\n", sx(p.0), sy(p.1), se.color));
            }
        }
        let ly = py1 + 16.0 + 16.0 * i as f64;
        s.push_str(&format!(
            "<line x1=\"{}\" y1=\"{ly:.1}\" x2=\"{}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{:.1}\">{} ({} archs; line: Pareto front)</text>\n",
            px0 + 8.0,
            px0 + 28.0,
            se.color,
            px0 + 34.0,
            ly + 4.0,
            esc(se.name),
            se.candidates.len()
        ));
    }
    let bx = sx(budget_ms);
    s.push_str(&format!(
        "<line x1=\"{bx:.1}\" y1=\"{py1}\" x2=\"{bx:.1}\" y2=\"{py0}\" stroke=\"#444\" stroke-dasharray=\"6 4\"/>\
         <text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" fill=\"#444\">budget {} ms</text>\n",
        bx - 4.0,
        py0 - 8.0,
        trim(budget_ms)
    ));
    for (i, m) in markers.iter().enumerate() {
        let (x, y) = (sx(m.latency_ms), sy(m.val));
        s.push_str(&format!(
            "<path d=\"M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}\" stroke=\"{}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\" font-size=\"11\">{}</text>\n",
            x - 6.0,
            y - 6.0,
            x + 6.0,
            y + 6.0,
            x - 6.0,
            y + 6.0,
            x + 6.0,
            y - 6.0,
            m.color,
            x + 9.0,
            y + 4.0 + 12.0 * (i % 2) as f64,
            m.color,
            esc(&m.label)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// A tick label without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{:.4}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::Accuracy;
    use crate::space::ArchConfig;

    fn cand(r: u32, lat: f64, acc: f64) -> Candidate {
        Candidate { arch: ArchConfig::min(r), accuracy: Accuracy { val: acc, train: None }, score: acc, latency_ms: lat }
    }

    #[test]
    fn csv_and_svg() {
        let cs = vec![cand(160, 5.0, 0.75), cand(176, 6.0, 0.74), cand(192, 7.0, 0.78)];
        let csv = population_csv(&cs);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "arch,val_acc,latency_ms,on_pareto_front");
        assert!(lines[1].ends_with(",0.750000,5.000000,1"), "{}", lines[1]);
        assert!(lines[2].ends_with(",0"));
        assert!(lines[3].ends_with(",1"));
        let svg = pareto_svg(&cs, 8.0, Some(7.5), &cs[2], "a <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;test&gt;"));
        assert_eq!(svg.matches("fill=\"#d62728\"").count(), 2);
        assert!(svg.contains("budget 8 ms") && svg.contains("search limit 7.50 ms"));
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let other = vec![cand(160, 4.0, 0.70), cand(176, 7.5, 0.77)];
        let markers = [Marker { label: "measured".into(), latency_ms: 7.9, val: 0.78, color: "#d62728".into() }];
        let svg = compare_svg(
            &[Series { name: "co-search", color: "#d62728", candidates: &cs }, Series { name: "baseline", color: "#1f77b4", candidates: &other }],
            8.0,
            &markers,
            "compare",
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("co-search (3 archs") && svg.contains("baseline (2 archs") && svg.contains(">measured</text>"));
    }
}
