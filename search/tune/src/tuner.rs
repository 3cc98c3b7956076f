//! The tuning loop over a model's tasks.
//!
//! 1. What the records file already holds for each task is loaded: those traces are never
//!    measured again (resuming), their measurements train the cost model, and the best
//!    usable one is the task's best so far.
//! 2. Every task's default schedule is measured first (unless recorded): it is the
//!    baseline a tuned schedule must beat, so tuning never ends worse than the defaults.
//! 3. Then rounds: the task with the largest weighted best latency, discounted by the trials
//!    it already had, gets a batch of candidates from its evolutionary search; each is
//!    measured and recorded. A candidate faster than its task's best has its output checked
//!    against the unscheduled program before it is accepted (recorded as `checked`). After
//!    each batch the cost model is refit on every measurement so far.
//!
//! The model predicts ln(latency / the task's default latency) from the features of the
//! scheduled loop IR, one model for all tasks, so that what it learns on one task (say, that
//! strided vector loads are slow) carries over to the others.

use std::time::{Duration, Instant};

use ir::loops::Func;
use passes::schedule::{default_schedule, Trace};

use crate::error::Result;
use crate::features::Caches;
use crate::inputs::{arguments, to_bytes, written_params};
use crate::measure::{Measurer, Stats};
use crate::model::{Gbdt, Params};
use crate::progress::{Progress, Status};
use crate::records::{Record, RecordFile};
use crate::rng::Rng;
use crate::search::TaskSearch;
use crate::task::Task;

#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// New measurements in this run, over all tasks.
    pub trials: usize,
    pub time_budget: Option<Duration>,
    pub seed: u64,
    /// Candidates measured per round of a task.
    pub batch: usize,
    /// Share of each batch chosen at random rather than by the model.
    pub epsilon: f64,
    pub vector_width: usize,
    pub caches: Caches,
}

impl TuneOptions {
    pub fn new(trials: usize, vector_width: usize) -> TuneOptions {
        TuneOptions { trials, time_budget: None, seed: 0, batch: 8, epsilon: 0.2, vector_width, caches: Caches::host() }
    }
}

#[derive(Debug, Clone)]
pub struct TaskResult {
    pub key: String,
    pub name: String,
    pub weight: usize,
    pub flops: u64,
    pub default_s: Option<f64>,
    pub best_s: Option<f64>,
    /// Measurements of this run, and how many of them failed.
    pub trials: usize,
    pub failures: usize,
    /// Measurements of earlier runs found in the records.
    pub recorded: usize,
}

#[derive(Debug, Clone)]
pub struct TuneReport {
    pub tasks: Vec<TaskResult>,
    pub trials: usize,
    pub failures: usize,
    /// (trials of this run, best total weighted latency in seconds), from the first trial at
    /// which every task had a latency.
    pub curve: Vec<(usize, f64)>,
    pub default_total_s: Option<f64>,
    pub best_total_s: Option<f64>,
    pub elapsed: Duration,
}

/// Seed of the arguments of output checks.
const CHECK_SEED: u64 = 7;
/// Measurements before the cost model is used (until then candidates are ranked randomly).
const MIN_SAMPLES: usize = 8;
/// A task whose every candidate failed this many times is given up.
const MAX_BLIND_FAILURES: usize = 8;

struct State<'a> {
    task: &'a Task,
    search: TaskSearch,
    default: Trace,
    default_s: Option<f64>,
    /// The normalizer of scores: the default's latency, or the first measured one.
    base: Option<f64>,
    best: Option<(f64, Trace)>,
    /// Reference outputs of the checks, made on first use.
    reference: Option<std::result::Result<Vec<u8>, String>>,
    recorded: usize,
    trials: usize,
    failures: usize,
    exhausted: bool,
    /// The best latency after each trial of this run.
    history: Vec<f64>,
}

impl State<'_> {
    fn total_trials(&self) -> usize {
        self.recorded + self.trials
    }
}

/// One measurement for the model: features and score.
struct Sample {
    features: Vec<f64>,
    latency: f64,
    task: usize,
}

