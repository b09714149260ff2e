//! Validation: the raw option set into a [`Config`], one function per option or object,
//! in QEMU's order (machine, objects, confidential-guest lookup, memory, CPUs, the
//! confidential-guest object, boot blobs), so that a configuration with several
//! mistakes reports the same first one QEMU would.
//!
//! The policy rule is abi's ([`softsev_abi::policy`]): without a host, [`check_policy`]
//! refuses what no KVM accepts; with one, [`check_policy_on_host`] applies the host's
//! `KVM_X86_SNP_POLICY_BITS` as KVM_SEV_SNP_LAUNCH_START does.

use super::objects::{GuestObject, IGNORED_OBJECTS, Object, parse_backend, parse_sev, parse_snp};
use super::raw::{Raw, check_accel, props_get};
use super::{
    BackendKind, Blob, ConfidentialGuest, Config, MachineConfig, MachineKind, MemoryBackend,
    MemoryConfig, SevGuestConfig, Smp, SnpGuestConfig,
};
use crate::cpu::{CpuModel, host_cbitpos};
use crate::error::ConfigError;
use crate::keyval::{Props, parse_size, parse_u32};
use softsev_abi::{GuestPolicy, KvmPolicyError};

const DEFAULT_RAM: u64 = 128 << 20;
const MIB: u64 = 1 << 20;

/// The policy checks that need no host: bit 17 set and no bit outside what KVM knows
/// ([`GuestPolicy::KVM_KNOWN`], `KVM_SNP_POLICY_MASK_VALID`), so every host's
/// KVM_SEV_SNP_LAUNCH_START would refuse what this refuses. SMT, SINGLE_SOCKET and bits
/// 21–25 are left to the host ([`check_policy_on_host`]) and the firmware, as QEMU
/// leaves them to KVM.
pub fn check_policy(policy: u64) -> Result<(), ConfigError> {
    let err = |reason| Err(ConfigError::Policy { policy, reason });
    if policy & GuestPolicy::RESERVED_MBO == 0 {
        return err("bit 17 is reserved and must be 1 (the firmware refuses it at LAUNCH_START)");
    }
    if policy & !GuestPolicy::KVM_KNOWN != 0 {
        return err(
            "bits outside KVM's accepted set are set (KVM_SEV_SNP_LAUNCH_START allows at most \
             ABI 15:0, SMT 16, bit 17, DEBUG 19, SINGLE_SOCKET 20 and bits 21-25 where the \
             firmware supports them)",
        );
    }
    Ok(())
}

/// KVM_SEV_SNP_LAUNCH_START's policy checks against the bits the host reports
/// (`KVM_GET_DEVICE_ATTR(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)`), in KVM's order.
pub fn check_policy_on_host(policy: GuestPolicy, host_bits: u64) -> Result<(), ConfigError> {
    policy
        .check_kvm(host_bits)
        .map_err(|e| ConfigError::Policy {
            policy: policy.0,
            reason: match e {
                KvmPolicyError::Unsupported { .. } => {
                    "bits outside the host's KVM_X86_SNP_POLICY_BITS are set \
                 (KVM_SEV_SNP_LAUNCH_START would fail with EINVAL)"
                }
                KvmPolicyError::Bit17Clear(_) => {
                    "bit 17 is reserved and must be 1 (the firmware refuses it at LAUNCH_START)"
                }
            },
        })
}

/// What `-machine` names: its confidential-guest object and its memory backend.
struct MachineRefs {
    confidential_guest: Option<String>,
    memory_backend: Option<String>,
}

