//! The command-line front end: QEMU's argv (`-opt value`, `-opt=value`, `--opt`) into
//! the raw option set, then validation.

use super::Config;
use super::raw::{FLAGS, Raw};
use crate::error::ConfigError;

/// Parse a QEMU command line (without the program name) into a validated [`Config`].
/// `--opt` is accepted for `-opt`, as QEMU does.
pub fn parse_args<I, S>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
    let mut raw = Raw::default();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if !a.starts_with('-') || a == "-" {
            raw.notes.push(format!(
                "{a}: disk image accepted and ignored (softsev models no block devices)"
            ));
            continue;
        }
        let opt = if a.starts_with("--") {
            &a[1..]
        } else {
            a.as_str()
        };
        // QEMU also accepts `-opt=value`.
        let (opt, inline) = match opt.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (opt, None),
        };
        if FLAGS.contains(&opt) {
            raw.option(opt, None)?;
            continue;
        }
        let arg = match inline {
            Some(v) => Some(v),
            None => {
                let v = args.get(i).cloned();
                if v.is_some() {
                    i += 1;
                }
                v
            }
        };
        raw.option(opt, arg.as_deref())?;
    }
    raw.validate()
}
