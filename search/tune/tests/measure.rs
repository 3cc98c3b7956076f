//! Measurement in real worker processes: timings, output checks, and candidates that crash,
//! hang or fail without stopping the search; the same over SSH to an sshd on loopback.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llvm_backend::Target;
use passes::schedule::default_schedule;
use tune::measure::{Fault, LocalMeasurer, Measurer, SshMeasurer};
use tune::progress::Silent;
use tune::records::RecordFile;
use tune::task::{target_id, task_key, Task};
use tune::tuner::{interp_outputs, tune, TuneOptions};

const WORKER: &str = env!("CARGO_BIN_EXE_chanasc-tune-worker");

const CONV: &str = r#"func "conv2d_relu_5" {
  param %x: f32[1,8,10,10]
  param %w: f32[16,8,3,3]
  param %b: f32[16]
  param %y: f32[1,16,8,8]
  for n in 0..1 {
    for oc in 0..16 {
      for oh in 0..8 {
        for ow in 0..8 {
          %y[n, oc, oh, ow] = %b[oc]
          for ic in 0..8 {
            for kh in 0..3 {
              for kw in 0..3 {
                %y[n, oc, oh, ow] = %y[n, oc, oh, ow] + %x[n, ic, oh + kh, ow + kw] * %w[oc, ic, kh, kw]
              }
            }
          }
          %y[n, oc, oh, ow] = max(%y[n, oc, oh, ow], 0.0)
        }
      }
    }
  }
}"#;

fn conv_task() -> Task {
    let func = ir::loops::parse_func(CONV).unwrap();
    let constants = vec![false, true, true, false];
    let target = target_id(&Target::host());
    Task { key: task_key(&func, &constants, &target), name: func.name.clone(), target, func, constants, weight: 1, flops: 2 * 16 * 64 * 72 }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chanasc-measure-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn local() -> LocalMeasurer {
    let mut m = LocalMeasurer::new(Target::host(), vec![WORKER.to_string()]).unwrap();
    m.timing.repeats = 5;
    m.timing.min_repeat_s = 0.0005;
    m
}

/// A measurer times real kernels and returns what they compute, equal to the evaluator's
/// result for the unscheduled program, including a blocked-weight (layout_block) schedule.
fn measures_and_computes(m: &mut dyn Measurer) {
    let task = conv_task();
    let vw = Target::host().vector_width();
    let trace = default_schedule(&task.func, vw);
    let scheduled = trace.apply(&task.func).unwrap();
    let stats = m.measure(&task, &scheduled).expect("the default schedule runs");
    assert!(stats.median_s > 0.0 && stats.median_s < 0.01 && stats.runs == 5, "{stats:?}");
    let want = interp_outputs(&task.func).unwrap();
    let got = m.outputs(&task, &scheduled, 7).unwrap();
    assert_eq!(got.len(), want.len());
    let close = |a: &[u8], b: &[u8]| {
        a.chunks_exact(4).zip(b.chunks_exact(4)).all(|(x, y)| {
            let (x, y) = (f32::from_le_bytes(x.try_into().unwrap()), f32::from_le_bytes(y.try_into().unwrap()));
            (x - y).abs() <= 1e-4 * (1.0 + x.abs())
        })
    };
    assert!(close(&want, &got));
    let blocked = passes::schedule::Trace::from_json(
        r#"[{"op":"layout_block","buffer":"w","axis":0,"factor":16},{"op":"reorder","loops":["n","oh","ow","oc"]},{"op":"vectorize","loop":"oc"},{"op":"cache_write","buffer":"y","at":"ow"},{"op":"fuse","outer":"n","inner":"oh"},{"op":"parallel","loop":"n_oh"}]"#,
    )
    .unwrap()
    .apply(&task.func)
    .unwrap();
    assert!(close(&want, &m.outputs(&task, &blocked, 7).unwrap()), "the worker rearranges blocked weights");
}

/// Candidates whose worker aborts, hangs or fails are recorded as failed; the others run.
fn survives_faults(m: &mut dyn Measurer, records: &Path) {
    let task = conv_task();
    let mut file = RecordFile::open(records).unwrap();
    let mut opts = TuneOptions::new(6, Target::host().vector_width());
    opts.batch = 5;
    let report = tune(std::slice::from_ref(&task), &mut file, m, &opts, &mut Silent).unwrap();
    assert_eq!(report.trials, 6, "all trials were spent");
    let errors: Vec<String> = file.records.iter().filter_map(|r| r.error.clone()).collect();
    assert_eq!(report.failures, 3, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("crashed") && e.contains("SIGABRT") || e.contains("signal 6")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("timed out")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("injected failure")), "{errors:?}");
    assert!(file.best(&task.key, &task.target).is_some(), "the successful candidates were checked and recorded");
    assert_eq!(file.records.len(), 6);
}

/// Timing jobs 1, 2 and 3 abort, hang and fail.
fn faults(n: usize) -> Option<Fault> {
    match n {
        1 => Some(Fault::Abort),
        2 => Some(Fault::Hang),
        3 => Some(Fault::Fail),
        _ => None,
    }
}

#[test]
fn local_worker_measures_and_computes() {
    measures_and_computes(&mut local());
}

