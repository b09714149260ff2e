//! SNP firmware command buffers and the output structures the firmware writes, as the
//! host passes them in memory (AMD SEV firmware `sev_mcmd.h`, SNP ABI; the same layouts
//! as Linux `include/linux/psp-sev.h`). Bit fields are plain integers with accessor
//! constants. Notes: shared/spec/snp-launch.md §1.2, shared/spec/host-interfaces.md §1.5.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bits 11:0 of every page address operand must be zero (`SNP_ADDR_RESERVED_MASK`).
pub const ADDR_RESERVED_MASK: u64 = 0xFFF;
/// Reserved bits of the PAGE_RECLAIM / PAGE_UNSMASH operand (bit 0 is the page size).
pub const RECLAIM_RESERVED_MASK: u64 = 0xFFE;

use crate::FwCmd;

/// A firmware command buffer tied to its command id: the one place that says which
/// layout goes with which command (virtee/sev `impl_const_id!`). Every SNP command
/// with a buffer has its own type, so a buffer cannot be issued as another command;
/// SNP_INIT, SNP_SHUTDOWN and SNP_DF_FLUSH take none.
pub trait FwCommand: FromBytes + IntoBytes + Immutable + KnownLayout {
    /// The command this buffer belongs to.
    const ID: FwCmd;
}

/// Implement [`FwCommand`] for each `buffer => command id` pair.
macro_rules! fw_command {
    ($($t:ty => $id:ident),* $(,)?) => {
        $( impl FwCommand for $t { const ID: FwCmd = FwCmd::$id; } )*
    };
}

fw_command! {
    SnpInitEx => SNP_INIT_EX,
    SnpShutdownEx => SNP_SHUTDOWN_EX,
    SnpPlatformStatusCmd => SNP_PLATFORM_STATUS,
    SnpConfig => SNP_CONFIG,
    SnpCommit => SNP_COMMIT,
    SnpVlekLoad => SNP_VLEK_LOAD,
    SnpFeatureInfoCmd => SNP_FEATURE_INFO,
    SnpGctxCreate => SNP_GCTX_CREATE,
    SnpDecommission => SNP_DECOMMISSION,
    SnpActivate => SNP_ACTIVATE,
    SnpActivateEx => SNP_ACTIVATE_EX,
    SnpGuestStatusCmd => SNP_GUEST_STATUS,
    SnpGuestRequest => SNP_GUEST_REQUEST,
    SnpLaunchStart => SNP_LAUNCH_START,
    SnpLaunchUpdate => SNP_LAUNCH_UPDATE,
    SnpLaunchFinish => SNP_LAUNCH_FINISH,
    SnpDbgDecrypt => SNP_DBG_DECRYPT,
    SnpDbgEncrypt => SNP_DBG_ENCRYPT,
    SnpPageReclaim => SNP_PAGE_RECLAIM,
    SnpPageUnsmash => SNP_PAGE_UNSMASH,
}

wire!(
    /// SNP_INIT_EX command buffer (0x40 bytes).
    SnpInitEx, size = 0x40, {
        /// Bit 0 INIT_RMP, bit 1 LIST_PADDR_EN, bits 31:2 reserved.
        flags: u32 = 0x00,
        /// Reserved, MBZ.
        reserved: u32 = 0x04,
        /// sPA of the list of ranges to initialise (LIST_PADDR_EN).
        list_paddr: u64 = 0x08,
        /// Reserved, MBZ.
        reserved2: [u8; 0x30] = 0x10,
    }
);

impl SnpInitEx {
    /// INIT_RMP: initialise the RMP even if it is already initialised.
    pub const INIT_RMP: u32 = 1 << 0;
    /// LIST_PADDR_EN: initialise only the listed ranges.
    pub const LIST_PADDR_EN: u32 = 1 << 1;
}

wire!(
    /// SNP_SHUTDOWN_EX command buffer.
    SnpShutdownEx, size = 0x08, {
        /// Length of this buffer (8).
        length: u32 = 0x00,
        /// Bit 0 IOMMU_SNP_SHUTDOWN, bit 1 X86_SNP_SHUTDOWN.
        flags: u32 = 0x04,
    }
);

impl SnpShutdownEx {
    /// IOMMU_SNP_SHUTDOWN: also tear down the RMP (next SNP_INIT must initialise it).
    pub const IOMMU_SNP_SHUTDOWN: u32 = 1 << 0;
    /// X86_SNP_SHUTDOWN: also clear SYSCFG.SNPEn (needs IOMMU_SNP_SHUTDOWN).
    pub const X86_SNP_SHUTDOWN: u32 = 1 << 1;
}

