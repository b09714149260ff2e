//! The `/dev/sev` identity ioctls QEMU issues for `query-sev-capabilities`
//! (`sev_get_capabilities`: `sev_get_pdh_info`, `sev_get_cpu0_id`), as Linux's
//! `drivers/crypto/ccp/sev-dev.c` implements them (sev-legacy.md §1.7–1.8):
//! SEV_PDH_CERT_EXPORT (`sev_ioctl_do_pdh_export`) and SEV_GET_ID2
//! (`sev_ioctl_do_get_id2`), each with its length query — a null address or a zero
//! length issues the command without buffers, the firmware answers INVALID_LENGTH
//! with the lengths it needs, and the driver copies them back (-EIO with that status).
//! Both initialise the legacy platform first if it is not (the ioctls need a writable
//! /dev/sev for that; the simulated caller is the VMM, which has it).
//!
//! The rest of `sev_ioctl`'s commands follow (frontends.md §5.3, sev-legacy.md §7.4),
//! each the firmware part of its `sev_ioctl_do_*` helper in the current
//! `drivers/crypto/ccp/sev-dev.c`: the platform initialisation the helper does first,
//! the kernel buffers and the firmware command. What the helper checks before (a
//! writable file, SNP initialised, the user structure's addresses and lengths) and
//! the copies from and to user memory belong to the `/dev/sev` model
//! (softsev-devices). A returned error carries the firmware status when a command
//! failed; that is what the driver stores in `sev_issue_cmd.error`.

use crate::error::{Errno, KvmError, KvmResult};
use crate::platform::SoftHost;
use crate::psp::KernelBuf;
use softsev_abi::fw_buf::{
    SnpCommit, SnpConfig, SnpPlatformStatus, SnpPlatformStatusCmd, SnpVlekLoad, VlekWrapped,
};
use softsev_abi::sev_buf::{
    SEV_GET_ID_LEN, SevGetId, SevPdhCertExport, SevPekCertImport, SevPekCsr, SevPlatformStateId,
    SevPlatformStatus,
};
use softsev_abi::{FwCmd, PAGE_SIZE_4K, PageSize};
use zerocopy::FromBytes;

/// `struct sev_user_data_pdh_cert_export` with the buffers: `None` is a null address.
/// The lengths are in/out (the firmware's lengths after a length query).
#[derive(Debug, Clone, Default)]
pub struct SevUserPdhCertExport {
    /// Buffer for the PDH certificate (0x824 bytes).
    pub pdh_cert: Option<Vec<u8>>,
    /// `pdh_cert_len`.
    pub pdh_cert_len: u32,
    /// Buffer for PEK ‖ OCA ‖ CEK (0x186C bytes).
    pub cert_chain: Option<Vec<u8>>,
    /// `cert_chain_len`.
    pub cert_chain_len: u32,
}

/// `struct sev_user_data_get_id2` with its buffer: `None` is a null address; `length`
/// is in/out.
#[derive(Debug, Clone, Default)]
pub struct SevUserGetId2 {
    /// Buffer for the ID (64 bytes).
    pub data: Option<Vec<u8>>,
    /// `length`.
    pub length: u32,
}

/// The largest blob the driver allocates for these ioctls (`SEV_FW_BLOB_MAX_SIZE`,
/// 16 KiB).
const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;

