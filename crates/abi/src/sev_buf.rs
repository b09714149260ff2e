//! Legacy SEV / SEV-ES firmware command buffers, the blobs they point at (session,
//! packet header, LAUNCH_MEASURE output, attestation report), the legacy platform and
//! guest state values and the API's fixed lengths. Spec: shared/spec/sev-legacy.md
//! §1 (platform), §3 (launch), §4 (ATTESTATION), §5 (migration, swap), §6 (debug) and
//! §10 (sizes); host-interfaces.md §4.3–§4.10.
//!
//! Every command buffer is little-endian and packed exactly as Linux declares it in
//! `include/linux/psp-sev.h` (`struct sev_data_*`, all `__packed`), with Linux's field
//! names; ASPFW's unpacked C structs read a few padding bytes more (INIT 24, GUEST_STATUS
//! 16), which carry nothing (§10). The layouts use [`wire_packed!`](crate) (alignment 1,
//! compile-time offsets) throughout, so a `u64` at a 4-aligned offset and odd sizes
//! such as [`SevGuestStatus`] (0x0D) are exact. Each command's buffer is its own type
//! implementing [`FwCommand`]; SHUTDOWN, PLATFORM_RESET, PEK_GEN, PDH_GEN, DF_FLUSH and
//! NOP take no buffer (§1.1) and have none.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::FwCmd;
use crate::fw_buf::FwCommand;

// ---------------------------------------------------------------------------------
// Fixed lengths and flag values.
// ---------------------------------------------------------------------------------

/// One SEV certificate (`sev_cert_t`, §2.1): 0x824 = 2084 bytes.
pub const SEV_CERT_LEN: usize = 0x824;
/// PDH_CERT_EXPORT chain / SEND_START platform certs: PEK ‖ OCA ‖ CEK, 3 × 0x824
/// (§1.7, §5.1).
pub const SEV_PDH_CHAIN_LEN: usize = 0x186C;
/// Session blob of LAUNCH_START / RECEIVE_START / SEND_START (host-interfaces.md §4.6).
pub const SEV_SESSION_LEN: usize = 128;
/// Packet header of LAUNCH_SECRET and SEND/RECEIVE_UPDATE_* (§3.5, §5.2).
pub const SEV_PACKET_HEADER_LEN: usize = 52;
/// LAUNCH_MEASURE output: measure ‖ mnonce (§3.4).
pub const SEV_MEASURE_LEN: usize = 48;
/// ATTESTATION report (§4).
pub const SEV_REPORT_LEN: usize = 0xD0;
/// GET_ID output per socket: secp256k1 X ‖ Y (§1.8).
pub const SEV_GET_ID_LEN: usize = 64;
/// Firmware scratch buffer: the largest LAUNCH_SECRET / SEND/RECEIVE_UPDATE `guest_len`
/// (`SEV_SCRATCH_BUF_LEN`, §1.2).
pub const SEV_SCRATCH_LEN: usize = 0x5000;
/// The required `length` of an INIT_EX buffer (`SEV_INIT_EX_CMD_LEN`, §1.2).
pub const SEV_INIT_EX_LEN: usize = 0x24;
/// The exact size of the INIT_EX non-volatile buffer, 32 KiB (`SEV_INIT_EX_NV_LEN`).
pub const SEV_INIT_EX_NV_LEN: usize = 0x8000;
/// Size and alignment of the SEV-ES trusted memory region, 1 MiB (§1.2); 2 MiB when
/// the SNP RMP is initialised ([`SEV_TMR_LEN_SNP`]).
pub const SEV_TMR_LEN: usize = 1 << 20;
/// TMR size and alignment when the SNP RMP is initialised, 2 MiB (§1.2).
pub const SEV_TMR_LEN_SNP: usize = 2 << 20;
/// A VMSA page is exactly 4096 bytes (`VMSA_SIZE`, §1.2).
pub const SEV_VMSA_LEN: usize = 4096;
/// Legacy guest handles run 1..=1024 (`SEV_GUEST_COUNT_MAX`, §1.2).
pub const SEV_GUEST_COUNT_MAX: u32 = 1024;
/// INIT / INIT_EX flag bit 0: SEV-ES, a TMR is supplied (Linux `SEV_INIT_FLAGS_SEV_ES`,
/// §1.4).
pub const SEV_INIT_FLAGS_SEV_ES: u32 = 0x01;
/// [`SevPlatformStatus::flags`] bit 0: the platform is externally owned (§1.6).
pub const SEV_STATUS_FLAGS_OWNER_EXTERNAL: u32 = 0x01;
/// [`SevPlatformStatus::flags`] bit 8: SEV-ES initialised (config bit 0 in the uAPI
/// `flags` view; Linux `SEV_STATUS_FLAGS_CONFIG_ES`, §1.6).
pub const SEV_STATUS_FLAGS_CONFIG_ES: u32 = 0x100;
/// Packet-header flag bit 0: the payload is compressed (refused with UNSUPPORTED,
/// §3.5).
pub const SEV_SECRET_FLAG_COMPRESSED: u32 = 0x01;