/// `-machine`: the type and its properties.
fn validate_machine(props: &Props) -> Result<(MachineConfig, MachineRefs), ConfigError> {
    let mtype = props_get(props, "type").unwrap_or("pc").to_string();
    let kind = if mtype == "q35" || mtype.starts_with("pc-q35-") {
        MachineKind::Q35
    } else if mtype == "pc" || mtype.starts_with("pc-i440fx-") {
        MachineKind::Pc
    } else {
        return Err(ConfigError::UnknownMachine(mtype));
    };
    let mobj = format!("{mtype}-machine");
    let mut machine = MachineConfig {
        name: mtype.clone(),
        kind,
        max_ram_below_4g: None,
    };
    let mut refs = MachineRefs {
        confidential_guest: None,
        memory_backend: None,
    };
    for (k, v) in props {
        match k.as_str() {
            "type" => {}
            "confidential-guest-support" | "memory-encryption" => {
                refs.confidential_guest = Some(v.clone());
            }
            "memory-backend" => refs.memory_backend = Some(v.clone()),
            "accel" => check_accel("-machine accel", v)?,
            "smm" => match v.as_str() {
                "auto" | "off" => {}
                "on" => {
                    return Err(ConfigError::Unsupported {
                        what: format!("{mobj}.smm=on"),
                        reason: "SEV-SNP does not support SMM.",
                    });
                }
                _ => {
                    return Err(ConfigError::BadValue {
                        object: mobj,
                        property: k.clone(),
                        value: v.clone(),
                        expected: "'on', 'off' or 'auto'",
                    });
                }
            },
            "kernel-irqchip" => match v.as_str() {
                "on" | "split" => {}
                "off" => {
                    return Err(ConfigError::Unsupported {
                        what: format!("{mobj}.kernel-irqchip=off"),
                        reason: "SEV-ES guests require in-kernel irqchip support",
                    });
                }
                _ => {
                    return Err(ConfigError::BadValue {
                        object: mobj,
                        property: k.clone(),
                        value: v.clone(),
                        expected: "'on', 'off' or 'split'",
                    });
                }
            },
            "max-ram-below-4g" => machine.max_ram_below_4g = Some(parse_size(&mobj, k, v, 1)?),
            "vmport"
            | "hpet"
            | "usb"
            | "dump-guest-core"
            | "mem-merge"
            | "graphics"
            | "pit"
            | "pic"
            | "sata"
            | "smbus"
            | "i8042"
            | "acpi"
            | "nvdimm"
            | "suppress-vmdesc"
            | "hmat"
            | "default-bus-bypass-iommu"
            | "x-oem-id"
            | "x-oem-table-id" => {}
            "pflash0" | "pflash1" => {
                return Err(ConfigError::Unsupported {
                    what: format!("{mobj}.{k}"),
                    reason: "SEV-SNP guests boot from -bios; pflash firmware is not measured",
                });
            }
            _ => {
                return Err(ConfigError::UnknownProperty {
                    object: mobj,
                    property: k.clone(),
                });
            }
        }
    }
    Ok((machine, refs))
}

/// Every `-object`, by id.
fn validate_objects(
    objects: &[Props],
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Object)>, ConfigError> {
    let mut out: Vec<(String, Object)> = Vec::new();
    for p in objects {
        let qom = props_get(p, "qom-type").unwrap_or_default().to_string();
        let id = props_get(p, "id")
            .ok_or_else(|| ConfigError::MissingParameter {
                object: if qom.is_empty() {
                    "-object".into()
                } else {
                    qom.clone()
                },
                property: "id".into(),
            })?
            .to_string();
        if out.iter().any(|(i, _)| *i == id) {
            return Err(ConfigError::DuplicateId(id));
        }
        let obj = match qom.as_str() {
            "sev-snp-guest" => Object::Guest(Box::new(parse_snp(p)?)),
            "sev-guest" => Object::Guest(Box::new(parse_sev(p)?)),
            "memory-backend-memfd" => Object::Backend(parse_backend(BackendKind::Memfd, &qom, p)?),
            "memory-backend-ram" => Object::Backend(parse_backend(BackendKind::Ram, &qom, p)?),
            "memory-backend-file" => Object::Backend(parse_backend(BackendKind::File, &qom, p)?),
            "" => {
                return Err(ConfigError::MissingParameter {
                    object: "-object".into(),
                    property: "qom-type".into(),
                });
            }
            t if IGNORED_OBJECTS.contains(&t) => {
                notes.push(format!(
                    "-object {t},id={id}: accepted and ignored (no effect on an SNP launch)"
                ));
                Object::Other(t.to_string())
            }
            t => return Err(ConfigError::UnknownObjectType(t.to_string())),
        };
        out.push((id, obj));
    }
    Ok(out)
}

fn find<'a>(objects: &'a [(String, Object)], id: &str) -> Option<&'a Object> {
    objects.iter().find(|(i, _)| i == id).map(|(_, o)| o)
}

