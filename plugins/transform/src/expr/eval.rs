//! Evaluates an [`Expr`] over one value, with SQL's NULL rules, and the functions:
//! `coalesce`, `nullif`, `upper`, `lower`, `length`, `trim`, `ltrim`, `rtrim`, `substr`
//! (`substring`), `replace`, `concat`, `left`, `right`, `abs` and `round`.

use std::cmp::Ordering;

use super::parser::{Cmp, Expr};
use super::value::{arith, compare, Arith, SqlType, Value};

/// A function the language knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `coalesce(a, b, ...)`: the first non-NULL argument.
    Coalesce,
    /// `nullif(a, b)`: NULL when `a = b`, else `a`.
    Nullif,
    /// `upper(s)`.
    Upper,
    /// `lower(s)`.
    Lower,
    /// `length(s)`, `char_length(s)`: characters.
    Length,
    /// `trim(s)`, `btrim(s)`: spaces removed at both ends.
    Trim,
    /// `ltrim(s)`.
    Ltrim,
    /// `rtrim(s)`.
    Rtrim,
    /// `substr(s, from [, count])`, 1-based as in PostgreSQL.
    Substr,
    /// `replace(s, from, to)`.
    Replace,
    /// `concat(a, ...)`: NULLs left out.
    Concat,
    /// `left(s, n)`.
    Left,
    /// `right(s, n)`.
    Right,
    /// `abs(x)`.
    Abs,
    /// `round(x [, places])`.
    Round,
}

impl Func {
    /// The function called `name` with `args` arguments.
    pub fn lookup(name: &str, args: usize) -> Result<Func, String> {
        let (func, min, max) = match name {
            "coalesce" => (Func::Coalesce, 1, usize::MAX),
            "nullif" => (Func::Nullif, 2, 2),
            "upper" => (Func::Upper, 1, 1),
            "lower" => (Func::Lower, 1, 1),
            "length" | "char_length" => (Func::Length, 1, 1),
            "trim" | "btrim" => (Func::Trim, 1, 1),
            "ltrim" => (Func::Ltrim, 1, 1),
            "rtrim" => (Func::Rtrim, 1, 1),
            "substr" | "substring" => (Func::Substr, 2, 3),
            "replace" => (Func::Replace, 3, 3),
            "concat" => (Func::Concat, 1, usize::MAX),
            "left" => (Func::Left, 2, 2),
            "right" => (Func::Right, 2, 2),
            "abs" => (Func::Abs, 1, 1),
            "round" => (Func::Round, 1, 2),
            _ => return Err(format!("unknown function {name}()")),
        };
        if args < min || args > max {
            return Err(
                format!("{name}() takes {min} to {max} arguments, not {args}")
                    .replace(&format!("{min} to {min} "), &format!("{min} ")),
            );
        }
        Ok(func)
    }
}

impl Expr {
    /// The expression's value for the column value `value` (`Value::Text` or `Value::Null`).
    pub fn eval(&self, value: &Value) -> Result<Value, String> {
        match self {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Column => Ok(value.clone()),
            Expr::Template(parts) => Ok(match value.to_text() {
                Some(text) => Value::Text(parts.join(&text)),
                None => Value::Null,
            }),
            Expr::Neg(x) => arith(Arith::Sub, &Value::Int(0), &x.eval(value)?),
            Expr::Not(x) => Ok(match x.eval(value)?.truth()? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            }),
            Expr::Arith(op, a, b) => arith(*op, &a.eval(value)?, &b.eval(value)?),
            Expr::Concat(a, b) => Ok(match (a.eval(value)?.to_text(), b.eval(value)?.to_text()) {
                (Some(x), Some(y)) => Value::Text(x + &y),
                _ => Value::Null,
            }),
            Expr::Compare(op, a, b) => comparison(*op, &a.eval(value)?, &b.eval(value)?),
            Expr::And(a, b) => logic(a.eval(value)?.truth()?, || b.eval(value)?.truth(), false),
            Expr::Or(a, b) => logic(a.eval(value)?.truth()?, || b.eval(value)?.truth(), true),
            Expr::IsNull(x, is) => Ok(Value::Bool((x.eval(value)? == Value::Null) == *is)),
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => case(operand.as_deref(), whens, otherwise.as_deref(), value),
            Expr::Cast(x, to) => x.eval(value)?.cast(*to),
            Expr::Call(func, args) => {
                let args: Vec<Value> = args
                    .iter()
                    .map(|a| a.eval(value))
                    .collect::<Result<_, _>>()?;
                call(*func, &args)
            }
        }
    }
}

