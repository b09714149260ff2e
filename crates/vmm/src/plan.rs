//! The launch plan: everything QEMU + KVM do to launch an SEV-SNP guest, computed from
//! a validated [`Config`] and the boot blobs, as plain data an executor replays
//! against a KVM-shaped host (shared/spec/snp-launch.md §8 for the sequence, §2.3 for
//! the update order, §4 for the OVMF metadata, §5 for the kernel hashes):
//!
//! 1. `KVM_CREATE_VM(KVM_X86_SNP_VM)`, memory ([`MemoryLayout`]: RAM split below and
//!    above 4 GiB like the PC machine, firmware ending at 4 GiB),
//! 2. `KVM_SEV_INIT2` ([`Init2`]),
//! 3. `KVM_SEV_SNP_LAUNCH_START` ([`LaunchStart`]),
//! 4. the queued `KVM_SEV_SNP_LAUNCH_UPDATE` ranges in order ([`LaunchUpdate`]): the
//!    firmware image as NORMAL pages at 4 GiB − size, then every OVMF SEV metadata
//!    section in table order — SNP_SEC_MEM and SVSM_CAA as ZERO, the secrets page as
//!    SECRETS, the CPUID page as CPUID, the kernel-hashes page as one NORMAL page
//!    (`kernel-hashes=on`) or ZERO,
//! 5. `KVM_SEV_SNP_LAUNCH_FINISH` ([`LaunchFinish`]) after KVM measures one VMSA per
//!    vCPU ([`LaunchPlan::vmsa`]), BSP first.
//!
//! The parsing and the digest are `softsev_measure`'s; [`LaunchPlan::replay_digest`]
//! re-derives the digest from the plan's own pages, which is how the tests prove the
//! plan is the launch that `softsev measure` and sev-snp-measure describe.

use crate::config::{Blob, Config, MachineKind};
use crate::error::PlanError;
use softsev_abi::ovmf::SectionType;
use softsev_abi::page_info::{PageType, VMSA_GPA};
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{Gpa, GuestPolicy, Product};
use softsev_measure::digest::SNP_DIGEST_LEN;
use softsev_measure::launch::{check_snp_sections, launch_vmsas, snp_measure_vmsas};
use softsev_measure::vmsa::{VcpuVmsas, VmmType};
use softsev_measure::{KernelHashes, MeasureError, Ovmf, SnpDigest, VmplPerms};
use std::path::Path;
use zerocopy::IntoBytes;

/// `KVM_X86_SNP_VM`.
pub const KVM_X86_SNP_VM: u32 = 4;
/// 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;
/// Where QEMU moves RAM above 4 GiB when it would reach the AMD HyperTransport hole.
pub const AMD_ABOVE_1TB_START: u64 = 1 << 40;
/// Start of the AMD HyperTransport reserved range (1012 GiB).
pub const AMD_HT_START: u64 = 0xFD_0000_0000;
/// GPA KVM gives every VMSA page in the RMP (and so in PAGE_INFO).
pub const INITIAL_VMSA_GPA: Gpa = Gpa(VMSA_GPA);
/// Bytes per launch page.
pub const PAGE: u64 = 4096;
/// Size of QEMU's padded kernel-hashes table (`PaddedSevHashTable`).
pub const HASH_TABLE_LEN: u32 = 176;

/// `KVM_SEV_INIT2` arguments (QEMU passes zeros; `debug-swap=on` asks for DebugSwap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init2 {
    /// `vmsa_features` (KVM ORs in SNPActive for an SNP VM).
    pub vmsa_features: u64,
    /// `ghcb_version` (0: KVM's default, 2).
    pub ghcb_version: u16,
}

/// What a guest-physical region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Guest RAM (guest_memfd-backed private memory plus its shared half).
    Ram,
    /// The firmware image (`-bios`), ending at 4 GiB.
    Firmware,
}

/// One guest-physical region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// Start.
    pub gpa: Gpa,
    /// Length in bytes.
    pub size: u64,
    /// Contents.
    pub kind: RegionKind,
}

