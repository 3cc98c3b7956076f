//! Module and kernel setup, and code generation of statements: loops of every kind, guards
//! and the SIMD context of vectorized loops.

use std::collections::HashSet;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::BuilderError;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::targets::TargetMachine;
use inkwell::types::{BasicType, BasicTypeEnum};
use inkwell::values::{BasicValue, FunctionValue};
use inkwell::AddressSpace;
use ir::loops::{index, simd, BufKind, Expr, Func, Loop, LoopKind, Stmt, VarId};
use ir::DType;

use crate::ops::{lanes, Bv, Ir};
use crate::{ConstBlob, Kernel, LlvmError, Target};

/// Temporaries above this many bytes live on the heap: thread stacks are small.
const STACK_TEMP_LIMIT: usize = 64 * 1024;

/// C library functions kernels may call (helpers of the backend's own are `chanasc.*`).
const RESERVED: &[&str] = &["tanhf", "erff", "expf", "logf", "powf", "sinf", "cosf", "aligned_alloc", "free", "memcpy", "memset"];

/// Why code generation of one kernel stopped.
#[derive(Debug)]
pub(crate) enum GenError {
    Unsupported(String),
    Builder(String),
}

impl From<BuilderError> for GenError {
    fn from(e: BuilderError) -> Self {
        GenError::Builder(e.to_string())
    }
}

pub(crate) type R<T> = Result<T, GenError>;

/// The SIMD context inside a vectorized loop.
#[derive(Clone, Copy)]
pub(crate) struct Simd<'ctx> {
    pub lane: VarId,
    pub width: u32,
    /// Lanes active under the enclosing lane-varying guards; None when all are.
    pub mask: Option<Bv<'ctx>>,
}

/// Code generation state of one kernel.
pub(crate) struct Gen<'a, 'm, 'ctx> {
    pub ir: Ir<'m, 'ctx>,
    pub f: &'a Func,
    pub func: FunctionValue<'ctx>,
    /// Base pointer of every buffer.
    pub bufs: Vec<Bv<'ctx>>,
    /// The scalar value of each loop variable in scope (not the lane variable).
    pub vars: Vec<Option<Bv<'ctx>>>,
    /// The inclusive range of each loop variable in scope.
    pub ranges: Vec<Option<(i64, i64)>>,
    pub simd: Option<Simd<'ctx>>,
}

pub(crate) fn build_module<'ctx>(
    ctx: &'ctx Context,
    kernels: &[Kernel],
    consts: &[ConstBlob],
    target: &Target,
    machine: &TargetMachine,
) -> Result<Module<'ctx>, LlvmError> {
    let module = ctx.create_module("chanasc");
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    let mut seen = HashSet::new();
    for sym in kernels.iter().map(|k| &k.symbol).chain(consts.iter().map(|c| &c.symbol)) {
        if sym.is_empty() {
            return Err(LlvmError::BadSymbol { symbol: sym.clone(), why: "it is empty" });
        }
        if RESERVED.contains(&sym.as_str()) || sym.starts_with("llvm.") || sym.starts_with("chanasc.") {
            return Err(LlvmError::BadSymbol { symbol: sym.clone(), why: "generated code calls a function of that name" });
        }
        if !seen.insert(sym.as_str()) {
            return Err(LlvmError::DuplicateSymbol(sym.clone()));
        }
    }
    for blob in consts {
        let data = ctx.const_string(blob.bytes, false);
        let g = module.add_global(data.get_type(), Some(AddressSpace::default()), &blob.symbol);
        g.set_initializer(&data);
        g.set_constant(true);
        g.set_linkage(Linkage::External);
        g.set_alignment(64);
        g.set_section(Some(&format!(".rodata.{}", blob.symbol)));
    }
    for k in kernels {
        kernel(ctx, &module, k, target).map_err(|e| match e {
            GenError::Unsupported(what) => LlvmError::Unsupported { symbol: k.symbol.clone(), func: k.func.name.clone(), what },
            GenError::Builder(msg) => LlvmError::Builder { symbol: k.symbol.clone(), func: k.func.name.clone(), msg },
        })?;
    }
    Ok(module)
}

fn enum_attr(ctx: &Context, name: &str, v: u64) -> Attribute {
    ctx.create_enum_attribute(Attribute::get_named_enum_kind_id(name), v)
}

/// The in-memory element type of a buffer (bool is a byte).
pub(crate) fn mem_type<'ctx>(ctx: &'ctx Context, d: DType) -> BasicTypeEnum<'ctx> {
    match d {
        DType::F32 => ctx.f32_type().into(),
        DType::F16 => ctx.f16_type().into(),
        DType::I64 => ctx.i64_type().into(),
        DType::Bool => ctx.i8_type().into(),
    }
}

/// The register type of a value of type `d` (bool is i1).
pub(crate) fn reg_type<'ctx>(ctx: &'ctx Context, d: DType) -> BasicTypeEnum<'ctx> {
    match d {
        DType::Bool => ctx.bool_type().into(),
        other => mem_type(ctx, other),
    }
}