/// The object `confidential-guest-support` names.
fn find_confidential_guest<'a>(
    objects: &'a [(String, Object)],
    id: Option<String>,
    mobj: &str,
) -> Result<&'a GuestObject, ConfigError> {
    let id = id.ok_or(ConfigError::NoSnpGuest)?;
    let property = format!("{mobj}.confidential-guest-support");
    match find(objects, &id) {
        None => Err(ConfigError::ObjectNotFound { property, id }),
        Some(Object::Guest(g)) => Ok(g),
        Some(o) => Err(ConfigError::WrongObjectType {
            property,
            id,
            found: o.type_name(),
            wanted: "sev-snp-guest",
        }),
    }
}

/// `-m`: the size (aligned up to 8 KiB, as QEMU does), `slots`, `maxmem`.
fn validate_mem_option(
    props: Option<&Props>,
    notes: &mut Vec<String>,
) -> Result<Option<u64>, ConfigError> {
    let mut size = None;
    let Some(p) = props else { return Ok(None) };
    for (k, v) in p {
        match k.as_str() {
            "size" => {
                let s = parse_size("-m", k, v, MIB)?;
                // QEMU aligns the RAM size up to 8 KiB.
                size = Some(
                    s.checked_add(0x1FFF).ok_or_else(|| {
                        ConfigError::Memory(format!("-m {v}: RAM size too large"))
                    })? & !0x1FFF,
                );
            }
            "slots" => {
                parse_u32("-m", k, v)?;
            }
            "maxmem" => {
                parse_size("-m", k, v, MIB)?;
                notes.push(format!(
                    "-m maxmem={v}: accepted; memory hotplug is not modelled"
                ));
            }
            _ => {
                return Err(ConfigError::UnknownProperty {
                    object: "memory-opts".into(),
                    property: k.clone(),
                });
            }
        }
    }
    Ok(size)
}

/// Guest RAM: `-m` and the machine's memory backend, which must agree.
fn validate_memory(
    props: Option<&Props>,
    backend_id: Option<&str>,
    objects: &[(String, Object)],
    mobj: &str,
    notes: &mut Vec<String>,
) -> Result<MemoryConfig, ConfigError> {
    let m_size = validate_mem_option(props, notes)?;
    let backend: Option<MemoryBackend> = match backend_id {
        None => None,
        Some(id) => match find(objects, id) {
            None => {
                return Err(ConfigError::ObjectNotFound {
                    property: format!("{mobj}.memory-backend"),
                    id: id.to_string(),
                });
            }
            Some(Object::Backend(b)) => Some(b.clone()),
            Some(o) => {
                return Err(ConfigError::WrongObjectType {
                    property: format!("{mobj}.memory-backend"),
                    id: id.to_string(),
                    found: o.type_name(),
                    wanted: "memory-backend-*",
                });
            }
        },
    };
    let size = match (&backend, m_size) {
        (Some(b), Some(m)) if b.size != m => {
            return Err(ConfigError::Memory(format!(
                "memory backend '{}' has size {:#x} but -m asks for {m:#x}: the machine's \
                 memory size must equal its memory-backend size",
                b.id, b.size
            )));
        }
        (Some(b), _) => b.size,
        (None, Some(m)) => m,
        (None, None) => DEFAULT_RAM,
    };
    if !size.is_multiple_of(4096) {
        return Err(ConfigError::Memory(format!(
            "guest RAM size {size:#x} is not a multiple of 4 KiB"
        )));
    }
    for (id, o) in objects {
        if let Object::Backend(b) = o
            && backend_id != Some(id.as_str())
        {
            notes.push(format!(
                "memory backend '{}' is not used by the machine (no NUMA nodes or DIMMs are modelled)",
                b.id
            ));
        }
    }
    Ok(MemoryConfig { size, backend })
}

