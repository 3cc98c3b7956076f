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

/// The most statements (f32x4 chunks) an unrolled innermost loop's pass generates. cranelift
/// computes each pure value (an FMA, a read-only load) where it is first needed, which for a
/// register tile's accumulators is the loop's back edge: every accumulator's chain through
/// the unrolled steps in turn, the values each step loaded live until the last chain has used
/// them. A few steps of a one-vector-per-row tile (8 accumulators, 4 steps) keep that within
/// the 16 xmm registers; more spill.
const UNROLL_WORK: i64 = 32;

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
    /// The nesting depth of each serial loop variable in scope (1 for the outermost), and the
    /// current depth: address arithmetic adds its terms outermost first, so that each partial
    /// sum is invariant in the inner loops and cranelift hoists it out of them.
    pub depth: Vec<usize>,
    pub level: usize,
    /// Opaque i64 constants (see [`Gen::konst`]), and those asked for that were not there.
    pub consts: HashMap<i64, Value>,
    pub wanted: std::collections::BTreeSet<i64>,
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
    let mut attempt = |promote: bool, consts: &[i64]| {
        func.clear();
        func.signature = sig.clone();
        *fctx = FunctionBuilderContext::new();
        generate(module, imports, func, fctx, k.func, plan::plan(k.func, promote), consts)
    };
    let promoted = plan::plan(k.func, true).promoted.iter().any(|&p| p);
    let mut promote = true;
    let mut result = attempt(true, &[]);
    if matches!(result, Err(GenError::NotPromotable)) && promoted {
        promote = false;
        result = attempt(false, &[]);
    }
    // Again with the constants that address arithmetic outside the innermost loop asked for
    // made opaque (see `Gen::konst`).
    let result = match result {
        Ok(wanted) if !wanted.is_empty() => attempt(promote, &wanted),
        r => r,
    };
    result.map(|_| ()).map_err(|e| match e {
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
    consts: &[i64],
) -> R<Vec<i64>> {
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
        depth: vec![0; f.vars.len()],
        level: 0,
        consts: HashMap::new(),
        wanted: std::collections::BTreeSet::new(),
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
    if !consts.is_empty() {
        // The constants reach the body as parameters of a block with two predecessors that
        // pass different values (the one taken when `args` is null never runs): values
        // cranelift cannot see through, which it can hoist out of loops (it recomputes an
        // iconst, and so everything computed from one, in each block that uses it).
        let null = g.b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::Equal, args, 0);
        let (never, always, join) = (g.b.create_block(), g.b.create_block(), g.b.create_block());
        g.b.ins().brif(null, never, &[], always, &[]);
        for (block, real) in [(never, false), (always, true)] {
            g.b.switch_to_block(block);
            g.b.seal_block(block);
            let vals: Vec<BlockArg> =
                consts.iter().map(|&c| BlockArg::Value(g.b.ins().iconst(types::I64, if real { c } else { 0 }))).collect();
            g.b.ins().jump(join, &vals);
        }
        for _ in consts {
            g.b.append_block_param(join, types::I64);
        }
        g.b.switch_to_block(join);
        g.b.seal_block(join);
        let params = g.b.block_params(join).to_vec();
        g.consts = consts.iter().copied().zip(params).collect();
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
    let wanted = if consts.is_empty() { g.wanted.iter().copied().collect() } else { Vec::new() };
    g.b.finalize(config);
    Ok(wanted)
}

impl Gen<'_, '_> {
    /// The constant `c` for arithmetic that cranelift should hoist out of the loops inside
    /// the current one (`hoist`): an opaque value when the kernel was generated with it (the
    /// first generation collects them), else an iconst.
    pub(crate) fn konst(&mut self, c: i64, hoist: bool) -> Value {
        if hoist {
            if let Some(&v) = self.consts.get(&c) {
                return v;
            }
            self.wanted.insert(c);
        }
        self.b.ins().iconst(types::I64, c)
    }

    /// The deepest serial loop whose variable `e` uses (0: none).
    pub(crate) fn depth_of(&self, e: &Expr) -> usize {
        let mut d = 0;
        e.walk(&mut |x| {
            if let Expr::Var(v) = x {
                d = d.max(self.depth[v.index()]);
            }
        });
        d
    }

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
            // Cranelift has no prefetch instruction; the hint is dropped.
            Stmt::Prefetch { .. } => Ok(()),
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
                let unroll = self.unroll_factor(l);
                self.serial_loop_by(l, lo, hi, unroll)
            }
        }
    }

    /// How many iterations of a serial loop each pass of the generated loop runs: an
    /// innermost loop (every loop inside unrolled or SIMD lanes) with a small body runs 2-8
    /// iterations per pass, as LLVM's loop unroller would, so that a register tile's
    /// accumulators are not passed through the loop's block parameters (register moves) at
    /// every multiply-accumulate, and the counter and branch are paid less often.
    fn unroll_factor(&self, l: &Loop) -> i64 {
        let Some(work) = self.straight_line_work(&l.body) else { return 1 };
        [8, 4, 2].into_iter().find(|&u| l.extent % u == 0 && u * work <= UNROLL_WORK).unwrap_or(1)
    }

    /// The statements `body` generates when it has no serial loop (every loop unrolled or
    /// SIMD lanes, counted as its iterations and f32x4 chunks), else None.
    fn straight_line_work(&self, body: &[Stmt]) -> Option<i64> {
        let mut work = 0i64;
        for s in body {
            work += match s {
                Stmt::Store { .. } => 1,
                Stmt::Prefetch { .. } => 0,
                Stmt::If { then, .. } => 1 + self.straight_line_work(then)?,
                Stmt::For(l) => match l.kind {
                    LoopKind::Unrolled => l.extent * self.straight_line_work(&l.body)?,
                    LoopKind::Vectorized if self.plan.simd_loops.contains(&l.var) => {
                        (l.extent / LANES).max(1) * self.straight_line_work(&l.body)?
                    }
                    _ => return None,
                },
            };
        }
        Some(work)
    }

    /// `for var in lo..hi` with the counter a block parameter; `l.extent` still bounds the
    /// variable's range.
    fn serial_loop(&mut self, l: &Loop, lo: Value, hi: Value) -> R<()> {
        self.serial_loop_by(l, lo, hi, 1)
    }

    /// [`Self::serial_loop`] running `unroll` iterations per pass (it divides the trip count).
    fn serial_loop_by(&mut self, l: &Loop, lo: Value, hi: Value, unroll: i64) -> R<()> {
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
        self.level += 1;
        self.depth[v] = self.level;
        let r = if unroll > 1 {
            // The counter steps by `unroll`; copy k of the body reads it as var + k.
            self.ranges[v] = Some((0, l.extent - unroll));
            (0..unroll).try_for_each(|k| {
                let shifted: Vec<Stmt> = l
                    .body
                    .iter()
                    .map(|s| s.clone().substitute(l.var, &Expr::bin(ir::loops::BinOp::Add, Expr::Var(l.var), Expr::Int(k))))
                    .collect();
                self.stmts(&shifted)
            })
        } else {
            self.ranges[v] = Some((0, l.extent - 1));
            self.stmts(&l.body)
        };
        self.level -= 1;
        self.vars[v] = None;
        self.ranges[v] = None;
        r?;
        let next = self.b.ins().iadd_imm_s(i, unroll);
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