fn kernel<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, k: &Kernel, target: &Target) -> R<()> {
    let f = k.func;
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let fty = ctx.void_type().fn_type(&[ptr.into(), i64t.into(), i64t.into()], false);
    let func = module.add_function(&k.symbol, fty, Some(Linkage::External));
    func.add_attribute(AttributeLoc::Function, enum_attr(ctx, "nounwind", 0));
    // Without this, AVX-512 CPUs that prefer 256-bit vectors split <16 x float> in two.
    let bits = (target.vector_width() * 32).to_string();
    func.add_attribute(AttributeLoc::Function, ctx.create_string_attribute("min-legal-vector-width", &bits));
    func.add_attribute(AttributeLoc::Param(0), enum_attr(ctx, "readonly", 0));
    func.add_attribute(AttributeLoc::Param(0), enum_attr(ctx, "nocapture", 0));

    let ir = Ir { ctx, module, b: ctx.create_builder() };
    let entry = ctx.append_basic_block(func, "entry");
    ir.b.position_at_end(entry);
    let args = func.get_nth_param(0).expect("declared above");
    let align_kind = ctx.get_kind_id("align");
    let align64 = ctx.metadata_node(&[i64t.const_int(64, false).into()]);
    let mut bufs = Vec::with_capacity(f.buffers.len());
    let mut heap = Vec::new();
    let mut param_no = 0;
    for b in &f.buffers {
        let p = match b.kind {
            BufKind::Param => {
                let slot = ir.gep(ptr.into(), args, ir.i64(param_no));
                param_no += 1;
                let p = ir.load(ptr.into(), slot, 8);
                let inst = p.as_instruction_value().expect("a load");
                inst.set_metadata(align64, align_kind).map_err(|e| GenError::Builder(e.to_string()))?;
                p
            }
            BufKind::Temp => {
                let bytes = b.shape.iter().product::<usize>().max(1) * b.dtype.size_bytes();
                let bytes = bytes.next_multiple_of(64);
                if bytes <= STACK_TEMP_LIMIT {
                    let arr = ctx.i8_type().array_type(bytes as u32);
                    let a = ir.b.build_alloca(arr, &b.name)?;
                    a.as_instruction_value().expect("an alloca").set_alignment(64).map_err(|e| GenError::Builder(e.to_string()))?;
                    a.into()
                } else {
                    let alloc = libc_fn(&ir, "aligned_alloc", Some(ptr.into()), &[i64t.into(), i64t.into()]);
                    let p = ir.call(alloc, &[ir.i64(64), ir.i64(bytes as i64)]).expect("returns a pointer");
                    heap.push(p);
                    p
                }
            }
        };
        bufs.push(p);
    }
    let mut g = Gen { ir, f, func, bufs, vars: vec![None; f.vars.len()], ranges: vec![None; f.vars.len()], simd: None };
    match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => {
            let (begin, end) = (func.get_nth_param(1).expect("declared"), func.get_nth_param(2).expect("declared"));
            let lo = g.ir.intrinsic("llvm.smax", &[i64t.into()], &[begin, g.ir.i64(0)]).expect("a value");
            let hi = g.ir.intrinsic("llvm.smin", &[i64t.into()], &[end, g.ir.i64(l.extent)]).expect("a value");
            g.serial_loop(l, lo, hi)?;
        }
        body => g.stmts(body)?,
    }
    if !heap.is_empty() {
        let free = libc_fn(&g.ir, "free", None, &[ptr.into()]);
        for p in heap {
            g.ir.call(free, &[p]);
        }
    }
    g.ir.b.build_return(None)?;
    Ok(())
}

/// The C library function `name`, declared on first use.
pub(crate) fn libc_fn<'ctx>(
    ir: &Ir<'_, 'ctx>,
    name: &str,
    ret: Option<BasicTypeEnum<'ctx>>,
    params: &[BasicTypeEnum<'ctx>],
) -> FunctionValue<'ctx> {
    if let Some(f) = ir.module.get_function(name) {
        return f;
    }
    let params: Vec<_> = params.iter().map(|&p| p.into()).collect();
    let fty = match ret {
        None => ir.ctx.void_type().fn_type(&params, false),
        Some(t) => t.fn_type(&params, false),
    };
    let f = ir.module.add_function(name, fty, Some(Linkage::External));
    f.add_attribute(AttributeLoc::Function, enum_attr(ir.ctx, "nounwind", 0));
    f
}

