//! The guest's errors. Each names the object and the value involved (the GPA, the exit
//! code, the status), and says which termination reason, if any, a Linux/OVMF guest
//! sends the hypervisor when it hits it (host-interfaces.md §2.4 "Termination reasons").

use crate::platform::{GuestFault, PageSize};
use softsev_abi::ghcb::{
    GhcbError, GuestReqVmmError, NaeExit, SEV_STATUS_SEV_ES, SEV_STATUS_SNP, TERM_SET_GHCB,
    TERM_SET_LINUX,
};
use softsev_abi::rmp::RmpStatus;
use softsev_abi::{FwStatus, Gpa};

/// Set 1 (Linux) code 0: GHCB registration failed.
pub const TERM_LINUX_GHCB_REGISTER: u8 = 0;
/// Set 1 code 1: page state change failed.
pub const TERM_LINUX_PSC: u8 = 1;
/// Set 1 code 2: PVALIDATE failed.
pub const TERM_LINUX_PVALIDATE: u8 = 2;
/// Set 1 code 6: secrets page missing or unusable.
pub const TERM_LINUX_SECRETS_PAGE: u8 = 6;
/// Set 1 code 4: CPUID page validation failed.
pub const TERM_LINUX_CPUID: u8 = 4;

/// Set 1 code 1 as OVMF's reset vector uses it: a #VC other than CPUID arrived before
/// a GHCB existed (edk2 `OvmfPkg/ResetVector/Ia32/AmdSev.asm`, `TERM_VC_NOT_CPUID`).
pub const TERM_OVMF_VC_NOT_CPUID: u8 = 1;
/// Set 1 code 2 as OVMF's reset vector uses it: an MSR-protocol answer with the wrong
/// response code (`TERM_UNEXPECTED_RESP_CODE`).
pub const TERM_OVMF_UNEXPECTED_RESP: u8 = 2;

