//! The schedule primitives: each rewrites a function in place or says why it cannot.

use ir::loops::visit::{find_loop, replace_loop};
use ir::loops::{BinOp, BufId, BufKind, Expr, Func, Layout, Loop, LoopKind, Stmt, VarId};

use super::Primitive;

type Result<T> = std::result::Result<T, String>;

pub(super) fn apply(f: &mut Func, p: &Primitive) -> Result<()> {
    match p {
        Primitive::Split { loop_, factor } => split(f, loop_, *factor),
        Primitive::Reorder { loops } => reorder(f, loops),
        Primitive::Fuse { outer, inner } => fuse(f, outer, inner),
        Primitive::Unroll { loop_ } => set_kind(f, loop_, LoopKind::Unrolled),
        Primitive::Vectorize { loop_ } => set_kind(f, loop_, LoopKind::Vectorized),
        Primitive::Parallel { loop_ } => set_kind(f, loop_, LoopKind::Parallel),
        Primitive::CacheWrite { buffer, at } => cache_write(f, buffer, at),
        Primitive::Tile { outer, inner, outer_factor, inner_factor } => {
            split(f, outer, *outer_factor)?;
            split(f, inner, *inner_factor)?;
            let order = [format!("{outer}_o"), format!("{inner}_o"), format!("{outer}_i"), format!("{inner}_i")];
            reorder(f, &order).map_err(|e| format!("{outer} and {inner}: {e}"))
        }
        Primitive::ComputeAt { buffer, at } => compute_at(f, buffer, at),
        Primitive::Inline { buffer } => inline(f, buffer),
        Primitive::LayoutBlock { buffer, axis, factor } => layout_block(f, buffer, *axis, *factor),
        Primitive::Bind { loop_, to } => match LoopKind::from_name(to).filter(|k| matches!(k, LoopKind::GpuBlock | LoopKind::GpuThread)) {
            Some(kind) => set_kind(f, loop_, kind),
            None => Err(format!("cannot bind {loop_} to {to} (workgroup or invocation)")),
        },
        Primitive::Stage { buffer, at } => super::stage::stage(f, buffer, at),
        Primitive::Prefetch { buffer, loop_ } => super::prefetch::prefetch(f, buffer, loop_),
    }
}

/// Names of the loops that exist now, for error messages.
fn loop_names(f: &Func) -> String {
    let mut names = Vec::new();
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::For(l) = s {
                names.push(f.vars[l.var.index()].clone());
            }
        });
    }
    names.join(", ")
}

/// The variable of the live loop called `name`.
fn loop_var(f: &Func, name: &str) -> Result<VarId> {
    match f.var_named(name) {
        Some(v) if find_loop(&f.body, v).is_some() => Ok(v),
        _ => Err(format!("no loop named {name} (loops: {})", loop_names(f))),
    }
}

fn the_loop<'a>(f: &'a Func, v: VarId) -> &'a Loop {
    find_loop(&f.body, v).expect("loop_var checked that it exists")
}

/// Replaces loop `v` by what `rewrite` makes of it.
fn rewrite(f: &mut Func, v: VarId, rewrite: impl FnOnce(Loop) -> Vec<Stmt>) {
    let mut once = Some(rewrite);
    let mut body = std::mem::take(&mut f.body);
    replace_loop(&mut body, v, &mut |l| (once.take().expect("one loop per variable"))(l));
    f.body = body;
}

fn split(f: &mut Func, name: &str, factor: i64) -> Result<()> {
    let v = loop_var(f, name)?;
    let extent = the_loop(f, v).extent;
    if factor < 1 || factor > extent {
        return Err(format!("factor {factor} must be between 1 and the extent {extent} of {name}"));
    }
    let outer = f.add_var(&format!("{name}_o"));
    let inner = f.add_var(&format!("{name}_i"));
    let joined = Expr::bin(BinOp::Add, Expr::bin(BinOp::Mul, Expr::Var(outer), Expr::Int(factor)), Expr::Var(inner));
    rewrite(f, v, |l| {
        let mut body: Vec<Stmt> = l.body.into_iter().map(|s| s.substitute(v, &joined)).collect();
        if extent % factor != 0 {
            body = vec![Stmt::If { cond: Expr::bin(BinOp::Lt, joined.clone(), Expr::Int(extent)), then: body }];
        }
        let inner_loop = Loop { var: inner, extent: factor, kind: LoopKind::Serial, body };
        let outer_loop = Loop { var: outer, extent: (extent + factor - 1) / factor, kind: l.kind, body: vec![Stmt::For(inner_loop)] };
        vec![Stmt::For(outer_loop)]
    });
    Ok(())
}

