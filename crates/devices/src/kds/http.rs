//! The little HTTP/1.1 the KDS needs (RFC 9112): one request per connection, the
//! request line and header fields read up to the empty line (at most 16 KiB), `GET`
//! and `HEAD` answered, every other method 405; the response carries
//! `Content-Length` and `Connection: close`. No request body is accepted (a GET with
//! `Content-Length` > 0 or `Transfer-Encoding` is 400).

use super::{Kds, KdsResponse, reason};
use std::io::{self, BufRead, BufReader, Read, Write};

/// The longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What was asked, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) host: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Read one request head from `r`. `Ok(Err(response))` for a malformed request.
pub(crate) fn read_request<R: Read>(r: R) -> io::Result<Result<Request, KdsResponse>> {
    let mut r = BufReader::new(r.take((MAX_HEAD + MAX_BODY) as u64 + 1));
    let mut line = String::new();
    let mut total = 0usize;
    let mut next = |line: &mut String| -> io::Result<bool> {
        line.clear();
        let n = r.read_line(line)?;
        total += n;
        Ok(n > 0 && total <= MAX_HEAD && line.ends_with('\n'))
    };
    if !next(&mut line)? {
        return Ok(Err(KdsResponse::error(400, "incomplete request line")));
    }
    let mut it = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Ok(Err(KdsResponse::error(400, "malformed request line")));
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(Err(KdsResponse::error(505, "only HTTP/1.x")));
    }
    let (method, target) = (method.to_string(), target.to_string());
    let mut host = None;
    let mut length = 0usize;
    loop {
        if !next(&mut line)? {
            return Ok(Err(KdsResponse::error(
                431,
                "request head too large or cut",
            )));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Ok(Err(KdsResponse::error(400, "malformed header field")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("host") {
            host = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => length = n,
                Ok(_) => return Ok(Err(KdsResponse::error(413, "request body too large"))),
                Err(_) => return Ok(Err(KdsResponse::error(400, "bad Content-Length"))),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(Err(KdsResponse::error(400, "only Content-Length bodies")));
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok(Ok(Request {
        method,
        target,
        host,
        body,
    }))
}

/// Answer `req` from `kds`.
pub(crate) fn answer(kds: &Kds, req: &Request) -> KdsResponse {
    match req.method.as_str() {
        "GET" | "HEAD" => kds.get(&req.target),
        "POST" => kds.post(&req.target, &req.body),
        _ => KdsResponse::error(405, "only GET, HEAD and POST"),
    }
}

/// Write `resp` (without the body for HEAD).
pub(crate) fn write_response<W: Write>(
    w: &mut W,
    resp: &KdsResponse,
    head: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    if resp.status == 405 {
        out.push_str("Allow: GET, HEAD, POST\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}
