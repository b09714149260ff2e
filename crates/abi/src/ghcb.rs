//! The Guest-Hypervisor Communication Block (GHCB) and the protocols carried over it:
//! the 4 KiB GHCB page (save area, valid bitmap, shared buffer, version, usage), the
//! GHCB MSR protocol (GHCBInfo request/response codes), the non-automatic-exit (NAE)
//! event codes, the Page State Change descriptor, AP creation sub-codes, and the
//! SW_EXITINFO return values. Notes: shared/spec/host-interfaces.md §2 (GHCB
//! specification 56421 v2 as Linux `arch/x86/include/asm/{svm.h,sev-common.h}` and
//! `uapi/asm/svm.h` render it).

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The GHCB MSR (`MSR_AMD64_SEV_ES_GHCB`).
pub const MSR_GHCB: u32 = 0xC001_0130;
/// The SEV_STATUS MSR (guest read-only).
pub const MSR_SEV_STATUS: u32 = 0xC001_0131;
/// SEV_STATUS bit 0: SEV enabled.
pub const SEV_STATUS_SEV: u64 = 1 << 0;
/// SEV_STATUS bit 1: SEV-ES enabled.
pub const SEV_STATUS_SEV_ES: u64 = 1 << 1;
/// SEV_STATUS bit 2: SEV-SNP enabled.
pub const SEV_STATUS_SNP: u64 = 1 << 2;

/// Lowest GHCB protocol version (SEV-ES).
pub const GHCB_VERSION_MIN: u16 = 1;
/// Highest GHCB protocol version defined here (adds SNP).
pub const GHCB_VERSION_MAX: u16 = 2;
/// The only GHCB usage value hypervisors accept (`GHCB_DEFAULT_USAGE`).
pub const GHCB_DEFAULT_USAGE: u32 = 0;

/// Offset of the shared buffer in the GHCB page.
pub const GHCB_SHARED_BUF_OFFSET: usize = 0x800;
/// Size of the shared buffer (`GHCB_SHARED_BUF_SIZE`).
pub const GHCB_SHARED_BUF_SIZE: usize = 2032;

/// The GHCB page (GHCB spec "GHCB layout"; Linux `struct ghcb`). Registers in the save
/// area sit at their VMSA offsets; `valid_bitmap` bit i marks the qword at 8·i.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Ghcb {
    /// Reserved.
    pub _reserved_000: [u8; 0xCB],
    /// CPL of the guest at the VMGEXIT.
    pub cpl: u8,
    /// Reserved.
    pub _reserved_0cc: [u8; 0x74],
    /// XSS.
    pub xss: u64,
    /// Reserved.
    pub _reserved_148: [u8; 0x18],
    /// DR7.
    pub dr7: u64,
    /// Reserved.
    pub _reserved_168: [u8; 0x10],
    /// RIP.
    pub rip: u64,
    /// Reserved.
    pub _reserved_180: [u8; 0x58],
    /// RSP.
    pub rsp: u64,
    /// Reserved.
    pub _reserved_1e0: [u8; 0x18],
    /// RAX.
    pub rax: u64,
    /// Reserved.
    pub _reserved_200: [u8; 0x108],
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBX.
    pub rbx: u64,
    /// Reserved.
    pub _reserved_320: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// R8..R15.
    pub r8_r15: [u64; 8],
    /// Reserved.
    pub _reserved_380: [u8; 0x10],
    /// SW_EXITCODE: the NAE event.
    pub sw_exit_code: u64,
    /// SW_EXITINFO1.
    pub sw_exit_info_1: u64,
    /// SW_EXITINFO2.
    pub sw_exit_info_2: u64,
    /// SW_SCRATCH: GPA of the scratch area.
    pub sw_scratch: u64,
    /// Reserved.
    pub _reserved_3b0: [u8; 0x38],
    /// XCR0.
    pub xcr0: u64,
    /// Valid bitmap (bit i ↔ save-area qword at offset 8·i).
    pub valid_bitmap: [u8; 16],
    /// GPA of the x87 state (SEV-ES XSAVE support).
    pub x87_state_gpa: u64,
    /// Reserved.
    pub _reserved_408: [u8; 0x3F8],
    /// The shared buffer (scratch area for PSC, MMIO, string I/O).
    pub shared_buffer: [u8; GHCB_SHARED_BUF_SIZE],
    /// Reserved.
    pub _reserved_ff0: [u8; 10],
    /// GHCB protocol version the guest uses.
    pub protocol_version: u16,
    /// GHCB usage (0 = standard).
    pub ghcb_usage: u32,
}

crate::assert_layout!(
    Ghcb,
    size = 0x1000,
    _reserved_000 = 0x000,
    cpl = 0x0CB,
    _reserved_0cc = 0x0CC,
    xss = 0x140,
    _reserved_148 = 0x148,
    dr7 = 0x160,
    _reserved_168 = 0x168,
    rip = 0x178,
    _reserved_180 = 0x180,
    rsp = 0x1D8,
    _reserved_1e0 = 0x1E0,
    rax = 0x1F8,
    _reserved_200 = 0x200,
    rcx = 0x308,
    rdx = 0x310,
    rbx = 0x318,
    _reserved_320 = 0x320,
    rbp = 0x328,
    rsi = 0x330,
    rdi = 0x338,
    r8_r15 = 0x340,
    _reserved_380 = 0x380,
    sw_exit_code = 0x390,
    sw_exit_info_1 = 0x398,
    sw_exit_info_2 = 0x3A0,
    sw_scratch = 0x3A8,
    _reserved_3b0 = 0x3B0,
    xcr0 = 0x3E8,
    valid_bitmap = 0x3F0,
    x87_state_gpa = 0x400,
    _reserved_408 = 0x408,
    shared_buffer = 0x800,
    _reserved_ff0 = 0xFF0,
    protocol_version = 0xFFA,
    ghcb_usage = 0xFFC,
);

