//! The measurement worker: reads a [`Job`] on stdin, loads the kernel's shared library, makes
//! the seeded arguments in 64-byte aligned buffers (the kernels assume that alignment), and
//! times the kernel or saves what it writes. It runs in its own process so that a kernel
//! that crashes or hangs takes only the worker down; `chanasc tune-worker` and the
//! `chanasc-tune-worker` binary both run [`main`].

use std::ffi::{c_void, CStr, CString};
use std::io::{Read, Write};
use std::time::Instant;

use crate::inputs::{argument, dtype_named, rearrange, to_bytes};
use crate::measure::job::{Fault, Job, Reply, Stats};

type KernelFn = unsafe extern "C" fn(*const *mut c_void, i64, i64);

/// Serves one job from stdin; the process exit code.
pub fn main() -> i32 {
    let mut text = String::new();
    let reply = match std::io::stdin().read_to_string(&mut text) {
        Ok(_) => serve(&text).unwrap_or_else(|error| Reply::Error { error }),
        Err(e) => Reply::Error { error: format!("reading the job: {e}") },
    };
    let failed = matches!(reply, Reply::Error { .. });
    let line = serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"error":"unprintable reply"}"#.into());
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if failed {
        1
    } else {
        0
    }
}

/// A zeroed, 64-byte aligned allocation.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Result<Aligned, String> {
        let size = bytes.len().max(1).div_ceil(64) * 64;
        let layout = std::alloc::Layout::from_size_align(size, 64).map_err(|e| e.to_string())?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(format!("cannot allocate {size} bytes"));
        }
        // SAFETY: ptr holds at least bytes.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        Ok(Aligned { ptr, layout })
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn load(library: &str, symbol: &str) -> Result<KernelFn, String> {
    let path = CString::new(library).map_err(|_| "bad library path".to_string())?;
    let sym = CString::new(symbol).map_err(|_| "bad symbol".to_string())?;
    // SAFETY: dlopen/dlsym of a library the tuner built; the symbol has the kernel ABI. The
    // library stays loaded until the process exits.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(format!("dlopen: {}", CStr::from_ptr(libc::dlerror()).to_string_lossy()));
        }
        let p = libc::dlsym(handle, sym.as_ptr());
        if p.is_null() {
            return Err(format!("symbol {symbol} is missing from {library}"));
        }
        Ok(std::mem::transmute::<*mut c_void, KernelFn>(p))
    }
}

fn serve(text: &str) -> Result<Reply, String> {
    let job: Job = serde_json::from_str(text).map_err(|e| format!("bad job: {e}"))?;
    let mut buffers = Vec::with_capacity(job.params.len());
    let mut sizes = Vec::with_capacity(job.params.len());
    for (i, p) in job.params.iter().enumerate() {
        let dtype = dtype_named(&p.dtype).ok_or_else(|| format!("parameter {i}: unsupported dtype {}", p.dtype))?;
        let data = argument(dtype, p.numel, job.seed, i).ok_or_else(|| format!("parameter {i}: no data for {}", p.dtype))?;
        let mut bytes = to_bytes(&data);
        if let Some(layout) = &p.layout {
            bytes = rearrange(&bytes, layout, dtype.size_bytes()).ok_or_else(|| format!("parameter {i}: layout does not fit"))?;
        }
        sizes.push(bytes.len());
        buffers.push(Aligned::new(&bytes)?);
    }
    let kernel = load(&job.library, &job.symbol)?;
    match job.fault {
        Some(Fault::Abort) => std::process::abort(),
        Some(Fault::Hang) => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Some(Fault::Fail) => return Err("injected failure".into()),
        None => {}
    }
    let args: Vec<*mut c_void> = buffers.iter().map(|b| b.ptr as *mut c_void).collect();
    let end = job.parallel_extent.unwrap_or(1);
    // SAFETY: every argument has its parameter's size and alignment.
    let call = || unsafe { kernel(args.as_ptr(), 0, end) };
    if let Some(out) = &job.outputs {
        call();
        let mut bytes = Vec::new();
        for &i in &out.written {
            let size = *sizes.get(i).ok_or_else(|| format!("no parameter {i}"))?;
            // SAFETY: buffer i holds `size` bytes.
            bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(buffers[i].ptr, size) });
        }
        let tmp = format!("{}.tmp{}", out.path, std::process::id());
        std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &out.path)).map_err(|e| format!("{}: {e}", out.path))?;
        return Ok(Reply::Written { written_bytes: bytes.len() });
    }
    if !job.cold.is_empty() {
        let cold = job
            .cold
            .iter()
            .map(|&i| match (buffers.get(i), sizes.get(i)) {
                (Some(b), Some(&n)) => Ok((b.ptr as *const u8, n)),
                _ => Err(format!("cold parameter {i}: the kernel has {} parameters", buffers.len())),
            })
            .collect::<Result<Vec<(*const u8, usize)>, String>>()?;
        return Ok(Reply::Timed(time_cold(&call, &cold, &job.timing)));
    }
    Ok(Reply::Timed(time(&call, &job.timing)))
}

