//! Models compiled by the cranelift backend and run in this process: the same lowering,
//! schedules, memory plan and weights as a model built with LLVM, executed by a small Rust
//! executor instead of the C glue: one arena (the memory plan's, followed by staging room
//! for the inputs and outputs), the programs called in order, each parallel loop split
//! across the [`Pool`]'s threads.

use std::cell::RefCell;
use std::ffi::c_void;
use std::time::{Duration, Instant};

use cranelift_backend::{JitKernels, Kernel, KernelFn};
use ir::{Graph, Tensor, TensorType, ValueId};
use llvm_backend::Target;

use crate::load::{checked_outputs, data_ptr};
use crate::plan::{bytes_of, Location, ALIGN};
use crate::pool::Pool;
use crate::{lower_and_schedule_defaults, staged_inputs, weight_blobs, RuntimeError, ScheduleSource};

/// 64-byte aligned bytes, zero-padded to a multiple of 64.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize, fill: u8) -> Result<Aligned, RuntimeError> {
        let size = len.max(1).next_multiple_of(ALIGN);
        let layout = std::alloc::Layout::from_size_align(size, ALIGN).map_err(|e| RuntimeError::Model(e.to_string()))?;
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(RuntimeError::Model(format!("out of memory for {size} bytes")));
        }
        // SAFETY: `ptr` holds `size` bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, size) };
        Ok(Aligned { ptr, layout })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Aligned, RuntimeError> {
        let a = Aligned::new(bytes.len(), 0)?;
        // SAFETY: the allocation is at least as long as `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), a.ptr, bytes.len()) };
        Ok(a)
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

struct Program {
    entry: KernelFn,
    /// The address of every parameter (inside the arena or a weight blob).
    args: Vec<*mut u8>,
    parallel_extent: Option<i64>,
    name: String,
    flops: u64,
}

/// How an input reaches the arena.
enum InputCopy {
    /// Copied whole to this address.
    Whole(*mut u8),
    /// Rows of an NCHW input into the interior of its padded tensor.
    Rows { into: *mut u8, rows: usize, h: usize, w: usize, padded_h: usize, padded_w: usize, top: usize, left: usize, elem: usize },
}

/// A model compiled by cranelift into this process.
pub struct JitModel {
    /// Kept for the code the programs' entry points point into.
    _kernels: JitKernels,
    /// Kept for the memory the programs' arguments point into.
    _arena: Aligned,
    _blobs: Vec<Aligned>,
    programs: Vec<Program>,
    pool: Pool,
    seconds: RefCell<Vec<f64>>,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
    input_copies: Vec<(InputCopy, usize)>,
    /// Where each output is staged, and the outputs copied from elsewhere first: (output,
    /// source, bytes).
    output_stages: Vec<(*mut u8, usize)>,
    output_copies: Vec<(usize, *const u8, usize)>,
}

/// What building a [`JitModel`] took.
#[derive(Debug, Clone)]
pub struct JitReport {
    /// Graph passes, lowering, scheduling, memory plan and weights.
    pub lower: Duration,
    /// cranelift code generation of every program.
    pub codegen: Duration,
    pub programs: usize,
    pub tuned_programs: usize,
}

impl JitModel {
    /// Lowers and schedules `g` for this machine (each program's schedule from `schedules`,
    /// or the default one: the schedules an LLVM build gets), compiles every program with
    /// cranelift and prepares the arena; `threads` 0 means one per CPU.
    pub fn build(g: &Graph, threads: usize, schedules: &dyn ScheduleSource) -> Result<(JitModel, JitReport), RuntimeError> {
        JitModel::build_with(g, threads, schedules, crate::GraphOptions::from(true))
    }

    /// [`JitModel::build`] with the graph prepared as `graph` says (`--dtype f16`).
    pub fn build_with(g: &Graph, threads: usize, schedules: &dyn ScheduleSource, graph: crate::GraphOptions) -> Result<(JitModel, JitReport), RuntimeError> {
        let start = Instant::now();
        let lowered = lower_and_schedule_defaults(g, &Target::host(), "model", graph, schedules, crate::jit_schedule::jit_default_schedule)?;
        let plan = crate::plan::plan(&lowered.graph, &lowered.steps);
        let (blobs, overrides) = weight_blobs(&lowered, &plan)?;
        let lower = start.elapsed();
        let start = Instant::now();
        let kernels: Vec<Kernel> = lowered.programs.iter().map(|p| Kernel { symbol: p.symbol.clone(), func: &p.func }).collect();
        let jit = cranelift_backend::compile(&kernels).map_err(|e| RuntimeError::Cranelift(e.to_string()))?;
        let codegen = start.elapsed();

        let graph = &lowered.graph;
        let blobs: Vec<Aligned> = blobs.iter().map(|b| Aligned::from_bytes(b)).collect::<Result<_, _>>()?;
        // The arena: the plan's, then staging room for every input and output (kernels
        // assume 64-byte aligned buffers whose size is a multiple of 64 bytes).
        let mut staging = Vec::new();
        let mut size = plan.arena_bytes;
        for &v in graph.inputs.iter().chain(&graph.outputs) {
            staging.push(size);
            size += bytes_of(graph, v).max(1).next_multiple_of(ALIGN);
        }
        // NaN everywhere: a program that read memory nothing wrote would give NaN every time.
        let arena = Aligned::new(size, 0xff)?;
        let n_in = graph.inputs.len();
        let address = |v: ValueId| -> Result<*mut u8, RuntimeError> {
            let loc = plan.locations.get(&v).ok_or_else(|| RuntimeError::Model(format!("{v} has no place in the memory plan")))?;
            // SAFETY (all arms): offsets inside the arena and blobs sized by the plan.
            Ok(match loc {
                Location::Input(i) => unsafe { arena.ptr.add(staging[*i]) },
                Location::Output(i) => unsafe { arena.ptr.add(staging[n_in + *i]) },
                Location::Weight(i) => blobs[*i].ptr,
                Location::Arena { offset } => unsafe { arena.ptr.add(*offset) },
            })
        };
        let mut programs = Vec::new();
        let mut once = Vec::new();
        for (k, p) in lowered.programs.iter().enumerate() {
            let args = p
                .args
                .iter()
                .enumerate()
                .map(|(i, &v)| match overrides.get(&(k, i)) {
                    Some(&blob) => Ok(blobs[blob].ptr),
                    None => address(v),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let entry = jit.entry(k).ok_or_else(|| RuntimeError::Cranelift(format!("no code for {}", p.name)))?;
            let prog = Program { entry, args, parallel_extent: p.parallel_extent, name: p.name.clone(), flops: p.flops };
            if p.once {
                once.push(prog);
            } else {
                programs.push(prog);
            }
        }
        let staged = staged_inputs(&lowered);
        let mut input_copies = Vec::new();
        for (i, &v) in graph.inputs.iter().enumerate() {
            let bytes = bytes_of(graph, v);
            let copy = match staged.iter().find(|(pos, _, _)| *pos == i) {
                Some((_, into, pads)) => {
                    let (s, p) = (&graph.ty(v).shape, &graph.ty(*into).shape);
                    InputCopy::Rows {
                        into: address(*into)?,
                        rows: s[0] * s[1] * s[2],
                        h: s[2],
                        w: s[3],
                        padded_h: p[2],
                        padded_w: p[3],
                        top: pads[2],
                        left: pads[3],
                        elem: graph.ty(v).dtype.size_bytes(),
                    }
                }
                // SAFETY: inside the arena.
                None => InputCopy::Whole(unsafe { arena.ptr.add(staging[i]) }),
            };
            input_copies.push((copy, bytes));
        }
        // SAFETY: inside the arena.
        let output_stages: Vec<(*mut u8, usize)> =
            graph.outputs.iter().enumerate().map(|(i, &v)| (unsafe { arena.ptr.add(staging[n_in + i]) }, bytes_of(graph, v))).collect();
        let output_copies = plan
            .output_copies
            .iter()
            .map(|&(i, v)| Ok((i, address(v)? as *const u8, bytes_of(graph, v))))
            .collect::<Result<_, RuntimeError>>()?;
        let report =
            JitReport { lower, codegen, programs: programs.len(), tuned_programs: lowered.programs.iter().filter(|p| p.tuned).count() };
        let model = JitModel {
            _kernels: jit,
            _arena: arena,
            _blobs: blobs,
            seconds: RefCell::new(vec![0.0; programs.len()]),
            programs,
            pool: Pool::new(threads),
            inputs: graph.inputs.iter().map(|&v| graph.ty(v).clone()).collect(),
            outputs: graph.outputs.iter().map(|&v| graph.ty(v).clone()).collect(),
            input_copies,
            output_stages,
            output_copies,
        };
        // The once-programs (borders of padded tensors) run now.
        for p in &once {
            model.call(p);
        }
        Ok((model, report))
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    fn call(&self, p: &Program) {
        // SAFETY: the arguments point into the arena and blobs this model owns, laid out by
        // the memory plan the programs were compiled against.
        unsafe {
            match p.parallel_extent {
                Some(extent) => self.pool.parallel_for(p.entry, p.args.as_ptr(), extent),
                None => (p.entry)(p.args.as_ptr(), 0, 1),
            }
        }
    }

    /// Runs one inference.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outputs = checked_outputs(inputs, &self.inputs, &self.outputs)?;
        // SAFETY: inputs and outputs have the interface's sizes (checked above); the staging
        // room and padded tensors were sized by the same types.
        unsafe {
            for (t, (copy, bytes)) in inputs.iter().zip(&self.input_copies) {
                let src = data_ptr(t) as *const u8;
                match *copy {
                    InputCopy::Whole(dst) => std::ptr::copy_nonoverlapping(src, dst, *bytes),
                    InputCopy::Rows { into, rows, h, w, padded_h, padded_w, top, left, elem } => {
                        for r in 0..rows {
                            let (row, nc) = (r % h, r / h);
                            let dst = into.add(((nc * padded_h + row + top) * padded_w + left) * elem);
                            std::ptr::copy_nonoverlapping(src.add(r * w * elem), dst, w * elem);
                        }
                    }
                }
            }
            let mut seconds = self.seconds.borrow_mut();
            for (i, p) in self.programs.iter().enumerate() {
                let t = Instant::now();
                self.call(p);
                seconds[i] = t.elapsed().as_secs_f64();
            }
            for &(i, src, bytes) in &self.output_copies {
                std::ptr::copy(src, self.output_stages[i].0, bytes);
            }
            for (t, &(stage, bytes)) in outputs.iter_mut().zip(&self.output_stages) {
                std::ptr::copy_nonoverlapping(stage, data_ptr(t) as *mut c_void as *mut u8, bytes);
            }
        }
        Ok(outputs)
    }

    /// (program name, seconds in the last run, flops) of every tensor program.
    pub fn profile(&self) -> Vec<(String, f64, f64)> {
        let seconds = self.seconds.borrow();
        self.programs.iter().zip(seconds.iter()).map(|(p, &s)| (p.name.clone(), s, p.flops as f64)).collect()
    }
}

impl crate::InProcessModel for JitModel {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        JitModel::run(self, inputs)
    }

    fn profile(&self) -> Vec<(String, f64, f64)> {
        JitModel::profile(self)
    }
}
