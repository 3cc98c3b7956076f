//! Tuning for the wgpu target: each task's GPU schedules (workgroup sizes and register tiles,
//! `passes::schedule::gpu_schedule_candidates`) measured on the GPU adapter in this process,
//! by GPU timestamps where the adapter has them and wall time otherwise. The space is small
//! (at most 21 schedules a task), so it is searched exhaustively, default schedule first;
//! each candidate's output is checked against the unscheduled program on the loop IR
//! evaluator. Records go to the same file as the CPU's, with target [`WGPU_TARGET`].

use ir::loops::Func;
use ir::{Graph, Tensor};
use passes::schedule::{gpu_schedule_candidates, Trace};
use wgpu_backend::bundle::{BufferSpec, IoSpec};
use wgpu_backend::{Bundle, Executor};

use crate::inputs::{arguments, rearrange, written_params};
use crate::measure::Stats;
use crate::records::{Record, RecordFile, RecordSchedules};
use crate::task::{task_key, Task};

/// The target name of GPU records.
pub const WGPU_TARGET: &str = "wgpu";

/// Runs before timing, and timed runs (the median is the result).
const WARMUP: usize = 2;
const RUNS: usize = 7;

/// The tasks of `g` for the wgpu target (keys made with [`WGPU_TARGET`]).
pub fn gpu_tasks(g: &Graph) -> crate::error::Result<Vec<Task>> {
    let mut tasks = crate::extract_tasks(g, &llvm_backend::Target::host(), true)?;
    for t in &mut tasks {
        t.key = task_key(&t.func, &t.constants, WGPU_TARGET);
        t.target = WGPU_TARGET.into();
    }
    Ok(tasks)
}

/// The schedules of the wgpu target's records: what `--records` gives the wgpu backend.
pub struct GpuRecordSchedules(pub RecordSchedules);

impl runtime::ScheduleSource for GpuRecordSchedules {
    fn trace_for(&self, func: &Func, constants: &[bool], _: &llvm_backend::Target) -> Option<Trace> {
        self.0.best_for(func, constants, WGPU_TARGET)
    }
}

fn host_bytes(t: &Tensor) -> Vec<u8> {
    t.data.to_le_bytes()
}

/// A scheduled program ready to run alone: every parameter an input (rearranged where the
/// program reads another layout), the written ones also outputs.
struct Single {
    exec: Executor,
    inputs: Vec<Vec<u8>>,
}

impl Single {
    fn new(f: &Func, args: &[Tensor]) -> Result<Single, String> {
        let shader = wgpu_backend::compile(f).map_err(|e| e.to_string())?;
        let mut buffers = Vec::new();
        let mut io = Vec::new();
        let mut inputs = Vec::new();
        for (i, (&p, t)) in f.params().iter().zip(args).enumerate() {
            let b = f.buffer(p);
            let elem = wgpu_backend::wgsl::gpu_elem_bytes(b.dtype).ok_or_else(|| format!("{} tensors", b.dtype))?;
            buffers.push(BufferSpec { bytes: (t.numel() * elem) as u64, init: None });
            let mut bytes = host_bytes(t);
            if let Some(l) = &b.layout {
                bytes = rearrange(&bytes, &(l.view.clone(), l.perm.clone()), b.dtype.size_bytes()).ok_or("a layout that does not fit")?;
            }
            io.push(IoSpec { name: b.name.clone(), dtype: b.dtype.name().into(), shape: vec![t.numel()], buffer: i, staged: None });
            inputs.push(bytes);
        }
        let outputs = written_params(f).into_iter().map(|i| io[i].clone()).collect();
        let exec = Executor::new(&Bundle::single(&f.name, &shader, buffers, io, outputs)).map_err(|e| e.to_string())?;
        Ok(Single { exec, inputs })
    }

    fn run(&self) -> Result<Vec<Vec<u8>>, String> {
        let refs: Vec<&[u8]> = self.inputs.iter().map(|v| v.as_slice()).collect();
        self.exec.run(&refs).map_err(|e| e.to_string())
    }

    /// The program's time in the last run: its GPU timestamps, or the run's wall time.
    fn seconds(&self) -> f64 {
        self.exec.profile().iter().map(|p| p.1).sum()
    }
}

