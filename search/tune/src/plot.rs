//! The tuning curve as an SVG: best total weighted latency (ms) against trials, with the
//! default schedules' total as a dashed line.

/// An SVG of `points` (trial, total seconds), `default_s` the untuned total.
pub fn tuning_curve_svg(points: &[(usize, f64)], default_s: Option<f64>, title: &str) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let max_x = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let ys: Vec<f64> = points.iter().map(|p| p.1 * 1e3).chain(default_s.map(|d| d * 1e3)).collect();
    let (mut lo, mut hi) = (ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(0.0, f64::max));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(hi * 0.01).max(1e-6);
    let (lo, hi) = ((lo - pad).max(0.0), hi + pad);
    let x = |t: f64| left + (w - left - right) * t / max_x;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
    // Axes and ticks.
    s += &format!("<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", h - bottom, w - right, h - bottom);
    s += &format!("<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n", h - bottom);
    for i in 0..=5 {
        let t = max_x * i as f64 / 5.0;
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"black\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4:.0}</text>\n",
            x(t),
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0,
            t
        );
        let v = lo + (hi - lo) * i as f64 / 5.0;
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5:.3}</text>\n",
            left,
            y(v),
            w - right,
            left - 6.0,
            y(v) + 4.0,
            v
        );
    }
    s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">trials</text>\n", (left + w - right) / 2.0, h - 12.0);
    s += &format!(
        "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">best total weighted latency (ms)</text>\n",
        (top + h - bottom) / 2.0
    );
    if let Some(d) = default_s {
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"gray\" stroke-dasharray=\"6 4\"/><text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"gray\">default schedules {3:.3} ms</text>\n",
            y(d * 1e3),
            w - right,
            y(d * 1e3) - 5.0,
            d * 1e3
        );
    }
    if !points.is_empty() {
        // A step line: the best so far holds until the next improvement.
        let mut path = String::new();
        for (i, &(t, v)) in points.iter().enumerate() {
            if i > 0 {
                path += &format!(" {:.1},{:.1}", x(t as f64), y(points[i - 1].1 * 1e3));
            }
            path += &format!(" {:.1},{:.1}", x(t as f64), y(v * 1e3));
        }
        s += &format!("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n", path.trim());
    }
    s + "</svg>\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plot_is_an_svg_with_the_curve() {
        let svg = super::tuning_curve_svg(&[(1, 2e-3), (5, 1.5e-3), (9, 1.2e-3)], Some(2e-3), "m <x>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("default schedules 2.000 ms") && svg.contains("m &lt;x&gt;"));
    }
}
