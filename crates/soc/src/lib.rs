//! The SoC model of softsev: what an AMD EPYC package provides underneath the secure
//! processor firmware, the hypervisor and the guests.
//!
//! - **DRAM**: sparse physical memory of configurable size (2 MiB regions allocated on
//!   first write; never-written memory holds zero bytes). DRAM holds what real DIMMs
//!   hold: ciphertext for encrypted pages.
//! - **Memory-encryption engine**: AES-128 in XEX form with a tweak from the system
//!   physical address (`softsev_crypto::xex`), one key per ASID plus the host's SME key.
//!   Keys enter from the firmware (ACTIVATE) and can never be read back.
//! - **RMP**: one 16-byte entry per 4 KiB page (`softsev_abi::rmp::RmpEntry`), the host
//!   instructions RMPUPDATE / PSMASH / RMPREAD, the guest instructions PVALIDATE /
//!   RMPADJUST / RMPQUERY, and the firmware's direct path to the table.
//! - **Access checks** (host-interfaces.md §3.4, APM Table 15-39): every host, guest and
//!   device access says who makes it; forbidden accesses return the [`Fault`] the
//!   hardware would raise (#PF with the RMP bit, #VMEXIT(NPF) with its EXITINFO1 bits,
//!   #VC 0x404, IOMMU fault).
//!
//! Who makes an access is expressed by the entry point, each applying the checks of
//! that accessor (style rule 13):
//! - host (hypervisor, ASID 0): [`Soc::host_read`], [`Soc::host_write`],
//!   [`Soc::host_write_check`], and the instructions [`Soc::rmpupdate`],
//!   [`Soc::psmash`], [`Soc::rmpread`];
//! - firmware (AMD-SP, unchecked, any key): [`Soc::fw_read`], [`Soc::fw_write`],
//!   [`Soc::fw_encrypt_in_place`], [`Soc::fw_rmp_read`], [`Soc::fw_rmp_modify`], key
//!   slots ([`Soc::activate_key`], [`Soc::deactivate_key`], [`Soc::df_flush`]);
//! - guest (ASID + VMPL, after the nested walk): [`Soc::guest_read`],
//!   [`Soc::guest_write`], [`Soc::guest_check`] with a [`GuestAccess`], and the
//!   instructions [`Soc::pvalidate`], [`Soc::rmpadjust`], [`Soc::rmpquery`];
//! - device (DMA through the IOMMU): [`Soc::device_read`], [`Soc::device_write`].
//!
//! Everything takes `&self`; the model is shared between the firmware, the host and
//! several vCPU threads. Bulk operations run in parallel across cores (rayon).
//! See docs/soc.md for the design and the measured speed.

#![forbid(unsafe_code)]

mod access;
mod error;
pub mod fuzz;
mod keys;
mod mem;
mod rmp;
mod store;

pub use access::{AccessKind, GuestAccess, GuestMode, PageSize, Paging};
pub use error::*;
pub use keys::{KeySel, KeyState};
pub use rmp::{PvalidateReq, RmpAdjustReq, RmpQuery, RmpQueryReq};
pub use softsev_abi::rmp::{RmpEntry, RmpStatus, RmpUpdateInput};

use keys::KeyTable;
use softsev_abi::{Asid, PAGE_SIZE_4K, Spa};
use softsev_crypto::rng::Rng;
use store::Store;

/// Size and features of a SoC.
#[derive(Debug, Clone)]
pub struct SocConfig {
    /// Installed physical memory in bytes (rounded up to 2 MiB). Up to 2^52.
    pub mem_size: u64,
    /// Number of ASIDs including the host's 0 (CPUID 0x8000001F ECX + 1). Milan: 1007.
    pub asid_count: u32,
    /// SNP enabled (SYSCFG.SNP_EN): the RMP is checked on every access.
    pub snp_enabled: bool,
    /// Bytes of memory covered by the RMP from SPA 0 (`None` = all of it). Pages beyond
    /// are permanently hypervisor-owned.
    pub rmp_coverage: Option<u64>,
    /// Seed for the SME key (deterministic mode); `None` = OS randomness.
    pub seed: Option<Vec<u8>>,
    /// Ask for transparent huge pages for DRAM backing: first touch is several times
    /// faster, but every touched 2 MiB region costs 2 MiB of RSS. Off by default.
    pub huge_pages: bool,
}

impl SocConfig {
    /// An SNP-enabled SoC with `mem_size` bytes, 1007 ASIDs, full RMP coverage.
    pub fn new(mem_size: u64) -> Self {
        Self {
            mem_size,
            asid_count: 1007,
            snp_enabled: true,
            rmp_coverage: None,
            seed: None,
            huge_pages: false,
        }
    }
}

