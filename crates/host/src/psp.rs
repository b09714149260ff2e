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
use softsev_abi::{FwCmd, FwStatus, PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize, Spa};
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
    sev: Mutex<CcpSev>,
    init_ex: bool,
}

impl std::fmt::Debug for PspDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PspDriver")
            .field("cmd_page", &*self.cmd_page.lock())
            .finish_non_exhaustive()
    }
}

impl PspDriver {
    /// Probe: take a command page from `alloc`. With `init_ex` the legacy platform is
    /// initialised with INIT_EX and a non-volatile buffer (ccp `init_ex_path`).
    pub(crate) fn new(fw: Arc<Firmware>, alloc: Arc<PhysAlloc>, init_ex: bool) -> KvmResult<Self> {
        let cmd = alloc
            .alloc_4k()
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "no memory for the PSP command page"))?;
        Ok(PspDriver {
            soc: fw.soc().clone(),
            fw,
            alloc,
            cmd_page: Mutex::new(cmd),
            sev: Mutex::new(CcpSev::default()),
            init_ex,
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

/// A physically contiguous kernel buffer (`kzalloc` / `alloc_pages` in Linux): one
/// 4 KiB page, or a 2 MiB chunk for more, zeroed over its length and freed on drop.
/// KVM stages the blobs it hands the firmware (certificates, sessions, measurements,
/// reports, the TMR) in such buffers.
pub(crate) struct KernelBuf {
    soc: Arc<Soc>,
    alloc: Arc<PhysAlloc>,
    spa: Spa,
    len: usize,
    huge: bool,
}

impl std::fmt::Debug for KernelBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBuf")
            .field("spa", &self.spa)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl KernelBuf {
    /// `len` zeroed bytes (at most 2 MiB).
    pub(crate) fn new(psp: &PspDriver, len: usize) -> KvmResult<KernelBuf> {
        let huge = len > PAGE_SIZE_4K as usize;
        if len as u64 > PAGE_SIZE_2M {
            return Err(KvmError::new(
                Errno::ENOMEM,
                format!("kernel buffer of {len:#x} bytes"),
            ));
        }
        let spa = if huge {
            psp.alloc.alloc_2m()
        } else {
            psp.alloc.alloc_4k()
        }
        .ok_or_else(|| KvmError::new(Errno::ENOMEM, "out of physical memory"))?;
        let b = KernelBuf {
            soc: psp.soc.clone(),
            alloc: psp.alloc.clone(),
            spa,
            len,
            huge,
        };
        let zero_len = (len as u64)
            .next_multiple_of(PAGE_SIZE_4K)
            .max(PAGE_SIZE_4K) as usize;
        b.soc
            .host_write(spa, false, &vec![0u8; zero_len])
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
        Ok(b)
    }

    /// A buffer holding `data`.
    pub(crate) fn with(psp: &PspDriver, data: &[u8]) -> KvmResult<KernelBuf> {
        let b = KernelBuf::new(psp, data.len())?;
        b.write(0, data)?;
        Ok(b)
    }

    /// Its physical address.
    pub(crate) fn spa(&self) -> Spa {
        self.spa
    }

    /// Copy `data` in at `off`.
    pub(crate) fn write(&self, off: usize, data: &[u8]) -> KvmResult {
        self.soc
            .host_write(Spa(self.spa.0 + off as u64), false, data)
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))
    }

    /// Copy `buf.len()` bytes out from `off`.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) -> KvmResult {
        self.soc
            .host_read(Spa(self.spa.0 + off as u64), false, buf)
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))
    }
}

impl Drop for KernelBuf {
    fn drop(&mut self) {
        if self.huge {
            self.alloc.free_2m(self.spa);
        } else {
            self.alloc.free_4k(self.spa);
        }
    }
}

/// Where a legacy command buffer names a memory buffer the firmware writes (Linux
/// `struct cmd_buf_desc`): the offsets of its address and length fields.
#[derive(Debug, Clone, Copy)]
struct BufDesc {
    /// Offset of the `u64` physical address.
    paddr: usize,
    /// Offset of the `u32` length, or the fixed length.
    len: DescLen,
    /// Guest memory: moved to the firmware state in place, not bounced.
    guest_owned: bool,
}

