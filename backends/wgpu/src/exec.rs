//! Runs a [`Bundle`] on a wgpu device: every buffer allocated and every weight uploaded
//! once, one compute pipeline per dispatch, and each run one command encoder (one compute
//! pass of all dispatches, then the copies of the outputs to a mapped read-back buffer).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::bundle::{Bundle, IoSpec};
use crate::WgpuError;

/// What tests and tools print when the machine has no adapter.
pub const NO_ADAPTER: &str = "no GPU adapter (install mesa-vulkan-drivers)";

struct Program {
    name: String,
    flops: u64,
    bind_group: wgpu::BindGroup,
    dispatches: Vec<(wgpu::ComputePipeline, [u32; 2])>,
}

pub struct Executor {
    device: wgpu::Device,
    queue: wgpu::Queue,
    buffers: Vec<wgpu::Buffer>,
    programs: Vec<Program>,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    /// For each staged input, the host image of its padded tensor (borders as the
    /// once-programs wrote them), so that an input is one upload.
    images: Vec<Option<Mutex<Vec<u8>>>>,
    /// Outputs' offsets in the read-back buffer.
    readback: wgpu::Buffer,
    readback_offsets: Vec<u64>,
    errors: Arc<Mutex<Vec<String>>>,
    adapter: String,
    last_seconds: Mutex<f64>,
    timer: Option<Timer>,
    /// Seconds of each program in the last run (from GPU timestamps).
    program_seconds: Mutex<Vec<f64>>,
}

/// GPU timestamps at the start and end of each program's compute pass.
struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per tick.
    period: f64,
}

/// Bytes of one element on the GPU for a host element type.
fn gpu_elem_bytes(io: &IoSpec) -> Result<usize, WgpuError> {
    Ok(match io.host_elem_bytes()? {
        1 => 4,
        n => n,
    })
}

/// Sizes of wgpu copies and writes are multiples of 4 bytes.
fn padded4(n: u64) -> u64 {
    n.max(4).next_multiple_of(4)
}

/// The process's device: created once (a device is slow to create on lavapipe, and tests build
/// hundreds of models), shared by every executor.
struct Shared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    errors: Arc<Mutex<Vec<String>>>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

fn shared() -> Result<&'static Shared, WgpuError> {
    let s = SHARED.get_or_init(|| {
        let adapter = Executor::adapter().map_err(|e| e.to_string())?;
        let info = adapter.get_info();
        // Timestamps, where the adapter has them, time each program of a run; f16 in shaders
        // (`enable f16`, `array<f16>` storage), where it has that, runs f16 models.
        let required_features = adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let desc =
            wgpu::DeviceDescriptor { label: Some("chanasc"), required_limits: adapter.limits(), required_features, ..Default::default() };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| format!("wgpu device: {e}"))?;
        // Errors outside a scope are collected, not panicked on, and reported by the next run.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Ok(Shared { device, queue, adapter: format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend), errors })
    });
    s.as_ref().map_err(|e| WgpuError::Device(e.clone()))
}

