//! Models for the GPU through wgpu: the graph lowered and scheduled with the GPU default
//! schedules, every program compiled to WGSL, and a [`Bundle`] made of them with the memory
//! plan's storage (one GPU buffer per place of the plan: an input, an output, a weight blob,
//! an arena offset; values that share an offset share the buffer, which is as large as the
//! largest of them) and the weights. `chanasc compile --arch wgpu` writes the bundle; a
//! [`GpuModel`] runs it in this process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ir::{DType, Graph, Tensor, TensorType, ValueId};
use llvm_backend::Target;
use wgpu_backend::bundle::{BufferSpec, IoSpec, Manifest, ProgramSpec, Staging, FORMAT};
use wgpu_backend::{Bundle, Executor};

use crate::load::{checked_outputs, data_ptr};
use crate::plan::Location;
use crate::{lower_and_schedule_defaults, staged_inputs, weight_blobs, RuntimeError, ScheduleSource};

/// What building a bundle took.
#[derive(Debug, Clone)]
pub struct GpuReport {
    /// Graph passes, lowering, scheduling, memory plan and weights.
    pub lower: Duration,
    /// WGSL generation of every program.
    pub codegen: Duration,
    pub programs: usize,
    pub once_programs: usize,
    pub tuned_programs: usize,
    pub buffer_bytes: u64,
    pub weight_bytes: usize,
    /// Each per-run program's name and schedule (its trace as JSON).
    pub schedules: Vec<(String, String)>,
}

/// A place of the memory plan, which becomes one GPU buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Input(usize),
    Output(usize),
    Blob(usize),
    Arena(usize),
}

fn gpu_bytes(t: &TensorType) -> Result<u64, RuntimeError> {
    let elem = wgpu_backend::wgsl::gpu_elem_bytes(t.dtype)
        .ok_or_else(|| RuntimeError::Model(format!("the GPU backend does not support {} tensors", t.dtype)))?;
    Ok((t.numel() * elem) as u64)
}

/// A weight's bytes as the GPU stores them (a bool byte becomes a u32).
fn gpu_weight(bytes: &[u8], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::Bool => bytes.iter().flat_map(|&b| ((b != 0) as u32).to_le_bytes()).collect(),
        _ => bytes.to_vec(),
    }
}

/// Lowers, schedules (each program's schedule from `schedules`, or the GPU default) and
/// compiles `g` for the GPU.
pub fn gpu_bundle(g: &Graph, schedules: &dyn ScheduleSource) -> Result<(Bundle, GpuReport), RuntimeError> {
    gpu_bundle_with(g, schedules, crate::GraphOptions::from(true))
}

/// [`gpu_bundle`] with the graph prepared as `graph` says (`--dtype f16`: the device needs
/// shader-f16, see [`Executor::supports_f16`]).
pub fn gpu_bundle_with(g: &Graph, schedules: &dyn ScheduleSource, graph: crate::GraphOptions) -> Result<(Bundle, GpuReport), RuntimeError> {
    let start = Instant::now();
    let lowered = lower_and_schedule_defaults(g, &Target::host(), "model", graph, schedules, passes::schedule::gpu_default_schedule)?;
    let plan = crate::plan::plan(&lowered.graph, &lowered.steps);
    let (blobs, overrides) = weight_blobs(&lowered, &plan)?;
    let lower = start.elapsed();
    let start = Instant::now();
    let graph = &lowered.graph;

    let mut places: HashMap<Place, usize> = HashMap::new();
    let mut buffers: Vec<BufferSpec> = Vec::new();
    let mut weights: Vec<u8> = Vec::new();
    // The buffer of `place` for value `v`, grown to hold it.
    let mut buffer_for = |place: Place, v: ValueId, buffers: &mut Vec<BufferSpec>, weights: &mut Vec<u8>| -> Result<usize, RuntimeError> {
        let t = graph.ty(v);
        let bytes = gpu_bytes(t)?;
        if let Some(&i) = places.get(&place) {
            buffers[i].bytes = buffers[i].bytes.max(bytes);
            return Ok(i);
        }
        let mut spec = BufferSpec { bytes, init: None };
        if let Place::Blob(b) = place {
            let data = gpu_weight(&blobs[b], t.dtype);
            spec.bytes = spec.bytes.max(data.len() as u64);
            spec.init = Some((weights.len() as u64, data.len() as u64));
            weights.extend_from_slice(&data);
            weights.resize(weights.len().next_multiple_of(4), 0);
        }
        buffers.push(spec);
        places.insert(place, buffers.len() - 1);
        Ok(buffers.len() - 1)
    };
    let place_of = |v: ValueId| -> Result<Place, RuntimeError> {
        Ok(match plan.locations.get(&v).ok_or_else(|| RuntimeError::Model(format!("{v} has no place in the memory plan")))? {
            Location::Input(i) => Place::Input(*i),
            Location::Output(i) => Place::Output(*i),
            Location::Weight(i) => Place::Blob(*i),
            Location::Arena { offset } => Place::Arena(*offset),
        })
    };

    let mut programs = Vec::new();
    let mut shaders = Vec::new();
    for (k, p) in lowered.programs.iter().enumerate() {
        let shader = wgpu_backend::compile(&p.func).map_err(|e| RuntimeError::Model(format!("{e} ({})", p.name)))?;
        let mut bindings = Vec::new();
        for (i, &v) in p.args.iter().enumerate() {
            let place = match overrides.get(&(k, i)) {
                Some(&blob) => Place::Blob(blob),
                None => place_of(v)?,
            };
            bindings.push(buffer_for(place, v, &mut buffers, &mut weights)?);
        }
        for s in &shader.scratch {
            buffers.push(BufferSpec { bytes: s.bytes, init: None });
            bindings.push(buffers.len() - 1);
        }
        programs.push(ProgramSpec {
            name: p.name.clone(),
            shader: format!("shaders/k{k}.wgsl"),
            bindings,
            read_only: shader.read_only.clone(),
            dispatches: shader.dispatches.clone(),
            once: p.once,
            flops: p.flops,
            unchecked: shader.indices_proven,
        });
        shaders.push(shader.source);
    }
    let staged = staged_inputs(&lowered);
    let mut inputs = Vec::new();
    for (i, &v) in graph.inputs.iter().enumerate() {
        let t = graph.ty(v);
        let name = graph.value(v).name.clone().unwrap_or_else(|| format!("input{i}"));
        let (buffer, staged) = match staged.iter().find(|(pos, _, _)| *pos == i) {
            Some((_, into, pads)) => {
                let (s, p) = (&t.shape, &graph.ty(*into).shape);
                let staging = Staging { h: s[2], w: s[3], padded_h: p[2], padded_w: p[3], top: pads[2], left: pads[3] };
                (buffer_for(place_of(*into)?, *into, &mut buffers, &mut weights)?, Some(staging))
            }
            None => (buffer_for(Place::Input(i), v, &mut buffers, &mut weights)?, None),
        };
        inputs.push(IoSpec { name, dtype: t.dtype.name().into(), shape: t.shape.clone(), buffer, staged });
    }
    let mut outputs = Vec::new();
    for (i, &v) in graph.outputs.iter().enumerate() {
        let t = graph.ty(v);
        let name = graph.value(v).name.clone().unwrap_or_else(|| format!("output{i}"));
        let buffer = match plan.output_copies.iter().find(|(o, _)| *o == i) {
            Some(&(_, src)) => buffer_for(place_of(src)?, src, &mut buffers, &mut weights)?,
            None => buffer_for(Place::Output(i), v, &mut buffers, &mut weights)?,
        };
        outputs.push(IoSpec { name, dtype: t.dtype.name().into(), shape: t.shape.clone(), buffer, staged: None });
    }
    let report = GpuReport {
        lower,
        codegen: start.elapsed(),
        programs: programs.iter().filter(|p| !p.once).count(),
        once_programs: programs.iter().filter(|p| p.once).count(),
        tuned_programs: lowered.programs.iter().filter(|p| p.tuned).count(),
        buffer_bytes: buffers.iter().map(|b| b.bytes).sum(),
        weight_bytes: weights.len(),
        schedules: lowered.programs.iter().filter(|p| !p.once).map(|p| (p.name.clone(), p.trace.to_json())).collect(),
    };
    let manifest = Manifest { format: FORMAT, buffers, programs, inputs, outputs };
    Ok((Bundle { manifest, shaders, weights }, report))
}

