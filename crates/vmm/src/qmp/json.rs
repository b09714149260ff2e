//! QMP's JSON as QEMU writes and reads it.
//!
//! * Output: QEMU's `QDict` is a 512-bucket hash table (`qobject/qdict.c`, `tdb_hash`,
//!   new entries at the head of their bucket) and the JSON writer
//!   (`qobject/json-writer.c`) walks it bucket by bucket, so the member order on the
//!   wire is the hash order: `{"return": {}, "id": 1}`, `{"id": 1, "error": …}`,
//!   `{"timestamp": …, "event": "STOP"}`, `{"micro": 0, "minor": 2, "major": 9}`.
//!   [`QValue`] reproduces it, with the writer's `", "` / `": "` separators and its
//!   string escapes (`\uXXXX`, upper case, for controls and every non-ASCII code point).
//! * Input: QEMU's JSON streamer (`qobject/json-streamer.c`) cuts the byte stream into
//!   top-level values whatever the line breaks; [`Streamer`] does the same, with
//!   QEMU's limits and messages (token size 64 MiB, nesting 1024).

use std::fmt::Write;

/// A value as QEMU's QObject holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum QValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A double.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<QValue>),
    /// A dictionary, members in insertion order (written in QDict order).
    Dict(Vec<(String, QValue)>),
}

/// QEMU's `tdb_hash` (`qobject/qdict.c`) modulo `QDICT_BUCKET_MAX` (512).
pub fn qdict_bucket(key: &str) -> usize {
    let mut v = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, c) in key.bytes().enumerate() {
        v = v.wrapping_add(u32::from(c) << ((i * 5) % 24));
    }
    (1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) % 512) as usize
}

