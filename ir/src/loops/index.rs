//! Integer index algebra: value ranges, simplification of floor div/mod, and how an index
//! varies across the lanes of a vectorized loop; the analyses backends share.

use super::{BinOp, Expr, VarId};

/// The inclusive range of each loop variable in scope, indexed by `VarId`.
pub type Ranges = [Option<(i64, i64)>];

/// The inclusive range of an i64 expression, when loop extents bound it.
pub fn range(e: &Expr, r: &Ranges) -> Option<(i64, i64)> {
    match e {
        Expr::Int(v) => Some((*v, *v)),
        Expr::Var(v) => r.get(v.index()).copied().flatten(),
        Expr::Binary { op, a, b } => {
            let (a, b) = (range(a, r)?, range(b, r)?);
            match op {
                BinOp::Add => Some((a.0.checked_add(b.0)?, a.1.checked_add(b.1)?)),
                BinOp::Sub => Some((a.0.checked_sub(b.1)?, a.1.checked_sub(b.0)?)),
                BinOp::Mul => {
                    let p = [a.0.checked_mul(b.0)?, a.0.checked_mul(b.1)?, a.1.checked_mul(b.0)?, a.1.checked_mul(b.1)?];
                    Some((*p.iter().min()?, *p.iter().max()?))
                }
                // Floor division by a positive constant is monotonic in the dividend.
                BinOp::Div if b.0 == b.1 && b.0 > 0 => Some((a.0.div_euclid(b.0), a.1.div_euclid(b.0))),
                BinOp::Rem if b.0 == b.1 && b.0 > 0 => {
                    if a.0 >= 0 && a.1 < b.0 {
                        Some(a)
                    } else {
                        Some((0, b.0 - 1))
                    }
                }
                BinOp::Min => Some((a.0.min(b.0), a.1.min(b.1))),
                BinOp::Max => Some((a.0.max(b.0), a.1.max(b.1))),
                _ => None,
            }
        }
        Expr::Select { a, b, .. } => {
            let (a, b) = (range(a, r)?, range(b, r)?);
            Some((a.0.min(b.0), a.1.max(b.1)))
        }
        _ => None,
    }
}

/// Folds constants and removes the floor div/mod that splits and fuses leave in indices
/// (`(o * 16 + i) % 16` is `i` when `i < 16`), so that contiguous accesses are seen as such.
pub fn simplify(e: Expr, r: &Ranges) -> Expr {
    e.map(&mut |e| simplify_node(e, r))
}

fn simplify_node(e: Expr, r: &Ranges) -> Expr {
    let Expr::Binary { op, a, b } = e else {
        return match e {
            // Unrolled iterations bind their variable to one value.
            Expr::Var(v) => match r.get(v.index()).copied().flatten() {
                Some((lo, hi)) if lo == hi => Expr::Int(lo),
                _ => e,
            },
            Expr::Select { cond, a, .. } if *cond == Expr::Bool(true) => *a,
            Expr::Select { cond, b, .. } if *cond == Expr::Bool(false) => *b,
            other => other,
        };
    };
    let (ra, rb) = (range(&a, r), range(&b, r));
    match (op, &*a, &*b) {
        (BinOp::Add, Expr::Int(x), Expr::Int(y)) => Expr::Int(x.wrapping_add(*y)),
        (BinOp::Sub, Expr::Int(x), Expr::Int(y)) => Expr::Int(x.wrapping_sub(*y)),
        (BinOp::Mul, Expr::Int(x), Expr::Int(y)) => Expr::Int(x.wrapping_mul(*y)),
        (BinOp::Add, x, Expr::Int(0)) | (BinOp::Add, Expr::Int(0), x) | (BinOp::Sub, x, Expr::Int(0)) => x.clone(),
        (BinOp::Mul, x, Expr::Int(1)) | (BinOp::Mul, Expr::Int(1), x) => x.clone(),
        (BinOp::Mul, _, Expr::Int(0)) | (BinOp::Mul, Expr::Int(0), _) => Expr::Int(0),
        (BinOp::Div, _, Expr::Int(m)) if *m > 0 => div_by(*a, *m, r),
        (BinOp::Rem, _, Expr::Int(m)) if *m > 0 => rem_by(*a, *m, r),
        (BinOp::Min, _, _) if matches!((ra, rb), (Some(x), Some(y)) if x.1 <= y.0) => *a,
        (BinOp::Min, _, _) if matches!((ra, rb), (Some(x), Some(y)) if y.1 <= x.0) => *b,
        (BinOp::Max, _, _) if matches!((ra, rb), (Some(x), Some(y)) if x.0 >= y.1) => *a,
        (BinOp::Max, _, _) if matches!((ra, rb), (Some(x), Some(y)) if y.0 >= x.1) => *b,
        _ => match (op, ra, rb) {
            // Comparisons the ranges decide (guards of splits that happen to divide).
            (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne, Some(x), Some(y)) => match compare(op, x, y) {
                Some(v) => Expr::Bool(v),
                None => Expr::Binary { op, a, b },
            },
            _ => Expr::Binary { op, a, b },
        },
    }
}

