//! The import driver: decodes a model, binds inputs and initializers, converts each node in
//! order, and folds constants as it goes.

use std::collections::HashMap;

use ir::{DType, Graph, Op, Tensor, TensorData, TensorType, ValueId};
use prost::Message;

use crate::error::{FrontendError, Result};
use crate::ops;
use crate::proto::{tensor_proto::DataType, AttributeProto, ModelProto, NodeProto, TensorProto};

/// The oldest default-domain opset the importer understands.
/// (11 to 21 is the range torchvision exports; older and newer ones are accepted because the
/// importer handles each version change of the ops it supports, and the ONNX node tests of
/// those versions pass.)
pub const MIN_OPSET: i64 = 7;
/// The newest default-domain opset whose semantics for the supported ops the importer knows.
pub const MAX_OPSET: i64 = 28;

/// How to import a model.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Graph inputs to bind to fixed values: they become constants, so that shape arguments
    /// given as inputs (axes, pads, target shapes) can be folded.
    pub constant_inputs: HashMap<String, Tensor>,
}

/// Reads and imports an ONNX file.
pub fn load_onnx(path: &std::path::Path) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.display().to_string(), source })?;
    import_model(&bytes)
}

/// Imports an ONNX model from its serialized bytes.
pub fn import_model(bytes: &[u8]) -> Result<Graph> {
    import_model_with(bytes, &ImportOptions::default())
}

