//! Filetests: `tests/filetests/<pass>/*.ir` hold a graph, then `# expect:` and the graph the
//! pass must print for it, in comments. `CHANAS_BLESS=1` rewrites the expectations.

use std::path::Path;

fn run_pass(pass: &str, text: &str) -> Result<String, String> {
    let g = ir::text::parse_graph(text).map_err(|e| format!("input: {e}"))?;
    let (_, f) = passes::pipeline::GRAPH_PASSES.iter().find(|(name, _)| *name == pass).ok_or_else(|| format!("no pass {pass}"))?;
    let out = f(&g).map_err(|e| e.to_string())?;
    ir::graph::verify::verify(&out).map_err(|e| e.to_string())?;
    Ok(ir::text::print_graph(&out))
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let bless = std::env::var("CHANAS_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut count = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let pass = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "ir")) {
            count += 1;
            let content = std::fs::read_to_string(&file).unwrap();
            let (input, expected) = match content.split_once("# expect:\n") {
                Some((i, e)) => (i.to_string(), e.lines().map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#'))).collect::<Vec<_>>().join("\n") + "\n"),
                None => (content.clone(), String::new()),
            };
            let got = run_pass(&pass, &input).unwrap_or_else(|e| format!("error: {e}\n"));
            if bless {
                let commented: String = got.lines().map(|l| format!("# {l}\n")).collect();
                std::fs::write(&file, format!("{input}# expect:\n{commented}")).unwrap();
            } else if got != expected {
                failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", file.display()));
            }
        }
    }
    assert!(count > 0, "no filetests found");
    assert!(failures.is_empty(), "{} of {count} filetests differ (CHANAS_BLESS=1 rewrites them):\n{}", failures.len(), failures.join("\n"));
}