const _: () = assert!(SEV_PDH_CHAIN_LEN == 3 * SEV_CERT_LEN);

// ---------------------------------------------------------------------------------
// State values.
// ---------------------------------------------------------------------------------

crate::open_enum! {
    /// Legacy guest state byte (GUEST_STATUS `state`, §3.7; ASPFW `sev_guest.h`).
    pub struct SevGuestState(u8) {
        /// No guest context (also what GUEST_STATUS reports for an unknown handle).
        INVALID = 0,
        /// Launching: LAUNCH_UPDATE_* accepted.
        LUPDATE = 1,
        /// Measured: LAUNCH_SECRET / LAUNCH_FINISH accepted.
        LSECRET = 2,
        /// Running.
        RUNNING = 3,
        /// Sending (after SEND_START).
        SUPDATE = 4,
        /// Receiving (after RECEIVE_START).
        RUPDATE = 5,
        /// Sent (after SEND_FINISH).
        SENT = 6,
    }
}

crate::open_enum! {
    /// Legacy platform state byte (PLATFORM_STATUS `state`, §1.3).
    pub struct SevPlatformStateId(u8) {
        /// Not initialised.
        UNINIT = 0,
        /// Initialised, no guest.
        INIT = 1,
        /// At least one guest context.
        WORKING = 2,
    }
}

// ---------------------------------------------------------------------------------
// Command ↔ buffer.
// ---------------------------------------------------------------------------------

/// Implement [`FwCommand`] for each `buffer => command id` pair.
macro_rules! fw_command {
    ($($t:ty => $id:ident),* $(,)?) => {
        $( impl FwCommand for $t { const ID: FwCmd = FwCmd::$id; } )*
    };
}

fw_command! {
    SevInit => INIT,
    SevInitEx => INIT_EX,
    SevPlatformStatus => PLATFORM_STATUS,
    SevPekCsr => PEK_CSR,
    SevPekCertImport => PEK_CERT_IMPORT,
    SevPdhCertExport => PDH_CERT_EXPORT,
    SevGetId => GET_ID,
    SevDecommission => DECOMMISSION,
    SevActivate => ACTIVATE,
    SevDeactivate => DEACTIVATE,
    SevGuestStatus => GUEST_STATUS,
    SevCopy => COPY,
    SevActivateEx => ACTIVATE_EX,
    SevLaunchStart => LAUNCH_START,
    SevLaunchUpdateData => LAUNCH_UPDATE_DATA,
    SevLaunchUpdateVmsa => LAUNCH_UPDATE_VMSA,
    SevLaunchMeasure => LAUNCH_MEASURE,
    SevLaunchSecret => LAUNCH_UPDATE_SECRET,
    SevLaunchFinish => LAUNCH_FINISH,
    SevAttestation => ATTESTATION,
    SevSendStart => SEND_START,
    SevSendUpdateData => SEND_UPDATE_DATA,
    SevSendUpdateVmsa => SEND_UPDATE_VMSA,
    SevSendFinish => SEND_FINISH,
    SevSendCancel => SEND_CANCEL,
    SevReceiveStart => RECEIVE_START,
    SevReceiveUpdateData => RECEIVE_UPDATE_DATA,
    SevReceiveUpdateVmsa => RECEIVE_UPDATE_VMSA,
    SevReceiveFinish => RECEIVE_FINISH,
    SevDbgDecrypt => DBG_DECRYPT,
    SevDbgEncrypt => DBG_ENCRYPT,
    SevSwapOut => SWAP_OUT,
    SevSwapIn => SWAP_IN,
}

/// The buffers, packed, with an all-zero `Default`.
macro_rules! sev_buf {
    ($($decl:tt)*) => { crate::wire_packed!(@with_default $($decl)*); };
}

// ---------------------------------------------------------------------------------
// Platform commands (§1).
// ---------------------------------------------------------------------------------

sev_buf!(
    /// INIT command buffer (§1.4; Linux `sev_data_init`). ASPFW reads
    /// `{u16 flags; u8 reserved[6]; ...}`: same bytes, so every bit but
    /// [`SEV_INIT_FLAGS_SEV_ES`] of `flags` and all of `reserved` must be zero
    /// (INVALID_CONFIG).
    SevInit, size = 0x14, {
        /// Bit 0 SEV-ES ([`SEV_INIT_FLAGS_SEV_ES`]); the rest MBZ.
        flags: u32 = 0x00,
        /// Reserved, MBZ.
        reserved: u32 = 0x04,
        /// sPA of the SEV-ES TMR ([`SEV_TMR_LEN`]-aligned).
        tmr_address: u64 = 0x08,
        /// TMR length (exactly [`SEV_TMR_LEN`], or [`SEV_TMR_LEN_SNP`] with SNP).
        tmr_len: u32 = 0x10,
    }
);

