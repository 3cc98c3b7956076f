//! The thread pool of in-process (JIT) models: the Rust twin of the C runtime's
//! `chanasc_parallel_for`. Each job is one parallel loop split into as many contiguous ranges
//! as there are threads, the caller taking the first; workers spin briefly between jobs,
//! then sleep.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use cranelift_backend::KernelFn;

/// Spins of a worker looking for the next job before it sleeps.
const SPINS: u32 = 20_000;

#[derive(Clone, Copy)]
struct Job {
    kernel: Option<KernelFn>,
    /// The argument array, as an address (it outlives the job: the caller waits for it).
    args: usize,
    extent: i64,
    parts: usize,
}

struct Shared {
    job: Mutex<Job>,
    wake: Condvar,
    generation: AtomicU64,
    pending: AtomicUsize,
    stopping: AtomicBool,
}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Runs part `part` of `parts` of iterations [0, extent).
fn run_part(job: Job, part: usize) {
    let parts = job.parts as i64;
    let (begin, end) = (job.extent * part as i64 / parts, job.extent * (part as i64 + 1) / parts);
    if let Some(k) = job.kernel {
        if begin < end {
            // SAFETY: `args` is the live argument array of the kernel's program (see Job).
            unsafe { k(job.args as *const *mut u8, begin, end) };
        }
    }
}

impl Pool {
    /// A pool of `threads` threads in all (the caller's included); 0 means one per CPU.
    pub fn new(threads: usize) -> Pool {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let shared = Arc::new(Shared {
            job: Mutex::new(Job { kernel: None, args: 0, extent: 0, parts: 1 }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .map(|id| {
                let s = shared.clone();
                std::thread::spawn(move || worker(&s, id))
            })
            .collect();
        Pool { threads, shared, workers }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs iterations [0, extent) of `kernel`'s parallel loop across the threads.
    ///
    /// # Safety
    /// `args` must be the kernel's argument array, valid for the whole call.
    pub unsafe fn parallel_for(&self, kernel: KernelFn, args: *const *mut u8, extent: i64) {
        let parts = (self.threads as i64).min(extent).max(1) as usize;
        if parts <= 1 {
            // SAFETY: as the caller promises.
            unsafe { kernel(args, 0, extent) };
            return;
        }
        let job = Job { kernel: Some(kernel), args: args as usize, extent, parts };
        {
            let mut j = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            *j = job;
            self.shared.pending.store(self.threads - 1, Ordering::SeqCst);
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.wake.notify_all();
        run_part(job, 0);
        let mut spins = 0u32;
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn worker(s: &Shared, id: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        while s.generation.load(Ordering::Acquire) == seen && !s.stopping.load(Ordering::Acquire) && spins < SPINS {
            std::hint::spin_loop();
            spins += 1;
        }
        let job = {
            let mut j = s.job.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation.load(Ordering::Acquire) == seen && !s.stopping.load(Ordering::Acquire) {
                j = s.wake.wait(j).unwrap_or_else(|e| e.into_inner());
            }
            if s.stopping.load(Ordering::Acquire) {
                return;
            }
            seen = s.generation.load(Ordering::Acquire);
            *j
        };
        // Threads beyond the job's parts (a loop shorter than the pool) have nothing to do.
        if id < job.parts {
            run_part(job, id);
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _j = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.stopping.store(true, Ordering::SeqCst);
        }
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