fn comparison(op: Cmp, a: &Value, b: &Value) -> Result<Value, String> {
    if *a == Value::Null || *b == Value::Null {
        return Ok(Value::Null);
    }
    let ord = compare(a, b)?;
    Ok(Value::Bool(match op {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    }))
}

/// `AND` (`decisive = false`) or `OR` (`decisive = true`) with three-valued logic; the right
/// side is evaluated only when the left does not decide.
fn logic(
    left: Option<bool>,
    right: impl FnOnce() -> Result<Option<bool>, String>,
    decisive: bool,
) -> Result<Value, String> {
    if left == Some(decisive) {
        return Ok(Value::Bool(decisive));
    }
    Ok(match (left, right()?) {
        (_, Some(r)) if r == decisive => Value::Bool(decisive),
        (Some(_), Some(_)) => Value::Bool(!decisive),
        _ => Value::Null,
    })
}

fn case(
    operand: Option<&Expr>,
    whens: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    value: &Value,
) -> Result<Value, String> {
    let subject = operand.map(|o| o.eval(value)).transpose()?;
    for (when, then) in whens {
        let w = when.eval(value)?;
        let hit = match &subject {
            Some(s) => comparison(Cmp::Eq, s, &w)? == Value::Bool(true),
            None => w.truth()? == Some(true),
        };
        if hit {
            return then.eval(value);
        }
    }
    otherwise.map_or(Ok(Value::Null), |e| e.eval(value))
}

fn text(v: &Value) -> String {
    v.to_text().unwrap_or_default()
}

fn int(v: &Value) -> Result<i64, String> {
    match v.cast(SqlType::Int(64))? {
        Value::Int(i) => Ok(i as i64),
        _ => Err("expected an integer".into()),
    }
}

fn call(func: Func, args: &[Value]) -> Result<Value, String> {
    let strict = !matches!(func, Func::Coalesce | Func::Concat | Func::Nullif);
    if strict && args.contains(&Value::Null) {
        return Ok(Value::Null);
    }
    let s = || text(&args[0]);
    Ok(match func {
        Func::Coalesce => args
            .iter()
            .find(|a| **a != Value::Null)
            .cloned()
            .unwrap_or(Value::Null),
        Func::Nullif => match comparison(Cmp::Eq, &args[0], &args[1])? {
            Value::Bool(true) => Value::Null,
            _ => args[0].clone(),
        },
        Func::Concat => Value::Text(args.iter().filter_map(Value::to_text).collect()),
        Func::Upper => Value::Text(s().to_uppercase()),
        Func::Lower => Value::Text(s().to_lowercase()),
        Func::Length => Value::Int(s().chars().count() as i128),
        Func::Trim => Value::Text(s().trim_matches(' ').to_string()),
        Func::Ltrim => Value::Text(s().trim_start_matches(' ').to_string()),
        Func::Rtrim => Value::Text(s().trim_end_matches(' ').to_string()),
        Func::Substr => substr(&s(), int(&args[1])?, args.get(2).map(int).transpose()?)?,
        Func::Replace => Value::Text(s().replace(&text(&args[1]), &text(&args[2]))),
        Func::Left => Value::Text(left(&s(), int(&args[1])?)),
        Func::Right => {
            let reversed: String = s().chars().rev().collect();
            Value::Text(left(&reversed, int(&args[1])?).chars().rev().collect())
        }
        Func::Abs => match arith(Arith::Sub, &Value::Int(0), &args[0])? {
            neg if compare(&args[0], &Value::Int(0))? == Ordering::Less => neg,
            _ => arith(Arith::Add, &Value::Int(0), &args[0])?,
        },
        Func::Round => {
            let places = args.get(1).map(int).transpose()?.unwrap_or(0);
            let places =
                u32::try_from(places).map_err(|_| "round() to negative places is not supported")?;
            let scale = Some(places);
            match args[0].cast(SqlType::Numeric(scale))? {
                Value::Dec(d, 0) => Value::Int(d),
                other => other,
            }
        }
    })
}

/// `substr(s, from, count)`: characters from 1-based `from`, as PostgreSQL counts them.
fn substr(s: &str, from: i64, count: Option<i64>) -> Result<Value, String> {
    if count.is_some_and(|c| c < 0) {
        return Err("negative substring length not allowed".into());
    }
    let start = from.max(1);
    let end = count.map(|c| from.saturating_add(c));
    let taken = s
        .chars()
        .enumerate()
        .map(|(i, c)| (i as i64 + 1, c))
        .filter(|(i, _)| *i >= start && end.is_none_or(|e| *i < e))
        .map(|(_, c)| c)
        .collect();
    Ok(Value::Text(taken))
}

