//! The host MSRs `snphost ok` reads on CPU 0 (frontends.md §3.3; snphost
//! `src/ok/mod.rs`: "Reads MSR 0xC0010010 (SYSCFG) bit 23 to verify SME", "bit 24 to
//! verify SNP", "Reads MSRs 0xC0010132 and 0xC0010133 for RMP base/end addresses").
//!
//! SYSCFG (AMD APM vol. 2 §15.34.1, Linux `arch/x86/include/asm/msr-index.h`):
//! bit 23 `MemEncryptionModEn` (SME), bit 24 `SecureNestedPagingEn` (SNP), bit 25
//! `VMPLEn`. RMP_BASE / RMP_END hold the first and the last byte of the RMP table
//! (Linux `arch/x86/virt/svm/sev.c:snp_probe_rmptable_info`: size = end − base + 1;
//! 16 KiB of processor bookkeeping then 16 bytes per 4 KiB page). The model's RMP is
//! not in SoC memory; the table is placed at the first 1 MiB boundary above the SoC's
//! memory, sized for it (a model choice: no host allocation can overlap it).

use crate::msr::MsrSource;
use softsev_host::SoftHost;
use std::sync::Arc;

/// SYSCFG.
pub const MSR_AMD64_SYSCFG: u32 = 0xC001_0010;
/// RMP_BASE.
pub const MSR_AMD64_RMP_BASE: u32 = 0xC001_0132;
/// RMP_END.
pub const MSR_AMD64_RMP_END: u32 = 0xC001_0133;

/// SYSCFG bit 23: memory encryption (SME) enabled.
const SYSCFG_MEM_ENCRYPT: u64 = 1 << 23;
/// SYSCFG bit 24: SNP enabled.
const SYSCFG_SNP_EN: u64 = 1 << 24;
/// SYSCFG bit 25: VMPLs enabled.
const SYSCFG_SNP_VMPL_EN: u64 = 1 << 25;
/// The processor's bookkeeping area at the start of the RMP
/// (`RMPTABLE_CPU_BOOKKEEPING_SZ`).
const RMP_BOOKKEEPING: u64 = 0x4000;
/// Bytes per RMP entry.
const RMP_ENTRY: u64 = 16;

/// The host's MSRs for one SoC: SYSCFG from whether SNP is enabled, the RMP range
/// from the memory size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMsrs {
    syscfg: u64,
    rmp_base: u64,
    rmp_end: u64,
}

impl HostMsrs {
    /// The MSRs of `host`'s SoC.
    pub fn new(host: &Arc<SoftHost>) -> Self {
        Self::for_soc(host.soc().mem_size(), host.soc().snp_enabled())
    }

    /// The MSRs of a SoC with `mem_size` bytes of memory and SNP enabled or not.
    pub fn for_soc(mem_size: u64, snp: bool) -> Self {
        let mut syscfg = SYSCFG_MEM_ENCRYPT;
        let (mut rmp_base, mut rmp_end) = (0, 0);
        if snp {
            syscfg |= SYSCFG_SNP_EN | SYSCFG_SNP_VMPL_EN;
            rmp_base = mem_size.next_multiple_of(1 << 20);
            let pages = mem_size.div_ceil(4096);
            rmp_end = rmp_base + RMP_BOOKKEEPING + pages * RMP_ENTRY - 1;
        }
        HostMsrs {
            syscfg,
            rmp_base,
            rmp_end,
        }
    }
}

impl MsrSource for HostMsrs {
    fn rdmsr(&self, index: u32) -> Option<u64> {
        match index {
            MSR_AMD64_SYSCFG => Some(self.syscfg),
            MSR_AMD64_RMP_BASE => Some(self.rmp_base),
            MSR_AMD64_RMP_END => Some(self.rmp_end),
            _ => None,
        }
    }
}
