//! Decoder for the messages of PostgreSQL's `pgoutput` logical decoding plugin (protocols 1
//! and 2).
//!
//! Decodes each XLogData payload: Begin, Commit, logical decoding Message, Relation, Type,
//! Insert, Update, Delete, Truncate and Origin, and protocol 2's blocks of in-progress
//! transactions (Stream Start, Stop, Commit and Abort), inside which changes carry their
//! transaction id. See "Logical Replication Message Formats" in the PostgreSQL documentation.

use bytes::{Buf, Bytes};

use crate::model::{Cell, ReplicaIdentity, Row};

/// A payload that is not a valid pgoutput message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ended in the middle of a field.
    #[error("pgoutput message {tag:?} is truncated")]
    Truncated {
        /// The message tag.
        tag: char,
    },
    /// An unknown message or tuple tag.
    #[error("unknown pgoutput {what} tag {tag:?}")]
    UnknownTag {
        /// Which tag.
        what: &'static str,
        /// The tag byte as a character.
        tag: char,
    },
    /// A string field is not valid UTF-8.
    #[error("pgoutput message {tag:?} holds a name that is not UTF-8")]
    NotUtf8 {
        /// The message tag.
        tag: char,
    },
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier.
    pub type_modifier: i32,
}

/// A Relation message: the shape of a table, sent before its first change and after it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation OID.
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Replica identity.
    pub identity: ReplicaIdentity,
    /// Columns in the order tuples carry them.
    pub columns: Vec<RelationColumn>,
}

/// Which old tuple an Update or Delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTuple {
    /// Only the replica identity key columns ('K'); the others are null.
    Key,
    /// Every column ('O', `REPLICA IDENTITY FULL`).
    Full,
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A table's shape.
    Relation(Relation),
    /// A data type used by a following Relation (for types outside pg_catalog).
    Type {
        /// Type OID.
        oid: u32,
        /// Schema name.
        schema: String,
        /// Type name.
        name: String,
    },
    /// A row was inserted.
    Insert {
        /// Relation OID.
        rel: u32,
        /// The new row.
        new: Row,
    },
    /// A row was updated.
    Update {
        /// Relation OID.
        rel: u32,
        /// The old row, when the key changed or the identity is FULL.
        old: Option<(OldTuple, Row)>,
        /// The new row; unchanged TOASTed columns are `Cell::Unchanged`.
        new: Row,
    },
    /// A row was deleted.
    Delete {
        /// Relation OID.
        rel: u32,
        /// The old row (key columns or every column).
        old: (OldTuple, Row),
    },
    /// Tables were truncated.
    Truncate {
        /// Relation OIDs.
        rels: Vec<u32>,
        /// TRUNCATE ... CASCADE.
        cascade: bool,
        /// TRUNCATE ... RESTART IDENTITY.
        restart_identity: bool,
    },
    /// The transaction came from another replication origin.
    Origin {
        /// The origin's commit LSN.
        lsn: u64,
        /// The origin name.
        name: String,
    },
    /// A transaction begins ('B').
    Begin {
        /// The LSN of its commit record.
        final_lsn: u64,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
        /// Transaction id.
        xid: u32,
    },
    /// The transaction commits ('C').
    Commit {
        /// Flags (currently unused, 0).
        flags: u8,
        /// The commit record's LSN.
        lsn: u64,
        /// The end of the commit record.
        end_lsn: u64,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// A block of an in-progress transaction's changes begins ('S', protocol 2).
    StreamStart {
        /// The top-level transaction id.
        xid: u32,
        /// Whether this is the transaction's first block.
        first: bool,
    },
    /// The block ends ('E').
    StreamStop,
    /// A streamed transaction commits ('c').
    StreamCommit {
        /// The top-level transaction id.
        xid: u32,
        /// The commit record's LSN.
        lsn: u64,
        /// The end of the commit record.
        end_lsn: u64,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// A streamed transaction, or one of its subtransactions, aborts ('A').
    StreamAbort {
        /// The top-level transaction id.
        xid: u32,
        /// The aborted subtransaction; `xid` itself when the whole transaction aborts.
        subxid: u32,
    },
    /// A `pg_logical_emit_message` message ('M').
    LogicalMessage {
        /// Emitted inside a transaction (flag bit 1).
        transactional: bool,
        /// The message's LSN.
        lsn: u64,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Bytes,
    },
}

/// Decodes one pgoutput message outside a stream block.
pub fn decode(buf: Bytes) -> Result<Message, DecodeError> {
    decode_in(buf, false).map(|(_, m)| m)
}

/// Decodes one pgoutput message; inside a stream block (`in_stream`), changes, relations,
/// types and messages carry the id of the (sub)transaction they belong to, returned with them.
pub fn decode_in(mut buf: Bytes, in_stream: bool) -> Result<(Option<u32>, Message), DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated { tag: '?' });
    }
    let tag = buf.get_u8();
    let mut r = Reader {
        buf,
        tag: tag as char,
    };
    let xid = match in_stream && b"RYIUDTM".contains(&tag) {
        true => Some(r.u32()?),
        false => None,
    };
    r.message(tag).map(|m| (xid, m))
}