pub fn tune(
    tasks: &[Task],
    records: &mut RecordFile,
    measurer: &mut dyn Measurer,
    opts: &TuneOptions,
    progress: &mut dyn Progress,
) -> Result<TuneReport> {
    let start = Instant::now();
    let mut rng = Rng::new(opts.seed);
    let mut states: Vec<State> = Vec::with_capacity(tasks.len());
    let mut samples: Vec<Sample> = Vec::new();
    for (ti, task) in tasks.iter().enumerate() {
        let mut search = TaskSearch::new(&task.func, &task.constants, opts.vector_width, opts.caches);
        let default = default_schedule(&task.func, opts.vector_width);
        let default_json = default.to_json();
        let recorded: Vec<&Record> = records.of_task(&task.key, &task.target).collect();
        let latency = |r: &Record| if r.error.is_none() { r.median_s } else { None };
        let default_s = recorded.iter().filter(|r| r.trace.to_json() == default_json).find_map(|r| latency(r));
        let base = default_s.or_else(|| recorded.iter().find_map(|r| latency(r)));
        let mut best: Option<(f64, Trace)> = None;
        for r in &recorded {
            if r.usable() && best.as_ref().is_none_or(|b| r.median_s.unwrap_or(f64::MAX) < b.0) {
                best = Some((r.median_s.unwrap_or(f64::MAX), r.trace.clone()));
            }
            let json = r.trace.to_json();
            match (latency(r), base, r.trace.apply(&task.func)) {
                (Some(l), Some(b), Ok(scheduled)) => {
                    samples.push(Sample { features: search.features_of(&scheduled), latency: l, task: ti });
                    search.mark_measured(&json, Some((l / b).ln()));
                }
                _ => search.mark_measured(&json, None),
            }
        }
        states.push(State {
            task,
            search,
            default,
            default_s,
            base,
            best,
            reference: None,
            recorded: recorded.len(),
            trials: 0,
            failures: 0,
            exhausted: false,
            history: Vec::new(),
        });
    }

    let mut report_curve: Vec<(usize, f64)> = Vec::new();
    let mut run = Run { trials: 0, failures: 0, start, opts, curve: &mut report_curve };
    let default_total = |states: &[State]| -> Option<f64> { states.iter().map(|s| s.default_s.map(|d| d * s.task.weight as f64)).sum() };
    let best_total = |states: &[State]| -> Option<f64> { states.iter().map(|s| s.best.as_ref().map(|b| b.0 * s.task.weight as f64)).sum() };

    // The baselines.
    for ti in 0..states.len() {
        if !run.more() {
            break;
        }
        if states[ti].default_s.is_some() || states[ti].search.is_measured(&states[ti].default.to_json()) {
            continue;
        }
        let trace = states[ti].default.clone();
        let scheduled = trace.apply(&states[ti].task.func)?;
        let features = states[ti].search.features_of(&scheduled);
        if let Some(latency) = measure_one(&mut states[ti], &trace, &scheduled, measurer, records, &mut run)? {
            states[ti].default_s = Some(latency);
            samples.push(Sample { features, latency, task: ti });
        }
        let (d, b) = (default_total(&states), best_total(&states));
        run.point(b);
        progress.update(&status(&states, ti, &run, d, b));
    }
    let mut model = fit(&samples, &states);

    // The search.
    while run.more() {
        let Some(ti) = pick_task(&states) else {
            progress.message("every task's space is exhausted");
            break;
        };
        let batch = opts.batch.max(1).min(opts.trials - run.trials);
        let candidates = states[ti].search.propose(model.as_ref(), &mut rng, batch, opts.epsilon);
        if candidates.is_empty() {
            states[ti].exhausted = true;
            continue;
        }
        for c in candidates {
            if !run.more() {
                break;
            }
            let Ok(scheduled) = c.trace.apply(&states[ti].task.func) else { continue };
            if let Some(latency) = measure_one(&mut states[ti], &c.trace, &scheduled, measurer, records, &mut run)? {
                samples.push(Sample { features: c.features.clone(), latency, task: ti });
            }
            let (d, b) = (default_total(&states), best_total(&states));
            run.point(b);
            progress.update(&status(&states, ti, &run, d, b));
        }
        model = fit(&samples, &states);
    }
    progress.finish();
    let tasks_out = states
        .iter()
        .map(|s| TaskResult {
            key: s.task.key.clone(),
            name: s.task.name.clone(),
            weight: s.task.weight,
            flops: s.task.flops,
            default_s: s.default_s,
            best_s: s.best.as_ref().map(|b| b.0),
            trials: s.trials,
            failures: s.failures,
            recorded: s.recorded,
        })
        .collect();
    let (trials, failures) = (run.trials, run.failures);
    Ok(TuneReport {
        tasks: tasks_out,
        trials,
        failures,
        curve: report_curve,
        default_total_s: default_total(&states),
        best_total_s: best_total(&states),
        elapsed: start.elapsed(),
    })
}

