//! Statement parameters sent in text format, so the server parses each value with the
//! destination column's own input function.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::{Format, IsNull, ToSql, Type};

/// A parameter in PostgreSQL text form, or NULL.
#[derive(Debug, Clone)]
pub(crate) enum TextParam {
    /// SQL NULL.
    Null,
    /// The value's text form.
    Text(Bytes),
}

impl From<String> for TextParam {
    fn from(text: String) -> Self {
        TextParam::Text(Bytes::from(text))
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            TextParam::Null => Ok(IsNull::Yes),
            TextParam::Text(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}
