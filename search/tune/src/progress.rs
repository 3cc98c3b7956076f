//! Progress of a tuning run on stderr: overall trials and time, the total weighted latency
//! (tuned against default), and the current task's trials and best. On a terminal one line
//! is redrawn in place; otherwise a line is printed every few seconds.

use std::io::Write;
use std::time::{Duration, Instant};

/// Where tuning stands after a measurement.
#[derive(Debug, Clone)]
pub struct Status<'a> {
    pub trials: usize,
    pub trial_budget: usize,
    pub elapsed: Duration,
    pub time_budget: Option<Duration>,
    /// The current task (1-based) of `tasks`.
    pub task: usize,
    pub tasks: usize,
    pub name: &'a str,
    pub task_trials: usize,
    pub task_best_s: Option<f64>,
    pub task_default_s: Option<f64>,
    /// Sums over tasks of weight x latency, once every task has one.
    pub total_best_s: Option<f64>,
    pub total_default_s: Option<f64>,
    pub failures: usize,
}

pub trait Progress {
    fn update(&mut self, s: &Status);
    /// A line of its own (a warning, a finished phase).
    fn message(&mut self, line: &str);
    fn finish(&mut self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn update(&mut self, _: &Status) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

pub struct Bar {
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Bar {
    pub fn stderr() -> Bar {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(2) } == 1;
        Bar { tty, last: None, drawn: false }
    }
}

fn ms(s: Option<f64>) -> String {
    s.map(|s| format!("{:.4}", s * 1e3)).unwrap_or_else(|| "-".into())
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The status as one line.
pub fn line(s: &Status, width: usize) -> String {
    let done = if s.trial_budget > 0 { s.trials as f64 / s.trial_budget as f64 } else { 0.0 };
    let done = match s.time_budget {
        Some(t) if t.as_secs_f64() > 0.0 => done.max(s.elapsed.as_secs_f64() / t.as_secs_f64()),
        _ => done,
    }
    .min(1.0);
    let cells = 20;
    let filled = (done * cells as f64).round() as usize;
    let bar: String = (0..cells).map(|i| if i < filled { '#' } else { '-' }).collect();
    let mut text = format!(
        "[{bar}] {}/{} trials {} | total {} ms (default {}) | task {}/{} {}: {} trials, best {} ms (default {})",
        s.trials,
        s.trial_budget,
        clock(s.elapsed),
        ms(s.total_best_s),
        ms(s.total_default_s),
        s.task,
        s.tasks,
        s.name,
        s.task_trials,
        ms(s.task_best_s),
        ms(s.task_default_s)
    );
    if s.failures > 0 {
        text.push_str(&format!(" | {} failed", s.failures));
    }
    if text.chars().count() > width {
        text = text.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
    }
    text
}

impl Progress for Bar {
    fn update(&mut self, s: &Status) {
        let now = Instant::now();
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.last.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", line(s, 160));
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{}", line(s, 400));
        }
        let _ = err.flush();
    }

    fn message(&mut self, text: &str) {
        let mut err = std::io::stderr();
        if self.drawn {
            let _ = write!(err, "\r\x1b[K");
            self.drawn = false;
        }
        let _ = writeln!(err, "{text}");
        self.last = None;
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}
