//! A fused op: several ops computed as one tensor program, so that the values between them
//! never go to memory. The e-graph's fusion rules build them; lowering turns each into one
//! program (a convolution or matrix product with an elementwise prologue and epilogue, or a
//! chain of elementwise ops).
//!
//! The body is a list of steps; each reads the fused node's operands (`x0`, `x1`, ...) and
//! the results of earlier steps (`y0`, `y1`, ...), and the last step's result is the node's.
//! In the text IR the body is a string attribute:
//!
//! ```text
//! %9: f32[1,16,8,8] = fused(%1, %2, %3, %0) {body="conv2d(x0, x1, x2) {strides=[1,1], pads=[0,0,0,0], dilations=[1,1], groups=1}; add(y0, x3); relu(y1)"}
//! ```

use std::fmt::Write;

use super::op::{Attr, Op};
use crate::error::{shape_err, Result};
use crate::text::cursor::Cursor;
use crate::text::lexer::Token;
use crate::types::TensorType;

/// Where a step's operand comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusedRef {
    /// The fused node's operand.
    Input(usize),
    /// An earlier step's result.
    Step(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FusedStep {
    pub op: Op,
    pub operands: Vec<FusedRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub steps: Vec<FusedStep>,
}

impl Fused {
    /// One op over the node's first `arity` operands: the start of a fusion.
    pub fn single(op: Op, arity: usize) -> Fused {
        Fused { steps: vec![FusedStep { op, operands: (0..arity).map(FusedRef::Input).collect() }] }
    }

    /// The type of every step's result, checking that each operand refers to an operand of
    /// the node or an earlier step.
    pub fn step_types(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>> {
        if self.steps.is_empty() {
            return shape_err("fused", "the body has no steps");
        }
        let mut types: Vec<TensorType> = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            if matches!(step.op, Op::Fused(_)) {
                return shape_err("fused", format!("step {i} is itself fused"));
            }
            let mut operands = Vec::with_capacity(step.operands.len());
            for r in &step.operands {
                operands.push(match *r {
                    FusedRef::Input(k) if k < inputs.len() => inputs[k],
                    FusedRef::Step(j) if j < i => &types[j],
                    _ => return shape_err("fused", format!("step {i} reads {}, which is not defined before it", ref_name(*r))),
                });
            }
            let t = step.op.infer(&operands)?;
            types.push(t);
        }
        Ok(types)
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType> {
        Ok(self.step_types(inputs)?.pop().expect("step_types checks the body is not empty"))
    }

    /// The multiply-accumulates of every step.
    pub fn macs(&self, inputs: &[&TensorType]) -> u64 {
        let Ok(types) = self.step_types(inputs) else {
            return 0;
        };
        self.steps
            .iter()
            .zip(&types)
            .map(|(step, out)| {
                let operands: Vec<&TensorType> = step
                    .operands
                    .iter()
                    .map(|r| match *r {
                        FusedRef::Input(k) => inputs[k],
                        FusedRef::Step(j) => &types[j],
                    })
                    .collect();
                step.op.macs(&operands, out)
            })
            .sum()
    }

    /// The index of the step that is a convolution or matrix product, if any.
    pub fn dense_step(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.op.is_dense())
    }

    /// Whether the body starts with a prologue that scales the convolution's input per channel
    /// (`mul(x, s)` with `s` constant over the image, the squeeze-excite gate): lowering then
    /// scales the weight it multiplies instead, once per input channel rather than per pixel.
    pub fn prologue_is_channel_scale(&self, inputs: &[&TensorType]) -> bool {
        if self.dense_step() != Some(1) || self.steps[0].op != Op::Binary(super::op::BinaryOp::Mul) {
            return false;
        }
        let operand = |r: &FusedRef| match *r {
            FusedRef::Input(k) => inputs.get(k).copied(),
            FusedRef::Step(_) => None,
        };
        let [a, b] = self.steps[0].operands.as_slice() else { return false };
        let (Some(a), Some(b)) = (operand(a), operand(b)) else { return false };
        channel_scale(a, b) || channel_scale(b, a)
    }

    /// The body as the text IR writes it.
    pub fn body_text(&self) -> String {
        let mut out = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let refs: Vec<String> = step.operands.iter().map(|r| ref_name(*r)).collect();
            let _ = write!(out, "{}({})", step.op.name(), refs.join(", "));
            let attrs = step.op.attrs();
            if !attrs.is_empty() {
                let parts: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={}", crate::text::print_attr(v))).collect();
                let _ = write!(out, " {{{}}}", parts.join(", "));
            }
        }
        out
    }

    /// Parses a body written by [`Fused::body_text`].
    pub fn parse(body: &str) -> Result<Fused> {
        let mut c = Cursor::new(body)?;
        let mut steps = Vec::new();
        loop {
            let name = match c.next()? {
                Token::Ident(n) => n,
                _ => {
                    c.pos -= 1;
                    return Err(c.error("expected an op name"));
                }
            };
            c.expect(Token::LParen, "'('")?;
            let mut operands = Vec::new();
            if !c.eat(&Token::RParen) {
                loop {
                    let r = match c.next()? {
                        Token::Ident(r) => parse_ref(&r),
                        _ => None,
                    };
                    let Some(r) = r else {
                        c.pos -= 1;
                        return Err(c.error("expected an operand xN or yN"));
                    };
                    operands.push(r);
                    if c.eat(&Token::RParen) {
                        break;
                    }
                    c.expect(Token::Comma, "',' or ')'")?;
                }
            }
            let attrs = c.attr_list()?;
            let op = Op::from_parts(&name, attrs)?;
            steps.push(FusedStep { op, operands });
            if c.at_end() {
                return Ok(Fused { steps });
            }
            c.expect(Token::Semicolon, "';' between steps")?;
        }
    }

    pub(crate) fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("body", Attr::Str(self.body_text()))]
    }
}

