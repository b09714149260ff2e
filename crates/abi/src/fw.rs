//! Secure-processor firmware command ids and status codes (SEV API / SNP ABI).
//!
//! Ids follow the firmware's `sev_mcmd.h` numbering (also Linux `psp-sev.h`; the legacy
//! ids as shared/spec/sev-legacy.md §0.2-13 and host-interfaces.md §4.1); status
//! codes are the values the firmware writes back (Linux `enum psp_ret_code`).

crate::open_enum! {
    /// Firmware command id (the value written to the command register / mailbox).
    pub struct FwCmd(u32) {
        /// Legacy SEV: INIT.
        INIT = 0x001,
        /// Legacy SEV: SHUTDOWN.
        SHUTDOWN = 0x002,
        /// Legacy SEV: PLATFORM_RESET.
        PLATFORM_RESET = 0x003,
        /// Legacy SEV: PLATFORM_STATUS.
        PLATFORM_STATUS = 0x004,
        /// Legacy SEV: PEK_GEN.
        PEK_GEN = 0x005,
        /// Legacy SEV: PEK_CSR.
        PEK_CSR = 0x006,
        /// Legacy SEV: PEK_CERT_IMPORT.
        PEK_CERT_IMPORT = 0x007,
        /// Legacy SEV: PDH_CERT_EXPORT.
        PDH_CERT_EXPORT = 0x008,
        /// Legacy SEV: PDH_GEN.
        PDH_GEN = 0x009,
        /// Legacy SEV: DF_FLUSH.
        DF_FLUSH = 0x00A,
        /// DOWNLOAD_FIRMWARE.
        DOWNLOAD_FIRMWARE = 0x00B,
        /// GET_ID.
        GET_ID = 0x00C,
        /// Legacy SEV: INIT_EX.
        INIT_EX = 0x00D,
        /// Legacy SEV: NOP (no buffer, any platform state; sev-legacy.md §1.3).
        NOP = 0x00E,
        /// RING_BUFFER (command ring-buffer mode).
        RING_BUFFER = 0x00F,
        /// Legacy SEV: DECOMMISSION.
        DECOMMISSION = 0x020,
        /// Legacy SEV: ACTIVATE.
        ACTIVATE = 0x021,
        /// Legacy SEV: DEACTIVATE.
        DEACTIVATE = 0x022,
        /// Legacy SEV: GUEST_STATUS.
        GUEST_STATUS = 0x023,
        /// Legacy SEV: COPY (move one guest's ciphertext between host pages, §1.9).
        COPY = 0x024,
        /// Legacy SEV: ACTIVATE_EX (ACTIVATE for the CCXs of listed APIC ids, §1.9).
        ACTIVATE_EX = 0x025,
        /// Legacy SEV: LAUNCH_START.
        LAUNCH_START = 0x030,
        /// Legacy SEV: LAUNCH_UPDATE_DATA.
        LAUNCH_UPDATE_DATA = 0x031,
        /// Legacy SEV: LAUNCH_UPDATE_VMSA.
        LAUNCH_UPDATE_VMSA = 0x032,
        /// Legacy SEV: LAUNCH_MEASURE.
        LAUNCH_MEASURE = 0x033,
        /// Legacy SEV: LAUNCH_UPDATE_SECRET.
        LAUNCH_UPDATE_SECRET = 0x034,
        /// Legacy SEV: LAUNCH_FINISH.
        LAUNCH_FINISH = 0x035,
        /// Legacy SEV: ATTESTATION.
        ATTESTATION = 0x036,
        /// Legacy SEV: SEND_START (migration source, sev-legacy.md §5.1).
        SEND_START = 0x040,
        /// Legacy SEV: SEND_UPDATE_DATA.
        SEND_UPDATE_DATA = 0x041,
        /// Legacy SEV: SEND_UPDATE_VMSA.
        SEND_UPDATE_VMSA = 0x042,
        /// Legacy SEV: SEND_FINISH.
        SEND_FINISH = 0x043,
        /// Legacy SEV: SEND_CANCEL.
        SEND_CANCEL = 0x044,
        /// Legacy SEV: RECEIVE_START (migration target, §5.5).
        RECEIVE_START = 0x050,
        /// Legacy SEV: RECEIVE_UPDATE_DATA.
        RECEIVE_UPDATE_DATA = 0x051,
        /// Legacy SEV: RECEIVE_UPDATE_VMSA.
        RECEIVE_UPDATE_VMSA = 0x052,
        /// Legacy SEV: RECEIVE_FINISH.
        RECEIVE_FINISH = 0x053,
        /// Legacy SEV: DBG_DECRYPT.
        DBG_DECRYPT = 0x060,
        /// Legacy SEV: DBG_ENCRYPT.
        DBG_ENCRYPT = 0x061,
        /// Legacy SEV: SWAP_OUT (page out with the guest's OEK, §5.6).
        SWAP_OUT = 0x070,
        /// Legacy SEV: SWAP_IN.
        SWAP_IN = 0x071,
        /// SNP_INIT.
        SNP_INIT = 0x081,
        /// SNP_SHUTDOWN.
        SNP_SHUTDOWN = 0x082,
        /// SNP_PLATFORM_STATUS.
        SNP_PLATFORM_STATUS = 0x083,
        /// SNP_DF_FLUSH.
        SNP_DF_FLUSH = 0x084,
        /// SNP_INIT_EX.
        SNP_INIT_EX = 0x085,
        /// SNP_SHUTDOWN_EX.
        SNP_SHUTDOWN_EX = 0x086,
        /// SNP_DECOMMISSION.
        SNP_DECOMMISSION = 0x090,
        /// SNP_ACTIVATE.
        SNP_ACTIVATE = 0x091,
        /// SNP_GUEST_STATUS.
        SNP_GUEST_STATUS = 0x092,
        /// SNP_GCTX_CREATE.
        SNP_GCTX_CREATE = 0x093,
        /// SNP_GUEST_REQUEST.
        SNP_GUEST_REQUEST = 0x094,
        /// SNP_ACTIVATE_EX.
        SNP_ACTIVATE_EX = 0x095,
        /// SNP_HV_REPORT_REQ (host-requested report, ABI 1.58).
        SNP_HV_REPORT_REQ = 0x096,
        /// SNP_LAUNCH_START.
        SNP_LAUNCH_START = 0x0A0,
        /// SNP_LAUNCH_UPDATE.
        SNP_LAUNCH_UPDATE = 0x0A1,
        /// SNP_LAUNCH_FINISH.
        SNP_LAUNCH_FINISH = 0x0A2,
        /// SNP_DBG_DECRYPT.
        SNP_DBG_DECRYPT = 0x0B0,
        /// SNP_DBG_ENCRYPT.
        SNP_DBG_ENCRYPT = 0x0B1,
        /// SNP_PAGE_SWAP_OUT.
        SNP_PAGE_SWAP_OUT = 0x0C0,
        /// SNP_PAGE_SWAP_IN.
        SNP_PAGE_SWAP_IN = 0x0C1,
        /// SNP_PAGE_MOVE.
        SNP_PAGE_MOVE = 0x0C2,
        /// SNP_PAGE_MD_INIT.
        SNP_PAGE_MD_INIT = 0x0C3,
        /// SNP_PAGE_SET_STATE.
        SNP_PAGE_SET_STATE = 0x0C6,
        /// SNP_PAGE_RECLAIM.
        SNP_PAGE_RECLAIM = 0x0C7,
        /// SNP_PAGE_UNSMASH.
        SNP_PAGE_UNSMASH = 0x0C8,
        /// SNP_CONFIG.
        SNP_CONFIG = 0x0C9,
        /// SNP_DOWNLOAD_FIRMWARE_EX.
        SNP_DOWNLOAD_FIRMWARE_EX = 0x0CA,
        /// SNP_COMMIT.
        SNP_COMMIT = 0x0CB,
        /// SNP_VLEK_LOAD.
        SNP_VLEK_LOAD = 0x0CD,
        /// SNP_FEATURE_INFO.
        SNP_FEATURE_INFO = 0x0CE,
    }
}

