//! An elastic Once-for-All supernet trained with chanasc's own kernels.
//!
//! The search space is a MobileNetV3 space ([`Space`]; the default task's variant for 28x28
//! inputs is [`fmnist_mbv3`], documented in docs/space-28x28.md). ONE graph of the largest
//! network serves every subnet: its elasticity comes from 0/1 mask inputs,
//!
//! - kernel: each block's 7x7 depthwise weights are multiplied by a centre-crop mask, so a
//!   k x k subnet kernel is the centre of the 7x7 one (a 7x7 convolution with padding 3 of a
//!   centre-masked kernel equals the k x k convolution with padding k/2);
//! - width: a channel mask on the expanded (middle) channels after the expansion's and the
//!   depthwise convolution's activations keeps the first channels of the largest width (and
//!   one on the squeeze-excite's hidden units keeps its first units);
//! - depth: a gate on each skippable residual block (the blocks past a stage's smallest depth)
//!   makes it the identity, `x + gate * f(x)`.
//!
//! Masked-out weights get exactly zero gradient, and a masked subnet computes what the
//! directly built subnet ([`Space::graph`] with `Some(subnet)`, weights cut by
//! [`Space::slice_params`]) computes. Training follows the sandwich rule (largest, smallest
//! and random subnets each step, gradients averaged); a subnet is evaluated after
//! recalibrating its batch norms' statistics on training images ([`Evaluator`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ir::graph::BinaryOp;
use ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use nas::space::{make_divisible, ArchConfig, DEPTHS, EXPANDS, KERNELS, MAX_DEPTH};
use serde_json::json;

use crate::autodiff::training_graph;
use crate::checkpoint;
use crate::data::{epoch_order, Dataset};
use crate::engine::{Backend, Engine};
use crate::error::{Result, TrainError};
use crate::layers;
use crate::model::{Init, ParamSpec, BN_EPS};
use crate::optim::cosine_lr;
use crate::rng::Rng;
use crate::trainer::{Config, EpochStats};

pub mod deploy;
pub mod importance;
pub mod latency;
pub use deploy::Piece;

pub const MAX_KERNEL: usize = 7;
pub const MAX_EXPAND: usize = 6;

/// What is fixed about a stage: its output width, the stride of its first block, its
/// activation (h_swish or relu) and whether its blocks have squeeze-excite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageDef {
    pub width: usize,
    pub stride: usize,
    pub hs: bool,
    pub se: bool,
}

/// A MobileNetV3 space: a 3x3 stem (h_swish), a fixed first block (depthwise 3x3 + relu,
/// pointwise, residual), elastic stages of MBConv blocks (up to 4 each; kernel 3/5/7, expand
/// 3/4/6, depth 2/3/4), a final 1x1 expansion (h_swish), global pooling and a classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub name: String,
    /// Input channels, height, width.
    pub input: [usize; 3],
    pub classes: usize,
    pub stem: usize,
    pub stem_stride: usize,
    pub first_block: usize,
    pub stages: Vec<StageDef>,
    pub final_expand: usize,
}

/// The default task's space: Fashion-MNIST's 28x28 grey images (docs/space-28x28.md).
pub fn fmnist_mbv3(classes: usize) -> Space {
    let st = |width, stride, hs, se| StageDef { width, stride, hs, se };
    Space {
        name: "fmnist-mbv3".into(),
        input: [1, 28, 28],
        classes,
        stem: 16,
        stem_stride: 1,
        first_block: 16,
        stages: vec![st(16, 2, false, false), st(24, 2, false, true), st(32, 1, true, true), st(48, 2, true, true)],
        final_expand: 192,
    }
}

/// A space by its name (`fmnist-mbv3`).
pub fn space_by_name(name: &str, classes: usize) -> Result<Space> {
    match name {
        "fmnist-mbv3" => Ok(fmnist_mbv3(classes)),
        other => Err(TrainError::Invalid(format!("unknown space {other:?}; available: fmnist-mbv3"))),
    }
}

/// The middle width of an MBConv block with input width `cin` and expand ratio `e` (OFA's).
pub fn mid_width(cin: usize, e: usize) -> usize {
    make_divisible((cin * e) as f64, 8) as usize
}

/// The hidden width of a squeeze-excite over `c` channels (OFA's).
pub fn se_hidden(c: usize) -> usize {
    make_divisible((c / 4) as f64, 8) as usize
}

/// One elastic block's fixed shape.
#[derive(Debug, Clone, Copy)]
pub struct BlockDef {
    pub stage: usize,
    /// Position in its stage (0..4).
    pub pos: usize,
    pub cin: usize,
    pub cout: usize,
    pub stride: usize,
    pub hs: bool,
    pub se: bool,
}

impl BlockDef {
    pub fn prefix(&self) -> String {
        format!("s{}.b{}", self.stage, self.pos)
    }
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
    /// Skippable by depth (past the smallest depth), hence gated in the supernet.
    pub fn gated(&self) -> bool {
        self.pos >= DEPTHS[0] as usize
    }
}

/// A subnet: kernel and expand ratio per block (stage * 4 + position), depth per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub ks: Vec<usize>,
    pub e: Vec<usize>,
    pub d: Vec<usize>,
}

