//! The `--events FILE` of `softsev exec` (the spec's `--log FILE`): one JSON object per line for every operation on a
//! served file and every KDS request, in the order they were answered:
//! `{"seq":N,"source":"/dev/sev-guest","op":"ioctl","path":"","pid":…,"uid":…,"gid":…,
//! "fields":{"cmd":"0xc0205302",…},"result":-5}`. Numbers stay numbers and bytes are
//! lowercase hex, so `jq` can assert the exact sequence (frontends.md §7.4).
//!
//! The file is written to `FILE.partial` and renamed when the log is finished, so a
//! complete log never overwrites anything silently (an existing FILE is an error).

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use softsev_vfs::{Event, EventLog, FieldValue};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A JSON-lines event log file.
#[derive(Debug)]
pub struct JsonLog {
    inner: Mutex<Inner>,
    path: PathBuf,
    partial: PathBuf,
}

#[derive(Debug)]
struct Inner {
    out: Option<BufWriter<File>>,
    seq: u64,
    error: Option<std::io::Error>,
}

/// The JSON form of one event (what one line of the log holds, without `seq`).
pub fn event_json(e: &Event) -> Value {
    let mut fields = Map::new();
    for (k, v) in &e.fields {
        fields.insert((*k).to_string(), field_json(v));
    }
    json!({
        "source": e.source,
        "op": e.op,
        "path": e.path,
        "pid": e.caller.pid,
        "uid": e.caller.uid,
        "gid": e.caller.gid,
        "fields": Value::Object(fields),
        "result": e.result,
    })
}

fn field_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::U64(n) => json!(n),
        FieldValue::I64(n) => json!(n),
        FieldValue::Str(s) => json!(s),
        FieldValue::Hex(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

impl JsonLog {
    /// Start a log that will be `path` when [`JsonLog::finish`] is called.
    pub fn create(path: &Path) -> std::io::Result<JsonLog> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists; softsev does not overwrite it", path.display()),
            ));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)?;
        Ok(JsonLog {
            inner: Mutex::new(Inner {
                out: Some(BufWriter::new(f)),
                seq: 0,
                error: None,
            }),
            path: path.to_path_buf(),
            partial,
        })
    }

    /// Flush, close and rename the log into place; the first write error, if any.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut g = self.inner.lock();
        if let Some(e) = g.error.take() {
            return Err(e);
        }
        if let Some(mut out) = g.out.take() {
            out.flush()?;
            out.get_ref().sync_all()?;
            drop(out);
            std::fs::rename(&self.partial, &self.path)?;
        }
        Ok(())
    }
}

impl EventLog for JsonLog {
    fn record(&self, event: Event) {
        let mut g = self.inner.lock();
        let mut v = event_json(&event);
        if let Value::Object(m) = &mut v {
            m.insert("seq".into(), json!(g.seq));
        }
        g.seq += 1;
        let r = match g.out.as_mut() {
            Some(out) => writeln!(out, "{v}").and_then(|_| out.flush()),
            None => Ok(()),
        };
        if let Err(e) = r
            && g.error.is_none()
        {
            g.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softsev_vfs::Caller;

    #[test]
    fn lines_are_json_with_sequence_numbers_and_the_file_appears_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let log = JsonLog::create(&p).unwrap();
        for r in [-5, 0] {
            log.record(Event {
                source: "/dev/sev-guest".into(),
                op: "ioctl",
                path: String::new(),
                caller: Caller {
                    pid: 9,
                    uid: 0,
                    gid: 0,
                },
                fields: vec![
                    ("cmd", FieldValue::Str("0xc0205302".into())),
                    ("certs_len", FieldValue::U64(0)),
                    ("out", FieldValue::Hex(vec![0xab, 1])),
                ],
                result: r,
            });
        }
        assert!(!p.exists(), "the log appears only when finished");
        log.finish().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["seq"], 0);
        assert_eq!(lines[1]["seq"], 1);
        assert_eq!(lines[0]["result"], -5);
        assert_eq!(lines[0]["fields"]["cmd"], "0xc0205302");
        assert_eq!(lines[0]["fields"]["certs_len"], 0);
        assert_eq!(lines[0]["fields"]["out"], "ab01");
        assert!(
            JsonLog::create(&p).is_err(),
            "an existing log is not overwritten"
        );
    }
}