wire!(
    /// The raw form of a command whose only operand is one physical address
    /// (SNP_PLATFORM_STATUS, SNP_GCTX_CREATE, SNP_DECOMMISSION, SNP_PAGE_RECLAIM,
    /// SNP_PAGE_UNSMASH), for callers that pair it with the command id themselves.
    /// Same bytes as the typed buffers ([`SnpGctxCreate`], ...), which are
    /// [`FwCommand`]s.
    SnpPaddr, size = 0x08, {
        /// The operand.
        paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_PLATFORM_STATUS command buffer (Linux `sev_data_snp_addr`).
    SnpPlatformStatusCmd, size = 0x08, {
        /// Where the firmware writes [`SnpPlatformStatus`].
        status_paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_GCTX_CREATE command buffer (Linux `sev_data_snp_addr`).
    SnpGctxCreate, size = 0x08, {
        /// The page that becomes the guest context (FIRMWARE state, 4 KiB).
        gctx_paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_DECOMMISSION command buffer (Linux `sev_data_snp_addr`).
    SnpDecommission, size = 0x08, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_PAGE_RECLAIM command buffer (Linux `sev_data_snp_page_reclaim`).
    SnpPageReclaim, size = 0x08, {
        /// The page; bit 0 = 2 MiB page, bits 11:1 reserved
        /// ([`RECLAIM_RESERVED_MASK`]).
        paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_PAGE_UNSMASH command buffer (Linux `sev_data_snp_page_unsmash`).
    SnpPageUnsmash, size = 0x08, {
        /// The 2 MiB-aligned head of the 512 pages to merge; bits 11:0 reserved.
        paddr: u64 = 0x00,
    }
);

wire!(
    /// SNP_PLATFORM_STATUS output (0x20 bytes; Linux `sev_user_data_snp_status`).
    SnpPlatformStatus, size = 0x20, {
        /// API major version.
        api_major: u8 = 0x00,
        /// API minor version.
        api_minor: u8 = 0x01,
        /// Platform state (0 UNINIT, 1 INIT).
        state: u8 = 0x02,
        /// Bit 0: the RMP is initialised; bit 1: ALIAS_CHECK_COMPLETE.
        is_rmp_init: u8 = 0x03,
        /// Firmware build id.
        build_id: u32 = 0x04,
        /// Bit 0 MASK_CHIP_ID, 1 MASK_CHIP_KEY, 2 VLEK_EN, 3 FEATURE_INFO, 4 RAPL_DIS,
        /// 5 CIPHERTEXT_HIDING_CAP, 6 CIPHERTEXT_HIDING_EN.
        flags: u32 = 0x08,
        /// Number of SNP guests (launched, not decommissioned).
        guest_count: u32 = 0x0C,
        /// Installed (current) TCB.
        current_tcb: u64 = 0x10,
        /// Reported TCB (SNP_CONFIG).
        reported_tcb: u64 = 0x18,
    }
);

impl SnpPlatformStatus {
    /// Bit of `is_rmp_init` (byte 3) set when the firmware's memory alias check
    /// completed since the last reset with no aliasing addresses (CVE-2024-21944).
    pub const ALIAS_CHECK_COMPLETE_BIT: u8 = 1;
    /// MASK_CHIP_ID flag.
    pub const MASK_CHIP_ID: u32 = 1 << 0;
    /// MASK_CHIP_KEY flag.
    pub const MASK_CHIP_KEY: u32 = 1 << 1;
    /// VLEK_EN: a VLEK is loaded.
    pub const VLEK_EN: u32 = 1 << 2;
    /// FEATURE_INFO: the SNP_FEATURE_INFO command exists.
    pub const FEATURE_INFO: u32 = 1 << 3;
}

wire!(
    /// SNP_ACTIVATE command buffer.
    SnpActivate, size = 0x10, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// ASID to bind.
        asid: u32 = 0x08,
        /// Padding to the natural size.
        pad: u32 = 0x0C,
    }
);

wire!(
    /// SNP_ACTIVATE_EX command buffer.
    SnpActivateEx, size = 0x20, {
        /// Length of this buffer (0x20).
        ex_len: u32 = 0x00,
        /// Reserved, MBZ.
        reserved: u32 = 0x04,
        /// Guest context page.
        gctx_paddr: u64 = 0x08,
        /// ASID to bind.
        asid: u32 = 0x10,
        /// Number of APIC ids at `ids_paddr`.
        numids: u32 = 0x14,
        /// sPA of the APIC id list (u32 each).
        ids_paddr: u64 = 0x18,
    }
);

wire!(
    /// SNP_GUEST_STATUS command buffer.
    SnpGuestStatusCmd, size = 0x10, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Where the firmware writes [`SnpGuestStatus`].
        status_paddr: u64 = 0x08,
    }
);

wire!(
    /// SNP_GUEST_STATUS output.
    SnpGuestStatus, size = 0x20, {
        /// Guest policy.
        policy: u64 = 0x00,
        /// Bound ASID (0 if none).
        asid: u32 = 0x08,
        /// Guest state (0 INIT, 1 LAUNCH, 2 RUNNING).
        state: u8 = 0x0C,
        /// Reserved.
        reserved: [u8; 3] = 0x0D,
        /// Bit 0: VCEK_DIS of this guest.
        flags: u32 = 0x10,
        /// Reserved.
        reserved2: [u8; 12] = 0x14,
    }
);

wire!(
    /// SNP_GUEST_REQUEST command buffer.
    SnpGuestRequest, size = 0x18, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Request message (header + encrypted payload).
        request_paddr: u64 = 0x08,
        /// Response message page (firmware state).
        response_paddr: u64 = 0x10,
    }
);

wire!(
    /// SNP_LAUNCH_START command buffer.
    SnpLaunchStart, size = 0x30, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Guest policy.
        policy: u64 = 0x08,
        /// Migration agent's context page (MA_EN).
        ma_gctx_paddr: u64 = 0x10,
        /// Bit 0 MA_EN, bit 1 IMI_EN, bits 31:2 reserved.
        flags: u32 = 0x18,
        /// Desired TSC frequency (Secure TSC), MHz.
        desired_tsc_freq: u32 = 0x1C,
        /// Guest-OS-visible workarounds, copied into the secrets page.
        gosvw: [u8; 16] = 0x20,
    }
);