sev_buf!(
    /// INIT_EX command buffer (§1.4; Linux `sev_data_init_ex`). ASPFW reads `flags` as
    /// `u16 flags; u8 rsvd[2]`.
    SevInitEx, size = 0x24, {
        /// Length of this buffer, must be [`SEV_INIT_EX_LEN`].
        length: u32 = 0x00,
        /// Bit 0 SEV-ES ([`SEV_INIT_FLAGS_SEV_ES`]); the rest MBZ.
        flags: u32 = 0x04,
        /// sPA of the SEV-ES TMR.
        tmr_address: u64 = 0x08,
        /// TMR length.
        tmr_len: u32 = 0x10,
        /// Reserved, MBZ.
        reserved: u32 = 0x14,
        /// sPA of the non-volatile store (4 KiB-aligned).
        nv_address: u64 = 0x18,
        /// Its length, exactly [`SEV_INIT_EX_NV_LEN`].
        nv_len: u32 = 0x20,
    }
);

sev_buf!(
    /// PLATFORM_STATUS: the command's buffer is the 12-byte status the firmware writes
    /// (§1.6; Linux uAPI `sev_user_data_status`, whose `flags` overlays ASPFW's
    /// `u8 owner; u16 config; u8 reserved`).
    SevPlatformStatus, size = 0x0C, {
        /// API major version (firmware build time).
        api_major: u8 = 0x00,
        /// API minor version.
        api_minor: u8 = 0x01,
        /// Platform state ([`SevPlatformStateId`]).
        state: u8 = 0x02,
        /// Bits 7:0 owner (bit 0 externally owned), bits 23:8 config (bit 8 SEV-ES
        /// initialised), bits 31:24 reserved.
        flags: u32 = 0x03,
        /// Firmware build id.
        build: u8 = 0x07,
        /// Number of legacy SEV guests (SNP guests are not counted).
        guest_count: u32 = 0x08,
    }
);

impl SevPlatformStatus {
    /// The platform state as a named value.
    pub fn state_id(&self) -> SevPlatformStateId {
        SevPlatformStateId(self.state)
    }
    /// The owner byte (bit 0: externally owned).
    pub fn owner(&self) -> u8 {
        self.flags as u8
    }
    /// The 16-bit config word (bit 0: SEV-ES initialised).
    pub fn config(&self) -> u16 {
        (self.flags >> 8) as u16
    }
    /// Externally owned (PEK_CERT_IMPORT done).
    pub fn is_externally_owned(&self) -> bool {
        self.flags & SEV_STATUS_FLAGS_OWNER_EXTERNAL != 0
    }
    /// SEV-ES initialised (INIT flag bit 0).
    pub fn is_es_initialised(&self) -> bool {
        self.flags & SEV_STATUS_FLAGS_CONFIG_ES != 0
    }
    /// Build the `flags` word from its parts (reserved byte zero).
    pub const fn make_flags(owner: u8, config: u16) -> u32 {
        (owner as u32) | ((config as u32) << 8)
    }
}

sev_buf!(
    /// PEK_CSR command buffer (§1.7; Linux `sev_data_pek_csr`).
    SevPekCsr, size = 0x0C, {
        /// sPA of the output certificate.
        address: u64 = 0x00,
        /// In: buffer length; out: [`SEV_CERT_LEN`] (also on INVALID_LENGTH).
        len: u32 = 0x08,
    }
);

sev_buf!(
    /// PEK_CERT_IMPORT command buffer (§1.7; Linux `sev_data_pek_cert_import`).
    SevPekCertImport, size = 0x1C, {
        /// sPA of the OCA-signed PEK certificate.
        pek_cert_address: u64 = 0x00,
        /// Its length (must be [`SEV_CERT_LEN`]).
        pek_cert_len: u32 = 0x08,
        /// Reserved.
        reserved: u32 = 0x0C,
        /// sPA of the OCA certificate.
        oca_cert_address: u64 = 0x10,
        /// Its length (must be [`SEV_CERT_LEN`]).
        oca_cert_len: u32 = 0x18,
    }
);

sev_buf!(
    /// PDH_CERT_EXPORT command buffer (§1.7; Linux `sev_data_pdh_cert_export`).
    SevPdhCertExport, size = 0x1C, {
        /// sPA of the PDH certificate output.
        pdh_cert_address: u64 = 0x00,
        /// In: buffer length; out: [`SEV_CERT_LEN`].
        pdh_cert_len: u32 = 0x08,
        /// Reserved.
        reserved: u32 = 0x0C,
        /// sPA of the PEK ‖ OCA ‖ CEK output.
        cert_chain_address: u64 = 0x10,
        /// In: buffer length; out: [`SEV_PDH_CHAIN_LEN`].
        cert_chain_len: u32 = 0x18,
    }
);

sev_buf!(
    /// GET_ID command buffer (§1.8; Linux `sev_data_get_id`).
    SevGetId, size = 0x0C, {
        /// sPA of the output (64 bytes per socket).
        address: u64 = 0x00,
        /// In: buffer length; out: bytes written / required ([`SEV_GET_ID_LEN`]).
        len: u32 = 0x08,
    }
);

