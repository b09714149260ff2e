//! `-qmp` and `-S`: the QMP monitor socket and the paused start (QEMU
//! `chardev/char.c:qemu_chr_parse_compat` for the `unix:` form,
//! `chardev/char-socket.c` for `server` and `wait`, `util/qemu-option.c` for the
//! short-form booleans).

use super::QmpConfig;
use crate::error::ConfigError;
use crate::keyval;
use std::path::PathBuf;

/// One `-qmp` argument. softsev serves QMP on a Unix socket only, as the server:
/// `unix:PATH,server=on,wait=off`; the short forms `server` and `nowait` are accepted
/// with QEMU's deprecation warning, recorded in `notes`.
pub(super) fn parse_qmp(spec: &str, notes: &mut Vec<String>) -> Result<QmpConfig, ConfigError> {
    let unsupported = |reason: &'static str| ConfigError::Unsupported {
        what: format!("-qmp {spec}"),
        reason,
    };
    let Some(rest) = spec.strip_prefix("unix:") else {
        return Err(unsupported(
            "softsev serves QMP on a Unix socket only (-qmp unix:PATH,server=on,wait=off)",
        ));
    };
    let mut path = None;
    let mut server = false;
    let mut wait = true;
    for (i, part) in keyval::split(rest).into_iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let (key, value, bare) = match part.split_once('=') {
            Some(("path", v)) => {
                path = Some(PathBuf::from(v));
                continue;
            }
            Some((k, v)) => (k.to_string(), v.to_string(), false),
            None if i == 0 => {
                path = Some(PathBuf::from(&part));
                continue;
            }
            // QEMU's short forms (`X` = X=on, `noX` = X=off), deprecated since 6.0.
            None => match part.strip_prefix("no") {
                Some(k @ ("wait" | "server")) => (k.to_string(), "off".to_string(), true),
                _ => (part.clone(), "on".to_string(), true),
            },
        };
        if bare {
            notes.push(format!(
                "-qmp {spec}: warning: short-form boolean option '{part}' deprecated \
                 (QEMU: Please use {key}={value} instead)"
            ));
        }
        let key = key.as_str();
        let value = value.as_str();
        let b = |v: &str| -> Result<bool, ConfigError> {
            keyval::parse_bool("-qmp", key, v).map_err(|_| {
                ConfigError::QemuOpt(format!("Parameter '{key}' expects 'on' or 'off'"))
            })
        };
        match key {
            "server" => server = b(value)?,
            "wait" => wait = b(value)?,
            "telnet" | "websocket" | "reconnect" | "reconnect-ms" | "tls-creds" | "tls-authz"
            | "abstract" | "tight" | "delay" | "nodelay" | "mux" | "logfile" | "logappend" => {
                return Err(unsupported(
                    "softsev's QMP socket takes only the path, server and wait",
                ));
            }
            other => {
                return Err(ConfigError::QemuOpt(format!("Invalid parameter '{other}'")));
            }
        }
    }
    let path = path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| ConfigError::QemuOpt("chardev: socket: no local address given".into()))?;
    if !server {
        return Err(unsupported(
            "softsev serves QMP as the socket's server only (server=on); it does not connect out",
        ));
    }
    Ok(QmpConfig { path, wait })
}

impl QmpConfig {
    /// The `-qmp` argument.
    pub fn to_arg(&self) -> String {
        format!(
            "unix:{},server=on,wait={}",
            keyval::escape(&self.path.to_string_lossy()),
            if self.wait { "on" } else { "off" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_forms() {
        let mut notes = Vec::new();
        let q = parse_qmp("unix:/tmp/q.sock,server=on,wait=off", &mut notes).unwrap();
        assert_eq!((q.path.to_str(), q.wait), (Some("/tmp/q.sock"), false));
        assert!(notes.is_empty());
        let q = parse_qmp("unix:/tmp/q.sock,server,nowait", &mut notes).unwrap();
        assert!(!q.wait);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[1].contains("Please use wait=off instead"),
            "{notes:?}"
        );
        let q = parse_qmp("unix:/tmp/q.sock,server=on", &mut notes).unwrap();
        assert!(q.wait, "QEMU waits for a client by default");
        assert_eq!(parse_qmp(&q.to_arg(), &mut notes).unwrap(), q);
        for (bad, msg) in [
            ("unix:/tmp/q,server=on,foo=1", "Invalid parameter 'foo'"),
            (
                "unix:/tmp/q,server=maybe",
                "Parameter 'server' expects 'on' or 'off'",
            ),
            ("unix:,server=on", "no local address"),
            ("unix:/tmp/q", "server=on"),
            ("tcp:localhost:4444,server=on", "Unix socket"),
        ] {
            let e = parse_qmp(bad, &mut notes).unwrap_err().to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
