//! Starting application processors with SNP AP creation (GHCB NAE 0x8000_0013;
//! host-interfaces.md §2.7; Linux `wakeup_cpu_via_vmgexit` / `snp_set_vmsa`):
//!
//! 1. take a private, validated 4 KiB page that is not 2 MiB aligned (a CPU erratum
//!    makes 2 MiB-aligned VMSA pages unsafe);
//! 2. write the AP's initial state there (real mode at the trampoline, the reset
//!    values of the control and debug registers, the guest's SEV features);
//! 3. RMPADJUST it from VMPL0 with target VMPL1 and the VMSA bit, which turns the page
//!    into a VMSA;
//! 4. ask the hypervisor to CREATE the vCPU with that VMSA (RAX = SEV features).
//!
//! If the hypervisor refuses, the VMSA bit is cleared again (RMPADJUST without it) so
//! the page can be reused.
//!
//! [`ap_entry`] is what an AP then does on its own vCPU (Linux
//! `snp_register_per_cpu_ghcb`): check SEV_STATUS, register its own GHCB page (which the
//! BSP made shared) over the MSR protocol, and use it.

use crate::error::{GuestError, access_fault};
use crate::ghcb::GhcbClient;
use crate::memory::{MemRange, Validated};
use crate::platform::{CBit, GuestPlatform, PageSize};
use softsev_abi::ghcb::{ApCreateOp, GHCB_HV_FT_SNP_AP_CREATION};
use softsev_abi::rmp::{RMPADJUST_VMSA_PAGE_BIT, RmpStatus};
use softsev_abi::vmsa::{VmcbSegment, Vmsa};
use softsev_abi::{Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K};
use zerocopy::IntoBytes;

/// Code segment attributes (present, S, readable code), VMCB packed form.
const CS_ATTR: u16 = 0x9A;
/// Data segment attributes (present, S, writable data).
const DS_ATTR: u16 = 0x92;
/// LDTR attributes (present, LDT).
const LDTR_ATTR: u16 = 0x82;
/// TR attributes (present, busy 16-bit TSS).
const TR_ATTR: u16 = 0x83;
/// CR0 of an AP at INIT (CD | NW | ET).
const AP_INIT_CR0: u64 = 0x6000_0010;
/// EFER.SVME, which must be set in an SEV-ES/SNP VMSA.
const EFER_SVME: u64 = 1 << 12;
/// RMPADJUST target VMPL used when making a VMSA from VMPL0.
const VMSA_TARGET_VMPL: u64 = 1;

/// The initial VMSA of an AP that starts in real mode at `start_ip` (below 1 MiB),
/// with the INIT values Linux's `wakeup_cpu_via_vmgexit` uses (CR4 left 0).
pub fn ap_vmsa(start_ip: u64, sev_features: u64) -> Vmsa {
    let mut v = Vmsa::zeroed();
    // As a SIPI with vector start_ip >> 12 would: CS.base = vector << 12,
    // CS.selector = vector << 8, RIP = the offset within that page.
    let cs_base = start_ip & !0xFFF;
    let seg = |attrib| VmcbSegment::new(0, attrib, 0xFFFF, 0);
    v.cs = VmcbSegment::new((cs_base >> 4) as u16, CS_ATTR, 0xFFFF, cs_base);
    v.ds = seg(DS_ATTR);
    v.es = seg(DS_ATTR);
    v.fs = seg(DS_ATTR);
    v.gs = seg(DS_ATTR);
    v.ss = seg(DS_ATTR);
    v.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.ldtr = seg(LDTR_ATTR);
    v.tr = seg(TR_ATTR);
    v.rip = start_ip & 0xFFF;
    v.efer = EFER_SVME;
    v.cr0 = AP_INIT_CR0;
    v.dr6 = 0xFFFF_0FF0;
    v.dr7 = 0x400;
    v.rflags = 0x2;
    v.g_pat = 0x0007_0406_0007_0406;
    v.xcr0 = 1;
    v.mxcsr = 0x1F80;
    v.x87_ftw = 0x5555;
    v.x87_fcw = 0x40;
    v.vmpl = 0;
    v.sev_features = sev_features;
    v
}

/// Whether `gpa` can hold a VMSA: page aligned and not 2 MiB aligned.
pub fn vmsa_page_ok(gpa: Gpa) -> bool {
    gpa.is_aligned(PAGE_SIZE_4K) && !gpa.is_aligned(PAGE_SIZE_2M)
}

