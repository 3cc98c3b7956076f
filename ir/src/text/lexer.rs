//! Tokens of the text IR.

use logos::Logos;

#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"(#|//)[^\n]*", allow_greedy = true))]
pub enum Token {
    #[regex(r"%[0-9]+", |lex| lex.slice()[1..].parse::<u32>().ok())]
    Value(u32),
    /// A loop IR buffer, `%name`.
    #[regex(r"%[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice()[1..].to_string())]
    Buffer(String),
    #[regex(r#""([^"\\]|\\.)*""#, |lex| unescape(lex.slice()))]
    Str(String),
    #[regex(r"-?[0-9]+", |lex| lex.slice().parse::<i64>().ok(), priority = 3)]
    Int(i64),
    /// Kept as text so that each dtype parses it at its own precision (no double rounding).
    #[regex(r"-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?", |lex| lex.slice().to_string())]
    #[regex(r"-?[0-9]+[eE][-+]?[0-9]+", |lex| lex.slice().to_string())]
    #[token("inf", |lex| lex.slice().to_string())]
    #[token("-inf", |lex| lex.slice().to_string())]
    #[token("NaN", |lex| lex.slice().to_string())]
    Float(String),
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string(), priority = 1)]
    Ident(String),
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token("=")]
    Equals,
    /// Separates the steps of a fused op's body.
    #[token(";")]
    Semicolon,
    // Loop IR arithmetic and ranges.
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%", priority = 1)]
    Percent,
    #[token("..")]
    DotDot,
}

/// Undoes the printer's escaping of `"` and `\` inside a quoted string.
fn unescape(quoted: &str) -> String {
    let inner = &quoted[1..quoted.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes a string so that the lexer reads it back unchanged.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}
