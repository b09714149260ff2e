//! The `/dev/sev` identity ioctls QEMU issues for `query-sev-capabilities`
//! (`sev_get_capabilities`: `sev_get_pdh_info`, `sev_get_cpu0_id`), as Linux's
//! `drivers/crypto/ccp/sev-dev.c` implements them (sev-legacy.md §1.7–1.8):
//! SEV_PDH_CERT_EXPORT (`sev_ioctl_do_pdh_export`) and SEV_GET_ID2
//! (`sev_ioctl_do_get_id2`), each with its length query — a null address or a zero
//! length issues the command without buffers, the firmware answers INVALID_LENGTH
//! with the lengths it needs, and the driver copies them back (-EIO with that status).
//! Both initialise the legacy platform first if it is not (the ioctls need a writable
//! /dev/sev for that; the simulated caller is the VMM, which has it).

use crate::error::{Errno, KvmError, KvmResult};
use crate::platform::SoftHost;
use crate::psp::KernelBuf;
use softsev_abi::sev_buf::{SevGetId, SevPdhCertExport};

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

impl SoftHost {
    /// This platform as a migration target (simulator convenience over
    /// SEV_PDH_CERT_EXPORT): its PDH, PEK ‖ OCA ‖ CEK with the CEK as AMD's KDS serves
    /// it (signed by the ASK; PDH_CERT_EXPORT returns it unsigned, sev-legacy.md
    /// §0.2-9), and its product's ASK ‖ ARK — what a source's SEND_START needs
    /// (QEMU's `sev-pdh`, `sev-plat-cert`, `sev-amd-cert`).
    pub fn sev_target_certs(&self) -> KvmResult<crate::launch::SevTargetCerts> {
        use softsev_abi::sev_buf::{SEV_CERT_LEN, SEV_PDH_CHAIN_LEN};
        use zerocopy::{FromBytes, IntoBytes};
        let mut arg = SevUserPdhCertExport {
            pdh_cert: Some(vec![0; SEV_CERT_LEN]),
            pdh_cert_len: SEV_CERT_LEN as u32,
            cert_chain: Some(vec![0; SEV_PDH_CHAIN_LEN]),
            cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
        };
        self.sev_pdh_cert_export(&mut arg)?;
        let pdh_bytes = arg.pdh_cert.unwrap_or_default();
        let pdh = softsev_abi::sev_cert::SevCert::read_from_bytes(&pdh_bytes)
            .map_err(|_| KvmError::new(Errno::EIO, "PDH certificate size"))?;
        let mut plat = arg.cert_chain.unwrap_or_default();
        plat.truncate(2 * SEV_CERT_LEN);
        let fw = self.firmware();
        plat.extend_from_slice(fw.sev_kds_cek().as_bytes());
        let (ask, ark) = fw.sev_ca_certs();
        Ok(crate::launch::SevTargetCerts {
            pdh,
            plat_certs: plat,
            amd_certs: [ask, ark].concat(),
        })
    }
}