crate::open_enum! {
    /// Firmware status code (SEV API / SNP ABI "status" values).
    pub struct FwStatus(u32) {
        /// The command completed.
        SUCCESS = 0x00,
        /// The platform state does not allow this command.
        INVALID_PLATFORM_STATE = 0x01,
        /// The guest state does not allow this command.
        INVALID_GUEST_STATE = 0x02,
        /// The platform configuration is invalid.
        INVALID_CONFIG = 0x03,
        /// A buffer is too small.
        INVALID_LENGTH = 0x04,
        /// The platform is already owned.
        ALREADY_OWNED = 0x05,
        /// The certificate is invalid.
        INVALID_CERTIFICATE = 0x06,
        /// The request is not allowed by the guest policy.
        POLICY_FAILURE = 0x07,
        /// The guest is not active.
        INACTIVE = 0x08,
        /// An address is invalid.
        INVALID_ADDRESS = 0x09,
        /// A signature is bad.
        BAD_SIGNATURE = 0x0A,
        /// A measurement does not match.
        BAD_MEASUREMENT = 0x0B,
        /// The ASID is already owned.
        ASID_OWNED = 0x0C,
        /// The ASID is invalid.
        INVALID_ASID = 0x0D,
        /// WBINVD must run first.
        WBINVD_REQUIRED = 0x0E,
        /// DF_FLUSH must run first.
        DFFLUSH_REQUIRED = 0x0F,
        /// The guest handle is invalid.
        INVALID_GUEST = 0x10,
        /// The command is invalid.
        INVALID_COMMAND = 0x11,
        /// The guest is active.
        ACTIVE = 0x12,
        /// A hardware error occurred; the platform is safe.
        HWERROR_PLATFORM = 0x13,
        /// A hardware error occurred; the platform is unsafe.
        HWERROR_UNSAFE = 0x14,
        /// The feature is unsupported.
        UNSUPPORTED = 0x15,
        /// A parameter is invalid.
        INVALID_PARAM = 0x16,
        /// A resource limit was reached.
        RESOURCE_LIMIT = 0x17,
        /// Integrity checks of secure data failed.
        SECURE_DATA_INVALID = 0x18,
        /// The page size is invalid.
        INVALID_PAGE_SIZE = 0x19,
        /// The page state is invalid.
        INVALID_PAGE_STATE = 0x1A,
        /// The metadata entry is invalid.
        INVALID_MDATA_ENTRY = 0x1B,
        /// The page owner is invalid.
        INVALID_PAGE_OWNER = 0x1C,
        /// The AEAD message counter would overflow.
        AEAD_OFLOW = 0x1D,
        /// The RMP must be reinitialised (exited ring-buffer mode).
        RB_MODE_EXITED = 0x1F,
        /// The RMP must be initialised first.
        RMP_INIT_REQUIRED = 0x20,
        /// The SVN is bad.
        BAD_SVN = 0x21,
        /// The version is bad.
        BAD_VERSION = 0x22,
        /// SHUTDOWN must run first.
        SHUTDOWN_REQUIRED = 0x23,
        /// The update failed.
        UPDATE_FAILED = 0x24,
        /// A restore is required.
        RESTORE_REQUIRED = 0x25,
        /// RMP initialisation failed.
        RMP_INIT_FAILED = 0x26,
        /// The key is invalid.
        INVALID_KEY = 0x27,
    }
}

