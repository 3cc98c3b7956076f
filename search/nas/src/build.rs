//! The network builder: an architecture config and a width multiplier to an ONNX model
//! (opset 17), input `input` `[1, 3, r, r]`, output `output` `[1, 1000]`; or one block alone
//! as a model (input and output of the block's shapes), to measure blocks for a latency table.
//! The graph IR of a network is the import of its bytes ([`build_graph`]), so built networks
//! take the same path as users' models.
//!
//! Parameters are named as in OFA's MobileNetV3 `state_dict` (`first_conv.conv.weight`,
//! `blocks.3.conv.depth_conv.se.fc.reduce.bias`, `classifier.linear.weight`, ...; block 0 is
//! the fixed first block, then the kept blocks numbered in order), so that a [`MapWeights`]
//! holding an OFA subnet's tensors builds that subnet. Batch norms use epsilon 1e-5.

use std::collections::HashMap;

use frontend::onnx_builder::{AttrValue, OnnxBuilder};

use crate::blocks::{decompose, Block, MbConv};
use crate::error::{NasError, Result};
use crate::rng::SplitMix64;
use crate::space::ArchConfig;

pub const OPSET: i64 = 17;
const BN_EPS: f32 = 1e-5;

/// What a parameter is, so that a random source can initialize it sensibly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// A conv or linear weight feeding an activation (He-uniform: keeps the variance through
    /// relu and h_swish).
    Activated {
        fan_in: usize,
    },
    /// A weight with no activation after it (projection, classifier): half the He bound,
    /// so that residual sums grow slowly with depth.
    Linear {
        fan_in: usize,
    },
    Bias,
    BnScale,
    BnShift,
    BnMean,
    BnVar,
}

/// Where a network's parameters come from.
pub trait WeightSource {
    /// The values of parameter `name` of `shape` (row-major, PyTorch's layout: conv weights
    /// `[out, in / groups, k, k]`, linear weights `[out, in]`).
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>>;
}

/// Seeded random weights: finite activations through any depth, reproducible from the seed.
pub struct RandomWeights(SplitMix64);

impl RandomWeights {
    pub fn new(seed: u64) -> Self {
        RandomWeights(SplitMix64::new(seed ^ 0x0fa_5eed))
    }
}

impl WeightSource for RandomWeights {
    fn tensor(&mut self, _name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let rng = &mut self.0;
        let mut take =
            |center: f32, bound: f64| (0..n).map(|_| center + rng.symmetric(bound)).collect();
        Ok(match init {
            Init::Activated { fan_in } => take(0.0, (6.0 / fan_in as f64).sqrt()),
            Init::Linear { fan_in } => take(0.0, 0.5 * (3.0 / fan_in as f64).sqrt()),
            Init::Bias | Init::BnShift | Init::BnMean => take(0.0, 0.1),
            Init::BnScale => take(1.0, 0.1),
            Init::BnVar => take(1.0, 0.2),
        })
    }
}

/// Weights looked up by name in a map (as a checkpoint would give them). A missing name or a
/// wrong element count is an error naming the parameter.
pub struct MapWeights<'a>(pub &'a HashMap<String, Vec<f32>>);

impl WeightSource for MapWeights<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>> {
        let v = self
            .0
            .get(name)
            .ok_or_else(|| NasError::Build(format!("no weights for parameter {name} {shape:?}")))?;
        let n: usize = shape.iter().product();
        if v.len() != n {
            return Err(NasError::Build(format!(
                "parameter {name}: {} values, expected {n} for shape {shape:?}",
                v.len()
            )));
        }
        Ok(v.clone())
    }
}

