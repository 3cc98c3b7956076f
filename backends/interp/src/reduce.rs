//! Reductions over axes, and the index of the largest or smallest element along an axis.

use ir::graph::ReduceKind;
use ir::types::numel;
use ir::{Tensor, TensorData, TensorType};

use crate::elem::{by_dtype, view};
use crate::strided::for_each_broadcast;
use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;

/// Folds every element of `x` (of shape `shape`) into the accumulator of the output element
/// it reduces to; `kept` is `shape` with the reduced axes set to 1.
fn fold<T: Copy, A: Copy>(
    x: &[T],
    shape: &[usize],
    kept: &[usize],
    init: A,
    f: impl Fn(A, T) -> A,
) -> Vec<A> {
    let mut acc = vec![init; numel(kept)];
    let mut i = 0;
    // Broadcasting the output onto the input gives each input element's output offset.
    for_each_broadcast(shape, [kept], |[o]| {
        acc[o] = f(acc[o], x[i]);
        i += 1;
    });
    acc
}

/// An empty reduction gives the identity: 0 for sum, 1 for prod, -inf (i64::MIN) for max,
/// +inf (i64::MAX) for min, NaN for mean (0 / 0). f32 sums and products accumulate in f64,
/// so that the oracle rounds once rather than once per element.
pub(crate) fn reduce(
    x: &Tensor,
    kind: ReduceKind,
    axes: &[usize],
    out: &TensorType,
) -> Result<Tensor> {
    let s = &x.shape;
    let kept: Vec<usize> = s
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let count = axes.iter().map(|&a| s[a]).product::<usize>() as f64;
    let to_f32 = |acc: Vec<f64>| acc.into_iter().map(|a| a as f32).collect();
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(match kind {
            ReduceKind::Sum => to_f32(fold(v, s, &kept, 0.0, |a, e| a + e as f64)),
            ReduceKind::Mean => to_f32(
                fold(v, s, &kept, 0.0, |a, e| a + e as f64)
                    .into_iter()
                    .map(|a| a / count)
                    .collect(),
            ),
            ReduceKind::Prod => to_f32(fold(v, s, &kept, 1.0, |a, e| a * e as f64)),
            ReduceKind::Max => fold(v, s, &kept, f32::NEG_INFINITY, f32::max),
            ReduceKind::Min => fold(v, s, &kept, f32::INFINITY, f32::min),
        }),
        TensorData::I64(v) if kind != ReduceKind::Mean => TensorData::I64(match kind {
            ReduceKind::Sum => fold(v, s, &kept, 0, i64::wrapping_add),
            ReduceKind::Prod => fold(v, s, &kept, 1, i64::wrapping_mul),
            ReduceKind::Max => fold(v, s, &kept, i64::MIN, i64::max),
            _ => fold(v, s, &kept, i64::MAX, i64::min),
        }),
        _ => {
            return Err(InterpError::Unsupported {
                op: op_name(kind).into(),
                dtype: x.dtype(),
            })
        }
    };
    Ok(Tensor {
        shape: out.shape.clone(),
        data,
    })
}

fn op_name(kind: ReduceKind) -> &'static str {
    ir::Op::Reduce {
        kind,
        axes: vec![],
        keep_dims: false,
    }
    .name()
}

/// The index along `axis` of the first largest (smallest) element, or the last with
/// `select_last`.
pub(crate) fn arg_reduce(
    x: &Tensor,
    max: bool,
    axis: usize,
    select_last: bool,
    out: &TensorType,
) -> Result<Tensor> {
    let name = if max { "argmax" } else { "argmin" };
    let d = x.shape[axis];
    let (outer, inner) = (numel(&x.shape[..axis]), numel(&x.shape[axis + 1..]));
    if d == 0 && outer * inner > 0 {
        return Err(InterpError::Invalid(format!(
            "{name} over axis {axis} of {}, which is empty",
            x.ty()
        )));
    }
    let picks = by_dtype!(x.dtype(), name, |T| {
        let v = view::<T>(x, name)?;
        Ok(arg_picks(v, [outer, d, inner], max, select_last))
    })?;
    Ok(Tensor {
        shape: out.shape.clone(),
        data: TensorData::I64(picks),
    })
}

