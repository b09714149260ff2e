//! The KVM user API for SEV / SEV-ES / SEV-SNP guests: `KVM_MEMORY_ENCRYPT_OP`
//! command structures, VM types, command ids, memory attributes, guest_memfd and
//! memslot structures, exit reasons, system-event types, the MAP_GPA_RANGE hypercall
//! and the errno values KVM returns. Notes: shared/spec/host-interfaces.md §1,
//! snp-launch.md §1.3 and, for the legacy SEV / SEV-ES structures, sev-legacy.md §6.2
//! and §7 (Linux `include/uapi/linux/kvm.h`, `arch/x86/include/uapi/asm/kvm.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The uAPI structures: the crate's `wire!` layout macro with an all-zero `Default`.
macro_rules! uapi {
    ($($decl:tt)*) => { crate::wire!(@with_default $($decl)*); };
}

uapi!(
    /// `struct kvm_sev_cmd`: the `KVM_MEMORY_ENCRYPT_OP` envelope.
    KvmSevCmd, size = 0x18, {
        /// Command id ([`SevCmdId`]).
        id: u32 = 0x00,
        /// Padding.
        pad0: u32 = 0x04,
        /// User address of the per-command structure.
        data: u64 = 0x08,
        /// Out: firmware status of a failed firmware command.
        error: u32 = 0x10,
        /// File descriptor of /dev/sev.
        sev_fd: u32 = 0x14,
    }
);

uapi!(
    /// `struct kvm_sev_init` (KVM_SEV_INIT2).
    KvmSevInit, size = 0x30, {
        /// SEV_FEATURES for the VMSAs (subset of `KVM_X86_SEV_VMSA_FEATURES`).
        vmsa_features: u64 = 0x00,
        /// Flags, MBZ.
        flags: u32 = 0x08,
        /// Highest GHCB protocol version (0 = default).
        ghcb_version: u16 = 0x0C,
        /// Padding.
        pad1: u16 = 0x0E,
        /// Padding.
        pad2: [u32; 8] = 0x10,
    }
);

uapi!(
    /// `struct kvm_sev_launch_start` (legacy SEV / SEV-ES).
    KvmSevLaunchStart, size = 0x28, {
        /// In/out: guest handle.
        handle: u32 = 0x00,
        /// Guest policy.
        policy: u32 = 0x04,
        /// User address of the guest owner's DH certificate.
        dh_uaddr: u64 = 0x08,
        /// Its length.
        dh_len: u32 = 0x10,
        /// Padding.
        pad0: u32 = 0x14,
        /// User address of the session blob.
        session_uaddr: u64 = 0x18,
        /// Its length.
        session_len: u32 = 0x20,
        /// Padding.
        pad1: u32 = 0x24,
    }
);

uapi!(
    /// `struct kvm_sev_launch_update_data` (KVM_SEV_LAUNCH_UPDATE_DATA, sev-legacy.md
    /// §7.2).
    KvmSevLaunchUpdateData, size = 0x10, {
        /// User address of the region (encrypted in place).
        uaddr: u64 = 0x00,
        /// Its length (non-zero).
        len: u32 = 0x08,
        /// Padding.
        pad0: u32 = 0x0C,
    }
);

uapi!(
    /// `struct kvm_sev_launch_secret` (KVM_SEV_LAUNCH_SECRET, §7.2).
    KvmSevLaunchSecret, size = 0x30, {
        /// User address of the 52-byte packet header.
        hdr_uaddr: u64 = 0x00,
        /// Its length.
        hdr_len: u32 = 0x08,
        /// Padding.
        pad0: u32 = 0x0C,
        /// Guest memory (user address) receiving the secret; physically contiguous.
        guest_uaddr: u64 = 0x10,
        /// Its length.
        guest_len: u32 = 0x18,
        /// Padding.
        pad1: u32 = 0x1C,
        /// User address of the ciphertext.
        trans_uaddr: u64 = 0x20,
        /// Its length.
        trans_len: u32 = 0x28,
        /// Padding.
        pad2: u32 = 0x2C,
    }
);

uapi!(
    /// `struct kvm_sev_launch_measure` (KVM_SEV_LAUNCH_MEASURE, §7.2). `len = 0` is the
    /// length query (§7.3).
    KvmSevLaunchMeasure, size = 0x10, {
        /// User address of the 48-byte output.
        uaddr: u64 = 0x00,
        /// In: buffer length; out: the length written / required.
        len: u32 = 0x08,
        /// Padding.
        pad0: u32 = 0x0C,
    }
);

