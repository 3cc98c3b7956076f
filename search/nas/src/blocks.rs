//! A network of the space as the list of its blocks, the unit of OFA's latency tables: the
//! stem, each MBConv block (the fixed first one included), the final expand, the pooling, the
//! feature mix and the classifier. Each block has a key in OFA's lookup-table format, can be
//! parsed back from it, and knows its parameter and multiply-accumulate counts.
//!
//! Keys (images are square; sizes are `HxWxC`):
//! - `Conv-input:224x224x3-output:112x112x24` (stem: 3x3 stride-2 conv, BN, h_swish)
//! - `expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0`
//!   (`expand` is the middle width; the first block has `expand` equal to its input width:
//!   expand ratio 1, no expansion conv)
//! - `Conv_1-input:7x7x192-output:7x7x1152` (final expand: 1x1 conv, BN, h_swish)
//! - `AvgPool2D-input:7x7x1152-output:1x1x1152` (global average pool)
//! - `Conv_2-input:1x1x1152-output:1x1x1536` (feature mix: 1x1 conv, h_swish)
//! - `Logits-input:1x1x1536-output:1000` (flatten and linear)

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{NasError, Result};
use crate::space::{
    conv_out, expanded_width, se_width, ArchConfig, Widths, EXPANDS, KERNELS, MAX_DEPTH,
    NUM_CLASSES, STAGES, STAGE_SPECS,
};

/// An inverted-residual (MBConv) block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MbConv {
    /// Input height (= width).
    pub in_size: u32,
    pub cin: u32,
    pub cout: u32,
    /// The middle width: `cin` itself for an expand ratio of 1 (no expansion conv).
    pub mid: u32,
    pub kernel: u32,
    pub stride: u32,
    pub se: bool,
    /// h_swish activations (else relu).
    pub hs: bool,
    /// Identity shortcut (stride 1 and `cin == cout`).
    pub idskip: bool,
}

impl MbConv {
    pub fn out_size(&self) -> u32 {
        conv_out(self.in_size, self.stride)
    }

    /// Whether the block starts with a 1x1 expansion conv.
    pub fn has_expand(&self) -> bool {
        self.mid != self.cin
    }

    /// Hidden width of the squeeze-excite module, when the block has one.
    pub fn se_mid(&self) -> Option<u32> {
        self.se.then(|| se_width(self.mid))
    }
}

/// One block of a network, as a latency table counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Block {
    /// `Conv`: 3x3 stride-2 conv + BN + h_swish on the image (`size` is the image's).
    Stem { size: u32, cin: u32, cout: u32 },
    /// `expanded_conv`.
    MbConv(MbConv),
    /// `Conv_1`: 1x1 conv + BN + h_swish.
    FinalExpand { size: u32, cin: u32, cout: u32 },
    /// `AvgPool2D`: global average pool.
    AvgPool { size: u32, channels: u32 },
    /// `Conv_2`: 1x1 conv (no bias, no BN) + h_swish on the pooled features.
    FeatureMix { cin: u32, cout: u32 },
    /// `Logits`: flatten and a linear layer with bias.
    Logits { cin: u32, classes: u32 },
}

fn hwc(size: u32, c: u32) -> String {
    format!("{size}x{size}x{c}")
}

impl Block {
    /// Input shape as ONNX NCHW.
    pub fn input_shape(&self) -> [usize; 4] {
        let (size, c) = match *self {
            Block::Stem { size, cin, .. } | Block::FinalExpand { size, cin, .. } => (size, cin),
            Block::MbConv(m) => (m.in_size, m.cin),
            Block::AvgPool { size, channels } => (size, channels),
            Block::FeatureMix { cin, .. } | Block::Logits { cin, .. } => (1, cin),
        };
        [1, c as usize, size as usize, size as usize]
    }

    /// Output shape as ONNX gives it (NCHW, or `[1, classes]` for the classifier).
    pub fn output_shape(&self) -> Vec<usize> {
        let (size, c) = match *self {
            Block::Stem { size, cout, .. } => (conv_out(size, 2), cout),
            Block::MbConv(m) => (m.out_size(), m.cout),
            Block::FinalExpand { size, cout, .. } => (size, cout),
            Block::AvgPool { channels, .. } => (1, channels),
            Block::FeatureMix { cout, .. } => (1, cout),
            Block::Logits { classes, .. } => return vec![1, classes as usize],
        };
        vec![1, c as usize, size as usize, size as usize]
    }

