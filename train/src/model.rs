//! Networks to train: a sequence of layers that builds a training graph (batch statistics,
//! cross-entropy loss, gradients) and an evaluation graph (running statistics, logits), with
//! the parameters and batch-norm buffers as graph inputs so that one compiled graph serves
//! every step.

use ir::graph::BinaryOp;
use ir::{DType, Graph, Op, Tensor, TensorType, ValueId};

use crate::autodiff::training_graph;
use crate::error::{Result, TrainError};
use crate::layers;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    HSwish,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution (no bias) + batch norm + activation; `depthwise` makes groups = channels
    /// (and `out` must equal the input's channels).
    ConvBn { out: usize, kernel: usize, stride: usize, depthwise: bool, act: Act },
    /// Squeeze-and-excite: global pool, 1x1 reduce + relu, 1x1 expand + hard-sigmoid, scale.
    SqueezeExcite { hidden: usize },
    /// Global average pool to [N, C].
    GlobalPool,
    /// Linear layer with bias, [N, K] -> [N, out].
    Linear { out: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub name: String,
    /// Input channels, height, width.
    pub input: [usize; 3],
    pub classes: usize,
    pub layers: Vec<Layer>,
}

/// A learned tensor: its name (the checkpoint key), shape, how it starts, and whether weight
/// decay applies (not to batch-norm scales and shifts, nor to biases).
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub decay: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Normal with std sqrt(2 / fan_out) (Kaiming, fan-out mode, as OFA initializes convs).
    KaimingOut {
        fan_out: usize,
    },
    /// Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] (a linear layer's default).
    Uniform {
        fan_in: usize,
    },
    Const(f32),
}

impl ParamSpec {
    pub fn initial(&self, rng: &mut Rng) -> Tensor {
        let n: usize = self.shape.iter().product();
        let v = match self.init {
            Init::KaimingOut { fan_out } => {
                let s = (2.0 / fan_out.max(1) as f32).sqrt();
                (0..n).map(|_| rng.normal() * s).collect()
            }
            Init::Uniform { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| (2.0 * rng.uniform() - 1.0) * b).collect()
            }
            Init::Const(c) => vec![c; n],
        };
        Tensor::f32(self.shape.clone(), v).expect("the shape holds the data")
    }
}

/// The graphs of a network at one batch size.
pub struct Graphs {
    /// Inputs: images, labels, then the parameters. Outputs: loss, logits, then each batch
    /// norm's batch mean and variance (in `bn` order), then the parameters' gradients.
    pub train: Graph,
    /// Inputs: images, then the parameters, then the batch norms' running means and variances.
    /// Output: logits.
    pub eval: Graph,
    pub params: Vec<ParamSpec>,
    /// Names of the batch norms (their buffers are `{name}.running_mean` / `.running_var`)
    /// and channel counts.
    pub bn: Vec<(String, usize)>,
    /// Elements per batch-norm statistic: N * H * W, for the unbiased running variance.
    pub bn_count: Vec<usize>,
}

enum Mode<'a> {
    Train,
    Eval { running: &'a [(ValueId, ValueId)] },
}

struct Built {
    logits: ValueId,
    bn_stats: Vec<(ValueId, ValueId)>,
    bn_count: Vec<usize>,
}

pub const BN_EPS: f32 = 1e-5;