/// `-smp` with QEMU's topology completion and limits.
fn validate_smp(p: Option<&Props>, machine: &MachineConfig) -> Result<Smp, ConfigError> {
    let Some(p) = p else {
        return Ok(Smp {
            cpus: 1,
            maxcpus: 1,
            sockets: 1,
            dies: 1,
            cores: 1,
            threads: 1,
        });
    };
    let get = |name: &str| -> Result<Option<u32>, ConfigError> {
        match props_get(p, name) {
            None => Ok(None),
            Some(v) => match parse_u32("-smp", name, v)? {
                0 => Err(ConfigError::Smp(format!(
                    "{name}=0: CPU topology parameters must be greater than zero"
                ))),
                n => Ok(Some(n)),
            },
        }
    };
    let cpus = get("cpus")?;
    let maxcpus = get("maxcpus")?;
    let sockets = get("sockets")?;
    let dies = get("dies")?.unwrap_or(1);
    let clusters = get("clusters")?.unwrap_or(1);
    let modules = get("modules")?.unwrap_or(1);
    let cores = get("cores")?;
    let threads = get("threads")?.unwrap_or(1);
    for (k, _) in p {
        if !matches!(
            k.as_str(),
            "cpus" | "maxcpus" | "sockets" | "dies" | "clusters" | "modules" | "cores" | "threads"
        ) {
            return Err(ConfigError::UnknownProperty {
                object: "smp-opts".into(),
                property: k.clone(),
            });
        }
    }
    // Six u32 factors: computed in u128 with saturation, so no input overflows.
    let per_core = [dies, clusters, modules, threads]
        .iter()
        .fold(1u128, |a, &x| a.saturating_mul(u128::from(x)));
    let base = u128::from(maxcpus.or(cpus).unwrap_or(1));
    // QEMU (≥ 6.2 machine types) prefers cores over sockets when completing the topology.
    let (sockets, cores) = match (sockets, cores) {
        (Some(s), Some(c)) => (u128::from(s), u128::from(c)),
        (Some(s), None) => (u128::from(s), (base / (u128::from(s) * per_core)).max(1)),
        (None, Some(c)) => ((base / (u128::from(c) * per_core)).max(1), u128::from(c)),
        (None, None) => (1, (base / per_core).max(1)),
    };
    let product = sockets.saturating_mul(cores).saturating_mul(per_core);
    let maxcpus = maxcpus.map(u128::from).unwrap_or(product);
    let cpus = cpus.map(u128::from).unwrap_or(maxcpus);
    if product != maxcpus {
        return Err(ConfigError::Smp(format!(
            "Invalid CPU topology: product of the hierarchy must match maxcpus: sockets \
             ({sockets}) * dies ({dies}) * clusters ({clusters}) * modules ({modules}) * cores \
             ({cores}) * threads ({threads}) != maxcpus ({maxcpus})"
        )));
    }
    if cpus > maxcpus {
        return Err(ConfigError::Smp(format!(
            "Invalid CPU topology: maxcpus must be equal to or greater than smp: maxcpus \
             ({maxcpus}) < smp_cpus ({cpus})"
        )));
    }
    let max = u128::from(machine.kind.max_cpus());
    if maxcpus > max {
        return Err(ConfigError::Smp(format!(
            "Invalid SMP CPUs {maxcpus}. The max CPUs supported by machine '{}' is {max}",
            machine.name
        )));
    }
    let n = |v: u128| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(Smp {
        cpus: n(cpus),
        maxcpus: n(maxcpus),
        sockets: n(sockets),
        dies,
        cores: n(cores),
        threads,
    })
}

/// `-cpu` (default `qemu64`); feature flags are noted.
fn validate_cpu(cpu: Option<&str>, notes: &mut Vec<String>) -> Result<CpuModel, ConfigError> {
    let cpu = CpuModel::parse(cpu.unwrap_or("qemu64"))?;
    if !cpu.features.is_empty() {
        notes.push(format!(
            "-cpu {}: feature flags {} shape the CPUID page only, never the launch digest",
            cpu.name,
            cpu.features.join(",")
        ));
    }
    Ok(cpu)
}

/// The properties every SEV object checks in `sev_common_kvm_init`: reduced-phys-bits
/// given and in 1..=63, cbitpos equal to the host's. Returns the validated cbitpos.
fn validate_sev_common(
    object: &str,
    given: &GuestObject,
    reduced_phys_bits: u32,
    cpu: &CpuModel,
) -> Result<u32, ConfigError> {
    if !given.reduced_phys_bits_given {
        return Err(ConfigError::MissingParameter {
            object: object.into(),
            property: "reduced-phys-bits".into(),
        });
    }
    let host = host_cbitpos(cpu.product);
    let requested = given.cbitpos.unwrap_or(0);
    if requested != host {
        return Err(ConfigError::CbitPos {
            host,
            requested,
            product: cpu.product,
        });
    }
    if !(1..=63).contains(&reduced_phys_bits) {
        return Err(ConfigError::ReducedPhysBits(reduced_phys_bits));
    }
    Ok(requested)
}

