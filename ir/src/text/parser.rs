//! Parses text IR back into a graph.

use super::cursor::Cursor;
use super::lexer::Token;
use crate::error::Result;
use crate::graph::{Graph, Op, ValueId};
use crate::tensor::{Tensor, TensorData};
use crate::types::{DType, TensorType};

/// Parses one graph. Value ids in the text are mapped to fresh ids in definition order,
/// so text printed from a graph gets its own ids back.
pub fn parse_graph(text: &str) -> Result<Graph> {
    let mut p = Parser { c: Cursor::new(text)?, ids: Default::default(), graph: Graph::default() };
    p.graph()?;
    if !p.c.at_end() {
        return Err(p.c.error("text after the end of the graph"));
    }
    crate::graph::verify::verify(&p.graph)?;
    Ok(p.graph)
}

struct Parser<'a> {
    c: Cursor<'a>,
    /// Text id to graph id.
    ids: std::collections::HashMap<u32, ValueId>,
    graph: Graph,
}

impl Parser<'_> {
    fn value_ref(&mut self) -> Result<ValueId> {
        match self.c.next()? {
            Token::Value(n) => self.ids.get(&n).copied().ok_or_else(|| {
                self.c.pos -= 1;
                self.c.error(format!("use of undefined value %{n}"))
            }),
            _ => {
                self.c.pos -= 1;
                Err(self.c.error("expected a value like %3"))
            }
        }
    }

    fn value_def(&mut self) -> Result<u32> {
        match self.c.next()? {
            Token::Value(n) if self.ids.contains_key(&n) => {
                self.c.pos -= 1;
                Err(self.c.error(format!("value %{n} is defined twice")))
            }
            Token::Value(n) => Ok(n),
            _ => {
                self.c.pos -= 1;
                Err(self.c.error("expected a value like %3"))
            }
        }
    }

    fn graph(&mut self) -> Result<()> {
        if !self.c.keyword("graph") {
            return Err(self.c.error("expected 'graph'"));
        }
        self.graph.name = self.c.string()?;
        self.c.expect(Token::LBrace, "'{'")?;
        loop {
            if self.c.keyword("input") {
                let n = self.value_def()?;
                let name = self.c.optional_string().unwrap_or_default();
                self.c.expect(Token::Colon, "':'")?;
                let ty = self.c.tensor_type()?;
                let id = self.graph.add_input(name, ty);
                self.ids.insert(n, id);
            } else if self.c.keyword("const") {
                self.constant()?;
            } else if self.c.keyword("output") {
                loop {
                    let v = self.value_ref()?;
                    self.graph.outputs.push(v);
                    if !self.c.eat(&Token::Comma) {
                        break;
                    }
                }
                self.c.expect(Token::RBrace, "'}' after the outputs")?;
                return Ok(());
            } else if matches!(self.c.peek(), Some(Token::Value(_))) {
                self.node()?;
            } else {
                return Err(self.c.error("expected input, const, a node like '%3: ...' or output"));
            }
        }
    }

    fn constant(&mut self) -> Result<()> {
        let n = self.value_def()?;
        let name = self.c.optional_string();
        self.c.expect(Token::Colon, "':'")?;
        let ty = self.c.tensor_type()?;
        self.c.expect(Token::Equals, "'='")?;
        let data = if self.c.keyword("external") { None } else { Some(self.tensor_data(&ty)?) };
        let id = self.graph.add_weight(name, ty, data);
        self.ids.insert(n, id);
        Ok(())
    }

    fn tensor_data(&mut self, ty: &TensorType) -> Result<Tensor> {
        let start = self.c.pos;
        self.c.expect(Token::LBracket, "'[' or external")?;
        let mut items = Vec::new();
        if !self.c.eat(&Token::RBracket) {
            loop {
                items.push(self.c.next()?);
                if self.c.eat(&Token::RBracket) {
                    break;
                }
                self.c.expect(Token::Comma, "',' or ']'")?;
            }
        }
        let bad = |p: &mut Self| {
            p.c.pos = start;
            p.c.error(format!("constant data does not fit {ty}"))
        };
        let data = match ty.dtype {
            DType::F32 | DType::F16 => {
                let v: Option<Vec<f32>> = items
                    .iter()
                    .map(|t| match t {
                        Token::Float(s) => s.parse::<f32>().ok(),
                        Token::Int(i) => Some(*i as f32),
                        _ => None,
                    })
                    .collect();
                // Every half is an f32 exactly (the printer's text), so this conversion is exact.
                v.map(|v| TensorData::F32(v).with_float_dtype(ty.dtype))
            }
            DType::I64 => {
                let v: Option<Vec<i64>> = items.iter().map(|t| if let Token::Int(i) = t { Some(*i) } else { None }).collect();
                v.map(TensorData::I64)
            }
            DType::Bool => {
                let v: Option<Vec<bool>> = items
                    .iter()
                    .map(|t| match t {
                        Token::Ident(s) if s == "true" => Some(true),
                        Token::Ident(s) if s == "false" => Some(false),
                        _ => None,
                    })
                    .collect();
                v.map(TensorData::Bool)
            }
        };
        let Some(data) = data else {
            return Err(bad(self));
        };
        Tensor::new(ty.shape.clone(), data).map_err(|_| bad(self))
    }

    fn node(&mut self) -> Result<()> {
        let n = self.value_def()?;
        let name = self.c.optional_string();
        self.c.expect(Token::Colon, "':'")?;
        let ty = self.c.tensor_type()?;
        self.c.expect(Token::Equals, "'='")?;
        let op_pos = self.c.pos;
        let op_name = match self.c.next()? {
            Token::Ident(s) => s,
            _ => {
                self.c.pos -= 1;
                return Err(self.c.error("expected an op name"));
            }
        };
        self.c.expect(Token::LParen, "'('")?;
        let mut inputs = Vec::new();
        if !self.c.eat(&Token::RParen) {
            loop {
                inputs.push(self.value_ref()?);
                if self.c.eat(&Token::RParen) {
                    break;
                }
                self.c.expect(Token::Comma, "',' or ')'")?;
            }
        }
        let attrs = self.c.attr_list()?;
        let loc = if self.c.keyword("at") { Some(self.c.string()?) } else { None };
        let op = Op::from_parts(&op_name, attrs).map_err(|e| {
            self.c.pos = op_pos;
            self.c.error(e.to_string())
        })?;
        let id = self.graph.add_node_typed(op, inputs, loc, ty);
        self.graph.values[id.index()].name = name;
        self.ids.insert(n, id);
        Ok(())
    }
}
