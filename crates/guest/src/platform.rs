//! The hardware a guest vCPU sees, as a trait: memory accesses with an explicit C-bit,
//! the SNP guest instructions PVALIDATE and RMPADJUST, CPUID, the GHCB and SEV_STATUS
//! MSRs, VMGEXIT, and the general-purpose registers (host-interfaces.md §2.1, §3.3–3.4;
//! AMD APM vol. 2 §15.36).
//!
//! A host backs one [`GuestPlatform`] per vCPU; tests back it with a scripted fake.
//! Nothing here knows about the firmware: the guest reaches it only through VMGEXIT and
//! the GHCB, as on real hardware.

use softsev_abi::Gpa;
use softsev_abi::rmp::RmpStatus;

pub use softsev_abi::{CBit, PageSize};

/// #VC error code of an access to a private page whose RMP entry is not validated.
pub const VC_PAGE_NOT_VALIDATED: u64 = 0x404;
/// #VC error code of a non-restartable access.
pub const VC_NOT_RESTARTABLE: u64 = 0x406;
/// #VC error code of an intercepted CPUID (SVM_EXIT_CPUID, AMD APM vol. 2 appendix C;
/// host-interfaces.md §3.1): what CPUID raises in an SEV-ES or SNP guest.
pub const VC_CPUID: u64 = 0x72;
/// #VC error code of an intercepted IN/OUT (SVM_EXIT_IOIO, AMD APM vol. 2 appendix C):
/// what port I/O raises in an SEV-ES or SNP guest.
pub const VC_IOIO: u64 = 0x7B;

/// A 64-bit general-purpose register other than RSP (AMD APM vol. 1 §3.1.2), as it sits
/// in the vCPU's register file: for SEV-ES and SNP that file is the encrypted VMSA
/// (AMD APM vol. 2 §15.35: the hardware saves the guest state there on every
/// #VMEXIT; layout `softsev_abi::vmsa::Vmsa`), so a moved ES guest finds its
/// registers only if its VMSA moved with it (sev-legacy.md §5.2, §5.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Gpr {
    /// RAX.
    Rax,
    /// RBX.
    Rbx,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// RSI.
    Rsi,
    /// RDI.
    Rdi,
    /// RBP.
    Rbp,
    /// R8.
    R8,
    /// R9.
    R9,
    /// R10.
    R10,
    /// R11.
    R11,
    /// R12.
    R12,
    /// R13.
    R13,
    /// R14.
    R14,
    /// R15.
    R15,
}