/// Counters of this run.
struct Run<'a> {
    trials: usize,
    failures: usize,
    start: Instant,
    opts: &'a TuneOptions,
    curve: &'a mut Vec<(usize, f64)>,
}

impl Run<'_> {
    fn more(&self) -> bool {
        self.trials < self.opts.trials && self.opts.time_budget.is_none_or(|t| self.start.elapsed() < t)
    }

    fn point(&mut self, total: Option<f64>) {
        if let Some(t) = total {
            if self.curve.last().is_none_or(|p| p.0 != self.trials) {
                self.curve.push((self.trials, t));
            } else if let Some(last) = self.curve.last_mut() {
                last.1 = t;
            }
        }
    }
}

fn status<'a>(states: &'a [State], ti: usize, run: &Run, d: Option<f64>, b: Option<f64>) -> Status<'a> {
    let s = &states[ti];
    Status {
        trials: run.trials,
        trial_budget: run.opts.trials,
        elapsed: run.start.elapsed(),
        time_budget: run.opts.time_budget,
        task: ti + 1,
        tasks: states.len(),
        name: &s.task.name,
        task_trials: s.total_trials(),
        task_best_s: s.best.as_ref().map(|b| b.0),
        task_default_s: s.default_s,
        total_best_s: b,
        total_default_s: d,
        failures: run.failures,
    }
}

/// Measures one candidate, checks it when it beats the task's best, records it, and marks it
/// measured in the task's search; its latency when it ran and, if checked, was right.
fn measure_one(
    s: &mut State,
    trace: &Trace,
    scheduled: &Func,
    measurer: &mut dyn Measurer,
    records: &mut RecordFile,
    run: &mut Run,
) -> Result<Option<f64>> {
    let mut result: std::result::Result<Stats, String> = measurer.measure(s.task, scheduled);
    run.trials += 1;
    s.trials += 1;
    let mut checked = false;
    if let Ok(st) = &result {
        if s.best.as_ref().is_none_or(|b| st.median_s < b.0) {
            match check(s, scheduled, measurer) {
                Ok(()) => checked = true,
                Err(e) => result = Err(format!("wrong output: {e}")),
            }
        }
    }
    records.append(Record::new(&s.task.key, &s.task.name, &s.task.target, trace, &result, checked))?;
    let latency = result.as_ref().ok().map(|st| st.median_s);
    match latency {
        Some(l) => {
            let base = *s.base.get_or_insert(l);
            s.search.mark_measured(&trace.to_json(), Some((l / base).ln()));
            if checked {
                s.best = Some((l, trace.clone()));
            }
        }
        None => {
            run.failures += 1;
            s.failures += 1;
            s.search.mark_measured(&trace.to_json(), None);
        }
    }
    if let Some((b, _)) = &s.best {
        s.history.push(*b);
    }
    Ok(latency)
}