/// A model running on the GPU in this process.
pub struct GpuModel {
    exec: Executor,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
}

impl GpuModel {
    /// Builds the bundle of `g` and loads it onto the first GPU adapter.
    pub fn build(g: &Graph, schedules: &dyn ScheduleSource) -> Result<(GpuModel, GpuReport), RuntimeError> {
        GpuModel::build_with(g, schedules, crate::GraphOptions::from(true))
    }

    /// [`GpuModel::build`] with the graph prepared as `graph` says.
    pub fn build_with(g: &Graph, schedules: &dyn ScheduleSource, graph: crate::GraphOptions) -> Result<(GpuModel, GpuReport), RuntimeError> {
        let (bundle, report) = gpu_bundle_with(g, schedules, graph)?;
        let model = GpuModel::load(&bundle)?;
        Ok((model, report))
    }

    pub fn load(bundle: &Bundle) -> Result<GpuModel, RuntimeError> {
        let exec = Executor::new(bundle).map_err(|e| RuntimeError::Model(e.to_string()))?;
        let ty = |io: &IoSpec| -> Result<TensorType, RuntimeError> {
            let dtype =
                DType::from_name(&io.dtype).ok_or_else(|| RuntimeError::Model(format!("{}: unknown type {}", io.name, io.dtype)))?;
            Ok(TensorType::new(dtype, io.shape.clone()))
        };
        let inputs = exec.inputs().iter().map(ty).collect::<Result<_, _>>()?;
        let outputs = exec.outputs().iter().map(ty).collect::<Result<_, _>>()?;
        Ok(GpuModel { exec, inputs, outputs })
    }

    /// Whether the GPU runs f16 models (its adapter offers shader-f16).
    pub fn supports_f16() -> bool {
        Executor::supports_f16()
    }

    /// The adapter the model runs on.
    pub fn adapter(&self) -> &str {
        self.exec.adapter_name()
    }

    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outputs = checked_outputs(inputs, &self.inputs, &self.outputs)?;
        // SAFETY: each tensor's data holds numel elements of its dtype's size (checked above).
        let host: Vec<&[u8]> = inputs
            .iter()
            .map(|t| unsafe { std::slice::from_raw_parts(data_ptr(t) as *const u8, t.ty().numel() * t.ty().dtype.size_bytes()) })
            .collect();
        let results = self.exec.run(&host).map_err(|e| RuntimeError::Model(e.to_string()))?;
        for (t, bytes) in outputs.iter_mut().zip(results) {
            let n = t.ty().numel() * t.ty().dtype.size_bytes();
            if bytes.len() != n {
                return Err(RuntimeError::Model(format!("the GPU returned {} bytes for an output of {n}", bytes.len())));
            }
            // SAFETY: the output tensor holds `n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data_ptr(t) as *mut u8, n) };
        }
        Ok(outputs)
    }
}

impl crate::InProcessModel for GpuModel {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        GpuModel::run(self, inputs)
    }

    fn profile(&self) -> Vec<(String, f64, f64)> {
        self.exec.profile()
    }
}
