//! Inserted rows gathered for one `COPY ... FROM STDIN`: in COPY's text format when the
//! values are text, in its binary format when the source sent them in binary form.

use bytes::{BufMut, BytesMut};

use crate::copy_text;
use crate::model::{quote_ident, Cell, Row, TableMapping};

/// The signature, flags and header extension length that open a binary COPY.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// How a run of inserts crosses in one COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyForm {
    /// Text format: every value is text.
    Text,
    /// Binary format: every value is binary.
    Binary,
}

impl CopyForm {
    /// The form a row fits; `None` when it mixes text and binary values (it is inserted with
    /// a statement instead).
    pub fn of(row: &Row) -> Option<Self> {
        let binary = row.iter().any(Cell::is_binary);
        let text = row.iter().any(|c| matches!(c, Cell::Text(_)));
        match (text, binary) {
            (_, false) => Some(CopyForm::Text),
            (false, true) => Some(CopyForm::Binary),
            (true, true) => None,
        }
    }

    /// The COPY data before any row.
    pub fn start(self, capacity: usize) -> BytesMut {
        let mut data = BytesMut::with_capacity(capacity);
        if self == CopyForm::Binary {
            data.put_slice(BINARY_HEADER);
        }
        data
    }

    /// Appends one row (of this form: see [`Self::of`]).
    pub fn encode(self, data: &mut BytesMut, row: &Row) {
        match self {
            CopyForm::Text => copy_text::encode_row(data, row),
            CopyForm::Binary => encode_binary(data, row),
        }
    }

    /// Ends the COPY data.
    pub fn finish(self, data: &mut BytesMut) {
        if self == CopyForm::Binary {
            data.put_i16(-1);
        }
    }

    /// `COPY t (columns) FROM STDIN` in this form.
    pub fn sql(self, m: &TableMapping) -> String {
        let cols: Vec<String> = m.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let format = match self {
            CopyForm::Text => "",
            CopyForm::Binary => " (FORMAT binary)",
        };
        format!(
            "COPY {} ({}) FROM STDIN{format}",
            m.destination.quoted(),
            cols.join(", ")
        )
    }
}

/// One binary COPY tuple: the field count, then each field's length and bytes (-1: NULL).
fn encode_binary(data: &mut BytesMut, row: &Row) {
    let fields = i16::try_from(row.len()).expect("a table has at most 1600 columns");
    data.put_i16(fields);
    for cell in row {
        match cell {
            Cell::Binary(v) => {
                data.put_i32(i32::try_from(v.len()).expect("a value is under 1 GB"));
                data.put_slice(v);
            }
            Cell::Null | Cell::Unchanged => data.put_i32(-1),
            Cell::Text(_) => unreachable!("a text value in a binary COPY row"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bin(v: &'static [u8]) -> Cell {
        Cell::Binary(Bytes::from_static(v))
    }

    #[test]
    fn rows_fit_the_form_of_their_values() {
        assert_eq!(
            CopyForm::of(&vec![Cell::text("1"), Cell::Null]),
            Some(CopyForm::Text)
        );
        assert_eq!(
            CopyForm::of(&vec![bin(&[1]), Cell::Null]),
            Some(CopyForm::Binary)
        );
        assert_eq!(CopyForm::of(&vec![bin(&[1]), Cell::text("x")]), None);
    }

    #[test]
    fn binary_copy_data_has_header_tuples_and_trailer() {
        let form = CopyForm::Binary;
        let mut data = form.start(64);
        form.encode(&mut data, &vec![bin(&[0, 0, 0, 7]), Cell::Null]);
        form.finish(&mut data);
        let mut expected = BINARY_HEADER.to_vec();
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(&data[..], &expected[..]);
        assert_eq!(BINARY_HEADER.len(), 19);
    }
}
