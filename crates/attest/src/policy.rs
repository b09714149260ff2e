//! Relying-party policy: what a genuine report must also say to be accepted, in the
//! breadth of go-sev-guest's `validate.Options` (snp-attestation.md §7.3). Every field
//! is optional; only the requested checks run.

use crate::verdict::{Check, Fault, Verdict};
use softsev_abi::report::{AttestationReport, FirmwareVersion, PlatformInfo, ReportTcbs};
use softsev_abi::{GuestPolicy, Product, TcbVersion};

/// The policy. `Default` accepts every genuine report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Exact MEASUREMENT.
    pub measurement: Option<[u8; 48]>,
    /// Exact REPORT_DATA.
    pub report_data: Option<[u8; 64]>,
    /// Exact HOST_DATA.
    pub host_data: Option<[u8; 32]>,
    /// Exact ID_KEY_DIGEST.
    pub id_key_digest: Option<[u8; 48]>,
    /// Exact AUTHOR_KEY_DIGEST.
    pub author_key_digest: Option<[u8; 48]>,
    /// Exact FAMILY_ID.
    pub family_id: Option<[u8; 16]>,
    /// Exact IMAGE_ID.
    pub image_id: Option<[u8; 16]>,
    /// Exact REPORT_ID.
    pub report_id: Option<[u8; 32]>,
    /// Exact REPORT_ID_MA.
    pub report_id_ma: Option<[u8; 32]>,
    /// Minimum GUEST_SVN.
    pub min_guest_svn: Option<u32>,
    /// Every component of REPORTED_TCB (and CURRENT/COMMITTED) at least this.
    pub min_tcb: Option<TcbVersion>,
    /// Every component of LAUNCH_TCB at least this.
    pub min_launch_tcb: Option<TcbVersion>,
    /// Minimum CURRENT and COMMITTED build number.
    pub min_build: Option<u8>,
    /// Minimum CURRENT and COMMITTED firmware (major, minor).
    pub min_version: Option<(u8, u8)>,
    /// Maximum permitted guest policy (go-sev-guest semantics): the report's policy may
    /// not allow what this one does not (SMT, migration agent, debug, CXL), must
    /// require what this one requires (single socket, AES-256-XTS, RAPL off,
    /// ciphertext hiding, page-swap off), and its ABI minimum must be at least this
    /// one's.
    pub max_guest_policy: Option<GuestPolicy>,
    /// Exact VMPL.
    pub vmpl: Option<u32>,
    /// PLATFORM_INFO bits that must be set.
    pub platform_info_required: Option<u64>,
    /// PLATFORM_INFO bits that must be clear.
    pub platform_info_forbidden: Option<u64>,
    /// CHIP_ID allow-list (each entry the significant bytes: 64, or 8 on Turin).
    pub chip_ids: Vec<Vec<u8>>,
    /// Required product line.
    pub product: Option<Product>,
    /// Required CPUID stepping (v3+).
    pub stepping: Option<u8>,
    /// Refuse provisional firmware: COMMITTED_TCB must equal CURRENT_TCB and the
    /// committed version the current one.
    pub require_committed: bool,
    /// Require an author key (KEY_INFO.AUTHOR_KEY_EN).
    pub require_author_key: bool,
    /// Require an ID block (a non-zero ID_KEY_DIGEST).
    pub require_id_block: bool,
    /// Bits LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR must have set (v5).
    pub required_mit_vector: Option<u64>,
}

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn exact<const N: usize>(v: &mut Verdict, id: &'static str, want: &Option<[u8; N]>, got: &[u8; N]) {
    if let Some(w) = want {
        v.push(Check::cond(id, Fault::Policy, w == got, "matches", || {
            format!("expected {}, got {}", hx(w), hx(got))
        }));
    }
}

fn min_version_ok(v: FirmwareVersion, (maj, min): (u8, u8)) -> bool {
    (v.major, v.minor) >= (maj, min)
}

