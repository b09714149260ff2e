//! Whole-launch digests as QEMU + KVM + the AMD firmware compute them for an OVMF guest
//! (shared/spec/snp-launch.md §2.3, §2.4, §3, §6): SNP, SNP with COCONUT-SVSM,
//! SEV-ES and SEV.

use crate::digest::{SEV_DIGEST_LEN, SNP_DIGEST_LEN, SevDigest, SnpDigest};
use crate::error::{MeasureError, Result};
use crate::kernel_hashes::KernelHashes;
use crate::ovmf::Ovmf;
use crate::vmsa::{EsVmsaInit, VcpuVmsas, VmmType, svsm_vmsa};
use softsev_abi::Gpa;
use softsev_abi::ovmf::SectionType;
use softsev_abi::page_info::PageType;
use zerocopy::IntoBytes;

/// Inputs of an SNP launch measurement besides the OVMF image.
#[derive(Clone, Debug)]
pub struct SnpParams {
    /// Number of vCPUs (≥ 1).
    pub vcpus: u32,
    /// CPUID signature placed in RDX (QEMU only).
    pub vcpu_sig: u32,
    /// SEV_FEATURES of every VMSA.
    pub guest_features: u64,
    /// VMM quirks.
    pub vmm: VmmType,
    /// Kernel hashes (`kernel-hashes=on`), if a kernel is given.
    pub kernel_hashes: Option<KernelHashes>,
}

/// Check every SNP metadata section (known type, 4 KiB aligned) without measuring.
pub fn check_snp_sections(ovmf: &Ovmf) -> Result<()> {
    for (index, d) in ovmf.metadata().iter().enumerate() {
        let kind = d.section_type();
        if kind.name().is_none() {
            return Err(MeasureError::UnknownSection {
                index,
                base: d.base,
                kind: d.kind,
            });
        }
        if d.base % 4096 != 0 || d.size % 4096 != 0 {
            return Err(MeasureError::SectionAlignment {
                index,
                kind,
                base: d.base,
                size: d.size,
            });
        }
        if kind == SectionType::SNP_KERNEL_HASHES && d.size != 4096 {
            return Err(MeasureError::KernelHashesSectionSize {
                base: d.base,
                size: d.size,
            });
        }
    }
    Ok(())
}

/// The "OVMF hash": the digest after measuring the image as NORMAL pages ending at 4 GiB.
pub fn snp_ovmf_hash(ovmf: &Ovmf) -> Result<[u8; SNP_DIGEST_LEN]> {
    let mut d = SnpDigest::new();
    d.update_normal_pages(Gpa(ovmf.gpa()?), ovmf.data())?;
    Ok(d.digest())
}

/// Measure the OVMF image into `d` (NORMAL pages at 4 GiB − size).
pub fn snp_measure_ovmf(d: &mut SnpDigest, ovmf: &Ovmf) -> Result<()> {
    d.update_normal_pages(Gpa(ovmf.gpa()?), ovmf.data())
}

/// Measure the SEV metadata sections in table order (ec2: CPUID pages last).
pub fn snp_measure_metadata(
    d: &mut SnpDigest,
    image: &Ovmf,
    hashes: Option<&KernelHashes>,
    vmm: VmmType,
) -> Result<()> {
    check_snp_sections(image)?;
    if hashes.is_some() && !image.has_section(SectionType::SNP_KERNEL_HASHES) {
        return Err(MeasureError::NoKernelHashesSection);
    }
    for s in image.metadata() {
        let (gpa, size) = (Gpa(u64::from(s.base)), u64::from(s.size));
        match s.section_type() {
            SectionType::SNP_SEC_MEM if vmm == VmmType::Gce => {
                d.update_unmeasured_range(PageType::UNMEASURED, gpa, size)?
            }
            SectionType::SNP_SEC_MEM | SectionType::SVSM_CAA => {
                d.update_unmeasured_range(PageType::ZERO, gpa, size)?
            }
            SectionType::SNP_SECRETS => d.update_unmeasured_range(PageType::SECRETS, gpa, 4096)?,
            SectionType::CPUID if vmm != VmmType::Ec2 => {
                d.update_unmeasured_range(PageType::CPUID, gpa, 4096)?
            }
            SectionType::CPUID => {}
            SectionType::SNP_KERNEL_HASHES => match hashes {
                Some(h) => {
                    let (table_gpa, _) = image
                        .sev_hash_table()?
                        .ok_or(MeasureError::NoHashTableBlock)?;
                    let offset = table_gpa & 0xFFF;
                    let page = h
                        .page(offset as usize)
                        .ok_or(MeasureError::HashTablePlacement {
                            gpa: table_gpa,
                            offset,
                        })?;
                    d.update(PageType::NORMAL, gpa, &page, Default::default())?;
                }
                None => d.update_unmeasured_range(PageType::ZERO, gpa, size)?,
            },
            _ => {} // rejected by check_snp_sections
        }
    }
    if vmm == VmmType::Ec2 {
        for s in image
            .metadata()
            .iter()
            .filter(|s| s.section_type() == SectionType::CPUID)
        {
            d.update_unmeasured_range(PageType::CPUID, Gpa(u64::from(s.base)), 4096)?;
        }
    }
    Ok(())
}

