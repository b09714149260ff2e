//! `-object` property parsers, with QEMU's property names and defaults: the
//! confidential-guest objects (`sev-guest`, `sev-snp-guest`; QEMU `target/i386/sev.c`
//! `sev_common_instance_init`, `sev_guest_class_init`, `sev_snp_guest_class_init`)
//! and the memory backends (`backends/hostmem*.c`).

use super::raw::props_get;
use super::{
    BackendKind, ConfidentialGuest, MemoryBackend, OnOffAuto, SevGuestConfig, SnpGuestConfig,
};
use crate::error::ConfigError;
use crate::keyval::{Props, parse_bool, parse_size, parse_u32, parse_u64};
use base64::Engine;
use std::path::PathBuf;

/// A parsed `-object`.
pub(super) enum Object {
    /// `sev-guest` or `sev-snp-guest`.
    Guest(Box<GuestObject>),
    /// `memory-backend-*`.
    Backend(MemoryBackend),
    /// An object type accepted without effect (its QOM type).
    Other(String),
}

/// A confidential-guest object with what validation needs to know about how its
/// common properties were given.
pub(super) struct GuestObject {
    /// The object, with QEMU's defaults where a property was not given (its `cbitpos`
    /// is 0 until validated).
    pub(super) guest: ConfidentialGuest,
    /// `cbitpos` as given: QEMU has no default, the value must equal the host's.
    pub(super) cbitpos: Option<u32>,
    /// Whether `reduced-phys-bits` was given: QEMU requires it.
    pub(super) reduced_phys_bits_given: bool,
}

impl Object {
    /// The QOM type name.
    pub(super) fn type_name(&self) -> String {
        match self {
            Object::Guest(g) => g.guest.qom_type().into(),
            Object::Backend(b) => b.kind.qom_type().into(),
            Object::Other(t) => t.clone(),
        }
    }
}

/// Object types accepted and ignored: they have no effect on a launch.
pub(super) const IGNORED_OBJECTS: &[&str] = &[
    "rng-random",
    "rng-builtin",
    "rng-egd",
    "iothread",
    "secret",
    "secret_keyring",
    "tls-creds-x509",
    "tls-creds-psk",
    "tls-creds-anon",
    "throttle-group",
    "main-loop",
    "thread-context",
    "authz-simple",
    "cryptodev-backend-builtin",
    "filter-dump",
];

fn decode_b64(object: &str, property: &str, v: &str) -> Result<Vec<u8>, ConfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|_| ConfigError::BadBase64 {
            object: object.to_string(),
            property: property.to_string(),
        })
}

fn exact<const N: usize>(object: &str, property: &str, v: &str) -> Result<[u8; N], ConfigError> {
    let b = decode_b64(object, property, v)?;
    <[u8; N]>::try_from(b.as_slice()).map_err(|_| ConfigError::BlobLength {
        object: object.to_string(),
        property: property.to_string(),
        len: b.len(),
        rule: format!("not equal to {N}"),
    })
}

/// The properties every SEV object has (QEMU `SevCommonState`), as given.
struct CommonProps {
    sev_device: String,
    cbitpos: Option<u32>,
    reduced_phys_bits: Option<u32>,
    kernel_hashes: bool,
}

impl CommonProps {
    fn new() -> Self {
        CommonProps {
            sev_device: "/dev/sev".to_string(),
            cbitpos: None,
            reduced_phys_bits: None,
            kernel_hashes: false,
        }
    }