/// The `sev-snp-guest` object against the CPU and the boot options.
fn validate_snp(
    given: &GuestObject,
    snp: &SnpGuestConfig,
    cpu: &CpuModel,
    has_kernel: bool,
    notes: &mut Vec<String>,
) -> Result<SnpGuestConfig, ConfigError> {
    let mut snp = snp.clone();
    snp.cbitpos = validate_sev_common("sev-snp-guest", given, snp.reduced_phys_bits, cpu)?;
    check_policy(snp.policy)?;
    if snp.kernel_hashes && !has_kernel {
        return Err(ConfigError::Requires {
            what: "sev-snp-guest.kernel-hashes=on".into(),
            needs: "-kernel (the hashes table measures a directly booted kernel)".into(),
        });
    }
    validate_id_block(&snp)?;
    if has_kernel && !snp.kernel_hashes {
        notes.push(
            "-kernel with sev-snp-guest.kernel-hashes=off: the kernel, initrd and command \
             line are not measured"
                .to_string(),
        );
    }
    Ok(snp)
}

/// The `sev-guest` object: QEMU's `sev_common_kvm_init` checks in its order and words
/// (cbitpos equal to the host's, then reduced-phys-bits in 1..=63; an unset property
/// is 0, QEMU has no "missing" error for them). The policy is left to KVM and the
/// firmware, as QEMU leaves it (shared/spec/sev-legacy.md §8.1).
fn validate_sev(
    given: &GuestObject,
    g: &SevGuestConfig,
    cpu: &CpuModel,
    has_kernel: bool,
    notes: &mut Vec<String>,
) -> Result<SevGuestConfig, ConfigError> {
    let mut g = g.clone();
    let host = host_cbitpos(cpu.product);
    let requested = given.cbitpos.unwrap_or(0);
    if requested != host {
        return Err(ConfigError::SevCbitPos { host, requested });
    }
    g.cbitpos = requested;
    if !given.reduced_phys_bits_given {
        g.reduced_phys_bits = 0;
    }
    if !(1..=63).contains(&g.reduced_phys_bits) {
        return Err(ConfigError::SevReducedPhysBits(g.reduced_phys_bits));
    }
    match (g.kernel_hashes, has_kernel) {
        (true, false) => notes.push(
            "sev-guest.kernel-hashes=on without -kernel: no hashes table is added (QEMU adds \
             it only when it loads a kernel)"
                .to_string(),
        ),
        (false, true) => notes.push(
            "-kernel with sev-guest.kernel-hashes=off: the kernel, initrd and command line \
             are not measured"
                .to_string(),
        ),
        _ => {}
    }
    notes.push(format!(
        "sev-guest '{}': {} guest, KVM_CREATE_VM({}) and {} (legacy-vm-type={})",
        g.id,
        if g.sev_policy().es() { "SEV-ES" } else { "SEV" },
        g.kvm_init().vm_type().0,
        g.kvm_init().command(),
        g.legacy_vm_type.as_str()
    ));
    Ok(g)
}

/// `-qmp` (at most one: softsev serves one QMP monitor).
fn validate_qmp(
    specs: &[String],
    notes: &mut Vec<String>,
) -> Result<Option<super::QmpConfig>, ConfigError> {
    match specs {
        [] => Ok(None),
        [one] => super::monitor::parse_qmp(one, notes).map(Some),
        [_, second, ..] => Err(ConfigError::Unsupported {
            what: format!("-qmp {second}"),
            reason: "softsev serves one QMP monitor (QEMU allows several)",
        }),
    }
}

