//! QEMU option-string syntax: `key=value` lists split at `,` with `,,` standing for a
//! literal comma, an implied first key (`-machine q35` = `type=q35`), bare keys meaning
//! `on`; booleans (`on/off`, `yes/no`, `true/false`, `y/n`), unsigned integers with
//! C prefixes (`0x…` hex, leading `0` octal) and sizes with QEMU's binary suffixes
//! (`B K M G T P E`, case-insensitive, decimal fractions allowed: `1.5G`).

use crate::error::ConfigError;

/// One `key=value` pair of an option string, in the order given.
pub type Props = Vec<(String, String)>;

/// Split an option string at unescaped commas; `,,` is a literal comma.
pub fn split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Escape a value for an option string (`,` → `,,`).
pub fn escape(v: &str) -> String {
    v.replace(',', ",,")
}

/// Parse an option string of `option` into pairs. The first element may omit its key,
/// which is then `implied`; later elements without `=` are booleans set to `on`.
/// Empty elements (a trailing comma) are skipped.
pub fn parse(option: &str, s: &str, implied: Option<&str>) -> Result<Props, ConfigError> {
    let mut props = Props::new();
    for (i, part) in split(s).into_iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some(("", _)) => {
                return Err(ConfigError::BadOptionString {
                    option: option.to_string(),
                    text: s.to_string(),
                    reason: "a parameter name is empty",
                });
            }
            Some((k, v)) => props.push((k.to_string(), v.to_string())),
            None => match implied {
                Some(key) if i == 0 => props.push((key.to_string(), part)),
                _ => props.push((part, "on".to_string())),
            },
        }
    }
    Ok(props)
}

/// QEMU's boolean spellings.
pub fn parse_bool(object: &str, property: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(ConfigError::BadValue {
            object: object.to_string(),
            property: property.to_string(),
            value: v.to_string(),
            expected: "'on' or 'off'",
        }),
    }
}

fn strtou64(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.starts_with('-') || v.starts_with('+') {
        return None;
    }
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if v.len() > 1 && v.starts_with('0') {
        u64::from_str_radix(&v[1..], 8).ok()
    } else {
        v.parse().ok()
    }
}

/// An unsigned 64-bit integer (`0x` hex, `0` octal or decimal).
pub fn parse_u64(object: &str, property: &str, v: &str) -> Result<u64, ConfigError> {
    strtou64(v).ok_or_else(|| ConfigError::BadValue {
        object: object.to_string(),
        property: property.to_string(),
        value: v.to_string(),
        expected: "uint64",
    })
}

/// An unsigned 32-bit integer.
pub fn parse_u32(object: &str, property: &str, v: &str) -> Result<u32, ConfigError> {
    strtou64(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ConfigError::BadValue {
            object: object.to_string(),
            property: property.to_string(),
            value: v.to_string(),
            expected: "uint32",
        })
}

/// A size with an optional binary suffix; `default_unit` applies when none is given
/// (1 for object sizes, 1 MiB for `-m`).
pub fn parse_size(
    object: &str,
    property: &str,
    v: &str,
    default_unit: u64,
) -> Result<u64, ConfigError> {
    size_of(v, default_unit).ok_or_else(|| ConfigError::BadValue {
        object: object.to_string(),
        property: property.to_string(),
        value: v.to_string(),
        expected: "a non-negative number below 2^64 with an optional suffix B, K, M, G, T, P or E",
    })
}

fn size_of(v: &str, default_unit: u64) -> Option<u64> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() && !v.starts_with("0x") && !v.starts_with("0X") => {
            let unit = match c.to_ascii_uppercase() {
                'B' => 1u64,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                'E' => 1 << 60,
                _ => return None,
            };
            (&v[..i], unit)
        }
        _ => (v, default_unit),
    };
    if num.starts_with("0x") || num.starts_with("0X") {
        return strtou64(num)?.checked_mul(unit);
    }
    let (int, frac) = match num.split_once('.') {
        Some((a, b)) => (a, b),
        None => (num, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 18 {
        return None;
    }
    let whole = int.parse::<u64>().ok()?.checked_mul(unit)?;
    if frac.is_empty() {
        return Some(whole);
    }
    let scale = 10u128.pow(frac.len() as u32);
    let f = frac.parse::<u128>().ok()? * u128::from(unit);
    // QEMU rounds a fractional size down to whole bytes.
    let part = u64::try_from(f / scale).ok()?;
    whole.checked_add(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_escape() {
        assert_eq!(split("a,b=c,,d,e"), vec!["a", "b=c,d", "e"]);
        assert_eq!(split("x=,,,,"), vec!["x=,,"]);
        assert_eq!(split(&escape("a,b")), vec!["a,b"]);
        let p = parse("-machine", "q35,accel=kvm,smm", Some("type")).unwrap();
        assert_eq!(
            p,
            vec![
                ("type".into(), "q35".into()),
                ("accel".into(), "kvm".into()),
                ("smm".into(), "on".into())
            ]
        );
        assert!(parse("-object", "a,=b", Some("qom-type")).is_err());
    }

    #[test]
    fn values() {
        for t in ["on", "yes", "true", "y"] {
            assert!(parse_bool("o", "p", t).unwrap());
        }
        for f in ["off", "no", "false", "n"] {
            assert!(!parse_bool("o", "p", f).unwrap());
        }
        assert!(parse_bool("o", "p", "1").is_err());
        assert_eq!(parse_u64("o", "p", "0x30000").unwrap(), 0x30000);
        assert_eq!(parse_u64("o", "p", "010").unwrap(), 8);
        assert_eq!(parse_u64("o", "p", "51").unwrap(), 51);
        assert!(parse_u64("o", "p", "-1").is_err());
        assert!(parse_u32("o", "p", "0x100000000").is_err());
        assert_eq!(parse_size("o", "p", "4G", 1).unwrap(), 4 << 30);
        assert_eq!(parse_size("o", "p", "4g", 1).unwrap(), 4 << 30);
        assert_eq!(parse_size("o", "p", "1.5G", 1).unwrap(), 3 << 29);
        assert_eq!(parse_size("o", "p", "4096", 1 << 20).unwrap(), 4 << 30);
        assert_eq!(parse_size("o", "p", "512k", 1).unwrap(), 512 << 10);
        assert_eq!(parse_size("o", "p", "0x1000", 1).unwrap(), 0x1000);
        assert_eq!(parse_size("o", "p", "100B", 1 << 20).unwrap(), 100);
        assert!(parse_size("o", "p", "16E", 1).is_err());
        assert!(parse_size("o", "p", "4X", 1).is_err());
        assert!(parse_size("o", "p", "", 1).is_err());
        assert!(parse_size("o", "p", "G", 1).is_err());
    }
}