uapi!(
    /// `struct kvm_sev_guest_status` (KVM_SEV_GUEST_STATUS, §7.2).
    KvmSevGuestStatus, size = 0x0C, {
        /// Out: firmware handle.
        handle: u32 = 0x00,
        /// Out: guest policy.
        policy: u32 = 0x04,
        /// Out: the firmware's state byte (`sev_buf::SevGuestState`).
        state: u32 = 0x08,
    }
);

uapi!(
    /// `struct kvm_sev_dbg` (KVM_SEV_DBG_DECRYPT / KVM_SEV_DBG_ENCRYPT, §6.2).
    KvmSevDbg, size = 0x18, {
        /// Source user address.
        src_uaddr: u64 = 0x00,
        /// Destination user address.
        dst_uaddr: u64 = 0x08,
        /// Length in bytes (non-zero).
        len: u32 = 0x10,
        /// Padding.
        pad0: u32 = 0x14,
    }
);

uapi!(
    /// `struct kvm_sev_attestation_report` (KVM_SEV_GET_ATTESTATION_REPORT, §7.2).
    /// `len = 0` is the length query.
    KvmSevAttestationReport, size = 0x20, {
        /// Nonce placed in the report.
        mnonce: [u8; 16] = 0x00,
        /// User address of the 0xD0-byte report output.
        uaddr: u64 = 0x10,
        /// In: buffer length; out: the length written / required.
        len: u32 = 0x18,
        /// Padding.
        pad0: u32 = 0x1C,
    }
);

uapi!(
    /// `struct kvm_sev_send_start` (KVM_SEV_SEND_START, §7.2). `session_len = 0` is
    /// the length query.
    KvmSevSendStart, size = 0x48, {
        /// Out: guest policy.
        policy: u32 = 0x00,
        /// Padding.
        pad0: u32 = 0x04,
        /// User address of the target's PDH certificate.
        pdh_cert_uaddr: u64 = 0x08,
        /// Its length.
        pdh_cert_len: u32 = 0x10,
        /// Padding.
        pad1: u32 = 0x14,
        /// User address of the target's PEK ‖ OCA ‖ CEK.
        plat_certs_uaddr: u64 = 0x18,
        /// Its length.
        plat_certs_len: u32 = 0x20,
        /// Padding.
        pad2: u32 = 0x24,
        /// User address of the target's ASK ‖ ARK.
        amd_certs_uaddr: u64 = 0x28,
        /// Its length.
        amd_certs_len: u32 = 0x30,
        /// Padding.
        pad3: u32 = 0x34,
        /// User address of the 128-byte session output.
        session_uaddr: u64 = 0x38,
        /// In: buffer length; out: the length written / required.
        session_len: u32 = 0x40,
        /// Padding.
        pad4: u32 = 0x44,
    }
);

uapi!(
    /// `struct kvm_sev_send_update_data` (KVM_SEV_SEND_UPDATE_DATA, §7.2). `hdr_len = 0`
    /// or `trans_len = 0` is the length query.
    KvmSevSendUpdateData, size = 0x30, {
        /// User address of the packet header output.
        hdr_uaddr: u64 = 0x00,
        /// Its length.
        hdr_len: u32 = 0x08,
        /// Padding.
        pad0: u32 = 0x0C,
        /// Guest memory to send (user address; ≤ one page, not crossing it).
        guest_uaddr: u64 = 0x10,
        /// Its length.
        guest_len: u32 = 0x18,
        /// Padding.
        pad1: u32 = 0x1C,
        /// User address of the ciphertext output.
        trans_uaddr: u64 = 0x20,
        /// Its length.
        trans_len: u32 = 0x28,
        /// Padding.
        pad2: u32 = 0x2C,
    }
);

uapi!(
    /// `struct kvm_sev_receive_start` (KVM_SEV_RECEIVE_START, §7.2).
    KvmSevReceiveStart, size = 0x28, {
        /// In/out: firmware handle (0 = fresh key).
        handle: u32 = 0x00,
        /// Guest policy.
        policy: u32 = 0x04,
        /// User address of the source platform's PDH certificate.
        pdh_uaddr: u64 = 0x08,
        /// Its length.
        pdh_len: u32 = 0x10,
        /// Padding.
        pad0: u32 = 0x14,
        /// User address of the session blob.
        session_uaddr: u64 = 0x18,
        /// Its length.
        session_len: u32 = 0x20,
        /// Padding.
        pad1: u32 = 0x24,
    }
);

