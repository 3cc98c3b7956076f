//! Runs candidates on a remote machine over SSH, as TVM's RPC runner does for boards and
//! phones: each candidate is compiled here for the remote's target, copied there with `scp`,
//! run by the worker binary (copied once) under `timeout`, and its reply parsed from the
//! `ssh` output. Only `ssh`, `scp` and coreutils' `timeout` are needed; options such as
//! `Port=2222` or `IdentityFile=...` are passed to both as `-o`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ir::loops::Func;
use llvm_backend::Target;

use super::build::{build_library, job};
use super::job::{Fault, Outputs, Reply, Timing};
use super::local::unique;
use super::{reply, run_with_timeout, timed, Measurer, Stats};
use crate::inputs::written_params;
use crate::task::{cold_params, Task};

pub struct SshMeasurer {
    pub target: Target,
    /// `[user@]host`.
    pub destination: String,
    /// `-o` options of ssh and scp (`Port=2222`, `IdentityFile=/path`, ...).
    pub options: Vec<String>,
    /// The remote working folder (created if missing).
    pub remote_dir: String,
    /// The worker binary to copy, and the arguments that make it serve a job.
    pub worker: PathBuf,
    pub worker_args: Vec<String>,
    /// Limit of one run on the remote (enforced there by `timeout`; the ssh connection gets
    /// 30 s more for its own set-up).
    pub timeout: Duration,
    pub timing: Timing,
    /// Test hook, as in `LocalMeasurer`.
    pub inject: Option<Box<dyn FnMut(usize) -> Option<Fault>>>,
    local_dir: PathBuf,
    ready: bool,
    jobs: usize,
    timings: usize,
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshMeasurer {
    pub fn new(
        target: Target,
        destination: &str,
        remote_dir: &str,
        worker: PathBuf,
        worker_args: Vec<String>,
    ) -> Result<SshMeasurer, String> {
        let local_dir = std::env::temp_dir().join(format!("chanasc-tune-ssh-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&local_dir).map_err(|e| format!("{}: {e}", local_dir.display()))?;
        Ok(SshMeasurer {
            target,
            destination: destination.to_string(),
            options: Vec::new(),
            remote_dir: remote_dir.to_string(),
            worker,
            worker_args,
            timeout: Duration::from_secs(10),
            timing: Timing::default(),
            inject: None,
            local_dir,
            ready: false,
            jobs: 0,
            timings: 0,
        })
    }

    fn opts(&self) -> Vec<String> {
        // One connection shared by every ssh and scp of this measurer (a master started by the
        // first, closed on drop): a new connection per copy and run would cost more than
        // most measurements.
        let control = self.local_dir.join("ssh-control");
        let mut v: Vec<String> =
            ["BatchMode=yes", "ControlMaster=auto", "ControlPersist=120"].iter().flat_map(|o| ["-o".to_string(), o.to_string()]).collect();
        v.extend(["-o".to_string(), format!("ControlPath={}", control.display())]);
        for o in &self.options {
            v.push("-o".into());
            v.push(o.clone());
        }
        v
    }

    fn ssh(&self, remote_command: &str, input: &[u8], timeout: Duration) -> Result<super::Finished, String> {
        let mut cmd = Command::new("ssh");
        cmd.args(self.opts()).arg(&self.destination).arg(remote_command);
        run_with_timeout(&mut cmd, input, timeout)
    }

    fn scp(&self, from: &str, to: &str) -> Result<(), String> {
        let mut cmd = Command::new("scp");
        cmd.arg("-q").args(self.opts()).arg(from).arg(to);
        let f = run_with_timeout(&mut cmd, &[], Duration::from_secs(120))?;
        if !f.status.success() {
            return Err(format!("scp {from} {to}: {}", f.stderr.trim()));
        }
        Ok(())
    }

    fn remote(&self, name: &str) -> String {
        format!("{}/{name}", self.remote_dir)
    }

    /// Creates the remote folder and copies the worker, once.
    fn prepare(&mut self) -> Result<(), String> {
        if self.ready {
            return Ok(());
        }
        let f = self.ssh(&format!("mkdir -p {}", quoted(&self.remote_dir)), &[], Duration::from_secs(60))?;
        if !f.status.success() {
            return Err(format!("ssh {}: {}", self.destination, f.stderr.trim()));
        }
        self.scp(&self.worker.display().to_string(), &format!("{}:{}", self.destination, self.remote("worker")))?;
        self.ready = true;
        Ok(())
    }

    fn run(&mut self, func: &Func, seed: u64, outputs_wanted: bool, cold: &[usize]) -> Result<Reply, String> {
        self.prepare()?;
        let n = self.jobs;
        self.jobs += 1;
        let name = format!("k{n}");
        let library = build_library(func, &self.target, &self.local_dir, &name)?;
        let copied = self.scp(&library.display().to_string(), &format!("{}:{}", self.destination, self.remote(&format!("{name}.so"))));
        let _ = std::fs::remove_file(&library);
        copied?;
        let outputs = outputs_wanted.then(|| Outputs { path: self.remote(&format!("{name}.out")), written: written_params(func) });
        let mut job = job(func, &self.remote(&format!("{name}.so")), seed, &self.timing, outputs, cold);
        if !outputs_wanted {
            job.fault = self.inject.as_mut().and_then(|f| f(self.timings));
            self.timings += 1;
        }
        let text = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        let secs = self.timeout.as_secs_f64().ceil() as u64;
        let args: Vec<String> = self.worker_args.iter().map(|a| quoted(a)).collect();
        // `timeout` kills a hung worker there; killing the local ssh would not.
        let command = format!(
            "timeout -s KILL {secs} {} {}; status=$?; rm -f {}; exit $status",
            quoted(&self.remote("worker")),
            args.join(" "),
            quoted(&self.remote(&format!("{name}.so")))
        );
        let f = self.ssh(&command, &text, self.timeout + Duration::from_secs(30))?;
        // 137: killed by `timeout` (128 + SIGKILL); 255: ssh itself failed.
        match f.status.code() {
            Some(137) => return Err(format!("timed out after {secs} s (on {})", self.destination)),
            Some(255) => return Err(format!("ssh {}: {}", self.destination, f.stderr.trim())),
            // The remote shell reports a worker killed by a signal as 128 + signal.
            Some(c) if c > 128 && !f.stdout.contains('{') => {
                return Err(format!("the worker crashed on {} (signal {})", self.destination, c - 128))
            }
            _ => {}
        }
        reply(f)
    }
}

impl Measurer for SshMeasurer {
    fn measure(&mut self, task: &Task, scheduled: &Func) -> Result<Stats, String> {
        timed(self.run(scheduled, 1, false, &cold_params(&task.func, &task.constants)))
    }

    fn outputs(&mut self, _task: &Task, scheduled: &Func, seed: u64) -> Result<Vec<u8>, String> {
        let n = self.jobs;
        self.run(scheduled, seed, true, &[])?;
        let local = self.local_dir.join(format!("k{n}.out"));
        let remote = self.remote(&format!("k{n}.out"));
        self.scp(&format!("{}:{remote}", self.destination), &local.display().to_string())?;
        let _ = self.ssh(&format!("rm -f {}", quoted(&remote)), &[], Duration::from_secs(60));
        let bytes = std::fs::read(&local).map_err(|e| format!("{}: {e}", local.display()));
        let _ = std::fs::remove_file(&local);
        bytes
    }
}

impl Drop for SshMeasurer {
    fn drop(&mut self) {
        if self.ready {
            let mut cmd = Command::new("ssh");
            cmd.args(self.opts()).args(["-O", "exit"]).arg(&self.destination);
            let _ = run_with_timeout(&mut cmd, &[], Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.local_dir);
    }
}
