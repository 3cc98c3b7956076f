//! Elementwise ops: unary, binary with broadcasting, clip, cast and where.

use ir::graph::{BinaryOp, UnaryOp};
use ir::{DType, Tensor, TensorData, TensorType};

use crate::elem::{by_dtype, view, Elem};
use crate::erf::erf;
use crate::strided::for_each_broadcast;
use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;

fn unsupported(op: &str, dtype: DType) -> InterpError {
    InterpError::Unsupported {
        op: op.to_string(),
        dtype,
    }
}

pub(crate) fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let err = || unsupported(op.name(), x.dtype());
    let data = match &x.data {
        TensorData::F32(v) => {
            let f = unary_f32(op).ok_or_else(err)?;
            TensorData::F32(v.iter().map(|&a| f(a)).collect())
        }
        TensorData::I64(v) => {
            let f = unary_i64(op).ok_or_else(err)?;
            TensorData::I64(v.iter().map(|&a| f(a)).collect())
        }
        // `eval_op` computes f16 ops in f32.
        TensorData::F16(_) => return Err(err()),
        TensorData::Bool(v) if op == UnaryOp::Not => {
            TensorData::Bool(v.iter().map(|&a| !a).collect())
        }
        TensorData::Bool(_) => return Err(err()),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// Transcendental functions go through f64 so that the oracle rounds only once.
fn unary_f32(op: UnaryOp) -> Option<fn(f32) -> f32> {
    Some(match op {
        UnaryOp::Relu => |x| if x < 0.0 { 0.0 } else { x },
        UnaryOp::Sigmoid => |x| (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
        UnaryOp::Tanh => |x| (x as f64).tanh() as f32,
        UnaryOp::Exp => |x| (x as f64).exp() as f32,
        UnaryOp::Log => |x| (x as f64).ln() as f32,
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f32::abs,
        UnaryOp::Sqrt => f32::sqrt,
        UnaryOp::Reciprocal => |x| 1.0 / x,
        UnaryOp::Floor => f32::floor,
        UnaryOp::Ceil => f32::ceil,
        // Half to even, as numpy and ONNX round.
        UnaryOp::Round => f32::round_ties_even,
        UnaryOp::Sin => |x| (x as f64).sin() as f32,
        UnaryOp::Cos => |x| (x as f64).cos() as f32,
        UnaryOp::Erf => |x| erf(x as f64) as f32,
        // f32::signum gives 1 for +0; numpy's sign gives 0 (and keeps NaN).
        UnaryOp::Sign => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        UnaryOp::Not => return None,
    })
}

/// Wrapping, so that i64::MIN gives what two's complement hardware gives, not a panic.
fn unary_i64(op: UnaryOp) -> Option<fn(i64) -> i64> {
    Some(match op {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Sign => i64::signum,
        _ => return None,
    })
}

/// `f` applied to the pairs of elements of `a` and `b` that broadcast onto each output element.
fn zip_broadcast<A: Copy, B: Copy, R>(
    out: &[usize],
    (a, a_shape): (&[A], &[usize]),
    (b, b_shape): (&[B], &[usize]),
    f: impl Fn(A, B) -> R,
) -> Vec<R> {
    let mut r = Vec::with_capacity(ir::types::numel(out));
    for_each_broadcast(out, [a_shape, b_shape], |[i, j]| r.push(f(a[i], b[j])));
    r
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &TensorType) -> Result<Tensor> {
    let err = || unsupported(op.name(), a.dtype());
    let shape = &out.shape;
    let data = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let (x, y) = ((&x[..], &a.shape[..]), (&y[..], &b.shape[..]));
            if op.is_comparison() {
                TensorData::Bool(zip_broadcast(shape, x, y, compare(op).ok_or_else(err)?))
            } else {
                TensorData::F32(zip_broadcast(shape, x, y, arith_f32(op).ok_or_else(err)?))
            }
        }
        (TensorData::I64(x), TensorData::I64(y)) => {
            if op.is_comparison() {
                let (x, y) = ((&x[..], &a.shape[..]), (&y[..], &b.shape[..]));
                TensorData::Bool(zip_broadcast(shape, x, y, compare(op).ok_or_else(err)?))
            } else {
                // Every element of `b` reaches some output element, unless there are none.
                let zero_divisor = match op {
                    BinaryOp::Div => y.contains(&0),
                    BinaryOp::Pow => x.contains(&0) && y.iter().any(|&e| e < 0),
                    _ => false,
                };
                if zero_divisor && out.numel() > 0 {
                    return Err(InterpError::DivisionByZero);
                }
                let (x, y) = ((&x[..], &a.shape[..]), (&y[..], &b.shape[..]));
                TensorData::I64(zip_broadcast(shape, x, y, arith_i64(op).ok_or_else(err)?))
            }
        }
        (TensorData::Bool(x), TensorData::Bool(y)) => {
            let f: fn(bool, bool) -> bool = match op {
                BinaryOp::And => |p, q| p && q,
                BinaryOp::Or => |p, q| p || q,
                BinaryOp::Xor => |p, q| p != q,
                BinaryOp::Equal => |p, q| p == q,
                _ => return Err(err()),
            };
            TensorData::Bool(zip_broadcast(shape, (x, &a.shape), (y, &b.shape), f))
        }
        _ => return Err(err()),
    };
    Ok(Tensor {
        shape: shape.clone(),
        data,
    })
}

