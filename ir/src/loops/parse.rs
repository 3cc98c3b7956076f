//! Parses loop IR text back into a function.

use super::{BinOp, BufKind, Expr, Func, Intrinsic, Loop, LoopKind, Stmt, VarId};
use crate::error::Result;
use crate::text::cursor::Cursor;
use crate::text::lexer::Token;
use crate::types::DType;

/// Parses one function and verifies it.
pub fn parse_func(text: &str) -> Result<Func> {
    let mut p = FuncParser { c: Cursor::new(text)?, f: Func::default(), scope: Vec::new() };
    p.func()?;
    if !p.c.at_end() {
        return Err(p.c.error("text after the end of the function"));
    }
    super::verify::verify(&p.f)?;
    Ok(p.f)
}

struct FuncParser<'a> {
    c: Cursor<'a>,
    f: Func,
    /// Loop variables in scope, innermost last.
    scope: Vec<VarId>,
}

impl FuncParser<'_> {
    fn ident(&mut self, what: &str) -> Result<String> {
        match self.c.next()? {
            Token::Ident(s) => Ok(s),
            _ => {
                self.c.pos -= 1;
                Err(self.c.error(format!("expected {what}")))
            }
        }
    }

    fn buffer_ref(&mut self) -> Result<super::BufId> {
        match self.c.next()? {
            Token::Buffer(name) => self.f.buffer_named(&name).ok_or_else(|| {
                self.c.pos -= 1;
                self.c.error(format!("unknown buffer %{name}"))
            }),
            _ => {
                self.c.pos -= 1;
                Err(self.c.error("expected a buffer like %x"))
            }
        }
    }

    fn int(&mut self) -> Result<i64> {
        match self.c.next()? {
            Token::Int(v) => Ok(v),
            _ => {
                self.c.pos -= 1;
                Err(self.c.error("expected an integer"))
            }
        }
    }

    /// `=[a,b,...]` of non-negative integers.
    fn usize_list(&mut self) -> Result<Vec<usize>> {
        self.c.expect(Token::Equals, "'='")?;
        self.c.expect(Token::LBracket, "'['")?;
        let mut v = Vec::new();
        while !self.c.eat(&Token::RBracket) {
            let x = self.int()?;
            if x < 0 {
                return Err(self.c.error("expected a non-negative integer"));
            }
            v.push(x as usize);
            self.c.eat(&Token::Comma);
        }
        Ok(v)
    }

    fn func(&mut self) -> Result<()> {
        if !self.c.keyword("func") {
            return Err(self.c.error("expected 'func'"));
        }
        self.f.name = self.c.string()?;
        self.c.expect(Token::LBrace, "'{'")?;
        loop {
            let kind = if self.c.keyword("param") {
                BufKind::Param
            } else if self.c.keyword("temp") {
                BufKind::Temp
            } else {
                break;
            };
            let name = match self.c.next()? {
                Token::Buffer(n) if self.f.buffer_named(&n).is_none() => n,
                Token::Buffer(n) => {
                    self.c.pos -= 1;
                    return Err(self.c.error(format!("buffer %{n} is declared twice")));
                }
                _ => {
                    self.c.pos -= 1;
                    return Err(self.c.error("expected a buffer name like %x"));
                }
            };
            self.c.expect(Token::Colon, "':'")?;
            let ty = self.c.tensor_type()?;
            let b = self.f.add_buffer(name, ty.dtype, ty.shape, kind);
            if self.c.keyword("view") {
                let view = self.usize_list()?;
                if !self.c.keyword("perm") {
                    return Err(self.c.error("expected 'perm' after the view"));
                }
                let perm = self.usize_list()?;
                self.f.buffers[b.index()].layout = Some(super::Layout { view, perm });
            }
        }
        self.f.body = self.block_until_brace()?;
        Ok(())
    }

    /// Statements up to and including the closing brace.
    fn block_until_brace(&mut self) -> Result<Vec<Stmt>> {
        let mut body = Vec::new();
        while !self.c.eat(&Token::RBrace) {
            body.push(self.stmt()?);
        }
        Ok(body)
    }

    fn stmt(&mut self) -> Result<Stmt> {
        if self.c.keyword("for") {
            let name = self.ident("a loop variable")?;
            if self.f.var_named(&name).is_some() {
                self.c.pos -= 1;
                return Err(self.c.error(format!("loop variable {name} is defined twice")));
            }
            if !self.c.keyword("in") {
                return Err(self.c.error("expected 'in'"));
            }
            if self.int()? != 0 {
                self.c.pos -= 1;
                return Err(self.c.error("loops start at 0"));
            }
            self.c.expect(Token::DotDot, "'..'")?;
            let extent = self.int()?;
            let kind = match self.c.peek() {
                Some(Token::Ident(k)) => {
                    let k = LoopKind::from_name(k).ok_or_else(|| self.c.error("expected a loop kind or '{'"))?;
                    self.c.pos += 1;
                    k
                }
                _ => LoopKind::Serial,
            };
            self.c.expect(Token::LBrace, "'{'")?;
            let var = self.f.add_var(&name);
            self.scope.push(var);
            let body = self.block_until_brace()?;
            self.scope.pop();
            return Ok(Stmt::For(Loop { var, extent, kind, body }));
        }
        if self.c.keyword("if") {
            let cond = self.expr()?;
            self.c.expect(Token::LBrace, "'{'")?;
            let then = self.block_until_brace()?;
            return Ok(Stmt::If { cond, then });
        }
        if self.c.keyword("prefetch") {
            let buf = self.buffer_ref()?;
            self.c.expect(Token::LBracket, "'['")?;
            let index = self.list(Token::RBracket)?;
            return Ok(Stmt::Prefetch { buf, index });
        }
        let buf = self.buffer_ref()?;
        self.c.expect(Token::LBracket, "'['")?;
        let index = self.list(Token::RBracket)?;
        self.c.expect(Token::Equals, "'='")?;
        let value = self.expr()?;
        Ok(Stmt::Store { buf, index, value })
    }

    /// Comma-separated expressions up to and including `close`.
    fn list(&mut self, close: Token) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        if self.c.eat(&close) {
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if self.c.eat(&close) {
                return Ok(out);
            }
            self.c.expect(Token::Comma, "',' or a closing bracket")?;
        }
    }

    fn expr(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        loop {
            let op = match self.c.peek() {
                Some(Token::Plus) => BinOp::Add,
                Some(Token::Minus) => BinOp::Sub,
                // Hand-written `i-1` lexes as `i` and `-1`: read it as a subtraction.
                Some(Token::Int(v)) if *v < 0 => {
                    let v = *v;
                    self.c.pos += 1;
                    e = Expr::bin(BinOp::Sub, e, Expr::Int(-v));
                    continue;
                }
                _ => return Ok(e),
            };
            self.c.pos += 1;
            let rhs = self.term()?;
            e = Expr::bin(op, e, rhs);
        }
    }

    fn term(&mut self) -> Result<Expr> {
        let mut e = self.atom()?;
        loop {
            let op = match self.c.peek() {
                Some(Token::Star) => BinOp::Mul,
                Some(Token::Slash) => BinOp::Div,
                Some(Token::Percent) => BinOp::Rem,
                _ => return Ok(e),
            };
            self.c.pos += 1;
            let rhs = self.atom()?;
            e = Expr::bin(op, e, rhs);
        }
    }

    fn atom(&mut self) -> Result<Expr> {
        let start = self.c.pos;
        match self.c.next()? {
            Token::Int(v) => Ok(Expr::Int(v)),
            Token::Float(s) => s.parse::<f32>().map(Expr::Float).map_err(|_| self.c.error("bad float")),
            Token::LParen => {
                let e = self.expr()?;
                self.c.expect(Token::RParen, "')'")?;
                Ok(e)
            }
            Token::Buffer(_) => {
                self.c.pos = start;
                let buf = self.buffer_ref()?;
                self.c.expect(Token::LBracket, "'['")?;
                let index = self.list(Token::RBracket)?;
                Ok(Expr::Load { buf, index })
            }
            Token::Ident(name) if name == "true" || name == "false" => Ok(Expr::Bool(name == "true")),
            Token::Ident(name) if self.c.eat(&Token::LParen) => {
                let args = self.list(Token::RParen)?;
                let arity_error = |c: &Cursor, n: usize| c.error_at_token(start, format!("{name} takes {n} operands, got {}", args.len()));
                if let Some(op) = BinOp::ALL.into_iter().find(|o| o.name() == name) {
                    let [a, b]: [Expr; 2] = args.clone().try_into().map_err(|_| arity_error(&self.c, 2))?;
                    return Ok(Expr::bin(op, a, b));
                }
                if let Some(f) = Intrinsic::ALL.into_iter().find(|i| i.name() == name) {
                    if args.len() != f.arity() {
                        return Err(arity_error(&self.c, f.arity()));
                    }
                    return Ok(Expr::call(f, args));
                }
                if name == "select" {
                    let [c, a, b]: [Expr; 3] = args.clone().try_into().map_err(|_| arity_error(&self.c, 3))?;
                    return Ok(Expr::select(c, a, b));
                }
                if let Some(to) = DType::from_name(&name) {
                    let [x]: [Expr; 1] = args.clone().try_into().map_err(|_| arity_error(&self.c, 1))?;
                    return Ok(Expr::cast(to, x));
                }
                self.c.pos = start;
                Err(self.c.error(format!("unknown function {name}")))
            }
            Token::Ident(name) => match self.scope.iter().rev().find(|&&v| self.f.vars[v.index()] == name) {
                Some(&v) => Ok(Expr::Var(v)),
                None => {
                    self.c.pos = start;
                    Err(self.c.error(format!("{name} is not a loop variable in scope")))
                }
            },
            _ => {
                self.c.pos = start;
                Err(self.c.error("expected an expression"))
            }
        }
    }
}