#[derive(Debug, Clone, Copy)]
enum DescLen {
    Field(usize),
    Fixed(u32),
}

macro_rules! desc {
    ($t:ty, $addr:ident, $len:ident, $owned:expr) => {
        BufDesc {
            paddr: std::mem::offset_of!($t, $addr),
            len: DescLen::Field(std::mem::offset_of!($t, $len)),
            guest_owned: $owned,
        }
    };
}

/// The buffers the firmware writes, per legacy command (`sev-dev.c:
/// snp_populate_cmd_buf_desc_list`; sev-legacy.md §1.1).
fn buf_descs(cmd: FwCmd) -> Vec<BufDesc> {
    use softsev_abi::sev_buf::*;
    match cmd {
        FwCmd::PDH_CERT_EXPORT => vec![
            desc!(SevPdhCertExport, pdh_cert_address, pdh_cert_len, false),
            desc!(SevPdhCertExport, cert_chain_address, cert_chain_len, false),
        ],
        FwCmd::GET_ID => vec![desc!(SevGetId, address, len, false)],
        FwCmd::PEK_CSR => vec![desc!(SevPekCsr, address, len, false)],
        FwCmd::LAUNCH_UPDATE_DATA => vec![desc!(SevLaunchUpdateData, address, len, true)],
        FwCmd::LAUNCH_UPDATE_VMSA => vec![BufDesc {
            paddr: std::mem::offset_of!(SevLaunchUpdateVmsa, address),
            len: DescLen::Fixed(PAGE_SIZE_4K as u32),
            guest_owned: true,
        }],
        FwCmd::LAUNCH_MEASURE => vec![desc!(SevLaunchMeasure, address, len, false)],
        FwCmd::LAUNCH_UPDATE_SECRET => {
            vec![desc!(SevLaunchSecret, guest_address, guest_len, true)]
        }
        FwCmd::DBG_DECRYPT => vec![desc!(SevDbgDecrypt, dst_addr, len, true)],
        FwCmd::DBG_ENCRYPT => vec![desc!(SevDbgEncrypt, dst_addr, len, true)],
        FwCmd::ATTESTATION => vec![desc!(SevAttestation, address, len, false)],
        FwCmd::SEND_START => vec![desc!(SevSendStart, session_address, session_len, false)],
        FwCmd::SEND_UPDATE_DATA => vec![
            desc!(SevSendUpdateData, hdr_address, hdr_len, false),
            desc!(SevSendUpdateData, trans_address, trans_len, false),
        ],
        FwCmd::SEND_UPDATE_VMSA => vec![
            desc!(SevSendUpdateVmsa, hdr_address, hdr_len, false),
            desc!(SevSendUpdateVmsa, trans_address, trans_len, false),
        ],
        FwCmd::RECEIVE_UPDATE_DATA => {
            vec![desc!(SevReceiveUpdateData, guest_address, guest_len, true)]
        }
        FwCmd::RECEIVE_UPDATE_VMSA => {
            vec![desc!(SevReceiveUpdateVmsa, guest_address, guest_len, true)]
        }
        _ => Vec::new(),
    }
}