fn compare<T: PartialOrd>(op: BinaryOp) -> Option<fn(T, T) -> bool> {
    Some(match op {
        BinaryOp::Equal => |p, q| p == q,
        BinaryOp::Less => |p, q| p < q,
        BinaryOp::Greater => |p, q| p > q,
        BinaryOp::LessEqual => |p, q| p <= q,
        BinaryOp::GreaterEqual => |p, q| p >= q,
        _ => return None,
    })
}

fn arith_f32(op: BinaryOp) -> Option<fn(f32, f32) -> f32> {
    Some(match op {
        BinaryOp::Add => |p, q| p + q,
        BinaryOp::Sub => |p, q| p - q,
        BinaryOp::Mul => |p, q| p * q,
        BinaryOp::Div => |p, q| p / q,
        BinaryOp::Pow => |p, q| (p as f64).powf(q as f64) as f32,
        BinaryOp::Max => f32::max,
        BinaryOp::Min => f32::min,
        _ => return None,
    })
}

/// Wrapping arithmetic; division truncates toward zero, as in C. Zero divisors were
/// rejected by the caller.
fn arith_i64(op: BinaryOp) -> Option<fn(i64, i64) -> i64> {
    Some(match op {
        BinaryOp::Add => i64::wrapping_add,
        BinaryOp::Sub => i64::wrapping_sub,
        BinaryOp::Mul => i64::wrapping_mul,
        BinaryOp::Div => i64::wrapping_div,
        BinaryOp::Pow => pow_i64,
        BinaryOp::Max => |p, q| p.max(q),
        BinaryOp::Min => |p, q| p.min(q),
        _ => return None,
    })
}

/// base^exp by repeated squaring, which gives the same wrapped result as repeated
/// multiplication. A negative power is the truncated real result (what C's pow then a cast
/// to integer gives): 0 unless |base| is 1; base 0 was rejected by the caller.
fn pow_i64(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 if exp % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        };
    }
    let (mut result, mut b, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    result
}