/// `id-block`, `id-auth` and `author-key-enabled` go together (SNP_LAUNCH_FINISH).
fn validate_id_block(snp: &SnpGuestConfig) -> Result<(), ConfigError> {
    match (&snp.id_block, &snp.id_auth) {
        (None, Some(_)) => {
            return Err(ConfigError::Requires {
                what: "sev-snp-guest.id-auth".into(),
                needs: "sev-snp-guest.id-block (KVM ignores the ID auth without an ID block)"
                    .into(),
            });
        }
        (Some(_), None) => {
            return Err(ConfigError::Requires {
                what: "sev-snp-guest.id-block".into(),
                needs: "sev-snp-guest.id-auth (SNP_LAUNCH_FINISH reads both)".into(),
            });
        }
        _ => {}
    }
    if snp.author_key_enabled && snp.id_block.is_none() {
        return Err(ConfigError::Requires {
            what: "sev-snp-guest.author-key-enabled=on".into(),
            needs: "sev-snp-guest.id-block and id-auth".into(),
        });
    }
    Ok(())
}

/// `-initrd` and `-append` need `-kernel`.
fn validate_boot_blobs(raw: &Raw) -> Result<(), ConfigError> {
    if raw.kernel.is_none() {
        if raw.initrd.is_some() {
            return Err(ConfigError::Requires {
                what: "-initrd".into(),
                needs: "-kernel".into(),
            });
        }
        if raw.append.is_some() {
            return Err(ConfigError::Requires {
                what: "-append".into(),
                needs: "-kernel".into(),
            });
        }
    }
    Ok(())
}

impl Raw {
    /// Validate the options into a [`Config`].
    pub(super) fn validate(mut self) -> Result<Config, ConfigError> {
        let mut notes = std::mem::take(&mut self.notes);
        let (machine, refs) = validate_machine(&self.machine)?;
        let mobj = format!("{}-machine", machine.name);
        let objects = validate_objects(&self.objects, &mut notes)?;
        let guest = find_confidential_guest(&objects, refs.confidential_guest, &mobj)?;
        let memory = validate_memory(
            self.mem.as_ref(),
            refs.memory_backend.as_deref(),
            &objects,
            &mobj,
            &mut notes,
        )?;
        let smp = validate_smp(self.smp.as_ref(), &machine)?;
        let cpu = validate_cpu(self.cpu.as_deref(), &mut notes)?;
        let has_kernel = self.kernel.is_some();
        let confidential_guest = match &guest.guest {
            ConfidentialGuest::Snp(snp) => {
                ConfidentialGuest::Snp(validate_snp(guest, snp, &cpu, has_kernel, &mut notes)?)
            }
            ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g) => {
                ConfidentialGuest::from_sev_guest(validate_sev(
                    guest, g, &cpu, has_kernel, &mut notes,
                )?)
            }
        };
        validate_boot_blobs(&self)?;
        let qmp = validate_qmp(&self.qmp, &mut notes)?;
        if matches!(confidential_guest, ConfidentialGuest::Snp(_)) {
            if self.start_paused {
                notes.push(
                    "-S: an SNP launch runs to completion (the QMP monitor serves sev-guest \
                     launches)"
                        .to_string(),
                );
            }
            if qmp.is_some() {
                notes.push(
                    "-qmp: not served for an SNP launch (the QMP monitor serves sev-guest \
                     launches)"
                        .to_string(),
                );
            }
        }
        let incoming = match &self.incoming {
            None => None,
            Some(a) => {
                let inc = crate::migration::Incoming::parse(a)
                    .map_err(|reason| ConfigError::QemuOpt(format!("-incoming {a}: {reason}")))?;
                if let ConfidentialGuest::Snp(s) = &confidential_guest {
                    // QEMU blocks SNP migration (target/i386/sev.c).
                    return Err(ConfigError::Unsupported {
                        what: format!("-incoming {a} with -object sev-snp-guest,id={}", s.id),
                        reason: "SEV-SNP: Migration is not implemented",
                    });
                }
                Some(inc)
            }
        };
        Ok(Config {
            name: self.name,
            machine,
            memory,
            smp,
            cpu,
            confidential_guest,
            firmware: self.bios.map_or(Blob::Builtin, |p| Blob::File(p.into())),
            kernel: self.kernel.map(|p| Blob::File(p.into())),
            initrd: self.initrd.map(|p| Blob::File(p.into())),
            append: self.append,
            qmp,
            start_paused: self.start_paused,
            incoming,
            notes,
        })
    }
}