impl SoftHost {
    /// SEV_PDH_CERT_EXPORT (`sev_ioctl_do_pdh_export`): the platform's PDH and its
    /// PEK ‖ OCA ‖ CEK chain. Without both buffers (or with a zero length) it is the
    /// length query. A firmware failure is `-EIO` with the status; the lengths are
    /// written back either way.
    pub fn sev_pdh_cert_export(&self, arg: &mut SevUserPdhCertExport) -> KvmResult {
        if !self.psp.sev_initialised() {
            self.psp.sev_platform_init()?;
        }
        let mut d = SevPdhCertExport::default();
        let query = arg.pdh_cert.is_none()
            || arg.pdh_cert_len == 0
            || arg.cert_chain.is_none()
            || arg.cert_chain_len == 0;
        let mut bufs = None;
        if !query {
            if arg.pdh_cert_len > SEV_FW_BLOB_MAX_SIZE || arg.cert_chain_len > SEV_FW_BLOB_MAX_SIZE
            {
                return Err(KvmError::inval(
                    "PDH_CERT_EXPORT: buffer over SEV_FW_BLOB_MAX_SIZE",
                ));
            }
            let pdh = KernelBuf::new(&self.psp, arg.pdh_cert_len as usize)?;
            let chain = KernelBuf::new(&self.psp, arg.cert_chain_len as usize)?;
            d.pdh_cert_address = pdh.spa().0;
            d.pdh_cert_len = arg.pdh_cert_len;
            d.cert_chain_address = chain.spa().0;
            d.cert_chain_len = arg.cert_chain_len;
            bufs = Some((pdh, chain));
        }
        let r = self.psp.legacy(&mut d);
        if r.is_ok()
            && let Some((pdh, chain)) = &bufs
        {
            let mut p = vec![0u8; (d.pdh_cert_len as usize).min(arg.pdh_cert_len as usize)];
            pdh.read(0, &mut p)?;
            let mut c = vec![0u8; (d.cert_chain_len as usize).min(arg.cert_chain_len as usize)];
            chain.read(0, &mut c)?;
            arg.pdh_cert = Some(p);
            arg.cert_chain = Some(c);
        }
        arg.pdh_cert_len = d.pdh_cert_len;
        arg.cert_chain_len = d.cert_chain_len;
        r
    }

    /// SEV_GET_ID2 (`sev_ioctl_do_get_id2`): the 64-byte chip ID (firmware GET_ID).
    /// Without a buffer (or with length 0) it is the length query.
    pub fn sev_get_id2(&self, arg: &mut SevUserGetId2) -> KvmResult {
        if !self.psp.sev_initialised() {
            self.psp.sev_platform_init()?;
        }
        self.sev_get_id2_any_state(arg)
    }

    /// SEV_GET_ID2 as `/dev/sev` issues it: GET_ID is legal in every platform state,
    /// so the current driver does not initialise the platform first
    /// (`sev_ioctl_do_get_id2`); otherwise as [`SoftHost::sev_get_id2`].
    pub fn sev_get_id2_any_state(&self, arg: &mut SevUserGetId2) -> KvmResult {
        let mut d = SevGetId::default();
        let mut buf = None;
        if arg.data.is_some() && arg.length != 0 {
            if arg.length > SEV_FW_BLOB_MAX_SIZE {
                return Err(KvmError::new(
                    Errno::EFAULT,
                    "GET_ID2: length over SEV_FW_BLOB_MAX_SIZE",
                ));
            }
            let b = KernelBuf::new(&self.psp, arg.length as usize)?;
            d.address = b.spa().0;
            d.len = arg.length;
            buf = Some(b);
        }
        let r = self.psp.legacy(&mut d);
        if r.is_ok()
            && let Some(b) = &buf
        {
            let mut v = vec![0u8; (d.len as usize).min(arg.length as usize)];
            b.read(0, &mut v)?;
            arg.data = Some(v);
        }
        arg.length = d.len;
        r
    }
}

/// `struct sev_user_data_pek_csr` with its buffer: `None` is a null address; `length`
/// is in/out.
#[derive(Debug, Clone, Default)]
pub struct SevUserPekCsr {
    /// Buffer for the CSR (0x824 bytes).
    pub data: Option<Vec<u8>>,
    /// `length`.
    pub length: u32,
}

impl SoftHost {
    /// SEV_PLATFORM_STATUS (`sev_ioctl_do_platform_status`): the 12-byte status (the
    /// uAPI `sev_user_data_status` has the firmware's layout), in any state.
    pub fn sev_platform_status(&self) -> KvmResult<SevPlatformStatus> {
        let mut d = SevPlatformStatus::default();
        self.psp.legacy(&mut d)?;
        Ok(d)
    }

    /// SEV_FACTORY_RESET (`sev_ioctl_do_reset`): PLATFORM_STATUS; WORKING is
    /// `-EBUSY`; INIT is shut down first (the driver's own flag decides whether it
    /// issues SHUTDOWN); then PLATFORM_RESET.
    pub fn sev_factory_reset(&self) -> KvmResult {
        let st = self.sev_platform_status()?;
        if st.state_id() == SevPlatformStateId::WORKING {
            return Err(KvmError::new(
                Errno::EBUSY,
                "FACTORY_RESET: the platform has guests (WORKING)",
            ));
        }
        if st.state_id() == SevPlatformStateId::INIT {
            self.psp.sev_platform_shutdown()?;
        }
        self.psp
            .raw(FwCmd::PLATFORM_RESET)
            .map_err(|s| KvmError::fw(s, "PLATFORM_RESET"))
    }