/// Save-area qwords that can be marked valid, by their offset in the GHCB.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u16)]
pub enum GhcbField {
    /// CPL (the qword at 0x0C8 holding the CPL byte).
    Cpl = 0x0C8,
    /// XSS.
    Xss = 0x140,
    /// DR7.
    Dr7 = 0x160,
    /// RIP.
    Rip = 0x178,
    /// RSP.
    Rsp = 0x1D8,
    /// RAX.
    Rax = 0x1F8,
    /// RCX.
    Rcx = 0x308,
    /// RDX.
    Rdx = 0x310,
    /// RBX.
    Rbx = 0x318,
    /// RBP.
    Rbp = 0x328,
    /// RSI.
    Rsi = 0x330,
    /// RDI.
    Rdi = 0x338,
    /// SW_EXITCODE.
    SwExitCode = 0x390,
    /// SW_EXITINFO1.
    SwExitInfo1 = 0x398,
    /// SW_EXITINFO2.
    SwExitInfo2 = 0x3A0,
    /// SW_SCRATCH.
    SwScratch = 0x3A8,
    /// XCR0.
    Xcr0 = 0x3E8,
}

impl GhcbField {
    /// Bit index in the valid bitmap (offset / 8).
    pub const fn bit(self) -> usize {
        self as usize / 8
    }
}

impl Default for Ghcb {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl Ghcb {
    /// Whether `f` is marked valid.
    pub fn is_valid(&self, f: GhcbField) -> bool {
        let b = f.bit();
        self.valid_bitmap
            .get(b / 8)
            .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
    }

    /// Mark `f` valid.
    pub fn mark_valid(&mut self, f: GhcbField) {
        let b = f.bit();
        if let Some(byte) = self.valid_bitmap.get_mut(b / 8) {
            *byte |= 1 << (b % 8);
        }
    }

    /// Clear the valid bitmap.
    pub fn clear_valid(&mut self) {
        self.valid_bitmap = [0; 16];
    }

    /// Set a register field and mark it valid.
    pub fn set(&mut self, f: GhcbField, v: u64) {
        match f {
            GhcbField::Cpl => self.cpl = v as u8,
            GhcbField::Xss => self.xss = v,
            GhcbField::Dr7 => self.dr7 = v,
            GhcbField::Rip => self.rip = v,
            GhcbField::Rsp => self.rsp = v,
            GhcbField::Rax => self.rax = v,
            GhcbField::Rcx => self.rcx = v,
            GhcbField::Rdx => self.rdx = v,
            GhcbField::Rbx => self.rbx = v,
            GhcbField::Rbp => self.rbp = v,
            GhcbField::Rsi => self.rsi = v,
            GhcbField::Rdi => self.rdi = v,
            GhcbField::SwExitCode => self.sw_exit_code = v,
            GhcbField::SwExitInfo1 => self.sw_exit_info_1 = v,
            GhcbField::SwExitInfo2 => self.sw_exit_info_2 = v,
            GhcbField::SwScratch => self.sw_scratch = v,
            GhcbField::Xcr0 => self.xcr0 = v,
        }
        self.mark_valid(f);
    }

    /// A field's value if it is marked valid.
    pub fn get(&self, f: GhcbField) -> Option<u64> {
        if !self.is_valid(f) {
            return None;
        }
        Some(match f {
            GhcbField::Cpl => u64::from(self.cpl),
            GhcbField::Xss => self.xss,
            GhcbField::Dr7 => self.dr7,
            GhcbField::Rip => self.rip,
            GhcbField::Rsp => self.rsp,
            GhcbField::Rax => self.rax,
            GhcbField::Rcx => self.rcx,
            GhcbField::Rdx => self.rdx,
            GhcbField::Rbx => self.rbx,
            GhcbField::Rbp => self.rbp,
            GhcbField::Rsi => self.rsi,
            GhcbField::Rdi => self.rdi,
            GhcbField::SwExitCode => self.sw_exit_code,
            GhcbField::SwExitInfo1 => self.sw_exit_info_1,
            GhcbField::SwExitInfo2 => self.sw_exit_info_2,
            GhcbField::SwScratch => self.sw_scratch,
            GhcbField::Xcr0 => self.xcr0,
        })
    }

    /// Prepare a request: clear the bitmap, set the version and usage 0, the exit code
    /// and both exit infos (all marked valid), as a guest's `sev_es_ghcb_hv_call` does.
    pub fn request(version: u16, exit_code: NaeExit, info1: u64, info2: u64) -> Ghcb {
        let mut g = Ghcb {
            protocol_version: version,
            ghcb_usage: GHCB_DEFAULT_USAGE,
            ..Ghcb::default()
        };
        g.set(GhcbField::SwExitCode, exit_code.0);
        g.set(GhcbField::SwExitInfo1, info1);
        g.set(GhcbField::SwExitInfo2, info2);
        g
    }
}

// ---------------------------------------------------------------------------------
// MSR protocol
// ---------------------------------------------------------------------------------

/// Bits 11:0 of the GHCB MSR carry GHCBInfo when the MSR protocol is used.
pub const GHCB_MSR_INFO_MASK: u64 = 0xFFF;

crate::open_enum! {
    /// GHCBInfo: the MSR-protocol request and response codes (GHCB MSR bits 11:0).
    pub struct GhcbInfo(u16) {
        /// Response: SEV information.
        SEV_INFO_RESP = 0x001,
        /// Request: SEV information.
        SEV_INFO_REQ = 0x002,
        /// Request: CPUID.
        CPUID_REQ = 0x004,
        /// Response: CPUID.
        CPUID_RESP = 0x005,
        /// Request: AP reset hold.
        AP_RESET_HOLD_REQ = 0x006,
        /// Response: AP reset hold.
        AP_RESET_HOLD_RESP = 0x007,
        /// Request: preferred GHCB GPA.
        PREFERRED_GPA_REQ = 0x010,
        /// Response: preferred GHCB GPA.
        PREFERRED_GPA_RESP = 0x011,
        /// Request: register a GHCB GPA.
        REG_GPA_REQ = 0x012,
        /// Response: GHCB GPA registration.
        REG_GPA_RESP = 0x013,
        /// Request: page state change (one 4 KiB page).
        PSC_REQ = 0x014,
        /// Response: page state change.
        PSC_RESP = 0x015,
        /// Request: run at VMPL.
        VMPL_REQ = 0x016,
        /// Response: run at VMPL.
        VMPL_RESP = 0x017,
        /// Request: hypervisor features.
        HV_FT_REQ = 0x080,
        /// Response: hypervisor features.
        HV_FT_RESP = 0x081,
        /// Request: termination.
        TERM_REQ = 0x100,
    }
}

/// "No preference" GFN of the preferred-GPA response, and the failure GFN of the
/// registration response (all ones in bits 63:12).
pub const GHCB_MSR_GFN_NONE: u64 = 0x000F_FFFF_FFFF_FFFF;

/// CPUID register selector of the MSR-protocol CPUID request (bits 31:30).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum CpuidReg {
    /// EAX.
    Eax = 0,
    /// EBX.
    Ebx = 1,
    /// ECX.
    Ecx = 2,
    /// EDX.
    Edx = 3,
}