/// Everything that can stop the guest model.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// SEV_STATUS does not have the SNP bit (or SEV-ES): not an SNP guest.
    #[error("SEV_STATUS {sev_status:#x} does not report SEV-SNP (bits 0..2 must all be set)")]
    NotSnp {
        /// The SEV_STATUS value read.
        sev_status: u64,
    },
    /// SEV_STATUS bit 0 is clear: not an SEV guest at all (OVMF takes its no-SEV path;
    /// without SEV-ES there is no GHCB to ask for termination through).
    #[error("SEV_STATUS {sev_status:#x} does not report SEV (bit 0)")]
    NotSev {
        /// The SEV_STATUS value read.
        sev_status: u64,
    },
    /// SEV_STATUS reports another SEV mode than the one the guest was launched for.
    #[error("SEV_STATUS {sev_status:#x} does not match the {expected} launch")]
    SevMode {
        /// The mode the guest expected ("SEV" or "SEV-ES").
        expected: &'static str,
        /// The SEV_STATUS value read.
        sev_status: u64,
    },
    /// The hypervisor supports no GHCB protocol version an SEV-ES guest can use (1 or 2).
    #[error("GHCB protocol versions {min}..={max} offered by the hypervisor; SEV-ES needs 1 or 2")]
    UnsupportedGhcbVersionEs {
        /// Lowest version offered.
        min: u16,
        /// Highest version offered.
        max: u16,
    },
    /// CPUID does not report SEV (leaf 0x8000_001F missing or EAX bit 1 clear): OVMF's
    /// no-SEV path.
    #[error("CPUID {leaf:#x} = {value:#x}: no SEV memory encryption reported")]
    NoSevCpuid {
        /// The leaf checked.
        leaf: u32,
        /// The register value that failed.
        value: u32,
    },
    /// The C-bit position from CPUID 0x8000_001F EBX\[5:0\] is unusable (OVMF halts on a
    /// position below 32).
    #[error("C-bit position {cbit} from CPUID 0x8000001f is not in 32..=63")]
    CbitPosition {
        /// The position reported.
        cbit: u8,
    },
    /// The MSR-protocol CPUID exchange of the #VC handler got a wrong answer.
    #[error("#VC CPUID {function:#x} register {reg}: MSR protocol answered {response:#x}")]
    VcCpuidMsr {
        /// The CPUID function.
        function: u32,
        /// The register asked for (0 EAX .. 3 EDX).
        reg: u8,
        /// The raw GHCB MSR value read back.
        response: u64,
    },
    /// A #VC the handler cannot handle (`early`: before a GHCB existed, where only
    /// CPUID through the MSR protocol is possible).
    #[error("unhandled #VC (error code {code:#x}){}: {what}", if *.early { " before the GHCB was set up" } else { "" })]
    VcUnhandled {
        /// The #VC error code.
        code: u64,
        /// Whether no GHCB existed yet.
        early: bool,
        /// What was attempted.
        what: String,
    },
    /// The AP jump table could not be set or read.
    #[error("AP jump table: {what} (value {value:#x})")]
    ApJumpTable {
        /// What failed.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// An instruction or access faulted where the guest cannot recover.
    #[error("{op} at GPA {gpa} faulted: {fault}")]
    Fault {
        /// What the guest was doing.
        op: &'static str,
        /// The address involved.
        gpa: Gpa,
        /// The fault.
        fault: GuestFault,
    },
    /// A private page the guest validated was found unvalidated (#VC 0x404): the host
    /// changed its RMP entry behind the guest's back.
    #[error(
        "tampered page: private access to GPA {gpa} raised #VC 0x404 (page no longer validated) during {op}"
    )]
    Tampered {
        /// The faulting GPA.
        gpa: Gpa,
        /// What the guest was doing.
        op: &'static str,
    },
    /// An MSR-protocol request got a response of the wrong kind.
    #[error("GHCB MSR protocol: {request} answered with {response:#x}")]
    MsrProtocol {
        /// The request sent.
        request: &'static str,
        /// The raw MSR value read back.
        response: u64,
    },
    /// The hypervisor supports no GHCB protocol version usable for SNP (2).
    #[error("GHCB protocol versions {min}..={max} offered by the hypervisor; SNP needs version 2")]
    UnsupportedGhcbVersion {
        /// Lowest version offered.
        min: u16,
        /// Highest version offered.
        max: u16,
    },
    /// A required hypervisor feature is missing.
    #[error("hypervisor features {features:#x} lack {feature}")]
    HvFeatureMissing {
        /// The feature's name.
        feature: &'static str,
        /// The bitmap received.
        features: u64,
    },
    /// GHCB GPA registration was refused.
    #[error("GHCB registration of GFN {gfn:#x} refused (response {response:#x})")]
    GhcbRegistration {
        /// The GFN the guest asked to register.
        gfn: u64,
        /// The raw response.
        response: u64,
    },
    /// A full-GHCB call was made before a GHCB was registered.
    #[error("no GHCB registered for NAE event {exit:?}")]
    NoGhcb {
        /// The event.
        exit: NaeExit,
    },
    /// The hypervisor reported malformed input (SW_EXITINFO1 = 2).
    #[error("NAE event {exit:?}: hypervisor reports malformed input {error:?}")]
    GhcbBadInput {
        /// The event.
        exit: NaeExit,
        /// SW_EXITINFO2\[31:0\].
        error: GhcbError,
    },
    /// The hypervisor asked to inject an exception (SW_EXITINFO1 = 1).
    #[error("NAE event {exit:?}: hypervisor injects exception (EVENTINJ {event:#x})")]
    GhcbException {
        /// The event.
        exit: NaeExit,
        /// SW_EXITINFO2 (EVENTINJ encoding).
        event: u64,
    },
    /// The GHCB came back in a state the protocol does not allow.
    #[error("NAE event {exit:?}: bad GHCB response: {what} (value {value:#x})")]
    GhcbBadResponse {
        /// The event.
        exit: NaeExit,
        /// What was wrong.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A page state change failed.
    #[error("page state change of GPA {gpa} failed: {what} (value {value:#x})")]
    Psc {
        /// First GPA of the failing request.
        gpa: Gpa,
        /// What failed.
        what: &'static str,
        /// SW_EXITINFO2, MSR error, or offending value.
        value: u64,
    },
    /// PVALIDATE returned a failure (including "nothing changed", which means the page
    /// was already in the requested state: a possible double-validation attack).
    #[error("PVALIDATE({}) of GPA {gpa} ({size:?}) returned {status:?}", if *.validate { "validate" } else { "rescind" })]
    Pvalidate {
        /// The page.
        gpa: Gpa,
        /// Size operand.
        size: PageSize,
        /// Validate (true) or rescind.
        validate: bool,
        /// RAX.
        status: RmpStatus,
    },
    /// RMPADJUST returned a failure.
    #[error("RMPADJUST of GPA {gpa} with attributes {attrs:#x} returned {status:?}")]
    Rmpadjust {
        /// The page.
        gpa: Gpa,
        /// RDX.
        attrs: u64,
        /// RAX.
        status: RmpStatus,
    },
    /// AP creation was refused.
    #[error(
        "AP creation for APIC ID {apic_id} (VMSA at GPA {vmsa}) refused: SW_EXITINFO1 {info1:#x}"
    )]
    ApCreation {
        /// Target APIC ID.
        apic_id: u32,
        /// VMSA page.
        vmsa: Gpa,
        /// SW_EXITINFO1 returned.
        info1: u64,
    },
    /// The hypervisor does not offer SNP AP creation.
    #[error("hypervisor features {features:#x} lack SNP AP creation (bit 1)")]
    ApCreationUnsupported {
        /// The bitmap received.
        features: u64,
    },
    /// A guest request failed in the hypervisor or the firmware.
    #[error("guest request failed: VMM error {vmm:?}, firmware status {fw:?}")]
    GuestRequest {
        /// SW_EXITINFO2\[63:32\].
        vmm: GuestReqVmmError,
        /// SW_EXITINFO2\[31:0\].
        fw: FwStatus,
    },
    /// The extended request's certificate buffer is too small.
    #[error("certificate buffer of {given} pages too small: the host needs {needed}")]
    CertBufferTooSmall {
        /// Pages given.
        given: u32,
        /// Pages the host asked for (RBX).
        needed: u64,
    },
    /// The certificate table is malformed.
    #[error("certificate table: {what} (entry {index}, value {value:#x})")]
    CertTable {
        /// What is wrong.
        what: &'static str,
        /// Entry index.
        index: usize,
        /// Offending value.
        value: u64,
    },
    /// The guest-message response failed a check; the VMPCK has been disabled.
    #[error(
        "guest message response on VMPCK{vmpck}: {what} (expected {expected:#x}, got {got:#x}); VMPCK{vmpck} disabled"
    )]
    MsgResponse {
        /// The VMPCK used.
        vmpck: u8,
        /// The field.
        what: &'static str,
        /// Expected value.
        expected: u64,
        /// Received value.
        got: u64,
    },
    /// The response did not authenticate; the VMPCK has been disabled.
    #[error(
        "guest message response on VMPCK{vmpck} with seqno {seqno} failed AES-GCM authentication; VMPCK{vmpck} disabled"
    )]
    MsgAuth {
        /// The VMPCK used.
        vmpck: u8,
        /// Response MSG_SEQNO.
        seqno: u64,
    },
    /// The VMPCK was disabled after an earlier failure.
    #[error("VMPCK{vmpck} is disabled after an earlier failed guest request")]
    VmpckDisabled {
        /// The VMPCK.
        vmpck: u8,
    },
    /// The VMPCK in the secrets page is all zero (or the index is out of range).
    #[error("VMPCK{vmpck} is absent (zero) in the secrets page")]
    VmpckAbsent {
        /// The VMPCK.
        vmpck: u8,
    },
    /// The message sequence number would overflow.
    #[error("message sequence number for VMPCK{vmpck} exhausted (last {last})")]
    SeqnoExhausted {
        /// The VMPCK.
        vmpck: u8,
        /// The last number used.
        last: u64,
    },
    /// The firmware answered a guest message with a non-success status.
    #[error("{request} response status {status:?}")]
    MsgStatus {
        /// Request kind.
        request: &'static str,
        /// STATUS.
        status: FwStatus,
    },
    /// The report returned does not carry what was asked for.
    #[error("attestation report: {what}")]
    ReportMismatch {
        /// What differs.
        what: &'static str,
    },
    /// The secrets page could not be used.
    #[error("secrets page at GPA {gpa}: {what}")]
    Secrets {
        /// Its GPA.
        gpa: Gpa,
        /// What is wrong.
        what: String,
    },
    /// The CPUID page is unusable (count 0 or above 64).
    #[error("CPUID page at GPA {gpa}: {count} functions (must be 1..=64)")]
    CpuidPage {
        /// Its GPA.
        gpa: Gpa,
        /// COUNT.
        count: u32,
    },
    /// The kernel-hashes table does not match the blobs.
    #[error("kernel hashes table at GPA {gpa}: {what}")]
    KernelHashes {
        /// GPA of the table.
        gpa: Gpa,
        /// What failed.
        what: String,
    },
    /// The workload's ledger (private memory) is not what this workload wrote: no
    /// ledger, another configuration's, or a header that contradicts itself.
    #[error("workload ledger at GPA {gpa}: {what}")]
    Workload {
        /// GPA of the ledger.
        gpa: Gpa,
        /// What is wrong.
        what: String,
    },
    /// The boot configuration cannot be used.
    #[error("boot configuration: {0}")]
    Config(String),
    /// Crypto backend failure (sealing a request).
    #[error("crypto: {0}")]
    Crypto(#[from] softsev_crypto::CryptoError),
    /// The guest asked the hypervisor to terminate it because of `cause`.
    #[error("guest requested termination (reason set {set}, code {code}) because: {cause}")]
    Terminated {
        /// Reason set.
        set: u8,
        /// Reason code.
        code: u8,
        /// Why.
        #[source]
        cause: Box<GuestError>,
    },
}

