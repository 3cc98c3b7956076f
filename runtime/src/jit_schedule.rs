//! The cranelift tier's default schedules: the host's default schedules (the same decisions:
//! which loops form the register tile, which is vectorized, where the tile accumulates, what
//! runs in parallel) with the register tile resized for cranelift's registers.
//!
//! The defaults size a reduction's register tile for the target's vector registers: on an
//! AVX-512 host 7-8 rows x 16 lanes, or 2-4 output-channel blocks x rows x 16 lanes, which
//! LLVM keeps in 28 of its 32 zmm registers. cranelift emits 128-bit vectors only, so each
//! 16-lane vector is four f32x4 registers and such a tile is 28-128 registers against x86's 16
//! xmm: the accumulators spill to the stack on every multiply-accumulate. Here the vector
//! loop of the tile becomes one f32x4 (the default's split factor 16 becomes 4; the other
//! lanes' loop runs around the tile, as the default's does for wider outputs) and each
//! unrolled tile loop's split factor shrinks to a divisor of its loop's extent, no larger
//! than the default's, so that the accumulators fit [`ACCUMULATORS`] registers, choosing
//! among such tiles the one of least estimated time per multiply-accumulate (FMA throughput
//! and latency, and the loads the tile needs per reduction step). One f32x4 per row, because
//! cranelift's x86 FMA overwrites a multiplicand: with several vectors per row the input
//! value broadcast for the row is copied before every FMA, with one it is broadcast straight
//! from memory into the FMA's register. Schedules that keep no tile in registers are the
//! host's as they are.

use ir::loops::{Expr, Func, Stmt, VarId};
use passes::schedule::{default_schedule, Primitive, Trace};

/// f32 lanes of one cranelift vector register.
const LANES: i64 = 4;

/// f32x4 accumulators a register tile may use: x86-64 has 16 xmm registers, and a reduction
/// step needs a few more for the values it loads.
pub const ACCUMULATORS: i64 = 12;

/// The default schedule of `func` for cranelift on a host with `vector_width` f32 lanes.
pub fn jit_default_schedule(func: &Func, vector_width: usize) -> Trace {
    let trace = default_schedule(func, vector_width);
    match fit_tile(func, &trace, ACCUMULATORS) {
        Some(fitted) if fitted != trace && fitted.apply(func).is_ok() => fitted,
        _ => trace,
    }
}

/// The cranelift tier's default schedules as a [`crate::ScheduleSource`]: an LLVM build with
/// them runs the same schedules as the JIT (`chanasc bench --cranelift-schedules`), which
/// compares the two code generators alone.
pub struct JitSchedules;

impl crate::ScheduleSource for JitSchedules {
    fn trace_for(&self, func: &Func, _: &[bool], target: &llvm_backend::Target) -> Option<Trace> {
        Some(jit_default_schedule(func, target.vector_width()))
    }
}

/// One loop of the register tile: the original loop split for it, its extent, and the
/// default's split factor.
struct TileLoop {
    split_step: usize,
    var: VarId,
    extent: i64,
    factor: i64,
}

