//! Rows in Postgres' binary `COPY` format, for `COPY … FROM STDIN (FORMAT binary)`.
//!
//! Binary rather than text: Postgres reads uuids, timestamps and integers without parsing them,
//! and text (payloads are kilobytes of JSON) without un-escaping it. Each field is a length and
//! the type's binary form, so the column types written here must be the table's exactly; a
//! mismatch fails the whole `COPY` ("incorrect binary data format"), which the ingest tests
//! catch.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Microseconds from the Unix epoch to Postgres' (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The file header: signature, flags, header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows being written, header first.
pub struct BinaryRows {
    buf: Vec<u8>,
    rows: usize,
    /// Where the field count of the row being written goes.
    row_start: usize,
    fields: i16,
}

impl Default for BinaryRows {
    fn default() -> Self {
        BinaryRows {
            buf: HEADER.to_vec(),
            rows: 0,
            row_start: 0,
            fields: 0,
        }
    }
}

impl BinaryRows {
    /// Rows expected to take about `bytes`, so the buffer does not regrow while they are added.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER.len() + bytes + 2);
        buf.extend_from_slice(HEADER);
        BinaryRows {
            buf,
            ..Default::default()
        }
    }

    /// Starts a row; fields follow in the table's column order.
    pub fn begin_row(&mut self) {
        self.row_start = self.buf.len();
        self.fields = 0;
        self.buf.extend_from_slice(&0i16.to_be_bytes());
    }

    /// Ends the row being written.
    pub fn end_row(&mut self) {
        let at = self.row_start;
        self.buf[at..at + 2].copy_from_slice(&self.fields.to_be_bytes());
        self.rows += 1;
    }

    fn field(&mut self, bytes: &[u8]) {
        self.fields += 1;
        // Fields are bounded by the gRPC message size (64 MiB), far below i32::MAX.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// SQL NULL.
    pub fn null(&mut self) {
        self.fields += 1;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `text` field; NUL, which Postgres text cannot hold, becomes U+FFFD.
    pub fn text(&mut self, s: &str) {
        // Most fields are a few bytes: a plain scan beats memchr's setup there.
        let has_nul = if s.len() < 64 {
            s.bytes().any(|b| b == 0)
        } else {
            memchr::memchr(0, s.as_bytes()).is_some()
        };
        if has_nul {
            self.field(s.replace('\0', "\u{FFFD}").as_bytes());
        } else {
            self.field(s.as_bytes());
        }
    }

    /// A `text` field or NULL.
    pub fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// A `json` field: the document's text, which must be valid JSON without NUL.
    pub fn json(&mut self, doc: &str) {
        self.field(doc.as_bytes());
    }

    /// A `jsonb` field: format version 1, then the document's text.
    pub fn jsonb(&mut self, doc: &str) {
        self.fields += 1;
        let len = i32::try_from(doc.len() + 1).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(doc.as_bytes());
    }

    /// A `boolean` field.
    pub fn bool(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }

    /// A `smallint` field.
    pub fn int2(&mut self, v: i16) {
        self.field(&v.to_be_bytes());
    }

    /// An `integer` field or NULL.
    pub fn int4(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    /// A `bigint` field or NULL.
    pub fn int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    /// A `uuid` field or NULL.
    pub fn uuid(&mut self, v: Option<Uuid>) {
        match v {
            Some(v) => self.field(v.as_bytes()),
            None => self.null(),
        }
    }

    /// A `timestamptz` field (microseconds, as Postgres stores it).
    pub fn timestamptz(&mut self, at: DateTime<Utc>) {
        self.field(&(at.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The whole `COPY` input: header, rows, trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_postgres_binary_copy() {
        let mut c = BinaryRows::default();
        c.begin_row();
        c.text("a\0b");
        c.null();
        c.bool(true);
        c.int2(-2);
        c.int4(Some(7));
        c.int8(None);
        c.uuid(Some(Uuid::from_u128(1)));
        c.timestamptz(DateTime::from_timestamp_micros(PG_EPOCH_MICROS + 1).unwrap());
        c.jsonb("{}");
        c.json("[]");
        c.end_row();
        assert_eq!(c.rows(), 1);
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&10i16.to_be_bytes());
        for field in [
            &[0, 0, 0, 5, b'a', 0xEF, 0xBF, 0xBD, b'b'][..],
            &[0xFF; 4],
            &[0, 0, 0, 1, 1],
            &[0, 0, 0, 2, 0xFF, 0xFE],
            &[0, 0, 0, 4, 0, 0, 0, 7],
            &[0xFF; 4],
        ] {
            want.extend_from_slice(field);
        }
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(&1u128.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        want.extend_from_slice(&[0, 0, 0, 2, b'[', b']']);
        want.extend_from_slice(&[0xFF, 0xFF]);
        assert_eq!(c.finish(), want);
    }

    #[test]
    fn nul_is_replaced_in_short_and_long_text_alike() {
        for text in ["a\0b".to_string(), format!("{}\0b", "a".repeat(100))] {
            let mut c = BinaryRows::with_capacity(8);
            c.begin_row();
            c.text(&text);
            c.end_row();
            let out = c.finish();
            let field = &out[HEADER.len() + 2 + 4..out.len() - 2];
            assert_eq!(field, text.replace('\0', "\u{FFFD}").as_bytes());
        }
    }

    #[test]
    fn an_empty_copy_is_header_and_trailer() {
        let c = BinaryRows::default();
        assert_eq!(c.rows(), 0);
        assert_eq!(c.finish(), [HEADER, &[0xFF, 0xFF]].concat());
        assert_eq!(HEADER.len(), 19);
    }
}
