//! Data movement: reshape, transpose, concat, slice, pad, expand and gather, on every dtype.

use ir::graph::PadMode;
use ir::types::{numel, strides};
use ir::{Tensor, TensorType};

use crate::elem::{by_dtype, view, Elem};
use crate::strided::{broadcast_strides, gather_strided};
use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;

fn tensor<T: Elem>(out: &TensorType, v: Vec<T>) -> Tensor {
    Tensor {
        shape: out.shape.clone(),
        data: T::wrap(v),
    }
}

pub(crate) fn reshape(x: &Tensor, out: &TensorType) -> Result<Tensor> {
    Ok(Tensor {
        shape: out.shape.clone(),
        data: x.data.clone(),
    })
}

/// Output axis `i` is input axis `perm[i]`, so it steps by that axis's stride.
pub(crate) fn transpose(x: &Tensor, perm: &[usize], out: &TensorType) -> Result<Tensor> {
    let in_strides = strides(&x.shape);
    let s: Vec<isize> = perm.iter().map(|&p| in_strides[p] as isize).collect();
    by_dtype!(out.dtype, "transpose", |T| Ok(tensor(
        out,
        gather_strided(view::<T>(x, "transpose")?, &out.shape, &s, 0)
    )))
}

/// Per index of the axes before `axis`, each input contributes one contiguous chunk.
pub(crate) fn concat(inputs: &[&Tensor], axis: usize, out: &TensorType) -> Result<Tensor> {
    let (outer, inner) = (numel(&out.shape[..axis]), numel(&out.shape[axis + 1..]));
    by_dtype!(out.dtype, "concat", |T| {
        let parts = inputs
            .iter()
            .map(|t| Ok((view::<T>(t, "concat")?, t.shape[axis] * inner)))
            .collect::<Result<Vec<_>>>()?;
        let mut r = Vec::with_capacity(out.numel());
        for o in 0..outer {
            for &(p, chunk) in &parts {
                r.extend_from_slice(&p[o * chunk..][..chunk]);
            }
        }
        Ok(tensor(out, r))
    })
}

/// Element `starts[i] + j * steps[i]` along each axis `i`, for `j` below the output extent.
pub(crate) fn slice(x: &Tensor, starts: &[i64], steps: &[i64], out: &TensorType) -> Result<Tensor> {
    let in_strides = strides(&x.shape);
    let mut start = 0isize;
    let mut s = Vec::with_capacity(x.shape.len());
    for i in 0..x.shape.len() {
        let (len, d) = (out.shape[i], x.shape[i] as i64);
        if len == 0 {
            s.push(0);
            continue;
        }
        // The shape rule lets a backward slice start at 0 of an empty axis; catch any such
        // element outside the input here.
        let last = starts[i] + (len as i64 - 1) * steps[i];
        if !(0..d).contains(&starts[i]) || !(0..d).contains(&last) {
            return Err(InterpError::Invalid(format!(
                "slice: axis {i} would read elements {} to {last} of {}",
                starts[i],
                x.ty()
            )));
        }
        start += starts[i] as isize * in_strides[i] as isize;
        // A one-element axis never moves; a zero stride keeps a huge step out of the sums.
        s.push(if len == 1 {
            0
        } else {
            in_strides[i] as isize * steps[i] as isize
        });
    }
    by_dtype!(out.dtype, "slice", |T| Ok(tensor(
        out,
        gather_strided(view::<T>(x, "slice")?, &out.shape, &s, start)
    )))
}

/// For each output coordinate along one axis, the input coordinate it copies, or None for
/// the pad value.
fn source_map(d: usize, lead: usize, trail: usize, mode: PadMode) -> Result<Vec<Option<usize>>> {
    if d == 0 && lead + trail > 0 && mode != PadMode::Constant {
        return Err(InterpError::Invalid(
            "pad: an empty axis has no edge to repeat or reflect".into(),
        ));
    }
    let last = d as isize - 1;
    let map = (0..lead + d + trail).map(|o| {
        let i = o as isize - lead as isize;
        if (0..=last).contains(&i) {
            return Some(i as usize);
        }
        match mode {
            PadMode::Constant => None,
            PadMode::Edge => Some(i.clamp(0, last) as usize),
            // numpy's reflect mirrors about the edge element without repeating it; the shape
            // rule keeps pads below the extent, so one reflection lands inside.
            PadMode::Reflect => Some(if i < 0 { -i } else { 2 * last - i } as usize),
        }
    });
    Ok(map.collect())
}

