//! The Once-for-All MobileNetV3 search space (PAPER.md): widths, the per-stage structure, and
//! architecture configs with their validation, JSON and compact text forms, and sampling.
//!
//! An [`ArchConfig`] is OFA's arch dict `{"ks": [20], "e": [20], "d": [5], "r": int}`: a
//! kernel size and an expand ratio for each of the 20 elastic blocks (5 stages of up to 4),
//! a depth per stage and the input resolution. Entries of blocks cut by depth are ignored.
//!
//! Two resolution rules apply: [`ArchConfig::validate`] (what the network builder and the
//! block decomposition accept) needs a multiple of 16 that is at least 32, so that tests can
//! build small networks; [`ArchConfig::validate_for_predictor`] also needs 160 to 224, the
//! range OFA's w1.2 supernet and its accuracy predictor serve.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{NasError, Result};
use crate::rng::SplitMix64;

pub const KERNELS: [u32; 3] = [3, 5, 7];
pub const EXPANDS: [u32; 3] = [3, 4, 6];
pub const DEPTHS: [u32; 3] = [2, 3, 4];
pub const STAGES: usize = 5;
pub const MAX_DEPTH: usize = 4;
/// Elastic blocks: stages times their largest depth.
pub const BLOCKS: usize = STAGES * MAX_DEPTH;
/// Resolutions of OFA's w1.2 supernet and its accuracy predictor.
pub const PREDICTOR_RESOLUTIONS: [u32; 5] = [160, 176, 192, 208, 224];
/// Width multipliers of the space.
pub const WIDTH_MULTS: [f64; 2] = [1.0, 1.2];
/// Classes of the classifier (ImageNet).
pub const NUM_CLASSES: u32 = 1000;

/// Base widths: stem, first block, the five stages, final expand, feature mix.
const BASE_WIDTHS: [f64; 9] = [16.0, 16.0, 24.0, 40.0, 80.0, 112.0, 160.0, 960.0, 1280.0];

/// What is fixed about a stage: the stride of its first block, its activation and whether
/// its blocks have squeeze-excite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSpec {
    pub stride: u32,
    /// h_swish (true) or relu.
    pub hs: bool,
    pub se: bool,
}

pub const STAGE_SPECS: [StageSpec; STAGES] = [
    StageSpec {
        stride: 2,
        hs: false,
        se: false,
    },
    StageSpec {
        stride: 2,
        hs: false,
        se: true,
    },
    StageSpec {
        stride: 2,
        hs: true,
        se: false,
    },
    StageSpec {
        stride: 1,
        hs: true,
        se: true,
    },
    StageSpec {
        stride: 2,
        hs: true,
        se: true,
    },
];

/// OFA's `make_divisible`: round `v` to the nearest multiple of `divisor` (at least
/// `divisor`), and never below 90 % of `v`.
pub fn make_divisible(v: f64, divisor: u32) -> u32 {
    let d = divisor as f64;
    // Python's int() truncates toward zero; v is positive here.
    let mut new_v =
        (((v + d / 2.0) as u64 / divisor as u64) * divisor as u64).max(divisor as u64) as f64;
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as u32
}

/// The channel counts of one width multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    pub stem: u32,
    pub first_block: u32,
    pub stages: [u32; STAGES],
    pub final_expand: u32,
    pub feature_mix: u32,
}

impl Widths {
    /// The widths of multiplier `w` (1.0 or 1.2).
    pub fn for_width(w: f64) -> Result<Widths> {
        if !WIDTH_MULTS.contains(&w) {
            return Err(NasError::Arch(format!(
                "width {w} is not a width of the space (1.0, 1.2)"
            )));
        }
        let c: Vec<u32> = BASE_WIDTHS
            .iter()
            .map(|&b| make_divisible(b * w, 8))
            .collect();
        Ok(Widths {
            stem: c[0],
            first_block: c[1],
            stages: [c[2], c[3], c[4], c[5], c[6]],
            final_expand: c[7],
            feature_mix: c[8],
        })
    }
}

/// The middle (expanded) width of an MBConv block, as OFA computes it.
pub fn expanded_width(cin: u32, expand: u32) -> u32 {
    make_divisible((cin * expand) as f64, 8)
}