impl Policy {
    /// Whether no policy check is requested.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Run the requested checks on a report whose TCBs decoded as `tcbs` for `product`.
    /// `vek_stepping` is the stepping the VEK's productName gives (`Milan-B0` → 0), used
    /// for v2 reports, which carry no CPUID.
    pub fn check(
        &self,
        v: &mut Verdict,
        r: &AttestationReport,
        product: Product,
        tcbs: &ReportTcbs,
        vek_stepping: Option<u8>,
    ) {
        exact(v, "policy.measurement", &self.measurement, &r.measurement);
        exact(v, "policy.report_data", &self.report_data, &r.report_data);
        exact(v, "policy.host_data", &self.host_data, &r.host_data);
        exact(
            v,
            "policy.id_key_digest",
            &self.id_key_digest,
            &r.id_key_digest,
        );
        exact(
            v,
            "policy.author_key_digest",
            &self.author_key_digest,
            &r.author_key_digest,
        );
        exact(v, "policy.family_id", &self.family_id, &r.family_id);
        exact(v, "policy.image_id", &self.image_id, &r.image_id);
        exact(v, "policy.report_id", &self.report_id, &r.report_id);
        exact(
            v,
            "policy.report_id_ma",
            &self.report_id_ma,
            &r.report_id_ma,
        );
        if let Some(m) = self.min_guest_svn {
            v.push(Check::cond(
                "policy.guest_svn",
                Fault::Policy,
                r.guest_svn >= m,
                "at least the minimum",
                || format!("expected GUEST_SVN >= {m}, got {}", r.guest_svn),
            ));
        }
        if let Some(m) = &self.min_tcb {
            let low = [
                ("REPORTED_TCB", &tcbs.reported),
                ("CURRENT_TCB", &tcbs.current),
                ("COMMITTED_TCB", &tcbs.committed),
            ]
            .into_iter()
            .find(|(_, t)| !t.dominates(m));
            v.push(Check::cond(
                "policy.min_tcb",
                Fault::Policy,
                low.is_none(),
                format!("reported/current/committed >= {m}"),
                || {
                    let (n, t) = low.unwrap_or(("REPORTED_TCB", &tcbs.reported));
                    format!("{n} {t} is below the minimum {m}")
                },
            ));
        }
        if let Some(m) = &self.min_launch_tcb {
            v.push(Check::cond(
                "policy.min_launch_tcb",
                Fault::Policy,
                tcbs.launch.dominates(m),
                format!("launch >= {m}"),
                || format!("LAUNCH_TCB {} is below the minimum {m}", tcbs.launch),
            ));
        }
        let (cur, com) = (r.current_version(), r.committed_version());
        if let Some(b) = self.min_build {
            v.push(Check::cond(
                "policy.min_build",
                Fault::Policy,
                cur.build >= b && com.build >= b,
                format!("build >= {b}"),
                || format!("expected build >= {b}, got current {cur}, committed {com}"),
            ));
        }
        if let Some(mv) = self.min_version {
            v.push(Check::cond(
                "policy.min_version",
                Fault::Policy,
                min_version_ok(cur, mv) && min_version_ok(com, mv),
                format!("firmware >= {}.{}", mv.0, mv.1),
                || {
                    format!(
                        "expected firmware >= {}.{}, got current {cur}, committed {com}",
                        mv.0, mv.1
                    )
                },
            ));
        }
        if let Some(max) = self.max_guest_policy {
            v.push(check_guest_policy(max, r.guest_policy()));
        }
        if let Some(want) = self.vmpl {
            v.push(Check::cond(
                "policy.vmpl",
                Fault::Policy,
                r.vmpl == want,
                "matches",
                || format!("expected VMPL {want}, got {}", r.vmpl),
            ));
        }
        let pi = r.platform_info;
        if let Some(req) = self.platform_info_required {
            v.push(Check::cond(
                "policy.platform_info_required",
                Fault::Policy,
                pi.0 & req == req,
                format!("{:?} has {req:#x}", pi),
                || {
                    format!(
                        "PLATFORM_INFO {:?} lacks required {:?}",
                        pi,
                        PlatformInfo(req & !pi.0)
                    )
                },
            ));
        }
        if let Some(forb) = self.platform_info_forbidden {
            v.push(Check::cond(
                "policy.platform_info_forbidden",
                Fault::Policy,
                pi.0 & forb == 0,
                format!("{:?} has none of {forb:#x}", pi),
                || {
                    format!(
                        "PLATFORM_INFO {:?} has forbidden {:?}",
                        pi,
                        PlatformInfo(pi.0 & forb)
                    )
                },
            ));
        }
        if !self.chip_ids.is_empty() {
            let got = r.chip_id_for(product);
            v.push(Check::cond(
                "policy.chip_id",
                Fault::Policy,
                self.chip_ids.iter().any(|c| c.as_slice() == got),
                "in the allow-list",
                || format!("CHIP_ID {} is not in the allow-list", hx(got)),
            ));
        }
        if let Some(p) = self.product {
            v.push(Check::cond(
                "policy.product",
                Fault::Policy,
                p == product,
                format!("{product}"),
                || format!("expected product {p}, got {product}"),
            ));
        }
        if let Some(s) = self.stepping {
            let got = if r.version >= 3 {
                Some(r.cpuid_step)
            } else {
                vek_stepping
            };
            v.push(match got {
                Some(g) => Check::cond(
                    "policy.stepping",
                    Fault::Policy,
                    g == s,
                    format!("stepping {s}"),
                    || format!("expected product stepping {s}, got {g}"),
                ),
                None => Check::fail(
                    "policy.stepping",
                    Fault::Policy,
                    format!(
                        "expected product stepping {s}, but a v{} report has no CPUID and the VEK names no stepping",
                        r.version
                    ),
                ),
            });
        }
        if self.require_committed {
            v.push(Check::cond(
                "policy.committed",
                Fault::Policy,
                r.committed_tcb == r.current_tcb && cur == com,
                "current firmware is committed",
                || {
                    format!(
                        "provisional firmware: current {cur} TCB {}, committed {com} TCB {}",
                        tcbs.current, tcbs.committed
                    )
                },
            ));
        }
        if self.require_author_key {
            v.push(Check::cond(
                "policy.author_key",
                Fault::Policy,
                r.key_info.author_key_en(),
                "AUTHOR_KEY_EN set",
                || "no author key (KEY_INFO.AUTHOR_KEY_EN clear)".into(),
            ));
        }
        if self.require_id_block {
            v.push(Check::cond(
                "policy.id_block",
                Fault::Policy,
                r.id_key_digest.iter().any(|&b| b != 0),
                "launched with an ID block",
                || "no ID block (ID_KEY_DIGEST is zero)".into(),
            ));
        }
        if let Some(m) = self.required_mit_vector {
            let ok =
                r.version >= 5 && r.launch_mit_vector & m == m && r.current_mit_vector & m == m;
            v.push(Check::cond(
                "policy.mit_vector",
                Fault::Policy,
                ok,
                format!("mitigations {m:#x} present"),
                || {
                    format!(
                        "required mitigation bits {m:#x}; report v{} launch {:#x} current {:#x}",
                        r.version, r.launch_mit_vector, r.current_mit_vector
                    )
                },
            ));
        }
    }
}