/// Legacy commands whose command buffer the firmware writes (`sev_cmd_buf_writable`).
fn cmd_buf_writable(cmd: FwCmd) -> bool {
    matches!(
        cmd,
        FwCmd::PLATFORM_STATUS
            | FwCmd::GUEST_STATUS
            | FwCmd::LAUNCH_START
            | FwCmd::RECEIVE_START
            | FwCmd::LAUNCH_MEASURE
            | FwCmd::SEND_START
            | FwCmd::SEND_UPDATE_DATA
            | FwCmd::SEND_UPDATE_VMSA
            | FwCmd::PEK_CSR
            | FwCmd::PDH_CERT_EXPORT
            | FwCmd::GET_ID
            | FwCmd::ATTESTATION
    )
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

/// A buffer moved to the firmware state for one command.
#[derive(Debug)]
struct Mapped {
    desc: BufDesc,
    /// The address the caller gave.
    orig: u64,
    /// The bounce buffer (not guest-owned).
    bounce: Option<KernelBuf>,
    /// Its length.
    len: u32,
    /// Pages moved to the firmware state, from the first.
    first: u64,
    npages: u64,
}

/// What the ccp driver keeps for legacy SEV (`struct sev_device`): whether the
/// platform is initialised, the SEV-ES TMR, the INIT_EX non-volatile buffer.
#[derive(Debug, Default)]
pub(crate) struct CcpSev {
    initialised: bool,
    tmr: Option<(Spa, u64)>,
    nv: Option<Spa>,
}

impl PspDriver {
    /// Whether the SNP RMP is initialised (`sev->snp_initialized`).
    pub(crate) fn snp_initialised(&self) -> bool {
        self.fw.platform_state() != PlatformState::Uninit
    }

    /// Issue a legacy SEV command with `data` as its buffer (`__sev_do_cmd_locked`).
    /// When the SNP RMP is initialised, every buffer the firmware writes goes through
    /// a firmware-state page (`snp_prep_cmd_buf`): output blobs are bounced through
    /// fresh pages and copied back after the command, guest-owned pages move to the
    /// firmware state in place and back, and a command buffer the firmware writes is
    /// itself a firmware page for the call. A firmware failure is `-EIO` with the
    /// status; the buffer (and so any length written back) is copied back either way.
    pub(crate) fn legacy<T>(&self, data: &mut T) -> KvmResult
    where
        T: softsev_abi::fw_buf::FwCommand + IntoBytes + FromBytes + Immutable + KnownLayout,
    {
        let cmd = T::ID;
        if !self.snp_initialised() {
            return self
                .issue(cmd, data)
                .map_err(|s| KvmError::fw(s, format!("{cmd:?}")));
        }
        let mut mapped = Vec::new();
        let r = self.map_bufs(cmd, data.as_mut_bytes(), &mut mapped);
        let r = r.and_then(|()| {
            if cmd_buf_writable(cmd) {
                self.issue_in_firmware_page(cmd, data)
            } else {
                self.issue(cmd, data)
                    .map_err(|s| KvmError::fw(s, format!("{cmd:?}")))
            }
        });
        let unmapped = self.unmap_bufs(data.as_mut_bytes(), mapped);
        r.and(unmapped)
    }

    /// `snp_map_cmd_buf_desc` for each buffer of `cmd` in `bytes`.
    fn map_bufs(&self, cmd: FwCmd, bytes: &mut [u8], out: &mut Vec<Mapped>) -> KvmResult {
        for d in buf_descs(cmd) {
            let len = match d.len {
                DescLen::Field(o) => get_u32(bytes, o),
                DescLen::Fixed(n) => n,
            };
            if len == 0 {
                continue;
            }
            let orig = get_u64(bytes, d.paddr);
            let (bounce, at) = if d.guest_owned {
                (None, orig)
            } else {
                let b = KernelBuf::new(self, len as usize)?;
                let at = b.spa().0;
                bytes[d.paddr..d.paddr + 8].copy_from_slice(&at.to_le_bytes());
                (Some(b), at)
            };
            // PAGE_ALIGN(len) pages from the page of the address, as Linux counts.
            let first = at & !(PAGE_SIZE_4K - 1);
            let npages = u64::from(len).div_ceil(PAGE_SIZE_4K);
            let mut m = Mapped {
                desc: d,
                orig,
                bounce,
                len,
                first,
                npages: 0,
            };
            for i in 0..npages {
                if let Err(e) = self.make_firmware_page(Spa(first + i * PAGE_SIZE_4K)) {
                    out.push(m);
                    return Err(KvmError::new(Errno::EFAULT, e.reason));
                }
                m.npages = i + 1;
            }
            tracing::debug!(
                ?cmd,
                orig,
                len,
                guest_owned = d.guest_owned,
                "legacy buffer to firmware state"
            );
            out.push(m);
        }
        Ok(())
    }

    /// `snp_unmap_cmd_buf_desc`: back to the hypervisor state, bounce buffers copied
    /// to where the caller asked and the original addresses restored.
    fn unmap_bufs(&self, bytes: &mut [u8], mapped: Vec<Mapped>) -> KvmResult {
        let mut res = Ok(());
        for m in mapped {
            let mut reclaimed = true;
            for i in 0..m.npages {
                if let Err(e) = self.reclaim_page(Spa(m.first + i * PAGE_SIZE_4K), PageSize::Size4K)
                {
                    reclaimed = false;
                    if res.is_ok() {
                        res = Err(KvmError::new(Errno::EFAULT, e.reason));
                    }
                }
            }
            if let Some(b) = m.bounce {
                let mut v = vec![0u8; m.len as usize];
                let copied = b.read(0, &mut v).and_then(|()| {
                    self.soc
                        .host_write(Spa(m.orig), false, &v)
                        .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))
                });
                if let Err(e) = copied
                    && res.is_ok()
                {
                    res = Err(e);
                }
                bytes[m.desc.paddr..m.desc.paddr + 8].copy_from_slice(&m.orig.to_le_bytes());
                if !reclaimed {
                    // A page that could not be reclaimed stays the firmware's (leaked
                    // by `reclaim_page`): the buffer is not freed.
                    std::mem::forget(b);
                }
            }
        }
        res
    }

    /// A command whose buffer the firmware writes, with the buffer in a page moved to
    /// the firmware state for the call.
    fn issue_in_firmware_page<T>(&self, cmd: FwCmd, data: &mut T) -> KvmResult
    where
        T: IntoBytes + FromBytes + Immutable + KnownLayout,
    {
        let page = self
            .alloc
            .alloc_4k()
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "no command page"))?;
        self.soc
            .host_write(page, false, data.as_bytes())
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
        if let Err(e) = self.make_firmware_page(page) {
            self.alloc.free_4k(page);
            return Err(KvmError::new(Errno::EFAULT, e.reason));
        }
        let r = {
            let _serialise = self.cmd_page.lock();
            self.fw.command(cmd, page)
        };
        self.reclaim_page(page, PageSize::Size4K)
            .map_err(|e| KvmError::new(Errno::EFAULT, e.reason))?;
        let _ = self.soc.host_read(page, false, data.as_mut_bytes());
        self.alloc.free_4k(page);
        r.map_err(|s| KvmError::fw(s, format!("{cmd:?}")))
    }
}