    /// SEV_PEK_GEN (`sev_ioctl_do_pek_pdh_gen`): initialise the platform if the
    /// driver has not, then PEK_GEN.
    pub fn sev_pek_gen(&self) -> KvmResult {
        self.sev_gen(FwCmd::PEK_GEN)
    }

    /// SEV_PDH_GEN (`sev_ioctl_do_pek_pdh_gen`): initialise the platform if the
    /// driver has not, then PDH_GEN.
    pub fn sev_pdh_gen(&self) -> KvmResult {
        self.sev_gen(FwCmd::PDH_GEN)
    }

    fn sev_gen(&self, cmd: FwCmd) -> KvmResult {
        if !self.psp.sev_initialised() {
            self.psp.sev_platform_init()?;
        }
        self.psp
            .raw(cmd)
            .map_err(|s| KvmError::fw(s, format!("{cmd:?}")))
    }

    /// SEV_PEK_CSR (`sev_ioctl_do_pek_csr`): the PEK certificate signing request.
    /// Without a buffer (or with length 0) it is the length query; a buffer over
    /// `SEV_FW_BLOB_MAX_SIZE` is `-EFAULT` (checked before the platform is
    /// initialised); the length the firmware wrote is returned either way.
    pub fn sev_pek_csr(&self, arg: &mut SevUserPekCsr) -> KvmResult {
        let mut d = SevPekCsr::default();
        let mut buf = None;
        if arg.data.is_some() && arg.length != 0 {
            if arg.length > SEV_FW_BLOB_MAX_SIZE {
                return Err(KvmError::new(
                    Errno::EFAULT,
                    "PEK_CSR: length over SEV_FW_BLOB_MAX_SIZE",
                ));
            }
            let b = KernelBuf::new(&self.psp, arg.length as usize)?;
            d.address = b.spa().0;
            d.len = arg.length;
            buf = Some(b);
        }
        if !self.psp.sev_initialised() {
            self.psp.sev_platform_init()?;
        }
        let r = self.psp.legacy(&mut d);
        if r.is_ok()
            && let Some(b) = &buf
        {
            let mut v = vec![0u8; (d.len as usize).min(arg.length as usize)];
            b.read(0, &mut v)?;
            arg.data = Some(v);
        }
        arg.length = d.len;
        r
    }

    /// SEV_PEK_CERT_IMPORT (`sev_ioctl_do_pek_import`): import the owner-signed PEK
    /// and the OCA (the blobs as `psp_copy_user_blob` copied them), initialising the
    /// platform first if the driver has not.
    pub fn sev_pek_cert_import(&self, pek: &[u8], oca: &[u8]) -> KvmResult {
        for (what, b) in [("PEK", pek), ("OCA", oca)] {
            if b.is_empty() || b.len() > SEV_FW_BLOB_MAX_SIZE as usize {
                return Err(KvmError::inval(format!(
                    "PEK_CERT_IMPORT: {what} blob of {} bytes",
                    b.len()
                )));
            }
        }
        let pek_buf = KernelBuf::with(&self.psp, pek)?;
        let oca_buf = KernelBuf::with(&self.psp, oca)?;
        if !self.psp.sev_initialised() {
            self.psp.sev_platform_init()?;
        }
        let mut d = SevPekCertImport {
            pek_cert_address: pek_buf.spa().0,
            pek_cert_len: pek.len() as u32,
            oca_cert_address: oca_buf.spa().0,
            oca_cert_len: oca.len() as u32,
            ..Default::default()
        };
        self.psp.legacy(&mut d)
    }