/// go-sev-guest's guest-policy rule: `got` may not permit more than `max`.
fn check_guest_policy(max: GuestPolicy, got: GuestPolicy) -> Check {
    let permissions = [
        (GuestPolicy::SMT, "SMT"),
        (GuestPolicy::MIGRATE_MA, "MIGRATE_MA"),
        (GuestPolicy::DEBUG, "DEBUG"),
        (GuestPolicy::CXL_ALLOW, "CXL_ALLOW"),
    ];
    let restrictions = [
        (GuestPolicy::SINGLE_SOCKET, "SINGLE_SOCKET"),
        (GuestPolicy::MEM_AES_256_XTS, "MEM_AES_256_XTS"),
        (GuestPolicy::RAPL_DIS, "RAPL_DIS"),
        (GuestPolicy::CIPHERTEXT_HIDING, "CIPHERTEXT_HIDING"),
        (GuestPolicy::PAGE_SWAP_DISABLE, "PAGE_SWAP_DISABLE"),
    ];
    let mut why = Vec::new();
    for (bit, name) in permissions {
        if got.has(bit) && !max.has(bit) {
            why.push(format!("allows {name}"));
        }
    }
    for (bit, name) in restrictions {
        if max.has(bit) && !got.has(bit) {
            why.push(format!("does not require {name}"));
        }
    }
    if (got.abi_major(), got.abi_minor()) < (max.abi_major(), max.abi_minor()) {
        why.push(format!(
            "ABI minimum {}.{} below {}.{}",
            got.abi_major(),
            got.abi_minor(),
            max.abi_major(),
            max.abi_minor()
        ));
    }
    Check::cond(
        "policy.guest_policy",
        Fault::Policy,
        why.is_empty(),
        format!("{got:?} within {max:?}"),
        || format!("guest policy {got:?} {}", why.join(", ")),
    )
}

