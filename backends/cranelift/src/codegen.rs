//! Kernel setup and code generation of statements: loops of every kind, guards, the SIMD
//! context of vectorized loops, and temporaries in memory or in variables.

use std::collections::HashMap;

use cranelift_codegen::ir::{types, BlockArg, FuncRef, Function, InstBuilder, StackSlotData, StackSlotKind, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::Module;
use ir::loops::index;
use ir::loops::{BufKind, Expr, Func, Loop, LoopKind, Stmt, VarId};

use crate::math::{Helper, Imports};
use crate::plan::{self, numel, Plan, LANES};
use crate::{CraneliftError, Kernel};

/// Temporaries above this many bytes live on the heap: thread stacks are small.
const STACK_TEMP_LIMIT: usize = 64 * 1024;

/// Why code generation of one kernel stopped.
#[derive(Debug)]
pub(crate) enum GenError {
    Unsupported(String),
    Internal(String),
    /// A temporary planned for variables was indexed by a value only known at run time.
    NotPromotable,
}

pub(crate) type R<T> = Result<T, GenError>;

/// The SIMD context inside a vectorized loop that runs as lanes.
#[derive(Clone, Copy)]
pub(crate) struct Simd {
    pub lane: VarId,
    /// Lanes, a multiple of [`LANES`].
    pub width: u32,
}

impl Simd {
    pub fn chunks(self) -> usize {
        self.width as usize / LANES as usize
    }
}

/// Code generation state of one kernel.
pub(crate) struct Gen<'a, 'b> {
    pub b: FunctionBuilder<'b>,
    pub module: &'a mut JITModule,
    pub imports: &'a mut Imports,
    pub refs: HashMap<Helper, FuncRef>,
    pub f: &'a Func,
    pub plan: Plan,
    /// Base address of every buffer in memory.
    pub bufs: Vec<Option<Value>>,
    /// The f32x4 variables of every promoted temporary (element e in variable e / 4, lane e % 4).
    pub regs: Vec<Vec<Variable>>,
    /// The scalar value of each loop variable in scope (not the lane variable).
    pub vars: Vec<Option<Value>>,
    /// The inclusive range of each loop variable in scope.
    pub ranges: Vec<Option<(i64, i64)>>,
    pub simd: Option<Simd>,
}

/// Generates `k` into `func` (whose signature is set), falling back to temporaries in
/// memory when one planned for variables turns out to need an address.
pub(crate) fn build(
    module: &mut JITModule,
    imports: &mut Imports,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    k: &Kernel,
) -> Result<(), CraneliftError> {
    let sig = func.signature.clone();
    let first = plan::plan(k.func, true);
    let promoted = first.promoted.iter().any(|&p| p);
    let result = match generate(module, imports, func, fctx, k.func, first) {
        Err(GenError::NotPromotable) if promoted => {
            func.clear();
            func.signature = sig;
            *fctx = FunctionBuilderContext::new();
            generate(module, imports, func, fctx, k.func, plan::plan(k.func, false))
        }
        r => r,
    };
    result.map_err(|e| match e {
        GenError::Unsupported(what) => CraneliftError::Unsupported { symbol: k.symbol.clone(), func: k.func.name.clone(), what },
        GenError::Internal(msg) => CraneliftError::Gen { symbol: k.symbol.clone(), func: k.func.name.clone(), msg },
        GenError::NotPromotable => CraneliftError::Gen {
            symbol: k.symbol.clone(),
            func: k.func.name.clone(),
            msg: "a temporary in variables needs an address".into(),
        },
    })
}

fn generate(
    module: &mut JITModule,
    imports: &mut Imports,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    f: &Func,
    plan: Plan,
) -> R<()> {
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let (args, begin, end) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2])
    };
    let mut g = Gen {
        b,
        module,
        imports,
        refs: HashMap::new(),
        f,
        bufs: vec![None; f.buffers.len()],
        regs: vec![Vec::new(); f.buffers.len()],
        vars: vec![None; f.vars.len()],
        ranges: vec![None; f.vars.len()],
        simd: None,
        plan,
    };
    let mut heap = Vec::new();
    let mut param_no = 0i32;
    for (i, buf) in f.buffers.iter().enumerate() {
        match buf.kind {
            BufKind::Param => {
                let p = g.b.ins().load(types::I64, crate::expr::flags(), args, param_no * 8);
                param_no += 1;
                g.bufs[i] = Some(p);
            }
            BufKind::Temp if g.plan.promoted[i] => {
                let zero = g.b.ins().f32const(0.0);
                let zero = g.b.ins().splat(types::F32X4, zero);
                let n = numel(&buf.shape).div_ceil(LANES as usize);
                g.regs[i] = (0..n)
                    .map(|_| {
                        let v = g.b.declare_var(types::F32X4);
                        g.b.def_var(v, zero);
                        v
                    })
                    .collect();
            }
            BufKind::Temp => {
                let bytes = (numel(&buf.shape) * buf.dtype.size_bytes()).next_multiple_of(64);
                if bytes <= STACK_TEMP_LIMIT {
                    let slot = g.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes as u32, 6));
                    g.bufs[i] = Some(g.b.ins().stack_addr(types::I64, slot, 0));
                } else {
                    let n = g.b.ins().iconst(types::I64, bytes as i64);
                    let p = g.helper(Helper::Alloc, &[n])?;
                    heap.push((p, n));
                    g.bufs[i] = Some(p);
                }
            }
        }
    }
    match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => {
            let zero = g.b.ins().iconst(types::I64, 0);
            let extent = g.b.ins().iconst(types::I64, l.extent);
            let lo = g.b.ins().smax(begin, zero);
            let hi = g.b.ins().smin(end, extent);
            g.serial_loop(l, lo, hi)?;
        }
        body => g.stmts(body)?,
    }
    for (p, n) in heap {
        g.call(Helper::Free, &[p, n])?;
    }
    g.b.ins().return_(&[]);
    let config = g.module.isa().frontend_config();
    g.b.finalize(config);
    Ok(())
}