uapi!(
    /// `struct kvm_sev_receive_update_data` (KVM_SEV_RECEIVE_UPDATE_DATA, §7.2).
    KvmSevReceiveUpdateData, size = 0x30, {
        /// User address of the packet header.
        hdr_uaddr: u64 = 0x00,
        /// Its length.
        hdr_len: u32 = 0x08,
        /// Padding.
        pad0: u32 = 0x0C,
        /// Guest memory receiving the data (user address; one page, not crossing it).
        guest_uaddr: u64 = 0x10,
        /// Its length.
        guest_len: u32 = 0x18,
        /// Padding.
        pad1: u32 = 0x1C,
        /// User address of the ciphertext.
        trans_uaddr: u64 = 0x20,
        /// Its length.
        trans_len: u32 = 0x28,
        /// Padding.
        pad2: u32 = 0x2C,
    }
);

uapi!(
    /// softsev extension (sev-legacy.md §7.1: upstream KVM answers id 10 with
    /// `-EINVAL`): `struct kvm_sev_send_update_vmsa` for KVM_SEV_SEND_UPDATE_VMSA,
    /// modelled on the out-of-tree SEV-ES/CSV2 migration series (Hygon's
    /// `kvm_csv_send_update_vmsa`, deepin-community/kernel `arch/x86/kvm/svm/csv.c`
    /// `csv_send_update_vmsa`). `hdr_len = 0` or `trans_len = 0` is the length query.
    KvmSevSendUpdateVmsa, size = 0x28, {
        /// The vCPU whose VMSA is sent (`kvm_get_vcpu_by_id`).
        vcpu_id: u32 = 0x00,
        /// Padding.
        pad: u32 = 0x04,
        /// User address of the packet header output.
        hdr_uaddr: u64 = 0x08,
        /// Its length.
        hdr_len: u32 = 0x10,
        /// Padding.
        pad2: u32 = 0x14,
        /// User address of the ciphertext output (4096 bytes).
        trans_uaddr: u64 = 0x18,
        /// Its length.
        trans_len: u32 = 0x20,
        /// Padding.
        pad3: u32 = 0x24,
    }
);

uapi!(
    /// softsev extension (§7.1: upstream answers id 14 with `-EINVAL`):
    /// `struct kvm_sev_receive_update_vmsa` for KVM_SEV_RECEIVE_UPDATE_VMSA, as
    /// [`KvmSevSendUpdateVmsa`] (Hygon `csv_receive_update_vmsa`).
    KvmSevReceiveUpdateVmsa, size = 0x28, {
        /// The vCPU whose VMSA page receives the state.
        vcpu_id: u32 = 0x00,
        /// Padding.
        pad: u32 = 0x04,
        /// User address of the packet header.
        hdr_uaddr: u64 = 0x08,
        /// Its length.
        hdr_len: u32 = 0x10,
        /// Padding.
        pad2: u32 = 0x14,
        /// User address of the ciphertext.
        trans_uaddr: u64 = 0x18,
        /// Its length.
        trans_len: u32 = 0x20,
        /// Padding.
        pad3: u32 = 0x24,
    }
);

uapi!(
    /// `struct kvm_dirty_log` (KVM_GET_DIRTY_LOG; Linux `include/uapi/linux/kvm.h`):
    /// the slot (address space in bits 16+) and the user address of a bitmap with
    /// one bit per 4 KiB page of the slot, LSB first, in u64 words.
    KvmDirtyLog, size = 0x10, {
        /// Slot id (bits 0–15) and address space (bits 16–31).
        slot: u32 = 0x00,
        /// Padding.
        pad: u32 = 0x04,
        /// User address of the bitmap (`ALIGN(npages, 64) / 8` bytes).
        dirty_bitmap: u64 = 0x08,
    }
);

uapi!(
    /// `struct kvm_sev_snp_launch_start`.
    KvmSevSnpLaunchStart, size = 0x40, {
        /// Guest policy (bit 17 must be set).
        policy: u64 = 0x00,
        /// Guest-OS-visible workarounds.
        gosvw: [u8; 16] = 0x08,
        /// Flags, MBZ.
        flags: u16 = 0x18,
        /// Padding.
        pad0: [u8; 6] = 0x1A,
        /// Padding.
        pad1: [u64; 4] = 0x20,
    }
);