impl Network {
    /// The parameters and batch norms, in the order the graphs take them.
    pub fn params(&self) -> Result<(Vec<ParamSpec>, Vec<(String, usize)>)> {
        let mut params = Vec::new();
        let mut bn = Vec::new();
        let [mut c, _, _] = self.input;
        let mut flat: Option<usize> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let p = |name: &str| format!("l{i}.{name}");
            match *layer {
                Layer::ConvBn { out, kernel, depthwise, .. } => {
                    if flat.is_some() {
                        return Err(TrainError::Invalid(format!("layer {i}: a convolution after the global pool")));
                    }
                    if depthwise && out != c {
                        return Err(TrainError::Invalid(format!("layer {i}: a depthwise convolution keeps its {c} channels, not {out}")));
                    }
                    let cin = if depthwise { 1 } else { c };
                    let fan_out = if depthwise { kernel * kernel } else { out * kernel * kernel };
                    params.push(ParamSpec {
                        name: p("conv.weight"),
                        shape: vec![out, cin, kernel, kernel],
                        init: Init::KaimingOut { fan_out },
                        decay: true,
                    });
                    params.push(ParamSpec { name: p("bn.weight"), shape: vec![out], init: Init::Const(1.0), decay: false });
                    params.push(ParamSpec { name: p("bn.bias"), shape: vec![out], init: Init::Const(0.0), decay: false });
                    bn.push((p("bn"), out));
                    c = out;
                }
                Layer::SqueezeExcite { hidden } => {
                    params.push(ParamSpec {
                        name: p("se.reduce.weight"),
                        shape: vec![hidden, c, 1, 1],
                        init: Init::KaimingOut { fan_out: hidden },
                        decay: true,
                    });
                    params.push(ParamSpec { name: p("se.reduce.bias"), shape: vec![hidden], init: Init::Const(0.0), decay: false });
                    params.push(ParamSpec {
                        name: p("se.expand.weight"),
                        shape: vec![c, hidden, 1, 1],
                        init: Init::KaimingOut { fan_out: c },
                        decay: true,
                    });
                    params.push(ParamSpec { name: p("se.expand.bias"), shape: vec![c], init: Init::Const(0.0), decay: false });
                }
                Layer::GlobalPool => flat = Some(c),
                Layer::Linear { out } => {
                    let k =
                        flat.ok_or_else(|| TrainError::Invalid(format!("layer {i}: a linear layer needs the global pool before it")))?;
                    params.push(ParamSpec {
                        name: p("linear.weight"),
                        shape: vec![k, out],
                        init: Init::Uniform { fan_in: k },
                        decay: true,
                    });
                    params.push(ParamSpec { name: p("linear.bias"), shape: vec![out], init: Init::Uniform { fan_in: k }, decay: false });
                    flat = Some(out);
                }
            }
        }
        if flat != Some(self.classes) {
            return Err(TrainError::Invalid(format!("network {} must end in a linear layer of {} classes", self.name, self.classes)));
        }
        Ok((params, bn))
    }

    fn forward(&self, g: &mut Graph, x: ValueId, params: &[ValueId], mode: &Mode) -> Result<Built> {
        let mut h = x;
        let mut next = params.iter().copied();
        let mut take = || next.next().expect("one value per parameter");
        let mut bn_stats = Vec::new();
        let mut bn_count = Vec::new();
        let act = |g: &mut Graph, a: Act, v: ValueId| -> Result<ValueId> {
            match a {
                Act::None => Ok(v),
                Act::Relu => layers::relu(g, v),
                Act::HSwish => layers::hard_swish(g, v),
            }
        };
        for layer in &self.layers {
            match *layer {
                Layer::ConvBn { kernel, stride, depthwise, act: a, .. } => {
                    let (w, gamma, beta) = (take(), take(), take());
                    let c = g.ty(h).shape[1];
                    let p = kernel / 2;
                    let groups = if depthwise { c } else { 1 };
                    let conv = Op::Conv2d { strides: [stride, stride], pads: [p, p, p, p], dilations: [1, 1], groups };
                    let y = g.add_node(conv, vec![h, w], None)?;
                    let y = match mode {
                        Mode::Train => {
                            let s = &g.ty(y).shape;
                            bn_count.push(s[0] * s[2] * s[3]);
                            let bn = layers::batch_norm_train(g, y, gamma, beta, BN_EPS)?;
                            bn_stats.push((bn.mean, bn.var));
                            bn.y
                        }
                        Mode::Eval { running } => {
                            let (m, v) = running[bn_stats.len()];
                            bn_stats.push((m, v));
                            layers::batch_norm_eval(g, y, gamma, beta, m, v, BN_EPS)?
                        }
                    };
                    h = act(g, a, y)?;
                }
                Layer::SqueezeExcite { .. } => {
                    let (wr, br, we, be) = (take(), take(), take(), take());
                    let c = g.ty(h).shape[1];
                    let n = g.ty(h).shape[0];
                    let pooled = layers::global_avg_pool(g, h)?;
                    let pooled = g.add_node(Op::Reshape { shape: vec![n, c, 1, 1] }, vec![pooled], None)?;
                    let conv = Op::Conv2d { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
                    let r = g.add_node(conv.clone(), vec![pooled, wr, br], None)?;
                    let r = layers::relu(g, r)?;
                    let e = g.add_node(conv, vec![r, we, be], None)?;
                    let gate = layers::hard_sigmoid(g, e)?;
                    h = g.add_node(Op::Binary(BinaryOp::Mul), vec![h, gate], None)?;
                }
                Layer::GlobalPool => h = layers::global_avg_pool(g, h)?,
                Layer::Linear { .. } => {
                    let (w, b) = (take(), take());
                    h = layers::linear(g, h, w, Some(b))?;
                }
            }
        }
        Ok(Built { logits: h, bn_stats, bn_count })
    }

    /// The training graph at batch `batch` (label smoothing `smoothing`) and the evaluation
    /// graph at batch `eval_batch`.
    pub fn graphs(&self, batch: usize, eval_batch: usize, smoothing: f32) -> Result<Graphs> {
        let (params, bn) = self.params()?;
        let [c, h, w] = self.input;
        // Training.
        let mut g = Graph::new(format!("{}_train", self.name));
        let x = g.add_input("x", TensorType::new(DType::F32, vec![batch, c, h, w]));
        let labels = g.add_input("labels", TensorType::new(DType::I64, vec![batch]));
        let pv: Vec<ValueId> = params.iter().map(|p| g.add_input(p.name.clone(), TensorType::new(DType::F32, p.shape.clone()))).collect();
        let built = self.forward(&mut g, x, &pv, &Mode::Train)?;
        let ce = layers::softmax_cross_entropy(&mut g, built.logits, labels, smoothing)?;
        g.outputs = vec![ce.loss, built.logits];
        for &(m, v) in &built.bn_stats {
            g.outputs.push(m);
            g.outputs.push(v);
        }
        let train = training_graph(&g, ce.loss, &pv, &ce.stop)?.graph;
        // Evaluation.
        let mut e = Graph::new(format!("{}_eval", self.name));
        let x = e.add_input("x", TensorType::new(DType::F32, vec![eval_batch, c, h, w]));
        let pv: Vec<ValueId> = params.iter().map(|p| e.add_input(p.name.clone(), TensorType::new(DType::F32, p.shape.clone()))).collect();
        let running: Vec<(ValueId, ValueId)> = bn
            .iter()
            .map(|(name, ch)| {
                let m = e.add_input(format!("{name}.running_mean"), TensorType::new(DType::F32, vec![*ch]));
                let v = e.add_input(format!("{name}.running_var"), TensorType::new(DType::F32, vec![*ch]));
                (m, v)
            })
            .collect();
        let built_eval = self.forward(&mut e, x, &pv, &Mode::Eval { running: &running })?;
        e.outputs = vec![built_eval.logits];
        Ok(Graphs { train, eval: e.pruned(), params, bn, bn_count: built.bn_count })
    }
}

