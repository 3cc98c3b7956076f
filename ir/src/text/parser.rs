//! Parses text IR back into a graph.

use logos::Logos;

use super::lexer::Token;
use crate::error::{IrError, Result};
use crate::graph::{Attr, Graph, Op, ValueId};
use crate::tensor::{Tensor, TensorData};
use crate::types::{DType, TensorType};

/// Parses one graph. Value ids in the text are mapped to fresh ids in definition order,
/// so text printed from a graph gets its own ids back.
pub fn parse_graph(text: &str) -> Result<Graph> {
    let mut tokens = Vec::new();
    for (tok, span) in Token::lexer(text).spanned() {
        match tok {
            Ok(t) => tokens.push((t, span.start)),
            Err(()) => return Err(error_at(text, span.start, "unexpected character")),
        }
    }
    let mut p = Parser { text, tokens, pos: 0, ids: Default::default(), graph: Graph::default() };
    p.graph()?;
    if p.pos < p.tokens.len() {
        return Err(p.error("text after the end of the graph"));
    }
    crate::graph::verify::verify(&p.graph)?;
    Ok(p.graph)
}

fn error_at(text: &str, offset: usize, message: impl Into<String>) -> IrError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    IrError::Parse { line, column, message: message.into() }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    pos: usize,
    /// Text id to graph id.
    ids: std::collections::HashMap<u32, ValueId>,
    graph: Graph,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> IrError {
        let offset = self.tokens.get(self.pos).map(|t| t.1).unwrap_or(self.text.len());
        error_at(self.text, offset, message)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.0)
    }

    fn next(&mut self) -> Result<Token> {
        let t = self.tokens.get(self.pos).map(|t| t.0.clone()).ok_or_else(|| self.error("unexpected end of text"))?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<()> {
        match self.peek() {
            Some(t) if *t == want => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    fn eat(&mut self, want: &Token) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<String> {
        match self.next()? {
            Token::Str(s) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a quoted string"))
            }
        }
    }

    fn optional_string(&mut self) -> Option<String> {
        if let Some(Token::Str(s)) = self.peek() {
            let s = s.clone();
            self.pos += 1;
            Some(s)
        } else {
            None
        }
    }

    fn value_ref(&mut self) -> Result<ValueId> {
        match self.next()? {
            Token::Value(n) => self.ids.get(&n).copied().ok_or_else(|| {
                self.pos -= 1;
                self.error(format!("use of undefined value %{n}"))
            }),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a value like %3"))
            }
        }
    }

    fn value_def(&mut self) -> Result<u32> {
        match self.next()? {
            Token::Value(n) if self.ids.contains_key(&n) => {
                self.pos -= 1;
                Err(self.error(format!("value %{n} is defined twice")))
            }
            Token::Value(n) => Ok(n),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a value like %3"))
            }
        }
    }

    fn uint(&mut self) -> Result<usize> {
        match self.next()? {
            Token::Int(v) if v >= 0 => Ok(v as usize),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a non-negative integer"))
            }
        }
    }

    fn tensor_type(&mut self) -> Result<TensorType> {
        let dtype = match self.next()? {
            Token::Ident(name) => DType::from_name(&name),
            _ => None,
        };
        let Some(dtype) = dtype else {
            self.pos -= 1;
            return Err(self.error("expected a dtype (f32, f16, i64, bool)"));
        };
        self.expect(Token::LBracket, "'['")?;
        let mut shape = Vec::new();
        if !self.eat(&Token::RBracket) {
            loop {
                shape.push(self.uint()?);
                if self.eat(&Token::RBracket) {
                    break;
                }
                self.expect(Token::Comma, "',' or ']'")?;
            }
        }
        Ok(TensorType::new(dtype, shape))
    }

    fn graph(&mut self) -> Result<()> {
        if !self.keyword("graph") {
            return Err(self.error("expected 'graph'"));
        }
        self.graph.name = self.string()?;
        self.expect(Token::LBrace, "'{'")?;
        loop {
            if self.keyword("input") {
                let n = self.value_def()?;
                let name = self.optional_string().unwrap_or_default();
                self.expect(Token::Colon, "':'")?;
                let ty = self.tensor_type()?;
                let id = self.graph.add_input(name, ty);
                self.ids.insert(n, id);
            } else if self.keyword("const") {
                self.constant()?;
            } else if self.keyword("output") {
                loop {
                    let v = self.value_ref()?;
                    self.graph.outputs.push(v);
                    if !self.eat(&Token::Comma) {
                        break;
                    }
                }
                self.expect(Token::RBrace, "'}' after the outputs")?;
                return Ok(());
            } else if matches!(self.peek(), Some(Token::Value(_))) {
                self.node()?;
            } else {
                return Err(self.error("expected input, const, a node like '%3: ...' or output"));
            }
        }
    }

    fn constant(&mut self) -> Result<()> {
        let n = self.value_def()?;
        let name = self.optional_string();
        self.expect(Token::Colon, "':'")?;
        let ty = self.tensor_type()?;
        self.expect(Token::Equals, "'='")?;
        let data = if self.keyword("external") { None } else { Some(self.tensor_data(&ty)?) };
        let id = self.graph.add_weight(name, ty, data);
        self.ids.insert(n, id);
        Ok(())
    }

    fn tensor_data(&mut self, ty: &TensorType) -> Result<Tensor> {
        let start = self.pos;
        self.expect(Token::LBracket, "'[' or external")?;
        let mut items = Vec::new();
        if !self.eat(&Token::RBracket) {
            loop {
                items.push(self.next()?);
                if self.eat(&Token::RBracket) {
                    break;
                }
                self.expect(Token::Comma, "',' or ']'")?;
            }
        }
        let bad = |p: &mut Self| {
            p.pos = start;
            p.error(format!("constant data does not fit {ty}"))
        };
        let data = match ty.dtype {
            DType::F32 => {
                let v: Option<Vec<f32>> = items
                    .iter()
                    .map(|t| match t {
                        Token::Float(s) => s.parse::<f32>().ok(),
                        Token::Int(i) => Some(*i as f32),
                        _ => None,
                    })
                    .collect();
                v.map(TensorData::F32)
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
            DType::F16 => None,
        };
        let Some(data) = data else { return Err(bad(self)) };
        Tensor::new(ty.shape.clone(), data).map_err(|_| bad(self))
    }

    fn node(&mut self) -> Result<()> {
        let n = self.value_def()?;
        let name = self.optional_string();
        self.expect(Token::Colon, "':'")?;
        let ty = self.tensor_type()?;
        self.expect(Token::Equals, "'='")?;
        let op_pos = self.pos;
        let op_name = match self.next()? {
            Token::Ident(s) => s,
            _ => {
                self.pos -= 1;
                return Err(self.error("expected an op name"));
            }
        };
        self.expect(Token::LParen, "'('")?;
        let mut inputs = Vec::new();
        if !self.eat(&Token::RParen) {
            loop {
                inputs.push(self.value_ref()?);
                if self.eat(&Token::RParen) {
                    break;
                }
                self.expect(Token::Comma, "',' or ')'")?;
            }
        }
        let mut attrs = Vec::new();
        if self.eat(&Token::LBrace) {
            loop {
                let key = match self.next()? {
                    Token::Ident(k) => k,
                    _ => {
                        self.pos -= 1;
                        return Err(self.error("expected an attribute name"));
                    }
                };
                self.expect(Token::Equals, "'='")?;
                let value = self.attr()?;
                attrs.push((key, value));
                if self.eat(&Token::RBrace) {
                    break;
                }
                self.expect(Token::Comma, "',' or '}'")?;
            }
        }
        let loc = if self.keyword("at") { Some(self.string()?) } else { None };
        let op = Op::from_parts(&op_name, attrs).map_err(|e| {
            self.pos = op_pos;
            self.error(e.to_string())
        })?;
        let id = self.graph.add_node_typed(op, inputs, loc, ty);
        self.graph.values[id.index()].name = name;
        self.ids.insert(n, id);
        Ok(())
    }

    fn attr(&mut self) -> Result<Attr> {
        match self.next()? {
            Token::Int(v) => Ok(Attr::Int(v)),
            Token::Float(s) => s.parse::<f32>().map(Attr::Float).map_err(|_| self.error("bad float")),
            Token::Ident(s) => Ok(Attr::Ident(s)),
            Token::LBracket => {
                let mut v = Vec::new();
                if !self.eat(&Token::RBracket) {
                    loop {
                        match self.next()? {
                            Token::Int(i) => v.push(i),
                            _ => {
                                self.pos -= 1;
                                return Err(self.error("expected an integer"));
                            }
                        }
                        if self.eat(&Token::RBracket) {
                            break;
                        }
                        self.expect(Token::Comma, "',' or ']'")?;
                    }
                }
                Ok(Attr::Ints(v))
            }
            _ => {
                self.pos -= 1;
                Err(self.error("expected an attribute value"))
            }
        }
    }
}