/// Compares what `scheduled` writes with the reference: the unscheduled program on the loop
/// IR evaluator, or, when the evaluator cannot run it, the default schedule's kernel.
fn check(s: &mut State, scheduled: &Func, measurer: &mut dyn Measurer) -> std::result::Result<(), String> {
    if s.reference.is_none() {
        let reference = match interp_outputs(&s.task.func) {
            Ok(bytes) => Ok(bytes),
            Err(_) => {
                let default = s.default.apply(&s.task.func).map_err(|e| e.to_string())?;
                measurer.outputs(s.task, &default, CHECK_SEED).map_err(|e| format!("reference run of the default schedule: {e}"))
            }
        };
        s.reference = Some(reference);
    }
    let reference = match s.reference.as_ref() {
        Some(Ok(r)) => r.clone(),
        Some(Err(e)) => return Err(e.clone()),
        None => return Err("no reference".into()),
    };
    let got = measurer.outputs(s.task, scheduled, CHECK_SEED)?;
    compare(&s.task.func, &reference, &got)
}

/// The bytes of the parameters the unscheduled program writes, run on the evaluator.
pub fn interp_outputs(func: &Func) -> std::result::Result<Vec<u8>, String> {
    let mut args = arguments(func, CHECK_SEED).ok_or("unsupported parameter type")?;
    interp::loops::run_func(func, &mut args).map_err(|e| e.to_string())?;
    Ok(written_params(func).iter().flat_map(|&i| to_bytes(&args[i].data)).collect())
}

/// Element-wise comparison of written parameters (f32 within 1e-3 relative, or absolute
/// near zero, since schedules reorder sums; other types exactly).
fn compare(func: &Func, want: &[u8], got: &[u8]) -> std::result::Result<(), String> {
    if want.len() != got.len() {
        return Err(format!("{} bytes written, {} expected", got.len(), want.len()));
    }
    let params = func.params();
    let mut at = 0;
    for i in written_params(func) {
        let b = func.buffer(params[i]);
        let n = b.bytes();
        let (w, g) = (&want[at..at + n], &got[at..at + n]);
        if b.dtype == ir::DType::F32 {
            for (k, (wc, gc)) in w.chunks_exact(4).zip(g.chunks_exact(4)).enumerate() {
                let x = f32::from_le_bytes([wc[0], wc[1], wc[2], wc[3]]);
                let y = f32::from_le_bytes([gc[0], gc[1], gc[2], gc[3]]);
                let close = (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-3 * (1.0 + x.abs());
                if !close {
                    return Err(format!("%{}[{k}] is {y}, expected {x}", b.name));
                }
            }
        } else if w != g {
            return Err(format!("%{} differs", b.name));
        }
        at += n;
    }
    Ok(())
}

/// The cost model fit on every sample whose task has a base.
fn fit(samples: &[Sample], states: &[State]) -> Option<Gbdt> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for s in samples {
        if let Some(base) = states[s.task].base {
            x.push(s.features.clone());
            y.push((s.latency / base).ln());
        }
    }
    (x.len() >= MIN_SAMPLES).then(|| Gbdt::fit(&x, &y, &Params::default()))
}

/// Trials over which a task's recent improvement is measured.
const WINDOW: usize = 16;

/// The next task to search: the one whose next trial promises to cut the model's total
/// latency most, estimated (like Ansor's task scheduler) from its recent improvement per
/// trial over the last WINDOW trials plus an optimistic term, its best latency over its
/// trials so far, that fades as it is searched; both times its weight. A task that stopped
/// improving (a memory-bound matrix-vector product) thus yields to the others. Tasks with
/// nothing measured yet come first; tasks whose candidates all fail are given up.
fn pick_task(states: &[State]) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, s) in states.iter().enumerate() {
        if s.exhausted {
            continue;
        }
        let priority = match &s.best {
            Some((latency, _)) => {
                let h = &s.history;
                let recent = if h.len() > WINDOW { (h[h.len() - 1 - WINDOW] - h[h.len() - 1]) / WINDOW as f64 } else { 0.0 };
                s.task.weight as f64 * (recent + latency / (1.0 + s.total_trials() as f64))
            }
            None if s.failures < MAX_BLIND_FAILURES => f64::INFINITY,
            None => continue,
        };
        if best.is_none_or(|b| priority > b.0) {
            best = Some((priority, i));
        }
    }
    best.map(|b| b.1)
}
