//! Values of the expression language, their PostgreSQL text forms, arithmetic, comparison and
//! casts. Integers are exact (128-bit), decimals are exact with a scale, floats are `f64`.

use std::cmp::Ordering;

/// Decimal places a division of decimals keeps at least.
const DIV_SCALE: u32 = 16;

/// A value while evaluating.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `boolean`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// An exact decimal: `digits / 10^scale`.
    Dec(i128, u32),
    /// `real` or `double precision`.
    Float(f64),
    /// Text (and any type without arithmetic: dates, uuids, ...).
    Text(String),
}

/// A type a value can be cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `boolean`.
    Bool,
    /// `smallint`, `integer` or `bigint`: the bits of the range.
    Int(u32),
    /// `numeric`, `numeric(p, s)`: the scale to round to, if any.
    Numeric(Option<u32>),
    /// `real`, `double precision`.
    Float,
    /// `text`, `varchar`, `varchar(n)`: the length to cut to, if any.
    Text(Option<usize>),
}

impl SqlType {
    /// Parses a type name (lowercase words) and its modifiers; `None` if not supported.
    pub fn parse(words: &str, modifiers: &[u32]) -> Option<SqlType> {
        let t = match (words, modifiers) {
            ("boolean" | "bool", []) => SqlType::Bool,
            ("smallint" | "int2", []) => SqlType::Int(16),
            ("integer" | "int" | "int4", []) => SqlType::Int(32),
            ("bigint" | "int8", []) => SqlType::Int(64),
            ("numeric" | "decimal", []) => SqlType::Numeric(None),
            ("numeric" | "decimal", [_]) => SqlType::Numeric(Some(0)),
            ("numeric" | "decimal", [_, s]) => SqlType::Numeric(Some(*s)),
            ("real" | "float4" | "double precision" | "float8" | "float", []) => SqlType::Float,
            ("text", []) | ("varchar" | "character varying", []) => SqlType::Text(None),
            ("varchar" | "character varying", [n]) => SqlType::Text(Some(*n as usize)),
            _ => return None,
        };
        Some(t)
    }
}

impl Value {
    /// The PostgreSQL text form; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(if *b { "t" } else { "f" }.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Dec(d, s) => Some(dec_text(*d, *s)),
            Value::Float(f) => Some(float_text(*f)),
            Value::Text(t) => Some(t.clone()),
        }
    }

    /// Reads a number written in SQL (`42`, `-1.50`, `2e3`, `NaN`).
    pub fn parse_number(text: &str) -> Option<Value> {
        let t = text.trim();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let sign = if neg { -1 } else { 1 };
        let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if plain && digits.matches('.').count() <= 1 && digits != "." {
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let all: i128 = format!("{int}{frac}").parse().ok()?;
            return Some(match frac.len() {
                0 => Value::Int(sign * all),
                n => Value::Dec(sign * all, n as u32),
            });
        }
        let lower = digits.to_ascii_lowercase();
        let f = match lower.as_str() {
            "nan" => f64::NAN,
            "infinity" | "inf" => f64::INFINITY,
            _ if lower.contains('e') => lower.parse::<f64>().ok()?,
            _ => return None,
        };
        Some(Value::Float(if neg { -f } else { f }))
    }

    /// The value as a number: numbers as they are, text read as a number.
    fn number(&self) -> Result<Value, String> {
        match self {
            Value::Int(_) | Value::Dec(..) | Value::Float(_) => Ok(self.clone()),
            Value::Text(t) => {
                Value::parse_number(t).ok_or_else(|| format!("{t:?} is not a number"))
            }
            Value::Bool(_) => Err("a boolean is not a number".into()),
            Value::Null => Ok(Value::Null),
        }
    }

    /// The value as a boolean (text `t`, `true`, `yes`, `on`, `1`, ... read as PostgreSQL does).
    pub fn truth(&self) -> Result<Option<bool>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Text(t) => parse_bool(t).map(Some),
            other => Err(format!("{} is not a boolean", other.describe())),
        }
    }

    fn describe(&self) -> String {
        self.to_text().unwrap_or_else(|| "NULL".into())
    }

    /// `self::to`.
    pub fn cast(&self, to: SqlType) -> Result<Value, String> {
        if *self == Value::Null {
            return Ok(Value::Null);
        }
        match to {
            SqlType::Bool => match self {
                Value::Int(i) => Ok(Value::Bool(*i != 0)),
                other => other.truth().map(|b| Value::Bool(b.unwrap_or(false))),
            },
            SqlType::Int(bits) => to_int(&self.bool_as_int().number()?, bits),
            SqlType::Numeric(scale) => to_numeric(&self.number()?, scale),
            SqlType::Float => to_float(&self.number()?).map(Value::Float),
            SqlType::Text(limit) => {
                let text = self.describe();
                Ok(Value::Text(match limit {
                    Some(n) => text.chars().take(n).collect(),
                    None => text,
                }))
            }
        }
    }

    fn bool_as_int(&self) -> Value {
        match self {
            Value::Bool(b) => Value::Int(*b as i128),
            other => other.clone(),
        }
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean")),
    }
}

