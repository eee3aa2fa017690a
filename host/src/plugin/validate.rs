//! Checks that a value a plugin wrote can be of its column's type class.

use super::bindings::wit::TypeClass;

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn integer(s: &str) -> bool {
    let s = s.trim();
    digits(s.strip_prefix(['-', '+']).unwrap_or(s))
}

fn numeric(s: &str) -> bool {
    let s = s.trim();
    if ["NaN", "Infinity", "-Infinity", "inf", "-inf"].contains(&s) {
        return true;
    }
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (a.is_empty() || digits(a))
                && (b.is_empty() || digits(b))
                && !(a.is_empty() && b.is_empty())
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(integer)
}

fn date_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    let dash = s.find('-').unwrap_or(0);
    dash >= 4
        && digits(&s[..dash])
        && b.len() >= dash + 6
        && digits(&s[dash + 1..dash + 3])
        && b[dash + 3] == b'-'
        && digits(&s[dash + 4..dash + 6])
}

fn hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The class's name in messages.
fn class_name(class: TypeClass) -> &'static str {
    match class {
        TypeClass::Boolean => "boolean",
        TypeClass::Integer => "integer",
        TypeClass::Float => "float",
        TypeClass::Numeric => "numeric",
        TypeClass::Text => "text",
        TypeClass::Bytes => "bytea",
        TypeClass::Date => "date",
        TypeClass::Time => "time",
        TypeClass::Timestamp => "timestamp",
        TypeClass::Timestamptz => "timestamptz",
        TypeClass::Interval => "interval",
        TypeClass::Uuid => "uuid",
        TypeClass::Json => "json",
        TypeClass::Array => "array",
        TypeClass::Other => "text-form",
    }
}

/// Whether `text` is a valid text form for `class`; `Err` says why not.
pub(crate) fn check(class: TypeClass, text: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(text).map_err(|_| "it is not UTF-8".to_string())?;
    if s.contains('\0') {
        return Err("it contains a NUL character".into());
    }
    let special = ["infinity", "-infinity"].contains(&s);
    let ok = match class {
        TypeClass::Boolean => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "t" | "f" | "true" | "false" | "yes" | "no" | "on" | "off" | "1" | "0"
        ),
        TypeClass::Integer => integer(s),
        TypeClass::Float => numeric(s) || s.trim().parse::<f64>().is_ok(),
        TypeClass::Numeric => numeric(s),
        TypeClass::Bytes => s
            .strip_prefix("\\x")
            .is_some_and(|h| h.len() % 2 == 0 && hex(h)),
        TypeClass::Date => special || date_prefix(s),
        TypeClass::Timestamp | TypeClass::Timestamptz => special || date_prefix(s),
        TypeClass::Time => s.bytes().next().is_some_and(|b| b.is_ascii_digit()),
        TypeClass::Interval => !s.trim().is_empty(),
        TypeClass::Uuid => {
            let h: String = s
                .chars()
                .filter(|c| !matches!(c, '-' | '{' | '}'))
                .collect();
            h.len() == 32 && hex(&h)
        }
        TypeClass::Json => serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok(),
        TypeClass::Array => {
            s.trim_end().ends_with('}') && (s.starts_with('{') || s.starts_with('['))
        }
        TypeClass::Text | TypeClass::Other => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid {} value", class_name(class)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_postgres_text_forms() {
        for (class, good) in [
            (TypeClass::Integer, "-42"),
            (TypeClass::Numeric, "12.50"),
            (TypeClass::Numeric, "1e-3"),
            (TypeClass::Float, "-Infinity"),
            (TypeClass::Boolean, "t"),
            (TypeClass::Bytes, "\\x0aff"),
            (TypeClass::Date, "2024-02-29"),
            (TypeClass::Timestamptz, "2024-02-29 10:00:00.5+00"),
            (TypeClass::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (TypeClass::Json, "{\"a\": [1, null]}"),
            (TypeClass::Array, "{1,2,NULL}"),
        ] {
            assert!(check(class, good.as_bytes()).is_ok(), "{class:?} {good}");
        }
        for (class, bad) in [
            (TypeClass::Integer, "4.2"),
            (TypeClass::Numeric, "twelve"),
            (TypeClass::Boolean, "maybe"),
            (TypeClass::Bytes, "\\x0"),
            (TypeClass::Date, "yesterday"),
            (TypeClass::Uuid, "nope"),
            (TypeClass::Json, "{"),
            (TypeClass::Text, "a\0b"),
        ] {
            assert!(check(class, bad.as_bytes()).is_err(), "{class:?} {bad}");
        }
    }
}