/// The BSP/AP VMSAs of an SNP (or, with features 0, SEV-ES) launch of this image.
pub fn launch_vmsas(
    ovmf: &Ovmf,
    vcpus: u32,
    guest_features: u64,
    vcpu_sig: u32,
    vmm: VmmType,
) -> Result<VcpuVmsas> {
    if vcpus == 0 {
        return Err(MeasureError::VcpuCount(vcpus));
    }
    let eip = ovmf.sev_es_reset_eip()?;
    if eip == 0 && vcpus > 1 {
        return Err(MeasureError::NoApResetAddress { vcpus });
    }
    Ok(VcpuVmsas::new(eip, guest_features, vcpu_sig, vmm))
}

/// Measure `vcpus` VMSA pages (BSP, then APs). The AP page digest is computed once.
pub fn snp_measure_vmsas(d: &mut SnpDigest, vmsas: &VcpuVmsas, vcpus: u32) -> Result<()> {
    if vcpus == 0 {
        return Err(MeasureError::VcpuCount(vcpus));
    }
    d.update_vmsa(&vmsas.bsp);
    if vcpus > 1 {
        let ap = vmsas
            .ap
            .as_ref()
            .ok_or(MeasureError::NoApResetAddress { vcpus })?;
        let contents = d.update_vmsa(ap);
        for _ in 2..vcpus {
            d.update_with_contents(
                PageType::VMSA,
                Gpa(softsev_abi::page_info::VMSA_GPA),
                &contents,
                Default::default(),
                false,
            );
        }
    }
    Ok(())
}

/// The SNP launch digest of a QEMU/ec2/gce OVMF guest. With `ovmf_hash` the chain
/// starts from that precomputed OVMF hash instead of measuring the image pages.
pub fn snp_launch_digest(
    ovmf: &Ovmf,
    ovmf_hash: Option<[u8; SNP_DIGEST_LEN]>,
    p: &SnpParams,
) -> Result<[u8; SNP_DIGEST_LEN]> {
    let mut d = match ovmf_hash {
        Some(seed) => SnpDigest::from_seed(seed),
        None => SnpDigest::new(),
    };
    snp_launch_into(&mut d, ovmf, ovmf_hash.is_some(), p)?;
    Ok(d.digest())
}

/// Like [`snp_launch_digest`] but into a caller's digest (e.g. one recording a trace).
pub fn snp_launch_into(d: &mut SnpDigest, ovmf: &Ovmf, seeded: bool, p: &SnpParams) -> Result<()> {
    let vmsas = launch_vmsas(ovmf, p.vcpus, p.guest_features, p.vcpu_sig, p.vmm)?;
    if !seeded {
        snp_measure_ovmf(d, ovmf)?;
    }
    snp_measure_metadata(d, ovmf, p.kernel_hashes.as_ref(), p.vmm)?;
    snp_measure_vmsas(d, &vmsas, p.vcpus)
}

/// Where an SVSM image sits: it ends `vars_size` bytes below the OVMF.
pub fn svsm_gpa(ovmf: &Ovmf, svsm: &Ovmf, vars_size: u64) -> Result<u64> {
    let end = ovmf
        .gpa()?
        .checked_sub(vars_size)
        .ok_or(MeasureError::ImageSize {
            what: "OVMF_VARS",
            size: vars_size as usize,
            reason: "larger than the space below the OVMF",
        })?;
    svsm.gpa_below(end, "SVSM")
}

/// The single VMSA of every vCPU of an SVSM launch.
pub fn svsm_launch_vmsa(
    ovmf: &Ovmf,
    svsm: &Ovmf,
    vars_size: u64,
    vcpu_sig: u32,
) -> Result<softsev_abi::vmsa::Vmsa> {
    let gpa = svsm_gpa(ovmf, svsm, vars_size)?;
    let rip = u64::from(svsm.svsm_entry_offset()?) + gpa;
    Ok(svsm_vmsa(rip, vcpu_sig))
}