/// A decoded GHCB MSR value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GhcbMsg {
    /// 0x001: SEV information (max / min protocol, C-bit position).
    SevInfoResp {
        /// Highest protocol version supported.
        max: u16,
        /// Lowest protocol version supported.
        min: u16,
        /// C-bit position.
        cbit: u8,
    },
    /// 0x002.
    SevInfoReq,
    /// 0x004: CPUID function (subleaf 0) and register.
    CpuidReq {
        /// CPUID function.
        function: u32,
        /// Register wanted.
        reg: CpuidReg,
    },
    /// 0x005: the register value.
    CpuidResp {
        /// Register selector echoed.
        reg: CpuidReg,
        /// Value.
        value: u32,
    },
    /// 0x006.
    ApResetHoldReq,
    /// 0x007: non-zero payload ⇒ woken by SIPI.
    ApResetHoldResp {
        /// Bits 63:12.
        value: u64,
    },
    /// 0x010.
    PreferredGpaReq,
    /// 0x011.
    PreferredGpaResp {
        /// The GFN (or [`GHCB_MSR_GFN_NONE`]).
        gfn: u64,
    },
    /// 0x012.
    RegGpaReq {
        /// GFN of the GHCB to register.
        gfn: u64,
    },
    /// 0x013.
    RegGpaResp {
        /// Echoed GFN, or [`GHCB_MSR_GFN_NONE`] on failure.
        gfn: u64,
    },
    /// 0x014: one 4 KiB page state change.
    PscReq {
        /// GFN (40 bits).
        gfn: u64,
        /// Operation (bits 55:52).
        op: PscOp,
    },
    /// 0x015: error code in bits 63:32 (0 = success).
    PscResp {
        /// Error code.
        error: u32,
    },
    /// 0x016.
    VmplReq {
        /// Target VMPL.
        vmpl: u8,
    },
    /// 0x017.
    VmplResp {
        /// Error code.
        error: u32,
    },
    /// 0x080.
    HvFeaturesReq,
    /// 0x081.
    HvFeaturesResp {
        /// Feature bitmap (52 bits).
        features: u64,
    },
    /// 0x100: termination with reason set and code.
    TermReq {
        /// Reason set (bits 15:12).
        set: u8,
        /// Reason code (bits 23:16).
        code: u8,
    },
    /// Any other GHCBInfo value.
    Unknown(u64),
}

const fn info(v: u64) -> u64 {
    v & GHCB_MSR_INFO_MASK
}

impl GhcbMsg {
    /// Decode a GHCB MSR value whose bits 11:0 are non-zero (MSR protocol).
    pub fn decode(v: u64) -> GhcbMsg {
        let gfn = v >> 12;
        match GhcbInfo(info(v) as u16) {
            GhcbInfo::SEV_INFO_RESP => GhcbMsg::SevInfoResp {
                max: (v >> 48) as u16,
                min: (v >> 32) as u16,
                cbit: (v >> 24) as u8,
            },
            GhcbInfo::SEV_INFO_REQ => GhcbMsg::SevInfoReq,
            GhcbInfo::CPUID_REQ => GhcbMsg::CpuidReq {
                function: (v >> 32) as u32,
                reg: cpuid_reg((v >> 30) & 3),
            },
            GhcbInfo::CPUID_RESP => GhcbMsg::CpuidResp {
                reg: cpuid_reg((v >> 30) & 3),
                value: (v >> 32) as u32,
            },
            GhcbInfo::AP_RESET_HOLD_REQ => GhcbMsg::ApResetHoldReq,
            GhcbInfo::AP_RESET_HOLD_RESP => GhcbMsg::ApResetHoldResp { value: gfn },
            GhcbInfo::PREFERRED_GPA_REQ => GhcbMsg::PreferredGpaReq,
            GhcbInfo::PREFERRED_GPA_RESP => GhcbMsg::PreferredGpaResp { gfn },
            GhcbInfo::REG_GPA_REQ => GhcbMsg::RegGpaReq { gfn },
            GhcbInfo::REG_GPA_RESP => GhcbMsg::RegGpaResp { gfn },
            GhcbInfo::PSC_REQ => GhcbMsg::PscReq {
                gfn: (v >> 12) & PSC_GFN_MASK,
                op: PscOp(((v >> 52) & 0xF) as u8),
            },
            GhcbInfo::PSC_RESP => GhcbMsg::PscResp {
                error: (v >> 32) as u32,
            },
            GhcbInfo::VMPL_REQ => GhcbMsg::VmplReq {
                vmpl: (v >> 32) as u8,
            },
            GhcbInfo::VMPL_RESP => GhcbMsg::VmplResp {
                error: (v >> 32) as u32,
            },
            GhcbInfo::HV_FT_REQ => GhcbMsg::HvFeaturesReq,
            GhcbInfo::HV_FT_RESP => GhcbMsg::HvFeaturesResp { features: gfn },
            GhcbInfo::TERM_REQ => GhcbMsg::TermReq {
                set: ((v >> 12) & 0xF) as u8,
                code: ((v >> 16) & 0xFF) as u8,
            },
            _ => GhcbMsg::Unknown(v),
        }
    }

