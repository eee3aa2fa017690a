//! Statement parameters: values in the form the source sent them. Text values are parsed by
//! the destination column's own input function; binary values (the source's binary form of
//! the same type) by its receive function.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type};

/// A parameter in PostgreSQL text or binary form, or NULL.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    /// SQL NULL.
    Null,
    /// The value's text form.
    Text(Bytes),
    /// The value's binary form, of the parameter's type.
    Binary(Bytes),
    /// A one-dimensional array of binary values (`None` for NULL), sent as the parameter's
    /// array type, whose element type the destination names when the statement is prepared.
    BinaryArray(Vec<Option<Bytes>>),
}

impl From<String> for Param {
    fn from(text: String) -> Self {
        Param::Text(Bytes::from(text))
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Text(b) | Param::Binary(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
            Param::BinaryArray(values) => {
                let Kind::Array(element) = ty.kind() else {
                    return Err(format!("an array parameter sent as {ty}").into());
                };
                encode_array(out, element.oid(), values)?;
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Param::Null | Param::Text(_) => Format::Text,
            Param::Binary(_) | Param::BinaryArray(_) => Format::Binary,
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// PostgreSQL's binary array form: one dimension from 1, then each element's length and bytes.
fn encode_array(
    out: &mut BytesMut,
    element: u32,
    values: &[Option<Bytes>],
) -> Result<(), std::num::TryFromIntError> {
    let has_null = values.iter().any(Option::is_none);
    out.put_i32(1);
    out.put_i32(i32::from(has_null));
    out.put_u32(element);
    out.put_i32(i32::try_from(values.len())?);
    out.put_i32(1);
    for v in values {
        match v {
            Some(b) => {
                out.put_i32(i32::try_from(b.len())?);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_arrays_take_the_element_type_the_server_names() {
        let p = Param::BinaryArray(vec![Some(Bytes::from_static(&[0, 0, 0, 7])), None]);
        let mut out = BytesMut::new();
        assert!(matches!(
            p.to_sql(&Type::INT4_ARRAY, &mut out).unwrap(),
            IsNull::No
        ));
        let expected: &[u8] = &[
            0, 0, 0, 1, // one dimension
            0, 0, 0, 1, // has NULLs
            0, 0, 0, 23, // int4
            0, 0, 0, 2, 0, 0, 0, 1, // two elements from 1
            0, 0, 0, 4, 0, 0, 0, 7, // 7
            0xff, 0xff, 0xff, 0xff, // NULL
        ];
        assert_eq!(&out[..], expected);
        assert!(p.to_sql(&Type::INT4, &mut BytesMut::new()).is_err());
        assert!(matches!(p.encode_format(&Type::INT4_ARRAY), Format::Binary));
    }
}