/// For `v` viewed as `[outer, d, inner]`, the pick along `d` for every (outer, inner).
fn arg_picks<T: PartialOrd + Copy>(
    v: &[T],
    [outer, d, inner]: [usize; 3],
    max: bool,
    select_last: bool,
) -> Vec<i64> {
    let mut picks = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * d + j) * inner + i];
            let mut best = 0;
            for j in 1..d {
                let (c, b) = (at(j), at(best));
                let better = if max { c > b } else { c < b };
                if better || (select_last && c == b) {
                    best = j;
                }
            }
            picks.push(best as i64);
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use crate::eval_op;
    use ir::graph::ReduceKind;
    use ir::{DType, Op, Tensor};

    fn eval(op: Op, x: &Tensor) -> Result<Tensor, crate::InterpError> {
        let out = op.infer(&[&x.ty()]).unwrap();
        eval_op(&op, &[x], &out)
    }

    fn reduce(kind: ReduceKind, axes: &[usize], keep_dims: bool, x: &Tensor) -> Tensor {
        eval(
            Op::Reduce {
                kind,
                axes: axes.to_vec(),
                keep_dims,
            },
            x,
        )
        .unwrap()
    }

    /// [[[1, 2, 3], [4, 5, 6]], [[-1, 0, 7], [2, 2, -8]]], shape [2, 2, 3].
    fn x() -> Tensor {
        Tensor::f32(
            [2, 2, 3],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, 0.0, 7.0, 2.0, 2.0, -8.0],
        )
        .unwrap()
    }

    #[test]
    fn every_kind_over_the_last_axis() {
        let x = x();
        let r = reduce(ReduceKind::Sum, &[2], false, &x);
        assert_eq!(r.shape, [2, 2]);
        assert_eq!(r.as_f32().unwrap(), [6.0, 15.0, 6.0, -4.0]);
        assert_eq!(
            reduce(ReduceKind::Mean, &[2], false, &x).as_f32().unwrap(),
            [2.0, 5.0, 2.0, -4.0 / 3.0]
        );
        assert_eq!(
            reduce(ReduceKind::Max, &[2], false, &x).as_f32().unwrap(),
            [3.0, 6.0, 7.0, 2.0]
        );
        assert_eq!(
            reduce(ReduceKind::Min, &[2], false, &x).as_f32().unwrap(),
            [1.0, 4.0, -1.0, -8.0]
        );
        assert_eq!(
            reduce(ReduceKind::Prod, &[2], false, &x).as_f32().unwrap(),
            [6.0, 120.0, 0.0, -32.0]
        );
    }

    #[test]
    fn several_axes_and_keep_dims() {
        let x = x();
        let r = reduce(ReduceKind::Sum, &[0, 2], true, &x);
        assert_eq!(r.shape, [1, 2, 1]);
        assert_eq!(r.as_f32().unwrap(), [12.0, 11.0]);
        let r = reduce(ReduceKind::Max, &[0, 1, 2], false, &x);
        assert_eq!(r.shape, Vec::<usize>::new());
        assert_eq!(r.as_f32().unwrap(), [7.0]);
        let r = reduce(ReduceKind::Mean, &[1], false, &x);
        assert_eq!(r.as_f32().unwrap(), [2.5, 3.5, 4.5, 0.5, 1.0, -0.5]);
    }

    #[test]
    fn empty_reductions_give_the_identity() {
        let e = Tensor::f32([2, 0], vec![]).unwrap();
        let got = |kind| reduce(kind, &[1], false, &e).as_f32().unwrap().to_vec();
        assert_eq!(got(ReduceKind::Sum), [0.0, 0.0]);
        assert_eq!(got(ReduceKind::Prod), [1.0, 1.0]);
        assert_eq!(got(ReduceKind::Max), [f32::NEG_INFINITY; 2]);
        assert_eq!(got(ReduceKind::Min), [f32::INFINITY; 2]);
        assert!(got(ReduceKind::Mean).iter().all(|m| m.is_nan()));
    }

    #[test]
    fn integer_reductions() {
        let x = Tensor::i64([2, 2], vec![3, -4, 5, 6]).unwrap();
        let got = |kind| reduce(kind, &[0], false, &x).as_i64().unwrap().to_vec();
        assert_eq!(got(ReduceKind::Sum), [8, 2]);
        assert_eq!(got(ReduceKind::Prod), [15, -24]);
        assert_eq!(got(ReduceKind::Max), [5, 6]);
        assert_eq!(got(ReduceKind::Min), [3, -4]);
        let err = eval(
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: vec![0],
                keep_dims: false,
            },
            &x,
        )
        .unwrap_err();
        assert_eq!(
            err,
            crate::InterpError::Unsupported {
                op: "reduce_mean".into(),
                dtype: DType::I64
            }
        );
    }

    #[test]
    fn argmax_and_argmin_ties() {
        let x = Tensor::f32([2, 4], vec![1.0, 3.0, 3.0, 0.0, -1.0, -1.0, 2.0, 5.0]).unwrap();
        let arg = |max, axis, keep_dims, select_last| {
            let r = eval(
                Op::ArgReduce {
                    max,
                    axis,
                    keep_dims,
                    select_last,
                },
                &x,
            )
            .unwrap();
            (r.shape.clone(), r.as_i64().unwrap().to_vec())
        };
        assert_eq!(arg(true, 1, false, false), (vec![2], vec![1, 3]));
        assert_eq!(arg(true, 1, true, true), (vec![2, 1], vec![2, 3]));
        assert_eq!(arg(false, 1, false, false), (vec![2], vec![3, 0]));
        assert_eq!(arg(false, 1, false, true), (vec![2], vec![3, 1]));
        assert_eq!(arg(true, 0, false, false), (vec![4], vec![0, 0, 0, 1]));
        let empty = Tensor::f32([2, 0], vec![]).unwrap();
        let op = Op::ArgReduce {
            max: true,
            axis: 1,
            keep_dims: false,
            select_last: false,
        };
        assert!(matches!(
            eval(op, &empty),
            Err(crate::InterpError::Invalid(_))
        ));
    }
}
