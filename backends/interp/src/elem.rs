//! The element types tensors hold data in, so data-movement code is written once for all.

use ir::{Tensor, TensorData};

use crate::InterpError;

/// An element type with data: f32, i64 or bool.
pub(crate) trait Elem: Copy + PartialOrd + 'static {
    fn view(t: &Tensor) -> Option<&[Self]>;
    fn wrap(v: Vec<Self>) -> TensorData;
    /// The constant a pad of value `v` fills with.
    fn from_f32(v: f32) -> Self;
}

impl Elem for f32 {
    fn view(t: &Tensor) -> Option<&[f32]> {
        t.as_f32()
    }
    fn wrap(v: Vec<f32>) -> TensorData {
        TensorData::F32(v)
    }
    fn from_f32(v: f32) -> f32 {
        v
    }
}

impl Elem for i64 {
    fn view(t: &Tensor) -> Option<&[i64]> {
        t.as_i64()
    }
    fn wrap(v: Vec<i64>) -> TensorData {
        TensorData::I64(v)
    }
    fn from_f32(v: f32) -> i64 {
        v as i64
    }
}

impl Elem for bool {
    fn view(t: &Tensor) -> Option<&[bool]> {
        t.as_bool()
    }
    fn wrap(v: Vec<bool>) -> TensorData {
        TensorData::Bool(v)
    }
    fn from_f32(v: f32) -> bool {
        v != 0.0
    }
}

/// The data of `t` as `T`; `op` names the op for the error when `t` holds another type.
pub(crate) fn view<'a, T: Elem>(t: &'a Tensor, op: &str) -> Result<&'a [T], InterpError> {
    T::view(t).ok_or_else(|| InterpError::Unsupported {
        op: op.to_string(),
        dtype: t.dtype(),
    })
}

/// Evaluates `$body` with the type alias `$T` bound to the element type of `$dtype`;
/// f16 (which holds no data) is `Unsupported` for op `$op`.
macro_rules! by_dtype {
    ($dtype:expr, $op:expr, |$T:ident| $body:expr) => {
        match $dtype {
            ir::DType::F32 => {
                type $T = f32;
                $body
            }
            ir::DType::I64 => {
                type $T = i64;
                $body
            }
            ir::DType::Bool => {
                type $T = bool;
                $body
            }
            ir::DType::F16 => Err($crate::InterpError::Unsupported {
                op: $op.to_string(),
                dtype: ir::DType::F16,
            }),
        }
    };
}
pub(crate) use by_dtype;