    /// SEV_GET_ID (`sev_ioctl_do_get_id`, deprecated): GET_ID into a fixed buffer of
    /// `sizeof(struct sev_user_data_get_id)` = 128 bytes; the bytes the firmware
    /// wrote (64 on a one-socket system).
    pub fn sev_get_id(&self) -> KvmResult<Vec<u8>> {
        const USER_SIZE: usize = 2 * SEV_GET_ID_LEN;
        let b = KernelBuf::new(&self.psp, USER_SIZE)?;
        let mut d = SevGetId {
            address: b.spa().0,
            len: USER_SIZE as u32,
        };
        self.psp.legacy(&mut d)?;
        let mut v = vec![0u8; (d.len as usize).min(USER_SIZE)];
        b.read(0, &mut v)?;
        Ok(v)
    }

    /// Whether the driver has initialised SNP (`sev->snp_initialized`): the SNP
    /// `/dev/sev` commands need it.
    pub fn snp_platform_initialised(&self) -> bool {
        self.psp.snp_initialised()
    }

    /// SNP_PLATFORM_STATUS (`sev_ioctl_do_snp_platform_status`): the 32-byte status,
    /// written by the firmware into a page the driver moved to the firmware state and
    /// reclaims afterwards (a page that cannot be reclaimed is leaked and the call is
    /// `-EFAULT`, as `snp_reclaim_pages`).
    pub fn snp_platform_status(&self) -> KvmResult<SnpPlatformStatus> {
        if !self.psp.snp_initialised() {
            return Err(KvmError::inval(
                "SNP_PLATFORM_STATUS: SNP is not initialised",
            ));
        }
        let page = KernelBuf::new(&self.psp, PAGE_SIZE_4K as usize)?;
        self.psp
            .make_firmware_page(page.spa())
            .map_err(|e| KvmError::new(Errno::EFAULT, e.reason))?;
        let mut cmd = SnpPlatformStatusCmd {
            status_paddr: page.spa().0,
        };
        let r = self
            .psp
            .issue(FwCmd::SNP_PLATFORM_STATUS, &mut cmd)
            .map_err(|s| KvmError::fw(s, "SNP_PLATFORM_STATUS"));
        if let Err(e) = self.psp.reclaim_page(page.spa(), PageSize::Size4K) {
            // Leaked with the page (`reclaim_page` accounted for it).
            std::mem::forget(page);
            return Err(KvmError::new(Errno::EFAULT, e.reason));
        }
        r?;
        let mut raw = [0u8; SnpPlatformStatus::LEN];
        page.read(0, &mut raw)?;
        SnpPlatformStatus::read_from_bytes(&raw)
            .map_err(|_| KvmError::new(Errno::EFAULT, "SNP_PLATFORM_STATUS: short status"))
    }

    /// SNP_COMMIT (`sev_ioctl_do_snp_commit`): commit the current TCB
    /// (`len = sizeof(struct sev_data_snp_commit)`).
    pub fn snp_commit(&self) -> KvmResult {
        let mut d = SnpCommit {
            length: SnpCommit::LEN as u32,
        };
        self.psp
            .issue(FwCmd::SNP_COMMIT, &mut d)
            .map_err(|s| KvmError::fw(s, "SNP_COMMIT"))
    }

    /// SNP_SET_CONFIG (`sev_ioctl_do_snp_set_config`): the user's
    /// `sev_user_data_snp_config` (64 bytes, the firmware's SNP_CONFIG buffer) as
    /// given.
    pub fn snp_set_config(&self, config: &SnpConfig) -> KvmResult {
        let mut d = *config;
        self.psp
            .issue(FwCmd::SNP_CONFIG, &mut d)
            .map_err(|s| KvmError::fw(s, "SNP_CONFIG"))
    }

    /// SNP_VLEK_LOAD (`sev_ioctl_do_snp_vlek_load`): the user's command buffer
    /// (already checked: `len` is 16, version 0) with its address replaced by a
    /// kernel copy of the 432-byte wrapped VLEK hashstick.
    pub fn snp_vlek_load(&self, cmd: &SnpVlekLoad, blob: &[u8; VlekWrapped::LEN]) -> KvmResult {
        let b = KernelBuf::with(&self.psp, blob)?;
        let mut d = *cmd;
        d.vlek_wrapped_paddr = b.spa().0;
        self.psp
            .issue(FwCmd::SNP_VLEK_LOAD, &mut d)
            .map_err(|s| KvmError::fw(s, "SNP_VLEK_LOAD"))
    }
}
