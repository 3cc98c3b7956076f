//! Checks against OFA's published data in `../shared/data/ofa` (or `$CHANASC_SHARED/data/ofa`):
//! the accuracy predictor reproduces the recorded outputs, and the block keys of the w1.2
//! space are exactly those of the Note10 latency tables. Without the data these tests say so
//! on stderr and pass.

use std::path::PathBuf;

use nas::blocks::space_blocks;
use nas::oracle::predictor::Predictor;
use nas::rng::SplitMix64;
use nas::space::PREDICTOR_RESOLUTIONS;
use nas::{decompose, ArchConfig, LatencyTable};

fn ofa_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("CHANASC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = shared.join("data/ofa");
    if dir.is_dir() {
        Some(dir)
    } else {
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} is not present (set CHANASC_SHARED to the shared folder)",
            dir.display()
        );
        None
    }
}

#[test]
fn predictor_reproduces_the_public_vectors() {
    let Some(dir) = ofa_dir() else { return };
    let text = std::fs::read_to_string(dir.join("predictor_vectors_public.json")).unwrap();
    // The file's structure first: a list of arch dicts, each with the expected output.
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON list");
    assert_eq!(cases.len(), 8);
    let predictor = Predictor::load(&dir.join("ofa_mbv3_w12_acc_predictor.safetensors")).unwrap();
    let mut worst = 0f64;
    for case in &cases {
        let obj = case.as_object().expect("each case is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["d", "e", "ks", "r", "top1"]);
        let want = obj["top1"].as_f64().expect("top1 is a number");
        let arch: ArchConfig = serde_json::from_value(case.clone()).unwrap();
        arch.validate_for_predictor().unwrap();
        let got = predictor.predict(&arch).unwrap();
        worst = worst.max((got - want).abs());
        assert!(
            (got - want).abs() <= 1e-5,
            "{}: predicted {got}, recorded {want}",
            arch.to_compact()
        );
    }
    eprintln!("predictor: 8 vectors within {worst:.2e}");
    // The extremes PAPER.md quotes.
    assert!((predictor.predict(&ArchConfig::max(224)).unwrap() - 0.8359).abs() < 1e-4);
    assert!((predictor.predict(&ArchConfig::min(160)).unwrap() - 0.7531).abs() < 1e-4);
}

#[test]
fn block_keys_are_the_note10_tables_keys() {
    let Some(dir) = ofa_dir() else { return };
    let mut rng = SplitMix64::new(2024);
    for r in PREDICTOR_RESOLUTIONS {
        let path = dir.join(format!("note10_lut_{r}.yaml"));
        let table = LatencyTable::load(&path).unwrap();
        // The table holds exactly the distinct blocks of the space at this resolution.
        let ours: Vec<String> = space_blocks(1.2, r)
            .unwrap()
            .iter()
            .map(|b| b.key())
            .collect();
        let theirs: Vec<String> = table.entries.keys().cloned().collect();
        let mut ours_sorted = ours.clone();
        ours_sorted.sort();
        assert_eq!(ours_sorted, theirs, "resolution {r}");
        for _ in 0..50 {
            let arch = ArchConfig::sample(&mut rng, &[r]);
            for b in decompose(&arch, 1.2).unwrap() {
                assert!(
                    table.get(&b).is_some(),
                    "{} lacks {}",
                    path.display(),
                    b.key()
                );
            }
            let ms = table.predict(&decompose(&arch, 1.2).unwrap()).unwrap();
            assert!(ms > 0.0 && ms.is_finite());
        }
        // The writer reproduces OFA's file byte for byte.
        let original = std::fs::read_to_string(&path).unwrap();
        assert_eq!(table.to_yaml(), original, "{}", path.display());
    }
    let t = LatencyTable::load(&dir.join("note10_lut_224.yaml")).unwrap();
    let max = t
        .predict(&decompose(&ArchConfig::max(224), 1.2).unwrap())
        .unwrap();
    let min = LatencyTable::load(&dir.join("note10_lut_160.yaml"))
        .unwrap()
        .predict(&decompose(&ArchConfig::min(160), 1.2).unwrap())
        .unwrap();
    eprintln!("Note10 latency: max@224 {max:.2} ms, min@160 {min:.2} ms");
    assert!(max > min);
}