/// The chain of perfectly nested loops from `top` down, as long as each body is one loop.
fn chain(top: &Loop) -> Vec<&Loop> {
    let mut out = vec![top];
    let mut cur = top;
    while let [Stmt::For(next)] = cur.body.as_slice() {
        out.push(next);
        cur = next;
    }
    out
}

fn reorder(f: &mut Func, names: &[String]) -> Result<()> {
    let vars: Vec<VarId> = names.iter().map(|n| loop_var(f, n)).collect::<Result<_>>()?;
    // The outermost of the named loops is the one whose chain contains all the others.
    let top = vars
        .iter()
        .copied()
        .find(|&v| {
            let c = chain(the_loop(f, v));
            vars.iter().all(|w| c.iter().any(|l| l.var == *w))
        })
        .ok_or_else(|| format!("loops {} are not perfectly nested (a statement or guard sits between them)", names.join(", ")))?;
    let slots: Vec<(VarId, i64, LoopKind)> = chain(the_loop(f, top)).iter().map(|l| (l.var, l.extent, l.kind)).collect();
    let last_named = slots.iter().rposition(|s| vars.contains(&s.0)).expect("top's chain holds every named loop");
    let mut order = vars.iter();
    let new_slots: Vec<(VarId, i64, LoopKind)> = slots[..=last_named]
        .iter()
        .map(|s| {
            if vars.contains(&s.0) {
                let v = *order.next().expect("as many named slots as names");
                *slots.iter().find(|t| t.0 == v).expect("named loop is in the chain")
            } else {
                *s
            }
        })
        .collect();
    let innermost = slots[last_named].0;
    rewrite(f, top, |l| {
        let body = find_loop(std::slice::from_ref(&Stmt::For(l.clone())), innermost).map(|l| l.body.clone()).unwrap_or_default();
        let mut nest = body;
        for &(var, extent, kind) in new_slots.iter().rev() {
            nest = vec![Stmt::For(Loop { var, extent, kind, body: nest })];
        }
        nest
    });
    Ok(())
}

fn fuse(f: &mut Func, outer: &str, inner: &str) -> Result<()> {
    let (vo, vi) = (loop_var(f, outer)?, loop_var(f, inner)?);
    let lo = the_loop(f, vo);
    let ei = match lo.body.as_slice() {
        [Stmt::For(li)] if li.var == vi => li.extent,
        _ => return Err(format!("{inner} is not the only statement of {outer}")),
    };
    let fused = f.add_var(&format!("{outer}_{inner}"));
    let outer_expr = Expr::bin(BinOp::Div, Expr::Var(fused), Expr::Int(ei));
    let inner_expr = Expr::bin(BinOp::Rem, Expr::Var(fused), Expr::Int(ei));
    rewrite(f, vo, |l| {
        let Some(Stmt::For(li)) = l.body.into_iter().next() else { return vec![] };
        let body = li.body.into_iter().map(|s| s.substitute(vo, &outer_expr).substitute(vi, &inner_expr)).collect();
        vec![Stmt::For(Loop { var: fused, extent: l.extent * li.extent, kind: l.kind, body })]
    });
    Ok(())
}

fn contains_kind(l: &Loop, kind: LoopKind) -> bool {
    let mut found = false;
    for s in &l.body {
        s.walk(&mut |s| found |= matches!(s, Stmt::For(inner) if inner.kind == kind));
    }
    found
}

