//! Whether a vectorized loop may run as SIMD lanes: lanes execute each statement together,
//! so any memory a lane writes must be private to that lane. Shared by the backends.

use std::collections::{HashMap, HashSet};

use super::index::{lane_form, simplify, Lane, Ranges};
use super::{BufId, Expr, Func, Loop, Stmt, VarId};

/// The widest vector a backend emits; wider loops run serially.
pub const MAX_LANES: i64 = 64;

/// Why loop `l` cannot run as SIMD lanes, or None when it can.
///
/// Running lane-parallel equals running iterations in order when no lane touches memory
/// another lane writes. That holds when, for every buffer written in the loop, some
/// dimension is indexed in every access by one expression `u + c * lane` (c != 0) whose
/// `u` is fixed for the whole loop: lanes then own disjoint slices of the buffer.
pub fn blocker(f: &Func, l: &Loop, scope: &Ranges) -> Option<String> {
    if l.extent < 2 || l.extent > MAX_LANES {
        return Some(format!("extent {} is not between 2 and {MAX_LANES}", l.extent));
    }
    let mut ranges = scope.to_vec();
    ranges[l.var.index()] = Some((0, l.extent - 1));
    let mut inner: HashSet<VarId> = HashSet::new();
    for s in &l.body {
        s.walk(&mut |s| {
            if let Stmt::For(x) = s {
                inner.insert(x.var);
                ranges[x.var.index()] = Some((0, x.extent - 1));
            }
        });
    }
    let mut accesses: HashMap<BufId, Vec<Vec<Expr>>> = HashMap::new();
    let mut written: HashSet<BufId> = HashSet::new();
    for s in &l.body {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, index, .. } = s {
                written.insert(*buf);
                accesses.entry(*buf).or_default().push(index.clone());
            }
        });
        s.walk_exprs(&mut |e| {
            if let Expr::Load { buf, index } = e {
                accesses.entry(*buf).or_default().push(index.clone());
            }
        });
    }
    let mut written: Vec<BufId> = written.into_iter().collect();
    written.sort();
    for b in written {
        let all = &accesses[&b];
        let rank = f.buffer(b).shape.len();
        let private = (0..rank).any(|d| {
            let first = simplify(all[0][d].clone(), &ranges);
            let lane_linear = matches!(lane_form(&first, l.var), Lane::Linear(_));
            let fixed = inner.iter().all(|v| !first.uses_var(*v));
            lane_linear && fixed && all.iter().all(|idx| simplify(idx[d].clone(), &ranges) == first)
        });
        if !private {
            return Some(format!("lanes may share elements of %{} that the loop writes", f.buffer(b).name));
        }
    }
    None
}