impl Executor {
    /// The first adapter wgpu offers (a high-performance one when there are several).
    pub fn adapter() -> Result<wgpu::Adapter, WgpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
        pollster::block_on(instance.request_adapter(&options)).map_err(|e| WgpuError::NoAdapter(format!("{NO_ADAPTER}: {e}")))
    }

    /// Whether this machine has an adapter (and a device could be made on it).
    pub fn available() -> bool {
        shared().is_ok()
    }

    /// Whether the device runs shaders with f16 (the adapter offers `shader-f16`).
    pub fn supports_f16() -> bool {
        shared().is_ok_and(|s| s.device.features().contains(wgpu::Features::SHADER_F16))
    }

    /// Creates the device, buffers and pipelines of `bundle` and runs its once-programs.
    pub fn new(bundle: &Bundle) -> Result<Executor, WgpuError> {
        let m = &bundle.manifest;
        let sh = shared()?;
        let (device, queue, errors) = (sh.device.clone(), sh.queue.clone(), sh.errors.clone());

        let bad = |m: String| WgpuError::Bundle(m);
        let max = device.limits().max_buffer_size;
        let mut buffers = Vec::new();
        for (i, b) in m.buffers.iter().enumerate() {
            let size = padded4(b.bytes);
            if size > max {
                return Err(WgpuError::Device(format!("buffer {i} of {} bytes is larger than the device allows ({max})", b.bytes)));
            }
            let buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            if let Some((off, len)) = b.init {
                let bytes = (off.checked_add(len))
                    .and_then(|end| bundle.weights.get(off as usize..end as usize))
                    .filter(|_| len <= b.bytes)
                    .ok_or_else(|| {
                        bad(format!(
                            "buffer {i}: initial contents {off}+{len} outside the weights ({} bytes) or the buffer",
                            bundle.weights.len()
                        ))
                    })?;
                let mut data = bytes.to_vec();
                data.resize(padded4(len) as usize, 0);
                queue.write_buffer(&buf, 0, &data);
            }
            buffers.push(buf);
        }
        let mut once = Vec::new();
        let mut programs = Vec::new();
        if bundle.shaders.len() != m.programs.len() {
            return Err(bad(format!("{} shaders for {} programs", bundle.shaders.len(), m.programs.len())));
        }
        for (p, source) in m.programs.iter().zip(&bundle.shaders) {
            if p.bindings.len() != p.read_only.len() || p.bindings.iter().any(|&b| b >= buffers.len()) {
                return Err(bad(format!("program {}: bindings do not match the buffers", p.name)));
            }
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let desc = wgpu::ShaderModuleDescriptor { label: Some(&p.name), source: wgpu::ShaderSource::Wgsl(source.into()) };
            // Every loop the compiler emits has a constant trip count, so naga's guard against
            // endless loops only costs time; bounds checks go where the compiler proved the
            // indices (see `ProgramSpec::unchecked`).
            let checks = wgpu::ShaderRuntimeChecks {
                bounds_checks: !p.unchecked,
                force_loop_bounding: false,
                ..wgpu::ShaderRuntimeChecks::checked()
            };
            // SAFETY: the shader's loops are bounded and, when unchecked, its indices proven in
            // bounds by the compiler that wrote the bundle.
            let module = unsafe { device.create_shader_module_trusted(desc, checks) };
            let entries: Vec<wgpu::BindGroupLayoutEntry> = p
                .read_only
                .iter()
                .enumerate()
                .map(|(i, &read_only)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let bind_entries: Vec<wgpu::BindGroupEntry> = p
                .bindings
                .iter()
                .enumerate()
                .map(|(i, &b)| wgpu::BindGroupEntry { binding: i as u32, resource: buffers[b].as_entire_binding() })
                .collect();
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &bind_entries });
            let mut dispatches = Vec::new();
            for d in &p.dispatches {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&p.name),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(&d.entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                dispatches.push((pipeline, d.groups));
            }
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(WgpuError::Unsupported { program: p.name.clone(), message: e.to_string() });
            }
            let prog = Program { name: p.name.clone(), flops: p.flops, bind_group, dispatches };
            if p.once {
                once.push(prog);
            } else {
                programs.push(prog);
            }
        }
        for io in m.inputs.iter().chain(&m.outputs) {
            let need = (io.numel() * gpu_elem_bytes(io)?) as u64;
            let have = m.buffers.get(io.buffer).map(|b| b.bytes).ok_or_else(|| bad(format!("{}: no buffer {}", io.name, io.buffer)))?;
            let fits = match &io.staged {
                Some(s) => {
                    let rows = io.numel() / (s.h * s.w).max(1);
                    s.top + s.h <= s.padded_h
                        && s.left + s.w <= s.padded_w
                        && (rows * s.padded_h * s.padded_w * gpu_elem_bytes(io)?) as u64 <= have
                }
                None => need <= have,
            };
            if !fits {
                return Err(bad(format!("{}: {need} bytes do not fit buffer {} of {have} bytes", io.name, io.buffer)));
            }
        }
        let mut readback_offsets = Vec::new();
        let mut total = 0u64;
        for o in &m.outputs {
            readback_offsets.push(total);
            total += padded4((o.numel() * gpu_elem_bytes(o)?) as u64);
        }
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded4(total),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut exec = Executor {
            device,
            queue,
            buffers,
            programs: Vec::new(),
            inputs: m.inputs.clone(),
            outputs: m.outputs.clone(),
            images: Vec::new(),
            readback,
            readback_offsets,
            errors,
            adapter: sh.adapter.clone(),
            last_seconds: Mutex::new(0.0),
            timer: None,
            program_seconds: Mutex::new(Vec::new()),
        };
        // The once-programs (borders of padded tensors) run now; the staged inputs' images
        // start as what they wrote.
        exec.submit(&once, &[])?;
        let queries = 2 * programs.len() as u32;
        if exec.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) && queries > 0 && queries <= wgpu::QUERY_SET_MAX_QUERIES {
            let buffer = |usage| {
                exec.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: queries as u64 * 8,
                    usage,
                    mapped_at_creation: false,
                })
            };
            exec.timer = Some(Timer {
                queries: exec.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: None,
                    ty: wgpu::QueryType::Timestamp,
                    count: queries,
                }),
                resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
                readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
                period: exec.queue.get_timestamp_period() as f64,
            });
        }
        exec.programs = programs;
        for io in &m.inputs {
            exec.images.push(match io.staged {
                Some(_) => Some(Mutex::new(exec.read_buffer(io.buffer, m.buffers[io.buffer].bytes)?)),
                None => None,
            });
        }
        Ok(exec)
    }

    /// The adapter's name, type and backend.
    pub fn adapter_name(&self) -> &str {
        &self.adapter
    }

    fn check_errors(&self) -> Result<(), WgpuError> {
        let mut errors = self.errors.lock().map_err(|_| WgpuError::Device("error log poisoned".into()))?;
        if errors.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut *errors).join("; ");
        Err(WgpuError::Device(all))
    }

    fn wait(&self) -> Result<(), WgpuError> {
        self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: None }).map_err(|e| WgpuError::Device(e.to_string()))?;
        self.check_errors()
    }

    /// Encodes every dispatch of `programs` in one compute pass, then `copies` (buffer,
    /// read-back offset, bytes), submits and waits.
    /// With `timer`, each program is its own pass, timed.
    fn submit_timed(&self, programs: &[Program], copies: &[(usize, u64, u64)], timer: Option<&Timer>) -> Result<(), WgpuError> {
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        match timer {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
                for p in programs {
                    encode(&mut pass, p);
                }
            }
            Some(t) => {
                for (k, p) in programs.iter().enumerate() {
                    let writes = wgpu::ComputePassTimestampWrites {
                        query_set: &t.queries,
                        beginning_of_pass_write_index: Some(2 * k as u32),
                        end_of_pass_write_index: Some(2 * k as u32 + 1),
                    };
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: Some(writes) });
                    encode(&mut pass, p);
                }
                let n = 2 * programs.len() as u32;
                encoder.resolve_query_set(&t.queries, 0..n, &t.resolve, 0);
                encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, n as u64 * 8);
            }
        }
        for &(buf, offset, bytes) in copies {
            encoder.copy_buffer_to_buffer(&self.buffers[buf], 0, &self.readback, offset, bytes);
        }
        self.queue.submit([encoder.finish()]);
        self.wait()
    }

    fn submit(&self, programs: &[Program], copies: &[(usize, u64, u64)]) -> Result<(), WgpuError> {
        self.submit_timed(programs, copies, None)
    }

    /// The first `bytes` of buffer `buf` (through a temporary read-back buffer).
    fn read_buffer(&self, buf: usize, bytes: u64) -> Result<Vec<u8>, WgpuError> {
        let size = padded4(bytes);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&self.buffers[buf], 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let mut out = self.map_read(&staging, size)?;
        out.truncate(bytes as usize);
        Ok(out)
    }

    fn map_read(&self, buf: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, WgpuError> {
        let (tx, rx) = std::sync::mpsc::channel();
        buf.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv().map_err(|e| WgpuError::Device(e.to_string()))?.map_err(|e| WgpuError::Device(e.to_string()))?;
        let out = buf.get_mapped_range(0..size).map_err(|e| WgpuError::Device(e.to_string()))?.to_vec();
        buf.unmap();
        Ok(out)
    }

    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    /// Runs once: `inputs` are the host bytes of each input (little-endian, row-major; bool
    /// one byte), the result the outputs' host bytes.
    pub fn run(&self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, WgpuError> {
        if inputs.len() != self.inputs.len() {
            return Err(WgpuError::Input(format!("the model takes {} inputs, {} given", self.inputs.len(), inputs.len())));
        }
        for (k, (io, &bytes)) in self.inputs.iter().zip(inputs).enumerate() {
            let host = io.host_elem_bytes()?;
            if bytes.len() != io.numel() * host {
                return Err(WgpuError::Input(format!(
                    "input {}: {} bytes given, {} expected ({} {:?})",
                    io.name,
                    bytes.len(),
                    io.numel() * host,
                    io.dtype,
                    io.shape
                )));
            }
            let gpu = to_gpu(bytes, host);
            let elem = gpu_elem_bytes(io)?;
            match (&io.staged, &self.images[k]) {
                (Some(s), Some(image)) => {
                    let mut image = image.lock().map_err(|_| WgpuError::Device("image poisoned".into()))?;
                    let row = s.w * elem;
                    for (r, src) in gpu.chunks(row).enumerate() {
                        let (plane, y) = (r / s.h, r % s.h);
                        let at = ((plane * s.padded_h + y + s.top) * s.padded_w + s.left) * elem;
                        image[at..at + row].copy_from_slice(src);
                    }
                    let mut data = image.clone();
                    data.resize(padded4(data.len() as u64) as usize, 0);
                    self.queue.write_buffer(&self.buffers[io.buffer], 0, &data);
                }
                _ if gpu.is_empty() => {}
                _ => {
                    let mut data = gpu;
                    data.resize(padded4(data.len() as u64) as usize, 0);
                    self.queue.write_buffer(&self.buffers[io.buffer], 0, &data);
                }
            }
        }
        let mut copies = Vec::new();
        for (o, &offset) in self.outputs.iter().zip(&self.readback_offsets) {
            let bytes = (o.numel() * gpu_elem_bytes(o)?) as u64;
            if bytes > 0 {
                copies.push((o.buffer, offset, padded4(bytes)));
            }
        }
        let start = Instant::now();
        self.submit_timed(&self.programs, &copies, self.timer.as_ref())?;
        let data = self.map_read(&self.readback, self.readback.size())?;
        if let Some(t) = &self.timer {
            let ticks = self.map_read(&t.readback, t.readback.size())?;
            let ticks: Vec<u64> = ticks.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            let seconds = ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0]) as f64 * t.period * 1e-9).collect();
            if let Ok(mut s) = self.program_seconds.lock() {
                *s = seconds;
            }
        }
        if let Ok(mut s) = self.last_seconds.lock() {
            *s = start.elapsed().as_secs_f64();
        }
        let mut outs = Vec::new();
        for (o, &offset) in self.outputs.iter().zip(&self.readback_offsets) {
            let host = o.host_elem_bytes()?;
            let bytes = o.numel() * gpu_elem_bytes(o)?;
            let gpu = &data[offset as usize..offset as usize + bytes];
            outs.push(from_gpu(gpu, host));
        }
        Ok(outs)
    }

    /// (program name, seconds, flops) of every per-run program in the last run, from GPU
    /// timestamps. Without them only the whole run is timed: it is reported as one entry.
    pub fn profile(&self) -> Vec<(String, f64, f64)> {
        if let Ok(s) = self.program_seconds.lock() {
            if s.len() == self.programs.len() && !s.is_empty() {
                return self.programs.iter().zip(s.iter()).map(|(p, &t)| (p.name.clone(), t, p.flops as f64)).collect();
            }
        }
        let seconds = self.last_seconds.lock().map(|s| *s).unwrap_or(0.0);
        let flops: u64 = self.programs.iter().map(|p| p.flops).sum();
        vec![(format!("all {} programs (one submission)", self.programs.len()), seconds, flops as f64)]
    }

    pub fn program_names(&self) -> Vec<String> {
        self.programs.iter().map(|p| p.name.clone()).collect()
    }
}

fn encode(pass: &mut wgpu::ComputePass<'_>, p: &Program) {
    pass.set_bind_group(0, &p.bind_group, &[]);
    for (pipeline, [x, y]) in &p.dispatches {
        pass.set_pipeline(pipeline);
        pass.dispatch_workgroups(*x, *y, 1);
    }
}

/// Host bytes to GPU bytes: a bool (one byte) becomes a u32.
fn to_gpu(bytes: &[u8], host_elem: usize) -> Vec<u8> {
    match host_elem {
        1 => bytes.iter().map(|&b| (b != 0) as u32).flat_map(u32::to_le_bytes).collect(),
        _ => bytes.to_vec(),
    }
}

fn from_gpu(bytes: &[u8], host_elem: usize) -> Vec<u8> {
    match host_elem {
        1 => bytes.chunks(4).map(|c| (c.iter().any(|&b| b != 0)) as u8).collect(),
        _ => bytes.to_vec(),
    }
}
