//! The training curve as an SVG: training loss (left axis) and training and test accuracy
//! (right axis, percent) per epoch.

use crate::trainer::EpochStats;

const W: f64 = 640.0;
const H: f64 = 400.0;
const L: f64 = 60.0;
const R: f64 = 60.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

fn polyline(points: &[(f64, f64)], color: &str) -> String {
    let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let dots: String = points.iter().map(|(x, y)| format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>")).collect();
    format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>{dots}\n", pts.join(" "))
}

/// The SVG text of the curve of `history`, titled `title`.
pub fn training_curve(history: &[EpochStats], title: &str) -> String {
    let n = history.len().max(1) as f64;
    let max_loss = history.iter().map(|s| s.train_loss).fold(1e-9, f64::max) * 1.1;
    let min_acc = history.iter().flat_map(|s| [s.train_acc, s.test_acc]).fold(1.0, f64::min);
    let lo = ((min_acc * 100.0 / 10.0).floor() * 10.0).clamp(0.0, 90.0);
    let x = |e: usize| L + (W - L - R) * if n > 1.0 { (e as f64 - 1.0) / (n - 1.0) } else { 0.5 };
    let y_loss = |v: f64| T + (H - T - B) * (1.0 - v / max_loss);
    let y_acc = |a: f64| T + (H - T - B) * (1.0 - (a * 100.0 - lo) / (100.0 - lo));
    let mut s =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    s += &format!("<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n", W / 2.0);
    s += &format!("<rect x=\"{L}\" y=\"{T}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", W - L - R, H - T - B);
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let yy = T + (H - T - B) * (1.0 - f);
        s += &format!("<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#c0392b\">{:.3}</text>\n", L - 6.0, yy + 4.0, max_loss * f);
        s += &format!("<text x=\"{}\" y=\"{:.1}\" fill=\"#2471a3\">{:.0}%</text>\n", W - R + 6.0, yy + 4.0, lo + (100.0 - lo) * f);
    }
    for s_ in history {
        s += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x(s_.epoch), H - B + 18.0, s_.epoch);
    }
    s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n", W / 2.0, H - 10.0);
    s += &polyline(&history.iter().map(|h| (x(h.epoch), y_loss(h.train_loss))).collect::<Vec<_>>(), "#c0392b");
    s += &polyline(&history.iter().map(|h| (x(h.epoch), y_acc(h.train_acc))).collect::<Vec<_>>(), "#85c1e9");
    s += &polyline(&history.iter().map(|h| (x(h.epoch), y_acc(h.test_acc))).collect::<Vec<_>>(), "#2471a3");
    s += &format!(
        "<text x=\"{}\" y=\"{}\" fill=\"#c0392b\">train loss</text><text x=\"{}\" y=\"{}\" fill=\"#85c1e9\">train acc</text><text x=\"{}\" y=\"{}\" fill=\"#2471a3\">test acc</text>\n",
        L + 10.0, T + 16.0, L + 100.0, T + 16.0, L + 190.0, T + 16.0
    );
    s += "</svg>\n";
    s
}