impl Gpr {
    /// Every register, in the order of the enum.
    pub const ALL: [Gpr; 15] = [
        Gpr::Rax,
        Gpr::Rbx,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::Rbp,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// Position in [`Gpr::ALL`] (0..15), for register files kept as arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What an instruction raised instead of completing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, thiserror::Error)]
pub enum GuestFault {
    /// #VC (vector 29) delivered to the guest; `code` is the SVM exit code it carries
    /// ([`VC_PAGE_NOT_VALIDATED`] for an unvalidated private page).
    #[error("#VC with error code {code:#x} at GPA {gpa}")]
    Vc {
        /// The #VC error code.
        code: u64,
        /// The faulting guest physical address.
        gpa: Gpa,
    },
    /// A nested page fault the host could not (or would not) resolve: the vCPU cannot
    /// continue past this access.
    #[error("unresolved #NPF at GPA {gpa} (error code {error_code:#x})")]
    Npf {
        /// The faulting guest physical address.
        gpa: Gpa,
        /// The #NPF EXITINFO1 error-code bits (host-interfaces.md §3.4).
        error_code: u64,
    },
    /// No memory at this GPA: not RAM (MMIO must use the GHCB MMIO events), so the
    /// host has nothing to map.
    #[error("no memory at GPA {gpa} (MMIO must use the GHCB MMIO events)")]
    NoMemory {
        /// The guest physical address.
        gpa: Gpa,
    },
    /// The host did not map the page (it belongs to someone else, or the VMM did not
    /// perform the conversion the access needed): the access never completes. The
    /// host's reason is in its own log, not visible to the guest.
    #[error("the host did not map GPA {gpa}")]
    Unmapped {
        /// The guest physical address.
        gpa: Gpa,
    },
    /// #GP(0), e.g. an MSR the guest may not access.
    #[error("#GP(0)")]
    Gp,
    /// #UD: the instruction does not exist for this guest, e.g. PVALIDATE or RMPADJUST
    /// in an SEV or SEV-ES guest (AMD APM vol. 3: both are #UD unless SNP is active
    /// for the guest).
    #[error("#UD")]
    Ud,
    /// The host stopped the vCPU (after a termination request, or on a fatal exit);
    /// the instruction never completes.
    #[error("vCPU stopped by the host")]
    Stopped,
}

/// One vCPU of an SEV, SEV-ES or SEV-SNP guest, at the level of the hardware interface.
///
/// Every method is what a single guest instruction (or memory access) does. A host
/// implements it by running the access through its nested page tables and the RMP;
/// [`GuestPlatform::vmgexit`] hands control to the hypervisor, which reads the GHCB MSR
/// (and, for the full protocol, the GHCB page the guest wrote in shared memory) and
/// writes its answer back before returning.
pub trait GuestPlatform {
    /// Read `buf.len()` bytes of guest memory at `gpa` through a mapping with C-bit
    /// `c_bit`. A private read of an unvalidated page raises #VC 0x404.
    fn read(&mut self, gpa: Gpa, c_bit: CBit, buf: &mut [u8]) -> Result<(), GuestFault>;

    /// Write `data` to guest memory at `gpa` through a mapping with C-bit `c_bit`.
    fn write(&mut self, gpa: Gpa, c_bit: CBit, data: &[u8]) -> Result<(), GuestFault>;

    /// PVALIDATE the page at `gpa` (`validate` = RDX 1, rescind = RDX 0) and return
    /// RAX; success with RFLAGS.CF = 1 (nothing changed) is reported as
    /// [`RmpStatus::FAIL_UNCHANGED`], as Linux does.
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault>;

    /// RMPADJUST the page at `gpa` with the attribute word `attrs` (RDX: bits 7:0
    /// target VMPL, 15:8 permission mask, bit 16 VMSA) and return RAX.
    fn rmpadjust(&mut self, gpa: Gpa, size: PageSize, attrs: u64) -> Result<RmpStatus, GuestFault>;

    /// CPUID with EAX = `leaf`, ECX = `subleaf`; returns `[eax, ebx, ecx, edx]`.
    ///
    /// In a plain SEV guest the host intercepts CPUID and answers directly (values
    /// from the VMM's CPUID table, as KVM does). In an SEV-ES or SNP guest the
    /// intercept becomes #VC ([`GuestFault::Vc`] with code [`VC_CPUID`]) and the guest
    /// asks through the GHCB (host-interfaces.md §3.1).
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], GuestFault>;

    /// OUT of `size` bytes (1, 2 or 4) of `value` to `port`.
    ///
    /// In a plain SEV guest the host intercepts it (IOIO intercept, SVM_EXIT_IOIO;
    /// KVM hands it to the VMM as KVM_EXIT_IO) and resumes the guest after the VMM
    /// ran again. In an SEV-ES or SNP guest the intercept becomes #VC
    /// ([`GuestFault::Vc`] with code [`VC_IOIO`]) and the guest makes the same request
    /// through the GHCB (NAE IOIO, host-interfaces.md §2.5; `crate::vc::io_out`).
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), GuestFault>;

    /// RDMSR (the guest uses `MSR_GHCB` 0xC001_0130 and `MSR_SEV_STATUS` 0xC001_0131).
    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault>;

    /// WRMSR (the guest writes only `MSR_GHCB`).
    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault>;

    /// VMGEXIT: exit to the hypervisor, which handles the request named by the GHCB
    /// MSR and resumes the guest.
    fn vmgexit(&mut self) -> Result<(), GuestFault>;

    /// Read general-purpose register `r` (what an instruction using it as a source
    /// sees: the vCPU's current register file).
    fn gpr(&mut self, r: Gpr) -> Result<u64, GuestFault>;

    /// Write general-purpose register `r` (a MOV into it): the value stays in the
    /// vCPU's register file across exits, where the host sees it for a plain SEV guest
    /// (KVM_GET_REGS) and only inside the encrypted VMSA for SEV-ES and SNP.
    fn set_gpr(&mut self, r: Gpr, v: u64) -> Result<(), GuestFault>;
}

impl<T: GuestPlatform + ?Sized> GuestPlatform for &mut T {
    fn read(&mut self, gpa: Gpa, c_bit: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        (**self).read(gpa, c_bit, buf)
    }
    fn write(&mut self, gpa: Gpa, c_bit: CBit, data: &[u8]) -> Result<(), GuestFault> {
        (**self).write(gpa, c_bit, data)
    }
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault> {
        (**self).pvalidate(gpa, size, validate)
    }
    fn rmpadjust(&mut self, gpa: Gpa, size: PageSize, attrs: u64) -> Result<RmpStatus, GuestFault> {
        (**self).rmpadjust(gpa, size, attrs)
    }
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], GuestFault> {
        (**self).cpuid(leaf, subleaf)
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), GuestFault> {
        (**self).io_out(port, size, value)
    }
    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        (**self).rdmsr(msr)
    }
    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        (**self).wrmsr(msr, value)
    }
    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        (**self).vmgexit()
    }
    fn gpr(&mut self, r: Gpr) -> Result<u64, GuestFault> {
        (**self).gpr(r)
    }
    fn set_gpr(&mut self, r: Gpr, v: u64) -> Result<(), GuestFault> {
        (**self).set_gpr(r, v)
    }
}
