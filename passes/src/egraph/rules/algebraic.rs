//! Algebraic identities: multiplying by one, adding zero, and chains of reshapes and
//! transposes.

use egg::{rewrite, Id, Subst, Var};
use ir::Op;

use super::{custom, Custom, GRewrite};
use crate::egraph::{add_op, all_equal, ops_in, GEGraph};

/// `?c` is a constant whose every element is `x`, and replacing the match by `?keep` keeps
/// the match's type (broadcasting must not have grown the result).
fn constant_is(c: &'static str, keep: &'static str, x: f32) -> impl Fn(&mut GEGraph, Id, &Subst) -> bool {
    let (c, keep): (Var, Var) = (c.parse().expect("a variable"), keep.parse().expect("a variable"));
    move |egraph, id, subst| {
        let same_type = egraph[subst[keep]].data.ty == egraph[id].data.ty;
        same_type && egraph[subst[c]].data.value.as_deref().is_some_and(|t| all_equal(t, x))
    }
}

pub fn rules() -> Vec<GRewrite> {
    vec![
        // x * 1 = x
        rewrite!("mul-one"; "(mul ?x ?c)" => "?x" if constant_is("?c", "?x", 1.0)),
        // 1 * x = x
        rewrite!("one-mul"; "(mul ?c ?x)" => "?x" if constant_is("?c", "?x", 1.0)),
        // x + 0 = x
        rewrite!("add-zero"; "(add ?x ?c)" => "?x" if constant_is("?c", "?x", 0.0)),
        // 0 + x = x
        rewrite!("zero-add"; "(add ?c ?x)" => "?x" if constant_is("?c", "?x", 0.0)),
        // x - 0 = x
        rewrite!("sub-zero"; "(sub ?x ?c)" => "?x" if constant_is("?c", "?x", 0.0)),
        // x / 1 = x
        rewrite!("div-one"; "(div ?x ?c)" => "?x" if constant_is("?c", "?x", 1.0)),
        // reshape(reshape(x, s1), s2) = reshape(x, s2)
        custom("reshape-reshape", Custom { rewrite: reshape_reshape, applies: |g, id| reshape_of_reshape(g, id).is_some() }),
        // reshape(x, shape(x)) = x
        custom("reshape-identity", Custom { rewrite: reshape_identity, applies: |g, id| reshape_identity_source(g, id).is_some() }),
        // transpose(transpose(x, p1), p2) = transpose(x, p1 o p2), and the identity vanishes
        custom("transpose-transpose", Custom { rewrite: transpose_transpose, applies: |g, id| transpose_of_transpose(g, id).is_some() }),
    ]
}

/// (grandchild, outer shape) of a reshape of a reshape in class `id`.
fn reshape_of_reshape(g: &GEGraph, id: Id) -> Option<(Id, Vec<usize>)> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        let Op::Reshape { shape } = op else { return None };
        ops_in(g, ch[0]).into_iter().find_map(|(inner, ich)| matches!(inner, Op::Reshape { .. }).then(|| (ich[0], shape.clone())))
    })
}

fn reshape_reshape(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (x, shape) = reshape_of_reshape(g, id)?;
    add_op(g, Op::Reshape { shape }, vec![x])
}

fn reshape_identity_source(g: &GEGraph, id: Id) -> Option<Id> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| match op {
        Op::Reshape { shape } if g[ch[0]].data.ty.shape == shape => Some(ch[0]),
        _ => None,
    })
}

fn reshape_identity(g: &mut GEGraph, id: Id) -> Option<Id> {
    reshape_identity_source(g, id)
}

/// (grandchild, composed permutation) of a transpose of a transpose in class `id`.
fn transpose_of_transpose(g: &GEGraph, id: Id) -> Option<(Id, Vec<usize>)> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        let Op::Transpose { perm: outer } = op else { return None };
        ops_in(g, ch[0]).into_iter().find_map(|(inner, ich)| match inner {
            // Output axis i of the outer is its input axis outer[i], which is the inner's
            // input axis inner[outer[i]].
            Op::Transpose { perm } => Some((ich[0], outer.iter().map(|&i| perm[i]).collect())),
            _ => None,
        })
    })
}

fn transpose_transpose(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (x, perm) = transpose_of_transpose(g, id)?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Some(x);
    }
    add_op(g, Op::Transpose { perm }, vec![x])
}