pub(crate) fn pad(
    x: &Tensor,
    pads: &[usize],
    mode: PadMode,
    value: f32,
    out: &TensorType,
) -> Result<Tensor> {
    if out.numel() == 0 {
        // The source maps below are as long as the output axes, which may be huge even
        // though another axis is empty.
        return by_dtype!(out.dtype, "pad", |T| Ok(tensor::<T>(out, vec![])));
    }
    let r = x.shape.len();
    let maps = (0..r)
        .map(|a| source_map(x.shape[a], pads[a], pads[r + a], mode))
        .collect::<Result<Vec<_>>>()?;
    let in_strides = strides(&x.shape);
    by_dtype!(out.dtype, "pad", |T| {
        let v = view::<T>(x, "pad")?;
        let fill = T::from_f32(value);
        let mut padded = Vec::with_capacity(out.numel());
        let mut index = vec![0usize; r];
        for _ in 0..out.numel() {
            let source = index
                .iter()
                .zip(&maps)
                .zip(&in_strides)
                .try_fold(0, |off, ((&i, map), &s)| map[i].map(|j| off + j * s));
            padded.push(source.map_or(fill, |o| v[o]));
            // Next output coordinate, row-major.
            for a in (0..r).rev() {
                index[a] += 1;
                if index[a] < out.shape[a] {
                    break;
                }
                index[a] = 0;
            }
        }
        Ok(tensor(out, padded))
    })
}

pub(crate) fn expand(x: &Tensor, out: &TensorType) -> Result<Tensor> {
    let s = broadcast_strides(&out.shape, &x.shape);
    by_dtype!(out.dtype, "expand", |T| Ok(tensor(
        out,
        gather_strided(view::<T>(x, "expand")?, &out.shape, &s, 0)
    )))
}

pub(crate) fn gather(
    x: &Tensor,
    indices: &Tensor,
    axis: usize,
    out: &TensorType,
) -> Result<Tensor> {
    let d = x.shape[axis];
    let (outer, inner) = (numel(&x.shape[..axis]), numel(&x.shape[axis + 1..]));
    let picks = view::<i64>(indices, "gather")?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + d as i64 } else { i };
            if (0..d as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(InterpError::IndexOutOfRange {
                    index: i,
                    axis,
                    extent: d,
                })
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    by_dtype!(out.dtype, "gather", |T| {
        let v = view::<T>(x, "gather")?;
        let mut r = Vec::with_capacity(out.numel());
        for o in 0..outer {
            for &j in &picks {
                r.extend_from_slice(&v[(o * d + j) * inner..][..inner]);
            }
        }
        Ok(tensor(out, r))
    })
}

#[cfg(test)]
mod tests {
    use crate::{eval_op, InterpError};
    use ir::graph::PadMode;
    use ir::{Op, Tensor, TensorData, TensorType};