    /// The key of this block in OFA's latency tables.
    pub fn key(&self) -> String {
        match *self {
            Block::Stem { size, cin, cout } => format!("Conv-input:{}-output:{}", hwc(size, cin), hwc(conv_out(size, 2), cout)),
            Block::MbConv(m) => format!(
                "expanded_conv-input:{}-output:{}-expand:{}-kernel:{}-stride:{}-idskip:{}-se:{}-hs:{}",
                hwc(m.in_size, m.cin),
                hwc(m.out_size(), m.cout),
                m.mid,
                m.kernel,
                m.stride,
                m.idskip as u8,
                m.se as u8,
                m.hs as u8
            ),
            Block::FinalExpand { size, cin, cout } => format!("Conv_1-input:{}-output:{}", hwc(size, cin), hwc(size, cout)),
            Block::AvgPool { size, channels } => format!("AvgPool2D-input:{}-output:{}", hwc(size, channels), hwc(1, channels)),
            Block::FeatureMix { cin, cout } => format!("Conv_2-input:{}-output:{}", hwc(1, cin), hwc(1, cout)),
            Block::Logits { cin, classes } => format!("Logits-input:{}-output:{classes}", hwc(1, cin)),
        }
    }

    /// Parses a latency-table key back into its block. The block's shapes must be consistent
    /// (an output size the stride gives, an identity shortcut only where shapes allow one).
    pub fn from_key(key: &str) -> Result<Block> {
        let bad = |why: String| NasError::Arch(format!("block key {key:?}: {why}"));
        let mut parts = key.split('-');
        let kind = parts.next().unwrap_or_default();
        let mut fields = BTreeMap::new();
        for p in parts {
            let (k, v) = p
                .split_once(':')
                .ok_or_else(|| bad(format!("field {p:?} is not name:value")))?;
            if fields.insert(k, v).is_some() {
                return Err(bad(format!("field {k} repeats")));
            }
        }
        let mut take = |name: &str| {
            fields
                .remove(name)
                .ok_or_else(|| bad(format!("no {name} field")))
        };
        let shape = |v: &str| -> Result<(u32, u32)> {
            let dims: Vec<u32> = v
                .split('x')
                .map(|d| d.parse::<u32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(format!("{v:?} is not HxWxC")))?;
            match dims[..] {
                [h, w, c] if h == w && h > 0 && c > 0 => Ok((h, c)),
                _ => Err(bad(format!("{v:?} is not a square HxWxC shape"))),
            }
        };
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| bad(format!("{v:?} is not a number")))
        };
        let flag = |v: &str| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(format!("{v:?} is not 0 or 1"))),
        };
        let (input, output) = (take("input")?, take("output")?);
        let block = match kind {
            "Conv" | "Conv_1" | "AvgPool2D" | "Conv_2" => {
                let ((si, ci), (so, co)) = (shape(input)?, shape(output)?);
                match kind {
                    "Conv" if so == conv_out(si, 2) => Block::Stem {
                        size: si,
                        cin: ci,
                        cout: co,
                    },
                    "Conv_1" if so == si => Block::FinalExpand {
                        size: si,
                        cin: ci,
                        cout: co,
                    },
                    "AvgPool2D" if so == 1 && ci == co => Block::AvgPool {
                        size: si,
                        channels: ci,
                    },
                    "Conv_2" if si == 1 && so == 1 => Block::FeatureMix { cin: ci, cout: co },
                    _ => return Err(bad("input and output shapes do not fit the layer".into())),
                }
            }
            "Logits" => {
                let (si, ci) = shape(input)?;
                if si != 1 {
                    return Err(bad("the classifier's input must be 1x1".into()));
                }
                Block::Logits {
                    cin: ci,
                    classes: num(output)?,
                }
            }
            "expanded_conv" => {
                let ((si, ci), (so, co)) = (shape(input)?, shape(output)?);
                let m = MbConv {
                    in_size: si,
                    cin: ci,
                    cout: co,
                    mid: num(take("expand")?)?,
                    kernel: num(take("kernel")?)?,
                    stride: num(take("stride")?)?,
                    idskip: flag(take("idskip")?)?,
                    se: flag(take("se")?)?,
                    hs: flag(take("hs")?)?,
                };
                // `%` rather than is_multiple_of, which needs Rust 1.87 (the workspace supports 1.85).
                #[allow(clippy::manual_is_multiple_of)]
                if m.kernel % 2 == 0 || !(1..=2).contains(&m.stride) || m.out_size() != so {
                    return Err(bad("kernel, stride and output size do not fit".into()));
                }
                if m.idskip && (m.stride != 1 || ci != co) {
                    return Err(bad(
                        "an identity shortcut needs stride 1 and equal widths".into()
                    ));
                }
                Block::MbConv(m)
            }
            other => return Err(bad(format!("unknown block kind {other:?}"))),
        };
        if let Some(extra) = fields.keys().next() {
            return Err(bad(format!("unexpected field {extra}")));
        }
        Ok(block)
    }

    /// Learned parameters as PyTorch counts them: conv and linear weights, biases, and batch
    /// norm scale and shift (running statistics are not parameters; see
    /// [`bn_channels`](Self::bn_channels)).
    pub fn params(&self) -> u64 {
        let p = match *self {
            Block::Stem { cin, cout, .. } => cin * 9 * cout + 2 * cout,
            Block::MbConv(m) => {
                let expand = if m.has_expand() {
                    m.cin * m.mid + 2 * m.mid
                } else {
                    0
                };
                let se = m.se_mid().map_or(0, |s| 2 * m.mid * s + s + m.mid);
                expand + m.mid * m.kernel * m.kernel + 2 * m.mid + se + m.mid * m.cout + 2 * m.cout
            }
            Block::FinalExpand { cin, cout, .. } => cin * cout + 2 * cout,
            Block::AvgPool { .. } => 0,
            Block::FeatureMix { cin, cout } => cin * cout,
            Block::Logits { cin, classes } => cin * classes + classes,
        };
        p as u64
    }

    /// Channels normalized by batch norm (each has a running mean and variance too).
    pub fn bn_channels(&self) -> u64 {
        let c = match *self {
            Block::Stem { cout, .. } | Block::FinalExpand { cout, .. } => cout,
            Block::MbConv(m) => (if m.has_expand() { m.mid } else { 0 }) + m.mid + m.cout,
            Block::AvgPool { .. } | Block::FeatureMix { .. } | Block::Logits { .. } => 0,
        };
        c as u64
    }

    /// Multiply-accumulates of the convolutions and the linear layer.
    pub fn macs(&self) -> u64 {
        let sq = |s: u32| (s as u64) * (s as u64);
        match *self {
            Block::Stem { size, cin, cout } => {
                sq(conv_out(size, 2)) * (cout as u64) * (cin as u64) * 9
            }
            Block::MbConv(m) => {
                let (cin, mid, cout, k) =
                    (m.cin as u64, m.mid as u64, m.cout as u64, m.kernel as u64);
                let expand = if m.has_expand() {
                    sq(m.in_size) * cin * mid
                } else {
                    0
                };
                let se = m.se_mid().map_or(0, |s| 2 * mid * s as u64);
                expand + sq(m.out_size()) * mid * k * k + se + sq(m.out_size()) * mid * cout
            }
            Block::FinalExpand { size, cin, cout } => sq(size) * cin as u64 * cout as u64,
            Block::AvgPool { .. } => 0,
            Block::FeatureMix { cin, cout } => cin as u64 * cout as u64,
            Block::Logits { cin, classes } => cin as u64 * classes as u64,
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The blocks of an architecture at width multiplier `width`, in network order.
pub fn decompose(arch: &ArchConfig, width: f64) -> Result<Vec<Block>> {
    arch.validate()?;
    let w = Widths::for_width(width)?;
    let mut blocks = vec![Block::Stem {
        size: arch.r,
        cin: 3,
        cout: w.stem,
    }];
    let mut size = conv_out(arch.r, 2);
    // The fixed first block: expand ratio 1, kernel 3, relu, no SE, identity shortcut.
    let first = MbConv {
        in_size: size,
        cin: w.stem,
        cout: w.first_block,
        mid: w.stem,
        kernel: 3,
        stride: 1,
        se: false,
        hs: false,
        idskip: w.stem == w.first_block,
    };
    blocks.push(Block::MbConv(first));
    let mut cin = w.first_block;
    for (s, spec) in STAGE_SPECS.iter().enumerate() {
        let cout = w.stages[s];
        for j in 0..arch.d[s] as usize {
            let i = s * MAX_DEPTH + j;
            let stride = if j == 0 { spec.stride } else { 1 };
            let m = MbConv {
                in_size: size,
                cin,
                cout,
                mid: expanded_width(cin, arch.e[i]),
                kernel: arch.ks[i],
                stride,
                se: spec.se,
                hs: spec.hs,
                idskip: stride == 1 && cin == cout,
            };
            size = m.out_size();
            cin = cout;
            blocks.push(Block::MbConv(m));
        }
    }
    blocks.push(Block::FinalExpand {
        size,
        cin,
        cout: w.final_expand,
    });
    blocks.push(Block::AvgPool {
        size,
        channels: w.final_expand,
    });
    blocks.push(Block::FeatureMix {
        cin: w.final_expand,
        cout: w.feature_mix,
    });
    blocks.push(Block::Logits {
        cin: w.feature_mix,
        classes: NUM_CLASSES,
    });
    Ok(blocks)
}

/// Every distinct block of the space at one width and resolution, sorted by key: what a
/// latency table for that resolution must hold.
pub fn space_blocks(width: f64, r: u32) -> Result<Vec<Block>> {
    let mut all = std::collections::BTreeMap::new();
    // Each stage's first block and its later blocks differ in shape; depth 2 with every
    // kernel and expand ratio in both positions covers every block, whatever the depth.
    for &k in &KERNELS {
        for &e in &EXPANDS {
            let mut arch = ArchConfig::min(r);
            arch.ks.fill(k);
            arch.e.fill(e);
            for b in decompose(&arch, width)? {
                all.insert(b.key(), b);
            }
        }
    }
    debug_assert!(STAGES * 2 * KERNELS.len() * EXPANDS.len() + 6 == all.len());
    Ok(all.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::space::PREDICTOR_RESOLUTIONS;

    #[test]
    fn keys_of_the_largest_net_at_224() {
        let keys: Vec<String> = decompose(&ArchConfig::max(224), 1.2)
            .unwrap()
            .iter()
            .map(Block::key)
            .collect();
        assert_eq!(keys.len(), 1 + 1 + 20 + 4);
        assert_eq!(keys[0], "Conv-input:224x224x3-output:112x112x24");
        assert_eq!(keys[1], "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0");
        assert_eq!(keys[2], "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:7-stride:2-idskip:0-se:0-hs:0");
        assert_eq!(keys[3], "expanded_conv-input:56x56x32-output:56x56x32-expand:192-kernel:7-stride:1-idskip:1-se:0-hs:0");
        // Stage 4 keeps the stride but changes the width: no shortcut in its first block.
        assert_eq!(keys[14], "expanded_conv-input:14x14x96-output:14x14x136-expand:576-kernel:7-stride:1-idskip:0-se:1-hs:1");
        assert_eq!(keys[22], "Conv_1-input:7x7x192-output:7x7x1152");
        assert_eq!(keys[23], "AvgPool2D-input:7x7x1152-output:1x1x1152");
        assert_eq!(keys[24], "Conv_2-input:1x1x1152-output:1x1x1536");
        assert_eq!(keys[25], "Logits-input:1x1x1536-output:1000");
    }

    #[test]
    fn odd_sizes_round_up() {
        // 176 -> 88 -> 44 -> 22 -> 11 -> 11 -> 6, as OFA's 176 table has it.
        let blocks = decompose(&ArchConfig::min(176), 1.2).unwrap();
        assert_eq!(
            blocks.last().unwrap().key(),
            "Logits-input:1x1x1536-output:1000"
        );
        assert_eq!(
            blocks[blocks.len() - 4].key(),
            "Conv_1-input:6x6x192-output:6x6x1152"
        );
    }

    #[test]
    fn keys_parse_back() {
        let mut rng = SplitMix64::new(1);
        for width in [1.0, 1.2] {
            for r in PREDICTOR_RESOLUTIONS {
                for b in space_blocks(width, r).unwrap() {
                    assert_eq!(Block::from_key(&b.key()).unwrap(), b);
                }
            }
            let a = ArchConfig::sample(&mut rng, &[32, 64]);
            for b in decompose(&a, width).unwrap() {
                assert_eq!(Block::from_key(&b.key()).unwrap(), b);
            }
        }
        for bad in [
            "Conv-input:224x224x3",
            "Conv-input:224x224x3-output:111x111x24",
            "Foo-input:1x1x3-output:1x1x3",
            "expanded_conv-input:56x56x32-output:56x56x32-expand:96-kernel:3-stride:1-idskip:1-se:0",
            "expanded_conv-input:56x56x32-output:28x28x32-expand:96-kernel:3-stride:2-idskip:1-se:0-hs:0",
            "expanded_conv-input:56x56x32-output:56x56x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0-extra:1",
            "Logits-input:1x1x1536-output:many",
        ] {
            assert!(Block::from_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn space_has_96_blocks_per_resolution() {
        assert_eq!(space_blocks(1.2, 224).unwrap().len(), 96);
        assert_eq!(space_blocks(1.0, 160).unwrap().len(), 96);
    }
}