uapi!(
    /// `struct kvm_sev_snp_launch_update`. `gfn_start`, `uaddr` and `len` are rewritten
    /// with the unprocessed remainder.
    KvmSevSnpLaunchUpdate, size = 0x40, {
        /// First GFN.
        gfn_start: u64 = 0x00,
        /// User address of the source (ignored for ZERO pages).
        uaddr: u64 = 0x08,
        /// Length in bytes (non-zero, 4 KiB multiple).
        len: u64 = 0x10,
        /// Page type ([`crate::page_info::PageType`], not VMSA).
        page_type: u8 = 0x18,
        /// Padding.
        pad0: u8 = 0x19,
        /// Flags, MBZ.
        flags: u16 = 0x1A,
        /// Padding.
        pad1: u32 = 0x1C,
        /// Padding.
        pad2: [u64; 4] = 0x20,
    }
);

uapi!(
    /// `struct kvm_sev_snp_launch_finish`.
    KvmSevSnpLaunchFinish, size = 0x58, {
        /// User address of the 96-byte ID block.
        id_block_uaddr: u64 = 0x00,
        /// User address of the 4096-byte ID authentication page.
        id_auth_uaddr: u64 = 0x08,
        /// ID block present.
        id_block_en: u8 = 0x10,
        /// Author key present.
        auth_key_en: u8 = 0x11,
        /// VCEK disabled (VLEK only).
        vcek_disabled: u8 = 0x12,
        /// Host data copied into reports.
        host_data: [u8; 32] = 0x13,
        /// Padding.
        pad0: [u8; 3] = 0x33,
        /// Flags, MBZ.
        flags: u16 = 0x36,
        /// Padding.
        pad1: [u64; 4] = 0x38,
    }
);

uapi!(
    /// `struct kvm_enc_region` (legacy REG_REGION / UNREG_REGION).
    KvmEncRegion, size = 0x10, {
        /// User address.
        addr: u64 = 0x00,
        /// Size in bytes.
        size: u64 = 0x08,
    }
);

uapi!(
    /// `struct kvm_memory_attributes` (KVM_SET_MEMORY_ATTRIBUTES).
    KvmMemoryAttributes, size = 0x20, {
        /// First GPA (page aligned).
        address: u64 = 0x00,
        /// Size (page aligned, non-zero).
        size: u64 = 0x08,
        /// Attributes ([`KVM_MEMORY_ATTRIBUTE_PRIVATE`]).
        attributes: u64 = 0x10,
        /// Flags, MBZ.
        flags: u64 = 0x18,
    }
);

uapi!(
    /// `struct kvm_userspace_memory_region2` (KVM_SET_USER_MEMORY_REGION2).
    KvmUserspaceMemoryRegion2, size = 0xA0, {
        /// Slot id.
        slot: u32 = 0x00,
        /// `KVM_MEM_*` flags.
        flags: u32 = 0x04,
        /// First GPA.
        guest_phys_addr: u64 = 0x08,
        /// Size in bytes (0 deletes the slot).
        memory_size: u64 = 0x10,
        /// User address of the shared backing.
        userspace_addr: u64 = 0x18,
        /// Offset into the guest_memfd.
        guest_memfd_offset: u64 = 0x20,
        /// guest_memfd file descriptor.
        guest_memfd: u32 = 0x28,
        /// Padding.
        pad1: u32 = 0x2C,
        /// Padding.
        pad2: [u64; 14] = 0x30,
    }
);

uapi!(
    /// `struct kvm_create_guest_memfd`.
    KvmCreateGuestMemfd, size = 0x40, {
        /// Size in bytes (page multiple).
        size: u64 = 0x00,
        /// Flags.
        flags: u64 = 0x08,
        /// Reserved, MBZ.
        reserved: [u64; 6] = 0x10,
    }
);

crate::open_enum! {
    /// `KVM_CREATE_VM` machine type on x86.
    pub struct VmType(u32) {
        /// Plain VM (legacy SEV_INIT/ES_INIT possible).
        DEFAULT = 0,
        /// Software-protected private memory (testing).
        SW_PROTECTED = 1,
        /// SEV.
        SEV = 2,
        /// SEV-ES.
        SEV_ES = 3,
        /// SEV-SNP.
        SNP = 4,
        /// TDX.
        TDX = 5,
    }
}