impl PspDriver {
    /// `sev_platform_init` (`sev-dev.c:__sev_platform_init_locked`), done lazily by
    /// KVM's INIT / ES_INIT / INIT2: once per host, the SEV-ES TMR (1 MiB, or 2 MiB and
    /// 2 MiB-aligned with firmware-state pages when the SNP RMP is initialised), the
    /// INIT_EX non-volatile buffer if configured, INIT or INIT_EX (flag SEV-ES when a
    /// TMR exists; retried once on SECURE_DATA_INVALID), then WBINVD and DF_FLUSH as
    /// the first guest launch needs (sev-legacy.md §1.3–1.5). Errors carry the
    /// firmware status (KVM copies it to `kvm_sev_cmd.error`).
    pub(crate) fn sev_platform_init(&self) -> KvmResult {
        use softsev_abi::sev_buf::{
            SEV_INIT_EX_LEN, SEV_INIT_EX_NV_LEN, SEV_INIT_FLAGS_SEV_ES, SEV_TMR_LEN,
            SEV_TMR_LEN_SNP, SevInit, SevInitEx,
        };
        let mut st = self.sev.lock();
        if st.initialised {
            return Ok(());
        }
        let snp = self.snp_initialised();
        if st.tmr.is_none() {
            // `__sev_platform_init_handle_tmr`: `sev_fw_alloc` of the TMR; without it
            // SEV-ES is unavailable but SEV still initialises.
            let len = if snp { SEV_TMR_LEN_SNP } else { SEV_TMR_LEN } as u64;
            st.tmr = self.fw_alloc_2m().map(|spa| (spa, len));
        }
        if self.init_ex && st.nv.is_none() {
            // The INIT_EX buffer: the ccp file's contents (a missing file reads as
            // erased flash, 0xFF), in firmware-state pages when the RMP is on.
            let spa = self
                .alloc
                .alloc_2m()
                .ok_or_else(|| KvmError::new(Errno::ENOMEM, "INIT_EX buffer"))?;
            self.soc
                .host_write(spa, false, &vec![0xFF; SEV_INIT_EX_NV_LEN])
                .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            if snp {
                for i in 0..(SEV_INIT_EX_NV_LEN as u64 / PAGE_SIZE_4K) {
                    self.make_firmware_page(Spa(spa.0 + i * PAGE_SIZE_4K))?;
                }
            }
            st.nv = Some(spa);
        }
        let (flags, tmr_address, tmr_len) = match st.tmr {
            Some((spa, len)) => (SEV_INIT_FLAGS_SEV_ES, spa.0, len as u32),
            None => (0, 0, 0),
        };
        let init = || -> Result<(), FwStatus> {
            match st.nv {
                Some(nv) => {
                    let mut b = SevInitEx {
                        length: SEV_INIT_EX_LEN as u32,
                        flags,
                        tmr_address,
                        tmr_len,
                        nv_address: nv.0,
                        nv_len: SEV_INIT_EX_NV_LEN as u32,
                        ..Default::default()
                    };
                    self.issue(FwCmd::INIT_EX, &mut b)
                }
                None => {
                    let mut b = SevInit {
                        flags,
                        tmr_address,
                        tmr_len,
                        ..Default::default()
                    };
                    self.issue(FwCmd::INIT, &mut b)
                }
            }
        };
        let mut r = init();
        if r == Err(FwStatus::SECURE_DATA_INVALID) {
            tracing::warn!("SEV: retrying INIT after SECURE_DATA_INVALID");
            r = init();
        }
        r.map_err(|s| KvmError::fw(s, "SEV INIT"))?;
        st.initialised = true;
        self.soc.wbinvd();
        self.raw(FwCmd::DF_FLUSH)
            .map_err(|s| KvmError::fw(s, "DF_FLUSH"))?;
        tracing::info!(
            es = flags != 0,
            init_ex = st.nv.is_some(),
            "SEV firmware initialised"
        );
        Ok(())
    }