/// Start the AP `apic_id` from a VMSA placed at `vmsa_gpa`. The page is made private
/// and validated first if the guest has not validated it yet.
#[allow(clippy::too_many_arguments)]
pub fn start_ap<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    mem: &mut Validated,
    apic_id: u32,
    vmsa_gpa: Gpa,
    start_ip: u64,
    sev_features: u64,
) -> Result<(), GuestError> {
    if ghcb.hv_features() & GHCB_HV_FT_SNP_AP_CREATION == 0 {
        return Err(GuestError::ApCreationUnsupported {
            features: ghcb.hv_features(),
        });
    }
    if !vmsa_page_ok(vmsa_gpa) {
        return Err(GuestError::Config(format!(
            "VMSA page {vmsa_gpa} must be 4 KiB aligned and not 2 MiB aligned"
        )));
    }
    if !mem.is_validated(vmsa_gpa) {
        mem.make_private(p, ghcb, MemRange::new(vmsa_gpa.0, PAGE_SIZE_4K))?;
    }
    let vmsa = ap_vmsa(start_ip, sev_features);
    p.write(vmsa_gpa, CBit::Private, vmsa.as_bytes())
        .map_err(|f| access_fault("AP VMSA write", vmsa_gpa, f))?;
    let attrs = VMSA_TARGET_VMPL | RMPADJUST_VMSA_PAGE_BIT;
    let st = p
        .rmpadjust(vmsa_gpa, PageSize::Size4K, attrs)
        .map_err(|f| access_fault("RMPADJUST (VMSA)", vmsa_gpa, f))?;
    if st != RmpStatus::SUCCESS {
        return Err(GuestError::Rmpadjust {
            gpa: vmsa_gpa,
            attrs,
            status: st,
        });
    }
    if let Err(e) = ghcb.ap_create(p, ApCreateOp::CREATE, apic_id, vmsa_gpa, sev_features) {
        // Give the page back its ordinary state before reporting.
        let _ = p.rmpadjust(vmsa_gpa, PageSize::Size4K, VMSA_TARGET_VMPL);
        return Err(e);
    }
    Ok(())
}

/// What an AP found when it came up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApReport {
    /// SEV_STATUS on this vCPU.
    pub sev_status: u64,
    /// The GHCB it registered.
    pub ghcb_gpa: Gpa,
    /// GHCB protocol version.
    pub ghcb_version: u16,
    /// Hypervisor features read through the full GHCB.
    pub hv_features: u64,
}

/// The AP side: run on the AP's vCPU after AP creation. `ghcb_gpa` is the AP's own
/// GHCB page, already shared by the BSP ([`crate::BootConfig::ap_ghcb_base`]).
/// Fatal errors send the termination request Linux would.
pub fn ap_entry<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb_gpa: Gpa,
) -> Result<ApReport, GuestError> {
    let mut ghcb = GhcbClient::new();
    let run = |p: &mut P, ghcb: &mut GhcbClient| -> Result<ApReport, GuestError> {
        let sev_status = p
            .rdmsr(softsev_abi::ghcb::MSR_SEV_STATUS)
            .map_err(|f| access_fault("RDMSR SEV_STATUS", Gpa(0), f))?;
        let need = softsev_abi::ghcb::SEV_STATUS_SEV
            | softsev_abi::ghcb::SEV_STATUS_SEV_ES
            | softsev_abi::ghcb::SEV_STATUS_SNP;
        if sev_status & need != need {
            return Err(GuestError::NotSnp { sev_status });
        }
        ghcb.negotiate(p)?;
        ghcb.register(p, ghcb_gpa)?;
        let hv_features = ghcb.hv_features_nae(p)?;
        Ok(ApReport {
            sev_status,
            ghcb_gpa,
            ghcb_version: ghcb.version(),
            hv_features,
        })
    };
    match run(p, &mut ghcb) {
        Ok(r) => Ok(r),
        Err(e) => Err(match e.termination_reason() {
            Some((set, code)) => {
                let _ = ghcb.terminate(p, set, code);
                GuestError::Terminated {
                    set,
                    code,
                    cause: Box::new(e),
                }
            }
            None => e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_mode_start() {
        let v = ap_vmsa(0x9_A000, 1);
        assert_eq!(v.cs.base, 0x9_A000);
        assert_eq!(v.cs.selector, 0x9A00);
        assert_eq!(v.rip, 0);
        let v = ap_vmsa(0x9_A123, 1);
        assert_eq!(v.cs.base + v.rip, 0x9_A123);
        assert_eq!(v.sev_features, 1);
        assert_eq!(v.efer & EFER_SVME, EFER_SVME);
        assert!(vmsa_page_ok(Gpa(0x20_1000)));
        assert!(!vmsa_page_ok(Gpa(0x20_0000)));
        assert!(!vmsa_page_ok(Gpa(0x20_0800)));
    }
}