/// The guest-physical memory map of the PC machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total RAM.
    pub ram_size: u64,
    /// RAM mapped at 0.
    pub below_4g: u64,
    /// RAM mapped at `above_4g_start`.
    pub above_4g: u64,
    /// 4 GiB, or 1 TiB when the RAM would reach the HyperTransport hole.
    pub above_4g_start: Gpa,
    /// RAM and firmware regions, ascending.
    pub regions: Vec<MemRegion>,
}

impl MemoryLayout {
    /// QEMU's PC split (`pc_q35_init` / `pc_init1`): q35 keeps 2 GiB below 4 GiB when
    /// the RAM is at least 2.75 GiB (else up to 2.75 GiB); i440fx keeps up to 3.5 GiB,
    /// 3 GiB when the RAM does not fit; `max-ram-below-4g` lowers either.
    pub fn pc(
        kind: MachineKind,
        ram_size: u64,
        max_below: Option<u64>,
        firmware_size: u64,
    ) -> MemoryLayout {
        let mut lowmem = match kind {
            MachineKind::Q35 if ram_size >= 0xB000_0000 => 0x8000_0000,
            MachineKind::Q35 => 0xB000_0000,
            MachineKind::Pc => {
                let l = max_below.unwrap_or(0xE000_0000);
                if ram_size >= l { l.min(0xC000_0000) } else { l }
            }
        };
        if let Some(m) = max_below {
            lowmem = lowmem.min(m);
        }
        let below_4g = ram_size.min(lowmem);
        let above_4g = ram_size - below_4g;
        let above_4g_start = if FOUR_GIB.saturating_add(above_4g) > AMD_HT_START {
            AMD_ABOVE_1TB_START
        } else {
            FOUR_GIB
        };
        let mut regions = vec![MemRegion {
            gpa: Gpa(0),
            size: below_4g,
            kind: RegionKind::Ram,
        }];
        regions.push(MemRegion {
            gpa: Gpa(FOUR_GIB - firmware_size),
            size: firmware_size,
            kind: RegionKind::Firmware,
        });
        if above_4g > 0 {
            regions.push(MemRegion {
                gpa: Gpa(above_4g_start),
                size: above_4g,
                kind: RegionKind::Ram,
            });
        }
        MemoryLayout {
            ram_size,
            below_4g,
            above_4g,
            above_4g_start: Gpa(above_4g_start),
            regions,
        }
    }
}

/// `KVM_SEV_SNP_LAUNCH_START` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchStart {
    /// Guest policy.
    pub policy: GuestPolicy,
    /// Guest-OS-visible workarounds (copied into the secrets page).
    pub gosvw: [u8; 16],
}

/// Why a range is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateSource {
    /// The firmware image.
    Firmware,
    /// OVMF SEV metadata section `index` (table order).
    Metadata {
        /// Index in the metadata table.
        index: usize,
        /// Its type.
        kind: SectionType,
    },
}

/// One queued `KVM_SEV_SNP_LAUNCH_UPDATE` range (`gfn_start = gpa >> 12`, `len`, `type`).
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchUpdate {
    /// First GPA (4 KiB aligned).
    pub gpa: Gpa,
    /// Length in bytes (multiple of 4 KiB).
    pub len: u64,
    /// Page type.
    pub page_type: PageType,
    /// The bytes userspace hands KVM: `len` bytes for NORMAL and CPUID ranges; empty for
    /// ZERO and SECRETS ranges (their contents are the firmware's).
    pub data: Vec<u8>,
    /// Where the range comes from.
    pub source: UpdateSource,
}

impl core::fmt::Debug for LaunchUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "LaunchUpdate({:?} {}+{:#x}, {} data bytes, {:?})",
            self.page_type,
            self.gpa,
            self.len,
            self.data.len(),
            self.source
        )
    }
}

impl LaunchUpdate {
    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.len / PAGE
    }

    /// Page `i`: its GPA and its bytes (empty when the range carries no data).
    pub fn page(&self, i: u64) -> Option<(Gpa, &[u8])> {
        if i >= self.pages() {
            return None;
        }
        let gpa = Gpa(self.gpa.raw() + i * PAGE);
        let start = usize::try_from(i * PAGE).ok()?;
        let bytes = self.data.get(start..start + PAGE as usize).unwrap_or(&[]);
        Some((gpa, bytes))
    }
}

