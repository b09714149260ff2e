//! The PSP driver: what Linux's `drivers/crypto/ccp/sev-dev.c` does for both KVM and
//! `/dev/sev` — the command buffer in a hypervisor page handed to the firmware
//! mailbox, firmware-state pages (`rmp_mark_pages_firmware`), page reclaim
//! (SNP_PAGE_RECLAIM then RMPUPDATE to shared, leaking on failure as
//! `snp_leak_pages`), and SNP_INIT + WBINVD + SNP_DF_FLUSH at probe
//! (SEV-SNP firmware ABI 56860 §8.2, host-interfaces.md §1.11).

use crate::alloc::PhysAlloc;
use crate::error::{Errno, KvmError, KvmResult};
use parking_lot::Mutex;
use softsev_abi::fw_buf::SnpPaddr;
use softsev_abi::rmp::{RmpStatus, RmpUpdateInput};
use softsev_abi::{FwCmd, FwStatus, PageSize, Spa};
use softsev_firmware::{Firmware, PlatformState};
use softsev_soc::Soc;
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The PSP driver of one host: the firmware, its command page and the pages it lends
/// to the firmware.
pub(crate) struct PspDriver {
    soc: Arc<Soc>,
    fw: Arc<Firmware>,
    alloc: Arc<PhysAlloc>,
    cmd_page: Mutex<Spa>,
}

impl std::fmt::Debug for PspDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PspDriver")
            .field("cmd_page", &*self.cmd_page.lock())
            .finish_non_exhaustive()
    }
}

impl PspDriver {
    /// Probe: take a command page from `alloc`.
    pub(crate) fn new(fw: Arc<Firmware>, alloc: Arc<PhysAlloc>) -> KvmResult<Self> {
        let cmd = alloc
            .alloc_4k()
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "no memory for the PSP command page"))?;
        Ok(PspDriver {
            soc: fw.soc().clone(),
            fw,
            alloc,
            cmd_page: Mutex::new(cmd),
        })
    }

    /// SNP_INIT, WBINVD, SNP_DF_FLUSH if the firmware is not initialised yet (what the
    /// driver does at probe when SNP is enabled).
    pub(crate) fn snp_init_at_probe(&self) -> KvmResult {
        if self.fw.platform_state() != PlatformState::Uninit {
            return Ok(());
        }
        self.raw(FwCmd::SNP_INIT)
            .map_err(|s| KvmError::fw(s, "SNP_INIT"))?;
        self.soc.wbinvd();
        self.raw(FwCmd::SNP_DF_FLUSH)
            .map_err(|s| KvmError::fw(s, "SNP_DF_FLUSH"))
    }

    /// The firmware behind the mailbox.
    pub(crate) fn firmware(&self) -> &Arc<Firmware> {
        &self.fw
    }

    /// Issue a command without a buffer.
    pub(crate) fn raw(&self, cmd: FwCmd) -> Result<(), FwStatus> {
        let page = self.cmd_page.lock();
        self.fw.command(cmd, *page)
    }

    /// Issue `cmd` with `data` as its buffer in the command page; outputs are read back
    /// into `data` (even on failure, as the driver copies back).
    pub(crate) fn issue<T>(&self, cmd: FwCmd, data: &mut T) -> Result<(), FwStatus>
    where
        T: IntoBytes + FromBytes + Immutable + KnownLayout,
    {
        let page = self.cmd_page.lock();
        self.soc
            .host_write(*page, false, data.as_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        let r = self.fw.command(cmd, *page);
        let _ = self.soc.host_read(*page, false, data.as_mut_bytes());
        r
    }

    /// RMPUPDATE a hypervisor page to the firmware state (`rmp_mark_pages_firmware`).
    pub(crate) fn make_firmware_page(&self, spa: Spa) -> KvmResult {
        let st = self.soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                assigned: 1,
                immutable: 1,
                ..Default::default()
            },
        );
        rmp_ok(st, spa, "to firmware")
    }

    /// Return a page of `size` to the hypervisor: SNP_PAGE_RECLAIM if it is immutable,
    /// then RMPUPDATE to shared. On failure the page is leaked (`snp_leak_pages`).
    pub(crate) fn reclaim_page(&self, spa: Spa, size: PageSize) -> KvmResult {
        let (e, _) = self
            .soc
            .rmp_lookup(spa)
            .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
        if e.assigned() && e.immutable() {
            let mut p = SnpPaddr {
                paddr: spa.0 | u64::from(size.bit()),
            };
            if let Err(s) = self.issue(FwCmd::SNP_PAGE_RECLAIM, &mut p) {
                self.alloc.leak(size.bytes());
                return Err(KvmError::fw(s, format!("SNP_PAGE_RECLAIM of {spa}")));
            }
        }
        let st = self.soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                pagesize: size.bit(),
                ..Default::default()
            },
        );
        if !st.is_success() {
            self.alloc.leak(size.bytes());
        }
        rmp_ok(st, spa, "to shared")
    }
}

/// An RMPUPDATE status as a KVM result (EIO naming the page and the transition).
pub(crate) fn rmp_ok(st: RmpStatus, spa: Spa, what: &str) -> KvmResult {
    if st.is_success() {
        Ok(())
    } else {
        Err(KvmError::new(
            Errno::EIO,
            format!("RMPUPDATE of {spa} {what} failed: {st:?}"),
        ))
    }
}