impl FwStatus {
    /// True for [`FwStatus::SUCCESS`].
    pub fn is_success(self) -> bool {
        self == FwStatus::SUCCESS
    }
}

impl std::error::Error for FwStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(FwStatus::INVALID_PAGE_STATE.0, 0x1A);
        assert_eq!(FwStatus::INVALID_KEY.0, 0x27);
        assert_eq!(format!("{}", FwStatus::AEAD_OFLOW), "AEAD_OFLOW (0x1d)");
        assert_eq!(format!("{:?}", FwStatus(0x1E)), "FwStatus(0x1e)");
        assert_eq!(FwCmd::SNP_LAUNCH_UPDATE.0, 0xA1);
        assert_eq!(FwCmd::SNP_GUEST_REQUEST.0, 0x94);
        assert_eq!(FwCmd::SNP_FEATURE_INFO.0, 0xCE);
        assert_eq!(FwCmd::NOP.0, 0x0E);
        assert_eq!(FwCmd::RECEIVE_UPDATE_VMSA.0, 0x52);
        assert_eq!(FwCmd::SWAP_IN.0, 0x71);
        // Every name is distinct and so is every value.
        let mut v: Vec<u32> = FwStatus::ALL.iter().map(|s| s.0).collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), FwStatus::ALL.len());
        let mut c: Vec<u32> = FwCmd::ALL.iter().map(|s| s.0).collect();
        c.sort_unstable();
        c.dedup();
        assert_eq!(c.len(), FwCmd::ALL.len());
    }
}