/// `KVM_SEV_SNP_LAUNCH_FINISH` arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchFinish {
    /// The ID block (ID_BLOCK_EN when present).
    pub id_block: Option<[u8; 96]>,
    /// The ID authentication page, zero-padded to 4096 bytes.
    pub id_auth: Option<Box<[u8; 4096]>>,
    /// AUTH_KEY_EN.
    pub auth_key_en: bool,
    /// VCEK_DIS.
    pub vcek_disabled: bool,
    /// HOST_DATA.
    pub host_data: [u8; 32],
}

impl core::fmt::Debug for LaunchFinish {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LaunchFinish")
            .field("id_block", &self.id_block.is_some())
            .field("id_auth", &self.id_auth.is_some())
            .field("auth_key_en", &self.auth_key_en)
            .field("vcek_disabled", &self.vcek_disabled)
            .field("host_data", &format_args!("{:02x?}", self.host_data))
            .finish()
    }
}

/// The direct-boot blobs (`-kernel`, `-initrd`, `-append`) as loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct BootBlobs {
    /// Kernel bytes.
    pub kernel: Vec<u8>,
    /// Initrd bytes (empty without `-initrd`).
    pub initrd: Option<Vec<u8>>,
    /// Command line.
    pub cmdline: Option<String>,
}

impl core::fmt::Debug for BootBlobs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootBlobs")
            .field("kernel_len", &self.kernel.len())
            .field("initrd_len", &self.initrd.as_ref().map(Vec::len))
            .field("cmdline", &self.cmdline)
            .finish()
    }
}

impl BootBlobs {
    /// Load the blobs a configuration names (generated ones for [`Blob::Builtin`]).
    pub fn load(config: &Config) -> Result<Option<BootBlobs>, PlanError> {
        let Some(k) = &config.kernel else {
            return Ok(None);
        };
        let kernel = read_blob(k, "kernel", crate::bootgen::kernel)?;
        let initrd = match &config.initrd {
            Some(i) => Some(read_blob(i, "initrd", crate::bootgen::initrd)?),
            None => None,
        };
        Ok(Some(BootBlobs {
            kernel,
            initrd,
            cmdline: config.append.clone(),
        }))
    }