/// Parse a TCB given as a raw u64 (`0x…` or decimal, product layout) or as
/// `bl=2,tee=0,snp=5,ucode=68[,fmc=1]`.
///
/// In the component form every component is required once (a missing one would
/// silently be 0, a repeated one silently the last): `bl`, `tee`, `snp` and `ucode`,
/// plus `fmc` when the product is Turin; `fmc` for another known product is refused.
pub fn parse_tcb(s: &str, product: Option<Product>) -> Result<TcbSpec, String> {
    if s.contains('=') {
        let mut t = TcbVersion::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for part in s.split(',') {
            let (k, val) = part
                .split_once('=')
                .ok_or_else(|| format!("TCB component {part:?}: expected name=value"))?;
            let n: u8 = val
                .trim()
                .parse()
                .map_err(|e| format!("TCB component {part:?}: {e}"))?;
            let (name, slot) = match k.trim() {
                "bl" | "bootloader" => ("bl", &mut t.bootloader),
                "tee" => ("tee", &mut t.tee),
                "snp" => ("snp", &mut t.snp),
                "ucode" | "microcode" => ("ucode", &mut t.microcode),
                "fmc" => ("fmc", &mut t.fmc),
                other => return Err(format!("unknown TCB component {other:?}")),
            };
            if seen.contains(&name) {
                return Err(format!("TCB component {name} given twice in {s:?}"));
            }
            seen.push(name);
            *slot = n;
        }
        let mut required = vec!["bl", "tee", "snp", "ucode"];
        match product {
            Some(Product::Turin) => required.push("fmc"),
            Some(p) if seen.contains(&"fmc") => {
                return Err(format!("{p} TCB has no FMC component, but {s:?} gives fmc"));
            }
            _ => {}
        }
        let missing: Vec<&str> = required.into_iter().filter(|c| !seen.contains(c)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "TCB {s:?} lacks {} (give every component: bl=,tee=,snp=,ucode={})",
                missing.join(", "),
                if product == Some(Product::Turin) {
                    ",fmc="
                } else {
                    ""
                }
            ));
        }
        return Ok(TcbSpec::Components(t));
    }
    let raw = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("TCB {s:?}: {e}"))?;
    match product {
        Some(p) => TcbVersion::decode(softsev_abi::RawTcb::from_u64(raw), p)
            .map(TcbSpec::Components)
            .map_err(|e| e.to_string()),
        None => Ok(TcbSpec::Raw(raw)),
    }
}

/// A TCB from the command line: components, or a raw value to decode once the
/// product is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcbSpec {
    /// Components.
    Components(TcbVersion),
    /// Raw u64 in the product's layout.
    Raw(u64),
}

impl TcbSpec {
    /// The components for `product`.
    pub fn resolve(self, product: Product) -> Result<TcbVersion, String> {
        match self {
            TcbSpec::Components(t) => Ok(t),
            TcbSpec::Raw(r) => TcbVersion::decode(softsev_abi::RawTcb::from_u64(r), product)
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_policy_rule() {
        let max = GuestPolicy(0x30000); // SMT allowed
        assert_eq!(
            check_guest_policy(max, GuestPolicy(0x30000)).outcome,
            crate::verdict::Outcome::Pass
        );
        let c = check_guest_policy(max, GuestPolicy(0xb0000));
        assert!(c.detail.contains("allows DEBUG"), "{}", c.detail);
        let c = check_guest_policy(GuestPolicy(0x130000), GuestPolicy(0x30000));
        assert!(c.detail.contains("SINGLE_SOCKET"), "{}", c.detail);
        let c = check_guest_policy(GuestPolicy(0x30102), GuestPolicy(0x30101));
        assert!(
            c.detail.contains("ABI minimum 1.1 below 1.2"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn tcb_specs() {
        let t = parse_tcb("bl=2,tee=0,snp=5,ucode=68", None).unwrap();
        let want = TcbVersion {
            fmc: 0,
            bootloader: 2,
            tee: 0,
            snp: 5,
            microcode: 68,
        };
        assert_eq!(t, TcbSpec::Components(want));
        let raw = parse_tcb("0x4405000000000002", None).unwrap();
        assert_eq!(raw.resolve(Product::Milan).unwrap(), want);
        assert_eq!(
            parse_tcb("4901323769462652930", Some(Product::Milan)).unwrap(),
            TcbSpec::Components(want)
        );
        assert!(parse_tcb("bl=x", None).is_err());
        assert!(parse_tcb("zz=1", None).is_err());
        assert!(raw.resolve(Product::Turin).is_err());
        // Probe P12: a missing component is not silently 0, a repeated one not
        // silently the last; fmc only where the product has it.
        let e = parse_tcb("bl=3,tee=0,snp=20", None).unwrap_err();
        assert!(e.contains("lacks ucode"), "{e}");
        let e = parse_tcb("bl=3,bl=4,tee=0,snp=20,ucode=1", None).unwrap_err();
        assert!(e.contains("bl given twice"), "{e}");
        let e = parse_tcb("bootloader=3,tee=0,snp=20,ucode=1,bl=2", None).unwrap_err();
        assert!(e.contains("bl given twice"), "{e}");
        let e = parse_tcb("bl=3,tee=0,snp=20,ucode=1", Some(Product::Turin)).unwrap_err();
        assert!(e.contains("lacks fmc"), "{e}");
        let e = parse_tcb("bl=3,tee=0,snp=20,ucode=1,fmc=1", Some(Product::Milan)).unwrap_err();
        assert!(e.contains("no FMC"), "{e}");
        assert!(parse_tcb("fmc=1,bl=3,tee=0,snp=20,ucode=1", Some(Product::Turin)).is_ok());
        assert!(parse_tcb("fmc=1,bl=3,tee=0,snp=20,ucode=1", None).is_ok());
    }
}