    /// Encode into a GHCB MSR value.
    pub fn encode(self) -> u64 {
        let i = |c: GhcbInfo| u64::from(c.0);
        match self {
            GhcbMsg::SevInfoResp { max, min, cbit } => {
                (u64::from(max) << 48)
                    | (u64::from(min) << 32)
                    | (u64::from(cbit) << 24)
                    | i(GhcbInfo::SEV_INFO_RESP)
            }
            GhcbMsg::SevInfoReq => i(GhcbInfo::SEV_INFO_REQ),
            GhcbMsg::CpuidReq { function, reg } => {
                (u64::from(function) << 32) | ((reg as u64) << 30) | i(GhcbInfo::CPUID_REQ)
            }
            GhcbMsg::CpuidResp { reg, value } => {
                (u64::from(value) << 32) | ((reg as u64) << 30) | i(GhcbInfo::CPUID_RESP)
            }
            GhcbMsg::ApResetHoldReq => i(GhcbInfo::AP_RESET_HOLD_REQ),
            GhcbMsg::ApResetHoldResp { value } => (value << 12) | i(GhcbInfo::AP_RESET_HOLD_RESP),
            GhcbMsg::PreferredGpaReq => i(GhcbInfo::PREFERRED_GPA_REQ),
            GhcbMsg::PreferredGpaResp { gfn } => (gfn << 12) | i(GhcbInfo::PREFERRED_GPA_RESP),
            GhcbMsg::RegGpaReq { gfn } => (gfn << 12) | i(GhcbInfo::REG_GPA_REQ),
            GhcbMsg::RegGpaResp { gfn } => (gfn << 12) | i(GhcbInfo::REG_GPA_RESP),
            GhcbMsg::PscReq { gfn, op } => {
                (u64::from(op.0 & 0xF) << 52) | ((gfn & PSC_GFN_MASK) << 12) | i(GhcbInfo::PSC_REQ)
            }
            GhcbMsg::PscResp { error } => (u64::from(error) << 32) | i(GhcbInfo::PSC_RESP),
            GhcbMsg::VmplReq { vmpl } => (u64::from(vmpl) << 32) | i(GhcbInfo::VMPL_REQ),
            GhcbMsg::VmplResp { error } => (u64::from(error) << 32) | i(GhcbInfo::VMPL_RESP),
            GhcbMsg::HvFeaturesReq => i(GhcbInfo::HV_FT_REQ),
            GhcbMsg::HvFeaturesResp { features } => (features << 12) | i(GhcbInfo::HV_FT_RESP),
            GhcbMsg::TermReq { set, code } => {
                (u64::from(code) << 16) | (u64::from(set & 0xF) << 12) | i(GhcbInfo::TERM_REQ)
            }
            GhcbMsg::Unknown(v) => v,
        }
    }
}

fn cpuid_reg(v: u64) -> CpuidReg {
    match v {
        0 => CpuidReg::Eax,
        1 => CpuidReg::Ebx,
        2 => CpuidReg::Ecx,
        _ => CpuidReg::Edx,
    }
}

/// The PSC-by-MSR error response KVM gives (`GHCB_MSR_PSC_RESP_ERROR`: bit 63 set).
pub const GHCB_MSR_PSC_RESP_ERROR: u64 = (1 << 63) | GhcbInfo::PSC_RESP.0 as u64;

/// Hypervisor feature bit 0: SEV-SNP.
pub const GHCB_HV_FT_SNP: u64 = 1 << 0;
/// Bit 1: SNP AP creation.
pub const GHCB_HV_FT_SNP_AP_CREATION: u64 = 1 << 1;
/// Bit 2: restricted injection.
pub const GHCB_HV_FT_SNP_RESTRICTED_INJ: u64 = 1 << 2;
/// Bit 3: restricted-injection timer.
pub const GHCB_HV_FT_SNP_RESTRICTED_INJ_TIMER: u64 = 1 << 3;
/// Bit 4: APIC-ID list.
pub const GHCB_HV_FT_APIC_ID_LIST: u64 = 1 << 4;
/// Bit 5: multiple VMPLs.
pub const GHCB_HV_FT_SNP_MULTI_VMPL: u64 = 1 << 5;

/// Termination reason set 0: GHCB-defined.
pub const TERM_SET_GHCB: u8 = 0;
/// Termination reason set 1: Linux-guest specific.
pub const TERM_SET_LINUX: u8 = 1;
/// Set 0 code 0: general termination.
pub const TERM_GENERAL: u8 = 0;
/// Set 0 code 1: protocol version not supported.
pub const TERM_PROT_UNSUPPORTED: u8 = 1;
/// Set 0 code 2: SNP features not supported.
pub const TERM_SNP_FEAT_UNSUPPORTED: u8 = 2;

// ---------------------------------------------------------------------------------
// NAE events and return values
// ---------------------------------------------------------------------------------

crate::open_enum! {
    /// SW_EXITCODE values: SVM exit codes reused as NAE events and the
    /// software-defined VMGEXIT events.
    pub struct NaeExit(u64) {
        /// DR7 read.
        READ_DR7 = 0x27,
        /// DR7 write.
        WRITE_DR7 = 0x37,
        /// RDTSC.
        RDTSC = 0x6E,
        /// RDPMC.
        RDPMC = 0x6F,
        /// CPUID.
        CPUID = 0x72,
        /// INVD.
        INVD = 0x76,
        /// IN/OUT.
        IOIO = 0x7B,
        /// RDMSR/WRMSR.
        MSR = 0x7C,
        /// VMMCALL.
        VMMCALL = 0x81,
        /// RDTSCP.
        RDTSCP = 0x87,
        /// WBINVD.
        WBINVD = 0x89,
        /// MONITOR.
        MONITOR = 0x8A,
        /// MWAIT.
        MWAIT = 0x8B,
        /// Nested page fault (MMIO as #VC 0x400).
        NPF = 0x400,
        /// VMGEXIT itself (the automatic exit).
        VMGEXIT = 0x403,
        /// MMIO read.
        MMIO_READ = 0x8000_0001,
        /// MMIO write.
        MMIO_WRITE = 0x8000_0002,
        /// NMI complete.
        NMI_COMPLETE = 0x8000_0003,
        /// AP HLT loop / AP reset hold.
        AP_HLT_LOOP = 0x8000_0004,
        /// AP jump table.
        AP_JUMP_TABLE = 0x8000_0005,
        /// Page state change.
        PSC = 0x8000_0010,
        /// SNP guest request.
        GUEST_REQUEST = 0x8000_0011,
        /// SNP extended guest request.
        EXT_GUEST_REQUEST = 0x8000_0012,
        /// SNP AP creation.
        AP_CREATION = 0x8000_0013,
        /// #HV doorbell page.
        HV_DOORBELL_PAGE = 0x8000_0014,
        /// #HV IPI.
        HV_IPI = 0x8000_0015,
        /// Get APIC IDs.
        GET_APIC_IDS = 0x8000_0017,
        /// SNP run at VMPL.
        SNP_RUN_VMPL = 0x8000_0018,
        /// Secure AVIC.
        SAVIC = 0x8000_001A,
        /// Hypervisor feature query.
        HV_FEATURES = 0x8000_FFFD,
        /// Termination request.
        TERM_REQUEST = 0x8000_FFFE,
        /// Unsupported event (guest cannot handle a #VC).
        UNSUPPORTED_EVENT = 0x8000_FFFF,
    }
}

