//! The default task end to end on a small synthetic 28x28 dataset: `chanasc supernet train`,
//! `chanasc search --space fmnist-mbv3 --accuracy supernet:..` (with a given block latency
//! table, so that nothing is timed) and `chanasc eval` on the searched classifier: the
//! compiled binary's test accuracy is what the oracle predicted for it; and a killed
//! `supernet train` resumes to the uninterrupted run's weights.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{idx, tempdir};

use train::supernet::latency::BlockTable;
use train::supernet::{fmnist_mbv3, Piece};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

fn ok(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {s}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    s
}

fn value(out: &str, key: &str) -> f64 {
    let line = out.lines().find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).map(str::to_string));
    line.unwrap_or_else(|| panic!("no {key}= in {out}")).parse().unwrap()
}

/// 28x28 images of 10 classes: a bright square at one of ten places.
fn write_dataset(dir: &Path) {
    for (prefix, n) in [("train", 64u32), ("t10k", 40)] {
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let class = (i % 10) as usize;
            let (cy, cx) = (4 + (class / 5) * 14, 2 + (class % 5) * 5);
            for y in 0..28 {
                for x in 0..28 {
                    let on = (cy..cy + 6).contains(&y) && (cx..cx + 4).contains(&x);
                    pixels.push(if on { 220 } else { 10 } + ((x * 5 + y * 3 + i as usize) % 25) as u8);
                }
            }
            labels.push(class as u8);
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), idx(&[n, 28, 28], &pixels)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[n], &labels)).unwrap();
    }
}

/// A block latency table in which a piece costs its index: bigger kernels and expand ratios
/// cost more, as they do on a machine.
fn write_table(path: &Path) {
    let space = fmnist_mbv3(10);
    let mut table = BlockTable::new(&space, "synthetic", 1);
    for p in space.pieces() {
        let ms = match p {
            Piece::Stem | Piece::Head => 0.01,
            Piece::Block { k, e, .. } => 0.001 * (k * k + 2 * e) as f64,
        };
        table.entries.insert(p.key(), ms);
    }
    table.save(path).unwrap();
}

#[test]
fn searched_classifier_is_deployed_with_the_supernets_weights() {
    let dir = tempdir("supernet-search-e2e");
    write_dataset(&dir);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("supernet.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    let trained = ok(&chanasc(&[
        "supernet",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--batch",
        "16",
        "--calib-images",
        "32",
        "--seed",
        "1",
        "-o",
        ckpt_s,
    ]));
    assert!(trained.contains("largest_test_acc="), "{trained}");
    let table = dir.join("table.json");
    write_table(&table);
    let out = dir.join("search");
    let oracle = format!("supernet:{ckpt_s}");
    let args = |budget: &'static str| {
        vec![
            "search".to_string(),
            "--space".into(),
            "fmnist-mbv3".into(),
            "--accuracy".into(),
            oracle.clone(),
            "--latency-ms".into(),
            budget.into(),
            "--lut".into(),
            table.to_str().unwrap().into(),
            "--population".into(),
            "4".into(),
            "--generations".into(),
            "1".into(),
            "--runs".into(),
            "5".into(),
            "-o".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let a = args("0.5");
    let searched = ok(&chanasc(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(value(&searched, "predicted_latency_ms") <= 0.5, "{searched}");
    let oracle_acc = value(&searched, "val_acc");
    for f in ["arch.json", "deploy.json", "compiled/model", "summary.md", "population.csv", "pareto.svg", "search_log.jsonl"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let evaluated = ok(&chanasc(&["eval", out.to_str().unwrap(), "--dataset", "mnist", "--data-dir", data, "--runs", "5"]));
    assert_eq!(value(&evaluated, "images"), 40.0, "{evaluated}");
    let test_acc = value(&evaluated, "test_acc");
    assert!((test_acc - oracle_acc).abs() <= 0.01, "binary {test_acc} vs oracle {oracle_acc}");
    assert!(value(&evaluated, "latency_ms") > 0.0);

    // A budget no subnet meets, and a folder that is not a search's, are clear errors.
    let a = args("0.01");
    let o = chanasc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("even the smallest subnet"), "{o:?}");
    let o = chanasc(&["eval", data, "--dataset", "mnist", "--data-dir", data]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("deploy.json"), "{o:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `chanasc supernet train` killed (SIGKILL) after its first checkpoint resumes from it to
/// the same weights as an uninterrupted run.
#[test]
fn a_killed_supernet_run_resumes_from_its_last_checkpoint() {
    let dir = tempdir("supernet-search-kill");
    write_dataset(&dir);
    let data = dir.to_str().unwrap().to_string();
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["supernet", "train", "--dataset", "mnist", "--data-dir", &data, "--backend", "interp", "--epochs", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(
            ["--largest-epochs", "0", "--random-subnets", "1", "--batch", "16", "--calib-images", "16", "--limit-test", "16"]
                .map(String::from),
        );
        a.extend(["--checkpoint-every".into(), "1".into(), "-o".into(), out.to_str().unwrap().into()]);
        a
    };
    let whole = dir.join("whole.safetensors");
    ok(&chanasc(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>()));
    let killed = dir.join("killed.safetensors");
    support::kill_after_checkpoint(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>(), &killed, 300);
    let (_, meta) = train::checkpoint::read(&killed).expect("the checkpoint is whole");
    assert!(meta["global_step"].parse::<usize>().unwrap() >= 1);
    ok(&chanasc(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>()));
    let (a, _) = train::checkpoint::read(&whole).unwrap();
    let (b, _) = train::checkpoint::read(&killed).unwrap();
    assert_eq!(a, b, "the resumed run ends with the uninterrupted run's weights and momenta");
    std::fs::remove_dir_all(&dir).unwrap();
}