/// The SNP digest of a QEMU guest booting COCONUT-SVSM: OVMF pages, SVSM pages, the
/// SVSM image's metadata, then one identical VMSA per vCPU.
pub fn svsm_launch_into(
    d: &mut SnpDigest,
    ovmf: &Ovmf,
    svsm: &Ovmf,
    vars_size: u64,
    vcpus: u32,
    vcpu_sig: u32,
) -> Result<()> {
    if vcpus == 0 {
        return Err(MeasureError::VcpuCount(vcpus));
    }
    let vmsa = svsm_launch_vmsa(ovmf, svsm, vars_size, vcpu_sig)?;
    let gpa = svsm_gpa(ovmf, svsm, vars_size)?;
    snp_measure_ovmf(d, ovmf)?;
    d.update_normal_pages(Gpa(gpa), svsm.data())?;
    snp_measure_metadata(d, svsm, None, VmmType::Qemu)?;
    let vmsas = VcpuVmsas {
        bsp: vmsa.clone(),
        ap: Some(vmsa),
    };
    snp_measure_vmsas(d, &vmsas, vcpus)
}

/// [`svsm_launch_into`] from a fresh digest.
pub fn svsm_launch_digest(
    ovmf: &Ovmf,
    svsm: &Ovmf,
    vars_size: u64,
    vcpus: u32,
    vcpu_sig: u32,
) -> Result<[u8; SNP_DIGEST_LEN]> {
    let mut d = SnpDigest::new();
    svsm_launch_into(&mut d, ovmf, svsm, vars_size, vcpus, vcpu_sig)?;
    Ok(d.digest())
}

fn sev_common(ovmf: &Ovmf, hashes: Option<&KernelHashes>) -> Result<SevDigest> {
    if hashes.is_some() && !ovmf.supports_sev_hashes()? {
        return Err(MeasureError::NoHashTableSupport);
    }
    let mut d = SevDigest::new();
    d.update(ovmf.data());
    if let Some(h) = hashes {
        d.update(h.table().as_bytes());
    }
    Ok(d)
}

/// SEV launch digest: SHA-256(OVMF ‖ padded hash table if a kernel is given).
pub fn sev_launch_digest(
    ovmf: &Ovmf,
    hashes: Option<&KernelHashes>,
) -> Result<[u8; SEV_DIGEST_LEN]> {
    Ok(sev_common(ovmf, hashes)?.finish())
}

/// The BSP/AP VMSAs of an SEV-ES launch of this image (SEV_FEATURES 0) for the KVM
/// set-up `init` (shared/spec/sev-legacy.md §8.1).
pub fn seves_launch_vmsas(
    ovmf: &Ovmf,
    vcpus: u32,
    vcpu_sig: u32,
    vmm: VmmType,
    init: EsVmsaInit,
) -> Result<VcpuVmsas> {
    if vcpus == 0 {
        return Err(MeasureError::VcpuCount(vcpus));
    }
    let eip = ovmf.sev_es_reset_eip()?;
    if eip == 0 && vcpus > 1 {
        return Err(MeasureError::NoApResetAddress { vcpus });
    }
    Ok(VcpuVmsas::new_with(eip, 0, vcpu_sig, vmm, init))
}

/// SEV-ES launch digest: the SEV stream followed by every vCPU's VMSA (SEV_FEATURES 0),
/// the VMSAs as KVM's `KVM_SEV_INIT2` writes them ([`EsVmsaInit::Init2`], as
/// sev-snp-measure models). [`seves_launch_digest_with`] chooses the set-up.
pub fn seves_launch_digest(
    ovmf: &Ovmf,
    hashes: Option<&KernelHashes>,
    vcpus: u32,
    vcpu_sig: u32,
    vmm: VmmType,
) -> Result<[u8; SEV_DIGEST_LEN]> {
    seves_launch_digest_with(ovmf, hashes, vcpus, vcpu_sig, vmm, EsVmsaInit::Init2)
}

/// SEV-ES launch digest for the KVM set-up `init`: SHA-256(OVMF ‖ hash table if a
/// kernel is given ‖ VMSA of vCPU 0 ‖ … ‖ VMSA of vCPU n-1) (§8.1, §9.2). QEMU's
/// default (`legacy-vm-type=auto`) is [`EsVmsaInit::EsInit`].
pub fn seves_launch_digest_with(
    ovmf: &Ovmf,
    hashes: Option<&KernelHashes>,
    vcpus: u32,
    vcpu_sig: u32,
    vmm: VmmType,
    init: EsVmsaInit,
) -> Result<[u8; SEV_DIGEST_LEN]> {
    let vmsas = seves_launch_vmsas(ovmf, vcpus, vcpu_sig, vmm, init)?;
    let mut d = sev_common(ovmf, hashes)?;
    for i in 0..vcpus {
        let v = vmsas
            .get(i)
            .ok_or(MeasureError::NoApResetAddress { vcpus })?;
        d.update(v.as_bytes());
    }
    Ok(d.finish())
}
