//! The launch plan of a `sev-guest` (SEV or SEV-ES), as QEMU drives KVM for it
//! (shared/spec/sev-legacy.md §7.2, §8.1): the KVM VM type and initialisation
//! (`SevGuestConfig::kvm_init`), LAUNCH_START's policy, handle and the owner's GODH
//! and session, the LAUNCH_UPDATE_DATA ranges in QEMU's order — the firmware image
//! (`sev_encrypt_flash` at machine init), then the padded kernel hashes table at the
//! firmware's hashes area when `kernel-hashes=on` and a kernel is given
//! (`sev_build_kernel_loader_hashes`) — the SEV-ES VMSAs KVM measures at
//! LAUNCH_UPDATE_VMSA (x87/SSE state only for INIT2 VM types, `sev_es_sync_vmsa`), the
//! OVMF secret area (footer GUID 4c2eb361-…, §8.3) and the expected launch digest LD.
//! An executor replays it against the host's SEV launcher; it is plain data.

use crate::config::{ConfidentialGuest, Config, LaunchBlobs, SevKvmInit};
use crate::error::{ConfigError, PlanError};
use crate::plan::{BootBlobs, HASH_TABLE_LEN, MemoryLayout, load_firmware};
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{Gpa, Product};
use softsev_measure::digest::SEV_DIGEST_LEN;
use softsev_measure::launch::{launch_vmsas, seves_launch_vmsas};
use softsev_measure::vmsa::{BSP_EIP, EsVmsaInit, VmmType, launch_vmsa};
use softsev_measure::{Ovmf, SevDigest};
use zerocopy::IntoBytes;

/// One LAUNCH_UPDATE_DATA.
#[derive(Clone, PartialEq, Eq)]
pub struct SevUpdate {
    /// Guest-physical address (QEMU passes the HVA of this GPA).
    pub gpa: Gpa,
    /// The plaintext to encrypt in place.
    pub data: Vec<u8>,
    /// What it is (`firmware`, `kernel hashes table`).
    pub what: &'static str,
}

impl core::fmt::Debug for SevUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} at {:#x}+{:#x}",
            self.what,
            self.gpa.0,
            self.data.len()
        )
    }
}

/// The launch of a `sev-guest`, as data.
#[derive(Clone, Debug)]
pub struct SevLaunchPlan {
    /// Host product.
    pub product: Product,
    /// SEV-ES (policy bit 2).
    pub es: bool,
    /// VM type and KVM_SEV_INIT / ES_INIT / INIT2.
    pub kvm_init: SevKvmInit,
    /// LAUNCH_START policy.
    pub policy: u32,
    /// LAUNCH_START handle (0 = a new one).
    pub handle: u32,
    /// The owner's GODH and session (from `dh-cert-file`, `session-file`).
    pub owner: LaunchBlobs,
    /// The memory map.
    pub memory: MemoryLayout,
    /// LAUNCH_UPDATE_DATA ranges, in order.
    pub updates: Vec<SevUpdate>,
    /// SEV-ES: each vCPU's VMSA as KVM measures it (index order); empty for SEV.
    pub vmsas: Vec<Vmsa>,
    /// Each vCPU's reset register state for KVM_CREATE_VCPU (for SEV-ES the same as
    /// `vmsas`; for SEV not measured: the host reads and writes the registers).
    pub vcpu_states: Vec<Vmsa>,
    /// vCPUs.
    pub vcpus: u32,
    /// The OVMF secret area `{base, size}` (the default GPA of
    /// `sev-inject-launch-secret`).
    pub secret_area: Option<(u32, u32)>,
    /// The launch digest LD the firmware will compute: SHA-256 of every
    /// LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA in order.
    pub expected_digest: [u8; SEV_DIGEST_LEN],
}