fn set_kind(f: &mut Func, name: &str, kind: LoopKind) -> Result<()> {
    let v = loop_var(f, name)?;
    let l = the_loop(f, v);
    match kind {
        LoopKind::Unrolled | LoopKind::Vectorized if l.extent > 64 => {
            return Err(format!("extent {} of {name} is too large to {} (at most 64)", l.extent, if kind == LoopKind::Unrolled { "unroll" } else { "vectorize" }));
        }
        LoopKind::Vectorized if contains_kind(l, LoopKind::Vectorized) => {
            return Err(format!("{name} contains a vectorized loop already"));
        }
        LoopKind::Parallel if !matches!(f.body.as_slice(), [Stmt::For(top)] if top.var == v) => {
            return Err(format!("{name} is not the program's only outermost loop; fuse the loops above it first"));
        }
        _ => {}
    }
    rewrite(f, v, |l| vec![Stmt::For(Loop { kind, ..l })]);
    Ok(())
}

/// A copy of the tile loops (fresh variables, same extents and kinds) around `body`, where
/// `body` is built from the fresh variables.
fn tile_copy(f: &mut Func, tile: &[(VarId, i64, LoopKind)], make_body: impl FnOnce(&[VarId]) -> Vec<Stmt>) -> Vec<Stmt> {
    let fresh: Vec<VarId> = tile.iter().map(|&(v, _, _)| f.add_var(&f.vars[v.index()].clone())).collect();
    let mut nest = make_body(&fresh);
    for (i, &(_, extent, kind)) in tile.iter().enumerate().rev() {
        nest = vec![Stmt::For(Loop { var: fresh[i], extent, kind, body: nest })];
    }
    nest
}

