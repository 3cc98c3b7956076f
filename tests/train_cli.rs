//! `chanasc train` end to end on a small synthetic MNIST-format dataset, on the interpreter:
//! it trains, writes its checkpoint and curve, stops and resumes to the same result, and
//! answers bad arguments with one clear error line.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{idx, tempdir};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

/// 12x12 images of 3 classes: a bright band at the top, middle or bottom.
fn write_dataset(dir: &Path) {
    for (prefix, n) in [("train", 48u32), ("t10k", 24)] {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = (i % 3) as usize;
            for y in 0..12 {
                for x in 0..12 {
                    let band = y / 4 == class;
                    pixels.push(if band { 200 } else { 30 } + ((x * 7 + y * 3 + i as usize) % 20) as u8);
                }
            }
            labels.push(class as u8);
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(&[n, 12, 12], &pixels)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[n], &labels)).unwrap();
    }
}

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        data,
        "--backend",
        "interp",
        "--epochs",
        "2",
        "--batch",
        "8",
        "--lr",
        "0.05",
        "--seed",
        "1",
        "-o",
        out,
    ]
}

fn summary(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {s}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    s
}

#[test]
fn trains_stops_and_resumes() {
    let dir = tempdir("train-cli-run");
    write_dataset(&dir);
    let data = dir.to_str().unwrap();
    let whole = dir.join("whole.safetensors");
    let o = chanasc(&train_args(data, whole.to_str().unwrap()));
    let s = summary(&o);
    assert!(s.contains("test_acc=") && s.contains("images_per_s="), "{s}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("epoch ").count(), 2, "one line per epoch: {err}");
    assert!(std::fs::read_to_string(dir.join("whole.svg")).unwrap().contains("<polyline"));
    // Stopped after 7 steps (6 per epoch), then resumed: the same final checkpoint.
    let split = dir.join("split.safetensors");
    let mut args = train_args(data, split.to_str().unwrap());
    args.extend(["--stop-after-steps", "7"]);
    assert!(summary(&chanasc(&args)).contains("stopped after 7 steps"));
    let resumed = summary(&chanasc(&train_args(data, split.to_str().unwrap())));
    let acc = |s: &str| s.split_whitespace().find(|w| w.starts_with("test_acc=")).map(str::to_string);
    assert_eq!(acc(&resumed), acc(&s));
    let (a, _) = train::checkpoint::read(&whole).unwrap();
    let (b, _) = train::checkpoint::read(&split).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let dir = tempdir("train-cli-kill");
    write_dataset(&dir);
    let data = dir.to_str().unwrap();
    let whole = dir.join("whole.safetensors");
    summary(&chanasc(&train_args(data, whole.to_str().unwrap())));
    // Checkpoint every step; SIGKILL once a checkpoint is there, at whatever point the run is.
    let killed = dir.join("killed.safetensors");
    let mut args = train_args(data, killed.to_str().unwrap());
    args.extend(["--checkpoint-every", "1"]);
    support::kill_after_checkpoint(&args, &killed, 120);
    let (_, meta) = train::checkpoint::read(&killed).expect("the checkpoint is whole");
    assert!(meta["global_step"].parse::<usize>().unwrap() >= 1);
    summary(&chanasc(&train_args(data, killed.to_str().unwrap())));
    let (a, _) = train::checkpoint::read(&whole).unwrap();
    let (b, _) = train::checkpoint::read(&killed).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = tempdir("train-cli-bad");
    let data = dir.to_str().unwrap();
    let out = dir.join("x.safetensors");
    let out = out.to_str().unwrap();
    let replaced = |key: &str, value: &'static str| -> Vec<String> {
        let mut args: Vec<String> = train_args(data, out).iter().map(|s| s.to_string()).collect();
        let i = args.iter().position(|a| a == key).unwrap();
        args[i + 1] = value.to_string();
        args
    };
    for (args, want) in [
        (replaced("--dataset", "imagenet"), "unknown --dataset"),
        (replaced("--backend", "gpu"), "unknown backend"),
        (replaced("--epochs", "0"), "--epochs"),
        (replaced("--batch", "8"), "train-images-idx3-ubyte"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = chanasc(&args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && !err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{want:?} not in {err}");
    }
    let o = chanasc(&["train", "--dataset", "mnist", "-o", out]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --data-dir"));
}
