//! Accuracy from an external program: `sh -c CMD` gets the arch dict as JSON on its stdin and
//! must print `{"val_acc": 0.77, "train_acc": 0.81}` (`train_acc` optional or null) as the
//! last non-empty line of its stdout (earlier lines, such as progress logs, are ignored), and
//! exit with status 0. It runs in a process group of its own, killed as a whole when it
//! outlives the time limit, so that nothing it started lingers.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{NasError, Result};
use crate::oracle::{Accuracy, AccuracyOracle};
use crate::space::ArchConfig;

pub struct CommandOracle {
    command: String,
    timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    val_acc: f64,
    #[serde(default)]
    train_acc: Option<f64>,
}

impl CommandOracle {
    pub fn new(command: &str, timeout: Duration) -> Self {
        CommandOracle {
            command: command.to_string(),
            timeout,
        }
    }

    fn fail(&self, why: String) -> NasError {
        NasError::Oracle(format!("command {:?} {why}", self.command))
    }

    /// Runs the command once with `input` on stdin: its exit status and what it printed.
    fn run(&self, input: &str) -> Result<(std::process::ExitStatus, String, String)> {
        // Stdin from a file rather than a pipe: nothing to write while the child runs, so no
        // broken pipe when the command never reads its input.
        let path = std::env::temp_dir().join(format!(
            "chanasc-oracle-{}-{:x}.json",
            std::process::id(),
            input_hash(input)
        ));
        std::fs::write(&path, input).map_err(|e| NasError::io(&path, e))?;
        let stdin = std::fs::File::open(&path).map_err(|e| NasError::io(&path, e));
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(stdin?)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| self.fail(format!("could not start: {e}")))?;
        let start = Instant::now();
        let kill_group = |pid: u32| {
            // SAFETY: kill(2) on the process group this function created; no memory involved.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        };
        // Readers on threads, so that a child filling one pipe cannot stall on the other.
        let (tx, rx) = mpsc::channel();
        for (i, pipe) in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .enumerate()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                let _ = tx.send((i, buf));
            });
        }
        let timed_out = |this: &Self| {
            this.fail(format!(
                "did not answer within {} s (killed)",
                this.timeout.as_secs_f64()
            ))
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() >= self.timeout => {
                    kill_group(child.id());
                    let _ = child.wait();
                    return Err(timed_out(self));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(self.fail(format!("could not be waited for: {e}"))),
            }
        };
        // The pipes close when every process holding them is gone: a background child of the
        // command may hold them past the command's exit, within the same time limit.
        let mut out = [Vec::new(), Vec::new()];
        for _ in 0..2 {
            match rx.recv_timeout(self.timeout.saturating_sub(start.elapsed())) {
                Ok((i, buf)) => out[i] = buf,
                Err(_) => {
                    kill_group(child.id());
                    return Err(timed_out(self));
                }
            }
        }
        let [stdout, stderr] = out.map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok((status, stdout, stderr))
    }
}

/// A hash of the input, to keep temporary file names apart between concurrent calls.
fn input_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    std::thread::current().id().hash(&mut h);
    h.finish()
}

/// The last few lines of a stream, on one line, for an error message.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let t = lines[lines.len().saturating_sub(3)..].join(" | ");
    if t.len() > 300 {
        format!(
            "...{}",
            &t[t.len() - 300..].trim_start_matches(|c: char| !c.is_ascii())
        )
    } else {
        t
    }
}

impl AccuracyOracle for CommandOracle {
    fn evaluate(&mut self, arch: &ArchConfig) -> Result<Accuracy> {
        let (status, stdout, stderr) = self.run(&arch.to_json())?;
        if !status.success() {
            let why = match status.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".into(),
            };
            let detail = tail(&stderr);
            return Err(self.fail(if detail.is_empty() {
                why
            } else {
                format!("{why}: {detail}")
            }));
        }
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let reply: Reply = serde_json::from_str(last.trim()).map_err(|e| {
            self.fail(format!(
                "printed {:?}, not {{\"val_acc\": ..., \"train_acc\": ...}} ({e})",
                tail(last)
            ))
        })?;
        Accuracy {
            val: reply.val_acc,
            train: reply.train_acc,
        }
        .checked()
        .map_err(|m| self.fail(format!("answered {m}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(cmd: &str, timeout_ms: u64) -> Result<Accuracy> {
        CommandOracle::new(cmd, Duration::from_millis(timeout_ms)).evaluate(&ArchConfig::min(160))
    }

    #[test]
    fn answers() {
        let a = eval(
            r#"echo progress; echo '{"val_acc": 0.75, "train_acc": 0.8}'; echo"#,
            10_000,
        )
        .unwrap();
        assert_eq!(
            a,
            Accuracy {
                val: 0.75,
                train: Some(0.8)
            }
        );
        assert_eq!(
            eval(r#"echo '{"val_acc": 0.7}'"#, 10_000).unwrap().train,
            None
        );
        // The arch arrives on stdin: answer with its resolution / 1000.
        let a = eval(
            r#"r=$(sed 's/.*"r":\([0-9]*\).*/\1/'); echo "{\"val_acc\": 0.$r}""#,
            10_000,
        )
        .unwrap();
        assert_eq!(a.val, 0.16);
    }

    #[test]
    fn failures_are_clear() {
        let e = eval("echo oops >&2; exit 3", 10_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exited with status 3: oops"), "{e}");
        let e = eval("echo hello", 10_000).unwrap_err().to_string();
        assert!(e.contains("printed \"hello\", not"), "{e}");
        let e = eval(r#"echo '{"val_acc": 76}'"#, 10_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a fraction"), "{e}");
        let e = eval(r#"echo '{"val": 0.7}'"#, 10_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not {\"val_acc\""), "{e}");
        let e = eval("kill -9 $$", 10_000).unwrap_err().to_string();
        assert!(e.contains("killed by a signal"), "{e}");
    }

    #[test]
    fn time_limit_kills_the_group() {
        let start = Instant::now();
        let e = eval("sleep 30; echo '{\"val_acc\": 0.5}'", 300)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not answer within 0.3 s"), "{e}");
        // A background child holding stdout is killed too.
        let e = eval("(sleep 30) & echo '{\"val_acc\": 0.5}'", 300)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not answer"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