impl Subnet {
    pub fn largest(space: &Space) -> Subnet {
        let n = space.stages.len();
        Subnet { ks: vec![MAX_KERNEL; n * MAX_DEPTH], e: vec![MAX_EXPAND; n * MAX_DEPTH], d: vec![MAX_DEPTH; n] }
    }
    pub fn smallest(space: &Space) -> Subnet {
        let n = space.stages.len();
        Subnet { ks: vec![KERNELS[0] as usize; n * MAX_DEPTH], e: vec![EXPANDS[0] as usize; n * MAX_DEPTH], d: vec![DEPTHS[0] as usize; n] }
    }
    /// Every kernel, expand ratio and depth drawn uniformly and independently (as OFA samples).
    pub fn random(space: &Space, rng: &mut Rng) -> Subnet {
        let n = space.stages.len();
        let pick = |rng: &mut Rng, v: &[u32]| v[rng.below(v.len())] as usize;
        let ks = (0..n * MAX_DEPTH).map(|_| pick(rng, &KERNELS)).collect();
        let e = (0..n * MAX_DEPTH).map(|_| pick(rng, &EXPANDS)).collect();
        let d = (0..n).map(|_| pick(rng, &DEPTHS)).collect();
        Subnet { ks, e, d }
    }
    /// The subnet of an OFA arch dict: its first `stages` stages (the rest, and `r`, are not
    /// part of a space with fewer stages or fixed inputs).
    pub fn from_arch(space: &Space, a: &ArchConfig) -> Result<Subnet> {
        let n = space.stages.len();
        let bad = |m: String| TrainError::Invalid(format!("arch {}: {m}", a.to_compact()));
        if a.ks.len() < n * MAX_DEPTH || a.e.len() < n * MAX_DEPTH || a.d.len() < n {
            return Err(bad(format!("the {} space has {n} stages of {MAX_DEPTH} blocks", space.name)));
        }
        let sub = Subnet {
            ks: a.ks[..n * MAX_DEPTH].iter().map(|&v| v as usize).collect(),
            e: a.e[..n * MAX_DEPTH].iter().map(|&v| v as usize).collect(),
            d: a.d[..n].iter().map(|&v| v as usize).collect(),
        };
        sub.check(space).map_err(|e| bad(e.to_string()))?;
        Ok(sub)
    }
    pub fn check(&self, space: &Space) -> Result<()> {
        let n = space.stages.len();
        let ok = |v: &[usize], len: usize, allowed: &[u32]| v.len() == len && v.iter().all(|x| allowed.contains(&(*x as u32)));
        if !ok(&self.ks, n * MAX_DEPTH, &KERNELS) || !ok(&self.e, n * MAX_DEPTH, &EXPANDS) || !ok(&self.d, n, &DEPTHS) {
            return Err(TrainError::Invalid(format!("subnet {self:?} is not in the space {}", space.name)));
        }
        Ok(())
    }
    pub fn active(&self, b: &BlockDef) -> bool {
        b.pos < self.d[b.stage]
    }
    pub fn compact(&self) -> String {
        let j = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<String>();
        format!("ks{}-e{}-d{}", j(&self.ks), j(&self.e), j(&self.d))
    }
}

/// What a graph computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Inputs: x, labels, parameters[, masks]. Outputs: loss, logits, then the gradients.
    Train,
    /// Batch statistics. Inputs: x, parameters[, masks]. Outputs: logits, then each batch
    /// norm's batch mean and (biased) variance.
    Stats,
    /// Inference. Inputs: x, parameters, each batch norm's running mean and variance[, masks].
    /// Output: logits.
    Eval,
}

/// A mask input of the supernet graph.
#[derive(Debug, Clone)]
pub struct MaskSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The inputs a graph takes besides the images (and labels).
pub struct Layout {
    pub params: Vec<ParamSpec>,
    /// Batch norms: names (buffers `{name}.running_mean` / `.running_var`) and channels.
    pub bn: Vec<(String, usize)>,
    /// Empty for a directly built subnet.
    pub masks: Vec<MaskSpec>,
}

pub(crate) struct Builder<'a> {
    g: Graph,
    params: BTreeMap<String, ValueId>,
    masks: BTreeMap<String, ValueId>,
    kind: Kind,
    running: &'a [(ValueId, ValueId)],
    /// Each batch norm's position in the layout (its running statistics in `running`): a
    /// piece of the network uses only some of them.
    bn_index: BTreeMap<String, usize>,
    stats: Vec<(ValueId, ValueId)>,
}

impl Builder<'_> {
    fn p(&self, name: &str) -> ValueId {
        self.params[name]
    }
    fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        Ok(self.g.add_node(Op::Binary(BinaryOp::Mul), vec![a, b], None)?)
    }
    fn act(&mut self, x: ValueId, hs: bool) -> Result<ValueId> {
        if hs {
            layers::hard_swish(&mut self.g, x)
        } else {
            layers::relu(&mut self.g, x)
        }
    }
    /// Convolution (weights `w`, already masked) + batch norm `{name}.bn`.
    fn conv_bn(&mut self, x: ValueId, w: ValueId, name: &str, stride: usize, depthwise: bool) -> Result<ValueId> {
        let ws = self.g.ty(w).shape.clone();
        let k = ws[2];
        let groups = if depthwise { ws[0] } else { 1 };
        let conv = Op::Conv2d { strides: [stride, stride], pads: [k / 2; 4], dilations: [1, 1], groups };
        let y = self.g.add_node(conv, vec![x, w], None)?;
        let (gamma, beta) = (self.p(&format!("{name}.bn.weight")), self.p(&format!("{name}.bn.bias")));
        match self.kind {
            Kind::Train | Kind::Stats => {
                let bn = layers::batch_norm_train(&mut self.g, y, gamma, beta, BN_EPS)?;
                self.stats.push((bn.mean, bn.var));
                Ok(bn.y)
            }
            Kind::Eval => {
                let (m, v) = self.running[self.bn_index[&format!("{name}.bn")]];
                self.stats.push((m, v));
                layers::batch_norm_eval(&mut self.g, y, gamma, beta, m, v, BN_EPS)
            }
        }
    }
}

fn conv_spec(name: String, shape: Vec<usize>, depthwise: bool) -> ParamSpec {
    let fan_out = if depthwise { shape[2] * shape[3] } else { shape[0] * shape[2] * shape[3] };
    ParamSpec { name, shape, init: Init::KaimingOut { fan_out }, decay: true }
}

impl Space {
    pub fn blocks(&self) -> Vec<BlockDef> {
        let mut out = Vec::new();
        let mut cin = self.first_block;
        for (s, st) in self.stages.iter().enumerate() {
            for pos in 0..MAX_DEPTH {
                let stride = if pos == 0 { st.stride } else { 1 };
                out.push(BlockDef { stage: s, pos, cin, cout: st.width, stride, hs: st.hs, se: st.se });
                cin = st.width;
            }
        }
        out
    }

