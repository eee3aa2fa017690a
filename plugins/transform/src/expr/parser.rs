//! Parses tokens into an [`Expr`] tree, by PostgreSQL's operator precedence (lowest first):
//! `OR`, `AND`, `NOT`, `IS [NOT] NULL`, comparisons, `||`, `+ -`, `* / %`, unary `-`, `::`.

use super::eval::Func;
use super::lexer::{tokens, Token};
use super::value::{Arith, SqlType, Value};
use super::ExprError;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// `%d`: the column's value.
    Column,
    /// A string literal holding `%d`: the pieces around each `%d`.
    Template(Vec<String>),
    /// `-x`.
    Neg(Box<Expr>),
    /// `NOT x`.
    Not(Box<Expr>),
    /// `a + b` and the other arithmetic operators.
    Arith(Arith, Box<Expr>, Box<Expr>),
    /// `a || b`.
    Concat(Box<Expr>, Box<Expr>),
    /// `a = b` and the other comparisons.
    Compare(Cmp, Box<Expr>, Box<Expr>),
    /// `a AND b`.
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`.
    Or(Box<Expr>, Box<Expr>),
    /// `x IS NULL` (`true`) or `x IS NOT NULL` (`false`).
    IsNull(Box<Expr>, bool),
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The operand of a simple `CASE x WHEN v ...`.
        operand: Option<Box<Expr>>,
        /// `(WHEN, THEN)` pairs.
        whens: Vec<(Expr, Expr)>,
        /// `ELSE`, NULL when absent.
        otherwise: Option<Box<Expr>>,
    },
    /// `CAST(x AS type)`, `x::type`.
    Cast(Box<Expr>, SqlType),
    /// A function call.
    Call(Func, Vec<Expr>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`, `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Expr {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let mut p = Parser {
            tokens: tokens(text)?,
            pos: 0,
            len: text.len(),
        };
        let expr = p.or()?;
        match p.peek() {
            None => Ok(expr),
            Some(t) => Err(p.error(format!("unexpected {}", show(t)))),
        }
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Number(n) => n.clone(),
        Token::Str(s) => format!("'{s}'"),
        Token::Value => "%d".into(),
        Token::Name(n) => n.to_uppercase(),
        Token::Sym(s) => (*s).into(),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    len: usize,
}

type Parsed = Result<Expr, ExprError>;

fn boxed(a: Expr, b: Expr) -> (Box<Expr>, Box<Expr>) {
    (Box::new(a), Box::new(b))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.len, |(_, o)| *o)
    }

    fn error(&self, message: impl Into<String>) -> ExprError {
        ExprError::at(self.offset(), message)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn at_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Token::Sym(x)) if *x == s)
    }

    fn at_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(x)) if x == w)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        let hit = self.at_sym(s);
        self.pos += hit as usize;
        hit
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let hit = self.at_word(w);
        self.pos += hit as usize;
        hit
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ExprError> {
        match self.eat_sym(s) {
            true => Ok(()),
            false => Err(self.error(format!("expected {s}"))),
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), ExprError> {
        match self.eat_word(w) {
            true => Ok(()),
            false => Err(self.error(format!("expected {}", w.to_uppercase()))),
        }
    }

    fn or(&mut self) -> Parsed {
        let mut left = self.and()?;
        while self.eat_word("or") {
            let (a, b) = boxed(left, self.and()?);
            left = Expr::Or(a, b);
        }
        Ok(left)
    }

    fn and(&mut self) -> Parsed {
        let mut left = self.not()?;
        while self.eat_word("and") {
            let (a, b) = boxed(left, self.not()?);
            left = Expr::And(a, b);
        }
        Ok(left)
    }

    fn not(&mut self) -> Parsed {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.is_null()
    }

    fn is_null(&mut self) -> Parsed {
        let mut left = self.comparison()?;
        while self.eat_word("is") {
            let negated = self.eat_word("not");
            self.expect_word("null")?;
            left = Expr::IsNull(Box::new(left), !negated);
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Parsed {
        let left = self.concat()?;
        let op = match self.peek() {
            Some(Token::Sym("=")) => Cmp::Eq,
            Some(Token::Sym("<>" | "!=")) => Cmp::Ne,
            Some(Token::Sym("<")) => Cmp::Lt,
            Some(Token::Sym("<=")) => Cmp::Le,
            Some(Token::Sym(">")) => Cmp::Gt,
            Some(Token::Sym(">=")) => Cmp::Ge,
            _ => return Ok(left),
        };
        self.pos += 1;
        let (a, b) = boxed(left, self.concat()?);
        Ok(Expr::Compare(op, a, b))
    }

    fn concat(&mut self) -> Parsed {
        let mut left = self.additive()?;
        while self.eat_sym("||") {
            let (a, b) = boxed(left, self.additive()?);
            left = Expr::Concat(a, b);
        }
        Ok(left)
    }

    fn additive(&mut self) -> Parsed {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym("+")) => Arith::Add,
                Some(Token::Sym("-")) => Arith::Sub,
                _ => return Ok(left),
            };
            self.pos += 1;
            let (a, b) = boxed(left, self.multiplicative()?);
            left = Expr::Arith(op, a, b);
        }
    }

    fn multiplicative(&mut self) -> Parsed {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym("*")) => Arith::Mul,
                Some(Token::Sym("/")) => Arith::Div,
                Some(Token::Sym("%")) => Arith::Rem,
                _ => return Ok(left),
            };
            self.pos += 1;
            let (a, b) = boxed(left, self.unary()?);
            left = Expr::Arith(op, a, b);
        }
    }

    fn unary(&mut self) -> Parsed {
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        let mut expr = self.primary()?;
        while self.eat_sym("::") {
            expr = Expr::Cast(Box::new(expr), self.sql_type()?);
        }
        Ok(expr)
    }

    fn primary(&mut self) -> Parsed {
        let offset = self.offset();
        match self.next() {
            Some(Token::Value) => Ok(Expr::Column),
            Some(Token::Number(n)) => Value::parse_number(&n)
                .map(Expr::Lit)
                .ok_or_else(|| ExprError::at(offset, format!("bad number {n}"))),
            Some(Token::Str(s)) => Ok(string(s)),
            Some(Token::Sym("(")) => {
                let inner = self.or()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Some(Token::Name(n)) => self.named(&n, offset),
            Some(t) => Err(ExprError::at(offset, format!("unexpected {}", show(&t)))),
            None => Err(ExprError::at(offset, "unexpected end of expression")),
        }
    }

    fn named(&mut self, name: &str, offset: usize) -> Parsed {
        match name {
            "null" => Ok(Expr::Lit(Value::Null)),
            "true" => Ok(Expr::Lit(Value::Bool(true))),
            "false" => Ok(Expr::Lit(Value::Bool(false))),
            "case" => self.case(),
            "cast" => {
                self.expect_sym("(")?;
                let inner = self.or()?;
                self.expect_word("as")?;
                let to = self.sql_type()?;
                self.expect_sym(")")?;
                Ok(Expr::Cast(Box::new(inner), to))
            }
            _ if self.at_sym("(") => self.call(name, offset),
            _ => Err(ExprError::at(
                offset,
                format!("unknown name {name:?}: the column's value is %d"),
            )),
        }
    }

    fn case(&mut self) -> Parsed {
        let operand = match self.at_word("when") {
            true => None,
            false => Some(Box::new(self.or()?)),
        };
        let mut whens = Vec::new();
        while self.eat_word("when") {
            let when = self.or()?;
            self.expect_word("then")?;
            whens.push((when, self.or()?));
        }
        if whens.is_empty() {
            return Err(self.error("CASE needs at least one WHEN"));
        }
        let otherwise = match self.eat_word("else") {
            true => Some(Box::new(self.or()?)),
            false => None,
        };
        self.expect_word("end")?;
        Ok(Expr::Case {
            operand,
            whens,
            otherwise,
        })
    }

    fn call(&mut self, name: &str, offset: usize) -> Parsed {
        self.expect_sym("(")?;
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.or()?);
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        let func = Func::lookup(name, args.len()).map_err(|m| ExprError::at(offset, m))?;
        Ok(Expr::Call(func, args))
    }

    /// A type name (`double precision`, `character varying`) and its `(n[, m])` modifiers.
    fn sql_type(&mut self) -> Result<SqlType, ExprError> {
        let offset = self.offset();
        let mut words = match self.next() {
            Some(Token::Name(n)) => n,
            _ => return Err(ExprError::at(offset, "expected a type name")),
        };
        for (first, second) in [("double", "precision"), ("character", "varying")] {
            if words == first && self.eat_word(second) {
                words = format!("{first} {second}");
            }
        }
        let mut modifiers = Vec::new();
        if self.eat_sym("(") {
            loop {
                match self.next() {
                    Some(Token::Number(n)) if n.parse::<u32>().is_ok() => {
                        modifiers.push(n.parse().unwrap_or(0))
                    }
                    _ => return Err(self.error("expected a type modifier")),
                }
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        SqlType::parse(&words, &modifiers).ok_or_else(|| {
            ExprError::at(
                offset,
                format!(
                    "unsupported type {words}: use boolean, smallint, integer, bigint, numeric, real, double precision, text or varchar"
                ),
            )
        })
    }
}

/// A string literal: plain, or a template when it holds `%d`.
fn string(s: String) -> Expr {
    if s.contains("%d") {
        Expr::Template(s.split("%d").map(str::to_string).collect())
    } else {
        Expr::Lit(Value::Text(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_postgresql() {
        let e = Expr::parse("%d + 1 * 2 || 'x'").unwrap();
        let Expr::Concat(left, _) = e else {
            panic!("|| binds looser than +: {e:?}")
        };
        assert!(matches!(*left, Expr::Arith(Arith::Add, _, _)), "{left:?}");
        let e = Expr::parse("NOT %d IS NULL AND %d > 1 OR FALSE").unwrap();
        assert!(matches!(e, Expr::Or(..)), "{e:?}");
        assert!(matches!(
            Expr::parse("-%d::int").unwrap(),
            Expr::Neg(inner) if matches!(*inner, Expr::Cast(..))
        ));
    }

    #[test]
    fn errors_name_the_position_and_the_problem() {
        let err = Expr::parse("%d + ").unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.message.contains("unexpected end"), "{err}");
        let err = Expr::parse("amount + 1").unwrap_err();
        assert!(err.message.contains("the column's value is %d"), "{err}");
        let err = Expr::parse("%d::date").unwrap_err();
        assert!(err.message.contains("unsupported type date"), "{err}");
        assert!(Expr::parse("CASE END").is_err());
        assert!(Expr::parse("%d %d")
            .unwrap_err()
            .message
            .contains("unexpected %d"));
        assert!(Expr::parse("frobnicate(%d)")
            .unwrap_err()
            .message
            .contains("frobnicate"));
    }

    #[test]
    fn a_string_with_the_value_is_a_template() {
        assert_eq!(
            Expr::parse("'<%d>'").unwrap(),
            Expr::Template(vec!["<".into(), ">".into()])
        );
    }
}