    /// The kernel-hashes table of these blobs.
    pub fn hashes(&self) -> KernelHashes {
        KernelHashes::from_bytes(
            &self.kernel,
            self.initrd.as_deref(),
            self.cmdline.as_deref(),
        )
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, PlanError> {
    std::fs::read(path).map_err(|error| PlanError::Io {
        what,
        path: path.to_owned(),
        error,
    })
}

fn read_blob(
    b: &Blob,
    what: &'static str,
    generate: fn() -> Vec<u8>,
) -> Result<Vec<u8>, PlanError> {
    match b {
        Blob::File(p) => read_file(what, p),
        Blob::Builtin => Ok(generate()),
    }
}

/// The firmware image a configuration names.
pub fn load_firmware(config: &Config) -> Result<Ovmf, PlanError> {
    let data = read_blob(
        &config.firmware,
        "firmware",
        softsev_measure::builtin::image,
    )?;
    Ok(Ovmf::parse(data)?)
}

/// The contents of the CPUID page QEMU would build for this guest
/// ([`crate::cpuid::qemu_cpuid_page`] for the host product), which that product's
/// SNP_LAUNCH_UPDATE CPUID check accepts. The contents never enter
/// the launch digest (CPUID pages are measured as zeros; only their GPA is).
pub fn cpuid_page(product: Product, vcpus: u32) -> Vec<u8> {
    crate::cpuid::qemu_cpuid_page(product, vcpus)
        .as_bytes()
        .to_vec()
}

fn describe(u: &LaunchUpdate) -> String {
    match u.source {
        UpdateSource::Firmware => "firmware".to_string(),
        UpdateSource::Metadata { index, kind } => format!("metadata section {index} ({kind:?})"),
    }
}

/// KVM populates each GFN once; a range overlapping an earlier one would fail.
fn check_overlaps(updates: &[LaunchUpdate]) -> Result<(), PlanError> {
    for (i, b) in updates.iter().enumerate() {
        for a in &updates[..i] {
            let (a0, b0) = (a.gpa.raw(), b.gpa.raw());
            if a0 < b0.saturating_add(b.len) && b0 < a0.saturating_add(a.len) {
                return Err(PlanError::Overlap {
                    first: describe(a),
                    first_gpa: a0,
                    first_len: a.len,
                    second: describe(b),
                    second_gpa: b0,
                    second_len: b.len,
                });
            }
        }
    }
    Ok(())
}

/// Everything needed to launch the guest, in launch order.
#[derive(Clone)]
pub struct LaunchPlan {
    /// `KVM_CREATE_VM` type (`KVM_X86_SNP_VM`).
    pub vm_type: u32,
    /// `KVM_SEV_INIT2`.
    pub init2: Init2,
    /// Host product generation.
    pub product: Product,
    /// vCPUs at launch (one VMSA each).
    pub vcpus: u32,
    /// CPUID signature in every VMSA's RDX.
    pub vcpu_sig: u32,
    /// SEV_FEATURES of every VMSA.
    pub guest_features: u64,
    /// Memory map.
    pub memory: MemoryLayout,
    /// GPA of the firmware image (4 GiB − size).
    pub firmware_gpa: Gpa,
    /// `KVM_SEV_SNP_LAUNCH_START`.
    pub start: LaunchStart,
    /// The `KVM_SEV_SNP_LAUNCH_UPDATE` ranges, in order.
    pub updates: Vec<LaunchUpdate>,
    /// The VMSA pages: vCPU 0 uses `bsp`, every other vCPU `ap`.
    pub vmsas: VcpuVmsas,
    /// `KVM_SEV_SNP_LAUNCH_FINISH`.
    pub finish: LaunchFinish,
    /// Direct-boot blobs, if a kernel is given (the guest loads and checks them).
    pub boot: Option<BootBlobs>,
    /// The kernel-hashes table placed in the firmware's hash page (`kernel-hashes=on`).
    pub kernel_hashes: Option<KernelHashes>,
    /// GPA of the hashes table (the firmware's SEV hash-table block), when placed.
    pub kernel_hashes_gpa: Option<Gpa>,
    /// The certificate blob of `certs-path`.
    pub certs: Option<Vec<u8>>,
    /// The digest after the firmware image (sev-snp-measure's "OVMF hash").
    pub ovmf_hash: [u8; SNP_DIGEST_LEN],
    /// The launch digest the firmware will compute (GCTX.LD after the last VMSA).
    pub expected_digest: [u8; SNP_DIGEST_LEN],
}

impl core::fmt::Debug for LaunchPlan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        f.debug_struct("LaunchPlan")
            .field("vm_type", &self.vm_type)
            .field("init2", &self.init2)
            .field("product", &self.product)
            .field("vcpus", &self.vcpus)
            .field("vcpu_sig", &format_args!("{:#x}", self.vcpu_sig))
            .field(
                "guest_features",
                &format_args!("{:#x}", self.guest_features),
            )
            .field("memory", &self.memory)
            .field("firmware_gpa", &self.firmware_gpa)
            .field("start", &self.start)
            .field("updates", &self.updates)
            .field("finish", &self.finish)
            .field("boot", &self.boot)
            .field("kernel_hashes_gpa", &self.kernel_hashes_gpa)
            .field("certs_len", &self.certs.as_ref().map(Vec::len))
            .field("ovmf_hash", &hex(&self.ovmf_hash))
            .field("expected_digest", &hex(&self.expected_digest))
            .finish()
    }
}

impl LaunchPlan {
    /// Read the firmware, boot blobs and certificate file the configuration names and
    /// build the plan.
    pub fn build(config: &Config) -> Result<LaunchPlan, PlanError> {
        let ovmf = load_firmware(config)?;
        let boot = BootBlobs::load(config)?;
        let certs = match &config.confidential_guest.launchable_snp()?.certs_path {
            Some(p) => Some(read_file("certificate blob (certs-path)", p)?),
            None => None,
        };
        Self::from_parts(config, &ovmf, boot, certs)
    }