    /// The parameters, batch norms and masks of the supernet (`None`: largest shapes, masked)
    /// or of a directly built subnet.
    pub fn layout(&self, sub: Option<&Subnet>) -> Layout {
        let mut params = Vec::new();
        let mut bn = Vec::new();
        let mut masks = Vec::new();
        let mut conv_bn = |params: &mut Vec<ParamSpec>, name: &str, shape: Vec<usize>, depthwise: bool| {
            let c = shape[0];
            params.push(conv_spec(format!("{name}.weight"), shape, depthwise));
            params.push(ParamSpec { name: format!("{name}.bn.weight"), shape: vec![c], init: Init::Const(1.0), decay: false });
            params.push(ParamSpec { name: format!("{name}.bn.bias"), shape: vec![c], init: Init::Const(0.0), decay: false });
            bn.push((format!("{name}.bn"), c));
        };
        let [cin, _, _] = self.input;
        conv_bn(&mut params, "stem", vec![self.stem, cin, 3, 3], false);
        conv_bn(&mut params, "first.dw", vec![self.stem, 1, 3, 3], true);
        conv_bn(&mut params, "first.pw", vec![self.first_block, self.stem, 1, 1], false);
        for (i, b) in self.blocks().iter().enumerate() {
            if sub.is_some_and(|s| !s.active(b)) {
                continue;
            }
            let (k, e) = sub.map_or((MAX_KERNEL, MAX_EXPAND), |s| (s.ks[i], s.e[i]));
            let mid = mid_width(b.cin, e);
            let p = b.prefix();
            conv_bn(&mut params, &format!("{p}.expand"), vec![mid, b.cin, 1, 1], false);
            conv_bn(&mut params, &format!("{p}.dw"), vec![mid, 1, k, k], true);
            let hidden = se_hidden(mid);
            if b.se {
                params.push(conv_spec(format!("{p}.se.reduce.weight"), vec![hidden, mid, 1, 1], false));
                params.push(ParamSpec { name: format!("{p}.se.reduce.bias"), shape: vec![hidden], init: Init::Const(0.0), decay: false });
                params.push(conv_spec(format!("{p}.se.expand.weight"), vec![mid, hidden, 1, 1], false));
                params.push(ParamSpec { name: format!("{p}.se.expand.bias"), shape: vec![mid], init: Init::Const(0.0), decay: false });
            }
            conv_bn(&mut params, &format!("{p}.project"), vec![b.cout, mid, 1, 1], false);
            if sub.is_none() {
                masks.push(MaskSpec { name: format!("{p}.kmask"), shape: vec![1, 1, MAX_KERNEL, MAX_KERNEL] });
                masks.push(MaskSpec { name: format!("{p}.cmask"), shape: vec![1, mid, 1, 1] });
                if b.se {
                    masks.push(MaskSpec { name: format!("{p}.hmask"), shape: vec![1, hidden, 1, 1] });
                }
                if b.gated() {
                    masks.push(MaskSpec { name: format!("{p}.gate"), shape: vec![1, 1, 1, 1] });
                }
            }
        }
        let last = self.stages.last().map_or(self.first_block, |s| s.width);
        conv_bn(&mut params, "final", vec![self.final_expand, last, 1, 1], false);
        let k = self.final_expand;
        params.push(ParamSpec {
            name: "classifier.weight".into(),
            shape: vec![k, self.classes],
            init: Init::Uniform { fan_in: k },
            decay: true,
        });
        params.push(ParamSpec {
            name: "classifier.bias".into(),
            shape: vec![self.classes],
            init: Init::Uniform { fan_in: k },
            decay: false,
        });
        Layout { params, bn, masks }
    }