impl QValue {
    /// A dictionary from `(key, value)` pairs in insertion order.
    pub fn dict<K: Into<String>>(members: impl IntoIterator<Item = (K, QValue)>) -> QValue {
        QValue::Dict(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> QValue {
        QValue::Str(s.into())
    }

    /// Insert or replace a member (`qdict_put_obj`), if this is a dictionary.
    pub fn put(&mut self, key: &str, value: QValue) {
        if let QValue::Dict(m) = self {
            match m.iter_mut().find(|(k, _)| k == key) {
                Some(e) => e.1 = value,
                None => m.push((key.to_string(), value)),
            }
        }
    }

    /// A member of a dictionary.
    pub fn get(&self, key: &str) -> Option<&QValue> {
        match self {
            QValue::Dict(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The JSON text as QEMU writes it (`qobject_to_json`, not pretty).
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match self {
            QValue::Null => out.push_str("null"),
            QValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            QValue::Int(n) => {
                let _ = write!(out, "{n}");
            }
            QValue::UInt(n) => {
                let _ = write!(out, "{n}");
            }
            QValue::Float(f) => {
                // json-writer.c: "%.17g"; Rust's shortest round-trip form reads back
                // to the same double.
                if f.is_finite() {
                    let _ = write!(out, "{f:?}");
                } else {
                    out.push_str("null");
                }
            }
            QValue::Str(s) => quoted(out, s),
            QValue::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            QValue::Dict(m) => {
                out.push('{');
                for (i, (k, v)) in qdict_order(m).into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quoted(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// From a parsed request value (serde_json's integers and doubles map to QNum's).
    pub fn from_json(v: &serde_json::Value) -> QValue {
        match v {
            serde_json::Value::Null => QValue::Null,
            serde_json::Value::Bool(b) => QValue::Bool(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => QValue::Int(i),
                (None, Some(u)) => QValue::UInt(u),
                _ => QValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => QValue::Str(s.clone()),
            serde_json::Value::Array(a) => QValue::List(a.iter().map(QValue::from_json).collect()),
            serde_json::Value::Object(o) => QValue::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), QValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// The members in the order QEMU's writer emits them: by bucket, and within a bucket
/// the most recently inserted first.
fn qdict_order(m: &[(String, QValue)]) -> Vec<(&String, &QValue)> {
    let mut v: Vec<(usize, usize, &String, &QValue)> = m
        .iter()
        .enumerate()
        .map(|(i, (k, val))| (qdict_bucket(k), usize::MAX - i, k, val))
        .collect();
    v.sort_by_key(|(b, r, _, _)| (*b, *r));
    v.into_iter().map(|(_, _, k, val)| (k, val)).collect()
}

/// `json-writer.c:quoted_str`.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) > 0xFFFF => {
                let v = c as u32 - 0x10000;
                let _ = write!(
                    out,
                    "\\u{:04X}\\u{:04X}",
                    0xD800 + (v >> 10),
                    0xDC00 + (v & 0x3FF)
                );
            }
            c if (c as u32) < 0x20 || (c as u32) >= 0x7F => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// QEMU's `MAX_TOKEN_SIZE` (json-streamer.c): 64 MiB.
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// QEMU's `MAX_NESTING`.
pub const MAX_NESTING: usize = 1 << 10;

/// One top-level value cut from the stream, or why it could not be.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// The bytes of one complete top-level value.
    Value(Vec<u8>),
    /// A streamer error (QEMU's message); the streamer has reset.
    Error(String),
}

/// Cuts a byte stream into top-level JSON values as QEMU's streamer does: a value
/// ends when its braces and brackets balance (strings and escapes respected); a
/// top-level scalar ends at whitespace or the next delimiter.
#[derive(Debug, Default)]
pub struct Streamer {
    buf: Vec<u8>,
    depth: usize,
    in_str: Option<u8>,
    escape: bool,
    /// Skipping the rest of an over-long value (after a limit error).
    discarding: bool,
}

impl Streamer {
    /// A new streamer.
    pub fn new() -> Self {
        Streamer::default()
    }

    /// Whether a value has started but not ended.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Feed bytes; complete values and errors are pushed to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Chunk>) {
        for &b in data {
            self.byte(b, out);
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.depth = 0;
        self.in_str = None;
        self.escape = false;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Chunk>) {
        if self.discarding {
            // Resynchronise at a newline outside any value, as QEMU's lexer does
            // after an error once the stream is back at the top level.
            if b == b'\n' {
                self.discarding = false;
                self.reset();
            }
            return;
        }
        if let Some(q) = self.in_str {
            if b < 0x20 {
                // A control character cannot be in a string: QEMU's lexer reports the
                // token as an error and starts over (`JSON_ERROR` in json-streamer.c).
                out.push(Chunk::Error(format!(
                    "JSON parse error, stray '{}'",
                    String::from_utf8_lossy(&self.buf)
                )));
                self.reset();
                return;
            }
            self.buf.push(b);
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == q {
                self.in_str = None;
                if self.depth == 0 {
                    self.emit(out);
                }
            }
            return self.check_size(out);
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                if self.depth == 0 && !self.buf.is_empty() {
                    self.emit(out);
                } else if self.depth > 0 {
                    self.buf.push(b);
                }
            }
            b'{' | b'[' => {
                if self.depth == 0 && !self.buf.is_empty() {
                    self.emit(out);
                }
                self.buf.push(b);
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    out.push(Chunk::Error("JSON nesting depth limit exceeded".into()));
                    self.reset();
                    self.discarding = true;
                }
            }
            b'}' | b']' => {
                self.buf.push(b);
                if self.depth == 0 {
                    // A stray closer: QEMU's parser reports it as a parse error.
                    out.push(Chunk::Error(format!(
                        "JSON parse error, expecting value (stray '{}')",
                        b as char
                    )));
                    self.reset();
                    return;
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.emit(out);
                }
            }
            b'"' | b'\'' => {
                if self.depth == 0 && !self.buf.is_empty() {
                    self.emit(out);
                }
                self.buf.push(b);
                self.in_str = Some(b);
            }
            _ => self.buf.push(b),
        }
        self.check_size(out);
    }

    fn check_size(&mut self, out: &mut Vec<Chunk>) {
        if self.buf.len() > MAX_TOKEN_SIZE {
            out.push(Chunk::Error("JSON token size limit exceeded".into()));
            self.reset();
            self.discarding = true;
        }
    }

    fn emit(&mut self, out: &mut Vec<Chunk>) {
        out.push(Chunk::Value(std::mem::take(&mut self.buf)));
        self.reset();
    }
}

/// Parse one value cut by the [`Streamer`]. QEMU's parser also takes single-quoted
/// strings (an extension); they are rewritten to double quotes first.
pub fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = if text.contains('\'') {
        requote(&text)
    } else {
        text.into_owned()
    };
    serde_json::from_str(&text).map_err(|e| format!("JSON parse error, {e}"))
}

/// `'…'` strings to `"…"` (QEMU's JSON lexer accepts both).
fn requote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'') => {
                quote = Some('\'');
                out.push('"');
            }
            (None, '"') => {
                quote = Some('"');
                out.push('"');
            }
            (Some(q), '\\') => match chars.next() {
                Some('\'') if q == '\'' => out.push('\''),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            (Some('\''), '"') => out.push_str("\\\""),
            (Some(q), c) if c == q => {
                quote = None;
                out.push('"');
            }
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_order_is_qemus() {
        // Orders seen on real QEMU sockets.
        let ver = QValue::dict([
            ("major", QValue::Int(9)),
            ("minor", QValue::Int(2)),
            ("micro", QValue::Int(0)),
        ]);
        assert_eq!(ver.to_json(), r#"{"micro": 0, "minor": 2, "major": 9}"#);
        let r = QValue::dict([("return", QValue::dict::<&str>([])), ("id", QValue::Int(1))]);
        assert_eq!(r.to_json(), r#"{"return": {}, "id": 1}"#);
        let e = QValue::dict([
            (
                "error",
                QValue::dict([
                    ("class", QValue::str("GenericError")),
                    ("desc", QValue::str("x")),
                ]),
            ),
            ("id", QValue::str("a")),
        ]);
        assert_eq!(
            e.to_json(),
            r#"{"id": "a", "error": {"class": "GenericError", "desc": "x"}}"#
        );
        let s = QValue::dict([
            ("running", QValue::Bool(true)),
            ("singlestep", QValue::Bool(false)),
            ("status", QValue::str("running")),
        ]);
        assert_eq!(
            s.to_json(),
            r#"{"status": "running", "singlestep": false, "running": true}"#
        );
        let ev = QValue::dict([
            ("event", QValue::str("STOP")),
            (
                "timestamp",
                QValue::dict([
                    ("seconds", QValue::Int(1)),
                    ("microseconds", QValue::Int(2)),
                ]),
            ),
        ]);
        assert_eq!(
            ev.to_json(),
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#
        );
    }

    #[test]
    fn strings_escape_as_qemu() {
        assert_eq!(
            QValue::str("a\"b\\c\n\u{1}é😀").to_json(),
            r#""a\"b\\c\n\u0001\u00E9\uD83D\uDE00""#
        );
    }

    #[test]
    fn streamer_cuts_values() {
        let mut s = Streamer::new();
        let mut out = Vec::new();
        s.feed(b"{\"execute\":\n \"x\"}{\"a\": \"}\"} 42 ", &mut out);
        assert_eq!(
            out,
            vec![
                Chunk::Value(b"{\"execute\":\n \"x\"}".to_vec()),
                Chunk::Value(b"{\"a\": \"}\"}".to_vec()),
                Chunk::Value(b"42".to_vec())
            ]
        );
        out.clear();
        s.feed(&vec![b'['; MAX_NESTING + 1], &mut out);
        assert_eq!(
            out,
            vec![Chunk::Error("JSON nesting depth limit exceeded".into())]
        );
        out.clear();
        s.feed(b"]]]\n{}", &mut out);
        assert_eq!(out, vec![Chunk::Value(b"{}".to_vec())]);
        assert_eq!(
            parse_value(b"{'execute': 'qmp_capabilities'}").unwrap(),
            serde_json::json!({"execute": "qmp_capabilities"})
        );
        assert!(
            parse_value(b"{\"a\": }")
                .unwrap_err()
                .starts_with("JSON parse error, ")
        );
    }
}