// ---------------------------------------------------------------------------------
// Guest-context housekeeping (§1.9).
// ---------------------------------------------------------------------------------

sev_buf!(
    /// DECOMMISSION command buffer (§1.9; Linux `sev_data_decommission`).
    SevDecommission, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

sev_buf!(
    /// DEACTIVATE command buffer (§1.9; Linux `sev_data_deactivate`).
    SevDeactivate, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

sev_buf!(
    /// ACTIVATE command buffer (§1.9; Linux `sev_data_activate`).
    SevActivate, size = 0x08, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// ASID to bind.
        asid: u32 = 0x04,
    }
);

sev_buf!(
    /// ACTIVATE_EX command buffer (§1.9; ASPFW `sev_mcmd.h`, no Linux struct).
    SevActivateEx, size = 0x18, {
        /// Length of this buffer, must be 0x18 (else INVALID_PARAM).
        ex_len: u32 = 0x00,
        /// Guest handle.
        handle: u32 = 0x04,
        /// ASID to bind.
        asid: u32 = 0x08,
        /// Number of APIC ids at `ids_paddr` (non-zero).
        numids: u32 = 0x0C,
        /// sPA of the APIC id list (u32 each).
        ids_paddr: u64 = 0x10,
    }
);

sev_buf!(
    /// COPY command buffer (§1.9; ASPFW `sev_mcmd.h`, no Linux struct).
    SevCopy, size = 0x18, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Bytes to move (multiple of 4096).
        length: u32 = 0x04,
        /// sPA of the source pages (4 KiB-aligned).
        src_paddr: u64 = 0x08,
        /// sPA of the destination pages (4 KiB-aligned).
        dst_paddr: u64 = 0x10,
    }
);

sev_buf!(
    /// GUEST_STATUS command buffer (§1.9; Linux `sev_data_guest_status`), 13 bytes.
    SevGuestStatus, size = 0x0D, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Out: guest policy.
        policy: u32 = 0x04,
        /// Out: bound ASID (0 if none).
        asid: u32 = 0x08,
        /// Out: guest state ([`SevGuestState`]; 0 for an unknown handle).
        state: u8 = 0x0C,
    }
);

impl SevGuestStatus {
    /// The guest state as a named value.
    pub fn state_id(&self) -> SevGuestState {
        SevGuestState(self.state)
    }
}

// ---------------------------------------------------------------------------------
// Launch (§3) and ATTESTATION (§4).
// ---------------------------------------------------------------------------------

sev_buf!(
    /// LAUNCH_START command buffer (§3.1; Linux `sev_data_launch_start`).
    SevLaunchStart, size = 0x24, {
        /// In: 0 or the handle of a guest to share the key with; out: the new handle.
        handle: u32 = 0x00,
        /// Guest policy.
        policy: u32 = 0x04,
        /// sPA of the guest owner's DH certificate (GODH); 0 = no session.
        dh_cert_address: u64 = 0x08,
        /// Its length ([`SEV_CERT_LEN`]).
        dh_cert_len: u32 = 0x10,
        /// Reserved.
        reserved: u32 = 0x14,
        /// sPA of the [`SevSession`] blob.
        session_address: u64 = 0x18,
        /// Its length ([`SEV_SESSION_LEN`]).
        session_len: u32 = 0x20,
    }
);

sev_buf!(
    /// LAUNCH_UPDATE_DATA command buffer (§3.3; Linux `sev_data_launch_update_data`).
    SevLaunchUpdateData, size = 0x14, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the region (16-aligned), encrypted in place.
        address: u64 = 0x08,
        /// Its length (non-zero multiple of 16).
        len: u32 = 0x10,
    }
);

sev_buf!(
    /// LAUNCH_UPDATE_VMSA command buffer (§3.3; Linux `sev_data_launch_update_vmsa`).
    SevLaunchUpdateVmsa, size = 0x14, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the VMSA page.
        address: u64 = 0x08,
        /// Its length (exactly [`SEV_VMSA_LEN`]).
        len: u32 = 0x10,
    }
);

sev_buf!(
    /// LAUNCH_MEASURE command buffer (§3.4; Linux `sev_data_launch_measure`).
    SevLaunchMeasure, size = 0x14, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the [`SevLaunchMeasureBlob`] output.
        address: u64 = 0x08,
        /// In: buffer length; out: [`SEV_MEASURE_LEN`] (also on INVALID_LENGTH).
        len: u32 = 0x10,
    }
);