/// Imports an ONNX model with options.
pub fn import_model_with(bytes: &[u8], options: &ImportOptions) -> Result<Graph> {
    let model = ModelProto::decode(bytes).map_err(|e| FrontendError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
        .ok_or_else(|| FrontendError::Decode("the model imports no default-domain opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(FrontendError::Model(format!("opset {opset} is outside the supported range {MIN_OPSET}..={MAX_OPSET}")));
    }
    let graph = model.graph.as_ref().ok_or_else(|| FrontendError::Decode("the model has no graph".into()))?;
    let mut ctx = Importer { g: Graph::new(graph.name()), values: HashMap::new(), opset };

    // Old exporters list initializers among the inputs too; they are constants.
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    for input in &graph.input {
        if initializers.contains(input.name()) {
            continue;
        }
        let ty = value_type(input).map_err(|e| FrontendError::Model(format!("input \"{}\": {e}", input.name())))?;
        let id = match options.constant_inputs.get(input.name()) {
            Some(t) if t.ty() == ty => ctx.g.add_const(Some(input.name().to_string()), t.clone()),
            Some(t) => {
                return Err(FrontendError::Model(format!("input \"{}\" is {ty}, the value bound to it is {}", input.name(), t.ty())))
            }
            None => ctx.g.add_input(input.name(), ty),
        };
        ctx.values.insert(input.name().to_string(), id);
    }
    for init in &graph.initializer {
        let t = tensor_from_proto(init).map_err(|e| FrontendError::Model(format!("initializer \"{}\": {e}", init.name())))?;
        let id = ctx.g.add_const(Some(init.name().to_string()), t);
        ctx.values.insert(init.name().to_string(), id);
    }
    for node in &graph.node {
        ctx.convert_node(node)?;
    }
    for out in &graph.output {
        let id = *ctx
            .values
            .get(out.name())
            .ok_or_else(|| FrontendError::Model(format!("output \"{}\" is not computed by any node", out.name())))?;
        let info = &mut ctx.g.values[id.index()];
        if info.name.is_none() {
            info.name = Some(out.name().to_string());
        }
        ctx.g.outputs.push(id);
    }
    let g = ctx.g.pruned();
    ir::graph::verify::verify(&g).map_err(|e| FrontendError::Model(e.to_string()))?;
    Ok(g)
}

/// The static type of a graph input; symbolic dimensions are refused.
fn value_type(v: &crate::proto::ValueInfoProto) -> std::result::Result<TensorType, String> {
    use crate::proto::type_proto::Value;
    use crate::proto::tensor_shape_proto::dimension::Value as Dim;
    let Some(Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("only tensor inputs are supported".into());
    };
    let dtype = dtype_of(t.elem_type())?;
    let mut shape = Vec::new();
    for d in t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default() {
        match &d.value {
            Some(Dim::DimValue(n)) if *n >= 0 => shape.push(*n as usize),
            Some(Dim::DimParam(p)) => return Err(format!("dimension \"{p}\" is symbolic; chanasc needs static shapes")),
            _ => return Err("a dimension is unknown; chanasc needs static shapes".into()),
        }
    }
    Ok(TensorType::new(dtype, shape))
}

/// The IR dtype for an ONNX element type. Integer types all become i64 (they only index
/// and count here); double becomes f32.
pub(crate) fn dtype_of(elem_type: i32) -> std::result::Result<DType, String> {
    match DataType::try_from(elem_type) {
        Ok(DataType::Float | DataType::Double) => Ok(DType::F32),
        Ok(
            DataType::Int64
            | DataType::Int32
            | DataType::Int16
            | DataType::Int8
            | DataType::Uint8
            | DataType::Uint16
            | DataType::Uint32
            | DataType::Uint64,
        ) => Ok(DType::I64),
        Ok(DataType::Bool) => Ok(DType::Bool),
        Ok(other) => Err(format!("element type {} is not supported", other.as_str_name())),
        Err(_) => Err(format!("unknown element type {elem_type}")),
    }
}

/// Decodes a TensorProto, from raw_data or from its typed fields.
pub fn tensor_from_proto(t: &TensorProto) -> std::result::Result<Tensor, String> {
    if t.data_location() == crate::proto::tensor_proto::DataLocation::External {
        return Err("external tensor data is not supported; save the model with its weights inside".into());
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let raw = t.raw_data.as_deref();
    let dtype = DataType::try_from(t.data_type()).map_err(|_| format!("unknown element type {}", t.data_type()))?;
    fn chunks<const W: usize, T>(raw: &[u8], n: usize, f: impl Fn([u8; W]) -> T) -> std::result::Result<Vec<T>, String> {
        if raw.len() != n * W {
            return Err(format!("raw_data holds {} bytes, {} expected", raw.len(), n * W));
        }
        Ok(raw.chunks_exact(W).map(|c| f(c.try_into().expect("exact chunk"))).collect())
    }
    let data = match (dtype, raw) {
        (DataType::Float, Some(r)) => TensorData::F32(chunks::<4, _>(r, n, f32::from_le_bytes)?),
        (DataType::Float, None) => TensorData::F32(t.float_data.clone()),
        (DataType::Double, Some(r)) => TensorData::F32(chunks::<8, _>(r, n, |b| f64::from_le_bytes(b) as f32)?),
        (DataType::Double, None) => TensorData::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        (DataType::Int64, Some(r)) => TensorData::I64(chunks::<8, _>(r, n, i64::from_le_bytes)?),
        (DataType::Int64, None) => TensorData::I64(t.int64_data.clone()),
        (DataType::Int32, Some(r)) => TensorData::I64(chunks::<4, _>(r, n, |b| i32::from_le_bytes(b) as i64)?),
        (DataType::Int16, Some(r)) => TensorData::I64(chunks::<2, _>(r, n, |b| i16::from_le_bytes(b) as i64)?),
        (DataType::Uint16, Some(r)) => TensorData::I64(chunks::<2, _>(r, n, |b| u16::from_le_bytes(b) as i64)?),
        (DataType::Int8, Some(r)) => TensorData::I64(chunks::<1, _>(r, n, |b| b[0] as i8 as i64)?),
        (DataType::Uint8, Some(r)) => TensorData::I64(chunks::<1, _>(r, n, |b| b[0] as i64)?),
        (DataType::Uint32, Some(r)) => TensorData::I64(chunks::<4, _>(r, n, |b| u32::from_le_bytes(b) as i64)?),
        (DataType::Uint64, Some(r)) => TensorData::I64(chunks::<8, _>(r, n, |b| u64::from_le_bytes(b) as i64)?),
        (DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint8 | DataType::Uint16, None) => {
            TensorData::I64(t.int32_data.iter().map(|&x| x as i64).collect())
        }
        (DataType::Uint32 | DataType::Uint64, None) => TensorData::I64(t.uint64_data.iter().map(|&x| x as i64).collect()),
        (DataType::Bool, Some(r)) => TensorData::Bool(chunks::<1, _>(r, n, |b| b[0] != 0)?),
        (DataType::Bool, None) => TensorData::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
        (other, _) => return Err(format!("element type {} is not supported", other.as_str_name())),
    };
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// Import state: the graph being built and the IR value of every ONNX tensor name.
pub(crate) struct Importer {
    pub g: Graph,
    pub values: HashMap<String, ValueId>,
    pub opset: i64,
}

impl Importer {
    fn convert_node(&mut self, node: &NodeProto) -> Result<()> {
        let node_name = if node.name().is_empty() {
            format!("{}_{}", node.op_type(), node.output.first().map(String::as_str).unwrap_or("?"))
        } else {
            node.name().to_string()
        };
        if !matches!(node.domain(), "" | "ai.onnx") {
            return Err(FrontendError::Unsupported {
                op_type: format!("{}.{}", node.domain(), node.op_type()),
                node: node_name,
                opset: self.opset,
            });
        }
        let mut cx = NodeCx { imp: self, node, name: node_name.clone() };
        let outputs = ops::convert(&mut cx).map_err(|e| match e {
            ConvertError::Unsupported => FrontendError::Unsupported {
                op_type: node.op_type().to_string(),
                node: node_name.clone(),
                opset: self.opset,
            },
            ConvertError::Message(message) => {
                FrontendError::Node { node: node_name.clone(), op_type: node.op_type().to_string(), message }
            }
        })?;
        for (name, id) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                self.values.insert(name.clone(), id);
            }
        }
        Ok(())
    }
}

/// Why a node could not be converted; the driver adds the node's name and op type.
pub(crate) enum ConvertError {
    Unsupported,
    Message(String),
}

impl From<ir::IrError> for ConvertError {
    fn from(e: ir::IrError) -> Self {
        ConvertError::Message(e.to_string())
    }
}

impl From<String> for ConvertError {
    fn from(e: String) -> Self {
        ConvertError::Message(e)
    }
}

pub(crate) type CResult<T> = std::result::Result<T, ConvertError>;

pub(crate) fn fail<T>(msg: impl Into<String>) -> CResult<T> {
    Err(ConvertError::Message(msg.into()))
}

/// The node being converted, with helpers to read its operands and attributes and to emit
/// IR ops (folded when all their operands are constant).
pub(crate) struct NodeCx<'a> {
    pub imp: &'a mut Importer,
    pub node: &'a NodeProto,
    pub name: String,
}

impl NodeCx<'_> {
    pub fn op_type(&self) -> &str {
        self.node.op_type()
    }

    pub fn opset(&self) -> i64 {
        self.imp.opset
    }

    pub fn num_inputs(&self) -> usize {
        self.node.input.len()
    }

    /// Operand `i`, or None when it is absent or given as "".
    pub fn input(&self, i: usize) -> CResult<Option<ValueId>> {
        match self.node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => match self.imp.values.get(name) {
                Some(&v) => Ok(Some(v)),
                None => fail(format!("input \"{name}\" is not defined before this node")),
            },
        }
    }

    /// Operand `i`, which must be present.
    pub fn req(&self, i: usize) -> CResult<ValueId> {
        self.input(i)?.ok_or_else(|| ConvertError::Message(format!("input {i} is required")))
    }

    /// The data of operand `i`, which must be a constant because shapes are static.
    pub fn const_input(&self, i: usize) -> CResult<Option<Tensor>> {
        match self.input(i)? {
            None => Ok(None),
            Some(v) => match self.imp.g.const_data(v) {
                Some(t) => Ok(Some(t.clone())),
                None => fail(format!("input {i} must be a constant (chanasc compiles static shapes)")),
            },
        }
    }

    pub fn const_ints(&self, i: usize) -> CResult<Option<Vec<i64>>> {
        Ok(self.const_input(i)?.map(|t| t.to_i64_vec()))
    }

    pub fn ty(&self, v: ValueId) -> TensorType {
        self.imp.g.ty(v).clone()
    }

    pub fn shape(&self, v: ValueId) -> Vec<usize> {
        self.imp.g.ty(v).shape.clone()
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map(|a| a.i()).unwrap_or(default)
    }

    pub fn attr_float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map(|a| a.f()).unwrap_or(default)
    }

    pub fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub fn attr_floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    pub fn attr_string(&self, name: &str, default: &str) -> String {
        self.attr(name).map(|a| String::from_utf8_lossy(a.s()).into_owned()).unwrap_or_else(|| default.to_string())
    }

    pub fn attr_tensor(&self, name: &str) -> CResult<Option<Tensor>> {
        match self.attr(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => tensor_from_proto(t).map(Some).map_err(ConvertError::Message),
        }
    }

    /// Adds an op, or its folded result when every operand is a constant with data.
    pub fn emit(&mut self, op: Op, inputs: Vec<ValueId>) -> CResult<ValueId> {
        let g = &mut self.imp.g;
        let types: Vec<&TensorType> = inputs.iter().map(|&v| g.ty(v)).collect();
        let ty = op.infer(&types)?;
        let consts: Option<Vec<&Tensor>> = inputs.iter().map(|&v| g.const_data(v)).collect();
        if let Some(consts) = consts {
            let t = interp::eval_op(&op, &consts, &ty).map_err(|e| ConvertError::Message(format!("folding {}: {e}", op.name())))?;
            return Ok(g.add_const(None, t));
        }
        Ok(g.add_node_typed(op, inputs, Some(self.name.clone()), ty))
    }

    /// A new constant.
    pub fn constant(&mut self, t: Tensor) -> ValueId {
        self.imp.g.add_const(None, t)
    }

    /// A scalar constant of `like`'s dtype.
    pub fn scalar_like(&mut self, like: ValueId, x: f64) -> CResult<ValueId> {
        let t = match self.imp.g.ty(like).dtype {
            DType::F32 => Tensor::scalar_f32(x as f32),
            DType::I64 => Tensor::i64(vec![], vec![x as i64])?,
            other => return fail(format!("no scalar of dtype {other}")),
        };
        Ok(self.constant(t))
    }
}

/// What `chanasc info` reports of the ONNX file itself, before import.
#[derive(Debug, Clone)]
pub struct OnnxSummary {
    pub producer: String,
    pub opset: i64,
    pub node_count: usize,
    pub op_histogram: std::collections::BTreeMap<String, usize>,
}

pub fn summarize_onnx(bytes: &[u8]) -> Result<OnnxSummary> {
    let model = ModelProto::decode(bytes).map_err(|e| FrontendError::Decode(e.to_string()))?;
    let opset = model.opset_import.iter().find(|o| matches!(o.domain(), "" | "ai.onnx")).map(|o| o.version()).unwrap_or(0);
    let nodes = model.graph.as_ref().map(|g| g.node.as_slice()).unwrap_or_default();
    let mut op_histogram = std::collections::BTreeMap::new();
    for n in nodes {
        *op_histogram.entry(n.op_type().to_string()).or_insert(0) += 1;
    }
    let producer = format!("{} {}", model.producer_name(), model.producer_version()).trim().to_string();
    Ok(OnnxSummary { producer, opset, node_count: nodes.len(), op_histogram })
}
