//! The TOML front end (layout in the [`super`] module docs): keys are QEMU's option
//! names, values option strings, scalars or property tables, filling the same raw
//! option set as the command line.

use super::Config;
use super::raw::{Raw, check_accel};
use crate::error::ConfigError;
use crate::keyval::{self, Props};
use std::path::Path;

fn toml_scalar(key: &str, v: &toml::Value) -> Result<String, ConfigError> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) if *n >= 0 => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(if *b { "on" } else { "off" }.to_string()),
        other => Err(ConfigError::Toml(format!(
            "'{key}' must be a string, a non-negative integer or a boolean, not {}",
            other.type_str()
        ))),
    }
}

fn toml_props(key: &str, t: &toml::Table) -> Result<Props, ConfigError> {
    t.iter()
        .map(|(k, v)| Ok((k.clone(), toml_scalar(&format!("{key}.{k}"), v)?)))
        .collect()
}

/// A key that is either an option string (`"q35,smm=off"`), a scalar (taken as the
/// implied key) or a table of properties.
fn toml_option(
    key: &str,
    v: &toml::Value,
    implied: &str,
    int_suffix: &str,
) -> Result<Props, ConfigError> {
    match v {
        toml::Value::Table(t) => toml_props(key, t),
        toml::Value::String(s) => keyval::parse(key, s, Some(implied)),
        toml::Value::Integer(_) => Ok(vec![(
            implied.to_string(),
            format!("{}{int_suffix}", toml_scalar(key, v)?),
        )]),
        other => Err(ConfigError::Toml(format!(
            "'{key}' must be a string, an integer or a table, not {}",
            other.type_str()
        ))),
    }
}

fn toml_string(key: &str, v: &toml::Value) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ConfigError::Toml(format!("'{key}' must be a string")))
}

/// Parse a TOML configuration (see the module docs) into a validated [`Config`].
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
    let mut raw = Raw::default();
    for (key, v) in &table {
        match key.as_str() {
            "name" => raw.name = Some(toml_string(key, v)?),
            "machine" => raw.machine = toml_option(key, v, "type", "")?,
            "m" | "memory" => raw.mem = Some(toml_option("-m", v, "size", "")?),
            "smp" => raw.smp = Some(toml_option("-smp", v, "cpus", "")?),
            "cpu" => raw.cpu = Some(toml_string(key, v)?),
            "bios" => raw.bios = Some(toml_string(key, v)?),
            "kernel" => raw.kernel = Some(toml_string(key, v)?),
            "initrd" => raw.initrd = Some(toml_string(key, v)?),
            "append" => raw.append = Some(toml_string(key, v)?),
            "accel" => check_accel("accel", &toml_string(key, v)?)?,
            "qmp" => raw.qmp.push(toml_string(key, v)?),
            "incoming" => raw.incoming = Some(toml_string(key, v)?),
            "S" => {
                raw.start_paused = v
                    .as_bool()
                    .ok_or_else(|| ConfigError::Toml("'S' must be a boolean".into()))?;
            }
            "object" => {
                let arr = v.as_array().ok_or_else(|| {
                    ConfigError::Toml("'object' must be an array of tables ([[object]])".into())
                })?;
                for (i, o) in arr.iter().enumerate() {
                    let t = o
                        .as_table()
                        .ok_or_else(|| ConfigError::Toml(format!("object[{i}] must be a table")))?;
                    raw.objects.push(toml_props(&format!("object[{i}]"), t)?);
                }
            }
            "drive" | "netdev" | "device" | "chardev" | "serial" | "monitor" | "display" => {
                let items: Vec<String> = match v {
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|x| toml_string(key, x))
                        .collect::<Result<_, _>>()?,
                    other => vec![toml_string(key, other)?],
                };
                for it in items {
                    raw.option(&format!("-{key}"), Some(&it))?;
                }
            }
            "enable-kvm" | "nographic" | "no-reboot" | "no-shutdown" | "nodefaults" => {
                if !v.is_bool() {
                    return Err(ConfigError::Toml(format!("'{key}' must be a boolean")));
                }
            }
            other => return Err(ConfigError::Toml(format!("unknown key '{other}'"))),
        }
    }
    raw.validate()
}

/// Read a TOML configuration file; relative paths in it are relative to its directory.
pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        what: "configuration",
        path: path.to_owned(),
        error,
    })?;
    let mut c = from_toml(&text)?;
    if let Some(dir) = path.parent() {
        c.resolve_paths(dir);
    }
    Ok(c)
}