sev_buf!(
    /// LAUNCH_SECRET (`LAUNCH_UPDATE_SECRET`) command buffer (§3.5; Linux
    /// `sev_data_launch_secret`): the transport shape.
    SevLaunchSecret, size = 0x34, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved1: u32 = 0x04,
        /// sPA of the [`SevPacketHeader`].
        hdr_address: u64 = 0x08,
        /// Its length ([`SEV_PACKET_HEADER_LEN`]).
        hdr_len: u32 = 0x10,
        /// Reserved.
        reserved2: u32 = 0x14,
        /// sPA of the guest destination (16-aligned; the C-bit is ignored).
        guest_address: u64 = 0x18,
        /// Its length (16-aligned, ≤ [`SEV_SCRATCH_LEN`], = `trans_len`).
        guest_len: u32 = 0x20,
        /// Reserved.
        reserved3: u32 = 0x24,
        /// sPA of the ciphertext.
        trans_address: u64 = 0x28,
        /// Its length.
        trans_len: u32 = 0x30,
    }
);

sev_buf!(
    /// LAUNCH_FINISH command buffer (§3.6; Linux `sev_data_launch_finish`).
    SevLaunchFinish, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

sev_buf!(
    /// ATTESTATION command buffer (§4; Linux `sev_data_attestation_report`).
    SevAttestation, size = 0x24, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the [`SevAttestationReport`] output.
        address: u64 = 0x08,
        /// Caller's nonce, copied into the report.
        mnonce: [u8; 16] = 0x10,
        /// In: buffer length; out: [`SEV_REPORT_LEN`] (also on INVALID_LENGTH).
        len: u32 = 0x20,
    }
);

// ---------------------------------------------------------------------------------
// Migration (§5).
// ---------------------------------------------------------------------------------

sev_buf!(
    /// SEND_START command buffer (§5.1; Linux `sev_data_send_start`).
    SevSendStart, size = 0x44, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Out: the guest's policy.
        policy: u32 = 0x04,
        /// sPA of the **target** platform's PDH certificate.
        pdh_cert_address: u64 = 0x08,
        /// Its length ([`SEV_CERT_LEN`]).
        pdh_cert_len: u32 = 0x10,
        /// Reserved.
        reserved1: u32 = 0x14,
        /// sPA of the target's PEK ‖ OCA ‖ CEK.
        plat_certs_address: u64 = 0x18,
        /// Its length ([`SEV_PDH_CHAIN_LEN`]).
        plat_certs_len: u32 = 0x20,
        /// Reserved.
        reserved2: u32 = 0x24,
        /// sPA of the target's ASK ‖ ARK (AMD format).
        amd_certs_address: u64 = 0x28,
        /// Its length (see `sev_cert::amd_certs_len_is_valid`).
        amd_certs_len: u32 = 0x30,
        /// Reserved.
        reserved3: u32 = 0x34,
        /// sPA of the [`SevSession`] output.
        session_address: u64 = 0x38,
        /// In: buffer length; out: [`SEV_SESSION_LEN`] (also on INVALID_LENGTH).
        session_len: u32 = 0x40,
    }
);

sev_buf!(
    /// SEND_UPDATE_DATA command buffer (§5.2; Linux `sev_data_send_update_data`).
    SevSendUpdateData, size = 0x34, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved1: u32 = 0x04,
        /// sPA of the [`SevPacketHeader`] output.
        hdr_address: u64 = 0x08,
        /// In: buffer length; out: [`SEV_PACKET_HEADER_LEN`] on INVALID_LENGTH.
        hdr_len: u32 = 0x10,
        /// Reserved.
        reserved2: u32 = 0x14,
        /// sPA of the guest region (16-aligned).
        guest_address: u64 = 0x18,
        /// Its length (16-aligned, ≤ [`SEV_SCRATCH_LEN`]).
        guest_len: u32 = 0x20,
        /// Reserved.
        reserved3: u32 = 0x24,
        /// sPA of the ciphertext output.
        trans_address: u64 = 0x28,
        /// Its length (≥ `guest_len`).
        trans_len: u32 = 0x30,
    }
);

sev_buf!(
    /// SEND_UPDATE_VMSA command buffer (§5.2): the transport shape of ASPFW.
    /// Linux's `sev_data_send_update_vmsa` omits `reserved1` (0x30 bytes), a slip in
    /// a struct Linux never issues; the firmware reads the same 0x34 bytes as for
    /// SEND_UPDATE_DATA.
    SevSendUpdateVmsa, size = 0x34, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved1: u32 = 0x04,
        /// sPA of the [`SevPacketHeader`] output.
        hdr_address: u64 = 0x08,
        /// In: buffer length; out: [`SEV_PACKET_HEADER_LEN`] on INVALID_LENGTH.
        hdr_len: u32 = 0x10,
        /// Reserved.
        reserved2: u32 = 0x14,
        /// sPA of the VMSA page.
        guest_address: u64 = 0x18,
        /// Its length.
        guest_len: u32 = 0x20,
        /// Reserved.
        reserved3: u32 = 0x24,
        /// sPA of the ciphertext output.
        trans_address: u64 = 0x28,
        /// Its length.
        trans_len: u32 = 0x30,
    }
);

