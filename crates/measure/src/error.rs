//! Errors of the measurement library. Every message names the object and the value.

use std::path::PathBuf;

/// Anything that stops a launch digest from being computed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A file could not be read.
    #[error("cannot read {what} '{}': {error}", path.display())]
    Io {
        /// What the file is (OVMF, kernel, initrd, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// The image size is unusable (empty, not page-multiple, larger than its window).
    #[error("{what} image is {size} bytes: {reason}")]
    ImageSize {
        /// Which image.
        what: &'static str,
        /// Its size.
        size: usize,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The footer GUID table length points outside the image.
    #[error("OVMF footer table length {len:#x} exceeds the {size}-byte image")]
    FooterTableLength {
        /// Table length from the footer entry.
        len: u16,
        /// Image size.
        size: usize,
    },
    /// A footer-table entry has an impossible length.
    #[error("OVMF footer table entry {guid} has length {len:#x} (must be 18..={max:#x})")]
    FooterEntryLength {
        /// Entry GUID.
        guid: softsev_abi::Guid,
        /// Its length field.
        len: u16,
        /// Bytes remaining in the table.
        max: usize,
    },
    /// A footer-table entry is too short for the value it must hold.
    #[error("OVMF footer table entry {guid} has {len} data bytes; {need} needed")]
    FooterEntryPayload {
        /// Entry GUID.
        guid: softsev_abi::Guid,
        /// Its data length.
        len: usize,
        /// Needed length.
        need: usize,
    },
    /// The SEV metadata offset points outside the image.
    #[error(
        "SEV metadata offset {offset:#x} (from the image end) is outside the {size}-byte image"
    )]
    MetadataOffset {
        /// Offset from the image end.
        offset: u32,
        /// Image size.
        size: usize,
    },
    /// The SEV metadata header signature is not "ASEV".
    #[error("SEV metadata signature {found:02x?} is not 'ASEV'")]
    MetadataSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The SEV metadata version is not 1.
    #[error("SEV metadata version {0} is not 1")]
    MetadataVersion(u32),
    /// The descriptors do not fit in the header length or the image.
    #[error(
        "SEV metadata with {items} items does not fit: header length {len:#x}, {avail:#x} bytes left in the image"
    )]
    MetadataLength {
        /// NUM_ITEMS.
        items: u32,
        /// LENGTH.
        len: u32,
        /// Bytes from the header to the image end.
        avail: usize,
    },
    /// A metadata section has an unknown type.
    #[error("SEV metadata section {index} at {base:#x} has unknown type {kind:#x}")]
    UnknownSection {
        /// Index in the table.
        index: usize,
        /// Base GPA.
        base: u32,
        /// Type value.
        kind: u32,
    },
    /// A metadata section is not page aligned.
    #[error(
        "SEV metadata section {index} ({kind:?} at {base:#x}, size {size:#x}) is not 4 KiB aligned"
    )]
    SectionAlignment {
        /// Index in the table.
        index: usize,
        /// Section type.
        kind: softsev_abi::ovmf::SectionType,
        /// Base GPA.
        base: u32,
        /// Size.
        size: u32,
    },
    /// The kernel-hashes section is not exactly one page.
    #[error("SNP_KERNEL_HASHES section at {base:#x} has size {size:#x}; it must be 0x1000")]
    KernelHashesSectionSize {
        /// Base GPA.
        base: u32,
        /// Size.
        size: u32,
    },
    /// The hash table would cross the end of its page.
    #[error(
        "SEV hash table at GPA {gpa:#x} does not fit in its page (176 bytes from offset {offset:#x})"
    )]
    HashTablePlacement {
        /// Table GPA.
        gpa: u32,
        /// Offset in the page.
        offset: u32,
    },
    /// No SEV-ES reset block in the footer table.
    #[error(
        "Can't find SEV_ES_RESET_BLOCK_GUID entry in OVMF table (00f771de-1a7e-4fcb-890e-68c77e2fb44e)"
    )]
    NoResetBlock,
    /// More than one vCPU, but the AP reset address is zero.
    #[error("{vcpus} vCPUs requested but the OVMF SEV-ES AP reset address is 0")]
    NoApResetAddress {
        /// vCPU count.
        vcpus: u32,
    },
    /// No hash-table block in the footer table (SNP with a kernel).
    #[error(
        "Can't find SEV_HASH_TABLE_RV_GUID entry in OVMF table (7255371f-3a3b-4b04-927b-1da6efa8d454)"
    )]
    NoHashTableBlock,
    /// SNP with a kernel, but no SNP_KERNEL_HASHES section.
    #[error("Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section")]
    NoKernelHashesSection,
    /// SEV/SEV-ES with a kernel, but no usable hash-table block.
    #[error("Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement")]
    NoHashTableSupport,
    /// SVSM image without SVSM info entry.
    #[error("Can't find SVSM_INFO_GUID entry in SVSM table (a789a612-0597-4c4b-a49f-cbb1fe9d1ddd)")]
    NoSvsmInfo,
    /// A page handed to the digest is not 4 KiB.
    #[error("{page_type:?} page at {gpa} is {len} bytes; LAUNCH_UPDATE pages are 4096 bytes")]
    PageLength {
        /// Page type.
        page_type: softsev_abi::page_info::PageType,
        /// GPA.
        gpa: softsev_abi::Gpa,
        /// Length given.
        len: usize,
    },
    /// A page type outside 1..=6.
    #[error("page type {0:?} at is not a LAUNCH_UPDATE page type (1..=6)")]
    BadPageType(softsev_abi::page_info::PageType),
    /// Zero vCPUs.
    #[error("vCPU count {0} is out of range (1..)")]
    VcpuCount(u32),
    /// The GPA range of a region overflows.
    #[error("region at {gpa:#x} of {len:#x} bytes overflows the address space")]
    GpaOverflow {
        /// Start.
        gpa: u64,
        /// Length.
        len: u64,
    },
}

/// Result alias.
pub type Result<T, E = MeasureError> = std::result::Result<T, E>;