/// The value of `x op y` for every pair of values in the two ranges, when it is the same.
fn compare(op: BinOp, x: (i64, i64), y: (i64, i64)) -> Option<bool> {
    let always = |lt: bool| Some(lt);
    match op {
        BinOp::Lt if x.1 < y.0 => always(true),
        BinOp::Lt if x.0 >= y.1 => always(false),
        BinOp::Le if x.1 <= y.0 => always(true),
        BinOp::Le if x.0 > y.1 => always(false),
        BinOp::Gt => compare(BinOp::Lt, y, x),
        BinOp::Ge => compare(BinOp::Le, y, x),
        BinOp::Eq if x.0 == x.1 && y.0 == y.1 => Some(x.0 == y.0),
        BinOp::Eq if x.1 < y.0 || y.1 < x.0 => Some(false),
        BinOp::Ne => compare(BinOp::Eq, x, y).map(|v| !v),
        _ => None,
    }
}

/// Summands with their signs (true = subtracted).
type Terms = Vec<(bool, Expr)>;

/// The summands of `e`.
fn terms(e: Expr, neg: bool, out: &mut Terms) {
    match e {
        Expr::Binary { op: BinOp::Add, a, b } => {
            terms(*a, neg, out);
            terms(*b, neg, out);
        }
        Expr::Binary { op: BinOp::Sub, a, b } => {
            terms(*a, neg, out);
            terms(*b, !neg, out);
        }
        other => out.push((neg, other)),
    }
}

fn sum(ts: Terms) -> Expr {
    let mut acc: Option<Expr> = None;
    for (neg, t) in ts {
        acc = Some(match (acc, neg) {
            (None, false) => t,
            (None, true) => Expr::bin(BinOp::Sub, Expr::Int(0), t),
            (Some(a), false) => Expr::bin(BinOp::Add, a, t),
            (Some(a), true) => Expr::bin(BinOp::Sub, a, t),
        });
    }
    acc.unwrap_or(Expr::Int(0))
}

/// `t / m` when `t` is a multiple of `m` by its form.
fn exact_quotient(t: &Expr, m: i64) -> Option<Expr> {
    match t {
        Expr::Int(k) if k % m == 0 => Some(Expr::Int(k / m)),
        Expr::Binary { op: BinOp::Mul, a, b } => match (&**a, &**b) {
            (x, Expr::Int(k)) | (Expr::Int(k), x) if k % m == 0 => Some(Expr::bin(BinOp::Mul, x.clone(), Expr::Int(k / m))),
            _ => None,
        },
        _ => None,
    }
}

/// Splits the summands of `a` into the exact quotients by `m` and the rest.
fn split_multiples(a: Expr, m: i64) -> (Terms, Terms) {
    let mut ts = Vec::new();
    terms(a, false, &mut ts);
    let (mut quotients, mut rest) = (Vec::new(), Vec::new());
    for (neg, t) in ts {
        match exact_quotient(&t, m) {
            Some(q) => quotients.push((neg, q)),
            None => rest.push((neg, t)),
        }
    }
    (quotients, rest)
}

