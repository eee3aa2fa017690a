//! Rows and changes as the row hook sees them: cells addressed by column name, read and written
//! through typed accessors over PostgreSQL's text form.

use crate::{Column, Error};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read by the initial snapshot.
    Snapshot,
    /// Inserted.
    Insert,
    /// Updated (`old` holds the identity columns, or all under `REPLICA IDENTITY FULL`).
    Update,
    /// Deleted (only `old` is set).
    Delete,
}

/// What to do with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it (with whatever the hook changed).
    Keep,
    /// Filter it out.
    Skip,
}

/// One change of a table: a snapshot row, an insert, an update or a delete.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The operation.
    pub op: Op,
    /// The old row, for updates and deletes.
    pub old: Option<Row<'a>>,
    /// The new row, for snapshot rows, inserts and updates.
    pub new: Option<Row<'a>>,
}

impl<'a> Change<'a> {
    /// The row that describes the change best: the new row, or the old one for deletes.
    pub fn row(&self) -> Option<&Row<'a>> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// Applies `f` to the old and the new row (e.g. to mask a key in both).
    pub fn for_each_row(
        &mut self,
        mut f: impl FnMut(&mut Row<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Some(old) = self.old.as_mut() {
            f(old)?;
        }
        if let Some(new) = self.new.as_mut() {
            f(new)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    Null,
    Unchanged,
    Span(u32, u32),
    Owned(String),
}

/// One row: the cells of the columns the mapping asked for, addressed by name.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    columns: &'a [Column],
    buf: &'a [u8],
    pub(crate) cells: Vec<Slot>,
    pub(crate) dirty: bool,
}

impl<'a> Row<'a> {
    pub(crate) fn new(columns: &'a [Column], buf: &'a [u8], cells: Vec<Slot>) -> Self {
        Self {
            columns,
            buf,
            cells,
            dirty: false,
        }
    }

    /// The columns of this row, in order.
    pub fn columns(&self) -> &'a [Column] {
        self.columns
    }

    /// Whether a setter changed the row.
    pub fn is_modified(&self) -> bool {
        self.dirty
    }

    fn index(&self, name: &str) -> Result<usize, Error> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                Error::failed(format!(
                    "column {name:?} is not in the row (ask for it in Mapping::want_rows)"
                ))
            })
    }

    pub(crate) fn slot_bytes(&self, slot: &'a Slot) -> Option<&'a [u8]> {
        match slot {
            Slot::Span(start, end) => Some(&self.buf[*start as usize..*end as usize]),
            Slot::Owned(s) => Some(s.as_bytes()),
            Slot::Null | Slot::Unchanged => None,
        }
    }

    /// Whether the column is NULL.
    pub fn is_null(&self, name: &str) -> Result<bool, Error> {
        Ok(self.cells[self.index(name)?] == Slot::Null)
    }

    /// Whether the column holds an unchanged TOAST value the source did not send (it cannot be
    /// read; leave it alone and the destination keeps its value).
    pub fn is_unchanged(&self, name: &str) -> Result<bool, Error> {
        Ok(self.cells[self.index(name)?] == Slot::Unchanged)
    }

    /// The value's text form; `None` for NULL.
    pub fn get_str(&self, name: &str) -> Result<Option<&str>, Error> {
        let i = self.index(name)?;
        let bytes = match &self.cells[i] {
            Slot::Null => return Ok(None),
            Slot::Unchanged => {
                return Err(Error::failed(format!(
                    "column {name:?} is an unchanged TOAST value the source did not send"
                )))
            }
            Slot::Span(start, end) => &self.buf[*start as usize..*end as usize],
            Slot::Owned(s) => return Ok(Some(s.as_str())),
        };
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::failed(format!("column {name:?} is not UTF-8")))
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, Error> {
        match self.get_str(name)? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::failed(format!("column {name:?}: {s:?} is not {what}"))),
        }
    }

    /// An integer column.
    pub fn get_i64(&self, name: &str) -> Result<Option<i64>, Error> {
        self.parse(name, "an integer")
    }

    /// A float column (`NaN`, `Infinity`, `-Infinity` included).
    pub fn get_f64(&self, name: &str) -> Result<Option<f64>, Error> {
        match self.get_str(name)? {
            Some("Infinity") => Ok(Some(f64::INFINITY)),
            Some("-Infinity") => Ok(Some(f64::NEG_INFINITY)),
            _ => self.parse(name, "a number"),
        }
    }

    /// A boolean column.
    pub fn get_bool(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.get_str(name)? {
            None => Ok(None),
            Some("t") | Some("true") => Ok(Some(true)),
            Some("f") | Some("false") => Ok(Some(false)),
            Some(s) => Err(Error::failed(format!(
                "column {name:?}: {s:?} is not a boolean"
            ))),
        }
    }

    /// A `bytea` column, decoded from `\x` hex.
    pub fn get_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(s) = self.get_str(name)? else {
            return Ok(None);
        };
        let hex = s
            .strip_prefix("\\x")
            .ok_or_else(|| Error::failed(format!("column {name:?} is not hex bytea")))?;
        decode_hex(hex)
            .map(Some)
            .ok_or_else(|| Error::failed(format!("column {name:?} is not hex bytea")))
    }

    /// A `json`/`jsonb` column.
    pub fn get_json(&self, name: &str) -> Result<Option<serde_json::Value>, Error> {
        match self.get_str(name)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| Error::failed(format!("column {name:?} is not JSON: {e}"))),
        }
    }

    /// A one-dimensional array column, as element texts (`None` for NULL elements).
    pub fn get_array(&self, name: &str) -> Result<Option<Vec<Option<String>>>, Error> {
        match self.get_str(name)? {
            None => Ok(None),
            Some(s) => parse_array(s).map(Some).ok_or_else(|| {
                Error::unsupported(format!(
                    "column {name:?}: {s:?} is not a one-dimensional array literal"
                ))
            }),
        }
    }

    /// Sets the value's text form.
    pub fn set_str(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let i = self.index(name)?;
        self.cells[i] = Slot::Owned(value.to_string());
        self.dirty = true;
        Ok(())
    }

    /// Sets NULL.
    pub fn set_null(&mut self, name: &str) -> Result<(), Error> {
        let i = self.index(name)?;
        self.cells[i] = Slot::Null;
        self.dirty = true;
        Ok(())
    }

    /// Sets an integer.
    pub fn set_i64(&mut self, name: &str, value: i64) -> Result<(), Error> {
        self.set_str(name, &value.to_string())
    }

    /// Sets a float (written as PostgreSQL reads it back exactly).
    pub fn set_f64(&mut self, name: &str, value: f64) -> Result<(), Error> {
        let text = if value.is_nan() {
            "NaN".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        } else {
            format!("{value:?}")
        };
        self.set_str(name, &text)
    }

    /// Sets a boolean.
    pub fn set_bool(&mut self, name: &str, value: bool) -> Result<(), Error> {
        self.set_str(name, if value { "t" } else { "f" })
    }

    /// Sets a `bytea` value.
    pub fn set_bytes(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        let mut text = String::with_capacity(2 + value.len() * 2);
        text.push_str("\\x");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in value {
            text.push(HEX[usize::from(b >> 4)] as char);
            text.push(HEX[usize::from(b & 15)] as char);
        }
        self.set_str(name, &text)
    }

    /// Sets a JSON value.
    pub fn set_json(&mut self, name: &str, value: &serde_json::Value) -> Result<(), Error> {
        self.set_str(name, &value.to_string())
    }

    /// Sets a one-dimensional array from element texts.
    pub fn set_array(&mut self, name: &str, elements: &[Option<&str>]) -> Result<(), Error> {
        let mut text = String::from("{");
        for (i, e) in elements.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            match e {
                None => text.push_str("NULL"),
                Some(e) => {
                    text.push('"');
                    for ch in e.chars() {
                        if ch == '"' || ch == '\\' {
                            text.push('\\');
                        }
                        text.push(ch);
                    }
                    text.push('"');
                }
            }
        }
        text.push('}');
        self.set_str(name, &text)
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a one-dimensional PostgreSQL array literal into element texts.
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut e = String::new();
            loop {
                match chars.next()? {
                    '\\' => e.push(chars.next()?),
                    '"' => break,
                    c => e.push(c),
                }
            }
            out.push(Some(e));
        } else {
            let mut e = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '"' {
                    return None;
                }
                e.push(c);
                chars.next();
            }
            out.push(if e == "NULL" { None } else { Some(e) });
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_array_literals() {
        assert_eq!(
            parse_array(r#"{1,NULL,"a \"b\"",x}"#).unwrap(),
            vec![
                Some("1".into()),
                None,
                Some("a \"b\"".into()),
                Some("x".into())
            ]
        );
        assert_eq!(parse_array("{}").unwrap(), Vec::<Option<String>>::new());
        assert!(parse_array("{{1},{2}}").is_none());
    }

    #[test]
    fn typed_accessors_round_trip() {
        let columns = vec![
            Column::new("n", "bigint"),
            Column::new("b", "bytea"),
            Column::new("f", "float8"),
            Column::new("a", "text[]"),
        ];
        let buf = b"42\\x0aff";
        let mut row = Row::new(
            &columns,
            buf,
            vec![Slot::Span(0, 2), Slot::Span(2, 8), Slot::Null, Slot::Null],
        );
        assert_eq!(row.get_i64("n").unwrap(), Some(42));
        assert_eq!(row.get_bytes("b").unwrap(), Some(vec![0x0a, 0xff]));
        assert!(!row.is_modified());
        row.set_f64("f", f64::INFINITY).unwrap();
        assert_eq!(row.get_str("f").unwrap(), Some("Infinity"));
        row.set_f64("f", 0.1).unwrap();
        assert_eq!(row.get_f64("f").unwrap(), Some(0.1));
        row.set_array("a", &[Some("x,y"), None]).unwrap();
        assert_eq!(
            row.get_array("a").unwrap().unwrap(),
            vec![Some("x,y".to_string()), None]
        );
        assert!(row.is_modified());
        assert!(row.get_str("missing").is_err());
    }
}
