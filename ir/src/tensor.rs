//! Dense tensors with their data: weights in the graph, inputs and outputs of backends.

use crate::error::{IrError, Result};
use crate::types::{numel, DType, TensorType};

/// Row-major element storage, one variant per dtype that holds data today.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
            DType::F16 => return Err(IrError::Tensor("f16 tensors hold no data yet".into())),
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
            TensorData::I64(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// The elements as f32, converting i64 and bool.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }
}
