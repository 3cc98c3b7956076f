//! The graph IR: values in an arena, defined by graph inputs, constants (weights) or nodes.
//!
//! Ids are dense `u32` indices. A graph built through [`Graph::add_input`], [`Graph::add_const`]
//! and [`Graph::add_node`] is in topological order by construction, and its value ids are in
//! definition order, so printing and parsing it reproduce the same ids.

pub mod fused;
pub mod op;
pub mod verify;

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{IrError, Result};
use crate::tensor::Tensor;
use crate::types::TensorType;
pub use fused::{Fused, FusedRef, FusedStep};
pub use op::{Attr, BinaryOp, Op, PadMode, PoolKind, ReduceKind, UnaryOp, Window};

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(ValueId, "%");
id_type!(NodeId, "node");
id_type!(WeightId, "@");

/// What defines a value.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueDef {
    /// The graph input at this position of `Graph::inputs`.
    Input(usize),
    /// A constant whose data is in the weight store.
    Const(WeightId),
    /// The result of a node.
    Node(NodeId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub ty: TensorType,
    /// The name it had in the source model, kept for messages and for binding inputs.
    pub name: Option<String>,
    pub def: ValueDef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    /// The source model's node name, for error messages and profiles.
    pub name: Option<String>,
}

/// A weight: data, or `None` when the text it was parsed from left it external.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub data: Option<Tensor>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub values: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
    pub weights: Vec<Weight>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Default::default() }
    }

    pub fn value(&self, id: ValueId) -> &ValueInfo {
        &self.values[id.index()]
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        &self.values[id.index()].ty
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    fn push_value(&mut self, ty: TensorType, name: Option<String>, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueInfo { ty, name, def });
        id
    }

    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = self.push_value(ty, Some(name.into()), ValueDef::Input(self.inputs.len()));
        self.inputs.push(id);
        id
    }

    /// Adds a constant with data.
    pub fn add_const(&mut self, name: Option<String>, tensor: Tensor) -> ValueId {
        let ty = tensor.ty();
        self.add_weight(name, ty, Some(tensor))
    }

    /// Adds a constant of type `ty`; `data` is None for an external (unbound) weight.
    pub fn add_weight(&mut self, name: Option<String>, ty: TensorType, data: Option<Tensor>) -> ValueId {
        let w = WeightId(self.weights.len() as u32);
        self.weights.push(Weight { data });
        self.push_value(ty, name, ValueDef::Const(w))
    }

    /// Adds a node, inferring its result type from the op's shape rule.
    pub fn add_node(&mut self, op: Op, inputs: Vec<ValueId>, name: Option<String>) -> Result<ValueId> {
        if let Some(bad) = inputs.iter().find(|v| v.index() >= self.values.len()) {
            return Err(IrError::Invalid(format!("{} uses undefined value {bad}", op.name())));
        }
        let types: Vec<&TensorType> = inputs.iter().map(|&v| self.ty(v)).collect();
        let ty = op.infer(&types)?;
        Ok(self.add_node_typed(op, inputs, name, ty))
    }

    /// Adds a node whose result type the caller states (the parser; the verifier checks it).
    pub fn add_node_typed(&mut self, op: Op, inputs: Vec<ValueId>, name: Option<String>, ty: TensorType) -> ValueId {
        let node = NodeId(self.nodes.len() as u32);
        let output = self.push_value(ty, None, ValueDef::Node(node));
        self.nodes.push(Node { op, inputs, output, name });
        output
    }

    /// The constant data of `v`, when it is a constant with data.
    pub fn const_data(&self, v: ValueId) -> Option<&Tensor> {
        match self.value(v).def {
            ValueDef::Const(w) => self.weights[w.index()].data.as_ref(),
            _ => None,
        }
    }

    /// The node defining `v`, when a node does.
    pub fn producer(&self, v: ValueId) -> Option<&Node> {
        match self.value(v).def {
            ValueDef::Node(n) => Some(self.node(n)),
            _ => None,
        }
    }

    /// The graph input called `name`.
    pub fn input_named(&self, name: &str) -> Option<ValueId> {
        self.inputs.iter().copied().find(|&v| self.value(v).name.as_deref() == Some(name))
    }

    /// Number of learned parameters: elements of f32 constants.
    pub fn parameter_count(&self) -> u64 {
        self.values
            .iter()
            .filter(|v| matches!(v.def, ValueDef::Const(_)) && v.ty.dtype == crate::DType::F32)
            .map(|v| v.ty.numel() as u64)
            .sum()
    }

    /// Total multiply-accumulates of one evaluation.
    pub fn macs(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                let ins: Vec<&TensorType> = n.inputs.iter().map(|&v| self.ty(v)).collect();
                n.op.macs(&ins, self.ty(n.output))
            })
            .sum()
    }

    /// How many nodes of each op mnemonic the graph has.
    pub fn op_histogram(&self) -> BTreeMap<&'static str, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            *h.entry(n.op.name()).or_insert(0) += 1;
        }
        h
    }

    /// A copy in which the inputs named in `bound` are constants with the given data (a
    /// network whose weights were graph inputs while it trained becomes a deployable one),
    /// pruned of what the outputs no longer need. Each bound tensor must have its input's type.
    pub fn bind_inputs(&self, bound: &BTreeMap<String, Tensor>) -> Result<Graph> {
        let mut g = self.clone();
        let mut kept = Vec::new();
        for &v in &self.inputs {
            let name = self.value(v).name.clone().unwrap_or_default();
            let Some(t) = bound.get(&name) else {
                kept.push(v);
                continue;
            };
            if t.ty() != *self.ty(v) {
                return Err(IrError::Invalid(format!("binding input {name}: a {} tensor for a {} input", t.ty(), self.ty(v))));
            }
            let w = WeightId(g.weights.len() as u32);
            g.weights.push(Weight { data: Some(t.clone()) });
            g.values[v.index()].def = ValueDef::Const(w);
        }
        if let Some(missing) = bound.keys().find(|n| self.input_named(n).is_none()) {
            return Err(IrError::Invalid(format!("binding input {missing}: the graph has no input of that name")));
        }
        for (pos, &v) in kept.iter().enumerate() {
            g.values[v.index()].def = ValueDef::Input(pos);
        }
        g.inputs = kept;
        // pruned() keeps every input; constants nothing uses are dropped.
        Ok(g.pruned())
    }

    /// A copy holding only what the outputs depend on, renumbered densely in definition
    /// order. Graph inputs are all kept, even unused ones: they are the graph's interface.
    pub fn pruned(&self) -> Graph {
        let mut live = vec![false; self.values.len()];
        let mut stack: Vec<ValueId> = self.outputs.clone();
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut live[v.index()], true) {
                continue;
            }
            if let Some(n) = self.producer(v) {
                stack.extend(&n.inputs);
            }
        }
        for &i in &self.inputs {
            live[i.index()] = true;
        }
        let mut out = Graph::new(self.name.clone());
        let mut map: Vec<Option<ValueId>> = vec![None; self.values.len()];
        // Values are in definition order, so operands are always mapped before their users.
        for (i, info) in self.values.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let new = match &info.def {
                ValueDef::Input(_) => out.add_input(info.name.clone().unwrap_or_default(), info.ty.clone()),
                ValueDef::Const(w) => out.add_weight(info.name.clone(), info.ty.clone(), self.weights[w.index()].data.clone()),
                ValueDef::Node(n) => {
                    let node = self.node(*n);
                    let inputs = node.inputs.iter().map(|v| map[v.index()].expect("operand defined before use")).collect();
                    let id = out.add_node_typed(node.op.clone(), inputs, node.name.clone(), info.ty.clone());
                    out.values[id.index()].name = info.name.clone();
                    id
                }
            };
            map[i] = Some(new);
        }
        // Inputs keep their order even if a later input was defined first.
        out.inputs = self.inputs.iter().map(|v| map[v.index()].expect("inputs are live")).collect();
        for (pos, &v) in out.inputs.clone().iter().enumerate() {
            out.values[v.index()].def = ValueDef::Input(pos);
        }
        out.outputs = self.outputs.iter().map(|v| map[v.index()].expect("outputs are live")).collect();
        out
    }
}
