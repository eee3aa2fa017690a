//! SynchDB-style transform expressions: a small SQL scalar expression language over one
//! column's value (`%d`), parsed once and evaluated per value, the same way in the snapshot and
//! in CDC.
//!
//! Supported: numbers, `'strings'` (`%d` inside one is replaced by the value's text), `NULL`,
//! `TRUE`/`FALSE`; `+ - * / %`, `||`, `= <> != < > <= >=`, `AND OR NOT`, `IS [NOT] NULL`;
//! `CASE [x] WHEN .. THEN .. [ELSE ..] END`; `CAST(x AS type)` and `x::type`; and the functions
//! in [`eval`].

mod eval;
mod lexer;
mod parser;
mod value;

pub use parser::Expr;
pub use value::Value;

/// An expression that does not parse, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl ExprError {
    pub(crate) fn at(offset: usize, message: impl Into<String>) -> Self {
        ExprError {
            offset,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for ExprError {}