impl SnpLaunchStart {
    /// MA_EN flag.
    pub const MA_EN: u32 = 1 << 0;
    /// IMI_EN flag.
    pub const IMI_EN: u32 = 1 << 1;
}

wire!(
    /// SNP_LAUNCH_UPDATE command buffer.
    SnpLaunchUpdate, size = 0x20, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Bit 0 PAGE_SIZE (1 = 2 MiB), bits 3:1 PAGE_TYPE, bit 4 IMI_PAGE, rest reserved.
        page_flags: u32 = 0x08,
        /// Reserved, MBZ.
        reserved: u32 = 0x0C,
        /// The page (sPA); its GPA comes from its RMP entry.
        page_paddr: u64 = 0x10,
        /// Bits 7:0 reserved, 15:8 VMPL1, 23:16 VMPL2, 31:24 VMPL3 permissions.
        vmpl_perms: u32 = 0x18,
        /// Reserved, MBZ.
        reserved2: u32 = 0x1C,
    }
);

impl SnpLaunchUpdate {
    /// Build the flag word.
    pub const fn flags(page_2m: bool, page_type: u8, imi: bool) -> u32 {
        (page_2m as u32) | ((page_type as u32 & 7) << 1) | ((imi as u32) << 4)
    }
    /// Build the permission word.
    pub const fn perms(vmpl1: u8, vmpl2: u8, vmpl3: u8) -> u32 {
        ((vmpl1 as u32) << 8) | ((vmpl2 as u32) << 16) | ((vmpl3 as u32) << 24)
    }
    /// PAGE_SIZE bit.
    pub const fn page_2m(&self) -> bool {
        self.page_flags & 1 != 0
    }
    /// PAGE_TYPE field.
    pub const fn page_type(&self) -> u8 {
        ((self.page_flags >> 1) & 7) as u8
    }
    /// IMI_PAGE bit.
    pub const fn imi_page(&self) -> bool {
        self.page_flags & (1 << 4) != 0
    }
    /// Reserved bits of the flag word (31:5).
    pub const fn flags_reserved(&self) -> u32 {
        self.page_flags & !0x1F
    }
    /// VMPL1..3 permission bytes.
    pub const fn vmpl_perm_bytes(&self) -> [u8; 3] {
        [
            (self.vmpl_perms >> 8) as u8,
            (self.vmpl_perms >> 16) as u8,
            (self.vmpl_perms >> 24) as u8,
        ]
    }
}

