//! A small builder of ONNX models, for the built-in example network and for tests.

use prost::Message;

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Builds a single-graph ONNX model (default domain, one opset).
pub struct OnnxBuilder {
    graph: GraphProto,
    opset: i64,
}

/// An attribute value for [`OnnxBuilder::node`].
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
}

fn f32_value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dims = shape
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl OnnxBuilder {
    pub fn new(name: &str, opset: i64) -> Self {
        OnnxBuilder { graph: GraphProto { name: Some(name.into()), ..Default::default() }, opset }
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.graph.input.push(f32_value_info(name, shape));
        self
    }

    pub fn output(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.graph.output.push(f32_value_info(name, shape));
        self
    }

    /// An f32 initializer, stored in raw_data as exporters do.
    pub fn initializer(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        self.graph.initializer.push(TensorProto {
            name: Some(name.into()),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        });
        self
    }

    /// An i64 initializer in the typed field (shapes, axes).
    pub fn initializer_i64(&mut self, name: &str, shape: &[usize], data: &[i64]) -> &mut Self {
        self.graph.initializer.push(TensorProto {
            name: Some(name.into()),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Int64 as i32),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        self
    }

    pub fn node(&mut self, op_type: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> &mut Self {
        let attribute = attrs
            .into_iter()
            .map(|(k, v)| {
                let mut a = AttributeProto { name: Some(k.into()), ..Default::default() };
                match v {
                    AttrValue::Int(i) => {
                        a.i = Some(i);
                        a.r#type = Some(AttributeType::Int as i32);
                    }
                    AttrValue::Float(f) => {
                        a.f = Some(f);
                        a.r#type = Some(AttributeType::Float as i32);
                    }
                    AttrValue::Ints(v) => {
                        a.ints = v;
                        a.r#type = Some(AttributeType::Ints as i32);
                    }
                    AttrValue::Str(s) => {
                        a.s = Some(s.as_bytes().to_vec());
                        a.r#type = Some(AttributeType::String as i32);
                    }
                }
                a
            })
            .collect();
        self.graph.node.push(NodeProto {
            op_type: Some(op_type.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        ModelProto {
            ir_version: Some(8),
            producer_name: Some("chanasc".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
        .encode_to_vec()
    }
}