/// The first `n` characters; all but the last `-n` when negative.
fn left(s: &str, n: i64) -> String {
    let len = s.chars().count() as i64;
    let take = if n < 0 { (len + n).max(0) } else { n };
    s.chars().take(take as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::super::Expr;
    use super::*;

    fn run(expr: &str, value: Option<&str>) -> Option<String> {
        let v = value.map_or(Value::Null, |t| Value::Text(t.into()));
        Expr::parse(expr).unwrap().eval(&v).unwrap().to_text()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn synchdb_examples() {
        assert_eq!(run("%d + 1000000", Some("42")), some("1000042"));
        assert_eq!(
            run("'>>>>>' || '%d' || '<<<<<'", Some("x")),
            some(">>>>>x<<<<<")
        );
        assert_eq!(
            run("'>>>>>' || %d || '<<<<<'", Some("x")),
            some(">>>>>x<<<<<")
        );
        assert_eq!(run("%d + 500", None), None);
    }

    #[test]
    fn case_coalesce_and_casts() {
        let e = "CASE WHEN %d::int > 100 THEN 'big' WHEN %d IS NULL THEN 'none' ELSE 'small' END";
        assert_eq!(run(e, Some("101")), some("big"));
        assert_eq!(run(e, Some("7")), some("small"));
        assert_eq!(run(e, None), some("none"));
        assert_eq!(
            run("CASE %d WHEN 'a' THEN 1 WHEN 'b' THEN 2 END", Some("b")),
            some("2")
        );
        assert_eq!(run("CASE %d WHEN 'a' THEN 1 END", Some("z")), None);
        assert_eq!(run("coalesce(%d, 'n/a')", None), some("n/a"));
        assert_eq!(run("coalesce(%d, 'n/a')", Some("v")), some("v"));
        assert_eq!(
            run("CAST(%d AS numeric(10,2)) * 2", Some("1.005")),
            some("2.0200")
        );
        assert_eq!(
            run("(%d::numeric * 1.1)::numeric(12,2)", Some("10")),
            some("11.00")
        );
        assert_eq!(run("%d::boolean", Some("yes")), some("t"));
    }

    #[test]
    fn null_logic_is_three_valued() {
        assert_eq!(run("%d > 1 AND FALSE", None), some("f"));
        assert_eq!(run("%d > 1 OR TRUE", None), some("t"));
        assert_eq!(run("%d > 1 OR FALSE", None), None);
        assert_eq!(run("NOT (%d = 'a')", None), None);
        assert_eq!(run("%d IS NOT NULL", Some("")), some("t"));
        assert_eq!(run("%d || 'x'", None), None);
        assert_eq!(run("concat(%d, 'x')", None), some("x"));
        assert_eq!(run("nullif(%d, '')", Some("")), None);
    }

    #[test]
    fn string_functions_count_characters() {
        assert_eq!(run("upper(%d)", Some("żółw")), some("ŻÓŁW"));
        assert_eq!(run("length(%d)", Some("żółw")), some("4"));
        assert_eq!(run("substr(%d, 2, 2)", Some("żółw")), some("ół"));
        assert_eq!(run("substr(%d, 0, 2)", Some("abc")), some("a"));
        assert_eq!(run("substring(%d, 3)", Some("abcd")), some("cd"));
        assert_eq!(
            run("left(%d, -1) || right(%d, 1)", Some("abc")),
            some("abc")
        );
        assert_eq!(run("trim(%d)", Some("  a b  ")), some("a b"));
        assert_eq!(run("replace(%d, '-', '')", Some("1-2-3")), some("123"));
        assert_eq!(run("abs(%d)", Some("-2.5")), some("2.5"));
        assert_eq!(run("round(%d)", Some("2.5")), some("3"));
        assert_eq!(run("round(%d, 1)", Some("2.45")), some("2.5"));
    }

    #[test]
    fn runtime_errors_are_errors_not_guesses() {
        let e = Expr::parse("%d + 1").unwrap();
        assert!(e
            .eval(&Value::Text("abc".into()))
            .unwrap_err()
            .contains("not a number"));
        let e = Expr::parse("%d::smallint").unwrap();
        assert!(e.eval(&Value::Text("70000".into())).is_err());
        assert!(Func::lookup("nullif", 3)
            .unwrap_err()
            .contains("takes 2 arguments"));
    }
}