crate::open_enum! {
    /// `enum sev_cmd_id`: the `KVM_MEMORY_ENCRYPT_OP` commands.
    pub struct SevCmdId(u32) {
        /// Deprecated SEV init (DEFAULT VMs).
        INIT = 0,
        /// Deprecated SEV-ES init (DEFAULT VMs).
        ES_INIT = 1,
        /// LAUNCH_START.
        LAUNCH_START = 2,
        /// LAUNCH_UPDATE_DATA.
        LAUNCH_UPDATE_DATA = 3,
        /// LAUNCH_UPDATE_VMSA.
        LAUNCH_UPDATE_VMSA = 4,
        /// LAUNCH_SECRET.
        LAUNCH_SECRET = 5,
        /// LAUNCH_MEASURE.
        LAUNCH_MEASURE = 6,
        /// LAUNCH_FINISH.
        LAUNCH_FINISH = 7,
        /// SEND_START.
        SEND_START = 8,
        /// SEND_UPDATE_DATA.
        SEND_UPDATE_DATA = 9,
        /// SEND_UPDATE_VMSA (not handled by KVM).
        SEND_UPDATE_VMSA = 10,
        /// SEND_FINISH.
        SEND_FINISH = 11,
        /// RECEIVE_START.
        RECEIVE_START = 12,
        /// RECEIVE_UPDATE_DATA.
        RECEIVE_UPDATE_DATA = 13,
        /// RECEIVE_UPDATE_VMSA (not handled by KVM).
        RECEIVE_UPDATE_VMSA = 14,
        /// RECEIVE_FINISH.
        RECEIVE_FINISH = 15,
        /// GUEST_STATUS.
        GUEST_STATUS = 16,
        /// DBG_DECRYPT.
        DBG_DECRYPT = 17,
        /// DBG_ENCRYPT.
        DBG_ENCRYPT = 18,
        /// CERT_EXPORT (not handled by KVM).
        CERT_EXPORT = 19,
        /// GET_ATTESTATION_REPORT.
        GET_ATTESTATION_REPORT = 20,
        /// SEND_CANCEL.
        SEND_CANCEL = 21,
        /// INIT2.
        INIT2 = 22,
        /// SNP_LAUNCH_START.
        SNP_LAUNCH_START = 100,
        /// SNP_LAUNCH_UPDATE.
        SNP_LAUNCH_UPDATE = 101,
        /// SNP_LAUNCH_FINISH.
        SNP_LAUNCH_FINISH = 102,
        /// SNP_ENABLE_REQ_CERTS.
        SNP_ENABLE_REQ_CERTS = 103,
    }
}

crate::open_enum! {
    /// `kvm_run.exit_reason` values used with confidential guests.
    pub struct ExitReason(u32) {
        /// Unknown.
        UNKNOWN = 0,
        /// Exception.
        EXCEPTION = 1,
        /// Port I/O.
        IO = 2,
        /// Hypercall forwarded to userspace.
        HYPERCALL = 3,
        /// Debug.
        DEBUG = 4,
        /// HLT.
        HLT = 5,
        /// MMIO.
        MMIO = 6,
        /// Triple fault.
        SHUTDOWN = 8,
        /// VMRUN failed.
        FAIL_ENTRY = 9,
        /// Internal error.
        INTERNAL_ERROR = 17,
        /// System event.
        SYSTEM_EVENT = 24,
        /// AP reset hold (userspace LAPIC).
        AP_RESET_HOLD = 32,
        /// Memory fault (private/shared mismatch).
        MEMORY_FAULT = 39,
        /// SNP certificate request (number not yet stable upstream).
        SNP_REQ_CERTS = 42,
    }
}

crate::open_enum! {
    /// `kvm_run.system_event.type`.
    pub struct SystemEventType(u32) {
        /// Shutdown.
        SHUTDOWN = 1,
        /// Reset.
        RESET = 2,
        /// Crash.
        CRASH = 3,
        /// Wakeup.
        WAKEUP = 4,
        /// Suspend.
        SUSPEND = 5,
        /// SEV guest termination request.
        SEV_TERM = 6,
    }
}