fn cache_write(f: &mut Func, buffer: &str, at: &str) -> Result<()> {
    let b = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let v = loop_var(f, at)?;
    let l = the_loop(f, v).clone();
    // Tile: the perfectly nested loops below `at` down to [init store; reduction nest].
    let mut tile = Vec::new();
    let mut body = &l.body;
    while let [Stmt::For(t)] = body.as_slice() {
        tile.push((t.var, t.extent, t.kind));
        body = &t.body;
    }
    let (idx, init, reduction, epilogue) = match body.as_slice() {
        [Stmt::Store { buf, index, value }, Stmt::For(r), rest @ ..] if *buf == b => {
            (index.clone(), value.clone(), r.clone(), rest.to_vec())
        }
        _ => return Err(format!("the loops below {at} do not end in an initial store to %{buffer} followed by a reduction loop")),
    };
    // Stores after the reduction (a fused epilogue) rewrite the same element; they are
    // applied to the accumulator as it is written back.
    // Stores to other buffers after them (a copy into a padded tensor) read the final value.
    let mut finish: Option<Expr> = None;
    let mut copies: Vec<(ir::loops::BufId, Vec<Expr>, Expr)> = Vec::new();
    for s in &epilogue {
        match s {
            Stmt::Store { buf, index, value } if *buf == b && *index == idx && copies.is_empty() => {
                let previous = finish.take();
                finish = Some(value.clone().map(&mut |e| match (e, &previous) {
                    (Expr::Load { buf, index }, Some(p)) if buf == b && index == idx => p.clone(),
                    (other, _) => other,
                }));
            }
            Stmt::Store { buf, index, value } if *buf != b && !value.clone().map(&mut |e| match e {
                Expr::Load { buf, index } if buf == b && index == idx => Expr::Float(0.0),
                other => other,
            }).reads(b) => copies.push((*buf, index.clone(), value.clone())),
            _ => return Err(format!("a statement after the reduction below {at} is not a store to the same element of %{buffer}")),
        }
    }
    let mut rchain = vec![(reduction.var, reduction.extent, reduction.kind)];
    let mut rbody = &reduction.body;
    while let [Stmt::For(r)] = rbody.as_slice() {
        rchain.push((r.var, r.extent, r.kind));
        rbody = &r.body;
    }
    let update = match rbody.as_slice() {
        [Stmt::Store { buf, index, value }] if *buf == b && *index == idx && value.reads(b) => value.clone(),
        _ => return Err(format!("the reduction below {at} is not one accumulation into the same element of %{buffer}")),
    };
    if rchain.iter().any(|(r, _, _)| idx.iter().any(|e| e.uses_var(*r))) {
        return Err(format!("the index of %{buffer} depends on a reduction loop"));
    }
    let dtype = f.buffer(b).dtype;
    let acc_name = (0..).map(|i| if i == 0 { format!("{buffer}_acc") } else { format!("{buffer}_acc{i}") }).find(|n| f.buffer_named(n).is_none()).expect("a free name");
    let acc = f.add_buffer(acc_name, dtype, tile.iter().map(|t| t.1 as usize).collect(), BufKind::Temp);
    // Rewrites an expression written over the original tile variables onto fresh ones.
    let onto = |e: Expr, fresh: &[VarId]| tile.iter().zip(fresh).fold(e, |e, (t, &n)| e.substitute(t.0, &Expr::Var(n)));
    let acc_index = |fresh: &[VarId]| fresh.iter().map(|&n| Expr::Var(n)).collect::<Vec<_>>();

    let init_part = tile_copy(f, &tile, |fresh| vec![Stmt::Store { buf: acc, index: acc_index(fresh), value: onto(init.clone(), fresh) }]);
    let update_part = tile_copy(f, &tile, |fresh| {
        let acc_load = Expr::load(acc, acc_index(fresh));
        let value = update.clone().map(&mut |e| match e {
            Expr::Load { buf, index } if buf == b && index == idx => acc_load.clone(),
            other => other,
        });
        vec![Stmt::Store { buf: acc, index: acc_index(fresh), value: onto(value, fresh) }]
    });
    if update_part.iter().any(|s| {
        let mut reads_b = false;
        s.walk_exprs(&mut |e| reads_b |= matches!(e, Expr::Load { buf, .. } if *buf == b));
        reads_b
    }) {
        return Err(format!("the reduction reads %{buffer} at another element"));
    }
    let mut reduce_part = update_part;
    for &(var, extent, kind) in rchain.iter().rev() {
        reduce_part = vec![Stmt::For(Loop { var, extent, kind, body: reduce_part })];
    }
    let write_part = tile_copy(f, &tile, |fresh| {
        let index = idx.iter().map(|e| onto(e.clone(), fresh)).collect();
        let acc_load = Expr::load(acc, acc_index(fresh));
        let value = match &finish {
            Some(e) => onto(
                e.clone().map(&mut |e| match e {
                    Expr::Load { buf, index } if buf == b && index == idx => acc_load.clone(),
                    other => other,
                }),
                fresh,
            ),
            None => acc_load,
        };
        // The copies read the final value, as the stored element.
        let mut stores = vec![Stmt::Store { buf: b, index, value: value.clone() }];
        for (buf, cindex, cvalue) in &copies {
            let cvalue = cvalue.clone().map(&mut |e| match e {
                Expr::Load { buf: lb, index: li } if lb == b && li == idx => value.clone(),
                other => other,
            });
            stores.push(Stmt::Store { buf: *buf, index: cindex.iter().map(|e| onto(e.clone(), fresh)).collect(), value: onto(cvalue, fresh) });
        }
        stores
    });
    rewrite(f, v, |l| {
        let body = [init_part, reduce_part, write_part].concat();
        vec![Stmt::For(Loop { body, ..l })]
    });
    Ok(())
}

/// The top-level statement that computes temporary `buffer`: a perfect loop nest over all of
/// it ending in one store `buffer[i, j, ...] = e` indexed by the nest's variables in order.
/// Returns its position and the nest's variables; fails if anything else writes the buffer.
fn producer_nest(f: &Func, b: BufId, name: &str) -> Result<(usize, Vec<VarId>)> {
    if f.buffer(b).kind != BufKind::Temp {
        return Err(format!("%{name} is a parameter, not a temporary"));
    }
    let shape = &f.buffer(b).shape;
    let mut found = None;
    let mut stores = 0;
    for (i, s) in f.body.iter().enumerate() {
        s.walk(&mut |s| stores += matches!(s, Stmt::Store { buf, .. } if *buf == b) as usize);
        let Stmt::For(top) = s else { continue };
        let nest = chain(top);
        let vars: Vec<VarId> = nest.iter().map(|l| l.var).collect();
        let extents: Vec<usize> = nest.iter().map(|l| l.extent as usize).collect();
        if let [Stmt::Store { buf, index, value }] = nest[nest.len() - 1].body.as_slice() {
            let identity = index.len() == vars.len() && index.iter().zip(&vars).all(|(e, v)| *e == Expr::Var(*v));
            if *buf == b && identity && extents == *shape && !value.reads(b) {
                found = Some((i, vars));
            }
        }
    }
    match found {
        Some(p) if stores == 1 => Ok(p),
        _ => Err(format!("%{name} is not computed by one loop nest over all of it (one store, indexed by the nest's loops)")),
    }
}

