//! Lowering of data movement (transpose, concat, slice, pad, gather): copies whose index
//! arithmetic says where each output element comes from.

use ir::graph::PadMode;
use ir::loops::{BinOp, Expr, Intrinsic};
use ir::{Op, TensorType};

use super::{add, all, axis_name, constant, int, mul, store, sub, vars_expr, Builder};

pub(super) fn lower(b: &mut Builder, op: &Op, ins: &[&TensorType], out: &TensorType) -> Result<(), String> {
    match op {
        Op::Transpose { perm } => transpose(b, ins[0], out, perm),
        Op::Concat { axis } => concat(b, ins, out, *axis),
        Op::Slice { starts, steps, .. } => slice(b, ins[0], out, starts, steps),
        Op::Pad { pads, mode, value } => pad(b, ins[0], out, pads, *mode, *value),
        Op::Gather { axis } => gather(b, ins[0], ins[1], out, *axis),
        Op::ToNchwc { block } => nchwc(b, ins[0], out, *block, true),
        Op::FromNchwc { block } => nchwc(b, ins[0], out, *block, false),
        _ => Err("not a data movement op".into()),
    }
}

/// Output axis `i` is input axis `perm[i]`: y[i0, i1, ..] = x[.., i_k at axis perm[k], ..].
fn transpose(b: &mut Builder, xt: &TensorType, out: &TensorType, perm: &[usize]) -> Result<(), String> {
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let vars = b.vars(&out.shape, axis_name);
    let mut xi = vec![int(0); xt.rank()];
    for (i, &p) in perm.iter().enumerate() {
        xi[p] = Expr::Var(vars[i]);
    }
    let nest = b.nest(&vars, vec![store(y, vars_expr(&vars), Expr::load(x, xi))]);
    b.push(nest);
    Ok(())
}

/// A change between NCHW and NCHW[b]c: loops over the blocked shape (n, block, h, w, lane),
/// copying element (n, block * b + lane, h, w) of the plain tensor from or to the blocked one.
fn nchwc(b: &mut Builder, xt: &TensorType, out: &TensorType, block: usize, to_blocked: bool) -> Result<(), String> {
    let x = b.param("x", xt);
    let y = b.param("y", out);
    let blocked = if to_blocked { out } else { xt };
    if blocked.numel() == 0 {
        return Ok(());
    }
    let vars = b.vars(&blocked.shape, |a| ["n", "cb", "h", "w", "ci"][a].to_string());
    let blocked_index = vars_expr(&vars);
    let channel = add(mul(Expr::Var(vars[1]), int(block as i64)), Expr::Var(vars[4]));
    let plain_index = vec![Expr::Var(vars[0]), channel, Expr::Var(vars[2]), Expr::Var(vars[3])];
    let copy = if to_blocked {
        store(y, blocked_index, Expr::load(x, plain_index))
    } else {
        store(y, plain_index, Expr::load(x, blocked_index))
    };
    let nest = b.nest(&vars, vec![copy]);
    b.push(nest);
    Ok(())
}

/// One loop nest per operand, copying it into its slab of the result along `axis`.
fn concat(b: &mut Builder, ins: &[&TensorType], out: &TensorType, axis: usize) -> Result<(), String> {
    let xs: Vec<_> = ins.iter().enumerate().map(|(k, t)| b.param(&format!("x{k}"), t)).collect();
    let y = b.param("y", out);
    let mut offset = 0;
    for (k, (&x, t)) in xs.iter().zip(ins).enumerate() {
        if t.numel() > 0 {
            // Each nest has its own variables: i{axis}_{operand}.
            let vars = b.vars(&t.shape, |a| format!("i{a}_{k}"));
            let mut yi = vars_expr(&vars);
            yi[axis] = add(yi[axis].clone(), int(offset as i64));
            let nest = b.nest(&vars, vec![store(y, yi, Expr::load(x, vars_expr(&vars)))]);
            b.push(nest);
        }
        offset += t.shape[axis];
    }
    Ok(())
}

/// y[.., i, ..] = x[.., start + i * step, ..] along every axis; a negative step walks back.
fn slice(b: &mut Builder, xt: &TensorType, out: &TensorType, starts: &[i64], steps: &[i64]) -> Result<(), String> {
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let vars = b.vars(&out.shape, axis_name);
    let xi: Vec<Expr> = vars
        .iter()
        .enumerate()
        .map(|(a, &v)| {
            let (start, step) = (int(starts[a]), steps[a]);
            if step >= 0 {
                add(start, mul(Expr::Var(v), int(step)))
            } else {
                sub(start, mul(Expr::Var(v), int(-step)))
            }
        })
        .collect();
    // The shape rule lets a backward slice start at 0 of an empty axis; such an index would
    // leave the input, as the interpreter reports too.
    for (a, e) in xi.iter().enumerate() {
        if b.range(e).is_some_and(|(lo, hi)| lo < 0 || hi >= xt.shape[a] as i64) {
            return Err(format!("axis {a} would read outside {xt}"));
        }
    }
    let nest = b.nest(&vars, vec![store(y, vars_expr(&vars), Expr::load(x, xi))]);
    b.push(nest);
    Ok(())
}