impl Reader {
    fn message(&mut self, tag: u8) -> Result<Message, DecodeError> {
        let r = self;
        match tag {
            b'R' => {
                let oid = r.u32()?;
                let schema = r.cstr()?;
                let name = r.cstr()?;
                let identity = ReplicaIdentity::from_code(r.u8()?);
                let n = r.u16()?;
                let mut columns = Vec::with_capacity(r.capacity_for(n as usize, 7));
                for _ in 0..n {
                    let flags = r.u8()?;
                    columns.push(RelationColumn {
                        is_key: flags & 1 == 1,
                        name: r.cstr()?,
                        type_oid: r.u32()?,
                        type_modifier: r.u32()? as i32,
                    });
                }
                Ok(Message::Relation(Relation {
                    oid,
                    schema,
                    name,
                    identity,
                    columns,
                }))
            }
            b'Y' => Ok(Message::Type {
                oid: r.u32()?,
                schema: r.cstr()?,
                name: r.cstr()?,
            }),
            b'I' => {
                let rel = r.u32()?;
                r.expect(b'N', "insert tuple")?;
                Ok(Message::Insert {
                    rel,
                    new: r.tuple()?,
                })
            }
            b'U' => {
                let rel = r.u32()?;
                let mut kind = r.u8()?;
                let mut old = None;
                if kind == b'K' || kind == b'O' {
                    let which = if kind == b'K' {
                        OldTuple::Key
                    } else {
                        OldTuple::Full
                    };
                    old = Some((which, r.tuple()?));
                    kind = r.u8()?;
                }
                if kind != b'N' {
                    return Err(DecodeError::UnknownTag {
                        what: "update tuple",
                        tag: kind as char,
                    });
                }
                Ok(Message::Update {
                    rel,
                    old,
                    new: r.tuple()?,
                })
            }
            b'D' => {
                let rel = r.u32()?;
                let which = match r.u8()? {
                    b'K' => OldTuple::Key,
                    b'O' => OldTuple::Full,
                    other => {
                        return Err(DecodeError::UnknownTag {
                            what: "delete tuple",
                            tag: other as char,
                        })
                    }
                };
                Ok(Message::Delete {
                    rel,
                    old: (which, r.tuple()?),
                })
            }
            b'T' => {
                let n = r.u32()?;
                let options = r.u8()?;
                let mut rels = Vec::with_capacity(r.capacity_for(n as usize, 4));
                for _ in 0..n {
                    rels.push(r.u32()?);
                }
                Ok(Message::Truncate {
                    rels,
                    cascade: options & 1 == 1,
                    restart_identity: options & 2 == 2,
                })
            }
            b'O' => Ok(Message::Origin {
                lsn: r.u64()?,
                name: r.cstr()?,
            }),
            b'B' => Ok(Message::Begin {
                final_lsn: r.u64()?,
                commit_time: r.u64()? as i64,
                xid: r.u32()?,
            }),
            b'C' => Ok(Message::Commit {
                flags: r.u8()?,
                lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time: r.u64()? as i64,
            }),
            b'M' => {
                let flags = r.u8()?;
                let lsn = r.u64()?;
                let prefix = r.cstr()?;
                let len = r.u32()? as usize;
                r.need(len)?;
                Ok(Message::LogicalMessage {
                    transactional: flags & 1 == 1,
                    lsn,
                    prefix,
                    content: r.buf.split_to(len),
                })
            }
            b'S' => Ok(Message::StreamStart {
                xid: r.u32()?,
                first: r.u8()? == 1,
            }),
            b'E' => Ok(Message::StreamStop),
            b'c' => {
                let xid = r.u32()?;
                let _flags = r.u8()?;
                Ok(Message::StreamCommit {
                    xid,
                    lsn: r.u64()?,
                    end_lsn: r.u64()?,
                    commit_time: r.u64()? as i64,
                })
            }
            b'A' => Ok(Message::StreamAbort {
                xid: r.u32()?,
                subxid: r.u32()?,
            }),
            other => Err(DecodeError::UnknownTag {
                what: "message",
                tag: other as char,
            }),
        }
    }
}