/// A small MobileNetV3-style CNN (for 28x28 Fashion-MNIST, or 32x32 CIFAR-10): a stem, two
/// inverted-residual-like stages (depthwise + pointwise) with squeeze-excite and hard-swish,
/// global pooling and a classifier.
pub fn small_cnn(input: [usize; 3], classes: usize) -> Network {
    use Act::*;
    use Layer::*;
    Network {
        name: "small_cnn".into(),
        input,
        classes,
        layers: vec![
            ConvBn { out: 24, kernel: 3, stride: 1, depthwise: false, act: HSwish },
            ConvBn { out: 48, kernel: 3, stride: 2, depthwise: false, act: Relu },
            ConvBn { out: 48, kernel: 3, stride: 1, depthwise: true, act: Relu },
            ConvBn { out: 64, kernel: 1, stride: 1, depthwise: false, act: None },
            ConvBn { out: 128, kernel: 1, stride: 1, depthwise: false, act: HSwish },
            ConvBn { out: 128, kernel: 5, stride: 2, depthwise: true, act: HSwish },
            SqueezeExcite { hidden: 32 },
            ConvBn { out: 96, kernel: 1, stride: 1, depthwise: false, act: None },
            ConvBn { out: 256, kernel: 1, stride: 1, depthwise: false, act: HSwish },
            GlobalPool,
            Linear { out: classes },
        ],
    }
}

/// A tiny network for tests: one conv, pool, linear.
pub fn tiny(input: [usize; 3], classes: usize) -> Network {
    Network {
        name: "tiny".into(),
        input,
        classes,
        layers: vec![
            Layer::ConvBn { out: 4, kernel: 3, stride: 2, depthwise: false, act: Act::HSwish },
            Layer::ConvBn { out: 4, kernel: 3, stride: 1, depthwise: true, act: Act::Relu },
            Layer::GlobalPool,
            Layer::Linear { out: classes },
        ],
    }
}