/// SW_EXITINFO1 after handling: no action / success.
pub const EXIT_INFO1_OK: u64 = 0;
/// SW_EXITINFO1: inject the exception in SW_EXITINFO2.
pub const EXIT_INFO1_INJECT: u64 = 1;
/// SW_EXITINFO1: malformed input, error in `SW_EXITINFO2\[31:0\]`.
pub const EXIT_INFO1_BAD_INPUT: u64 = 2;

crate::open_enum! {
    /// SW_EXITINFO2 error when SW_EXITINFO1 = 2 (GHCB spec "malformed input").
    pub struct GhcbError(u64) {
        /// The GHCB is not at the registered GPA.
        NOT_REGISTERED = 1,
        /// GHCB usage is not supported.
        INVALID_USAGE = 2,
        /// The scratch area is outside the shared buffer / invalid.
        INVALID_SCRATCH_AREA = 3,
        /// A required input field is not marked valid.
        MISSING_INPUT = 4,
        /// An input value is invalid.
        INVALID_INPUT = 5,
        /// The event is not supported.
        INVALID_EVENT = 6,
    }
}

// ---------------------------------------------------------------------------------
// Page State Change
// ---------------------------------------------------------------------------------

/// Maximum entries of a PSC descriptor in the shared buffer ((2032 − 8) / 8).
pub const PSC_MAX_ENTRIES: usize = 253;
/// GFN mask of PSC entries (40 bits).
pub const PSC_GFN_MASK: u64 = (1 << 40) - 1;

crate::open_enum! {
    /// Page-state-change operation (PSC entry bits 55:52, MSR request bits 55:52).
    pub struct PscOp(u8) {
        /// Make private (assigned to the guest).
        PRIVATE = 1,
        /// Make shared.
        SHARED = 2,
        /// PSMASH hint.
        PSMASH = 3,
        /// UNSMASH hint.
        UNSMASH = 4,
    }
}

/// PSC error (SW_EXITINFO2) for a bad header (`end_entry` ≥ 253).
pub const PSC_ERROR_INVALID_HDR: u64 = (1 << 32) | 1;
/// PSC error for a bad entry (cur_page beyond the page count, misaligned GFN).
pub const PSC_ERROR_INVALID_ENTRY: u64 = (1 << 32) | 2;
/// PSC error for a hypervisor failure (`VMGEXIT_PSC_ERROR_GENERIC`).
pub const PSC_ERROR_GENERIC: u64 = 0x100 << 32;

/// PSC descriptor header.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PscHdr {
    /// First entry still to process.
    pub cur_entry: u16,
    /// Last entry (inclusive).
    pub end_entry: u16,
    /// Reserved.
    pub reserved: u32,
}
crate::assert_layout!(PscHdr, size = 8, cur_entry = 0, end_entry = 2, reserved = 4);

/// One PSC entry: bits 11:0 cur_page, 51:12 GFN, 55:52 operation, 56 page size
/// (1 = 2 MiB), 63:57 reserved.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct PscEntry(pub u64);

impl PscEntry {
    /// Build an entry with cur_page 0.
    pub const fn new(gfn: u64, op: PscOp, huge: bool) -> Self {
        PscEntry(((gfn & PSC_GFN_MASK) << 12) | ((op.0 as u64 & 0xF) << 52) | ((huge as u64) << 56))
    }
    /// Pages already processed inside the entry.
    pub const fn cur_page(self) -> u16 {
        (self.0 & 0xFFF) as u16
    }
    /// Set cur_page.
    pub fn set_cur_page(&mut self, v: u16) {
        self.0 = (self.0 & !0xFFF) | u64::from(v & 0xFFF);
    }
    /// The GFN.
    pub const fn gfn(self) -> u64 {
        (self.0 >> 12) & PSC_GFN_MASK
    }
    /// The operation.
    pub const fn op(self) -> PscOp {
        PscOp(((self.0 >> 52) & 0xF) as u8)
    }
    /// 2 MiB entry.
    pub const fn huge(self) -> bool {
        self.0 & (1 << 56) != 0
    }
    /// Reserved bits 63:57.
    pub const fn reserved(self) -> u64 {
        self.0 >> 57
    }
    /// 4 KiB pages the entry covers (1 or 512).
    pub const fn npages(self) -> u64 {
        if self.huge() { 512 } else { 1 }
    }
}

/// The PSC descriptor as it sits in the shared buffer (2032 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PscDesc {
    /// Header.
    pub hdr: PscHdr,
    /// Entries.
    pub entries: [PscEntry; PSC_MAX_ENTRIES],
}
crate::assert_layout!(PscDesc, size = GHCB_SHARED_BUF_SIZE, hdr = 0, entries = 8);