sev_buf!(
    /// SEND_FINISH command buffer (§5.4; Linux `sev_data_send_finish`).
    SevSendFinish, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

sev_buf!(
    /// SEND_CANCEL command buffer (§5.4; Linux `sev_data_send_cancel`).
    SevSendCancel, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

sev_buf!(
    /// RECEIVE_START command buffer (§5.5; Linux `sev_data_receive_start`).
    SevReceiveStart, size = 0x24, {
        /// In: 0 or a handle to share the key with; out: the new handle.
        handle: u32 = 0x00,
        /// Guest policy (checked against the session's policy MAC).
        policy: u32 = 0x04,
        /// sPA of the **source** platform's PDH certificate.
        pdh_cert_address: u64 = 0x08,
        /// Its length ([`SEV_CERT_LEN`]).
        pdh_cert_len: u32 = 0x10,
        /// Reserved.
        reserved1: u32 = 0x14,
        /// sPA of the [`SevSession`] made by SEND_START.
        session_address: u64 = 0x18,
        /// Its length ([`SEV_SESSION_LEN`]).
        session_len: u32 = 0x20,
    }
);

sev_buf!(
    /// RECEIVE_UPDATE_DATA command buffer (§5.5; Linux `sev_data_receive_update_data`).
    SevReceiveUpdateData, size = 0x34, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved1: u32 = 0x04,
        /// sPA of the [`SevPacketHeader`].
        hdr_address: u64 = 0x08,
        /// Its length (≥ [`SEV_PACKET_HEADER_LEN`]).
        hdr_len: u32 = 0x10,
        /// Reserved.
        reserved2: u32 = 0x14,
        /// sPA of the guest destination (16-aligned).
        guest_address: u64 = 0x18,
        /// Its length (= `trans_len`).
        guest_len: u32 = 0x20,
        /// Reserved.
        reserved3: u32 = 0x24,
        /// sPA of the ciphertext.
        trans_address: u64 = 0x28,
        /// Its length (≤ [`SEV_SCRATCH_LEN`]).
        trans_len: u32 = 0x30,
    }
);

sev_buf!(
    /// RECEIVE_UPDATE_VMSA command buffer (§5.5; Linux `sev_data_receive_update_vmsa`).
    SevReceiveUpdateVmsa, size = 0x34, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved1: u32 = 0x04,
        /// sPA of the [`SevPacketHeader`].
        hdr_address: u64 = 0x08,
        /// Its length.
        hdr_len: u32 = 0x10,
        /// Reserved.
        reserved2: u32 = 0x14,
        /// sPA of the destination VMSA page.
        guest_address: u64 = 0x18,
        /// Its length.
        guest_len: u32 = 0x20,
        /// Reserved.
        reserved3: u32 = 0x24,
        /// sPA of the ciphertext.
        trans_address: u64 = 0x28,
        /// Its length.
        trans_len: u32 = 0x30,
    }
);

sev_buf!(
    /// RECEIVE_FINISH command buffer (§5.5; Linux `sev_data_receive_finish`).
    SevReceiveFinish, size = 0x04, {
        /// Guest handle.
        handle: u32 = 0x00,
    }
);

// ---------------------------------------------------------------------------------
// Swap (§5.6) and debug (§6).
// ---------------------------------------------------------------------------------

/// SWAP_OUT / SWAP_IN `flags` bit 0: 2 MiB page (0 = 4 KiB) (§5.6).
pub const SEV_SWAP_FLAG_PAGE_SIZE_2M: u32 = 1 << 0;
/// SWAP_OUT / SWAP_IN `flags` bits 2:1: page type (0 data, 2 VMSA) (§5.6).
pub const SEV_SWAP_FLAG_PAGE_TYPE_MASK: u32 = 0b11 << 1;
/// Page type 0 in bits 2:1: data.
pub const SEV_SWAP_PAGE_TYPE_DATA: u32 = 0;
/// Page type 2 in bits 2:1: VMSA.
pub const SEV_SWAP_PAGE_TYPE_VMSA: u32 = 2;
/// SWAP_IN `flags` bit 3: swap in place (§5.6).
pub const SEV_SWAP_FLAG_IN_PLACE: u32 = 1 << 3;

sev_buf!(
    /// SWAP_OUT command buffer (§5.6; ASPFW `sev_mcmd.h`, packed, no Linux struct).
    SevSwapOut, size = 0x28, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Bit 0 page size ([`SEV_SWAP_FLAG_PAGE_SIZE_2M`]), bits 2:1 page type
        /// ([`SEV_SWAP_FLAG_PAGE_TYPE_MASK`]), bits 31:3 reserved.
        flags: u32 = 0x04,
        /// sPA of the guest page.
        src_paddr: u64 = 0x08,
        /// sPA of the host page receiving the encrypted copy.
        dst_paddr: u64 = 0x10,
        /// sPA of the [`SevSwapMetadata`] entry (64-aligned).
        mdata_paddr: u64 = 0x18,
        /// Host value stored in the metadata.
        software_data: u64 = 0x20,
    }
);

