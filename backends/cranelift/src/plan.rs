//! Decisions taken before code generation of a kernel: which vectorized loops run as f32x4
//! lanes, and which temporaries live in SSA variables instead of memory.

use std::collections::HashSet;

use ir::loops::index::simplify;
use ir::loops::simd::{blocker, MAX_LANES};
use ir::loops::{BufKind, Expr, Func, LoopKind, Stmt, VarId};
use ir::DType;

/// f32 lanes of one cranelift vector register (128 bits).
pub(crate) const LANES: i64 = 4;

/// The largest temporary, in elements, kept in variables (a register tile).
const PROMOTE_LIMIT: usize = 256;

pub(crate) struct Plan {
    /// Vectorized loops that run as SIMD lanes.
    pub simd_loops: HashSet<VarId>,
    /// Per buffer: its elements live in f32x4 variables.
    pub promoted: Vec<bool>,
    /// Per buffer: the function stores to it.
    pub stored: Vec<bool>,
}

/// Plans `f`; `promote` allows temporaries in variables.
pub(crate) fn plan(f: &Func, promote: bool) -> Plan {
    let mut w = Walk {
        f,
        ranges: vec![None; f.vars.len()],
        fixed: HashSet::new(),
        simd_loops: HashSet::new(),
        promotable: f
            .buffers
            .iter()
            .map(|b| promote && b.kind == BufKind::Temp && b.dtype == DType::F32 && numel(&b.shape) <= PROMOTE_LIMIT)
            .collect(),
    };
    w.stmts(&f.body, false);
    let mut stored = vec![false; f.buffers.len()];
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, .. } = s {
                stored[buf.index()] = true;
            }
        });
    }
    Plan { simd_loops: w.simd_loops, promoted: w.promotable, stored }
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product::<usize>().max(1)
}

struct Walk<'a> {
    f: &'a Func,
    ranges: Vec<Option<(i64, i64)>>,
    /// Loop variables whose value is a constant wherever code is generated: unrolled loops'
    /// and the lane variables of SIMD loops.
    fixed: HashSet<VarId>,
    simd_loops: HashSet<VarId>,
    promotable: Vec<bool>,
}

impl Walk<'_> {
    fn stmts(&mut self, body: &[Stmt], in_simd: bool) {
        for s in body {
            match s {
                Stmt::For(l) => {
                    let v = l.var;
                    let simd = l.kind == LoopKind::Vectorized
                        && !in_simd
                        && l.extent % LANES == 0
                        && l.extent <= MAX_LANES
                        && blocker(self.f, l, &self.ranges).is_none();
                    if simd {
                        self.simd_loops.insert(v);
                    }
                    if simd || l.kind == LoopKind::Unrolled {
                        self.fixed.insert(v);
                    }
                    self.ranges[v.index()] = Some((0, l.extent - 1));
                    self.stmts(&l.body, in_simd || simd);
                    self.ranges[v.index()] = None;
                    self.fixed.remove(&v);
                }
                Stmt::Store { buf, index, value } => {
                    self.access(*buf, index);
                    self.reads(value);
                    index.iter().for_each(|e| self.reads(e));
                }
                Stmt::If { cond, then } => {
                    self.reads(cond);
                    self.stmts(then, in_simd);
                }
                // Dropped by the code generator: it touches no memory.
                Stmt::Prefetch { .. } => {}
            }
        }
    }

    fn reads(&mut self, e: &Expr) {
        let mut loads = Vec::new();
        e.walk(&mut |x| {
            if let Expr::Load { buf, index } = x {
                loads.push((*buf, index.clone()));
            }
        });
        for (buf, index) in loads {
            self.access(buf, &index);
        }
    }

    /// A temporary stays promotable while every index of it uses fixed variables only.
    fn access(&mut self, buf: ir::loops::BufId, index: &[Expr]) {
        if !self.promotable[buf.index()] {
            return;
        }
        let fixed = index.iter().all(|e| {
            let e = simplify(e.clone(), &self.ranges);
            let mut ok = true;
            e.walk(&mut |x| match x {
                Expr::Var(v) if !self.fixed.contains(v) => ok = false,
                Expr::Load { .. } => ok = false,
                _ => {}
            });
            ok
        });
        if !fixed {
            self.promotable[buf.index()] = false;
        }
    }
}