/// The ONNX model of an architecture at width multiplier `width`.
pub fn build_network(
    arch: &ArchConfig,
    width: f64,
    weights: &mut dyn WeightSource,
) -> Result<Vec<u8>> {
    let blocks = decompose(arch, width)?;
    let mut net = Net {
        b: OnnxBuilder::new("ofa_mbv3", OPSET),
        w: weights,
    };
    net.b
        .input("input", &[1, 3, arch.r as usize, arch.r as usize]);
    net.b
        .output("output", &[1, crate::space::NUM_CLASSES as usize]);
    let mut x = "input".to_string();
    let mut mb_index = 0;
    for (i, block) in blocks.iter().enumerate() {
        let out = if i + 1 == blocks.len() {
            "output".to_string()
        } else {
            format!("{}.out", param_prefix(block, mb_index))
        };
        net.block(block, &param_prefix(block, mb_index), &x, &out)?;
        mb_index += matches!(block, Block::MbConv(_)) as usize;
        x = out;
    }
    Ok(net.b.to_bytes())
}

/// The graph IR of an architecture: [`build_network`] imported by the frontend.
pub fn build_graph(
    arch: &ArchConfig,
    width: f64,
    weights: &mut dyn WeightSource,
) -> Result<ir::Graph> {
    let bytes = build_network(arch, width, weights)?;
    frontend::import_model(&bytes)
        .map_err(|e| NasError::Build(format!("importing the built network: {e}")))
}

/// One block as a model of its own: input `input` of the block's input shape, output
/// `output` of its output shape.
pub fn build_block(block: &Block, weights: &mut dyn WeightSource) -> Result<Vec<u8>> {
    let mut net = Net {
        b: OnnxBuilder::new("ofa_mbv3_block", OPSET),
        w: weights,
    };
    net.b.input("input", &block.input_shape());
    net.b.output("output", &block.output_shape());
    net.block(block, &param_prefix(block, 0), "input", "output")?;
    Ok(net.b.to_bytes())
}

/// The name prefix of a block's parameters in OFA's state dict.
fn param_prefix(block: &Block, mb_index: usize) -> String {
    match block {
        Block::Stem { .. } => "first_conv".into(),
        Block::MbConv(_) => format!("blocks.{mb_index}"),
        Block::FinalExpand { .. } => "final_expand_layer".into(),
        Block::AvgPool { .. } => "global_avg_pool".into(),
        Block::FeatureMix { .. } => "feature_mix_layer".into(),
        Block::Logits { .. } => "classifier".into(),
    }
}

/// The model being built and where its weights come from. Each emitter takes the name of
/// its input tensor and the name its result must have.
struct Net<'a> {
    b: OnnxBuilder,
    w: &'a mut dyn WeightSource,
}

