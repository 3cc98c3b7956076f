//! A cursor over lexed tokens with the helpers both IR parsers share.

use logos::Logos;

use super::lexer::Token;
use crate::error::{IrError, Result};
use crate::graph::Attr;
use crate::types::{DType, TensorType};

pub(crate) struct Cursor<'a> {
    pub text: &'a str,
    pub tokens: Vec<(Token, usize)>,
    pub pos: usize,
}

pub(crate) fn error_at(text: &str, offset: usize, message: impl Into<String>) -> IrError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    IrError::Parse { line, column, message: message.into() }
}

impl<'a> Cursor<'a> {
    /// Lexes the whole text; an unknown character is a located error.
    pub fn new(text: &'a str) -> Result<Cursor<'a>> {
        let mut tokens = Vec::new();
        for (tok, span) in Token::lexer(text).spanned() {
            match tok {
                Ok(t) => tokens.push((t, span.start)),
                Err(()) => return Err(error_at(text, span.start, "unexpected character")),
            }
        }
        Ok(Cursor { text, tokens, pos: 0 })
    }

    /// An error located at token `pos`.
    pub fn error_at_token(&self, pos: usize, message: impl Into<String>) -> IrError {
        let offset = self.tokens.get(pos).map(|t| t.1).unwrap_or(self.text.len());
        error_at(self.text, offset, message)
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    pub fn error(&self, message: impl Into<String>) -> IrError {
        let offset = self.tokens.get(self.pos).map(|t| t.1).unwrap_or(self.text.len());
        error_at(self.text, offset, message)
    }

    pub fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.0)
    }

    pub fn next(&mut self) -> Result<Token> {
        let t = self.tokens.get(self.pos).map(|t| t.0.clone()).ok_or_else(|| self.error("unexpected end of text"))?;
        self.pos += 1;
        Ok(t)
    }

    pub fn expect(&mut self, want: Token, what: &str) -> Result<()> {
        match self.peek() {
            Some(t) if *t == want => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    pub fn eat(&mut self, want: &Token) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn string(&mut self) -> Result<String> {
        match self.next()? {
            Token::Str(s) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a quoted string"))
            }
        }
    }

    pub fn optional_string(&mut self) -> Option<String> {
        if let Some(Token::Str(s)) = self.peek() {
            let s = s.clone();
            self.pos += 1;
            Some(s)
        } else {
            None
        }
    }

    pub fn uint(&mut self) -> Result<usize> {
        match self.next()? {
            Token::Int(v) if v >= 0 => Ok(v as usize),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a non-negative integer"))
            }
        }
    }

    pub fn tensor_type(&mut self) -> Result<TensorType> {
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
    /// An op's attribute list, `{key=value, ...}`, or nothing.
    pub fn attr_list(&mut self) -> Result<Vec<(String, Attr)>> {
        let mut attrs = Vec::new();
        if !self.eat(&Token::LBrace) {
            return Ok(attrs);
        }
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
                return Ok(attrs);
            }
            self.expect(Token::Comma, "',' or '}'")?;
        }
    }

    fn attr(&mut self) -> Result<Attr> {
        match self.next()? {
            Token::Int(v) => Ok(Attr::Int(v)),
            Token::Float(s) => s.parse::<f32>().map(Attr::Float).map_err(|_| self.error("bad float")),
            Token::Ident(s) => Ok(Attr::Ident(s)),
            Token::Str(s) => Ok(Attr::Str(s)),
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