/// `trace` with its register tile resized to at most `budget` f32x4 accumulators, or None
/// when the trace keeps no tile in registers (or one of a form this does not know).
pub fn fit_tile(func: &Func, trace: &Trace, budget: i64) -> Option<Trace> {
    let steps = &trace.0;
    let cache_write = steps.iter().position(|p| matches!(p, Primitive::CacheWrite { .. }))?;
    // The loop each split made `{name}_i` of.
    let split_of = |inner: &str| -> Option<TileLoop> {
        let name = inner.strip_suffix("_i")?;
        let (at, factor) = steps[..cache_write].iter().enumerate().find_map(|(i, p)| match p {
            Primitive::Split { loop_, factor } if loop_ == name => Some((i, *factor)),
            _ => None,
        })?;
        let var = func.var_named(name)?;
        Some(TileLoop { split_step: at, var, extent: extent_of(&func.body, var)?, factor })
    };
    let mut unrolled = Vec::new();
    let mut vector = None;
    for p in &steps[..cache_write] {
        match p {
            Primitive::Unroll { loop_ } => unrolled.push(split_of(loop_)?),
            Primitive::Vectorize { loop_ } => vector = Some(split_of(loop_)?),
            _ => {}
        }
    }
    let vector = vector?;
    if vector.factor % LANES != 0 || unrolled.is_empty() {
        return None;
    }
    // The loads of the accumulating statement (other than of the accumulator), as the tile
    // loops their indices use: each is loaded once per distinct value of those loops.
    let loads = reduction_loads(func);
    let tile_vars: Vec<VarId> = unrolled.iter().map(|t| t.var).chain([vector.var]).collect();
    let uses: Vec<Vec<bool>> = loads.iter().map(|index| tile_vars.iter().map(|&v| index.iter().any(|e| e.uses_var(v))).collect()).collect();

    let choices: Vec<Vec<i64>> = unrolled
        .iter()
        .map(|t| divisors(t.extent).into_iter().filter(|&d| d <= t.factor).collect())
        .chain([vec![LANES].into_iter().filter(|&d| vector.extent % d == 0 && d <= vector.factor).collect()])
        .collect();
    let mut best: Option<(f64, i64, Vec<i64>)> = None;
    let mut pick = vec![0usize; choices.len()];
    loop {
        let factors: Vec<i64> = pick.iter().zip(&choices).map(|(&i, c)| c[i]).collect();
        let chunks = factors[factors.len() - 1] / LANES;
        let accumulators: i64 = factors[..factors.len() - 1].iter().product::<i64>() * chunks;
        if accumulators <= budget {
            // Per step: each load's distinct values, and the register copies of the values
            // that several FMAs multiply by in the operand cranelift's x86 FMA overwrites (a
            // value broadcast across the vector, one per row, shared by the tile's blocks).
            let (mut loads, mut copies) = (0, 0);
            for u in &uses {
                let mut n = 1;
                for (k, &used) in u.iter().enumerate() {
                    if used {
                        n *= if k == factors.len() - 1 { chunks } else { factors[k] };
                    }
                }
                loads += n;
                if !u[u.len() - 1] {
                    copies += accumulators - n;
                }
            }
            let time = step_cycles(accumulators, loads, copies) / accumulators as f64;
            let better = match &best {
                None => true,
                Some((t, a, f)) => time < t - 1e-9 || ((time - t).abs() <= 1e-9 && (accumulators, factors.last()) > (*a, f.last())),
            };
            if better {
                best = Some((time, accumulators, factors));
            }
        }
        // The next combination.
        let mut k = 0;
        loop {
            if k == pick.len() {
                let (_, _, factors) = best?;
                let mut out = steps.clone();
                for (t, f) in unrolled.iter().chain([&vector]).zip(factors) {
                    if let Primitive::Split { factor, .. } = &mut out[t.split_step] {
                        *factor = f;
                    }
                }
                return Some(Trace(out));
            }
            pick[k] += 1;
            if pick[k] < choices[k].len() {
                break;
            }
            pick[k] = 0;
            k += 1;
        }
    }
}

/// Cycles of one reduction step of a tile of `accumulators` f32x4 FMAs that loads `loads`
/// values and copies `copies` registers: two FMA and two load ports, four instructions issued
/// per cycle (a copy counting twice: the copied value stays live, and with a few steps
/// unrolled such values spill), and an FMA latency of 4 cycles that each accumulator's chain
/// waits out.
fn step_cycles(accumulators: i64, loads: i64, copies: i64) -> f64 {
    let fma = accumulators as f64 / 2.0;
    let load = loads as f64 / 2.0;
    let issue = (accumulators + loads + 2 * copies) as f64 / 4.0;
    fma.max(load).max(issue).max(4.0)
}

fn divisors(n: i64) -> Vec<i64> {
    (1..=n.max(1)).filter(|d| n % d == 0).collect()
}