wire!(
    /// SNP_LAUNCH_FINISH command buffer.
    SnpLaunchFinish, size = 0x40, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// ID block (96 bytes).
        id_block_paddr: u64 = 0x08,
        /// ID authentication page (4096 bytes).
        id_auth_paddr: u64 = 0x10,
        /// Bit 0 ID_BLOCK_EN, bit 1 AUTH_KEY_EN, bit 2 VCEK_DIS, bits 63:3 reserved.
        flags: u64 = 0x18,
        /// Host data, copied into reports.
        host_data: [u8; 32] = 0x20,
    }
);

impl SnpLaunchFinish {
    /// ID_BLOCK_EN flag.
    pub const ID_BLOCK_EN: u64 = 1 << 0;
    /// AUTH_KEY_EN flag.
    pub const AUTH_KEY_EN: u64 = 1 << 1;
    /// VCEK_DIS flag.
    pub const VCEK_DIS: u64 = 1 << 2;
}

wire!(
    /// The raw form of the SNP_DBG_DECRYPT / SNP_DBG_ENCRYPT buffer (one 4 KiB page),
    /// for callers that pair it with the command id themselves; the typed buffers are
    /// [`SnpDbgDecrypt`] and [`SnpDbgEncrypt`].
    SnpDbg, size = 0x18, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Source page.
        src_paddr: u64 = 0x08,
        /// Destination page.
        dst_paddr: u64 = 0x10,
    }
);

wire!(
    /// SNP_DBG_DECRYPT command buffer: decrypt one guest page into a firmware page.
    SnpDbgDecrypt, size = 0x18, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Guest page (read with the guest's key).
        src_paddr: u64 = 0x08,
        /// Destination page (FIRMWARE state, written in plaintext).
        dst_paddr: u64 = 0x10,
    }
);

wire!(
    /// SNP_DBG_ENCRYPT command buffer: encrypt one page into a guest page.
    SnpDbgEncrypt, size = 0x18, {
        /// Guest context page.
        gctx_paddr: u64 = 0x00,
        /// Source page (read in plaintext).
        src_paddr: u64 = 0x08,
        /// Guest page (PRE_GUEST or PRE_SWAP, written with the guest's key).
        dst_paddr: u64 = 0x10,
    }
);

wire!(
    /// SNP_CONFIG command buffer.
    SnpConfig, size = 0x40, {
        /// REPORTED_TCB (0 = the committed TCB).
        reported_tcb: u64 = 0x00,
        /// Bit 0 MASK_CHIP_ID, bit 1 MASK_CHIP_KEY, bits 31:2 reserved.
        flags: u32 = 0x08,
        /// Reserved, MBZ.
        reserved: [u8; 0x34] = 0x0C,
    }
);

impl SnpConfig {
    /// MASK_CHIP_ID flag.
    pub const MASK_CHIP_ID: u32 = 1 << 0;
    /// MASK_CHIP_KEY flag.
    pub const MASK_CHIP_KEY: u32 = 1 << 1;
}

wire!(
    /// SNP_COMMIT command buffer.
    SnpCommit, size = 0x04, {
        /// Length of this buffer (4).
        length: u32 = 0x00,
    }
);

wire!(
    /// SNP_VLEK_LOAD command buffer.
    SnpVlekLoad, size = 0x10, {
        /// Length of this buffer (0x10).
        length: u32 = 0x00,
        /// Wrapped-VLEK format version (0).
        vlek_wrapped_version: u8 = 0x04,
        /// Reserved, MBZ.
        reserved: [u8; 3] = 0x05,
        /// sPA of the [`VlekWrapped`] blob.
        vlek_wrapped_paddr: u64 = 0x08,
    }
);

wire!(
    /// A wrapped VLEK as AMD's KDS delivers it (`vlek_wrapped_t`, 0x1B0 bytes).
    VlekWrapped, size = 0x1B0, {
        /// AES-256-GCM IV.
        iv: [u8; 12] = 0x000,
        /// Reserved.
        reserved: [u8; 4] = 0x00C,
        /// The wrapped VLEK seed material.
        vlek_wrapped: [u8; 0x180] = 0x010,
        /// TCB the VLEK belongs to (must equal the REPORTED_TCB).
        tcb_version: u64 = 0x190,
        /// Reserved, MBZ (authenticated with the TCB).
        reserved2: [u8; 8] = 0x198,
        /// AES-256-GCM tag.
        auth_tag: [u8; 16] = 0x1A0,
    }
);

