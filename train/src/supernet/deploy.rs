//! A subnet of a trained supernet as a deployable network (its weights cut from the
//! supernet's, its recalibrated batch-norm statistics and the input normalization baked in as
//! constants, one image in, logits out), and the pieces of a space's networks that its block
//! latency table measures one by one.

use std::collections::BTreeMap;

use ir::graph::BinaryOp;
use ir::{Graph, Op, Tensor, ValueId};
use nas::space::{ArchConfig, BLOCKS, DEPTHS, EXPANDS, KERNELS, STAGES};

use super::{BlockDef, Builder, Kind, Space, Subnet};
use crate::error::{Result, TrainError};
use crate::rng::Rng;

/// A part of every network of a space, measured alone for the latency table: the stem (with
/// the fixed first block), one elastic block with its kernel and expand ratio, or the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Piece {
    Stem,
    Block { index: usize, k: usize, e: usize },
    Head,
}

impl Piece {
    /// The piece's key in a latency table.
    pub fn key(&self) -> String {
        match self {
            Piece::Stem => "stem".into(),
            Piece::Block { index, k, e } => format!("block{index}-k{k}-e{e}"),
            Piece::Head => "head".into(),
        }
    }
}

/// The output extent of a `stride`-strided convolution with `k / 2` padding over `s` pixels.
pub(super) fn spatial(s: usize, stride: usize) -> usize {
    (s - 1) / stride + 1
}

impl Space {
    /// Every piece of the space: the stem, each block position with each kernel and expand
    /// ratio, the head.
    pub fn pieces(&self) -> Vec<Piece> {
        let mut out = vec![Piece::Stem];
        for index in 0..self.blocks().len() {
            for &k in &KERNELS {
                for &e in &EXPANDS {
                    out.push(Piece::Block { index, k: k as usize, e: e as usize });
                }
            }
        }
        out.push(Piece::Head);
        out
    }

    /// The pieces a subnet runs, in order.
    pub fn pieces_of(&self, sub: &Subnet) -> Vec<Piece> {
        let mut out = vec![Piece::Stem];
        for (index, b) in self.blocks().iter().enumerate() {
            if sub.active(b) {
                out.push(Piece::Block { index, k: sub.ks[index], e: sub.e[index] });
            }
        }
        out.push(Piece::Head);
        out
    }

    /// The input shape of block `index` at batch 1: only a stage's first block has stride 2,
    /// and every subnet runs it, so the shape does not depend on the subnet.
    fn block_input(&self, index: usize) -> [usize; 4] {
        let blocks = self.blocks();
        let s = blocks[..index].iter().fold(spatial(self.input[1], self.stem_stride), |s, b| spatial(s, b.stride));
        [1, blocks[index].cin, s, s]
    }

    fn head_input(&self) -> [usize; 4] {
        let blocks = self.blocks();
        let s = blocks.iter().fold(spatial(self.input[1], self.stem_stride), |s, b| spatial(s, b.stride));
        [1, blocks.last().map_or(self.first_block, |b| b.cout), s, s]
    }

    /// A piece as an inference graph at batch 1 with seeded random weights and unit batch-norm
    /// statistics bound as constants: what the latency table times.
    pub fn piece_graph(&self, piece: Piece, seed: u64) -> Result<Graph> {
        let mut sub = Subnet::largest(self);
        let (shape, blk): ([usize; 4], Option<BlockDef>) = match piece {
            Piece::Stem => {
                let [c, h, w] = self.input;
                ([1, c, h, w], None)
            }
            Piece::Block { index, k, e } => {
                let blocks = self.blocks();
                let b = *blocks.get(index).ok_or_else(|| TrainError::Invalid(format!("{}: no block {index}", self.name)))?;
                (sub.ks[index], sub.e[index]) = (k, e);
                (self.block_input(index), Some(b))
            }
            Piece::Head => (self.head_input(), None),
        };
        let body = |space: &Space, b: &mut Builder, x: ValueId| match (piece, &blk) {
            (Piece::Stem, _) => space.forward_stem(b, x),
            (Piece::Block { .. }, Some(blk)) => space.forward_block(b, x, blk, false),
            _ => space.forward_head(b, x),
        };
        let g = self.build(Some(&sub), Kind::Eval, shape, 0.0, &body)?;
        let layout = self.layout(Some(&sub));
        let mut rng = Rng::new(seed);
        let mut bound: BTreeMap<String, Tensor> = layout.params.iter().map(|p| (p.name.clone(), p.initial(&mut rng))).collect();
        for (name, c) in &layout.bn {
            bound.insert(format!("{name}.running_mean"), Tensor::f32(vec![*c], vec![0.0; *c])?);
            bound.insert(format!("{name}.running_var"), Tensor::f32(vec![*c], vec![1.0; *c])?);
        }
        Ok(g.bind_inputs(&bound)?)
    }