    /// Build the plan from loaded inputs (no file access).
    pub fn from_parts(
        config: &Config,
        ovmf: &Ovmf,
        boot: Option<BootBlobs>,
        certs: Option<Vec<u8>>,
    ) -> Result<LaunchPlan, PlanError> {
        let snp = config.confidential_guest.launchable_snp()?;
        let vcpus = config.smp.cpus;
        let guest_features = snp.guest_features();
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
        if ovmf.metadata_offset().is_none() {
            return Err(PlanError::NoMetadata);
        }
        check_snp_sections(ovmf)?;
        for d in ovmf.metadata() {
            if u64::from(d.base) + u64::from(d.size) > memory.below_4g {
                return Err(PlanError::SectionOutsideRam {
                    kind: format!("{:?}", d.section_type()),
                    base: d.base,
                    size: d.size,
                    ram_end: memory.below_4g,
                });
            }
        }

        // Kernel hashes (QEMU sev_add_kernel_loader_hashes).
        let (kernel_hashes, hashes_at) = match (&boot, snp.kernel_hashes) {
            (Some(b), true) => {
                let (base, size) = ovmf.sev_hash_table()?.ok_or(PlanError::NoHashTable)?;
                if base == 0 || size < HASH_TABLE_LEN {
                    return Err(PlanError::HashTableArea { base, size });
                }
                if !ovmf.has_section(SectionType::SNP_KERNEL_HASHES) {
                    return Err(MeasureError::NoKernelHashesSection.into());
                }
                (Some(b.hashes()), Some(base))
            }
            _ => (None, None),
        };

        let vmsas = launch_vmsas(
            ovmf,
            vcpus,
            guest_features,
            config.cpu.signature,
            VmmType::Qemu,
        )?;

        // The queued updates.
        let mut updates = vec![LaunchUpdate {
            gpa: Gpa(fw_gpa),
            len: ovmf.size() as u64,
            page_type: PageType::NORMAL,
            data: ovmf.data().to_vec(),
            source: UpdateSource::Firmware,
        }];
        for (index, d) in ovmf.metadata().iter().enumerate() {
            let kind = d.section_type();
            let source = UpdateSource::Metadata { index, kind };
            let gpa = Gpa(u64::from(d.base));
            let range = |page_type, len, data| LaunchUpdate {
                gpa,
                len,
                page_type,
                data,
                source,
            };
            let u = match kind {
                SectionType::SNP_SEC_MEM | SectionType::SVSM_CAA => {
                    range(PageType::ZERO, u64::from(d.size), Vec::new())
                }
                SectionType::SNP_SECRETS => range(PageType::SECRETS, PAGE, Vec::new()),
                SectionType::CPUID => {
                    range(PageType::CPUID, PAGE, cpuid_page(config.cpu.product, vcpus))
                }
                SectionType::SNP_KERNEL_HASHES => match (&kernel_hashes, hashes_at) {
                    (Some(h), Some(at)) => {
                        let offset = at & 0xFFF;
                        let page = h
                            .page(offset as usize)
                            .ok_or(MeasureError::HashTablePlacement { gpa: at, offset })?;
                        range(PageType::NORMAL, PAGE, page.to_vec())
                    }
                    _ => range(PageType::ZERO, u64::from(d.size), Vec::new()),
                },
                // check_snp_sections rejected every other type.
                other => {
                    return Err(MeasureError::UnknownSection {
                        index,
                        base: d.base,
                        kind: other.0,
                    }
                    .into());
                }
            };
            updates.push(u);
        }

        check_overlaps(&updates)?;

        let finish = LaunchFinish {
            id_block: snp
                .id_block
                .as_deref()
                .and_then(|b| <[u8; 96]>::try_from(b).ok()),
            id_auth: snp.id_auth.as_deref().map(|a| {
                let mut page = Box::new([0u8; 4096]);
                let n = a.len().min(4096);
                page[..n].copy_from_slice(&a[..n]);
                page
            }),
            auth_key_en: snp.author_key_enabled,
            vcek_disabled: snp.vcek_disabled,
            host_data: snp.host_data,
        };

        let mut plan = LaunchPlan {
            vm_type: KVM_X86_SNP_VM,
            init2: Init2 {
                vmsa_features: guest_features & !1,
                ghcb_version: 0,
            },
            product: config.cpu.product,
            vcpus,
            vcpu_sig: config.cpu.signature,
            guest_features,
            memory,
            firmware_gpa: Gpa(fw_gpa),
            start: LaunchStart {
                policy: snp.guest_policy(),
                gosvw: snp.gosvw,
            },
            updates,
            vmsas,
            finish,
            boot,
            kernel_hashes,
            kernel_hashes_gpa: hashes_at.map(|a| Gpa(u64::from(a))),
            certs,
            ovmf_hash: [0; SNP_DIGEST_LEN],
            expected_digest: [0; SNP_DIGEST_LEN],
        };
        let mut d = SnpDigest::new();
        plan.replay_updates(&mut d, 1)?;
        plan.ovmf_hash = d.digest();
        plan.replay_updates_from(&mut d, 1)?;
        snp_measure_vmsas(&mut d, &plan.vmsas, plan.vcpus)?;
        plan.expected_digest = d.digest();
        Ok(plan)
    }