impl Default for PscDesc {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

// ---------------------------------------------------------------------------------
// AP creation, guest requests, certificate table
// ---------------------------------------------------------------------------------

crate::open_enum! {
    /// AP creation request (`SW_EXITINFO1\[31:0\]` of NAE 0x8000_0013).
    pub struct ApCreateOp(u32) {
        /// Create when the target receives INIT.
        CREATE_ON_INIT = 0,
        /// Create now.
        CREATE = 1,
        /// Destroy.
        DESTROY = 2,
    }
}

/// SW_EXITINFO1 of an AP creation event.
pub const fn ap_creation_info1(op: ApCreateOp, apic_id: u32) -> u64 {
    ((apic_id as u64) << 32) | op.0 as u64
}

crate::open_enum! {
    /// Hypervisor (VMM) error in `SW_EXITINFO2\[63:32\]` of a guest request.
    pub struct GuestReqVmmError(u32) {
        /// No error.
        NONE = 0,
        /// The certificate buffer is too small; RBX = pages needed.
        INVALID_LEN = 1,
        /// Busy, retry.
        BUSY = 2,
        /// KVM-private generic error.
        GENERIC = 0xFFFF_FFFF,
    }
}

/// SW_EXITINFO2 of a guest request: VMM error in 63:32, firmware status in 31:0.
pub const fn guest_req_info2(vmm: GuestReqVmmError, fw_status: u32) -> u64 {
    ((vmm.0 as u64) << 32) | fw_status as u64
}

// The certificate table of the extended guest request (GHCB spec 56421 §4.1.8.2,
// "SNP Extended Guest Request"; snp-attestation.md §3.1): 24-byte entries
// {GUID, offset, length} ended by an all-zero entry, then the blobs; offsets count
// from the start of the table. One layout and one set of rules for every side: the
// firmware model and the VMM write tables, the guest model reads them, the verifier
// (softsev-attest) reads them with its own, deliberate, leniency.

/// A certificate-table GUID, in RFC 4122 (text) byte order as Linux, virtee/sev and
/// go-sev-guest store and read it, not in EFI mixed-endian order.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
    Unaligned,
)]
#[repr(transparent)]
pub struct CertTableGuid(pub [u8; 16]);

impl CertTableGuid {
    /// ARK certificate.
    pub const ARK: Self = Self::parse("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    /// ASK certificate (also used for the ASVK).
    pub const ASK: Self = Self::parse("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    /// VCEK certificate.
    pub const VCEK: Self = Self::parse("63da758d-e664-4564-adc5-f4b93be8accd");
    /// VLEK certificate.
    pub const VLEK: Self = Self::parse("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    /// CRL.
    pub const CRL: Self = Self::parse("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
    /// The null GUID (the terminator's).
    pub const NULL: Self = Self([0; 16]);
    /// The GUIDs this module names, with their short names.
    pub const KNOWN: [(Self, &'static str); 5] = [
        (Self::ARK, "ARK"),
        (Self::ASK, "ASK"),
        (Self::VCEK, "VCEK"),
        (Self::VLEK, "VLEK"),
        (Self::CRL, "CRL"),
    ];

    /// From the text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`; compile-time panic on
    /// malformed text (see [`crate::guid::rfc4122_bytes`]).
    pub const fn parse(text: &str) -> Self {
        Self(crate::guid::rfc4122_bytes(text))
    }

    /// The short name of a known GUID ("ARK", "ASK", "VCEK", "VLEK", "CRL").
    pub fn name(&self) -> Option<&'static str> {
        Self::KNOWN
            .iter()
            .find(|(g, _)| g == self)
            .map(|&(_, name)| name)
    }
}

impl core::fmt::Display for CertTableGuid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::guid::write_rfc4122(&self.0, f)
    }
}

impl core::fmt::Debug for CertTableGuid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{self} ({n})"),
            None => write!(f, "{self}"),
        }
    }
}

/// Certificate-table entry of the extended guest request (GUID, offset, length); the
/// table ends with an all-zero entry ([`CertTableEntry::TERMINATOR`]).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CertTableEntry {
    /// GUID of the certificate, RFC 4122 byte order ([`CertTableGuid`]).
    pub guid: [u8; 16],
    /// Offset of the blob from the table start.
    pub offset: u32,
    /// Length of the blob.
    pub length: u32,
}
crate::assert_layout!(
    CertTableEntry,
    size = 24,
    guid = 0,
    offset = 16,
    length = 20
);

/// Size of one certificate-table entry.
pub const CERT_TABLE_ENTRY_LEN: usize = core::mem::size_of::<CertTableEntry>();

impl CertTableEntry {
    /// The all-zero entry that ends a table.
    pub const TERMINATOR: Self = Self {
        guid: [0; 16],
        offset: 0,
        length: 0,
    };

    /// An entry for `guid` whose blob is `length` bytes at `offset`.
    pub const fn new(guid: CertTableGuid, offset: u32, length: u32) -> Self {
        Self {
            guid: guid.0,
            offset,
            length,
        }
    }

    /// The entry's GUID as a [`CertTableGuid`].
    pub const fn cert_guid(&self) -> CertTableGuid {
        CertTableGuid(self.guid)
    }

    /// Whether this is the all-zero terminator.
    pub fn is_terminator(&self) -> bool {
        *self == Self::TERMINATOR
    }

    /// The byte range of this entry's blob in a table buffer of `buf_len` bytes whose
    /// header (terminator included) is `header_len` bytes: the blob must start at or
    /// after the end of the header and end within the buffer. `index` is the entry's
    /// position, for the error.
    pub fn blob_range(
        &self,
        index: usize,
        header_len: usize,
        buf_len: usize,
    ) -> Result<core::ops::Range<usize>, CertTableError> {
        let (guid, offset, length) = (self.cert_guid(), self.offset, self.length);
        let start = offset as usize;
        if start < header_len {
            return Err(CertTableError::BlobInHeader {
                index,
                guid,
                offset,
                length,
                header_len,
            });
        }
        match start.checked_add(length as usize) {
            Some(end) if end <= buf_len => Ok(start..end),
            _ => Err(CertTableError::BlobPastEnd {
                index,
                guid,
                offset,
                length,
                len: buf_len,
            }),
        }
    }
}