/// min(max(x, min), max), written with comparisons so that NaN stays NaN.
fn clip_one<T: PartialOrd>(x: T, lo: T, hi: T) -> T {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

pub(crate) fn clip(x: &Tensor, min: f32, max: f32) -> Result<Tensor> {
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(v.iter().map(|&a| clip_one(a, min, max)).collect()),
        // `as` saturates, so infinite bounds become i64::MIN and i64::MAX.
        TensorData::I64(v) => TensorData::I64(
            v.iter()
                .map(|&a| clip_one(a, min as i64, max as i64))
                .collect(),
        ),
        TensorData::Bool(_) => return Err(unsupported("clip", DType::Bool)),
        TensorData::F16(_) => return Err(unsupported("clip", DType::F16)),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

pub(crate) fn cast(x: &Tensor, to: DType) -> Result<Tensor> {
    use TensorData::{Bool, F16, F32, I64};
    let data = match (&x.data, to) {
        (F16(_), _) | (_, DType::F16) => return Err(unsupported("cast", DType::F16)),
        (F32(v), DType::F32) => F32(v.clone()),
        // `as` truncates toward zero (saturating, NaN to 0).
        (F32(v), DType::I64) => I64(v.iter().map(|&a| a as i64).collect()),
        (F32(v), DType::Bool) => Bool(v.iter().map(|&a| a != 0.0).collect()),
        (I64(v), DType::F32) => F32(v.iter().map(|&a| a as f32).collect()),
        (I64(v), DType::I64) => I64(v.clone()),
        (I64(v), DType::Bool) => Bool(v.iter().map(|&a| a != 0).collect()),
        (Bool(v), DType::F32) => F32(v.iter().map(|&a| if a { 1.0 } else { 0.0 }).collect()),
        (Bool(v), DType::I64) => I64(v.iter().map(|&a| a as i64).collect()),
        (Bool(v), DType::Bool) => Bool(v.clone()),
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// where(cond, a, b), broadcasting all three.
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor, out: &TensorType) -> Result<Tensor> {
    let c = view::<bool>(cond, "where")?;
    by_dtype!(out.dtype, "where", |T| {
        let (x, y) = (view::<T>(a, "where")?, view::<T>(b, "where")?);
        let mut r = Vec::with_capacity(out.numel());
        let shapes = [&cond.shape[..], &a.shape[..], &b.shape[..]];
        for_each_broadcast(&out.shape, shapes, |[i, j, k]| {
            r.push(if c[i] { x[j] } else { y[k] })
        });
        Ok(Tensor {
            shape: out.shape.clone(),
            data: T::wrap(r),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_op;
    use ir::Op;

    fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(shape, v.to_vec()).unwrap()
    }

    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::i64(shape, v.to_vec()).unwrap()
    }

    fn boolt(shape: &[usize], v: &[bool]) -> Tensor {
        Tensor::new(shape, TensorData::Bool(v.to_vec())).unwrap()
    }

    /// Evaluates `op` with the result type its shape rule gives.
    fn eval(op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let out = op.infer(&tys.iter().collect::<Vec<_>>())?;
        eval_op(&op, inputs, &out)
    }

    fn un(u: UnaryOp, v: &[f32]) -> Vec<f32> {
        eval(Op::Unary(u), &[&f32t(&[v.len()], v)])
            .unwrap()
            .as_f32()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn unary_f32_values() {
        assert_eq!(un(UnaryOp::Relu, &[-1.0, 0.0, 2.5]), [0.0, 0.0, 2.5]);
        assert_eq!(un(UnaryOp::Neg, &[1.5, -2.0]), [-1.5, 2.0]);
        assert_eq!(un(UnaryOp::Abs, &[-1.5, 2.0]), [1.5, 2.0]);
        assert_eq!(un(UnaryOp::Sqrt, &[4.0, 2.25]), [2.0, 1.5]);
        assert_eq!(un(UnaryOp::Reciprocal, &[4.0, -0.5]), [0.25, -2.0]);
        assert_eq!(un(UnaryOp::Floor, &[-1.5, 1.5]), [-2.0, 1.0]);
        assert_eq!(un(UnaryOp::Ceil, &[-1.5, 1.5]), [-1.0, 2.0]);
        assert_eq!(
            un(UnaryOp::Round, &[0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6]),
            [0.0, 2.0, 2.0, -0.0, -2.0, 2.0, 3.0]
        );
        assert_eq!(un(UnaryOp::Sign, &[-3.0, 0.0, 7.0]), [-1.0, 0.0, 1.0]);
        assert_eq!(
            un(UnaryOp::Sigmoid, &[0.0, -1000.0, 1000.0]),
            [0.5, 0.0, 1.0]
        );
        assert_eq!(un(UnaryOp::Exp, &[0.0, 1.0]), [1.0, std::f32::consts::E]);
        assert_eq!(un(UnaryOp::Log, &[1.0, 0.25]), [0.0, -1.3862944]);
        assert_eq!(un(UnaryOp::Tanh, &[0.0, 0.5]), [0.0, 0.46211717]);
        assert_eq!(un(UnaryOp::Sin, &[0.0, 1.0]), [0.0, 0.84147096]);
        assert_eq!(un(UnaryOp::Cos, &[0.0, 1.0]), [1.0, 0.5403023]);
        assert_eq!(
            un(UnaryOp::Erf, &[0.0, 0.5, -1.0]),
            [0.0, 0.5204999, -0.8427008]
        );
    }

    #[test]
    fn unary_on_other_dtypes() {
        let x = i64t(&[3], &[-4, 0, i64::MIN]);
        let neg = eval(Op::Unary(UnaryOp::Neg), &[&x]).unwrap();
        assert_eq!(neg.as_i64().unwrap(), [4, 0, i64::MIN]);
        let sign = eval(Op::Unary(UnaryOp::Sign), &[&x]).unwrap();
        assert_eq!(sign.as_i64().unwrap(), [-1, 0, -1]);
        let not = eval(Op::Unary(UnaryOp::Not), &[&boolt(&[2], &[true, false])]).unwrap();
        assert_eq!(not.as_bool().unwrap(), [false, true]);
        let err = eval(Op::Unary(UnaryOp::Exp), &[&x]).unwrap_err();
        assert_eq!(
            err,
            InterpError::Unsupported {
                op: "exp".into(),
                dtype: DType::I64
            }
        );
    }

    #[test]
    fn binary_broadcasts() {
        let a = f32t(&[2, 1], &[1.0, 2.0]);
        let b = f32t(&[3], &[10.0, 20.0, 30.0]);
        let r = eval(Op::Binary(BinaryOp::Add), &[&a, &b]).unwrap();
        assert_eq!(r.shape, [2, 3]);
        assert_eq!(r.as_f32().unwrap(), [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        let r = eval(Op::Binary(BinaryOp::Sub), &[&a, &b]).unwrap();
        assert_eq!(
            r.as_f32().unwrap(),
            [-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]
        );
        let r = eval(Op::Binary(BinaryOp::Pow), &[&a, &f32t(&[], &[3.0])]).unwrap();
        assert_eq!(r.as_f32().unwrap(), [1.0, 8.0]);
        let r = eval(Op::Binary(BinaryOp::Less), &[&a, &f32t(&[], &[1.5])]).unwrap();
        assert_eq!(r.as_bool().unwrap(), [true, false]);
        let r = eval(
            Op::Binary(BinaryOp::Max),
            &[&a, &f32t(&[1, 2], &[1.5, 0.0])],
        )
        .unwrap();
        assert_eq!(r.as_f32().unwrap(), [1.5, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn integer_binary() {
        let a = i64t(&[4], &[7, -7, 7, -7]);
        let b = i64t(&[4], &[2, 2, -2, -2]);
        let div = eval(Op::Binary(BinaryOp::Div), &[&a, &b]).unwrap();
        assert_eq!(div.as_i64().unwrap(), [3, -3, -3, 3]);
        let pow = eval(
            Op::Binary(BinaryOp::Pow),
            &[&i64t(&[3], &[3, -2, 5]), &i64t(&[3], &[4, 3, -1])],
        )
        .unwrap();
        assert_eq!(pow.as_i64().unwrap(), [81, -8, 0]);
        let ge = eval(Op::Binary(BinaryOp::GreaterEqual), &[&a, &b]).unwrap();
        assert_eq!(ge.as_bool().unwrap(), [true, false, true, false]);
        let zero = i64t(&[1], &[0]);
        assert_eq!(
            eval(Op::Binary(BinaryOp::Div), &[&a, &zero]).unwrap_err(),
            InterpError::DivisionByZero
        );
    }

    #[test]
    fn logical_binary() {
        let p = boolt(&[4], &[false, false, true, true]);
        let q = boolt(&[4], &[false, true, false, true]);
        let bools = |op| {
            eval(Op::Binary(op), &[&p, &q])
                .unwrap()
                .as_bool()
                .unwrap()
                .to_vec()
        };
        assert_eq!(bools(BinaryOp::And), [false, false, false, true]);
        assert_eq!(bools(BinaryOp::Or), [false, true, true, true]);
        assert_eq!(bools(BinaryOp::Xor), [false, true, true, false]);
    }

    #[test]
    fn clip_and_cast() {
        let x = f32t(&[4], &[-2.0, 0.5, 3.0, -0.7]);
        let r = eval(Op::Clip { min: 0.0, max: 1.0 }, &[&x]).unwrap();
        assert_eq!(r.as_f32().unwrap(), [0.0, 0.5, 1.0, 0.0]);
        let r = eval(
            Op::Clip {
                min: -1.0,
                max: f32::INFINITY,
            },
            &[&i64t(&[2], &[-5, 5])],
        )
        .unwrap();
        assert_eq!(r.as_i64().unwrap(), [-1, 5]);
        let r = eval(Op::Cast { to: DType::I64 }, &[&x]).unwrap();
        assert_eq!(r.as_i64().unwrap(), [-2, 0, 3, 0]);
        let r = eval(Op::Cast { to: DType::Bool }, &[&x]).unwrap();
        assert_eq!(r.as_bool().unwrap(), [true, true, true, true]);
        let r = eval(Op::Cast { to: DType::F32 }, &[&boolt(&[2], &[true, false])]).unwrap();
        assert_eq!(r.as_f32().unwrap(), [1.0, 0.0]);
        let r = eval(Op::Cast { to: DType::Bool }, &[&i64t(&[2], &[0, -3])]).unwrap();
        assert_eq!(r.as_bool().unwrap(), [false, true]);
        // To f16 rounds to the nearest half; back to f32 is exact.
        let h = eval(Op::Cast { to: DType::F16 }, &[&f32t(&[2], &[0.1, -3.0])]).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        let r = eval(Op::Cast { to: DType::F32 }, &[&h]).unwrap();
        assert_eq!(r.as_f32().unwrap(), [0.0999755859375, -3.0]);
    }

    #[test]
    fn where_broadcasts_all_three() {
        let c = boolt(&[2, 1], &[true, false]);
        let a = i64t(&[3], &[1, 2, 3]);
        let b = i64t(&[], &[-1]);
        let r = eval(Op::Where, &[&c, &a, &b]).unwrap();
        assert_eq!(r.shape, [2, 3]);
        assert_eq!(r.as_i64().unwrap(), [1, 2, 3, -1, -1, -1]);
    }
}