fn dec_text(digits: i128, scale: u32) -> String {
    if scale == 0 {
        return digits.to_string();
    }
    let abs = digits.unsigned_abs().to_string();
    let padded = format!("{abs:0>width$}", width = scale as usize + 1);
    let (int, frac) = padded.split_at(padded.len() - scale as usize);
    let sign = if digits < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e15).contains(&abs) {
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

fn pow10(n: u32) -> Result<i128, String> {
    10i128
        .checked_pow(n)
        .ok_or_else(|| "numeric value out of range".to_string())
}

/// Rounds `digits / 10^from` to `to` places, half away from zero (as PostgreSQL's numeric).
fn rescale(digits: i128, from: u32, to: u32) -> Result<i128, String> {
    if to >= from {
        return digits
            .checked_mul(pow10(to - from)?)
            .ok_or_else(|| "numeric value out of range".into());
    }
    let div = pow10(from - to)?;
    let (q, r) = (digits / div, digits % div);
    let round = if r.abs() * 2 >= div {
        digits.signum()
    } else {
        0
    };
    Ok(q + round)
}

fn to_int(v: &Value, bits: u32) -> Result<Value, String> {
    let i = match v {
        Value::Null => return Ok(Value::Null),
        Value::Int(i) => *i,
        Value::Dec(d, s) => rescale(*d, *s, 0)?,
        Value::Float(f) if f.is_finite() => f.round_ties_even() as i128,
        other => return Err(format!("{} cannot be an integer", other.describe())),
    };
    let max = (1i128 << (bits - 1)) - 1;
    if i > max || i < -max - 1 {
        return Err(format!("{i} is out of range for a {bits}-bit integer"));
    }
    Ok(Value::Int(i))
}

fn to_numeric(v: &Value, scale: Option<u32>) -> Result<Value, String> {
    let (d, s) = match v {
        Value::Null => return Ok(Value::Null),
        Value::Int(i) => (*i, 0),
        Value::Dec(d, s) => (*d, *s),
        Value::Float(f) => match Value::parse_number(&float_text(*f)) {
            Some(Value::Int(i)) => (i, 0),
            Some(Value::Dec(d, s)) => (d, s),
            _ => return Err(format!("{} cannot be a numeric", float_text(*f))),
        },
        other => return Err(format!("{} cannot be a numeric", other.describe())),
    };
    Ok(match scale {
        Some(to) => Value::Dec(rescale(d, s, to)?, to),
        None => Value::Dec(d, s),
    })
}

fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Dec(d, s) => Ok(*d as f64 / 10f64.powi(*s as i32)),
        Value::Float(f) => Ok(*f),
        other => Err(format!("{} cannot be a float", other.describe())),
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (integer division for two integers, as in PostgreSQL)
    Div,
    /// `%`
    Rem,
}

/// `a op b`, text read as numbers; NULL if either is NULL.
pub fn arith(op: Arith, a: &Value, b: &Value) -> Result<Value, String> {
    let (a, b) = (a.number()?, b.number()?);
    match (&a, &b) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Float(_), _) | (_, Value::Float(_)) => {
            float_arith(op, to_float(&a)?, to_float(&b)?)
        }
        (Value::Int(x), Value::Int(y)) => int_arith(op, *x, *y),
        _ => {
            let (Value::Dec(x, sx), Value::Dec(y, sy)) =
                (to_numeric(&a, None)?, to_numeric(&b, None)?)
            else {
                unreachable!("numbers become decimals")
            };
            dec_arith(op, (x, sx), (y, sy))
        }
    }
}

fn overflow() -> String {
    "numeric value out of range".into()
}

fn int_arith(op: Arith, x: i128, y: i128) -> Result<Value, String> {
    let r = match op {
        Arith::Add => x.checked_add(y),
        Arith::Sub => x.checked_sub(y),
        Arith::Mul => x.checked_mul(y),
        Arith::Div | Arith::Rem if y == 0 => return Err("division by zero".into()),
        Arith::Div => x.checked_div(y),
        Arith::Rem => x.checked_rem(y),
    };
    r.map(Value::Int).ok_or_else(overflow)
}

fn dec_arith(op: Arith, (x, sx): (i128, u32), (y, sy): (i128, u32)) -> Result<Value, String> {
    let s = sx.max(sy);
    let (x, y) = (rescale(x, sx, s)?, rescale(y, sy, s)?);
    match op {
        Arith::Add => x
            .checked_add(y)
            .map(|r| Value::Dec(r, s))
            .ok_or_else(overflow),
        Arith::Sub => x
            .checked_sub(y)
            .map(|r| Value::Dec(r, s))
            .ok_or_else(overflow),
        Arith::Mul => x
            .checked_mul(y)
            .map(|r| Value::Dec(r, 2 * s))
            .ok_or_else(overflow),
        Arith::Div | Arith::Rem if y == 0 => Err("division by zero".into()),
        Arith::Rem => Ok(Value::Dec(x % y, s)),
        Arith::Div => {
            let out = s.max(DIV_SCALE);
            // x / y at `out` places: one guard digit, then rounded.
            let num = x.checked_mul(pow10(out + 1)?).ok_or_else(overflow)?;
            Ok(Value::Dec(rescale(num / y, out + 1, out)?, out))
        }
    }
}