    fn eval(op: Op, inputs: &[&Tensor]) -> Result<Tensor, InterpError> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let out = op.infer(&tys.iter().collect::<Vec<_>>())?;
        eval_op(&op, inputs, &out)
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::i64(shape, (0..n as i64).collect()).unwrap()
    }

    fn ints(t: &Tensor) -> (Vec<usize>, Vec<i64>) {
        (t.shape.clone(), t.as_i64().unwrap().to_vec())
    }

    #[test]
    fn reshape_keeps_data() {
        let r = eval(Op::Reshape { shape: vec![3, 2] }, &[&seq(&[2, 3])]).unwrap();
        assert_eq!(ints(&r), (vec![3, 2], vec![0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn transpose_permutes_axes() {
        let r = eval(Op::Transpose { perm: vec![1, 0] }, &[&seq(&[2, 3])]).unwrap();
        assert_eq!(ints(&r), (vec![3, 2], vec![0, 3, 1, 4, 2, 5]));
        // Output axis i is input axis perm[i]: out[c][a][b] = x[a][b][c].
        let r = eval(
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &[&seq(&[2, 2, 2])],
        )
        .unwrap();
        assert_eq!(ints(&r), (vec![2, 2, 2], vec![0, 2, 4, 6, 1, 3, 5, 7]));
    }

    #[test]
    fn concat_along_inner_axis() {
        let a = seq(&[2, 1]);
        let b = Tensor::i64([2, 2], vec![10, 11, 12, 13]).unwrap();
        let r = eval(Op::Concat { axis: 1 }, &[&a, &b]).unwrap();
        assert_eq!(ints(&r), (vec![2, 3], vec![0, 10, 11, 1, 12, 13]));
        let r = eval(Op::Concat { axis: 0 }, &[&b, &b]).unwrap();
        assert_eq!(ints(&r), (vec![4, 2], vec![10, 11, 12, 13, 10, 11, 12, 13]));
    }

    #[test]
    fn slice_with_negative_step() {
        // Rows 1 down to 0 of a 3x4, every second column from 3 down.
        let op = Op::Slice {
            starts: vec![1, 3],
            ends: vec![-1, -1],
            steps: vec![-1, -2],
        };
        let r = eval(op, &[&seq(&[3, 4])]).unwrap();
        assert_eq!(ints(&r), (vec![2, 2], vec![7, 5, 3, 1]));
        let op = Op::Slice {
            starts: vec![0, 1],
            ends: vec![3, 4],
            steps: vec![2, 2],
        };
        let r = eval(op, &[&seq(&[3, 4])]).unwrap();
        assert_eq!(ints(&r), (vec![2, 2], vec![1, 3, 9, 11]));
    }

    #[test]
    fn backward_slice_of_an_empty_axis_is_an_error() {
        let op = Op::Slice {
            starts: vec![0],
            ends: vec![-1],
            steps: vec![-1],
        };
        let empty = Tensor::f32([0], vec![]).unwrap();
        // The shape rule refuses it: a backwards slice must start on an element.
        assert!(matches!(eval(op, &[&empty]), Err(InterpError::Shape(_))));
    }

    #[test]
    fn pad_modes() {
        let x = Tensor::f32([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let pad = |mode, value| {
            let r = eval(
                Op::Pad {
                    pads: vec![1, 2, 0, 1],
                    mode,
                    value,
                },
                &[&x],
            )
            .unwrap();
            assert_eq!(r.shape, [3, 6]);
            r.as_f32().unwrap().to_vec()
        };
        #[rustfmt::skip]
        assert_eq!(pad(PadMode::Constant, 9.0), [
            9.0, 9.0, 9.0, 9.0, 9.0, 9.0,
            9.0, 9.0, 1.0, 2.0, 3.0, 9.0,
            9.0, 9.0, 4.0, 5.0, 6.0, 9.0,
        ]);
        #[rustfmt::skip]
        assert_eq!(pad(PadMode::Reflect, 0.0), [
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
            3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
        ]);
        #[rustfmt::skip]
        assert_eq!(pad(PadMode::Edge, 0.0), [
            1.0, 1.0, 1.0, 2.0, 3.0, 3.0,
            1.0, 1.0, 1.0, 2.0, 3.0, 3.0,
            4.0, 4.0, 4.0, 5.0, 6.0, 6.0,
        ]);
        let b = Tensor::new([1], TensorData::Bool(vec![false])).unwrap();
        let r = eval(
            Op::Pad {
                pads: vec![1, 0],
                mode: PadMode::Constant,
                value: 1.0,
            },
            &[&b],
        )
        .unwrap();
        assert_eq!(r.as_bool().unwrap(), [true, false]);
    }

    #[test]
    fn expand_broadcasts() {
        let r = eval(
            Op::Expand {
                shape: vec![2, 2, 3],
            },
            &[&seq(&[2, 1])],
        )
        .unwrap();
        assert_eq!(
            ints(&r),
            (vec![2, 2, 3], vec![0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1])
        );
    }

    #[test]
    fn gather_with_negative_indices() {
        let idx = Tensor::i64([2, 2], vec![-1, 0, 1, -3]).unwrap();
        let r = eval(Op::Gather { axis: 1 }, &[&seq(&[2, 3]), &idx]).unwrap();
        assert_eq!(ints(&r), (vec![2, 2, 2], vec![2, 0, 1, 0, 5, 3, 4, 3]));
        let r = eval(
            Op::Gather { axis: 0 },
            &[&seq(&[2, 3]), &Tensor::i64([], vec![-1]).unwrap()],
        )
        .unwrap();
        assert_eq!(ints(&r), (vec![3], vec![3, 4, 5]));
        let bad = Tensor::i64([1], vec![3]).unwrap();
        let err = eval(Op::Gather { axis: 1 }, &[&seq(&[2, 3]), &bad]).unwrap_err();
        assert_eq!(
            err,
            InterpError::IndexOutOfRange {
                index: 3,
                axis: 1,
                extent: 3
            }
        );
    }
}