/// Largest supported physical address space (52-bit physical addresses).
pub const MAX_MEM_SIZE: u64 = 1 << 52;

/// The SoC: DRAM, the encryption engine and its key slots, the RMP.
pub struct Soc {
    store: Store,
    keys: KeyTable,
    mem_size: u64,
    rmp_limit: u64,
    snp: bool,
    huge_pages: bool,
}

impl std::fmt::Debug for Soc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Soc")
            .field("mem_size", &self.mem_size)
            .field("rmp_limit", &self.rmp_limit)
            .field("snp", &self.snp)
            .field("asid_count", &self.keys.asid_count())
            .finish_non_exhaustive()
    }
}

impl Soc {
    /// Build a SoC. Memory size is clamped to [`MAX_MEM_SIZE`] and rounded up to 2 MiB;
    /// the ASID count to 1..=1024 (the RMP's ASID field has 10 bits).
    pub fn new(cfg: SocConfig) -> Self {
        let mem_size = cfg
            .mem_size
            .min(MAX_MEM_SIZE)
            .div_ceil(store::REGION_SIZE)
            .saturating_mul(store::REGION_SIZE);
        let mut rng = match &cfg.seed {
            Some(s) => Rng::seeded(s, "softsev-soc sme key"),
            None => Rng::os(),
        };
        let sme = zeroize::Zeroizing::new(rng.array::<16>());
        let asid_count = cfg.asid_count.clamp(1, softsev_abi::rmp::RMP_MAX_ASID + 1);
        let rmp_limit = cfg.rmp_coverage.unwrap_or(mem_size).min(mem_size) & !(PAGE_SIZE_4K - 1);
        Self {
            store: Store::new(mem_size),
            keys: KeyTable::new(asid_count, &sme),
            mem_size,
            rmp_limit,
            snp: cfg.snp_enabled,
            huge_pages: cfg.huge_pages,
        }
    }

    /// Installed memory in bytes.
    pub fn mem_size(&self) -> u64 {
        self.mem_size
    }

    /// Number of ASIDs (guest ASIDs are 1..count).
    pub fn asid_count(&self) -> u32 {
        self.keys.asid_count()
    }

    /// Whether SNP (RMP checking) is enabled.
    pub fn snp_enabled(&self) -> bool {
        self.snp
    }

    /// Whether `spa`'s page has an RMP entry.
    pub fn rmp_covered(&self, spa: Spa) -> bool {
        spa.0 < self.rmp_limit
    }

    // ---- key slots (firmware ACTIVATE / DEACTIVATE / DF_FLUSH, host WBINVD) ----

    /// Install the memory-encryption key of `asid` (firmware ACTIVATE / SNP_ACTIVATE).
    /// Fails if the ASID is the host's, out of range, already active, or deactivated
    /// without a flush since.
    pub fn activate_key(&self, asid: Asid, key: &[u8; 16]) -> Result<(), KeyError> {
        self.keys.activate(asid, key)
    }

    /// Remove and zeroize the key of `asid` (firmware DEACTIVATE / SNP_DECOMMISSION).
    /// The ASID needs WBINVD + DF_FLUSH before reuse.
    pub fn deactivate_key(&self, asid: Asid) -> Result<(), KeyError> {
        self.keys.deactivate(asid)
    }

    /// Remove and zeroize the key of an ASID that never ran on a core (the firmware
    /// decommissioning a guest whose ASID was only allocated): no cache line can carry
    /// the ASID, so it is reusable at once, without WBINVD + DF_FLUSH.
    pub fn release_unused_key(&self, asid: Asid) -> Result<(), KeyError> {
        self.keys.release_unused(asid)
    }

    /// Whether WBINVD ran on all cores since the last deactivation or
    /// [`Soc::clear_wbinvd_done`] (the cores' WBINVD_DONE flags the firmware reads).
    pub fn wbinvd_done(&self) -> bool {
        self.keys.wbinvd_done()
    }

    /// Clear the cores' WBINVD_DONE flags (the firmware does this at SNP_INIT, so the
    /// host must WBINVD before the first DF_FLUSH).
    pub fn clear_wbinvd_done(&self) {
        self.keys.clear_wbinvd_done()
    }

    /// The key-slot state of `asid`, `None` if out of range.
    pub fn key_state(&self, asid: Asid) -> Option<KeyState> {
        self.keys.state(asid)
    }

    /// WBINVD executed on all cores: write back and invalidate caches.
    pub fn wbinvd(&self) {
        self.keys.wbinvd()
    }

    /// The firmware's DF_FLUSH: makes every deactivated ASID reusable. Fails with
    /// [`KeyError::WbinvdRequired`] unless WBINVD ran after the last deactivation.
    pub fn df_flush(&self) -> Result<(), KeyError> {
        self.keys.df_flush()
    }
}