    /// The mask inputs that select `sub` in the supernet graph, in [`Layout::masks`] order.
    pub fn masks(&self, sub: &Subnet) -> Result<Vec<Tensor>> {
        sub.check(self)?;
        let mut out = Vec::new();
        for (i, b) in self.blocks().iter().enumerate() {
            let k = sub.ks[i];
            let off = (MAX_KERNEL - k) / 2;
            let km = (0..MAX_KERNEL * MAX_KERNEL)
                .map(|j| {
                    let (r, c) = (j / MAX_KERNEL, j % MAX_KERNEL);
                    if (off..off + k).contains(&r) && (off..off + k).contains(&c) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            out.push(Tensor::f32(vec![1, 1, MAX_KERNEL, MAX_KERNEL], km)?);
            let (max_mid, mid) = (mid_width(b.cin, MAX_EXPAND), mid_width(b.cin, sub.e[i]));
            let prefix_mask = |n: usize, on: usize| Tensor::f32(vec![1, n, 1, 1], (0..n).map(|c| if c < on { 1.0 } else { 0.0 }).collect());
            out.push(prefix_mask(max_mid, mid)?);
            if b.se {
                out.push(prefix_mask(se_hidden(max_mid), se_hidden(mid))?);
            }
            if b.gated() {
                out.push(Tensor::f32(vec![1, 1, 1, 1], vec![if sub.active(b) { 1.0 } else { 0.0 }])?);
            }
        }
        Ok(out)
    }

    /// The weights of a directly built `sub` cut from the supernet's (by name): the first
    /// channels of every dimension, and the centre of depthwise kernels.
    pub fn slice_params(&self, sub: &Subnet, full: &BTreeMap<String, Tensor>) -> Result<Vec<Tensor>> {
        self.layout(Some(sub))
            .params
            .iter()
            .map(|spec| {
                let t = full.get(&spec.name).ok_or_else(|| TrainError::Invalid(format!("no tensor {}", spec.name)))?;
                crop(t, &spec.shape)
            })
            .collect()
    }

    /// The graph of the supernet (`sub` None: masks select the subnet) or of a directly built
    /// subnet, at batch `batch`.
    pub fn graph(&self, sub: Option<&Subnet>, kind: Kind, batch: usize, smoothing: f32) -> Result<Graph> {
        let [c, h, w] = self.input;
        self.build(sub, kind, [batch, c, h, w], smoothing, &|space: &Space, b: &mut Builder, x| space.forward(b, x, sub))
    }

    /// A graph whose inputs are `x` (shape `x_shape`), the labels (training), the parameters
    /// of `sub`'s layout (the supernet's when None), the running statistics (inference) and
    /// the masks (supernet), and whose logits (or whatever `body` returns) `body` computes.
    pub(crate) fn build(
        &self,
        sub: Option<&Subnet>,
        kind: Kind,
        x_shape: [usize; 4],
        smoothing: f32,
        body: &dyn Fn(&Space, &mut Builder, ValueId) -> Result<ValueId>,
    ) -> Result<Graph> {
        if let Some(s) = sub {
            s.check(self)?;
        }
        let layout = self.layout(sub);
        let batch = x_shape[0];
        let mut g = Graph::new(format!("{}_{kind:?}", self.name).to_lowercase());
        let x = g.add_input("x", TensorType::new(DType::F32, x_shape.to_vec()));
        let labels = (kind == Kind::Train).then(|| g.add_input("labels", TensorType::new(DType::I64, vec![batch])));
        let pv: Vec<ValueId> =
            layout.params.iter().map(|p| g.add_input(p.name.clone(), TensorType::new(DType::F32, p.shape.clone()))).collect();
        let running: Vec<(ValueId, ValueId)> = if kind == Kind::Eval {
            layout
                .bn
                .iter()
                .map(|(name, ch)| {
                    let m = g.add_input(format!("{name}.running_mean"), TensorType::new(DType::F32, vec![*ch]));
                    let v = g.add_input(format!("{name}.running_var"), TensorType::new(DType::F32, vec![*ch]));
                    (m, v)
                })
                .collect()
        } else {
            Vec::new()
        };
        let masks = layout
            .masks
            .iter()
            .map(|m| (m.name.clone(), g.add_input(m.name.clone(), TensorType::new(DType::F32, m.shape.clone()))))
            .collect();
        let params = layout.params.iter().map(|p| p.name.clone()).zip(pv.iter().copied()).collect();
        let bn_index = layout.bn.iter().enumerate().map(|(i, (name, _))| (name.clone(), i)).collect();
        let mut b = Builder { g, params, masks, kind, running: &running, bn_index, stats: Vec::new() };
        let logits = body(self, &mut b, x)?;
        let mut g = b.g;
        match kind {
            Kind::Train => {
                let ce = layers::softmax_cross_entropy(&mut g, logits, labels.expect("train graphs take labels"), smoothing)?;
                g.outputs = vec![ce.loss, logits];
                Ok(training_graph(&g, ce.loss, &pv, &ce.stop)?.graph)
            }
            Kind::Stats => {
                g.outputs = vec![logits];
                for &(m, v) in &b.stats {
                    g.outputs.push(m);
                    g.outputs.push(v);
                }
                Ok(g.pruned())
            }
            Kind::Eval => {
                g.outputs = vec![logits];
                Ok(g.pruned())
            }
        }
    }

    fn forward(&self, b: &mut Builder, x: ValueId, sub: Option<&Subnet>) -> Result<ValueId> {
        let mut h = self.forward_stem(b, x)?;
        for blk in self.blocks() {
            if sub.is_some_and(|s| !s.active(&blk)) {
                continue;
            }
            h = self.forward_block(b, h, &blk, sub.is_none())?;
        }
        self.forward_head(b, h)
    }

    /// The stem and the fixed first block.
    pub(crate) fn forward_stem(&self, b: &mut Builder, x: ValueId) -> Result<ValueId> {
        let w = b.p("stem.weight");
        let h = b.conv_bn(x, w, "stem", self.stem_stride, false)?;
        let h = b.act(h, true)?;
        let w = b.p("first.dw.weight");
        let y = b.conv_bn(h, w, "first.dw", 1, true)?;
        let y = b.act(y, false)?;
        let w = b.p("first.pw.weight");
        let y = b.conv_bn(y, w, "first.pw", 1, false)?;
        if self.stem == self.first_block {
            Ok(b.g.add_node(Op::Binary(BinaryOp::Add), vec![h, y], None)?)
        } else {
            Ok(y)
        }
    }

    /// One elastic MBConv block (`masked`: the supernet's, with its masks applied).
    pub(crate) fn forward_block(&self, b: &mut Builder, h: ValueId, blk: &BlockDef, masked: bool) -> Result<ValueId> {
        let p = blk.prefix();
        let m = |b: &Builder, n: &str| b.masks.get(&format!("{p}.{n}")).copied();
        let w = b.p(&format!("{p}.expand.weight"));
        let y = b.conv_bn(h, w, &format!("{p}.expand"), 1, false)?;
        let mut y = b.act(y, blk.hs)?;
        if masked {
            y = b.mul(y, m(b, "cmask").expect("mask"))?;
        }
        let mut w = b.p(&format!("{p}.dw.weight"));
        if masked {
            w = b.mul(w, m(b, "kmask").expect("mask"))?;
        }
        let y = b.conv_bn(y, w, &format!("{p}.dw"), blk.stride, true)?;
        let mut y = b.act(y, blk.hs)?;
        if masked {
            y = b.mul(y, m(b, "cmask").expect("mask"))?;
        }
        if blk.se {
            let s = b.g.ty(y).shape.clone();
            let pooled = layers::global_avg_pool(&mut b.g, y)?;
            let pooled = b.g.add_node(Op::Reshape { shape: vec![s[0], s[1], 1, 1] }, vec![pooled], None)?;
            let conv = Op::Conv2d { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
            let (wr, br) = (b.p(&format!("{p}.se.reduce.weight")), b.p(&format!("{p}.se.reduce.bias")));
            let r = b.g.add_node(conv.clone(), vec![pooled, wr, br], None)?;
            let mut r = layers::relu(&mut b.g, r)?;
            if masked {
                r = b.mul(r, m(b, "hmask").expect("mask"))?;
            }
            let (we, be) = (b.p(&format!("{p}.se.expand.weight")), b.p(&format!("{p}.se.expand.bias")));
            let e = b.g.add_node(conv, vec![r, we, be], None)?;
            let gate = layers::hard_sigmoid(&mut b.g, e)?;
            y = b.mul(y, gate)?;
        }
        let w = b.p(&format!("{p}.project.weight"));
        let mut y = b.conv_bn(y, w, &format!("{p}.project"), 1, false)?;
        if !blk.residual() {
            return Ok(y);
        }
        if let Some(gate) = m(b, "gate") {
            y = b.mul(y, gate)?;
        }
        Ok(b.g.add_node(Op::Binary(BinaryOp::Add), vec![h, y], None)?)
    }

    /// The final expansion, global pooling and the classifier: the logits.
    pub(crate) fn forward_head(&self, b: &mut Builder, h: ValueId) -> Result<ValueId> {
        let w = b.p("final.weight");
        let y = b.conv_bn(h, w, "final", 1, false)?;
        let y = b.act(y, true)?;
        let pooled = layers::global_avg_pool(&mut b.g, y)?;
        let (w, bias) = (b.p("classifier.weight"), b.p("classifier.bias"));
        layers::linear(&mut b.g, pooled, w, Some(bias))
    }

    /// Multiply-accumulates of a subnet's convolutions and classifier per image.
    pub fn macs(&self, sub: &Subnet) -> u64 {
        let [cin, h0, _] = self.input;
        let out = deploy::spatial;
        let mut s = out(h0, self.stem_stride);
        let mut macs = (s * s * self.stem * cin * 9 + s * s * self.stem * 9 + s * s * self.stem * self.first_block) as u64;
        for (i, b) in self.blocks().iter().enumerate() {
            if !sub.active(b) {
                continue;
            }
            let mid = mid_width(b.cin, sub.e[i]);
            let k = sub.ks[i];
            let so = out(s, b.stride);
            macs += (s * s * b.cin * mid + so * so * mid * k * k + so * so * mid * b.cout) as u64;
            if b.se {
                macs += (2 * mid * se_hidden(mid)) as u64;
            }
            s = so;
        }
        let last = self.stages.last().map_or(self.first_block, |s| s.width);
        macs + (s * s * last * self.final_expand + self.final_expand * self.classes) as u64
    }
}

/// `t` cut to `shape`: the first entries of each dimension, the centre of dimensions 2 and 3
/// (kernels).
pub fn crop(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let src = t.as_f32().ok_or_else(|| TrainError::Invalid("crop: not f32".into()))?;
    if t.shape.len() != shape.len() || t.shape.iter().zip(shape).any(|(a, b)| b > a) {
        return Err(TrainError::Invalid(format!("cannot cut {:?} to {shape:?}", t.shape)));
    }
    let r = shape.len();
    let off: Vec<usize> = (0..r).map(|d| if d >= 2 { (t.shape[d] - shape[d]) / 2 } else { 0 }).collect();
    let mut strides = vec![1; r];
    for d in (0..r.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * t.shape[d + 1];
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0; r];
    for _ in 0..n {
        out.push(src[(0..r).map(|d| (idx[d] + off[d]) * strides[d]).sum::<usize>()]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor::f32(shape.to_vec(), out)?)
}

/// Evaluates subnets of a trained supernet: recalibrates a subnet's batch-norm statistics on
/// training images (the mean of the per-batch means and variances, as OFA's
/// `set_running_statistics`), then measures its accuracy with the supernet's eval graph.
pub struct Evaluator {
    pub space: Space,
    stats: Engine,
    eval: Engine,
    batch: usize,
    nbn: usize,
    norm: (Vec<f32>, Vec<f32>),
}

impl Evaluator {
    pub fn new(space: &Space, batch: usize, backend: Backend, norm: (Vec<f32>, Vec<f32>)) -> Result<Evaluator> {
        let stats = Engine::build(&space.graph(None, Kind::Stats, batch, 0.0)?, backend)?;
        let eval = Engine::build(&space.graph(None, Kind::Eval, batch, 0.0)?, backend)?;
        Ok(Evaluator { space: space.clone(), stats, eval, batch, nbn: space.layout(None).bn.len(), norm })
    }

    /// Batches of `data` in order, a last partial one padded with its first image; yields
    /// (images, labels, real rows).
    fn batches(&self, data: &Dataset) -> Result<Vec<(Tensor, Vec<i64>, usize)>> {
        let mut out = Vec::new();
        let mut rng = Rng::new(0);
        let mut i = 0;
        while i < data.len() {
            let rows = self.batch.min(data.len() - i);
            let idx: Vec<usize> = (0..self.batch).map(|k| if k < rows { i + k } else { i }).collect();
            let (x, y) = data.batch(&idx, &self.norm, None, &mut rng)?;
            out.push((x, y.as_i64().expect("i64 labels").to_vec(), rows));
            i += rows;
        }
        Ok(out)
    }

    /// The running statistics of `sub` recomputed on `calib` (whole batches only).
    pub fn recalibrate(&self, params: &[Tensor], sub: &Subnet, calib: &Dataset) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let masks = self.space.masks(sub)?;
        let mut acc: Option<Vec<(Vec<f32>, Vec<f32>)>> = None;
        let mut n = 0;
        for (x, _, rows) in self.batches(calib)? {
            if rows < self.batch && n > 0 {
                break;
            }
            let mut inputs = vec![x];
            inputs.extend(params.iter().cloned());
            inputs.extend(masks.iter().cloned());
            let out = self.stats.run(&inputs)?;
            let a = acc.get_or_insert_with(|| {
                (0..self.nbn).map(|k| (vec![0.0; out[1 + 2 * k].numel()], vec![0.0; out[1 + 2 * k].numel()])).collect()
            });
            for (k, (m, v)) in a.iter_mut().enumerate() {
                m.iter_mut().zip(out[1 + 2 * k].as_f32().expect("f32")).for_each(|(a, b)| *a += b);
                v.iter_mut().zip(out[2 + 2 * k].as_f32().expect("f32")).for_each(|(a, b)| *a += b);
            }
            n += 1;
        }
        let mut a = acc.ok_or_else(|| TrainError::Invalid("recalibration needs at least one image".into()))?;
        for (m, v) in a.iter_mut() {
            m.iter_mut().chain(v.iter_mut()).for_each(|x| *x /= n as f32);
        }
        Ok(a)
    }

    /// Accuracy of `sub` on each of `sets` after recalibrating on `calib`.
    pub fn accuracy(&self, params: &[Tensor], sub: &Subnet, calib: &Dataset, sets: &[&Dataset]) -> Result<Vec<f64>> {
        let running = self.recalibrate(params, sub, calib)?;
        let masks = self.space.masks(sub)?;
        let mut fixed: Vec<Tensor> = params.to_vec();
        for (m, v) in &running {
            fixed.push(Tensor::f32(vec![m.len()], m.clone())?);
            fixed.push(Tensor::f32(vec![v.len()], v.clone())?);
        }
        fixed.extend(masks);
        let mut accs = Vec::new();
        for data in sets {
            let mut correct = 0;
            for (x, y, rows) in self.batches(data)? {
                let mut inputs = vec![x];
                inputs.extend(fixed.iter().cloned());
                let out = self.eval.run(&inputs)?;
                correct += argmax_hits(&out[0], &y, rows);
            }
            accs.push(correct as f64 / data.len().max(1) as f64);
        }
        Ok(accs)
    }
}

pub fn argmax_hits(logits: &Tensor, labels: &[i64], rows: usize) -> usize {
    let z = logits.as_f32().expect("f32 logits");
    let k = logits.shape[1];
    (0..rows)
        .filter(|&r| {
            let row = &z[r * k..(r + 1) * k];
            (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i64 == labels[r]
        })
        .count()
}

/// Settings of a supernet run beyond [`Config`]'s (whose `bn_momentum` is unused: subnets are
/// recalibrated before evaluation).
#[derive(Debug, Clone)]
pub struct SupernetConfig {
    pub base: Config,
    /// Random subnets per step besides the largest and the smallest.
    pub random_subnets: usize,
    /// Epochs at the start that train the largest subnet alone (OFA's progressive shrinking
    /// trains the full network first); the sandwich rule applies after them.
    pub largest_epochs: usize,
    /// Training images the batch norms are recalibrated on before an evaluation.
    pub calib_images: usize,
    /// Recorded in the checkpoint for the oracle: where the dataset came from.
    pub dataset: String,
    pub data_dir: Option<PathBuf>,
}

/// One epoch of a supernet run: the largest subnet's training loss and accuracy (on the
/// augmented batches), and the largest's and smallest's test accuracies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SupernetEpoch {
    pub stats: EpochStats,
    pub smallest_test_acc: f64,
}

pub enum SupernetProgress<'a> {
    Compiled { seconds: f64, graph_nodes: usize },
    Step { epoch: usize, step: usize, steps: usize, loss: f32, lr: f32 },
    Epoch(&'a SupernetEpoch),
}

pub struct SupernetState {
    pub params: Vec<Tensor>,
    pub momenta: Vec<Vec<f32>>,
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub history: Vec<SupernetEpoch>,
    /// The current epoch so far: the largest's loss sum, correct, images, seconds.
    pub partial: (f64, usize, usize, f64),
}

pub struct SupernetOutcome {
    pub state: SupernetState,
    pub finished: bool,
}

fn fingerprint(space: &Space, cfg: &SupernetConfig) -> String {
    let b = &cfg.base;
    json!({
        "space": format!("{space:?}"), "epochs": b.epochs, "batch": b.batch, "lr": b.sgd.lr, "momentum": b.sgd.momentum,
        "weight_decay": b.sgd.weight_decay, "nesterov": b.sgd.nesterov, "warmup_steps": b.warmup_steps,
        "label_smoothing": b.label_smoothing, "augment": b.augment.map(|a| (a.crop_padding, a.flip)), "seed": b.seed,
        "random_subnets": cfg.random_subnets, "largest_epochs": cfg.largest_epochs,
    })
    .to_string()
}

fn save(
    path: &Path,
    space: &Space,
    cfg: &SupernetConfig,
    specs: &[ParamSpec],
    st: &SupernetState,
    norm: &(Vec<f32>, Vec<f32>),
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (spec, (p, m)) in specs.iter().zip(st.params.iter().zip(&st.momenta)) {
        tensors.insert(spec.name.clone(), p.clone());
        tensors.insert(format!("optimizer.momentum.{}", spec.name), Tensor::f32(spec.shape.clone(), m.clone())?);
    }
    let mut meta = BTreeMap::new();
    meta.insert("config".into(), fingerprint(space, cfg));
    meta.insert("space".into(), space.name.clone());
    meta.insert("classes".into(), space.classes.to_string());
    meta.insert("dataset".into(), cfg.dataset.clone());
    if let Some(d) = &cfg.data_dir {
        meta.insert("data_dir".into(), d.display().to_string());
    }
    meta.insert("calib_images".into(), cfg.calib_images.to_string());
    meta.insert("epoch".into(), st.epoch.to_string());
    meta.insert("step_in_epoch".into(), st.step_in_epoch.to_string());
    meta.insert("global_step".into(), st.global_step.to_string());
    meta.insert("history".into(), serde_json::to_string(&st.history).expect("serializes"));
    meta.insert("partial".into(), serde_json::to_string(&st.partial).expect("serializes"));
    meta.insert("normalization".into(), serde_json::to_string(norm).expect("serializes"));
    checkpoint::write(path, &tensors, &meta)
}

/// A supernet checkpoint's parameters (in [`Space::layout`]`(None)` order) and metadata.
pub fn load_params(path: &Path, space: &Space) -> Result<(Vec<Tensor>, BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let (tensors, meta) = checkpoint::read(path)?;
    let bad = |m: String| TrainError::File { path: path.display().to_string(), message: m };
    let mut params = Vec::new();
    for spec in space.layout(None).params {
        let t = tensors.get(&spec.name).ok_or_else(|| bad(format!("tensor {} is missing", spec.name)))?;
        if t.shape != spec.shape {
            return Err(bad(format!("tensor {} has shape {:?}, the space's is {:?}", spec.name, t.shape, spec.shape)));
        }
        params.push(t.clone());
    }
    Ok((params, tensors, meta))
}

fn load(path: &Path, space: &Space, fp: &str) -> Result<SupernetState> {
    let (params, tensors, meta) = load_params(path, space)?;
    let bad = |m: String| TrainError::File { path: path.display().to_string(), message: m };
    if meta.get("config").map(String::as_str) != Some(fp) {
        return Err(bad("the checkpoint was made by a run with another space or settings; remove it or pick another path".into()));
    }
    let momenta = space
        .layout(None)
        .params
        .iter()
        .map(|s| {
            let t =
                tensors.get(&format!("optimizer.momentum.{}", s.name)).ok_or_else(|| bad(format!("momentum of {} is missing", s.name)))?;
            Ok(t.as_f32().expect("f32").to_vec())
        })
        .collect::<Result<Vec<_>>>()?;
    let num =
        |k: &str| -> Result<usize> { meta.get(k).and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("metadata {k} is missing"))) };
    let json_of = |k: &str| meta.get(k).cloned().unwrap_or_default();
    Ok(SupernetState {
        params,
        momenta,
        epoch: num("epoch")?,
        step_in_epoch: num("step_in_epoch")?,
        global_step: num("global_step")?,
        history: serde_json::from_str(&json_of("history")).map_err(|e| bad(format!("metadata history: {e}")))?,
        partial: serde_json::from_str(&json_of("partial")).map_err(|e| bad(format!("metadata partial: {e}")))?,
    })
}

/// The fixed calibration subset: `n` training images drawn by a fixed seed.
pub fn calibration_set(train: &Dataset, n: usize) -> Dataset {
    let mut order = epoch_order(train.len(), 0x5eed, 0);
    order.truncate(n.min(train.len()).max(1));
    train.subset(&order)
}

/// Trains the supernet of `space` with the sandwich rule; evaluates the largest and the
/// smallest subnet (recalibrated) on `test` after each epoch; checkpoints and resumes as
/// [`crate::trainer::train`] does.
pub fn train_supernet(
    space: &Space,
    cfg: &SupernetConfig,
    train: &Dataset,
    test: &Dataset,
    progress: &mut dyn FnMut(SupernetProgress),
) -> Result<SupernetOutcome> {
    let b = &cfg.base;
    if [train.channels, train.height, train.width] != space.input {
        return Err(TrainError::Invalid(format!(
            "the space takes {:?} images, the dataset has {}x{}x{}",
            space.input, train.channels, train.height, train.width
        )));
    }
    if train.classes > space.classes || b.batch == 0 || b.batch > train.len() || b.eval_batch == 0 {
        return Err(TrainError::Invalid(format!("batch {} / {} classes do not fit the data", b.batch, space.classes)));
    }
    let layout = space.layout(None);
    let start = Instant::now();
    let tg = space.graph(None, Kind::Train, b.batch, b.label_smoothing)?;
    let engine = Engine::build(&tg, b.backend)?;
    let norm = train.channel_stats();
    let evaluator = Evaluator::new(space, b.eval_batch, b.backend, norm.clone())?;
    progress(SupernetProgress::Compiled { seconds: start.elapsed().as_secs_f64(), graph_nodes: tg.nodes.len() });
    let calib = calibration_set(train, cfg.calib_images);
    let fp = fingerprint(space, cfg);
    let mut st = match &b.checkpoint {
        Some(p) if p.exists() => load(p, space, &fp)?,
        _ => {
            let mut rng = Rng::derived(b.seed, 0, 0);
            let params: Vec<Tensor> = layout.params.iter().map(|p| p.initial(&mut rng)).collect();
            SupernetState {
                momenta: params.iter().map(|p| vec![0.0; p.numel()]).collect(),
                params,
                epoch: 0,
                step_in_epoch: 0,
                global_step: 0,
                history: Vec::new(),
                partial: (0.0, 0, 0, 0.0),
            }
        }
    };
    let steps = train.len() / b.batch;
    let total = steps * b.epochs;
    let np = layout.params.len();
    let mut grads: Vec<Vec<f32>> = layout.params.iter().map(|p| vec![0.0; p.shape.iter().product()]).collect();
    while st.epoch < b.epochs {
        if cfg.largest_epochs > 0 && st.epoch == cfg.largest_epochs && st.step_in_epoch == 0 {
            // Width becomes elastic: the most important middle channels first, as OFA does.
            importance::sort_channels(space, &mut st.params, &mut st.momenta)?;
        }
        let order = epoch_order(train.len(), b.seed, st.epoch);
        let mut lr = 0.0;
        while st.step_in_epoch < steps {
            if b.stop_after_steps.is_some_and(|s| st.global_step >= s) {
                if let Some(p) = &b.checkpoint {
                    save(p, space, cfg, &layout.params, &st, &norm)?;
                }
                return Ok(SupernetOutcome { state: st, finished: false });
            }
            let t0 = Instant::now();
            let s = st.step_in_epoch;
            let idx = &order[s * b.batch..(s + 1) * b.batch];
            let mut rng = Rng::derived(b.seed, 1 + st.epoch as u64, 1 + s as u64);
            let (x, y) = train.batch(idx, &norm, b.augment.as_ref(), &mut rng)?;
            let labels = y.as_i64().expect("i64 labels").to_vec();
            let mut subnets = vec![Subnet::largest(space)];
            if st.epoch >= cfg.largest_epochs {
                subnets.push(Subnet::smallest(space));
                subnets.extend((0..cfg.random_subnets).map(|_| Subnet::random(space, &mut rng)));
            }
            grads.iter_mut().for_each(|g| g.iter_mut().for_each(|v| *v = 0.0));
            let share = 1.0 / subnets.len() as f32;
            let mut largest = (0.0f32, 0usize);
            for (j, sub) in subnets.iter().enumerate() {
                let mut inputs = vec![x.clone(), y.clone()];
                inputs.extend(st.params.iter().cloned());
                inputs.extend(space.masks(sub)?);
                let out = engine.run(&inputs)?;
                let loss = out[0].as_f32().expect("f32")[0];
                if !loss.is_finite() {
                    return Err(TrainError::Invalid(format!(
                        "the loss diverged ({loss}) at epoch {} step {s} (subnet {}); lower the learning rate",
                        st.epoch,
                        sub.compact()
                    )));
                }
                if j == 0 {
                    largest = (loss, argmax_hits(&out[1], &labels, b.batch));
                }
                for k in 0..np {
                    grads[k].iter_mut().zip(out[2 + k].as_f32().expect("f32")).for_each(|(a, g)| *a += share * g);
                }
            }
            lr = cosine_lr(b.sgd.lr, st.global_step, total, b.warmup_steps);
            for (k, spec) in layout.params.iter().enumerate() {
                let ir::TensorData::F32(w) = &mut st.params[k].data else { unreachable!("parameters are f32") };
                b.sgd.step(lr, w, &grads[k], &mut st.momenta[k], spec.decay);
            }
            st.partial.0 += largest.0 as f64 * b.batch as f64;
            st.partial.1 += largest.1;
            st.partial.2 += b.batch;
            st.partial.3 += t0.elapsed().as_secs_f64();
            st.step_in_epoch += 1;
            st.global_step += 1;
            progress(SupernetProgress::Step { epoch: st.epoch, step: st.step_in_epoch, steps, loss: largest.0, lr });
            if b.checkpoint_every > 0 && st.global_step % b.checkpoint_every == 0 && st.step_in_epoch < steps {
                if let Some(p) = &b.checkpoint {
                    save(p, space, cfg, &layout.params, &st, &norm)?;
                }
            }
        }
        let big = evaluator.accuracy(&st.params, &Subnet::largest(space), &calib, &[test])?[0];
        let small = evaluator.accuracy(&st.params, &Subnet::smallest(space), &calib, &[test])?[0];
        let (loss_sum, hits, seen, secs) = st.partial;
        let ep = SupernetEpoch {
            stats: EpochStats {
                epoch: st.epoch + 1,
                lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_acc: hits as f64 / seen.max(1) as f64,
                test_acc: big,
                seconds: secs,
                images_per_s: seen as f64 / secs.max(1e-9),
            },
            smallest_test_acc: small,
        };
        progress(SupernetProgress::Epoch(&ep));
        st.history.push(ep);
        st.epoch += 1;
        st.step_in_epoch = 0;
        st.partial = (0.0, 0, 0, 0.0);
        if let Some(p) = &b.checkpoint {
            save(p, space, cfg, &layout.params, &st, &norm)?;
        }
    }
    Ok(SupernetOutcome { state: st, finished: true })
}

/// The `supernet:PATH` accuracy oracle: a subnet's validation accuracy (the dataset's test
/// split) and training accuracy (on a fixed subset of the training images, un-augmented),
/// with the supernet's weights and its batch norms recalibrated on other training images.
pub struct SupernetOracle {
    evaluator: Evaluator,
    params: Vec<Tensor>,
    calib: Dataset,
    train_subset: Dataset,
    val: Dataset,
    /// Accuracies measured so far, by subnet: arch dicts that differ only outside the space
    /// (a fifth stage, the resolution) are the same subnet.
    measured: std::collections::HashMap<String, (f64, f64)>,
}

/// Training images the oracle's train accuracy is measured on.
pub const ORACLE_TRAIN_IMAGES: usize = 5000;

impl SupernetOracle {
    /// Loads the checkpoint; the dataset is the one it was trained on (its metadata), from
    /// `data_dir` when given.
    pub fn load(path: &Path, data_dir: Option<&Path>, backend: Backend) -> Result<SupernetOracle> {
        let (_, meta) = checkpoint::read(path)?;
        let bad = |m: String| TrainError::File { path: path.display().to_string(), message: m };
        let get = |k: &str| meta.get(k).cloned().ok_or_else(|| bad(format!("metadata {k} is missing: not a supernet checkpoint")));
        let classes: usize = get("classes")?.parse().map_err(|_| bad("metadata classes".into()))?;
        let space = space_by_name(&get("space")?, classes)?;
        let (params, _, _) = load_params(path, &space)?;
        let norm: (Vec<f32>, Vec<f32>) = serde_json::from_str(&get("normalization")?).map_err(|e| bad(format!("normalization: {e}")))?;
        let dataset = get("dataset")?;
        let dir = data_dir.map(Path::to_path_buf).or_else(|| meta.get("data_dir").map(PathBuf::from));
        let (train, val) = match dataset.as_str() {
            "fashion-mnist" => crate::data::load_mnist_like(dir.as_deref().unwrap_or(Path::new(crate::data::FASHION_MNIST_DIR)))?,
            "mnist" => crate::data::load_mnist_like(&dir.ok_or_else(|| bad("mnist needs a data directory".into()))?)?,
            other => return Err(bad(format!("dataset {other:?} is not supported by the oracle"))),
        };
        let calib_n: usize = meta.get("calib_images").and_then(|s| s.parse().ok()).unwrap_or(2000);
        let calib = calibration_set(&train, calib_n);
        let train_subset = train.subset(&(0..ORACLE_TRAIN_IMAGES.min(train.len())).collect::<Vec<_>>());
        let evaluator = Evaluator::new(&space, 500, backend, norm)?;
        Ok(SupernetOracle { evaluator, params, calib, train_subset, val, measured: Default::default() })
    }