sev_buf!(
    /// SWAP_IN command buffer (§5.6; ASPFW `sev_mcmd.h`, packed, no Linux struct).
    SevSwapIn, size = 0x20, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// As [`SevSwapOut::flags`], plus bit 3 swap in place
        /// ([`SEV_SWAP_FLAG_IN_PLACE`]).
        flags: u32 = 0x04,
        /// sPA of the swapped-out page.
        src_paddr: u64 = 0x08,
        /// sPA of the guest destination page.
        dst_paddr: u64 = 0x10,
        /// sPA of the [`SevSwapMetadata`] entry.
        mdata_paddr: u64 = 0x18,
    }
);

sev_buf!(
    /// SWAP_OUT / SWAP_IN metadata entry (0x40 bytes, §5.6). The AEAD's AAD is these
    /// 64 bytes with `auth_tag` zero.
    SevSwapMetadata, size = 0x40, {
        /// The host's `software_data` from SWAP_OUT.
        software_data: u64 = 0x00,
        /// The per-guest IV counter value used.
        iv: u64 = 0x08,
        /// AES-256-GCM tag.
        auth_tag: [u8; 16] = 0x10,
        /// Reserved.
        reserved1: u64 = 0x20,
        /// Reserved.
        reserved2: u64 = 0x28,
        /// Reserved.
        reserved3: u32 = 0x30,
        /// Reserved.
        reserved4: u64 = 0x34,
        /// Bit 0 page size, bits 2:1 page type, as [`SevSwapOut::flags`].
        page_flags: u32 = 0x3C,
    }
);

sev_buf!(
    /// DBG_DECRYPT command buffer (§6.1; Linux `sev_data_dbg`).
    SevDbgDecrypt, size = 0x1C, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the guest source (16-aligned), read with the guest key.
        src_addr: u64 = 0x08,
        /// sPA of the destination (16-aligned), written in plaintext.
        dst_addr: u64 = 0x10,
        /// Length (multiple of 16).
        len: u32 = 0x18,
    }
);

sev_buf!(
    /// DBG_ENCRYPT command buffer (§6.1; Linux `sev_data_dbg`).
    SevDbgEncrypt, size = 0x1C, {
        /// Guest handle.
        handle: u32 = 0x00,
        /// Reserved.
        reserved: u32 = 0x04,
        /// sPA of the plaintext source (16-aligned).
        src_addr: u64 = 0x08,
        /// sPA of the guest destination (16-aligned), written with the guest key.
        dst_addr: u64 = 0x10,
        /// Length (multiple of 16).
        len: u32 = 0x18,
    }
);

// ---------------------------------------------------------------------------------
// Blobs.
// ---------------------------------------------------------------------------------

sev_buf!(
    /// The 128-byte session blob of LAUNCH_START / RECEIVE_START (input) and
    /// SEND_START (output) (host-interfaces.md §4.6, sev-legacy.md §3.2; ASPFW
    /// `sev_channel.c`, sev crate `launch::sev::Session`).
    SevSession, size = 0x80, {
        /// KDF context of the master secret.
        nonce: [u8; 16] = 0x00,
        /// TEK ‖ TIK encrypted with AES-128-CTR(KEK, wrap_iv).
        wrap_tk: [u8; 32] = 0x10,
        /// Initial counter block of that encryption.
        wrap_iv: [u8; 16] = 0x30,
        /// HMAC-SHA256(KIK, wrap_tk).
        wrap_mac: [u8; 32] = 0x40,
        /// HMAC-SHA256(TIK, LE32(policy)).
        policy_mac: [u8; 32] = 0x60,
    }
);

sev_buf!(
    /// The 52-byte packet header of LAUNCH_SECRET and SEND/RECEIVE_UPDATE_*
    /// (host-interfaces.md §4.8, sev-legacy.md §3.5, §5.3; sevctl `secret.rs`).
    SevPacketHeader, size = 0x34, {
        /// Bit 0 COMPRESSED ([`SEV_SECRET_FLAG_COMPRESSED`]).
        flags: u32 = 0x00,
        /// AES-128-CTR initial counter block.
        iv: [u8; 16] = 0x04,
        /// HMAC-SHA256 by the TIK (§3.5, §5.3).
        mac: [u8; 32] = 0x14,
    }
);

sev_buf!(
    /// LAUNCH_MEASURE output, 48 bytes: measure ‖ mnonce (§3.4; the blob QEMU/libvirt
    /// report and sevctl decodes).
    SevLaunchMeasureBlob, size = 0x30, {
        /// HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖ LE32(policy) ‖ LD ‖
        /// mnonce).
        measure: [u8; 32] = 0x00,
        /// Firmware nonce.
        mnonce: [u8; 16] = 0x20,
    }
);