impl Net<'_> {
    fn block(&mut self, block: &Block, p: &str, x: &str, out: &str) -> Result<()> {
        match *block {
            Block::Stem { cin, cout, .. } => {
                self.conv(&format!("{p}.conv"), x, cin, cout, 3, 2, 1, false, true)?;
                self.bn(&format!("{p}.bn"), &format!("{p}.conv.out"), cout)?;
                self.act(&format!("{p}.act"), &format!("{p}.bn.out"), out, true);
            }
            Block::MbConv(m) => self.mbconv(&m, p, x, out)?,
            Block::FinalExpand { cin, cout, .. } => {
                self.conv(&format!("{p}.conv"), x, cin, cout, 1, 1, 1, false, true)?;
                self.bn(&format!("{p}.bn"), &format!("{p}.conv.out"), cout)?;
                self.act(&format!("{p}.act"), &format!("{p}.bn.out"), out, true);
            }
            Block::AvgPool { .. } => {
                self.b.node("GlobalAveragePool", p, &[x], &[out], vec![]);
            }
            Block::FeatureMix { cin, cout } => {
                self.conv(&format!("{p}.conv"), x, cin, cout, 1, 1, 1, false, true)?;
                self.act(&format!("{p}.act"), &format!("{p}.conv.out"), out, true);
            }
            Block::Logits { cin, classes } => {
                let (cin, classes) = (cin as usize, classes as usize);
                let flat = format!("{p}.flatten.out");
                self.b.node(
                    "Flatten",
                    &format!("{p}.flatten"),
                    &[x],
                    &[&flat],
                    vec![("axis", AttrValue::Int(1))],
                );
                let (w, b) = (format!("{p}.linear.weight"), format!("{p}.linear.bias"));
                let wv = self
                    .w
                    .tensor(&w, &[classes, cin], Init::Linear { fan_in: cin })?;
                let bv = self.w.tensor(&b, &[classes], Init::Bias)?;
                self.b
                    .initializer(&w, &[classes, cin], &wv)
                    .initializer(&b, &[classes], &bv);
                self.b.node(
                    "Gemm",
                    &format!("{p}.linear"),
                    &[&flat, &w, &b],
                    &[out],
                    vec![("transB", AttrValue::Int(1))],
                );
            }
        }
        Ok(())
    }

    /// 1x1 expand + BN + act (unless the expand ratio is 1), depthwise + BN + act, SE, 1x1
    /// project + BN, and the identity shortcut.
    fn mbconv(&mut self, m: &MbConv, p: &str, x: &str, out: &str) -> Result<()> {
        let mut h = x.to_string();
        if m.has_expand() {
            let q = format!("{p}.conv.inverted_bottleneck");
            self.conv(&format!("{q}.conv"), &h, m.cin, m.mid, 1, 1, 1, false, true)?;
            self.bn(&format!("{q}.bn"), &format!("{q}.conv.out"), m.mid)?;
            h = format!("{q}.act.out");
            self.act(&format!("{q}.act"), &format!("{q}.bn.out"), &h, m.hs);
        }
        let q = format!("{p}.conv.depth_conv");
        self.conv(
            &format!("{q}.conv"),
            &h,
            m.mid,
            m.mid,
            m.kernel,
            m.stride,
            m.mid,
            false,
            true,
        )?;
        self.bn(&format!("{q}.bn"), &format!("{q}.conv.out"), m.mid)?;
        h = format!("{q}.act.out");
        self.act(&format!("{q}.act"), &format!("{q}.bn.out"), &h, m.hs);
        if let Some(se) = m.se_mid() {
            let s = format!("{q}.se");
            self.b.node(
                "GlobalAveragePool",
                &format!("{s}.pool"),
                &[&h],
                &[&format!("{s}.pool.out")],
                vec![],
            );
            self.conv(
                &format!("{s}.fc.reduce"),
                &format!("{s}.pool.out"),
                m.mid,
                se,
                1,
                1,
                1,
                true,
                true,
            )?;
            self.b.node(
                "Relu",
                &format!("{s}.fc.relu"),
                &[&format!("{s}.fc.reduce.out")],
                &[&format!("{s}.fc.relu.out")],
                vec![],
            );
            self.conv(
                &format!("{s}.fc.expand"),
                &format!("{s}.fc.relu.out"),
                se,
                m.mid,
                1,
                1,
                1,
                true,
                false,
            )?;
            let gate = format!("{s}.fc.h_sigmoid.out");
            self.b.node(
                "HardSigmoid",
                &format!("{s}.fc.h_sigmoid"),
                &[&format!("{s}.fc.expand.out")],
                &[&gate],
                vec![
                    ("alpha", AttrValue::Float(1.0 / 6.0)),
                    ("beta", AttrValue::Float(0.5)),
                ],
            );
            let scaled = format!("{s}.out");
            self.b
                .node("Mul", &format!("{s}.mul"), &[&h, &gate], &[&scaled], vec![]);
            h = scaled;
        }
        let q = format!("{p}.conv.point_linear");
        self.conv(
            &format!("{q}.conv"),
            &h,
            m.mid,
            m.cout,
            1,
            1,
            1,
            false,
            false,
        )?;
        let bn_out = if m.idskip {
            format!("{q}.bn.out")
        } else {
            out.to_string()
        };
        self.bn_to(
            &format!("{q}.bn"),
            &format!("{q}.conv.out"),
            &bn_out,
            m.cout,
        )?;
        if m.idskip {
            self.b.node(
                "Add",
                &format!("{p}.shortcut"),
                &[&bn_out, x],
                &[out],
                vec![],
            );
        }
        Ok(())
    }

    /// A k x k conv with padding k / 2, writing `{name}.out`; `activated` picks the weight
    /// initialization (see [`Init`]).
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &str,
        cin: u32,
        cout: u32,
        k: u32,
        stride: u32,
        groups: u32,
        bias: bool,
        activated: bool,
    ) -> Result<()> {
        let (cin, cout, k, groups) = (cin as usize, cout as usize, k as usize, groups as usize);
        let shape = [cout, cin / groups, k, k];
        let fan_in = cin / groups * k * k;
        let init = if activated {
            Init::Activated { fan_in }
        } else {
            Init::Linear { fan_in }
        };
        let w = format!("{name}.weight");
        let wv = self.w.tensor(&w, &shape, init)?;
        self.b.initializer(&w, &shape, &wv);
        let mut inputs = vec![x.to_string(), w];
        if bias {
            let b = format!("{name}.bias");
            let bv = self.w.tensor(&b, &[cout], Init::Bias)?;
            self.b.initializer(&b, &[cout], &bv);
            inputs.push(b);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let pad = (k / 2) as i64;
        self.b.node(
            "Conv",
            name,
            &inputs,
            &[&format!("{name}.out")],
            vec![
                ("kernel_shape", AttrValue::Ints(vec![k as i64; 2])),
                ("strides", AttrValue::Ints(vec![stride as i64; 2])),
                ("pads", AttrValue::Ints(vec![pad; 4])),
                ("group", AttrValue::Int(groups as i64)),
            ],
        );
        Ok(())
    }

    /// Batch norm writing `{name}.out`.
    fn bn(&mut self, name: &str, x: &str, c: u32) -> Result<()> {
        self.bn_to(name, x, &format!("{name}.out"), c)
    }

    fn bn_to(&mut self, name: &str, x: &str, out: &str, c: u32) -> Result<()> {
        let c = c as usize;
        let mut inputs = vec![x.to_string()];
        for (suffix, init) in [
            ("weight", Init::BnScale),
            ("bias", Init::BnShift),
            ("running_mean", Init::BnMean),
            ("running_var", Init::BnVar),
        ] {
            let n = format!("{name}.{suffix}");
            let v = self.w.tensor(&n, &[c], init)?;
            if init == Init::BnVar && v.iter().any(|&x| x.is_nan() || x < 0.0) {
                return Err(NasError::Build(format!(
                    "parameter {n}: a variance is negative"
                )));
            }
            self.b.initializer(&n, &[c], &v);
            inputs.push(n);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.b.node(
            "BatchNormalization",
            name,
            &inputs,
            &[out],
            vec![("epsilon", AttrValue::Float(BN_EPS))],
        );
        Ok(())
    }

    /// h_swish (ONNX HardSwish) or relu.
    fn act(&mut self, name: &str, x: &str, out: &str, hs: bool) {
        self.b.node(
            if hs { "HardSwish" } else { "Relu" },
            name,
            &[x],
            &[out],
            vec![],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::PREDICTOR_RESOLUTIONS;

    fn run(g: &ir::Graph, seed: u64) -> Vec<f32> {
        let ty = g.ty(g.inputs[0]);
        let mut rng = SplitMix64::new(seed);
        let x: Vec<f32> = (0..ty.numel()).map(|_| rng.next_f64() as f32).collect();
        let x = ir::Tensor::f32(ty.shape.clone(), x).unwrap();
        let y = interp::run(g, &[x]).unwrap();
        y[0].as_f32().unwrap().to_vec()
    }

    /// The analytic parameter count (from the block list) equals the imported graph's, once
    /// the importer's folding is accounted for: a batch norm becomes one scale and one shift
    /// per channel (as many as its learned parameters) and each h_swish / h_sigmoid brings
    /// two scalar constants (0.5 and 1/6). MACs agree exactly.
    #[test]
    fn params_and_macs_match_the_graph() {
        for (arch, width) in [
            (ArchConfig::max(224), 1.2),
            (ArchConfig::min(160), 1.2),
            (
                ArchConfig::sample(&mut SplitMix64::new(9), &PREDICTOR_RESOLUTIONS),
                1.0,
            ),
        ] {
            let blocks = decompose(&arch, width).unwrap();
            let params: u64 = blocks.iter().map(Block::params).sum();
            let macs: u64 = blocks.iter().map(Block::macs).sum();
            let bytes = build_network(&arch, width, &mut RandomWeights::new(1)).unwrap();
            let g = frontend::import_model(&bytes).unwrap();
            let scalars = g
                .values
                .iter()
                .filter(|v| matches!(v.def, ir::ValueDef::Const(_)) && v.ty.shape.is_empty())
                .count() as u64;
            let hard_acts = g
                .nodes
                .iter()
                .filter(|n| matches!(n.op, ir::Op::Clip { .. }))
                .count() as u64;
            assert_eq!(scalars, 2 * hard_acts);
            assert_eq!(
                g.parameter_count() - scalars,
                params,
                "{}",
                arch.to_compact()
            );
            assert_eq!(g.macs(), macs);
            // The ONNX file holds the batch norms' running statistics too.
            let s = frontend::summarize_onnx(&bytes).unwrap();
            assert_eq!(
                s.op_histogram["BatchNormalization"] as u64,
                blocks
                    .iter()
                    .filter(|b| b.bn_channels() > 0)
                    .map(|b| match b {
                        Block::MbConv(m) => 2 + m.has_expand() as u64,
                        _ => 1,
                    })
                    .sum::<u64>()
            );
        }
    }

    #[test]
    fn known_figures_of_the_extremes() {
        // Figures of the w1.2 space (learned parameters as PyTorch counts them).
        let count = |a: &ArchConfig| {
            let b = decompose(a, 1.2).unwrap();
            (
                b.iter().map(Block::params).sum::<u64>(),
                b.iter().map(Block::macs).sum::<u64>(),
            )
        };
        let (max_p, max_m) = count(&ArchConfig::max(224));
        let (min_p, min_m) = count(&ArchConfig::min(160));
        eprintln!(
            "w1.2 max@224: {max_p} params, {max_m} MACs; min@160: {min_p} params, {min_m} MACs"
        );
        assert!(max_p > min_p && max_m > min_m);
    }

    #[test]
    fn random_networks_run_to_finite_outputs() {
        let mut rng = SplitMix64::new(4);
        for width in [1.0, 1.2] {
            let arch = ArchConfig::sample(&mut rng, &[64]);
            let g = build_graph(&arch, width, &mut RandomWeights::new(2)).unwrap();
            assert_eq!(g.ty(g.outputs[0]).shape, vec![1, 1000]);
            let y = run(&g, 1);
            let max = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mean = y.iter().sum::<f32>() / y.len() as f32;
            let spread =
                (y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / y.len() as f32).sqrt();
            eprintln!(
                "{} w{width}: max|y| {max:.3}, std {spread:.3}",
                arch.to_compact()
            );
            assert!(
                y.iter().all(|v| v.is_finite()) && max < 1e4 && spread > 1e-3,
                "max {max}, std {spread}"
            );
        }
    }

    #[test]
    fn weights_by_name() {
        let arch = ArchConfig::min(32);
        // Record the random weights by name, then build again from the map: same bytes.
        struct Recorder(RandomWeights, HashMap<String, Vec<f32>>);
        impl WeightSource for Recorder {
            fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
                let v = self.0.tensor(name, shape, init)?;
                assert!(
                    self.1.insert(name.to_string(), v.clone()).is_none(),
                    "{name} twice"
                );
                Ok(v)
            }
        }
        let mut rec = Recorder(RandomWeights::new(3), HashMap::new());
        let a = build_network(&arch, 1.2, &mut rec).unwrap();
        let mut map = rec.1;
        for name in [
            "first_conv.conv.weight",
            "blocks.0.conv.depth_conv.conv.weight",
            "blocks.1.conv.inverted_bottleneck.bn.running_var",
            "blocks.3.conv.depth_conv.se.fc.reduce.bias",
            "feature_mix_layer.conv.weight",
            "classifier.linear.bias",
        ] {
            assert!(map.contains_key(name), "{name}");
        }
        assert!(!map.contains_key("blocks.0.conv.inverted_bottleneck.conv.weight"));
        assert_eq!(build_network(&arch, 1.2, &mut MapWeights(&map)).unwrap(), a);
        map.get_mut("classifier.linear.bias").unwrap().pop();
        let e = build_network(&arch, 1.2, &mut MapWeights(&map))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("classifier.linear.bias") && e.contains("999 values"),
            "{e}"
        );
        map.remove("first_conv.bn.weight");
        let e = build_network(&arch, 1.2, &mut MapWeights(&map))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no weights for parameter first_conv.bn.weight"),
            "{e}"
        );
    }

    /// Every distinct block of the w1.2 space at 160 (what a latency table measures) builds
    /// alone and imports with the shapes its key names.
    #[test]
    fn every_block_of_the_space_builds_alone() {
        let mut w = RandomWeights::new(0);
        for b in crate::blocks::space_blocks(1.2, 160).unwrap() {
            let g = frontend::import_model(&build_block(&b, &mut w).unwrap()).unwrap();
            assert_eq!(g.ty(g.inputs[0]).shape, b.input_shape().to_vec(), "{b}");
            assert_eq!(g.ty(g.outputs[0]).shape, b.output_shape(), "{b}");
            assert_eq!(g.macs(), b.macs(), "{b}");
        }
    }

    /// Each block alone imports with the shapes its key names, and the blocks of a network,
    /// chained, compute what the network computes.
    #[test]
    fn blocks_alone_compose_to_the_network() {
        let arch = ArchConfig::sample(&mut SplitMix64::new(8), &[48]);
        let blocks = decompose(&arch, 1.2).unwrap();
        // Same seed per parameter stream: build each block with the weights the network got.
        struct Recorder(RandomWeights, HashMap<String, Vec<f32>>);
        impl WeightSource for Recorder {
            fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
                let v = self.0.tensor(name, shape, init)?;
                self.1.insert(name.to_string(), v.clone());
                Ok(v)
            }
        }
        let mut rec = Recorder(RandomWeights::new(6), HashMap::new());
        let g = frontend::import_model(&build_network(&arch, 1.2, &mut rec).unwrap()).unwrap();
        let want = run(&g, 2);
        let ty = g.ty(g.inputs[0]);
        let mut rng = SplitMix64::new(2);
        let mut x = ir::Tensor::f32(
            ty.shape.clone(),
            (0..ty.numel()).map(|_| rng.next_f64() as f32).collect(),
        )
        .unwrap();
        let mut mb = 0;
        for b in &blocks {
            // Rename the network's parameters of this block to the standalone prefix.
            let p = param_prefix(b, mb);
            mb += matches!(b, Block::MbConv(_)) as usize;
            let own = param_prefix(b, 0);
            let map: HashMap<String, Vec<f32>> = rec
                .1
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(&format!("{p}."))
                        .map(|rest| (format!("{own}.{rest}"), v.clone()))
                })
                .collect();
            let bg =
                frontend::import_model(&build_block(b, &mut MapWeights(&map)).unwrap()).unwrap();
            assert_eq!(bg.ty(bg.inputs[0]).shape, b.input_shape().to_vec(), "{b}");
            assert_eq!(bg.ty(bg.outputs[0]).shape, b.output_shape(), "{b}");
            x = interp::run(&bg, &[x]).unwrap().remove(0);
        }
        let got = x.as_f32().unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-5 * scale.max(1e-6),
            "worst {worst}, scale {scale}"
        );
    }
}
