//! The cranelift backend: compiles scheduled loop IR into machine code in this process, in
//! milliseconds, for development, tests and quick screening in search.
//!
//! Each kernel becomes `void symbol(void* const* args, int64_t begin, int64_t end)`, the same
//! calling convention as the LLVM backend's, so one runtime drives both. Loops of kind
//! vectorized run as SIMD lanes (cranelift's 128-bit vectors: a loop of 16 lanes is four
//! f32x4 registers) where the lanes cannot interfere (the shared [`ir::loops::simd::blocker`]
//! check) and the extent is a multiple of 4; other loops run serially. Statements a lane-wise
//! f32x4 form does not cover (integer lanes, gathers of other types, guards that differ
//! between lanes) run lane by lane. Small f32 temporaries whose indices are all fixed at
//! compile time (register tiles of unrolled and vectorized loops) live in SSA variables
//! rather than memory, as LLVM's scalar replacement would put them in registers. Math
//! functions without an instruction (exp, tanh, erf, ...) call Rust functions lane by lane.

mod codegen;
mod error;
mod expr;
mod math;
mod plan;

use cranelift_codegen::ir::{types, AbiParam};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};

pub use error::CraneliftError;

/// One tensor program to compile as `void symbol(void* const* args, int64_t begin, int64_t end)`.
/// args[i] points at the i-th Param buffer of `func` (row-major, dense, 64-byte aligned).
/// When the function body is a single loop of kind Parallel, only iterations [begin, end)
/// of that loop run (the runtime splits it across threads); otherwise the whole body runs
/// and begin/end are ignored. A Param buffer the function never stores to must not overlap a
/// buffer it stores to (the memory plan keeps a program's inputs apart from its outputs):
/// the kernel reads it as read-only memory, whose loads cranelift may move and merge.
pub struct Kernel<'a> {
    pub symbol: String,
    pub func: &'a ir::loops::Func,
}

/// A compiled kernel's entry point.
pub type KernelFn = unsafe extern "C" fn(args: *const *mut u8, begin: i64, end: i64);

/// Kernels compiled into executable memory of this process; the memory is released on drop.
pub struct JitKernels {
    module: Option<JITModule>,
    entries: Vec<KernelFn>,
}

impl JitKernels {
    /// The entry point of the i-th kernel given to [`compile`].
    pub fn entry(&self, i: usize) -> Option<KernelFn> {
        self.entries.get(i).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for JitKernels {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the entry points die with `self`; callers cannot hold them longer than
            // the borrow of `entry` allows them to be used meaningfully (they are plain
            // function pointers, documented to be valid only while the kernels live).
            unsafe { m.free_memory() };
        }
    }
}

/// The host's instruction set with the backend's settings: optimization for speed, the IR
/// verifier only in debug builds.
fn host_isa() -> Result<cranelift_codegen::isa::OwnedTargetIsa, CraneliftError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CraneliftError::Setup(format!("{k}={v}: {e}")));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
    set(&mut flags, "is_pic", "false")?;
    let isa = cranelift_native::builder().map_err(|e| CraneliftError::Setup(format!("host ISA: {e}")))?;
    isa.finish(settings::Flags::new(flags)).map_err(|e| CraneliftError::Setup(format!("host ISA: {e}")))
}

/// Compiles kernels into this process's memory.
pub fn compile(kernels: &[Kernel]) -> Result<JitKernels, CraneliftError> {
    let isa = host_isa()?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, ptr) in math::symbols() {
        builder.symbol(name, ptr);
    }
    let mut module = JITModule::new(builder);
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(kernels.len());
    let mut ctx = module.make_context();
    let mut fctx = cranelift_frontend::FunctionBuilderContext::new();
    let mut imports = math::Imports::default();
    for k in kernels {
        if k.symbol.is_empty() || k.symbol.starts_with("chanasc_") {
            return Err(CraneliftError::BadSymbol {
                symbol: k.symbol.clone(),
                why: "it is empty or in the backend's own namespace (chanasc_)",
            });
        }
        if !seen.insert(k.symbol.as_str()) {
            return Err(CraneliftError::DuplicateSymbol(k.symbol.clone()));
        }
        let ptr = module.target_config().pointer_type();
        ctx.func.signature.params = vec![AbiParam::new(ptr), AbiParam::new(types::I64), AbiParam::new(types::I64)];
        ctx.func.signature.returns.clear();
        let id = module
            .declare_function(&k.symbol, Linkage::Local, &ctx.func.signature)
            .map_err(|e| CraneliftError::Module { symbol: k.symbol.clone(), msg: e.to_string() })?;
        codegen::build(&mut module, &mut imports, &mut ctx.func, &mut fctx, k)?;
        module.define_function(id, &mut ctx).map_err(|e| CraneliftError::Module { symbol: k.symbol.clone(), msg: format!("{e:?}") })?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module.finalize_definitions().map_err(|e| CraneliftError::Module { symbol: String::new(), msg: e.to_string() })?;
    let entries = ids
        .into_iter()
        .map(|id| {
            let p = module.get_finalized_function(id);
            // SAFETY: every function was declared with the KernelFn signature above.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect();
    Ok(JitKernels { module: Some(module), entries })
}

/// The cranelift IR of one kernel after code generation, before cranelift's optimizations
/// (for debugging).
pub fn emit_clif(kernel: &Kernel) -> Result<String, CraneliftError> {
    let isa = host_isa()?;
    let builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let mut module = JITModule::new(builder);
    let mut ctx = module.make_context();
    let ptr = module.target_config().pointer_type();
    ctx.func.signature.params = vec![AbiParam::new(ptr), AbiParam::new(types::I64), AbiParam::new(types::I64)];
    let mut fctx = cranelift_frontend::FunctionBuilderContext::new();
    codegen::build(&mut module, &mut math::Imports::default(), &mut ctx.func, &mut fctx, kernel)?;
    let text = ctx.func.display().to_string();
    // SAFETY: nothing was compiled into the module.
    unsafe { module.free_memory() };
    Ok(text)
}