/// The hidden width of a squeeze-excite module over `channels` channels.
pub fn se_width(channels: u32) -> u32 {
    make_divisible((channels / 4) as f64, 8)
}

/// Spatial size after a `k x k` window with stride `s` and padding `k / 2` (k odd).
pub fn conv_out(size: u32, stride: u32) -> u32 {
    (size - 1) / stride + 1
}

/// One architecture of the space (OFA's arch dict).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Kernel size of each of the 20 blocks: 3, 5 or 7.
    pub ks: Vec<u32>,
    /// Expand ratio of each of the 20 blocks: 3, 4 or 6.
    pub e: Vec<u32>,
    /// Depth of each of the 5 stages: 2, 3 or 4.
    pub d: Vec<u32>,
    /// Input resolution. In JSON also accepted as a one-element list (`"r": [224]`), as some
    /// OFA code writes it.
    #[serde(deserialize_with = "int_or_singleton")]
    pub r: u32,
}

fn int_or_singleton<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrList {
        Int(u32),
        List(Vec<u32>),
    }
    match IntOrList::deserialize(d) {
        Ok(IntOrList::Int(r)) => Ok(r),
        Ok(IntOrList::List(v)) if v.len() == 1 => Ok(v[0]),
        _ => Err(serde::de::Error::custom(
            "r must be a non-negative integer (or a list of one)",
        )),
    }
}

impl ArchConfig {
    /// Every block at its largest kernel and expand ratio, every stage at depth 4.
    pub fn max(r: u32) -> ArchConfig {
        ArchConfig {
            ks: vec![7; BLOCKS],
            e: vec![6; BLOCKS],
            d: vec![4; STAGES],
            r,
        }
    }

    /// Every block at kernel 3 and expand ratio 3, every stage at depth 2.
    pub fn min(r: u32) -> ArchConfig {
        ArchConfig {
            ks: vec![3; BLOCKS],
            e: vec![3; BLOCKS],
            d: vec![2; STAGES],
            r,
        }
    }

    /// A uniformly random architecture, as OFA samples them: every kernel, expand ratio and
    /// depth chosen independently (cut blocks get values too), the resolution from
    /// `resolutions`.
    pub fn sample(rng: &mut SplitMix64, resolutions: &[u32]) -> ArchConfig {
        let ks = (0..BLOCKS).map(|_| rng.choose(&KERNELS)).collect();
        let e = (0..BLOCKS).map(|_| rng.choose(&EXPANDS)).collect();
        let d = (0..STAGES).map(|_| rng.choose(&DEPTHS)).collect();
        let r = rng.choose(resolutions);
        ArchConfig { ks, e, d, r }
    }

