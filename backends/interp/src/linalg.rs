//! Matrix multiplication with numpy's batch broadcasting.

use ir::{Tensor, TensorData, TensorType};

use crate::strided::for_each_broadcast;
use crate::InterpError;

/// An element type with the accumulator its dot products are summed in: f64 for f32, so
/// that the oracle rounds once per result, and wrapping i64 for i64.
trait Dot: Copy {
    type Acc: Copy + Default;
    fn mul_acc(acc: Self::Acc, a: Self, b: Self) -> Self::Acc;
    fn finish(acc: Self::Acc) -> Self;
}

impl Dot for f32 {
    type Acc = f64;
    fn mul_acc(acc: f64, a: f32, b: f32) -> f64 {
        acc + a as f64 * b as f64
    }
    fn finish(acc: f64) -> f32 {
        acc as f32
    }
}

impl Dot for i64 {
    type Acc = i64;
    fn mul_acc(acc: i64, a: i64, b: i64) -> i64 {
        acc.wrapping_add(a.wrapping_mul(b))
    }
    fn finish(acc: i64) -> i64 {
        acc
    }
}

pub(crate) fn matmul(a: &Tensor, b: &Tensor, out: &TensorType) -> Result<Tensor, InterpError> {
    let data = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            TensorData::F32(matmul_of(x, &a.shape, y, &b.shape, &out.shape))
        }
        (TensorData::I64(x), TensorData::I64(y)) => {
            TensorData::I64(matmul_of(x, &a.shape, y, &b.shape, &out.shape))
        }
        _ => {
            return Err(InterpError::Unsupported {
                op: "matmul".into(),
                dtype: a.dtype(),
            })
        }
    };
    Ok(Tensor {
        shape: out.shape.clone(),
        data,
    })
}

/// One i-k-j product per pair of broadcast batch matrices: the inner loop runs along a row
/// of `y` and a row of the result, both contiguous.
fn matmul_of<T: Dot>(
    x: &[T],
    x_shape: &[usize],
    y: &[T],
    y_shape: &[usize],
    out_shape: &[usize],
) -> Vec<T> {
    let (xr, yr, r) = (x_shape.len(), y_shape.len(), out_shape.len());
    let (m, k, n) = (x_shape[xr - 2], x_shape[xr - 1], y_shape[yr - 1]);
    let mut out = Vec::with_capacity(ir::types::numel(out_shape));
    let mut acc = vec![T::Acc::default(); n];
    for_each_broadcast(
        &out_shape[..r - 2],
        [&x_shape[..xr - 2], &y_shape[..yr - 2]],
        |[ia, ib]| {
            let a = &x[ia * m * k..][..m * k];
            let b = &y[ib * k * n..][..k * n];
            for i in 0..m {
                acc.fill(T::Acc::default());
                for (kk, &av) in a[i * k..][..k].iter().enumerate() {
                    for (c, &bv) in acc.iter_mut().zip(&b[kk * n..][..n]) {
                        *c = T::mul_acc(*c, av, bv);
                    }
                }
                out.extend(acc.iter().map(|&c| T::finish(c)));
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use crate::eval_op;
    use ir::{Op, Tensor};

    fn matmul(a: &Tensor, b: &Tensor) -> Tensor {
        let out = Op::MatMul.infer(&[&a.ty(), &b.ty()]).unwrap();
        eval_op(&Op::MatMul, &[a, b], &out).unwrap()
    }

    #[test]
    fn plain_product() {
        let a = Tensor::f32([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = Tensor::f32([3, 2], vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0]).unwrap();
        let c = matmul(&a, &b);
        assert_eq!(c.shape, [2, 2]);
        assert_eq!(c.as_f32().unwrap(), [58.0, 64.0, 139.0, 154.0]);
    }

    #[test]
    fn batch_dims_broadcast() {
        // a: 2 batches of 1x2; b: 3 batches of 2x1 under a leading 1: result 2x3 batches of 1x1,
        // entry (i, j) = a_i . b_j.
        let a = Tensor::f32([2, 1, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::f32([1, 3, 2, 1], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        let c = matmul(&a, &b);
        assert_eq!(c.shape, [2, 3, 1, 1]);
        assert_eq!(c.as_f32().unwrap(), [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
        // A rank-2 operand broadcasts against every batch of the other.
        let id = Tensor::f32([2, 2], vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        let swapped = matmul(&a, &id);
        assert_eq!(swapped.shape, [2, 1, 1, 2]);
        assert_eq!(swapped.as_f32().unwrap(), [2.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn integer_product_and_empty_inner_dim() {
        let a = Tensor::i64([1, 2], vec![3, -4]).unwrap();
        let b = Tensor::i64([2, 1], vec![5, 6]).unwrap();
        assert_eq!(matmul(&a, &b).as_i64().unwrap(), [-9]);
        let a = Tensor::f32([2, 0], vec![]).unwrap();
        let b = Tensor::f32([0, 2], vec![]).unwrap();
        assert_eq!(matmul(&a, &b).as_f32().unwrap(), [0.0; 4]);
    }
}
