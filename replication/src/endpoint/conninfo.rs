//! libpq `key=value` connection strings: values may be single-quoted; a backslash
//! escapes the next character both inside and outside quotes.

use super::EndpointError;

/// Splits `s` into (key, value) pairs in order; keys are not checked here.
pub(super) fn parse(s: &str) -> Result<Vec<(String, String)>, EndpointError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        skip_spaces(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String = take_while(&mut chars, |c| c != '=' && !c.is_whitespace());
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            return Err(EndpointError::MissingEquals(key));
        }
        skip_spaces(&mut chars);
        let value = read_value(&mut chars, &key)?;
        pairs.push((key, value));
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_spaces(chars: &mut Chars<'_>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

fn take_while(chars: &mut Chars<'_>, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next_if(|c| keep(*c)) {
        out.push(c);
    }
    out
}

fn read_value(chars: &mut Chars<'_>, key: &str) -> Result<String, EndpointError> {
    let quoted = chars.next_if_eq(&'\'').is_some();
    let mut value = String::new();
    loop {
        match chars.next() {
            None if quoted => return Err(EndpointError::UnterminatedQuote(key.to_owned())),
            None => return Ok(value),
            Some('\'') if quoted => return Ok(value),
            Some(c) if c.is_whitespace() && !quoted => return Ok(value),
            Some('\\') => match chars.next() {
                Some(escaped) => value.push(escaped),
                None if quoted => return Err(EndpointError::UnterminatedQuote(key.to_owned())),
                None => return Ok(value),
            },
            Some(c) => value.push(c),
        }
    }
}