impl Gen<'_, '_> {
    /// The per-function reference of a helper function.
    fn helper_ref(&mut self, h: Helper) -> R<FuncRef> {
        if let Some(&r) = self.refs.get(&h) {
            return Ok(r);
        }
        let id = self.imports.id(self.module, h).map_err(GenError::Internal)?;
        let r = self.module.declare_func_in_func(id, self.b.func);
        self.refs.insert(h, r);
        Ok(r)
    }

    /// Calls a helper that returns one value.
    pub(crate) fn helper(&mut self, h: Helper, args: &[Value]) -> R<Value> {
        let r = self.helper_ref(h)?;
        let call = self.b.ins().call(r, args);
        self.b.inst_results(call).first().copied().ok_or_else(|| GenError::Internal("a helper returned nothing".into()))
    }

    fn call(&mut self, h: Helper, args: &[Value]) -> R<()> {
        let r = self.helper_ref(h)?;
        self.b.ins().call(r, args);
        Ok(())
    }

    pub(crate) fn stmts(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::For(l) => self.for_loop(l),
            Stmt::Store { buf, index, value } => self.store(*buf, index, value),
            Stmt::If { cond, then } => self.guard(cond, then),
        }
    }

    fn for_loop(&mut self, l: &Loop) -> R<()> {
        let v = l.var.index();
        match l.kind {
            LoopKind::Unrolled => {
                for k in 0..l.extent {
                    self.vars[v] = Some(self.b.ins().iconst(types::I64, k));
                    self.ranges[v] = Some((k, k));
                    self.stmts(&l.body)?;
                }
                self.vars[v] = None;
                self.ranges[v] = None;
                Ok(())
            }
            LoopKind::Vectorized if self.simd.is_none() && self.plan.simd_loops.contains(&l.var) => {
                self.simd = Some(Simd { lane: l.var, width: l.extent as u32 });
                self.ranges[v] = Some((0, l.extent - 1));
                let r = self.stmts(&l.body);
                self.ranges[v] = None;
                self.simd = None;
                r
            }
            _ => {
                let lo = self.b.ins().iconst(types::I64, 0);
                let hi = self.b.ins().iconst(types::I64, l.extent);
                self.serial_loop(l, lo, hi)
            }
        }
    }

    /// `for var in lo..hi` with the counter a block parameter; `l.extent` still bounds the
    /// variable's range.
    fn serial_loop(&mut self, l: &Loop, lo: Value, hi: Value) -> R<()> {
        let header = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let i = self.b.append_block_param(header, types::I64);
        self.b.ins().jump(header, &[BlockArg::Value(lo)]);
        self.b.switch_to_block(header);
        let more = self.b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::SignedLessThan, i, hi);
        self.b.ins().brif(more, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        self.b.seal_block(body);
        let v = l.var.index();
        self.vars[v] = Some(i);
        self.ranges[v] = Some((0, l.extent - 1));
        self.stmts(&l.body)?;
        self.vars[v] = None;
        self.ranges[v] = None;
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.ins().jump(header, &[BlockArg::Value(next)]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    /// `if cond { then }`: a branch when the condition is the same in every lane, otherwise
    /// the guard runs lane by lane.
    fn guard(&mut self, cond: &Expr, then: &[Stmt]) -> R<()> {
        let c = index::simplify(cond.clone(), &self.ranges);
        match c {
            Expr::Bool(false) => return Ok(()),
            Expr::Bool(true) => return self.stmts(then),
            _ => {}
        }
        if let Some(s) = self.simd {
            if index::lane_form(&c, s.lane) != index::Lane::Uniform {
                return self.per_lane(&mut |g| g.guard(cond, then));
            }
        }
        let c = self.scalar(&c)?;
        let then_bb = self.b.create_block();
        let merge = self.b.create_block();
        self.b.ins().brif(c, then_bb, &[], merge, &[]);
        self.b.switch_to_block(then_bb);
        self.b.seal_block(then_bb);
        self.stmts(then)?;
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        Ok(())
    }

    /// Runs `f` once per lane of the SIMD context, the lane variable bound to each lane in
    /// turn (lanes are independent: see [`ir::loops::simd::blocker`]).
    pub(crate) fn per_lane(&mut self, f: &mut dyn FnMut(&mut Self) -> R<()>) -> R<()> {
        let s = self.simd.take().ok_or_else(|| GenError::Internal("lane by lane outside a vectorized loop".into()))?;
        let v = s.lane.index();
        let mut r = Ok(());
        for k in 0..i64::from(s.width) {
            self.vars[v] = Some(self.b.ins().iconst(types::I64, k));
            self.ranges[v] = Some((k, k));
            r = f(self);
            if r.is_err() {
                break;
            }
        }
        self.ranges[v] = Some((0, i64::from(s.width) - 1));
        self.vars[v] = None;
        self.simd = Some(s);
        r
    }
}