    /// Checks lengths and values; the resolution must be a multiple of 16 and at least 32.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: &[u32], len: usize, allowed: &[u32]| -> Result<()> {
            if v.len() != len {
                return Err(NasError::Arch(format!(
                    "{name} has {} entries, expected {len}",
                    v.len()
                )));
            }
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !allowed.contains(x)) {
                return Err(NasError::Arch(format!(
                    "{name}[{i}] = {x} is not one of {allowed:?}"
                )));
            }
            Ok(())
        };
        check("ks", &self.ks, BLOCKS, &KERNELS)?;
        check("e", &self.e, BLOCKS, &EXPANDS)?;
        check("d", &self.d, STAGES, &DEPTHS)?;
        // `%` rather than is_multiple_of, which needs Rust 1.87 (the workspace supports 1.85).
        #[allow(clippy::manual_is_multiple_of)]
        if self.r < 32 || self.r % 16 != 0 {
            return Err(NasError::Arch(format!(
                "r = {}: the resolution must be a multiple of 16, at least 32",
                self.r
            )));
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and a resolution the accuracy predictor covers.
    pub fn validate_for_predictor(&self) -> Result<()> {
        self.validate()?;
        if !PREDICTOR_RESOLUTIONS.contains(&self.r) {
            return Err(NasError::Arch(format!(
                "r = {}: the accuracy predictor covers {PREDICTOR_RESOLUTIONS:?}",
                self.r
            )));
        }
        Ok(())
    }

    /// Whether elastic block `i` (0..20) is kept by its stage's depth.
    pub fn is_active(&self, i: usize) -> bool {
        (i % MAX_DEPTH) < self.d[i / MAX_DEPTH] as usize
    }

    /// The same network with the ignored entries (blocks cut by depth) set to 3, so that two
    /// configs of one network compare equal.
    pub fn normalized(&self) -> ArchConfig {
        let mut a = self.clone();
        for i in 0..BLOCKS.min(a.ks.len()).min(a.e.len()) {
            if a.d.len() == STAGES && !a.is_active(i) {
                a.ks[i] = 3;
                a.e[i] = 3;
            }
        }
        a
    }

    /// Parses and validates an arch dict.
    pub fn from_json(text: &str) -> Result<ArchConfig> {
        let a: ArchConfig = serde_json::from_str(text)
            .map_err(|e| NasError::Arch(format!("not an arch config: {e}")))?;
        a.validate()?;
        Ok(a)
    }

    /// The arch dict as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an ArchConfig always serializes")
    }

    /// Reads and validates an arch dict from a JSON file.
    pub fn load(path: &Path) -> Result<ArchConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        ArchConfig::from_json(&text)
            .map_err(|e| NasError::parse(&path.display().to_string(), 0, e.to_string()))
    }

    /// The compact form `k<20 digits>-e<20 digits>-d<5 digits>-r<resolution>`, e.g.
    /// `k77777777777777777777-e66666666666666666666-d44444-r224`: one token, no commas or
    /// quotes, for tables and file names.
    pub fn to_compact(&self) -> String {
        let digits = |v: &[u32]| v.iter().map(|x| x.to_string()).collect::<String>();
        format!(
            "k{}-e{}-d{}-r{}",
            digits(&self.ks),
            digits(&self.e),
            digits(&self.d),
            self.r
        )
    }

    /// Parses and validates the compact form of [`to_compact`](Self::to_compact).
    pub fn from_compact(s: &str) -> Result<ArchConfig> {
        let bad = |why: &str| {
            NasError::Arch(format!(
                "{s:?} is not a compact arch (k<20 digits>-e<20 digits>-d<5 digits>-r<int>): {why}"
            ))
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [k, e, d, r] = parts[..] else {
            return Err(bad("expected four fields separated by '-'"));
        };
        let digits = |field: &str, prefix: char| -> Result<Vec<u32>> {
            let body = field
                .strip_prefix(prefix)
                .ok_or_else(|| bad(&format!("field {field:?} should start with {prefix:?}")))?;
            body.chars()
                .map(|c| {
                    c.to_digit(10)
                        .ok_or_else(|| bad(&format!("{c:?} in {field:?} is not a digit")))
                })
                .collect()
        };
        let r = r
            .strip_prefix('r')
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| bad("the last field should be r<int>"))?;
        let a = ArchConfig {
            ks: digits(k, 'k')?,
            e: digits(e, 'e')?,
            d: digits(d, 'd')?,
            r,
        };
        a.validate()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_ofa() {
        // Values from OFA's Python make_divisible.
        assert_eq!(make_divisible(19.2, 8), 24);
        assert_eq!(make_divisible(28.8, 8), 32);
        assert_eq!(make_divisible(134.4, 8), 136);
        assert_eq!(make_divisible(36.0, 8), 40);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(20.0, 8), 24);
        assert_eq!(make_divisible(12.0, 8), 16);
        assert_eq!(make_divisible(10.0, 8), 16);
    }

    #[test]
    fn widths_of_the_space() {
        let w = Widths::for_width(1.2).unwrap();
        assert_eq!(
            (
                w.stem,
                w.first_block,
                w.stages,
                w.final_expand,
                w.feature_mix
            ),
            (24, 24, [32, 48, 96, 136, 192], 1152, 1536)
        );
        let w = Widths::for_width(1.0).unwrap();
        assert_eq!(
            (
                w.stem,
                w.first_block,
                w.stages,
                w.final_expand,
                w.feature_mix
            ),
            (16, 16, [24, 40, 80, 112, 160], 960, 1280)
        );
        assert!(Widths::for_width(1.1)
            .unwrap_err()
            .to_string()
            .contains("width 1.1"));
    }

    #[test]
    fn json_round_trip_and_errors() {
        let a = ArchConfig::sample(&mut SplitMix64::new(3), &PREDICTOR_RESOLUTIONS);
        assert_eq!(ArchConfig::from_json(&a.to_json()).unwrap(), a);
        let list_r = a
            .to_json()
            .replace(&format!("\"r\":{}", a.r), &format!("\"r\":[{}]", a.r));
        assert_eq!(ArchConfig::from_json(&list_r).unwrap(), a);
        let err = |text: String| ArchConfig::from_json(&text).unwrap_err().to_string();
        let mut short = a.clone();
        short.ks.pop();
        assert!(err(short.to_json()).contains("ks has 19 entries, expected 20"));
        let mut bad = a.clone();
        bad.e[7] = 5;
        assert!(err(bad.to_json()).contains("e[7] = 5 is not one of [3, 4, 6]"));
        let mut bad = a.clone();
        bad.d[4] = 1;
        assert!(err(bad.to_json()).contains("d[4] = 1"));
        let mut bad = a.clone();
        bad.r = 100;
        assert!(err(bad.to_json()).contains("r = 100"));
        assert!(err("{\"ks\": [3]}".into()).contains("not an arch config"));
        assert!(err("[1, 2".into()).contains("not an arch config"));
    }

    #[test]
    fn predictor_resolutions() {
        assert!(ArchConfig::max(224).validate_for_predictor().is_ok());
        assert!(ArchConfig::max(64).validate().is_ok());
        let e = ArchConfig::max(64)
            .validate_for_predictor()
            .unwrap_err()
            .to_string();
        assert!(e.contains("r = 64") && e.contains("160"), "{e}");
        assert!(ArchConfig::max(240).validate_for_predictor().is_err());
        assert!(ArchConfig::max(168).validate().is_err());
    }

    #[test]
    fn compact_round_trip_and_errors() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..20 {
            let a = ArchConfig::sample(&mut rng, &PREDICTOR_RESOLUTIONS);
            assert_eq!(ArchConfig::from_compact(&a.to_compact()).unwrap(), a);
        }
        assert_eq!(
            ArchConfig::max(224).to_compact(),
            "k77777777777777777777-e66666666666666666666-d44444-r224"
        );
        for bad in [
            "",
            "k7-e6-d4-r224",
            "k77777777777777777777-e66666666666666666666-d44444",
            "x77777777777777777777-e66666666666666666666-d44444-r224",
        ] {
            assert!(ArchConfig::from_compact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sampling_is_seeded_and_valid() {
        let a: Vec<ArchConfig> = (0..50)
            .map({
                let mut rng = SplitMix64::new(5);
                move |_| ArchConfig::sample(&mut rng, &PREDICTOR_RESOLUTIONS)
            })
            .collect();
        let b: Vec<ArchConfig> = (0..50)
            .map({
                let mut rng = SplitMix64::new(5);
                move |_| ArchConfig::sample(&mut rng, &PREDICTOR_RESOLUTIONS)
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.validate_for_predictor().is_ok()));
        // Every choice shows up.
        for k in KERNELS {
            assert!(a.iter().any(|x| x.ks.contains(&k)));
        }
        for d in DEPTHS {
            assert!(a.iter().any(|x| x.d.contains(&d)));
        }
        for r in PREDICTOR_RESOLUTIONS {
            assert!(a.iter().any(|x| x.r == r));
        }
    }

    #[test]
    fn normalized_ignores_cut_blocks() {
        let mut a = ArchConfig::min(160);
        let mut b = a.clone();
        b.ks[3] = 7; // block 3 of stage 1 is cut at depth 2
        b.e[19] = 6;
        assert_ne!(a, b);
        assert_eq!(a.normalized(), b.normalized());
        a.ks[0] = 7; // block 0 is active
        assert_ne!(a.normalized(), b.normalized());
    }
}
