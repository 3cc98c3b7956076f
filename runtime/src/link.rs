//! Builds the C side with the target's C compiler: the static library, the runner
//! executable, and the shared library the in-process backend loads.

use std::path::Path;
use std::process::Command;

use llvm_backend::Arch;

use crate::RuntimeError;

/// The C compiler and archiver for an architecture.
pub fn tools(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => ("cc", "ar"),
        Arch::Aarch64 => ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ar"),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), RuntimeError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        let hint = if program.contains("aarch64") { " (install gcc-aarch64-linux-gnu)" } else { "" };
        RuntimeError::Tool(format!("{what}: cannot run {program}: {e}{hint}"))
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(RuntimeError::Tool(format!("{what} failed ({program}): {}", err.trim())));
    }
    Ok(())
}

/// Compiles a C file of `dir` to an object beside it.
pub fn compile_c(arch: Arch, dir: &Path, source: &str, object: &str) -> Result<(), RuntimeError> {
    let (cc, _) = tools(arch);
    run(
        Command::new(cc).current_dir(dir).args(["-O2", "-fPIC", "-std=gnu11", "-c", source, "-o", object]),
        &format!("compiling {source}"),
    )
}

pub fn archive(arch: Arch, dir: &Path, library: &str, objects: &[&str]) -> Result<(), RuntimeError> {
    let (_, ar) = tools(arch);
    let _ = std::fs::remove_file(dir.join(library));
    run(Command::new(ar).current_dir(dir).arg("rcs").arg(library).args(objects), &format!("archiving {library}"))
}

pub fn link_executable(arch: Arch, dir: &Path, output: &str, inputs: &[&str]) -> Result<(), RuntimeError> {
    let (cc, _) = tools(arch);
    run(Command::new(cc).current_dir(dir).args(inputs).args(["-lpthread", "-lm", "-o", output]), &format!("linking {output}"))
}

pub fn link_shared(arch: Arch, dir: &Path, output: &str, objects: &[&str]) -> Result<(), RuntimeError> {
    let (cc, _) = tools(arch);
    run(
        Command::new(cc).current_dir(dir).arg("-shared").args(objects).args(["-lpthread", "-lm", "-o", output]),
        &format!("linking {output}"),
    )
}