/// Writes back and evicts `bytes` bytes at `ptr` from every cache level.
fn evict(ptr: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: clflush of addresses inside one live allocation; mfence orders them before the
    // timed run.
    unsafe {
        for off in (0..bytes).step_by(64) {
            std::arch::x86_64::_mm_clflush(ptr.add(off));
        }
        std::arch::x86_64::_mm_mfence();
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dc civac` (clean and invalidate to the point of coherency) of addresses inside
    // one live allocation; 64 bytes is the smallest data cache line of the targets we build.
    unsafe {
        for off in (0..bytes).step_by(64) {
            std::arch::asm!("dc civac, {0}", in(reg) ptr.add(off));
        }
        std::arch::asm!("dsb ish");
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = (ptr, bytes);
}

/// Times runs one at a time, each after evicting the `cold` buffers: how a program whose
/// weights the rest of a network has pushed out of the caches runs there. Its outputs and
/// activations stay warm, as they mostly are in a network (the previous program wrote them).
fn time_cold(call: &dyn Fn(), cold: &[(*const u8, usize)], t: &crate::measure::job::Timing) -> Stats {
    let run = || {
        for &(p, n) in cold {
            evict(p, n);
        }
        let s = Instant::now();
        call();
        s.elapsed().as_secs_f64()
    };
    warm_up(&|| _ = run(), t.warmup_s);
    stats((0..t.repeats.max(1)).map(|_| run()).collect())
}

/// Runs `call` for `seconds` (at least twice: caches, page faults, frequency); the mean time
/// of a run.
fn warm_up(call: &dyn Fn(), seconds: f64) -> f64 {
    let start = Instant::now();
    let mut runs = 0u64;
    while runs < 2 || start.elapsed().as_secs_f64() < seconds {
        call();
        runs += 1;
    }
    start.elapsed().as_secs_f64() / runs as f64
}

fn time(call: &dyn Fn(), t: &crate::measure::job::Timing) -> Stats {
    // The warm-up also estimates one run's time.
    let estimate = warm_up(call, t.warmup_s).max(1e-8);
    let inner = ((t.min_repeat_s / estimate).ceil() as u64).clamp(1, 1_000_000);
    let samples: Vec<f64> = (0..t.repeats.max(1))
        .map(|_| {
            let s = Instant::now();
            for _ in 0..inner {
                call();
            }
            s.elapsed().as_secs_f64() / inner as f64
        })
        .collect();
    stats(samples)
}

/// Median, mean and standard deviation of the samples.
fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    let median = if samples.len() % 2 == 1 {
        samples[samples.len() / 2]
    } else {
        (samples[samples.len() / 2 - 1] + samples[samples.len() / 2]) / 2.0
    };
    Stats { median_s: median, mean_s: mean, std_s: var.sqrt(), runs: samples.len() }
}