    /// The deployable inference graph of `sub` at batch `batch`: input `x` holds pixels in [0, 1]
    /// (normalized inside by `norm`, each channel's mean and standard deviation), output
    /// `logits`. `params` are the subnet's weights in [`Space::layout`]`(Some(sub))` order
    /// ([`Space::slice_params`]) and `running` its batch norms' statistics in the same layout.
    pub fn deploy_graph(
        &self,
        sub: &Subnet,
        params: &[Tensor],
        running: &[(Vec<f32>, Vec<f32>)],
        norm: &(Vec<f32>, Vec<f32>),
        batch: usize,
    ) -> Result<Graph> {
        let layout = self.layout(Some(sub));
        if params.len() != layout.params.len() || running.len() != layout.bn.len() {
            return Err(TrainError::Invalid(format!(
                "deploying {}: {} weights and {} batch norms given, the subnet has {} and {}",
                sub.compact(),
                params.len(),
                running.len(),
                layout.params.len(),
                layout.bn.len()
            )));
        }
        let [c, h, w] = self.input;
        if norm.0.len() != c || norm.1.len() != c {
            return Err(TrainError::Invalid(format!(
                "deploying {}: normalization for {} channels, the input has {c}",
                sub.compact(),
                norm.0.len()
            )));
        }
        let body = |space: &Space, b: &mut Builder, x: ValueId| {
            let mean = b.g.add_const(Some("input.mean".into()), Tensor::f32(vec![1, c, 1, 1], norm.0.clone())?);
            let inv_std =
                b.g.add_const(Some("input.inv_std".into()), Tensor::f32(vec![1, c, 1, 1], norm.1.iter().map(|s| 1.0 / s).collect())?);
            let centred = b.g.add_node(Op::Binary(BinaryOp::Sub), vec![x, mean], None)?;
            let x = b.g.add_node(Op::Binary(BinaryOp::Mul), vec![centred, inv_std], None)?;
            space.forward(b, x, Some(sub))
        };
        let mut g = self.build(Some(sub), Kind::Eval, [batch, c, h, w], 0.0, &body)?;
        g.name = format!("{}_{}", self.name, sub.compact()).replace('-', "_");
        let mut bound: BTreeMap<String, Tensor> = layout.params.iter().map(|p| p.name.clone()).zip(params.iter().cloned()).collect();
        for ((name, ch), (m, v)) in layout.bn.iter().zip(running) {
            if m.len() != *ch || v.len() != *ch {
                return Err(TrainError::Invalid(format!(
                    "deploying {}: {name} has {ch} channels, its statistics {}",
                    sub.compact(),
                    m.len()
                )));
            }
            bound.insert(format!("{name}.running_mean"), Tensor::f32(vec![*ch], m.clone())?);
            bound.insert(format!("{name}.running_var"), Tensor::f32(vec![*ch], v.clone())?);
        }
        let mut g = g.bind_inputs(&bound)?;
        let logits = g.outputs[0];
        g.values[logits.index()].name = Some("logits".into());
        Ok(g)
    }

    /// The supernet's batch-norm statistics (in [`Space::layout`]`(None)` order) cut to `sub`'s
    /// channels, in its layout's order: every batch norm keeps its first channels.
    pub fn slice_running(&self, sub: &Subnet, full: &[(Vec<f32>, Vec<f32>)]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let index: BTreeMap<String, usize> = self.layout(None).bn.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        self.layout(Some(sub))
            .bn
            .iter()
            .map(|(name, ch)| {
                let (m, v) =
                    index.get(name).and_then(|&i| full.get(i)).ok_or_else(|| TrainError::Invalid(format!("no statistics of {name}")))?;
                if m.len() < *ch || v.len() < *ch {
                    return Err(TrainError::Invalid(format!("statistics of {name} have {} channels, the subnet needs {ch}", m.len())));
                }
                Ok((m[..*ch].to_vec(), v[..*ch].to_vec()))
            })
            .collect()
    }
}

impl Subnet {
    /// The subnet as an OFA arch dict: blocks and stages the space does not have take the
    /// smallest choices, `r` is the input's height.
    pub fn to_arch(&self, space: &Space) -> ArchConfig {
        let pad = |v: &[usize], len: usize, smallest: u32| {
            let mut out: Vec<u32> = v.iter().map(|&x| x as u32).collect();
            out.resize(len, smallest);
            out
        };
        ArchConfig {
            ks: pad(&self.ks, BLOCKS, KERNELS[0]),
            e: pad(&self.e, BLOCKS, EXPANDS[0]),
            d: pad(&self.d, STAGES, DEPTHS[0]),
            r: space.input[1] as u32,
        }
    }
}