impl SevLaunchPlan {
    /// Read the firmware, boot blobs and the owner's files and build the plan.
    pub fn build(config: &Config) -> Result<SevLaunchPlan, PlanError> {
        let ovmf = load_firmware(config)?;
        let boot = BootBlobs::load(config)?;
        let owner = match &config.confidential_guest {
            ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g) => g.read_launch_blobs()?,
            ConfidentialGuest::Snp(_) => LaunchBlobs::default(),
        };
        Self::from_parts(config, &ovmf, boot, owner)
    }

    /// Build the plan from loaded inputs (no file access).
    pub fn from_parts(
        config: &Config,
        ovmf: &Ovmf,
        boot: Option<BootBlobs>,
        owner: LaunchBlobs,
    ) -> Result<SevLaunchPlan, PlanError> {
        let g = match &config.confidential_guest {
            ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g) => g,
            ConfidentialGuest::Snp(s) => {
                return Err(ConfigError::Unsupported {
                    what: format!("-object sev-snp-guest,id={}", s.id),
                    reason: "the SEV launch plan is for sev-guest objects (SNP: LaunchPlan)",
                }
                .into());
            }
        };
        let es = g.sev_policy().es();
        let vcpus = config.smp.cpus;
        let fw_gpa = ovmf.gpa()?;
        let memory = MemoryLayout::pc(
            config.machine.kind,
            config.memory.size,
            config.machine.max_ram_below_4g,
            ovmf.size() as u64,
        );
        if memory.below_4g > fw_gpa {
            return Err(PlanError::FirmwareOverlapsRam {
                gpa: fw_gpa,
                ram_end: memory.below_4g,
            });
        }
        let mut updates = vec![SevUpdate {
            gpa: Gpa(fw_gpa),
            data: ovmf.data().to_vec(),
            what: "firmware",
        }];
        // QEMU sev_add_kernel_loader_hashes: only with kernel-hashes=on and a kernel.
        if let (Some(b), true) = (&boot, g.kernel_hashes) {
            let (base, size) = ovmf.sev_hash_table()?.ok_or(PlanError::NoHashTable)?;
            if base == 0 || size < HASH_TABLE_LEN {
                return Err(PlanError::HashTableArea { base, size });
            }
            updates.push(SevUpdate {
                gpa: Gpa(u64::from(base)),
                data: b.hashes().table().as_bytes().to_vec(),
                what: "kernel hashes table",
            });
        }
        // SEV-ES: the VMSAs KVM's LAUNCH_UPDATE_VMSA encrypts, in the flavour of the KVM
        // init (ES_INIT leaves the x87/SSE state zero, INIT2 copies QEMU's reset values;
        // softsev_measure owns that fact). Plain SEV: the register state the host sets.
        let flavour = if g.kvm_init() == SevKvmInit::SevEsInit {
            EsVmsaInit::EsInit
        } else {
            EsVmsaInit::Init2
        };
        let all = if es {
            seves_launch_vmsas(ovmf, vcpus, config.cpu.signature, VmmType::Qemu, flavour)
        } else {
            launch_vmsas(ovmf, vcpus, 0, config.cpu.signature, VmmType::Qemu)
        };
        let states: Vec<Vmsa> = match all {
            Ok(all) => (0..vcpus).filter_map(|i| all.get(i).cloned()).collect(),
            // A plain SEV image without an SEV-ES reset block: the APs start by
            // INIT-SIPI inside the guest; every vCPU resets at the BSP vector.
            Err(_) if !es => (0..vcpus)
                .map(|_| launch_vmsa(BSP_EIP, 0, config.cpu.signature, VmmType::Qemu))
                .collect(),
            Err(e) => return Err(e.into()),
        };
        let vmsas = if es { states.clone() } else { Vec::new() };
        let mut d = SevDigest::new();
        for u in &updates {
            d.update(&u.data);
        }
        for v in &vmsas {
            d.update(v.as_bytes());
        }
        Ok(SevLaunchPlan {
            product: config.cpu.product,
            es,
            kvm_init: g.kvm_init(),
            policy: g.policy,
            handle: g.handle,
            owner,
            memory,
            updates,
            vmsas,
            vcpu_states: states,
            vcpus,
            secret_area: ovmf.sev_secret_block()?,
            expected_digest: d.finish(),
        })
    }
}