#[test]
fn local_worker_crash_and_hang_do_not_stop_the_search() {
    let mut m = local();
    m.timeout = Duration::from_secs(2);
    m.inject = Some(Box::new(faults));
    let start = Instant::now();
    survives_faults(&mut m, &temp("local-faults").join("records.jsonl"));
    assert!(start.elapsed() < Duration::from_secs(60), "the hang was cut at its time limit");
}

/// An sshd on a free loopback port, with its own host and user keys; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_sshd() -> Option<Sshd> {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].into_iter().find(|p| Path::new(p).exists())?;
    let dir = temp("sshd");
    for key in ["host_key", "user_key"] {
        let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(dir.join(key)).status().ok()?.success();
        if !ok {
            return None;
        }
    }
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).ok()?;
    // The privilege separation folder sshd insists on (creatable when running as root).
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_key\nAuthorizedKeysFile {0}/authorized_keys\nPidFile {0}/sshd.pid\n\
         Subsystem sftp internal-sftp\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin yes\n",
        dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).ok()?;
    let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(dir.join("sshd_config")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
    let server = Sshd { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn ssh_measurer(server: &Sshd, remote_dir: &Path) -> SshMeasurer {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let mut m = SshMeasurer::new(Target::host(), &format!("{user}@127.0.0.1"), &remote_dir.display().to_string(), PathBuf::from(WORKER), vec![]).unwrap();
    m.options = vec![
        format!("Port={}", server.port),
        format!("IdentityFile={}/user_key", server.dir.display()),
        "StrictHostKeyChecking=no".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "LogLevel=ERROR".into(),
    ];
    m.timing.repeats = 5;
    m.timing.min_repeat_s = 0.0005;
    m
}

#[test]
fn ssh_worker_on_loopback() {
    let Some(server) = start_sshd() else {
        eprintln!("skipped: no sshd could be started on loopback (apt-get install openssh-server)");
        return;
    };
    let remote = temp("ssh-remote");
    let mut m = ssh_measurer(&server, &remote);
    measures_and_computes(&mut m);
    assert!(remote.join("worker").exists(), "the worker was copied to the remote folder");

    let mut m = ssh_measurer(&server, &remote);
    m.timeout = Duration::from_secs(2);
    m.inject = Some(Box::new(faults));
    survives_faults(&mut m, &temp("ssh-faults").join("records.jsonl"));
    let left: Vec<_> = std::fs::read_dir(&remote).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "only the worker stays on the remote: {left:?}");
}

const MATVEC: &str = r#"func "matvec_3" {
  param %w: f32[512,512]
  param %x: f32[512]
  param %y: f32[512]
  for o in 0..512 {
    %y[o] = 0.0
    for k in 0..512 {
      %y[o] = %y[o] + %w[o, k] * %x[k]
    }
  }
}"#;

/// A task with a megabyte of weights is timed with them evicted before each run: the job
/// names them, the worker runs the cold path, and the output is still checked.
#[test]
fn big_weights_are_timed_cold() {
    let func = ir::loops::parse_func(MATVEC).unwrap();
    let constants = vec![true, false, false];
    let target = target_id(&Target::host());
    let task = Task { key: task_key(&func, &constants, &target), name: func.name.clone(), target, func, constants, weight: 1, flops: 2 * 512 * 512 };
    assert_eq!(tune::task::cold_params(&task.func, &task.constants), vec![0]);
    let scheduled = default_schedule(&task.func, Target::host().vector_width()).apply(&task.func).unwrap();

    // What the measurer sends: a worker that saves its job and answers a timing.
    let dir = temp("cold-job");
    let job = dir.join("job.json");
    let script = format!("cat > '{}'; echo '{{\"median_s\":0.001,\"mean_s\":0.001,\"std_s\":0.0,\"runs\":5}}'", job.display());
    let mut fake = LocalMeasurer::new(Target::host(), vec!["sh".into(), "-c".into(), script]).unwrap();
    fake.measure(&task, &scheduled).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&job).unwrap()).unwrap();
    assert_eq!(sent["cold"], serde_json::json!([0]), "{sent}");

    // The real worker times it cold, one run per sample, and computes the same output.
    let mut m = local();
    let stats = m.measure(&task, &scheduled).unwrap();
    assert!(stats.median_s > 0.0 && stats.median_s.is_finite() && stats.runs == 5, "{stats:?}");
    let want = interp_outputs(&task.func).unwrap();
    let got = m.outputs(&task, &scheduled, 7).unwrap();
    let close = want.chunks_exact(4).zip(got.chunks_exact(4)).all(|(x, y)| {
        let (x, y) = (f32::from_le_bytes(x.try_into().unwrap()), f32::from_le_bytes(y.try_into().unwrap()));
        (x - y).abs() <= 1e-3 * (1.0 + x.abs())
    });
    assert!(got.len() == want.len() && close, "the cold-timed kernel computes what the evaluator does");

    // Small weights stay warm: nothing to evict.
    assert!(tune::task::cold_params(&conv_task().func, &conv_task().constants).is_empty());

    // A job naming a parameter the kernel does not have is answered with an error.
    let library = tune::measure::build::build_library(&scheduled, &Target::host(), &dir, "k").unwrap();
    let bad = tune::measure::build::job(&scheduled, &library.display().to_string(), 1, &m.timing, None, &[9]);
    let mut child = Command::new(WORKER).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), serde_json::to_string(&bad).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(reply.contains("cold parameter 9: the kernel has 3 parameters"), "{reply}");
}