    /// Validation and training accuracy of `sub`.
    pub fn measure(&self, sub: &Subnet) -> Result<(f64, f64)> {
        let a = self.evaluator.accuracy(&self.params, sub, &self.calib, &[&self.val, &self.train_subset])?;
        Ok((a[0], a[1]))
    }

    pub fn space(&self) -> &Space {
        &self.evaluator.space
    }

    /// Each input channel's mean and standard deviation the supernet was trained with.
    pub fn normalization(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.evaluator.norm
    }

    /// The validation images (the dataset's test split).
    pub fn validation_set(&self) -> &Dataset {
        &self.val
    }

    /// The deployable network of `sub` at batch `batch` ([`Space::deploy_graph`]): the
    /// supernet's weights cut to the subnet and the batch-norm statistics recalibrated as
    /// [`SupernetOracle::measure`] recalibrates them, so it computes what the oracle measured.
    pub fn deployable(&self, sub: &Subnet, batch: usize) -> Result<Graph> {
        let ev = &self.evaluator;
        let running = ev.recalibrate(&self.params, sub, &self.calib)?;
        let named = ev.space.layout(None).params.iter().map(|p| p.name.clone()).zip(self.params.iter().cloned()).collect();
        let cut = ev.space.slice_params(sub, &named)?;
        let running = ev.space.slice_running(sub, &running)?;
        ev.space.deploy_graph(sub, &cut, &running, &ev.norm, batch)
    }
}

impl nas::AccuracyOracle for SupernetOracle {
    fn evaluate(&mut self, arch: &ArchConfig) -> nas::error::Result<nas::Accuracy> {
        let err = |e: TrainError| nas::error::NasError::Oracle(format!("supernet: {e}"));
        let sub = Subnet::from_arch(&self.evaluator.space, arch).map_err(err)?;
        let (val, train) = match self.measured.get(&sub.compact()) {
            Some(&known) => known,
            None => {
                let a = self.measure(&sub).map_err(err)?;
                self.measured.insert(sub.compact(), a);
                a
            }
        };
        Ok(nas::Accuracy { val, train: Some(train) })
    }
}