/// `scale` multiplies `x` per batch and channel: same rank, extent 1 on the image axes, and the
/// product keeps x's shape.
pub fn channel_scale(x: &TensorType, scale: &TensorType) -> bool {
    x.rank() >= 4
        && scale.rank() == x.rank()
        && scale.shape[2] == 1
        && scale.shape[3] == 1
        && scale.shape.iter().zip(&x.shape).all(|(&s, &d)| s == 1 || s == d)
}

fn ref_name(r: FusedRef) -> String {
    match r {
        FusedRef::Input(k) => format!("x{k}"),
        FusedRef::Step(j) => format!("y{j}"),
    }
}

fn parse_ref(s: &str) -> Option<FusedRef> {
    let (kind, index) = s.split_at(1);
    let index: usize = index.parse().ok()?;
    match kind {
        "x" => Some(FusedRef::Input(index)),
        "y" => Some(FusedRef::Step(index)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::op::UnaryOp;
    use crate::types::DType;

    #[test]
    fn body_round_trips_and_infers() {
        let conv = Op::Conv2d { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
        let mut f = Fused::single(conv, 3);
        f.steps.push(FusedStep { op: Op::Unary(UnaryOp::Relu), operands: vec![FusedRef::Step(0)] });
        let text = f.body_text();
        assert_eq!(text, "conv2d(x0, x1, x2) {strides=[1,1], pads=[0,0,0,0], dilations=[1,1], groups=1}; relu(y0)");
        assert_eq!(Fused::parse(&text).unwrap(), f);
        let x = TensorType::new(DType::F32, vec![1, 3, 4, 4]);
        let w = TensorType::new(DType::F32, vec![8, 3, 1, 1]);
        let b = TensorType::new(DType::F32, vec![8]);
        assert_eq!(f.infer(&[&x, &w, &b]).unwrap().shape, vec![1, 8, 4, 4]);
        assert_eq!(f.macs(&[&x, &w, &b]), 8 * 16 * 3);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(Fused::parse("relu(y0)").unwrap().infer(&[]).is_err());
        assert!(Fused::parse("relu(x0) relu(y0)").is_err());
        assert!(Fused::parse("relu(z0)").is_err());
        assert!(Fused::parse("nosuchop(x0)").is_err());
    }
}
