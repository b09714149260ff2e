//! The raw option set both front ends fill: each QEMU option as given, split into
//! `key=value` properties but not yet interpreted (ripgrep's "low-level arguments").
//! Options without effect on a launch are recorded as notes here.

use crate::error::ConfigError;
use crate::keyval::{self, Props};

/// The options as given, before validation.
#[derive(Clone, Debug, Default)]
pub(super) struct Raw {
    /// `-machine` properties, all occurrences merged in order.
    pub(super) machine: Props,
    /// Each `-object`'s properties.
    pub(super) objects: Vec<Props>,
    /// `-smp` (the last one).
    pub(super) smp: Option<Props>,
    /// `-m` (the last one).
    pub(super) mem: Option<Props>,
    /// `-cpu`.
    pub(super) cpu: Option<String>,
    /// `-bios`.
    pub(super) bios: Option<String>,
    /// `-kernel`.
    pub(super) kernel: Option<String>,
    /// `-initrd`.
    pub(super) initrd: Option<String>,
    /// `-append`.
    pub(super) append: Option<String>,
    /// `-name guest=`.
    pub(super) name: Option<String>,
    /// Each `-qmp` chardev spec, in order.
    pub(super) qmp: Vec<String>,
    /// `-S`: do not start the vCPUs until `cont`.
    pub(super) start_paused: bool,
    /// `-incoming` (the last one).
    pub(super) incoming: Option<String>,
    /// Options accepted without effect, one line each.
    pub(super) notes: Vec<String>,
}

/// The last value of `key` (QEMU: a later property overrides an earlier one).
pub(super) fn props_get<'a>(p: &'a Props, key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Options that take no argument.
pub(super) const FLAGS: &[&str] = &[
    "-enable-kvm",
    "-nographic",
    "-no-reboot",
    "-no-shutdown",
    "-nodefaults",
    "-no-user-config",
    "-daemonize",
    "-no-hpet",
    "-snapshot",
    "-S",
];

/// `accel=` must name KVM.
pub(super) fn check_accel(what: &str, accel: &str) -> Result<(), ConfigError> {
    if accel.split(':').next() == Some("kvm") {
        Ok(())
    } else {
        Err(ConfigError::Unsupported {
            what: format!("{what} {accel}"),
            reason: "confidential guest support (SEV-SNP) requires KVM; softsev simulates a KVM host",
        })
    }
}

impl Raw {
    /// Record one option (`-machine`, `-object`, ...) with its argument.
    pub(super) fn option(&mut self, opt: &str, arg: Option<&str>) -> Result<(), ConfigError> {
        let need = |a: Option<&str>| -> Result<String, ConfigError> {
            a.map(str::to_string).ok_or(ConfigError::MissingArgument {
                option: opt.to_string(),
            })
        };
        match opt {
            "-machine" | "-M" => {
                let a = need(arg)?;
                self.machine
                    .extend(keyval::parse("-machine", &a, Some("type"))?);
            }
            "-object" => {
                let a = need(arg)?;
                self.objects
                    .push(keyval::parse("-object", &a, Some("qom-type"))?);
            }
            "-smp" => self.smp = Some(keyval::parse("-smp", &need(arg)?, Some("cpus"))?),
            "-m" => self.mem = Some(keyval::parse("-m", &need(arg)?, Some("size"))?),
            "-cpu" => self.cpu = Some(need(arg)?),
            "-bios" => self.bios = Some(need(arg)?),
            "-kernel" => self.kernel = Some(need(arg)?),
            "-initrd" => self.initrd = Some(need(arg)?),
            "-append" => self.append = Some(need(arg)?),
            "-name" => {
                let p = keyval::parse("-name", &need(arg)?, Some("guest"))?;
                self.name = props_get(&p, "guest").map(str::to_string);
            }
            "-accel" => {
                let a = need(arg)?;
                let p = keyval::parse("-accel", &a, Some("accel"))?;
                check_accel("-accel", props_get(&p, "accel").unwrap_or(""))?;
            }
            "-drive" => {
                let a = need(arg)?;
                let p = keyval::parse("-drive", &a, None)?;
                if props_get(&p, "if") == Some("pflash") {
                    return Err(ConfigError::Unsupported {
                        what: format!("-drive {a}"),
                        reason: "SEV-SNP guests boot from -bios; pflash firmware is not measured \
                                 by KVM_SEV_SNP_LAUNCH_UPDATE",
                    });
                }
                self.notes.push(format!(
                    "-drive {a}: accepted and ignored (softsev models no block devices; the launch \
                     digest does not depend on them)"
                ));
            }
            "-netdev" | "-device" | "-chardev" | "-serial" | "-monitor" | "-mon" | "-display"
            | "-vga" | "-pidfile" | "-global" | "-boot" | "-rtc" | "-fw_cfg" | "-L" | "-k"
            | "-D" | "-d" | "-trace" | "-audiodev" | "-hda" | "-cdrom" | "-nic" => {
                let a = need(arg)?;
                self.notes.push(format!(
                    "{opt} {a}: accepted and ignored (no effect on an SNP launch in softsev)"
                ));
            }
            "-enable-kvm" | "-nographic" | "-no-reboot" | "-no-shutdown" | "-nodefaults"
            | "-no-user-config" | "-daemonize" | "-no-hpet" | "-snapshot" => {}
            "-S" => self.start_paused = true,
            "-qmp" => self.qmp.push(need(arg)?),
            "-incoming" => self.incoming = Some(need(arg)?),
            _ => {
                return Err(ConfigError::UnknownOption {
                    option: opt.to_string(),
                });
            }
        }
        Ok(())
    }
}
