//! The LLVM backend: compiles scheduled loop IR to native objects for x86-64 and aarch64.
//!
//! Each [`Kernel`] becomes `void symbol(void* const* args, int64_t begin, int64_t end)`;
//! loops of kind vectorized become SIMD code over LLVM vector types (or serial code where
//! lanes would interfere), unrolled loops are repeated, and a single outermost parallel loop
//! runs only iterations `[begin, end)`. Weights become read-only, 64-byte aligned globals.

mod codegen;
mod error;
mod expr;
mod ops;
mod target;

use inkwell::context::Context;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::FileType;

pub use error::LlvmError;
pub use target::{Arch, Target};

/// One tensor program to compile as `void symbol(void* const* args, int64_t begin, int64_t end)`.
/// args[i] points at the i-th Param buffer of `func` (row-major, dense, 64-byte aligned).
/// When the function body is a single loop of kind Parallel, only iterations [begin, end)
/// of that loop run (the runtime splits it across threads); otherwise the whole body runs
/// and begin/end are ignored.
pub struct Kernel<'a> {
    pub symbol: String,
    pub func: &'a ir::loops::Func,
}

/// A named constant blob (weights), emitted as a global `const` byte array aligned to 64
/// bytes with external linkage, in a read-only section.
pub struct ConstBlob<'a> {
    pub symbol: String,
    pub bytes: &'a [u8],
}

/// Compiles kernels and constants into one relocatable object file (ELF) for `target`, at -O3.
pub fn compile_object(kernels: &[Kernel], consts: &[ConstBlob], target: &Target) -> Result<Vec<u8>, LlvmError> {
    let ctx = Context::create();
    let machine = target.machine()?;
    let module = codegen::build_module(&ctx, kernels, consts, target, &machine)?;
    optimize(&module, &machine)?;
    let buf = machine
        .write_to_memory_buffer(&module, FileType::Object)
        .map_err(|e| LlvmError::Emit { stage: "object emission", msg: e.to_string() })?;
    Ok(buf.as_slice().to_vec())
}

/// The textual LLVM IR of the same module (for debugging and `chanasc ir --print-after llvm`).
pub fn emit_llvm_ir(kernels: &[Kernel], consts: &[ConstBlob], target: &Target) -> Result<String, LlvmError> {
    let ctx = Context::create();
    let machine = target.machine()?;
    let module = codegen::build_module(&ctx, kernels, consts, target, &machine)?;
    optimize(&module, &machine)?;
    Ok(module.print_to_string().to_string())
}

fn optimize(module: &inkwell::module::Module, machine: &inkwell::targets::TargetMachine) -> Result<(), LlvmError> {
    module.verify().map_err(|e| LlvmError::Verify(e.to_string()))?;
    module
        .run_passes("default<O3>", machine, PassBuilderOptions::create())
        .map_err(|e| LlvmError::Emit { stage: "optimization", msg: e.to_string() })
}