/// Whether `got` (written parameters' bytes, in order) matches the reference within a
/// relative 1e-3 for f32 and exactly otherwise.
fn matches(f: &Func, got: &[Vec<u8>], want: &[Tensor]) -> Result<(), String> {
    for ((&i, g), w) in written_params(f).iter().zip(got).zip(want) {
        let w = host_bytes(w);
        let name = &f.buffer(f.params()[i]).name;
        if f.buffer(f.params()[i]).dtype == ir::DType::F32 {
            let floats = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
            let (a, b) = (floats(g), floats(&w));
            let scale = b.iter().filter(|x| x.is_finite()).fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
            let worst = a.iter().zip(&b).map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() / scale }).fold(0f32, |m, d| {
                if d.is_nan() {
                    f32::INFINITY
                } else {
                    m.max(d)
                }
            });
            if a.len() != b.len() || worst > 1e-3 {
                return Err(format!("wrong output: %{name} differs by {worst:.2e} of its largest value"));
            }
        } else if *g != w {
            return Err(format!("wrong output: %{name} differs"));
        }
    }
    Ok(())
}

/// Measures one candidate: Ok(stats) when it runs and computes what the reference does.
fn measure(scheduled: &Func, args: &[Tensor], want: &[Tensor]) -> Result<Stats, String> {
    let single = Single::new(scheduled, args)?;
    let got = single.run()?;
    matches(scheduled, &got, want)?;
    for _ in 1..WARMUP {
        single.run()?;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        single.run()?;
        times.push(single.seconds());
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let var = times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / times.len() as f64;
    Ok(Stats { median_s: times[times.len() / 2], mean_s: mean, std_s: var.sqrt(), runs: times.len() })
}

/// One task's outcome.
#[derive(Debug, Clone)]
pub struct GpuTaskResult {
    pub name: String,
    pub weight: usize,
    pub default_s: Option<f64>,
    pub best_s: Option<f64>,
    pub measured: usize,
    pub failed: usize,
}

/// Measures up to `per_task` GPU schedules of every task not yet in `records` (a task whose
/// candidates are all recorded is skipped: tuning resumes), appending each measurement;
/// `progress` hears about every task as it starts.
pub fn tune_wgpu(
    tasks: &[Task],
    records: &mut RecordFile,
    per_task: usize,
    progress: &mut dyn FnMut(usize, &Task),
) -> Result<Vec<GpuTaskResult>, String> {
    if !Executor::available() {
        return Err(format!("tuning for wgpu: {}", wgpu_backend::NO_ADAPTER));
    }
    let mut results = Vec::new();
    for (k, task) in tasks.iter().enumerate() {
        progress(k, task);
        let candidates: Vec<Trace> = gpu_schedule_candidates(&task.func).into_iter().take(per_task.max(1)).collect();
        let done: Vec<Trace> = records.of_task(&task.key, WGPU_TARGET).map(|r| r.trace.clone()).collect();
        let mut result =
            GpuTaskResult { name: task.name.clone(), weight: task.weight, default_s: None, best_s: None, measured: 0, failed: 0 };
        let best_of = |records: &RecordFile| records.best(&task.key, WGPU_TARGET).and_then(|r| r.median_s);
        let default_of =
            |records: &RecordFile, t: &Trace| records.of_task(&task.key, WGPU_TARGET).find(|r| r.trace == *t).and_then(|r| r.median_s);
        let args = arguments(&task.func, 1).ok_or_else(|| format!("{}: no arguments for its element types", task.name))?;
        let mut want = args.clone();
        let reference = interp::loops::run_func(&task.func, &mut want).map_err(|e| e.to_string());
        let want: Vec<Tensor> = written_params(&task.func).into_iter().map(|i| want[i].clone()).collect();
        for trace in &candidates {
            if done.contains(trace) {
                continue;
            }
            let outcome = match (&reference, trace.apply(&task.func)) {
                (Err(e), _) => Err(format!("reference run: {e}")),
                (_, Err(e)) => Err(e.to_string()),
                (Ok(()), Ok(scheduled)) => measure(&scheduled, &args, &want),
            };
            result.measured += 1;
            result.failed += outcome.is_err() as usize;
            records.append(Record::new(&task.key, &task.name, WGPU_TARGET, trace, &outcome, outcome.is_ok())).map_err(|e| e.to_string())?;
        }
        result.default_s = candidates.first().and_then(|t| default_of(records, t));
        result.best_s = best_of(records);
        results.push(result);
    }
    Ok(results)
}