    /// The VMSA of vCPU `i`.
    pub fn vmsa(&self, i: u32) -> Option<&Vmsa> {
        if i >= self.vcpus {
            return None;
        }
        self.vmsas.get(i)
    }

    /// Total 4 KiB pages of the LAUNCH_UPDATE ranges (VMSAs not included).
    pub fn update_pages(&self) -> u64 {
        self.updates.iter().map(LaunchUpdate::pages).sum()
    }

    fn replay_range(d: &mut SnpDigest, u: &LaunchUpdate) -> Result<(), MeasureError> {
        for i in 0..u.pages() {
            let Some((gpa, bytes)) = u.page(i) else { break };
            let bytes = if u.page_type == PageType::NORMAL {
                bytes
            } else {
                &[]
            };
            d.update(u.page_type, gpa, bytes, VmplPerms::default())?;
        }
        Ok(())
    }

    fn replay_updates(&self, d: &mut SnpDigest, count: usize) -> Result<(), MeasureError> {
        for u in self.updates.iter().take(count) {
            Self::replay_range(d, u)?;
        }
        Ok(())
    }

    fn replay_updates_from(&self, d: &mut SnpDigest, skip: usize) -> Result<(), MeasureError> {
        for u in self.updates.iter().skip(skip) {
            Self::replay_range(d, u)?;
        }
        Ok(())
    }

    /// Measure every page of the plan into `d` as the firmware would: each update range
    /// page by page, then one VMSA per vCPU at [`INITIAL_VMSA_GPA`].
    pub fn replay_into(&self, d: &mut SnpDigest) -> Result<(), MeasureError> {
        self.replay_updates_from(d, 0)?;
        snp_measure_vmsas(d, &self.vmsas, self.vcpus)
    }

    /// The launch digest of the plan's pages, from a fresh digest.
    pub fn replay_digest(&self) -> Result<[u8; SNP_DIGEST_LEN], MeasureError> {
        let mut d = SnpDigest::new();
        self.replay_into(&mut d)?;
        Ok(d.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_memory_split() {
        let g = 1u64 << 30;
        let l = MemoryLayout::pc(MachineKind::Q35, 4 * g, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (2 * g, 2 * g));
        assert_eq!(l.above_4g_start, Gpa(FOUR_GIB));
        assert_eq!(l.regions.len(), 3);
        assert_eq!(l.regions[1].gpa, Gpa(FOUR_GIB - 0x40000));
        let l = MemoryLayout::pc(MachineKind::Q35, 2 * g, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (2 * g, 0));
        let l = MemoryLayout::pc(MachineKind::Q35, 0xA000_0000, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (0xA000_0000, 0));
        let l = MemoryLayout::pc(MachineKind::Q35, 0xB000_0000, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (0x8000_0000, 0x3000_0000));
        let l = MemoryLayout::pc(MachineKind::Q35, 4 * g, Some(g), 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (g, 3 * g));
        let l = MemoryLayout::pc(MachineKind::Pc, 4 * g, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (3 * g, g));
        let l = MemoryLayout::pc(MachineKind::Pc, 3 * g, None, 0x40000);
        assert_eq!((l.below_4g, l.above_4g), (3 * g, 0));
        let l = MemoryLayout::pc(MachineKind::Q35, 1100 * g, None, 0x40000);
        assert_eq!(l.above_4g_start, Gpa(AMD_ABOVE_1TB_START));
    }
}