fn float_arith(op: Arith, x: f64, y: f64) -> Result<Value, String> {
    if matches!(op, Arith::Div | Arith::Rem) && y == 0.0 {
        return Err("division by zero".into());
    }
    Ok(Value::Float(match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    }))
}

/// Compares two non-NULL values: numbers numerically (text beside a number read as one),
/// booleans, and text by bytes (the C collation).
pub fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => Ok(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (x, y) = (a.truth()?, b.truth()?);
            Ok(x.cmp(&y))
        }
        _ => {
            let (x, y) = (a.number()?, b.number()?);
            match (&x, &y) {
                (Value::Int(i), Value::Int(j)) => Ok(i.cmp(j)),
                (Value::Float(_), _) | (_, Value::Float(_)) => {
                    Ok(to_float(&x)?.total_cmp(&to_float(&y)?))
                }
                _ => match dec_arith(Arith::Sub, dec_parts(&x)?, dec_parts(&y)?)? {
                    Value::Dec(d, _) => Ok(d.cmp(&0)),
                    _ => unreachable!("a decimal difference"),
                },
            }
        }
    }
}

fn dec_parts(v: &Value) -> Result<(i128, u32), String> {
    match to_numeric(v, None)? {
        Value::Dec(d, s) => Ok((d, s)),
        _ => unreachable!("to_numeric gives a decimal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(t: &str) -> Value {
        Value::parse_number(t).unwrap()
    }

    fn text(v: Result<Value, String>) -> String {
        v.unwrap().to_text().unwrap()
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        assert_eq!(num("42"), Value::Int(42));
        assert_eq!(num("-1.50"), Value::Dec(-150, 2));
        assert_eq!(num("-0.05").to_text().unwrap(), "-0.05");
        assert_eq!(num("2e3"), Value::Float(2000.0));
        assert_eq!(Value::parse_number("abc"), None);
        assert_eq!(Value::Float(1e300).to_text().unwrap(), "1e+300");
        assert_eq!(Value::Float(0.5).to_text().unwrap(), "0.5");
    }

    #[test]
    fn arithmetic_is_exact_and_reads_text_as_numbers() {
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(
            text(arith(Arith::Add, &t("9007199254740993"), &num("1000000"))),
            "9007199255740993"
        );
        assert_eq!(
            text(arith(Arith::Add, &num("1.10"), &num("2.205"))),
            "3.305"
        );
        assert_eq!(text(arith(Arith::Mul, &num("1.5"), &num("2"))), "3.00");
        assert_eq!(text(arith(Arith::Div, &num("7"), &num("2"))), "3");
        assert_eq!(
            text(arith(Arith::Div, &num("1.0"), &num("3"))),
            "0.3333333333333333"
        );
        assert_eq!(arith(Arith::Add, &Value::Null, &num("1")), Ok(Value::Null));
        assert!(arith(Arith::Div, &num("1"), &num("0"))
            .unwrap_err()
            .contains("division by zero"));
        assert!(arith(Arith::Add, &t("x"), &num("1"))
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn casts_round_and_check_ranges() {
        assert_eq!(text(num("2.5").cast(SqlType::Int(32))), "3");
        assert_eq!(text(num("-2.5").cast(SqlType::Int(32))), "-3");
        assert_eq!(text(Value::Text("12".into()).cast(SqlType::Int(16))), "12");
        assert!(num("40000").cast(SqlType::Int(16)).is_err());
        assert_eq!(text(num("1.005").cast(SqlType::Numeric(Some(2)))), "1.01");
        assert_eq!(text(num("7").cast(SqlType::Numeric(Some(2)))), "7.00");
        assert_eq!(text(Value::Text("yes".into()).cast(SqlType::Bool)), "t");
        assert_eq!(
            text(Value::Text("abcdef".into()).cast(SqlType::Text(Some(3)))),
            "abc"
        );
        assert_eq!(Value::Null.cast(SqlType::Int(64)), Ok(Value::Null));
        assert_eq!(
            SqlType::parse("numeric", &[10, 2]),
            Some(SqlType::Numeric(Some(2)))
        );
        assert_eq!(SqlType::parse("date", &[]), None);
    }

    #[test]
    fn comparison_is_numeric_for_numbers_and_bytewise_for_text() {
        assert_eq!(
            compare(&num("10"), &Value::Text("9".into())),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            compare(&Value::Text("10".into()), &Value::Text("9".into())),
            Ok(Ordering::Less)
        );
        assert_eq!(compare(&num("1.0"), &num("1")), Ok(Ordering::Equal));
        assert_eq!(
            compare(&Value::Bool(true), &Value::Text("t".into())),
            Ok(Ordering::Equal)
        );
    }
}
