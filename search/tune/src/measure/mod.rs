//! Measurement: each candidate is compiled here (LLVM, then linked into a shared library) and
//! run by a worker process with a time limit, on this machine ([`LocalMeasurer`]) or on a
//! remote one over SSH ([`SshMeasurer`]). A candidate whose worker crashes, hangs or answers
//! an error fails alone; the search goes on.

pub mod build;
pub mod job;
mod local;
mod ssh;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ir::loops::Func;

pub use job::{Fault, Stats, Timing};
pub use local::LocalMeasurer;
pub use ssh::SshMeasurer;

use crate::task::Task;
use job::Reply;

/// Runs candidates of a task and reports how fast they are and what they compute.
pub trait Measurer {
    /// Times `scheduled`, a scheduled program of `task`.
    fn measure(&mut self, task: &Task, scheduled: &Func) -> Result<Stats, String>;
    /// Runs `scheduled` once on the arguments seeded by `seed` (see `inputs`) and returns the
    /// bytes of the parameters it writes, in parameter order.
    fn outputs(&mut self, task: &Task, scheduled: &Func, seed: u64) -> Result<Vec<u8>, String>;
}

/// The extent of a program's outermost parallel loop.
pub fn parallel_extent(f: &Func) -> Option<i64> {
    match f.body.as_slice() {
        [ir::loops::Stmt::For(l)] if l.kind == ir::loops::LoopKind::Parallel => Some(l.extent),
        _ => None,
    }
}

/// What a finished child left.
struct Finished {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with `input` on stdin; kills it when it runs past `timeout`.
fn run_with_timeout(cmd: &mut Command, input: &[u8], timeout: Duration) -> Result<Finished, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Readers drain the pipes while the child runs, so it never blocks on a full pipe.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = reader(Box::new(child.stderr.take().expect("stderr is piped")));
    if let Some(mut stdin) = child.stdin.take() {
        // A child that dies before reading its job closes the pipe: its status says why.
        let _ = stdin.write_all(input);
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {:.1} s", timeout.as_secs_f64()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(if start.elapsed() < Duration::from_millis(50) { 1 } else { 5 })),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    Ok(Finished { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// The worker's reply, or why there is none.
fn reply(f: Finished) -> Result<Reply, String> {
    if let Some(signal) = f.status.signal() {
        let name = match signal {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            _ => "signal",
        };
        return Err(format!("the worker crashed ({name}, signal {signal})"));
    }
    let line = f.stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    match line.map(serde_json::from_str::<Reply>) {
        Some(Ok(Reply::Error { error })) => Err(error),
        Some(Ok(r)) if f.status.success() => Ok(r),
        _ => {
            let detail = f.stderr.lines().chain(f.stdout.lines()).rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            Err(format!("the worker failed ({}): {}", f.status, detail.trim()))
        }
    }
}

fn timed(r: Result<Reply, String>) -> Result<Stats, String> {
    match r? {
        Reply::Timed(s) => Ok(s),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
