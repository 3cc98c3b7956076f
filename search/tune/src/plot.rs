//! The tuning curve as an SVG: best total weighted latency (ms) against trials, with the
//! default schedules' total as a dashed line.

use passes::schedule::default_schedule;

use crate::records::RecordFile;
use crate::task::Task;

/// The tuning curve of `tasks` over the whole records file, in the order the measurements
/// were appended (so across resumed runs): (measurements of these tasks so far, best total
/// weighted latency in seconds) from the first measurement at which every task has a usable
/// one, and the total of the default schedules when all are recorded.
pub fn records_curve(tasks: &[Task], records: &RecordFile, vector_width: usize) -> (Vec<(usize, f64)>, Option<f64>) {
    let index: std::collections::HashMap<(&str, &str), usize> =
        tasks.iter().enumerate().map(|(i, t)| ((t.key.as_str(), t.target.as_str()), i)).collect();
    let defaults: Vec<String> = tasks.iter().map(|t| default_schedule(&t.func, vector_width).to_json()).collect();
    let mut best: Vec<Option<f64>> = vec![None; tasks.len()];
    let mut default: Vec<Option<f64>> = vec![None; tasks.len()];
    let mut curve = Vec::new();
    let mut n = 0;
    for r in &records.records {
        let Some(&i) = index.get(&(r.key.as_str(), r.target.as_str())) else { continue };
        n += 1;
        if r.error.is_none() && default[i].is_none() && r.trace.to_json() == defaults[i] {
            default[i] = r.median_s;
        }
        if r.usable() && best[i].is_none_or(|b| r.median_s.unwrap_or(f64::MAX) < b) {
            best[i] = r.median_s;
        }
        let total: Option<f64> = best.iter().zip(tasks).map(|(b, t)| b.map(|b| b * t.weight as f64)).sum();
        if let Some(t) = total {
            // Only the steps: a point where the total changes, and the last.
            if curve.last().is_none_or(|p: &(usize, f64)| p.1 != t) {
                curve.push((n, t));
            }
        }
    }
    if let Some(last) = curve.last().copied() {
        if last.0 != n {
            curve.push((n, last.1));
        }
    }
    let default_total = default.iter().zip(tasks).map(|(d, t)| d.map(|d| d * t.weight as f64)).sum();
    (curve, default_total)
}

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
    // Whole-trial ticks on x, five intervals on y.
    let step = (max_x / 5.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= max_x {
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"black\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4:.0}</text>\n",
            x(t),
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0,
            t
        );
        t += step;
    }
    for i in 0..=5 {
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
    use super::*;
    use crate::measure::Stats;
    use crate::records::Record;
    use passes::schedule::Trace;

    #[test]
    fn the_records_curve_follows_the_file_across_runs() {
        let func = |n: usize| {
            ir::loops::parse_func(&format!(
                "func \"relu\" {{\n  param %x: f32[{n}]\n  param %y: f32[{n}]\n  for i in 0..{n} {{\n    %y[i] = max(%x[i], 0.0)\n  }}\n}}"
            ))
            .unwrap()
        };
        let task = |n: usize, weight: usize| Task {
            key: format!("k{n}"),
            name: format!("relu{n}"),
            target: "t".into(),
            func: func(n),
            constants: vec![false, false],
            weight,
            flops: n as u64,
        };
        let tasks = [task(64, 2), task(128, 1)];
        let path = std::env::temp_dir().join(format!("chanasc-curve-test-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut file = RecordFile::open(&path).unwrap();
        let ok = |m: f64| Ok(Stats { median_s: m, mean_s: m, std_s: 0.0, runs: 1 });
        let d0 = default_schedule(&tasks[0].func, 16);
        let d1 = default_schedule(&tasks[1].func, 16);
        file.append(Record::new("k64", "a", "t", &d0, &ok(4e-6), true)).unwrap();
        file.append(Record::new("other", "x", "t", &Trace::default(), &ok(1.0), true)).unwrap();
        file.append(Record::new("k128", "b", "t", &d1, &ok(3e-6), true)).unwrap();
        file.append(Record::new("k64", "a", "t", &Trace::default(), &ok(2e-6), true)).unwrap();
        file.append(Record::new("k64", "a", "t", &Trace(vec![]), &ok(1e-6), false)).unwrap();
        let (curve, default_total) = records_curve(&tasks, &file, 16);
        let _ = std::fs::remove_file(&path);
        assert_eq!(default_total, Some(2.0 * 4e-6 + 3e-6));
        // Defined once both tasks have a latency (at their third record), improved at the
        // fourth; the unchecked fifth does not count but extends the curve.
        assert_eq!(curve.len(), 3);
        assert_eq!(curve[0].0, 2);
        assert!((curve[0].1 - 11e-6).abs() < 1e-12 && (curve[1].1 - 7e-6).abs() < 1e-12);
        assert_eq!((curve[2].0, curve[2].1), (4, curve[1].1));
    }

    #[test]
    fn the_plot_is_an_svg_with_the_curve() {
        let svg = tuning_curve_svg(&[(1, 2e-3), (5, 1.5e-3), (9, 1.2e-3)], Some(2e-3), "m <x>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("default schedules 2.000 ms") && svg.contains("m &lt;x&gt;"));
    }
}
