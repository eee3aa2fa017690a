//! Splits an expression into tokens: numbers, string literals, `%d`, names and operators.

use super::ExprError;

/// One token and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A number as written (`42`, `1.5`, `2e3`).
    Number(String),
    /// A string literal's contents, `''` unescaped (`%d` inside is kept).
    Str(String),
    /// `%d`: the column's value.
    Value,
    /// A name or keyword, lowercased unless it was double-quoted.
    Name(String),
    /// An operator or punctuation: `+ - * / % || = <> != < > <= >= ( ) , ::`.
    Sym(&'static str),
}

const SYMBOLS: [&str; 17] = [
    "||", "<>", "!=", "<=", ">=", "::", "+", "-", "*", "/", "%", "=", "<", ">", "(", ")", ",",
];

/// The tokens of `text`, each with its byte offset.
pub(crate) fn tokens(text: &str) -> Result<Vec<(Token, usize)>, ExprError> {
    let mut out = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (token, next) = match c {
            b'%' if bytes.get(i + 1) == Some(&b'd') => (Token::Value, i + 2),
            b'\'' => string(text, i)?,
            b'"' => quoted_name(text, i)?,
            b'0'..=b'9' | b'.' => number(text, i),
            c if c.is_ascii_alphabetic() || c == b'_' => name(text, i),
            _ => symbol(text, i)?,
        };
        out.push((token, i));
        i = next;
    }
    Ok(out)
}

fn string(text: &str, start: usize) -> Result<(Token, usize), ExprError> {
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
            continue;
        }
        if text[start + 1 + j + 1..].starts_with('\'') {
            value.push('\'');
            chars.next();
            continue;
        }
        return Ok((Token::Str(value), start + 1 + j + 1));
    }
    Err(ExprError::at(start, "unterminated string literal"))
}

fn quoted_name(text: &str, start: usize) -> Result<(Token, usize), ExprError> {
    match text[start + 1..].find('"') {
        Some(len) => Ok((
            Token::Name(text[start + 1..start + 1 + len].to_string()),
            start + len + 2,
        )),
        None => Err(ExprError::at(start, "unterminated quoted name")),
    }
}

fn number(text: &str, start: usize) -> (Token, usize) {
    let bytes = text.as_bytes();
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut exp = end + 1;
        if exp < bytes.len() && (bytes[exp] == b'+' || bytes[exp] == b'-') {
            exp += 1;
        }
        if exp < bytes.len() && bytes[exp].is_ascii_digit() {
            end = exp;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
        }
    }
    (Token::Number(text[start..end].to_string()), end)
}

fn name(text: &str, start: usize) -> (Token, usize) {
    let end = text[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(text.len(), |n| start + n);
    (Token::Name(text[start..end].to_ascii_lowercase()), end)
}

fn symbol(text: &str, start: usize) -> Result<(Token, usize), ExprError> {
    SYMBOLS
        .iter()
        .find(|s| text[start..].starts_with(*s))
        .map(|s| (Token::Sym(s), start + s.len()))
        .ok_or_else(|| {
            let c = text[start..].chars().next().unwrap_or(' ');
            ExprError::at(start, format!("unexpected character {c:?}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token> {
        tokens(text).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn splits_values_literals_names_and_operators() {
        assert_eq!(
            kinds("%d + 1000000"),
            [
                Token::Value,
                Token::Sym("+"),
                Token::Number("1000000".into())
            ]
        );
        assert_eq!(
            kinds("'it''s %d' || CAST(%d AS Text)::int"),
            [
                Token::Str("it's %d".into()),
                Token::Sym("||"),
                Token::Name("cast".into()),
                Token::Sym("("),
                Token::Value,
                Token::Name("as".into()),
                Token::Name("text".into()),
                Token::Sym(")"),
                Token::Sym("::"),
                Token::Name("int".into()),
            ]
        );
        assert_eq!(
            kinds("1.5e-3<>2"),
            [
                Token::Number("1.5e-3".into()),
                Token::Sym("<>"),
                Token::Number("2".into())
            ]
        );
    }

    #[test]
    fn an_unterminated_string_is_an_error_with_its_position() {
        let err = tokens("%d || 'abc").unwrap_err();
        assert_eq!(err.offset, 6);
        assert!(err.to_string().contains("unterminated string"), "{err}");
        assert!(tokens("%d ; 1").is_err());
    }
}