fn extent_of(body: &[Stmt], var: VarId) -> Option<i64> {
    body.iter().find_map(|s| match s {
        Stmt::For(l) if l.var == var => Some(l.extent),
        Stmt::For(l) => extent_of(&l.body, var),
        Stmt::If { then, .. } => extent_of(then, var),
        Stmt::Store { .. } | Stmt::Prefetch { .. } => None,
    })
}

/// The index of every load of the statements that accumulate (read the element they
/// store), other than the accumulator's own.
fn reduction_loads(func: &Func) -> Vec<Vec<Expr>> {
    let mut out = Vec::new();
    for s in &func.body {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, value, .. } = s {
                let mut loads = Vec::new();
                let mut accumulates = false;
                value.walk(&mut |e| {
                    if let Expr::Load { buf: b, index } = e {
                        if b == buf {
                            accumulates = true;
                        } else {
                            loads.push(index.clone());
                        }
                    }
                });
                if accumulates {
                    out.extend(loads);
                }
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense 3x3 NCHW16c convolution of 64 channels on a 56-wide image, as lowering writes it.
    fn conv() -> Func {
        let mut g = ir::Graph::new("t");
        let x = g.add_input("x", ir::TensorType::new(ir::DType::F32, vec![1, 4, 58, 58, 16]));
        let w = ir::Tensor::new(vec![64, 64, 3, 3], ir::TensorData::F32(vec![0.5; 64 * 64 * 9])).unwrap();
        let wv = g.add_const(Some("w".into()), w);
        let op = ir::Op::Conv2dNchwc { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1, block: 16 };
        let y = g.add_node(op, vec![x, wv], None).unwrap();
        g.outputs.push(y);
        let steps = passes::lower::lower_graph(&g).unwrap();
        let Some(passes::lower::Step::Run(p)) = steps.first() else { panic!("one program") };
        p.func.clone()
    }

    fn temp_elements(f: &Func) -> Vec<usize> {
        f.buffers.iter().filter(|b| b.kind == ir::loops::BufKind::Temp).map(|b| b.shape.iter().product()).collect()
    }

    #[test]
    fn register_tiles_fit_xmm_registers() {
        let f = conv();
        let host = default_schedule(&f, 16);
        let jit = jit_default_schedule(&f, 16);
        // The host's tile is more than cranelift's registers hold; the resized one fits, with
        // the same steps apart from split factors.
        let host_tile = temp_elements(&host.apply(&f).unwrap());
        let jit_tile = temp_elements(&jit.apply(&f).unwrap());
        assert!(host_tile.iter().any(|&n| n as i64 > ACCUMULATORS * LANES), "{host_tile:?}");
        assert!(
            !jit_tile.is_empty() && jit_tile.iter().all(|&n| n as i64 <= ACCUMULATORS * LANES && n >= 8 * LANES as usize),
            "{jit_tile:?}"
        );
        assert_eq!(host.0.len(), jit.0.len());
        for (a, b) in host.0.iter().zip(&jit.0) {
            match (a, b) {
                (Primitive::Split { loop_: x, .. }, Primitive::Split { loop_: y, factor }) => {
                    assert_eq!(x, y);
                    assert!(*factor >= 1);
                }
                _ => assert_eq!(a, b),
            }
        }
        // The vector loop is one f32x4.
        assert!(jit.0.iter().any(|p| matches!(p, Primitive::Split { loop_, factor: 4 } if loop_ == "oi")), "{}", jit.to_json());
    }

    #[test]
    fn schedules_without_a_register_tile_are_the_hosts() {
        let mut g = ir::Graph::new("t");
        let x = g.add_input("x", ir::TensorType::new(ir::DType::F32, vec![1, 64, 56, 56]));
        let y = g.add_node(ir::Op::Unary(ir::graph::UnaryOp::Relu), vec![x], None).unwrap();
        g.outputs.push(y);
        let steps = passes::lower::lower_graph(&g).unwrap();
        let Some(passes::lower::Step::Run(p)) = steps.first() else { panic!("one program") };
        assert_eq!(jit_default_schedule(&p.func, 16), default_schedule(&p.func, 16));
    }
}