fn reads_buffer(s: &Stmt, b: BufId) -> bool {
    let mut found = false;
    s.walk_exprs(&mut |e| found |= matches!(e, Expr::Load { buf, .. } if *buf == b));
    found
}

fn compute_at(f: &mut Func, buffer: &str, at: &str) -> Result<()> {
    let b = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let (p, _) = producer_nest(f, b, buffer)?;
    let v = loop_var(f, at)?;
    let q = f.body.iter().position(|s| matches!(s, Stmt::For(l) if l.var == v || find_loop(&l.body, v).is_some()));
    let q = q.ok_or_else(|| format!("{at} is not in a loop nest of the program"))?;
    if q <= p {
        return Err(format!("{at} does not run after the nest that computes %{buffer}"));
    }
    if f.body[p + 1..q].iter().any(|s| reads_buffer(s, b)) {
        return Err(format!("%{buffer} is read before {at}"));
    }
    let producer = f.body.remove(p);
    rewrite(f, v, |mut l| {
        l.body.insert(0, producer);
        vec![Stmt::For(l)]
    });
    Ok(())
}

fn inline(f: &mut Func, buffer: &str) -> Result<()> {
    let b = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let (p, vars) = producer_nest(f, b, buffer)?;
    let Stmt::For(top) = f.body.remove(p) else { unreachable!("producer_nest found a loop") };
    let value = match chain(&top).last().map(|l| l.body.as_slice()) {
        Some([Stmt::Store { value, .. }]) => value.clone(),
        _ => unreachable!("producer_nest found a store"),
    };
    let body = std::mem::take(&mut f.body);
    f.body = body
        .into_iter()
        .map(|s| {
            s.map_exprs(&mut |e| match e {
                Expr::Load { buf, index } if buf == b => {
                    vars.iter().zip(index).fold(value.clone(), |acc, (&v, i)| acc.substitute(v, &i))
                }
                other => other,
            })
        })
        .collect();
    Ok(())
}

fn layout_block(f: &mut Func, buffer: &str, axis: usize, factor: usize) -> Result<()> {
    let b = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let buf = f.buffer(b).clone();
    if buf.kind != BufKind::Param || buf.layout.is_some() {
        return Err(format!("%{buffer} is not a parameter in its argument's layout"));
    }
    let mut writes = false;
    for s in &f.body {
        s.walk(&mut |s| writes |= matches!(s, Stmt::Store { buf, .. } if *buf == b));
    }
    if writes {
        return Err(format!("%{buffer} is written by the program; only inputs change layout"));
    }
    let rank = buf.shape.len();
    if axis >= rank || factor < 1 || buf.shape[axis] % factor != 0 {
        return Err(format!("axis {axis} of %{buffer} {:?} cannot be split in blocks of {factor}", buf.shape));
    }
    let mut view = buf.shape.clone();
    view[axis] /= factor;
    view.insert(axis + 1, factor);
    let perm: Vec<usize> = (0..=axis).chain(axis + 2..=rank).chain([axis + 1]).collect();
    let layout = Layout { view, perm };
    f.buffers[b.index()].shape = layout.shape();
    f.buffers[b.index()].layout = Some(layout);
    let body = std::mem::take(&mut f.body);
    f.body = body
        .into_iter()
        .map(|s| {
            s.map_exprs(&mut |e| match e {
                Expr::Load { buf, mut index } if buf == b => {
                    let i = index[axis].clone();
                    index[axis] = Expr::bin(BinOp::Div, i.clone(), Expr::Int(factor as i64));
                    index.push(Expr::bin(BinOp::Rem, i, Expr::Int(factor as i64)));
                    Expr::Load { buf, index }
                }
                other => other,
            })
        })
        .collect();
    Ok(())
}
