//! The torchvision fixture models of `../shared/fixtures/models`: each imports, its graph IR
//! text parses back to the same text, and the interpreter reproduces ONNX Runtime's output
//! (max|a-b| / max|b| <= 1e-4). Without `../shared` this test says so and passes.

mod support;

use std::process::ExitCode;
use std::time::Instant;

fn check(model: &std::path::Path) -> Result<String, String> {
    let stem = model.with_extension("");
    let g = frontend::load_onnx(model).map_err(|e| e.to_string())?;
    let text = ir::text::print_graph(&g);
    let reparsed = ir::text::parse_graph(&text).map_err(|e| format!("printed IR does not parse: {e}"))?;
    if ir::text::print_graph(&reparsed) != text {
        return Err("printed IR does not parse back to the same text".into());
    }
    let input = frontend::npy::read_npy(&stem.with_extension("input.npy")).map_err(|e| e.to_string())?;
    let want = frontend::npy::read_npy(&stem.with_extension("output.npy")).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let got = interp::run(&g, &[input]).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let rel = support::compare(&got[0], &want, 1e-4)?;
    Ok(format!("{} nodes, rel error {rel:.2e}, interp {secs:.2} s, IR round-trip ok", g.nodes.len()))
}

fn main() -> ExitCode {
    let Some(shared) = support::shared_dir() else {
        println!("fixtures: SKIPPED: ../shared is not present (set CHANASC_SHARED to its path to run the fixture models)");
        return ExitCode::SUCCESS;
    };
    let dir = shared.join("fixtures/models");
    let mut models: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect())
        .unwrap_or_default();
    models.sort();
    let mut failed = 0;
    for m in &models {
        let name = m.file_stem().unwrap_or_default().to_string_lossy();
        match check(m) {
            Ok(msg) => println!("fixture {name}: ok ({msg})"),
            Err(e) => {
                failed += 1;
                println!("fixture {name}: FAILED: {e}");
            }
        }
    }
    if models.is_empty() {
        println!("fixtures: FAILED: no models in {}", dir.display());
        return ExitCode::FAILURE;
    }
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