sev_buf!(
    /// The legacy ATTESTATION report, 0xD0 bytes (§4; ASPFW `sev_mcmd.h`, sev crate
    /// `LegacyAttestationReport`). Signed by the PEK with ECDSA P-384 over
    /// SHA-256([`signed_bytes`](Self::signed_bytes)).
    SevAttestationReport, size = 0xD0, {
        /// The caller's nonce from the command buffer.
        mnonce: [u8; 16] = 0x00,
        /// Launch digest captured at LAUNCH_MEASURE (zero for a received guest).
        launch_digest: [u8; 32] = 0x10,
        /// Guest policy.
        policy: u32 = 0x30,
        /// Signing key usage: the PEK's (0x1002).
        sig_usage: u32 = 0x34,
        /// Signing algorithm: the PEK's (2 = ECDSA_SHA256).
        sig_algo: u32 = 0x38,
        /// Reserved, 0.
        reserved: u32 = 0x3C,
        /// Signature r, 72-byte little-endian (48 significant bytes).
        sig_r: [u8; 72] = 0x40,
        /// Signature s, 72-byte little-endian (48 significant bytes).
        sig_s: [u8; 72] = 0x88,
    }
);

/// Bytes of the report covered by the signature: 0x00..0x34 (§4).
pub const SEV_REPORT_SIGNED_LEN: usize = 0x34;

impl SevAttestationReport {
    /// The signed bytes, 0x00..0x34 (mnonce, launch digest, policy).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.as_bytes()[..SEV_REPORT_SIGNED_LEN]
    }

    /// The signature as big-endian r, s (the low 48 bytes of each 72-byte field);
    /// `None` if a field has a non-zero byte above the 48 significant ones (a value
    /// ≥ 2^384, which is not a valid P-384 signature component).
    pub fn signature_rs_be(&self) -> Option<([u8; 48], [u8; 48])> {
        Some((le72_to_be48(&self.sig_r)?, le72_to_be48(&self.sig_s)?))
    }

    /// Store a signature given as big-endian r, s.
    pub fn set_signature_rs_be(&mut self, r_be: &[u8; 48], s_be: &[u8; 48]) {
        self.sig_r = be48_to_le72(r_be);
        self.sig_s = be48_to_le72(s_be);
    }
}

/// A 72-byte little-endian field (§2.1) as 48 big-endian bytes; `None` if a byte above
/// the 48 significant ones is non-zero.
pub(crate) fn le72_to_be48(le: &[u8; 72]) -> Option<[u8; 48]> {
    if le[48..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut be = [0u8; 48];
    for (d, s) in be.iter_mut().zip(le[..48].iter().rev()) {
        *d = *s;
    }
    Some(be)
}

/// 48 big-endian bytes as a 72-byte little-endian field, zero-extended (§2.1).
pub(crate) fn be48_to_le72(be: &[u8; 48]) -> [u8; 72] {
    let mut le = [0u8; 72];
    for (d, s) in le[..48].iter_mut().zip(be.iter().rev()) {
        *d = *s;
    }
    le
}

const _: () = {
    assert!(SevSession::LEN == SEV_SESSION_LEN);
    assert!(SevPacketHeader::LEN == SEV_PACKET_HEADER_LEN);
    assert!(SevLaunchMeasureBlob::LEN == SEV_MEASURE_LEN);
    assert!(SevAttestationReport::LEN == SEV_REPORT_LEN);
    assert!(SevInitEx::LEN == SEV_INIT_EX_LEN);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_fields_land_at_their_offsets() {
        let b = SevLaunchStart {
            handle: 1,
            policy: 0x0102_0304,
            dh_cert_address: 0x1122_3344_5566_7788,
            session_len: 128,
            ..Default::default()
        };
        let bytes = b.as_bytes();
        assert_eq!(&bytes[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&bytes[0x20..0x24], &128u32.to_le_bytes());
        assert_eq!(SevLaunchStart::read_from_bytes(bytes).unwrap(), b);
        assert_eq!(SevLaunchStart::ID, FwCmd::LAUNCH_START);
    }

    #[test]
    fn status_flags_view() {
        let mut s = SevPlatformStatus {
            flags: SevPlatformStatus::make_flags(1, 1),
            ..Default::default()
        };
        assert_eq!(s.as_bytes()[3..7], [1, 1, 0, 0]);
        assert!(s.is_externally_owned() && s.is_es_initialised());
        assert_eq!(s.config(), 1);
        s.flags = 0;
        assert!(!s.is_es_initialised());
    }

    #[test]
    fn report_signature_round_trip() {
        let mut r = SevAttestationReport::default();
        let rb: [u8; 48] = core::array::from_fn(|i| i as u8 + 1);
        let sb: [u8; 48] = core::array::from_fn(|i| 0xFF - i as u8);
        r.set_signature_rs_be(&rb, &sb);
        assert_eq!(r.sig_r[0], 48);
        assert_eq!(r.sig_r[47], 1);
        assert_eq!(r.signature_rs_be(), Some((rb, sb)));
        r.sig_s[60] = 1;
        assert_eq!(r.signature_rs_be(), None);
        assert_eq!(r.signed_bytes().len(), 0x34);
    }
}
