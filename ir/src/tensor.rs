//! Dense tensors with their data: weights in the graph, inputs and outputs of backends.

use crate::error::{IrError, Result};
use crate::types::{numel, DType, TensorType};

pub use half::f16;

/// Row-major element storage, one variant per dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    /// IEEE half precision (storage; arithmetic on it is done in f32 and rounded).
    F16(Vec<f16>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements with floats in `to` (see [`Tensor::with_float_dtype`]).
    pub fn with_float_dtype(self, to: DType) -> TensorData {
        match (self, to) {
            (TensorData::F32(v), DType::F16) => TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            (TensorData::F16(v), DType::F32) => TensorData::F32(v.iter().map(|&x| f32::from(x)).collect()),
            (d, _) => d,
        }
    }

    /// The elements as little-endian bytes, as compiled models hold them (bool as one byte).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(d) => {
                let mut out = Vec::with_capacity(d.len() * 4);
                for x in d {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                out
            }
            TensorData::F16(d) => d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(d) => d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bool(d) => d.iter().map(|&b| b as u8).collect(),
        }
    }

    /// Elements of `dtype` from little-endian bytes (the inverse of [`Self::to_le_bytes`]);
    /// a trailing partial element is ignored.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F16 => TensorData::F16(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()),
            DType::I64 => TensorData::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        }
    }
}

/// A tensor: a shape and its row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the data fills the shape exactly.
    pub fn new(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Tensor> {
        let shape = shape.into();
        if numel(&shape) != data.len() {
            return Err(IrError::Tensor(format!(
                "shape {:?} holds {} elements but {} were given",
                shape,
                numel(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn f32(shape: impl Into<Vec<usize>>, v: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(v))
    }

    pub fn i64(shape: impl Into<Vec<usize>>, v: Vec<i64>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::I64(v))
    }

    pub fn scalar_f32(x: f32) -> Tensor {
        Tensor { shape: vec![], data: TensorData::F32(vec![x]) }
    }

    pub fn zeros(ty: &TensorType) -> Result<Tensor> {
        let n = ty.numel();
        let data = match ty.dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
        };
        Ok(Tensor { shape: ty.shape.clone(), data })
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The tensor with floating-point elements in `to` (f32 or f16; f32 to f16 rounds to
    /// nearest even): how f16 values cross into and out of f32 code. Other elements, and other
    /// targets, are left as they are.
    pub fn with_float_dtype(&self, to: DType) -> Tensor {
        Tensor { shape: self.shape.clone(), data: self.data.clone().with_float_dtype(to) }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as i64, converting f32 and bool (for shape and axis arguments).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F16(v) => v.iter().map(|&x| f32::from(x) as i64).collect(),
            TensorData::I64(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// The elements as f32, converting i64 and bool.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }
}