struct Reader {
    buf: Bytes,
    tag: char,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated { tag: self.tag })
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    fn expect(&mut self, want: u8, what: &'static str) -> Result<(), DecodeError> {
        let got = self.u8()?;
        if got == want {
            Ok(())
        } else {
            Err(DecodeError::UnknownTag {
                what,
                tag: got as char,
            })
        }
    }

    fn cstr(&mut self) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated { tag: self.tag })?;
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError::NotUtf8 { tag: self.tag })
    }

    /// Room for `claimed` items of at least `min_bytes` each: never more than the bytes left
    /// can hold, so a corrupt count cannot make the decoder allocate out of proportion.
    fn capacity_for(&self, claimed: usize, min_bytes: usize) -> usize {
        claimed.min(self.buf.len() / min_bytes)
    }

    fn tuple(&mut self) -> Result<Row, DecodeError> {
        let n = self.u16()?;
        let mut row = Vec::with_capacity(self.capacity_for(n as usize, 1));
        for _ in 0..n {
            let cell = match self.u8()? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    self.need(len)?;
                    Cell::Text(self.buf.split_to(len))
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    self.need(len)?;
                    Cell::Binary(self.buf.split_to(len))
                }
                other => {
                    return Err(DecodeError::UnknownTag {
                        what: "tuple column",
                        tag: other as char,
                    })
                }
            };
            row.push(cell);
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn tuple(b: &mut BytesMut, cells: &[Option<&str>]) {
        b.put_u16(cells.len() as u16);
        for c in cells {
            match c {
                None => b.put_u8(b'n'),
                Some("<u>") => b.put_u8(b'u'),
                Some(s) => {
                    b.put_u8(b't');
                    b.put_u32(s.len() as u32);
                    b.put_slice(s.as_bytes());
                }
            }
        }
    }

    #[test]
    fn decodes_a_relation() {
        let mut b = BytesMut::new();
        b.put_u8(b'R');
        b.put_u32(16384);
        b.put_slice(b"public\0orders\0");
        b.put_u8(b'd');
        b.put_u16(2);
        b.put_u8(1);
        b.put_slice(b"id\0");
        b.put_u32(23);
        b.put_i32(-1);
        b.put_u8(0);
        b.put_slice(b"note\0");
        b.put_u32(25);
        b.put_i32(-1);
        let Message::Relation(rel) = decode(b.freeze()).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.oid, 16384);
        assert_eq!(
            (rel.schema.as_str(), rel.name.as_str()),
            ("public", "orders")
        );
        assert_eq!(rel.identity, ReplicaIdentity::Default);
        assert!(rel.columns[0].is_key && !rel.columns[1].is_key);
        assert_eq!(rel.columns[1].type_oid, 25);
        assert_eq!(rel.columns[1].type_modifier, -1);
    }

    #[test]
    fn decodes_an_update_with_old_key_and_unchanged_toast() {
        let mut b = BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(7);
        b.put_u8(b'K');
        tuple(&mut b, &[Some("1"), None]);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("2"), Some("<u>")]);
        let m = decode(b.freeze()).unwrap();
        assert_eq!(
            m,
            Message::Update {
                rel: 7,
                old: Some((OldTuple::Key, vec![Cell::text("1"), Cell::Null])),
                new: vec![Cell::text("2"), Cell::Unchanged],
            }
        );
    }

    #[test]
    fn decodes_insert_delete_truncate() {
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(7);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("héllo"), None]);
        assert!(matches!(
            decode(b.freeze()).unwrap(),
            Message::Insert { rel: 7, .. }
        ));

        let mut b = BytesMut::new();
        b.put_u8(b'D');
        b.put_u32(7);
        b.put_u8(b'O');
        tuple(&mut b, &[Some("1"), Some("x")]);
        assert!(matches!(
            decode(b.freeze()).unwrap(),
            Message::Delete {
                old: (OldTuple::Full, _),
                ..
            }
        ));

        let mut b = BytesMut::new();
        b.put_u8(b'T');
        b.put_u32(2);
        b.put_u8(3);
        b.put_u32(1);
        b.put_u32(2);
        assert_eq!(
            decode(b.freeze()).unwrap(),
            Message::Truncate {
                rels: vec![1, 2],
                cascade: true,
                restart_identity: true
            }
        );
    }

    #[test]
    fn truncated_and_unknown_messages_are_errors() {
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(7);
        b.put_u8(b'N');
        b.put_u16(1);
        b.put_u8(b't');
        b.put_u32(100);
        b.put_slice(b"short");
        assert_eq!(decode(b.freeze()), Err(DecodeError::Truncated { tag: 'I' }));
        assert!(matches!(
            decode(Bytes::from_static(b"Z")),
            Err(DecodeError::UnknownTag { .. })
        ));
        // Every prefix of a valid message must fail cleanly, never panic.
        let mut b = BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(7);
        b.put_u8(b'O');
        tuple(&mut b, &[Some("1"), None]);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("2"), Some("abc")]);
        let full = b.freeze();
        for n in 0..full.len() {
            assert!(decode(full.slice(..n)).is_err());
        }
        assert!(decode(full).is_ok());
    }

    #[test]
    fn decodes_begin_byte_exact() {
        let payload: &[u8] = &[
            b'B', // tag
            0x00, 0x00, 0x00, 0x16, 0xB3, 0x74, 0xD8, 0x48, // final_lsn 16/B374D848
            0x00, 0x02, 0xD8, 0x1E, 0x2A, 0x3B, 0x4C, 0x5D, // commit time
            0x00, 0x00, 0x02, 0xE7, // xid 743
        ];
        assert_eq!(
            decode(Bytes::copy_from_slice(payload)).unwrap(),
            Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_time: 0x0002_D81E_2A3B_4C5D,
                xid: 743,
            }
        );
        // A negative commit time (before 2000) keeps its sign.
        let mut b = payload.to_vec();
        b[9..17].copy_from_slice(&(-5i64).to_be_bytes());
        assert!(matches!(
            decode(Bytes::from(b)).unwrap(),
            Message::Begin {
                commit_time: -5,
                ..
            }
        ));
    }

    #[test]
    fn decodes_commit_byte_exact() {
        let payload: &[u8] = &[
            b'C', // tag
            0x00, // flags
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, // lsn 1/10
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x40, // end_lsn 1/40
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xE8, // commit time 1000
        ];
        assert_eq!(
            decode(Bytes::copy_from_slice(payload)).unwrap(),
            Message::Commit {
                flags: 0,
                lsn: 0x1_0000_0010,
                end_lsn: 0x1_0000_0040,
                commit_time: 1000,
            }
        );
    }

    #[test]
    fn decodes_logical_messages_byte_exact() {
        let payload: &[u8] = &[
            b'M', // tag
            0x01, // flags: transactional
            0x00, 0x00, 0x00, 0x00, 0x0A, 0x0B, 0x0C, 0x0D, // lsn 0/A0B0C0D
            b'p', b'g', b'm', b'o', b'r', b'p', b'h', 0x00, // prefix "pgmorph"
            0x00, 0x00, 0x00, 0x03, // content length
            b'a', 0x00, 0xFF, // content (binary)
        ];
        assert_eq!(
            decode(Bytes::copy_from_slice(payload)).unwrap(),
            Message::LogicalMessage {
                transactional: true,
                lsn: 0x0A0B_0C0D,
                prefix: "pgmorph".into(),
                content: Bytes::from_static(&[b'a', 0x00, 0xFF]),
            }
        );
        let mut empty = payload[..18].to_vec();
        empty[1] = 0;
        empty.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            decode(Bytes::from(empty)).unwrap(),
            Message::LogicalMessage { transactional: false, ref content, .. } if content.is_empty()
        ));
        // Every prefix fails cleanly; content longer than the payload is truncation.
        for n in 0..payload.len() {
            assert!(
                decode(Bytes::copy_from_slice(&payload[..n])).is_err(),
                "{n}"
            );
        }
        let mut long = payload.to_vec();
        long[21] = 9;
        assert_eq!(
            decode(Bytes::from(long)),
            Err(DecodeError::Truncated { tag: 'M' })
        );
    }

    #[test]
    fn truncated_begin_and_commit_are_errors() {
        assert_eq!(
            decode(Bytes::from_static(b"B\0\0\0\0")),
            Err(DecodeError::Truncated { tag: 'B' })
        );
        assert_eq!(
            decode(Bytes::from_static(b"C\0\0")),
            Err(DecodeError::Truncated { tag: 'C' })
        );
    }

    #[test]
    fn decodes_stream_blocks_byte_exact() {
        let start: &[u8] = &[b'S', 0, 0, 0x02, 0xE7, 1];
        assert_eq!(
            decode(Bytes::copy_from_slice(start)).unwrap(),
            Message::StreamStart {
                xid: 743,
                first: true
            }
        );
        assert_eq!(
            decode(Bytes::from_static(b"E")).unwrap(),
            Message::StreamStop
        );
        let commit: &[u8] = &[
            b'c', 0, 0, 0x02, 0xE7, // xid 743
            0x00, // flags
            0, 0, 0, 1, 0, 0, 0, 0x10, // lsn 1/10
            0, 0, 0, 1, 0, 0, 0, 0x40, // end_lsn 1/40
            0, 0, 0, 0, 0, 0, 0x03, 0xE8, // commit time 1000
        ];
        assert_eq!(
            decode(Bytes::copy_from_slice(commit)).unwrap(),
            Message::StreamCommit {
                xid: 743,
                lsn: 0x1_0000_0010,
                end_lsn: 0x1_0000_0040,
                commit_time: 1000,
            }
        );
        let abort: &[u8] = &[b'A', 0, 0, 0x02, 0xE7, 0, 0, 0x02, 0xE9];
        assert_eq!(
            decode(Bytes::copy_from_slice(abort)).unwrap(),
            Message::StreamAbort {
                xid: 743,
                subxid: 745
            }
        );
        for payload in [start, commit, abort] {
            for n in 1..payload.len() {
                assert!(
                    decode(Bytes::copy_from_slice(&payload[..n])).is_err(),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn changes_inside_a_stream_block_carry_their_transaction() {
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(745); // the subtransaction
        b.put_u32(7);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("1")]);
        let payload = b.freeze();
        let (xid, m) = decode_in(payload.clone(), true).unwrap();
        assert_eq!(xid, Some(745));
        assert_eq!(
            m,
            Message::Insert {
                rel: 7,
                new: vec![Cell::text("1")]
            }
        );
        // The same bytes outside a block read the xid as the relation: not this insert.
        assert_ne!(decode(payload).ok(), Some(m));
        // Stream control messages carry no extra xid inside a block.
        let (xid, m) = decode_in(Bytes::from_static(b"E"), true).unwrap();
        assert_eq!((xid, m), (None, Message::StreamStop));
    }

    #[test]
    fn binary_columns_become_binary_cells() {
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(7);
        b.put_u8(b'N');
        b.put_u16(3);
        b.put_u8(b'b');
        b.put_u32(4);
        b.put_slice(&[0, 0, 0, 42]);
        b.put_u8(b't');
        b.put_u32(1);
        b.put_slice(b"x");
        b.put_u8(b'n');
        assert_eq!(
            decode(b.freeze()).unwrap(),
            Message::Insert {
                rel: 7,
                new: vec![
                    Cell::Binary(Bytes::from_static(&[0, 0, 0, 42])),
                    Cell::text("x"),
                    Cell::Null
                ]
            }
        );
    }
}