impl<'ctx> Gen<'_, '_, 'ctx> {
    pub(crate) fn stmts(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::For(l) => self.for_loop(l),
            Stmt::Store { buf, index, value } => self.store(*buf, index, value),
            Stmt::If { cond, then } => self.guard(cond, then),
            Stmt::Prefetch { buf, index } => self.prefetch(*buf, index),
        }
    }

    fn for_loop(&mut self, l: &Loop) -> R<()> {
        let v = l.var.index();
        match l.kind {
            // A GPU schedule's loops mean nothing on the CPU: refuse rather than run serially.
            LoopKind::GpuBlock | LoopKind::GpuThread | LoopKind::GpuCooperative => Err(GenError::Unsupported(format!(
                "loop {} is bound to the GPU ({}); schedule the program for the CPU",
                self.f.vars[v],
                l.kind.name()
            ))),
            LoopKind::Unrolled => {
                for k in 0..l.extent {
                    self.vars[v] = Some(self.ir.i64(k));
                    self.ranges[v] = Some((k, k));
                    self.stmts(&l.body)?;
                }
                self.vars[v] = None;
                self.ranges[v] = None;
                Ok(())
            }
            LoopKind::Vectorized if self.simd.is_none() && simd::blocker(self.f, l, &self.ranges).is_none() => {
                self.simd = Some(Simd { lane: l.var, width: l.extent as u32, mask: None });
                self.ranges[v] = Some((0, l.extent - 1));
                let r = self.stmts(&l.body);
                self.ranges[v] = None;
                self.simd = None;
                r
            }
            _ => {
                let (lo, hi) = (self.ir.i64(0), self.ir.i64(l.extent));
                self.serial_loop(l, lo, hi)
            }
        }
    }

    /// `for var in lo..hi` with a phi counter; `l.extent` still bounds the variable's range.
    fn serial_loop(&mut self, l: &Loop, lo: Bv<'ctx>, hi: Bv<'ctx>) -> R<()> {
        let name = &self.f.vars[l.var.index()];
        let ctx = self.ir.ctx;
        let pre = self.ir.b.get_insert_block().expect("positioned");
        let header = ctx.append_basic_block(self.func, name);
        let body = ctx.append_basic_block(self.func, &format!("{name}.body"));
        let exit = ctx.append_basic_block(self.func, &format!("{name}.end"));
        self.ir.b.build_unconditional_branch(header)?;
        self.ir.b.position_at_end(header);
        let phi = self.ir.b.build_phi(ctx.i64_type(), name)?;
        phi.add_incoming(&[(&lo, pre)]);
        let i = phi.as_basic_value();
        let more = self.ir.icmp(inkwell::llvm_sys::LLVMIntPredicate::LLVMIntSLT, i, hi);
        self.ir.b.build_conditional_branch(more.into_int_value(), body, exit)?;
        self.ir.b.position_at_end(body);
        let v = l.var.index();
        self.vars[v] = Some(i);
        self.ranges[v] = Some((0, l.extent - 1));
        self.stmts(&l.body)?;
        self.vars[v] = None;
        self.ranges[v] = None;
        let next = self.ir.binop(inkwell::llvm_sys::LLVMOpcode::LLVMAdd, i, self.ir.i64(1), true);
        let latch = self.ir.b.get_insert_block().expect("positioned");
        self.ir.b.build_unconditional_branch(header)?;
        phi.add_incoming(&[(&next, latch)]);
        self.ir.b.position_at_end(exit);
        Ok(())
    }

    /// `if cond { then }`: a branch when the condition is the same in every lane, otherwise a
    /// narrower lane mask for `then` (entered only when some lane is active).
    fn guard(&mut self, cond: &Expr, then: &[Stmt]) -> R<()> {
        let c = self.value(cond)?;
        if lanes(c).is_none() {
            match c.into_int_value().get_zero_extended_constant() {
                Some(0) => return Ok(()),
                Some(_) => return self.stmts(then),
                None => {}
            }
        }
        let outer = self.simd;
        let taken = match (lanes(c), outer) {
            (Some(_), Some(s)) => {
                let mask = match s.mask {
                    Some(m) => self.ir.binop(inkwell::llvm_sys::LLVMOpcode::LLVMAnd, m, c, false),
                    None => c,
                };
                self.simd = Some(Simd { mask: Some(mask), ..s });
                self.ir.unary("llvm.vector.reduce.or", mask)
            }
            _ => c,
        };
        let ctx = self.ir.ctx;
        let then_bb = ctx.append_basic_block(self.func, "then");
        let merge = ctx.append_basic_block(self.func, "endif");
        self.ir.b.build_conditional_branch(taken.into_int_value(), then_bb, merge)?;
        self.ir.b.position_at_end(then_bb);
        let r = self.stmts(then);
        self.simd = outer;
        r?;
        self.ir.b.build_unconditional_branch(merge)?;
        self.ir.b.position_at_end(merge);
        Ok(())
    }

    /// Simplifies an expression under the current loop ranges and generates it.
    pub(crate) fn value(&mut self, e: &Expr) -> R<Bv<'ctx>> {
        let e = index::simplify(e.clone(), &self.ranges);
        self.gen(&e)
    }

    /// A mask with every one of `width` lanes on.
    pub(crate) fn all_lanes(&self, width: u32) -> Bv<'ctx> {
        self.ir.splat(self.ir.bool(true), width)
    }
}