wire!(
    /// SNP_FEATURE_INFO command buffer.
    SnpFeatureInfoCmd, size = 0x10, {
        /// Length of this buffer (0x10).
        length: u32 = 0x00,
        /// Sub-function (ECX input).
        ecx_in: u32 = 0x04,
        /// Where the firmware writes [`SnpFeatureInfo`].
        feature_info_paddr: u64 = 0x08,
    }
);

wire!(
    /// SNP_FEATURE_INFO output (CPUID-style registers).
    SnpFeatureInfo, size = 0x10, {
        /// EAX.
        eax: u32 = 0x00,
        /// EBX.
        ebx: u32 = 0x04,
        /// ECX.
        ecx: u32 = 0x08,
        /// EDX.
        edx: u32 = 0x0C,
    }
);

wire!(
    /// One CPUID function in the SNP CPUID page (0x30 bytes).
    SnpCpuidFunction, size = 0x30, {
        /// EAX input (leaf).
        eax_in: u32 = 0x00,
        /// ECX input (sub-leaf).
        ecx_in: u32 = 0x04,
        /// XCR0 input (leaf 0xD).
        xcr0_in: u64 = 0x08,
        /// XSS input (leaf 0xD).
        xss_in: u64 = 0x10,
        /// EAX output.
        eax: u32 = 0x18,
        /// EBX output.
        ebx: u32 = 0x1C,
        /// ECX output.
        ecx: u32 = 0x20,
        /// EDX output.
        edx: u32 = 0x24,
        /// Reserved, MBZ.
        reserved: u64 = 0x28,
    }
);

/// Maximum number of functions in the CPUID page.
pub const SNP_CPUID_COUNT_MAX: usize = 64;

wire!(
    /// The SNP CPUID page (4 KiB): count, reserved, then up to 64 functions.
    SnpCpuidPage, size = 0x1000, {
        /// Number of valid functions.
        count: u32 = 0x000,
        /// Reserved, MBZ.
        reserved: u32 = 0x004,
        /// Reserved, MBZ.
        reserved2: u64 = 0x008,
        /// The functions.
        functions: [SnpCpuidFunction; SNP_CPUID_COUNT_MAX] = 0x010,
        /// Padding to 4 KiB.
        tail: [u8; 0x1000 - 0x10 - 0x30 * SNP_CPUID_COUNT_MAX] = 0x010 + 0x30 * SNP_CPUID_COUNT_MAX,
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn launch_update_fields_round_trip() {
        let lu = SnpLaunchUpdate {
            gctx_paddr: 0x1000,
            page_flags: SnpLaunchUpdate::flags(true, 6, true),
            page_paddr: 0x20_0000,
            vmpl_perms: SnpLaunchUpdate::perms(1, 2, 3),
            reserved: 0,
            reserved2: 0,
        };
        assert!(lu.page_2m());
        assert_eq!(lu.page_type(), 6);
        assert!(lu.imi_page());
        assert_eq!(lu.flags_reserved(), 0);
        assert_eq!(lu.vmpl_perm_bytes(), [1, 2, 3]);
        let bytes = lu.as_bytes();
        assert_eq!(bytes[8], 0b1_1101);
        assert_eq!(&bytes[0x18..0x1C], &[0, 1, 2, 3]);
        assert_eq!(SnpLaunchUpdate::read_from_bytes(bytes).unwrap(), lu);
    }

    /// Each command id has at most one buffer type.
    #[test]
    fn command_ids_are_distinct() {
        let mut ids = vec![
            SnpInitEx::ID,
            SnpShutdownEx::ID,
            SnpPlatformStatusCmd::ID,
            SnpConfig::ID,
            SnpCommit::ID,
            SnpVlekLoad::ID,
            SnpFeatureInfoCmd::ID,
            SnpGctxCreate::ID,
            SnpDecommission::ID,
            SnpActivate::ID,
            SnpActivateEx::ID,
            SnpGuestStatusCmd::ID,
            SnpGuestRequest::ID,
            SnpLaunchStart::ID,
            SnpLaunchUpdate::ID,
            SnpLaunchFinish::ID,
            SnpDbgDecrypt::ID,
            SnpDbgEncrypt::ID,
            SnpPageReclaim::ID,
            SnpPageUnsmash::ID,
        ];
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn cpuid_page_is_a_page() {
        let p = SnpCpuidPage::new_zeroed();
        assert_eq!(p.as_bytes().len(), 4096);
    }
}
