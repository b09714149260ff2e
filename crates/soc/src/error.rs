//! Faults the SoC raises (what real hardware would deliver to the host or the guest)
//! and errors for requests the model cannot carry out (bad input, never a panic).
//!
//! Error-code bits: host #PF (Linux `X86_PF_*`, APM vol. 2 §8.4.2 and §15.36.10) and
//! #VMEXIT(NPF) EXITINFO1 (Linux `PFERR_*`, host-interfaces.md §3.4).

use softsev_abi::{Gpa, Spa};
use thiserror::Error;

/// #PF / NPF error-code bit 0: the translation was present.
pub const PF_PRESENT: u64 = 1 << 0;
/// Bit 1: the access was a write.
pub const PF_WRITE: u64 = 1 << 1;
/// Bit 2: the access was a user-mode (CPL3) access, or a guest page-table walk (NPF).
pub const PF_USER: u64 = 1 << 2;
/// Bit 3: a reserved bit was set in a paging-structure entry.
pub const PF_RSVD: u64 = 1 << 3;
/// Bit 4: the access was an instruction fetch.
pub const PF_FETCH: u64 = 1 << 4;
/// Bit 31: the fault was caused by an RMP check (#PF `X86_PF_RMP`, NPF `PFERR_GUEST_RMP`).
pub const PF_RMP: u64 = 1 << 31;
/// NPF bit 32: the fault happened on the final GPA of the access.
pub const NPF_FINAL_GPA: u64 = 1 << 32;
/// NPF bit 33: the fault happened while walking the guest's page tables.
pub const NPF_PAGE_WALK: u64 = 1 << 33;
/// NPF bit 34: the access was private (effective C-bit 1).
pub const NPF_ENC: u64 = 1 << 34;
/// NPF bit 35: PVALIDATE / RMPADJUST page-size mismatch (4 KiB request, 2 MiB RMP entry).
pub const NPF_SIZEM: u64 = 1 << 35;
/// NPF bit 36: VMPL permission violation.
pub const NPF_VMPL: u64 = 1 << 36;

/// #VC exit code for an access to a page that is not validated (APM: `VMEXIT_NPF`
/// variant reported to the guest as #VC 0x404).
pub const VC_NOT_VALIDATED: u64 = 0x404;

/// A fault raised by the SoC, as the hardware would deliver it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// #PF delivered to the host (for RMP-caused faults `error_code` has `PF_RMP` set).
    /// `addr` is the system physical address of the faulting byte (the model has no
    /// host virtual addresses).
    PageFault {
        /// Faulting address.
        addr: Spa,
        /// #PF error code (`PF_*` bits).
        error_code: u64,
    },
    /// #VMEXIT(NPF) to the hypervisor.
    Npf {
        /// Faulting guest physical address (EXITINFO2).
        gpa: Gpa,
        /// EXITINFO1 (`PF_*` and `NPF_*` bits).
        error_code: u64,
    },
    /// #VC raised in the guest.
    Vc {
        /// The #VC error code (`VC_NOT_VALIDATED` for an unvalidated page).
        exit_code: u64,
        /// The guest physical address the access targeted (the guest sees its VA in CR2).
        gpa: Gpa,
    },
    /// The IOMMU refused a device (DMA) access to a page that is not hypervisor-owned.
    Iommu {
        /// The address the device accessed.
        spa: Spa,
        /// Whether the access was a write.
        write: bool,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::PageFault { addr, error_code } => {
                write!(f, "#PF at SPA {addr} (error code {error_code:#x})")
            }
            Fault::Npf { gpa, error_code } => {
                write!(f, "#NPF at GPA {gpa} (EXITINFO1 {error_code:#x})")
            }
            Fault::Vc { exit_code, gpa } => write!(f, "#VC {exit_code:#x} at GPA {gpa}"),
            Fault::Iommu { spa, write } => write!(
                f,
                "IOMMU fault on DMA {} at SPA {spa}",
                if *write { "write" } else { "read" }
            ),
        }
    }
}

/// Why the SoC could not carry out a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SocError {
    /// The access faulted, as it would on hardware.
    #[error("{0}")]
    Fault(Fault),
    /// The span lies (partly) outside installed memory.
    #[error("{len} bytes at SPA {spa} lie outside the {size:#x}-byte physical memory")]
    OutOfRange {
        /// Start of the span.
        spa: Spa,
        /// Length of the span.
        len: u64,
        /// Installed memory size.
        size: u64,
    },
    /// A single guest access must stay inside one 4 KiB page (the nested walk splits).
    #[error("guest access of {len} bytes at GPA {gpa} crosses a 4 KiB page boundary")]
    CrossesPage {
        /// Start of the access.
        gpa: Gpa,
        /// Its length.
        len: u64,
    },
    /// The GPA and SPA of a guest access disagree in their page offset.
    #[error("guest access GPA {gpa} and SPA {spa} have different page offsets")]
    OffsetMismatch {
        /// The GPA given.
        gpa: Gpa,
        /// The SPA given.
        spa: Spa,
    },
    /// An in-place encryption span must be 16-byte aligned in address and length.
    #[error("{len} bytes at SPA {spa} are not a 16-byte aligned span")]
    Misaligned {
        /// Start of the span.
        spa: Spa,
        /// Its length.
        len: u64,
    },
    /// An encrypted access for an ASID that has no key installed.
    #[error("no memory-encryption key is installed for ASID {0}")]
    NoKey(u32),
    /// A key-slot operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A firmware RMP access named a page outside the RMP.
    #[error("SPA {0} is not covered by the RMP")]
    NotCovered(Spa),
}

impl SocError {
    /// The fault, if this error is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            SocError::Fault(f) => Some(*f),
            _ => None,
        }
    }
}

impl From<Fault> for SocError {
    fn from(f: Fault) -> Self {
        SocError::Fault(f)
    }
}

/// Failures of key-slot management (ACTIVATE / DEACTIVATE / DF_FLUSH).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The ASID is 0 (the host) or beyond the configured ASID count.
    #[error("ASID {asid} is not a guest ASID of this SoC (1..{count})")]
    BadAsid {
        /// The ASID given.
        asid: u32,
        /// Number of ASIDs (valid guest ASIDs are 1..count).
        count: u32,
    },
    /// The ASID already has a key.
    #[error("ASID {0} already has an active key")]
    AsidActive(u32),
    /// The ASID was deactivated and caches have not been flushed since (WBINVD + DF_FLUSH).
    #[error("ASID {0} was deactivated and needs WBINVD + DF_FLUSH before reuse")]
    NeedsFlush(u32),
    /// DEACTIVATE of an ASID that has no key.
    #[error("ASID {0} has no active key")]
    NotActive(u32),
    /// DF_FLUSH without a WBINVD on all cores since the last deactivation.
    #[error("DF_FLUSH requires WBINVD on all cores first")]
    WbinvdRequired,
}