/// Output index `o` along an axis with leading pad `p` reads input `o - p`. Constant mode
/// selects the pad value outside the input (the load clamped into it); edge mode clamps the
/// index; reflect mode mirrors it about the edge elements: `last - |last - |o - p||`.
fn pad(
    b: &mut Builder,
    xt: &TensorType,
    out: &TensorType,
    pads: &[usize],
    mode: PadMode,
    value: f32,
) -> Result<(), String> {
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let fill = constant(out.dtype, value);
    let vars = b.vars(&out.shape, axis_name);
    if xt.numel() == 0 {
        if mode != PadMode::Constant {
            return Err("an empty axis has no edge to repeat or reflect".into());
        }
        let nest = b.nest(&vars, vec![store(y, vars_expr(&vars), fill)]);
        b.push(nest);
        return Ok(());
    }
    if mode == PadMode::Constant {
        // Fill, then copy the interior: both loop nests read and write contiguously (and
        // vectorize), where a select per element would gather.
        let fill_nest = b.nest(&vars, vec![store(y, vars_expr(&vars), fill)]);
        b.push(fill_nest);
        let xv = b.vars(&xt.shape, |a| format!("j{a}"));
        let dst: Vec<Expr> = xv.iter().enumerate().map(|(a, &v)| add(Expr::Var(v), int(pads[a] as i64))).collect();
        let copy = b.nest(&xv, vec![store(y, dst, Expr::load(x, vars_expr(&xv)))]);
        b.push(copy);
        return Ok(());
    }
    let mut conds = Vec::new();
    let mut xi = Vec::new();
    for (a, &v) in vars.iter().enumerate() {
        let (d, i) = (xt.shape[a], sub(Expr::Var(v), int(pads[a] as i64)));
        let last = int(d as i64 - 1);
        xi.push(match mode {
            PadMode::Constant => {
                b.in_bounds(&i, d, &mut conds);
                b.clamp(i, d)
            }
            PadMode::Edge => b.clamp(i, d),
            PadMode::Reflect if b.range(&i).is_some_and(|(lo, hi)| lo >= 0 && hi < d as i64) => i,
            PadMode::Reflect => {
                let abs = |e: Expr| Expr::call(Intrinsic::Abs, vec![e]);
                sub(last.clone(), abs(sub(last, abs(i))))
            }
        });
    }
    let load = Expr::load(x, xi);
    let value = match all(conds) {
        Some(cond) => Expr::select(cond, load, fill),
        None => load,
    };
    let nest = b.nest(&vars, vec![store(y, vars_expr(&vars), value)]);
    b.push(nest);
    Ok(())
}

/// y[i.., j.., k..] = x[i.., idx[j..], k..]; a negative index counts from the end, and the
/// index is clamped into the axis so that a bad one cannot read outside the buffer.
fn gather(b: &mut Builder, xt: &TensorType, it: &TensorType, out: &TensorType, axis: usize) -> Result<(), String> {
    let x = b.param("x", xt);
    let idx = b.param("idx", it);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let d = xt.shape[axis];
    if d == 0 {
        return Err(format!("the axis {axis} of {xt} is empty, so no index is in range"));
    }
    let (r, q) = (xt.rank(), it.rank());
    let vars = b.vars(&out.shape, |a| {
        if a < axis {
            axis_name(a)
        } else if a < axis + q {
            format!("j{}", a - axis)
        } else {
            axis_name(a + 1 - q)
        }
    });
    let picked = Expr::load(idx, vars_expr(&vars[axis..axis + q]));
    let wrapped = Expr::select(
        Expr::bin(BinOp::Lt, picked.clone(), int(0)),
        Expr::bin(BinOp::Add, picked.clone(), int(d as i64)),
        picked,
    );
    let mut xi = vars_expr(&vars[..axis]);
    xi.push(b.clamp(wrapped, d));
    xi.extend(vars_expr(&vars[axis + q..]));
    debug_assert_eq!(xi.len(), r);
    let nest = b.nest(&vars, vec![store(y, vars_expr(&vars), Expr::load(x, xi))]);
    b.push(nest);
    Ok(())
}