/// floor(a / m) for m > 0, using floor((k*m + q) / m) = k + floor(q / m).
fn div_by(a: Expr, m: i64, r: &Ranges) -> Expr {
    if m == 1 {
        return a;
    }
    if matches!(range(&a, r), Some((lo, hi)) if lo >= 0 && hi < m) {
        return Expr::Int(0);
    }
    let (quotients, rest) = split_multiples(a.clone(), m);
    if quotients.is_empty() {
        return Expr::bin(BinOp::Div, a, Expr::Int(m));
    }
    let q = simplify(sum(quotients), r);
    let tail = if rest.is_empty() { Expr::Int(0) } else { div_by(simplify(sum(rest), r), m, r) };
    simplify_node(Expr::bin(BinOp::Add, q, tail), r)
}

/// a mod m for m > 0 (floor semantics), dropping summands that are multiples of m.
fn rem_by(a: Expr, m: i64, r: &Ranges) -> Expr {
    if m == 1 {
        return Expr::Int(0);
    }
    if matches!(range(&a, r), Some((lo, hi)) if lo >= 0 && hi < m) {
        return a;
    }
    let (quotients, rest) = split_multiples(a.clone(), m);
    if quotients.is_empty() {
        return Expr::bin(BinOp::Rem, a, Expr::Int(m));
    }
    if rest.is_empty() {
        return Expr::Int(0);
    }
    rem_by(simplify(sum(rest), r), m, r)
}

/// How an expression depends on the lane variable of a vectorized loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The same value in every lane.
    Uniform,
    /// `e(lane) = e(0) + c * lane` with c != 0.
    Linear(i64),
    Varying,
}

fn linear(c: i64) -> Lane {
    if c == 0 {
        Lane::Uniform
    } else {
        Lane::Linear(c)
    }
}

pub fn lane_form(e: &Expr, lane: VarId) -> Lane {
    let all_uniform = |es: &[&Expr]| {
        if es.iter().all(|x| lane_form(x, lane) == Lane::Uniform) {
            Lane::Uniform
        } else {
            Lane::Varying
        }
    };
    match e {
        Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) => Lane::Uniform,
        Expr::Var(v) => linear(i64::from(*v == lane)),
        Expr::Load { index, .. } => all_uniform(&index.iter().collect::<Vec<_>>()),
        Expr::Binary { op, a, b } => {
            let (fa, fb) = (lane_form(a, lane), lane_form(b, lane));
            let coeff = |f: Lane| match f {
                Lane::Uniform => Some(0),
                Lane::Linear(c) => Some(c),
                Lane::Varying => None,
            };
            match (op, coeff(fa), coeff(fb)) {
                (_, Some(0), Some(0)) => Lane::Uniform,
                (BinOp::Add, Some(x), Some(y)) => linear(x.wrapping_add(y)),
                (BinOp::Sub, Some(x), Some(y)) => linear(x.wrapping_sub(y)),
                (BinOp::Mul, Some(x), _) if matches!(**b, Expr::Int(_)) => {
                    let Expr::Int(k) = **b else { unreachable!() };
                    linear(x.wrapping_mul(k))
                }
                (BinOp::Mul, _, Some(y)) if matches!(**a, Expr::Int(_)) => {
                    let Expr::Int(k) = **a else { unreachable!() };
                    linear(y.wrapping_mul(k))
                }
                _ => Lane::Varying,
            }
        }
        Expr::Call { args, .. } => all_uniform(&args.iter().collect::<Vec<_>>()),
        Expr::Select { cond, a, b } => all_uniform(&[cond, a, b]),
        Expr::Cast { x, .. } => all_uniform(&[x]),
    }
}

/// The row-major element offset of `index` into a buffer of `shape`.
pub fn flatten(index: &[Expr], shape: &[usize]) -> Expr {
    let mut acc: Option<Expr> = None;
    for (e, &dim) in index.iter().zip(shape) {
        acc = Some(match acc {
            None => e.clone(),
            Some(a) => Expr::bin(BinOp::Add, Expr::bin(BinOp::Mul, a, Expr::Int(dim as i64)), e.clone()),
        });
    }
    acc.unwrap_or(Expr::Int(0))
}