/// Why bytes are not a well-formed certificate table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// No all-zero terminator entry before the end of the buffer.
    #[error(
        "certificate table of {len} bytes has no all-zero terminator entry (after {entries} entries)"
    )]
    NoTerminator {
        /// Entries read before the buffer ended.
        entries: usize,
        /// Buffer length.
        len: usize,
    },
    /// An entry's blob starts inside the table header (before the end of the
    /// terminator).
    #[error(
        "certificate table entry {index} ({guid:?}): blob offset {offset:#x} points into the {header_len:#x}-byte table header"
    )]
    BlobInHeader {
        /// Entry index.
        index: usize,
        /// Its GUID.
        guid: CertTableGuid,
        /// The blob offset.
        offset: u32,
        /// The blob length.
        length: u32,
        /// Bytes of the header, terminator included.
        header_len: usize,
    },
    /// An entry's blob extends past the end of the buffer.
    #[error(
        "certificate table entry {index} ({guid:?}): blob {offset:#x}+{length:#x} extends past the {len:#x}-byte buffer"
    )]
    BlobPastEnd {
        /// Entry index.
        index: usize,
        /// Its GUID.
        guid: CertTableGuid,
        /// The blob offset.
        offset: u32,
        /// The blob length.
        length: u32,
        /// Buffer length.
        len: usize,
    },
    /// An entry other than the terminator has the null GUID.
    #[error(
        "certificate table entry {index}: null GUID with offset {offset:#x} length {length:#x}"
    )]
    NullGuid {
        /// Entry index.
        index: usize,
        /// The blob offset.
        offset: u32,
        /// The blob length.
        length: u32,
    },
    /// The table does not fit the u32 offsets.
    #[error("certificate table too large ({0} bytes)")]
    TooLarge(usize),
}

/// The header of a certificate table read from a buffer: the entries before the
/// terminator. Decoding only finds the terminator; [`CertTableEntry::blob_range`] and
/// [`CertTableHeader::validate`] apply the layout's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTableHeader {
    /// The entries before the terminator, in table order.
    pub entries: Vec<CertTableEntry>,
}

impl CertTableHeader {
    /// Read entries up to the all-zero terminator. A buffer that ends first (an empty
    /// one included) is [`CertTableError::NoTerminator`].
    pub fn decode(buf: &[u8]) -> Result<Self, CertTableError> {
        let mut entries = Vec::new();
        for chunk in buf.chunks_exact(CERT_TABLE_ENTRY_LEN) {
            let Ok(entry) = CertTableEntry::read_from_bytes(chunk) else {
                break;
            };
            if entry.is_terminator() {
                return Ok(Self { entries });
            }
            entries.push(entry);
        }
        Err(CertTableError::NoTerminator {
            entries: entries.len(),
            len: buf.len(),
        })
    }

    /// Bytes the header occupies, terminator included: where blobs may start.
    pub fn len(&self) -> usize {
        (self.entries.len() + 1) * CERT_TABLE_ENTRY_LEN
    }

    /// Whether the table has no entries (only the terminator).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Check every entry, in order, against the layout's rules for a buffer of
    /// `buf_len` bytes: its blob lies between the header and the end of the buffer
    /// ([`CertTableEntry::blob_range`]) and its GUID is not null. Returns the bytes the table
    /// uses: the end of the last blob, at least the header.
    pub fn validate(&self, buf_len: usize) -> Result<usize, CertTableError> {
        let mut used = self.len();
        for (index, e) in self.entries.iter().enumerate() {
            let range = e.blob_range(index, self.len(), buf_len)?;
            if e.cert_guid() == CertTableGuid::NULL {
                return Err(CertTableError::NullGuid {
                    index,
                    offset: e.offset,
                    length: e.length,
                });
            }
            used = used.max(range.end);
        }
        Ok(used)
    }
}

