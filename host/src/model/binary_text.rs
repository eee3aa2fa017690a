//! The text of a value the source sent in binary form, for the places people read values:
//! refused rows named in errors and set aside as dead letters. Applying never needs it (the
//! destination reads binary values with the type's own receive function).

use std::fmt::Write;

use tokio_postgres::types::Type;

/// The value's text: as PostgreSQL prints it for the common built-in types, otherwise
/// `binary:` and the hex digits of its binary form (so it is never mistaken for text).
pub fn render(type_oid: u32, value: &[u8]) -> String {
    known(type_oid, value).unwrap_or_else(|| format!("binary:{}", hex(value)))
}

fn known(type_oid: u32, v: &[u8]) -> Option<String> {
    let text = |v: &[u8]| std::str::from_utf8(v).ok().map(str::to_string);
    match Type::from_oid(type_oid)? {
        Type::BOOL => match v {
            [0] => Some("f".into()),
            [1] => Some("t".into()),
            _ => None,
        },
        Type::INT2 => Some(i16::from_be_bytes(v.try_into().ok()?).to_string()),
        Type::INT4 => Some(i32::from_be_bytes(v.try_into().ok()?).to_string()),
        Type::INT8 => Some(i64::from_be_bytes(v.try_into().ok()?).to_string()),
        Type::OID => Some(u32::from_be_bytes(v.try_into().ok()?).to_string()),
        Type::FLOAT4 => Some(float(f64::from(f32::from_be_bytes(v.try_into().ok()?)))),
        Type::FLOAT8 => Some(float(f64::from_be_bytes(v.try_into().ok()?))),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::JSON
        | Type::XML => text(v),
        Type::JSONB => match v.split_first() {
            Some((1, rest)) => text(rest),
            _ => None,
        },
        Type::BYTEA => Some(format!("\\x{}", hex(v))),
        Type::UUID if v.len() == 16 => {
            let h = hex(v);
            Some(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        _ => None,
    }
}

fn float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

fn hex(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len() * 2);
    for b in v {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_common_types_as_postgres_prints_them() {
        assert_eq!(render(Type::INT4.oid(), &42i32.to_be_bytes()), "42");
        assert_eq!(render(Type::INT8.oid(), &(-7i64).to_be_bytes()), "-7");
        assert_eq!(render(Type::INT2.oid(), &3i16.to_be_bytes()), "3");
        assert_eq!(render(Type::BOOL.oid(), &[1]), "t");
        assert_eq!(render(Type::TEXT.oid(), b"caf\xc3\xa9"), "café");
        assert_eq!(render(Type::JSONB.oid(), b"\x01{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(render(Type::BYTEA.oid(), &[0xde, 0xad]), "\\xdead");
        assert_eq!(render(Type::FLOAT8.oid(), &1.5f64.to_be_bytes()), "1.5");
        assert_eq!(render(Type::FLOAT8.oid(), &f64::NAN.to_be_bytes()), "NaN");
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
            0x77, 0x88,
        ];
        assert_eq!(
            render(Type::UUID.oid(), &uuid),
            "12345678-9abc-def0-1122-334455667788"
        );
    }

    #[test]
    fn other_or_malformed_values_show_their_binary_form() {
        assert_eq!(render(1700, &[0, 1, 0, 0]), "binary:00010000");
        assert_eq!(render(Type::INT4.oid(), &[0, 1]), "binary:0001");
        assert_eq!(render(Type::JSONB.oid(), b"\x02{}"), "binary:027b7d");
    }
}