crate::open_enum! {
    /// Linux errno values KVM returns (positive numbers; the ioctl returns −errno).
    pub struct Errno(i32) {
        /// Operation not permitted.
        EPERM = 1,
        /// No such entry.
        ENOENT = 2,
        /// I/O error (firmware failure; `error` holds the status).
        EIO = 5,
        /// No such device or address (unknown device attribute).
        ENXIO = 6,
        /// Bad file descriptor.
        EBADF = 9,
        /// Try again.
        EAGAIN = 11,
        /// Out of memory.
        ENOMEM = 12,
        /// Bad address.
        EFAULT = 14,
        /// Busy (no free ASID).
        EBUSY = 16,
        /// Exists.
        EEXIST = 17,
        /// Invalid argument.
        EINVAL = 22,
        /// Not a typewriter (feature not available).
        ENOTTY = 25,
        /// No space left (certificate buffer too small).
        ENOSPC = 28,
        /// Not supported.
        EOPNOTSUPP = 95,
        /// Memory poisoned.
        EHWPOISON = 133,
    }
}

/// The only memory attribute: private.
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;
/// Memslot flag: dirty logging.
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// Memslot flag: read-only.
pub const KVM_MEM_READONLY: u32 = 1 << 1;
/// Memslot flag: the slot has a guest_memfd.
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
/// `memory_fault.flags`: the access was private.
pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;

/// Hypercall number of MAP_GPA_RANGE.
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
/// MAP_GPA_RANGE attribute: 4 KiB pages.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_4K: u64 = 0;
/// MAP_GPA_RANGE attribute: 2 MiB pages.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_2M: u64 = 1;
/// MAP_GPA_RANGE attribute: 1 GiB pages.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_1G: u64 = 2;
/// MAP_GPA_RANGE attribute: make encrypted (private).
pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;
/// MAP_GPA_RANGE attribute: make decrypted (shared).
pub const KVM_MAP_GPA_RANGE_DECRYPTED: u64 = 0;

/// `KVM_X86_GRP_SEV` device-attribute group on /dev/kvm.
pub const KVM_X86_GRP_SEV: u32 = 1;
/// Attribute: accepted `vmsa_features`.
pub const KVM_X86_SEV_VMSA_FEATURES: u64 = 0;
/// Attribute: accepted SNP policy bits.
pub const KVM_X86_SNP_POLICY_BITS: u64 = 1;
/// Attribute: certificate exit supported.
pub const KVM_X86_SEV_SNP_REQ_CERTS: u64 = 2;

/// `KVM_MP_STATE_AP_RESET_HOLD`.
pub const KVM_MP_STATE_AP_RESET_HOLD: u32 = 9;

/// ID block size of SNP_LAUNCH_FINISH.
pub const KVM_SEV_SNP_ID_BLOCK_SIZE: usize = 96;
/// ID authentication page size.
pub const KVM_SEV_SNP_ID_AUTH_SIZE: usize = 4096;
/// Host data size.
pub const KVM_SEV_SNP_FINISH_DATA_SIZE: usize = 32;

crate::open_enum! {
    /// KVM capabilities relevant to confidential guests.
    pub struct KvmCap(u32) {
        /// VM_COPY_ENC_CONTEXT_FROM (mirror VMs).
        VM_COPY_ENC_CONTEXT_FROM = 197,
        /// EXIT_HYPERCALL (bitmask of hypercalls forwarded to userspace).
        EXIT_HYPERCALL = 201,
        /// VM_MOVE_ENC_CONTEXT_FROM (intra-host migration).
        VM_MOVE_ENC_CONTEXT_FROM = 206,
        /// USER_MEMORY2.
        USER_MEMORY2 = 231,
        /// MEMORY_FAULT_INFO.
        MEMORY_FAULT_INFO = 232,
        /// MEMORY_ATTRIBUTES.
        MEMORY_ATTRIBUTES = 233,
        /// GUEST_MEMFD.
        GUEST_MEMFD = 234,
        /// VM_TYPES (bitmask of supported types).
        VM_TYPES = 235,
        /// PRE_FAULT_MEMORY.
        PRE_FAULT_MEMORY = 236,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(KvmSevSnpLaunchFinish::LEN, 88);
        assert_eq!(KvmUserspaceMemoryRegion2::LEN, 160);
        assert_eq!(KvmDirtyLog::LEN, 16);
        assert_eq!(KvmSevSendUpdateVmsa::LEN, 40);
        assert_eq!(KvmSevReceiveUpdateVmsa::LEN, 40);
        assert_eq!(format!("{:?}", SevCmdId(101)), "SNP_LAUNCH_UPDATE");
        assert_eq!(format!("{:?}", VmType(9)), "VmType(0x9)");
        assert_eq!(Errno::EINVAL.0, 22);
        let mut f = KvmSevSnpLaunchFinish::default();
        f.host_data[0] = 0xAA;
        assert_eq!(f.as_bytes()[0x13], 0xAA);
    }
}