/// Encode a certificate table: one entry per blob with offsets assigned in order, the
/// terminator, then the blobs in the same order.
pub fn encode_cert_table(blobs: &[(CertTableGuid, &[u8])]) -> Result<Vec<u8>, CertTableError> {
    let header_len = (blobs.len() + 1) * CERT_TABLE_ENTRY_LEN;
    let total = header_len + blobs.iter().map(|(_, b)| b.len()).sum::<usize>();
    if u32::try_from(total).is_err() {
        return Err(CertTableError::TooLarge(total));
    }
    let mut out = Vec::with_capacity(total);
    let mut offset = header_len;
    for (guid, blob) in blobs {
        // Both fit: offset + length <= total, which fits in u32.
        let entry = CertTableEntry::new(*guid, offset as u32, blob.len() as u32);
        out.extend_from_slice(entry.as_bytes());
        offset += blob.len();
    }
    out.extend_from_slice(CertTableEntry::TERMINATOR.as_bytes());
    for (_, blob) in blobs {
        out.extend_from_slice(blob);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bitmap_bits() {
        assert_eq!(GhcbField::Rax.bit(), 63);
        assert_eq!(GhcbField::SwExitCode.bit(), 114);
        let mut g = Ghcb::default();
        assert!(!g.is_valid(GhcbField::Rax));
        g.set(GhcbField::Rax, 7);
        assert!(g.is_valid(GhcbField::Rax));
        assert_eq!(g.valid_bitmap[7], 0x80);
        assert_eq!(g.get(GhcbField::Rax), Some(7));
        assert_eq!(g.get(GhcbField::Rbx), None);
        g.clear_valid();
        assert_eq!(g.get(GhcbField::Rax), None);
        let r = Ghcb::request(2, NaeExit::PSC, 1, 2);
        assert_eq!(r.as_bytes()[0xFFA], 2);
        assert_eq!(r.get(GhcbField::SwExitCode), Some(0x8000_0010));
        assert_eq!(r.valid_bitmap[14], 0x1C);
    }

    #[test]
    fn msr_protocol_round_trip() {
        let msgs = [
            GhcbMsg::SevInfoResp {
                max: 2,
                min: 1,
                cbit: 51,
            },
            GhcbMsg::SevInfoReq,
            GhcbMsg::CpuidReq {
                function: 0x8000_001F,
                reg: CpuidReg::Ebx,
            },
            GhcbMsg::CpuidResp {
                reg: CpuidReg::Edx,
                value: 0xDEAD_BEEF,
            },
            GhcbMsg::ApResetHoldReq,
            GhcbMsg::ApResetHoldResp { value: 1 },
            GhcbMsg::PreferredGpaReq,
            GhcbMsg::PreferredGpaResp {
                gfn: GHCB_MSR_GFN_NONE,
            },
            GhcbMsg::RegGpaReq { gfn: 0x1234 },
            GhcbMsg::RegGpaResp { gfn: 0x1234 },
            GhcbMsg::PscReq {
                gfn: 0xFF_FFFF_FFFF,
                op: PscOp::SHARED,
            },
            GhcbMsg::PscResp { error: 0 },
            GhcbMsg::VmplReq { vmpl: 1 },
            GhcbMsg::VmplResp { error: 3 },
            GhcbMsg::HvFeaturesReq,
            GhcbMsg::HvFeaturesResp { features: 3 },
            GhcbMsg::TermReq { set: 1, code: 4 },
        ];
        for m in msgs {
            assert_eq!(GhcbMsg::decode(m.encode()), m, "{m:?}");
        }
        // Linux encodings.
        assert_eq!(GhcbMsg::SevInfoReq.encode(), 0x002);
        assert_eq!(GhcbMsg::TermReq { set: 0, code: 0 }.encode(), 0x100);
        assert_eq!(
            GhcbMsg::PscReq {
                gfn: 1,
                op: PscOp::PRIVATE
            }
            .encode(),
            (1 << 52) | 0x1014
        );
        assert_eq!(
            GhcbMsg::SevInfoResp {
                max: 2,
                min: 1,
                cbit: 51
            }
            .encode(),
            0x0002_0001_3300_0001
        );
        assert_eq!(GhcbMsg::decode(0x3FF), GhcbMsg::Unknown(0x3FF));
        assert_eq!(
            GhcbMsg::decode(GHCB_MSR_PSC_RESP_ERROR),
            GhcbMsg::PscResp { error: 0x8000_0000 }
        );
    }

    #[test]
    fn psc_entry_fields() {
        let mut e = PscEntry::new(0x200, PscOp::PRIVATE, true);
        assert_eq!(e.gfn(), 0x200);
        assert_eq!(e.op(), PscOp::PRIVATE);
        assert!(e.huge());
        assert_eq!(e.npages(), 512);
        e.set_cur_page(17);
        assert_eq!(e.cur_page(), 17);
        assert_eq!(e.gfn(), 0x200);
        assert_eq!(e.reserved(), 0);
        assert_eq!(PscEntry(1 << 60).reserved(), 8);
        assert_eq!(core::mem::size_of::<PscDesc>(), 8 + 253 * 8);
    }

    #[test]
    fn cert_table_guids_are_text_order() {
        assert_eq!(
            CertTableGuid::VCEK.0,
            [
                0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
                0xac, 0xcd
            ]
        );
        assert_eq!(
            format!("{:?}", CertTableGuid::ARK),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae (ARK)"
        );
        assert_eq!(
            CertTableGuid::VLEK.to_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!(CertTableGuid([1; 16]).name(), None);
    }

    #[test]
    fn cert_table_encode_decode_validate() {
        let b = encode_cert_table(&[
            (CertTableGuid::ARK, &[1; 10]),
            (CertTableGuid::VCEK, &[2; 5]),
        ])
        .unwrap();
        assert_eq!(b.len(), 24 * 3 + 15);
        assert_eq!(&b[16..20], &72u32.to_le_bytes());
        assert_eq!(&b[24 + 16..24 + 20], &82u32.to_le_bytes());
        assert!(b[48..72].iter().all(|&x| x == 0));
        let h = CertTableHeader::decode(&b).unwrap();
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.len(), 72);
        assert_eq!(h.entries[1].cert_guid(), CertTableGuid::VCEK);
        assert_eq!(h.entries[1].blob_range(1, h.len(), b.len()), Ok(82..87));
        assert_eq!(h.validate(4096), Ok(87));
        let empty = encode_cert_table(&[]).unwrap();
        assert_eq!(empty, [0; 24]);
        assert_eq!(
            CertTableHeader::decode(&empty).unwrap().validate(24),
            Ok(24)
        );
        assert!(matches!(
            CertTableHeader::decode(&b[..30]),
            Err(CertTableError::NoTerminator {
                entries: 1,
                len: 30
            })
        ));
        assert!(matches!(
            CertTableHeader::decode(&[]),
            Err(CertTableError::NoTerminator { entries: 0, len: 0 })
        ));
    }

    #[test]
    fn cert_table_rules() {
        let header = |e: CertTableEntry| CertTableHeader { entries: vec![e] };
        assert!(matches!(
            CertTableEntry::new(CertTableGuid::ARK, 47, 1).blob_range(0, 48, 4096),
            Err(CertTableError::BlobInHeader { header_len: 48, .. })
        ));
        let past = header(CertTableEntry::new(CertTableGuid::ARK, 48, 4049));
        assert!(matches!(
            past.validate(4096),
            Err(CertTableError::BlobPastEnd { len: 4096, .. })
        ));
        let huge = header(CertTableEntry::new(CertTableGuid::ARK, u32::MAX, u32::MAX));
        assert!(matches!(
            huge.validate(4096),
            Err(CertTableError::BlobPastEnd { .. })
        ));
        let null = header(CertTableEntry::new(CertTableGuid::NULL, 48, 1));
        assert_eq!(null.entries[0].blob_range(0, 48, 4096), Ok(48..49));
        assert!(matches!(
            null.validate(4096),
            Err(CertTableError::NullGuid { index: 0, .. })
        ));
    }

    #[test]
    fn codes() {
        assert_eq!(format!("{:?}", NaeExit(0x8000_0013)), "AP_CREATION");
        assert_eq!(guest_req_info2(GuestReqVmmError::INVALID_LEN, 0), 1 << 32);
        assert_eq!(ap_creation_info1(ApCreateOp::CREATE, 3), (3 << 32) | 1);
        assert_eq!(PSC_ERROR_GENERIC, 0x0000_0100_0000_0000);
    }
}