    /// `__sev_platform_shutdown_locked`: SHUTDOWN if the driver has initialised the
    /// legacy platform, then its flag back to UNINIT (the TMR and the INIT_EX buffer
    /// stay allocated for the next INIT, as in sev-dev.c). The error carries the
    /// firmware status.
    pub(crate) fn sev_platform_shutdown(&self) -> KvmResult {
        let mut st = self.sev.lock();
        if !st.initialised {
            return Ok(());
        }
        self.raw(FwCmd::SHUTDOWN)
            .map_err(|s| KvmError::fw(s, "SEV SHUTDOWN"))?;
        st.initialised = false;
        tracing::info!("SEV firmware shut down");
        Ok(())
    }

    /// Whether `sev_platform_init` has run (the ccp's own UNINIT/INIT flag).
    pub(crate) fn sev_initialised(&self) -> bool {
        self.sev.lock().initialised
    }

    /// The SEV-ES TMR the driver gave the firmware, if any.
    pub(crate) fn sev_tmr(&self) -> Option<(Spa, u64)> {
        self.sev.lock().tmr
    }

    /// `sev_fw_alloc` of 2 MiB (naturally aligned): firmware-state pages when the RMP
    /// is initialised; `None` if memory or the transition fails.
    fn fw_alloc_2m(&self) -> Option<Spa> {
        let spa = self.alloc.alloc_2m()?;
        if self.snp_initialised() {
            for i in 0..(PAGE_SIZE_2M / PAGE_SIZE_4K) {
                if self
                    .make_firmware_page(Spa(spa.0 + i * PAGE_SIZE_4K))
                    .is_err()
                {
                    self.alloc.leak(PAGE_SIZE_2M);
                    return None;
                }
            }
        }
        Some(spa)
    }
}