    /// Take `k=v` if it is a common property (`Ok(false)` if it is not one).
    fn take(&mut self, object: &str, k: &str, v: &str) -> Result<bool, ConfigError> {
        match k {
            "sev-device" => self.sev_device = v.to_string(),
            "cbitpos" => self.cbitpos = Some(parse_u32(object, k, v)?),
            "reduced-phys-bits" => self.reduced_phys_bits = Some(parse_u32(object, k, v)?),
            "kernel-hashes" => self.kernel_hashes = parse_bool(object, k, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `sev-snp-guest` (QEMU `SevSnpGuestState`; policy default 0x30000).
pub(super) fn parse_snp(p: &Props) -> Result<GuestObject, ConfigError> {
    const O: &str = "sev-snp-guest";
    let id = props_get(p, "id").unwrap_or_default();
    let mut s = SnpGuestConfig::new(id, 0);
    let mut common = CommonProps::new();
    for (k, v) in p {
        if common.take(O, k, v)? {
            continue;
        }
        match k.as_str() {
            "qom-type" | "id" => {}
            "policy" => s.policy = parse_u64(O, k, v)?,
            "debug-swap" => s.debug_swap = parse_bool(O, k, v)?,
            "author-key-enabled" => s.author_key_enabled = parse_bool(O, k, v)?,
            "vcek-disabled" => s.vcek_disabled = parse_bool(O, k, v)?,
            "guest-visible-workarounds" => s.gosvw = exact::<16>(O, k, v)?,
            "host-data" => s.host_data = exact::<32>(O, k, v)?,
            "id-block" => s.id_block = Some(exact::<96>(O, k, v)?.to_vec()),
            "id-auth" => {
                let b = decode_b64(O, k, v)?;
                if b.len() > 4096 {
                    return Err(ConfigError::BlobLength {
                        object: O.into(),
                        property: k.clone(),
                        len: b.len(),
                        rule: "exceeds max of 4096".into(),
                    });
                }
                s.id_auth = Some(b);
            }
            // `certs-path` in the first RFC, `certs-filename` in later revisions.
            "certs-path" | "certs-filename" => s.certs_path = Some(PathBuf::from(v)),
            "certs-timeout" => {
                parse_u32(O, k, v)?;
            }
            _ => {
                return Err(ConfigError::UnknownProperty {
                    object: O.into(),
                    property: k.clone(),
                });
            }
        }
    }
    s.sev_device = common.sev_device;
    s.kernel_hashes = common.kernel_hashes;
    if let Some(r) = common.reduced_phys_bits {
        s.reduced_phys_bits = r;
    }
    Ok(GuestObject {
        guest: ConfidentialGuest::Snp(s),
        cbitpos: common.cbitpos,
        reduced_phys_bits_given: common.reduced_phys_bits.is_some(),
    })
}

/// `sev-guest` (QEMU `SevGuestState`; policy default NODBG 0x1, SEV-ES with policy
/// bit 2).
pub(super) fn parse_sev(p: &Props) -> Result<GuestObject, ConfigError> {
    const O: &str = "sev-guest";
    let id = props_get(p, "id").unwrap_or_default();
    let mut g = SevGuestConfig::new(id, 0);
    let mut common = CommonProps::new();
    for (k, v) in p {
        if common.take(O, k, v)? {
            continue;
        }
        match k.as_str() {
            "qom-type" | "id" => {}
            "policy" => g.policy = parse_u32(O, k, v)?,
            "handle" => g.handle = parse_u32(O, k, v)?,
            "dh-cert-file" => g.dh_cert_file = Some(PathBuf::from(v)),
            "session-file" => g.session_file = Some(PathBuf::from(v)),
            "legacy-vm-type" => {
                g.legacy_vm_type = match v.as_str() {
                    "on" => OnOffAuto::On,
                    "off" => OnOffAuto::Off,
                    "auto" => OnOffAuto::Auto,
                    // QAPI `input_type_enum` on the OnOffAuto property.
                    _ => {
                        return Err(ConfigError::EnumValue {
                            property: k.clone(),
                            value: v.clone(),
                        });
                    }
                }
            }
            _ => {
                return Err(ConfigError::UnknownProperty {
                    object: O.into(),
                    property: k.clone(),
                });
            }
        }
    }
    g.sev_device = common.sev_device;
    g.kernel_hashes = common.kernel_hashes;
    if let Some(r) = common.reduced_phys_bits {
        g.reduced_phys_bits = r;
    }
    Ok(GuestObject {
        guest: ConfidentialGuest::from_sev_guest(g),
        cbitpos: common.cbitpos,
        reduced_phys_bits_given: common.reduced_phys_bits.is_some(),
    })
}

/// `memory-backend-memfd`, `-ram` and `-file`.
pub(super) fn parse_backend(
    kind: BackendKind,
    type_name: &str,
    p: &Props,
) -> Result<MemoryBackend, ConfigError> {
    let mut b = MemoryBackend {
        id: props_get(p, "id").unwrap_or_default().to_string(),
        kind,
        size: 0,
        share: false,
        reserve: true,
        mem_path: None,
    };
    let mut size = None;
    for (k, v) in p {
        match (k.as_str(), kind) {
            ("qom-type" | "id", _) => {}
            ("size", _) => size = Some(parse_size(type_name, k, v, 1)?),
            ("share", _) => b.share = parse_bool(type_name, k, v)?,
            ("reserve", _) => b.reserve = parse_bool(type_name, k, v)?,
            ("prealloc" | "merge" | "dump" | "x-use-canonical-path-for-ramblock-id", _) => {
                parse_bool(type_name, k, v)?;
            }
            ("prealloc-threads", _) => {
                parse_u32(type_name, k, v)?;
            }
            ("policy" | "host-nodes" | "prealloc-context", _) => {}
            ("hugetlb" | "seal", BackendKind::Memfd) => {
                parse_bool(type_name, k, v)?;
            }
            ("hugetlbsize", BackendKind::Memfd) => {
                parse_size(type_name, k, v, 1)?;
            }
            ("mem-path", BackendKind::File) => b.mem_path = Some(PathBuf::from(v)),
            ("align" | "offset", BackendKind::File) => {
                parse_size(type_name, k, v, 1)?;
            }
            ("discard-data" | "pmem" | "readonly" | "rom", BackendKind::File) => {}
            _ => {
                return Err(ConfigError::UnknownProperty {
                    object: type_name.into(),
                    property: k.clone(),
                });
            }
        }
    }
    b.size = match size {
        Some(0) | None => {
            return Err(ConfigError::Memory(format!(
                "{type_name} '{}': can't create backend with size 0 (give size=)",
                b.id
            )));
        }
        Some(s) => s,
    };
    if kind == BackendKind::File && b.mem_path.is_none() {
        return Err(ConfigError::MissingParameter {
            object: type_name.into(),
            property: "mem-path".into(),
        });
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyval;
    use softsev_abi::SevPolicy;

    fn sev(text: &str) -> Result<GuestObject, ConfigError> {
        parse_sev(&keyval::parse("-object", text, Some("qom-type")).unwrap())
    }

    #[test]
    fn sev_guest_properties_and_defaults() {
        let g = sev("sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1").unwrap();
        let ConfidentialGuest::Sev(s) = &g.guest else {
            panic!("policy 0x1 is SEV: {:?}", g.guest)
        };
        assert_eq!(s.policy, SevPolicy::NODBG);
        assert_eq!((s.handle, s.legacy_vm_type), (0, OnOffAuto::Auto));
        assert_eq!((g.cbitpos, g.reduced_phys_bits_given), (Some(51), true));

        let text = "sev-guest,id=sev1,cbitpos=51,reduced-phys-bits=5,policy=0x5,handle=7,\
                    dh-cert-file=pdh.b64,session-file=session.b64,legacy-vm-type=on,\
                    kernel-hashes=on,sev-device=/dev/sev1";
        let g = sev(text).unwrap();
        let ConfidentialGuest::SevEs(s) = &g.guest else {
            panic!("policy ES is SEV-ES: {:?}", g.guest)
        };
        assert_eq!(s.reduced_phys_bits, 5);
        assert_eq!(s.dh_cert_file.as_deref(), Some("pdh.b64".as_ref()));
        assert_eq!(s.legacy_vm_type, OnOffAuto::On);
        assert!(s.kernel_hashes);
        // The emitter writes what the parser reads.
        let back = sev(&g.guest.to_object_arg()).unwrap();
        assert_eq!(back.guest, g.guest);

        assert!(sev("sev-guest,id=x,legacy-vm-type=maybe").is_err());
        assert!(sev("sev-guest,id=x,id-block=AAAA").is_err());
        assert!(sev("sev-guest,id=x,policy=0x100000000").is_err());
    }
}