impl GuestError {
    /// The termination request (reason set, code) a Linux/OVMF guest sends for this
    /// error, or `None` where the guest carries on (guest-request failures are reported
    /// to the caller, as the sev-guest driver does).
    pub fn termination_reason(&self) -> Option<(u8, u8)> {
        use GuestError as E;
        match self {
            E::UnsupportedGhcbVersion { .. } | E::UnsupportedGhcbVersionEs { .. } => {
                Some((TERM_SET_GHCB, 1))
            }
            // An SNP-active guest in the legacy flow: "SNP features unsupported" (GHCB
            // spec reason set 0 code 2, as Linux `sev_enable` sends it); SEV-ES where
            // plain SEV was launched: general. Plain SEV cannot ask (no GHCB).
            E::SevMode { sev_status, .. } if sev_status & SEV_STATUS_SNP != 0 => {
                Some((TERM_SET_GHCB, 2))
            }
            E::SevMode { sev_status, .. } if sev_status & SEV_STATUS_SEV_ES != 0 => {
                Some((TERM_SET_GHCB, 0))
            }
            E::VcCpuidMsr { .. } => Some((TERM_SET_LINUX, TERM_OVMF_UNEXPECTED_RESP)),
            E::VcUnhandled { early: true, .. } => Some((TERM_SET_LINUX, TERM_OVMF_VC_NOT_CPUID)),
            E::VcUnhandled { .. } | E::ApJumpTable { .. } => Some((TERM_SET_GHCB, 0)),
            E::HvFeatureMissing { .. } => Some((TERM_SET_GHCB, 2)),
            E::GhcbRegistration { .. } => Some((TERM_SET_LINUX, TERM_LINUX_GHCB_REGISTER)),
            E::Psc { .. } => Some((TERM_SET_LINUX, TERM_LINUX_PSC)),
            E::Pvalidate { .. } => Some((TERM_SET_LINUX, TERM_LINUX_PVALIDATE)),
            E::Secrets { .. } => Some((TERM_SET_LINUX, TERM_LINUX_SECRETS_PAGE)),
            E::CpuidPage { .. } => Some((TERM_SET_LINUX, TERM_LINUX_CPUID)),
            // The host already stopped the vCPU: there is nobody to ask.
            E::Fault {
                fault: GuestFault::Stopped,
                ..
            } => None,
            // Unhandled #VC in the kernel, hash mismatch in the firmware, anything the
            // hypervisor got wrong in the GHCB: general termination.
            E::Tampered { .. }
            | E::KernelHashes { .. }
            | E::MsrProtocol { .. }
            | E::GhcbBadInput { .. }
            | E::GhcbException { .. }
            | E::GhcbBadResponse { .. }
            | E::Fault { .. }
            | E::Rmpadjust { .. } => Some((TERM_SET_GHCB, 0)),
            _ => None,
        }
    }

    /// The innermost cause (through [`GuestError::Terminated`]).
    pub fn root(&self) -> &GuestError {
        match self {
            GuestError::Terminated { cause, .. } => cause.root(),
            e => e,
        }
    }
}

/// Map a fault of an access or instruction at `gpa`: #VC 0x404 means a tampered page.
pub(crate) fn access_fault(op: &'static str, gpa: Gpa, fault: GuestFault) -> GuestError {
    match fault {
        GuestFault::Vc { code, gpa } if code == crate::platform::VC_PAGE_NOT_VALIDATED => {
            GuestError::Tampered { gpa, op }
        }
        GuestFault::Vc { gpa, .. }
        | GuestFault::Npf { gpa, .. }
        | GuestFault::NoMemory { gpa }
        | GuestFault::Unmapped { gpa } => GuestError::Fault { op, gpa, fault },
        GuestFault::Gp | GuestFault::Ud | GuestFault::Stopped => {
            GuestError::Fault { op, gpa, fault }
        }
    }
}
