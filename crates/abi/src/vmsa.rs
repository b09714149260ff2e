//! The SEV-ES / SEV-SNP VM save area (VMSA): one 4 KiB page per vCPU (AMD APM vol. 2
//! "VMSA layout, state save area for SEV-ES"; Linux `struct sev_es_save_area`).
//! Notes: shared/spec/snp-launch.md §3.2.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// A VMCB segment register (16 bytes).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VmcbSegment {
    /// Selector.
    pub selector: u16,
    /// Attributes (VMCB packed form).
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}
crate::assert_layout!(
    VmcbSegment,
    size = 16,
    selector = 0,
    attrib = 2,
    limit = 4,
    base = 8
);

impl VmcbSegment {
    /// Build a segment.
    pub const fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        VmcbSegment {
            selector,
            attrib,
            limit,
            base,
        }
    }
}

/// SEV_FEATURES bit: SNP active.
pub const SEV_FEATURE_SNP_ACTIVE: u64 = 1 << 0;
/// SEV_FEATURES bit: DebugSwap.
pub const SEV_FEATURE_DEBUG_SWAP: u64 = 1 << 5;
/// SEV_FEATURES bit: SecureTSC.
pub const SEV_FEATURE_SECURE_TSC: u64 = 1 << 9;
/// SEV_FEATURES bit: VMSA register protection.
pub const SEV_FEATURE_VMSA_REG_PROT: u64 = 1 << 14;

/// The 4 KiB SEV-ES save area.
#[derive(Clone, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Vmsa {
    /// ES.
    pub es: VmcbSegment,
    /// CS.
    pub cs: VmcbSegment,
    /// SS.
    pub ss: VmcbSegment,
    /// DS.
    pub ds: VmcbSegment,
    /// FS.
    pub fs: VmcbSegment,
    /// GS.
    pub gs: VmcbSegment,
    /// GDTR.
    pub gdtr: VmcbSegment,
    /// LDTR.
    pub ldtr: VmcbSegment,
    /// IDTR.
    pub idtr: VmcbSegment,
    /// TR.
    pub tr: VmcbSegment,
    /// VMPL0 shadow-stack pointer.
    pub vmpl0_ssp: u64,
    /// VMPL1 shadow-stack pointer.
    pub vmpl1_ssp: u64,
    /// VMPL2 shadow-stack pointer.
    pub vmpl2_ssp: u64,
    /// VMPL3 shadow-stack pointer.
    pub vmpl3_ssp: u64,
    /// U_CET.
    pub u_cet: u64,
    /// Reserved.
    pub _reserved_0c8: [u8; 2],
    /// VMPL of this VMSA.
    pub vmpl: u8,
    /// CPL.
    pub cpl: u8,
    /// Reserved.
    pub _reserved_0cc: [u8; 4],
    /// EFER.
    pub efer: u64,
    /// Reserved.
    pub _reserved_0d8: [u8; 104],
    /// XSS.
    pub xss: u64,
    /// CR4.
    pub cr4: u64,
    /// CR3.
    pub cr3: u64,
    /// CR0.
    pub cr0: u64,
    /// DR7.
    pub dr7: u64,
    /// DR6.
    pub dr6: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP.
    pub rip: u64,
    /// DR0.
    pub dr0: u64,
    /// DR1.
    pub dr1: u64,
    /// DR2.
    pub dr2: u64,
    /// DR3.
    pub dr3: u64,
    /// DR0 address mask.
    pub dr0_addr_mask: u64,
    /// DR1 address mask.
    pub dr1_addr_mask: u64,
    /// DR2 address mask.
    pub dr2_addr_mask: u64,
    /// DR3 address mask.
    pub dr3_addr_mask: u64,
    /// Reserved.
    pub _reserved_1c0: [u8; 24],
    /// RSP.
    pub rsp: u64,
    /// S_CET.
    pub s_cet: u64,
    /// SSP.
    pub ssp: u64,
    /// ISST address.
    pub isst_addr: u64,
    /// RAX.
    pub rax: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KernelGsBase.
    pub kernel_gs_base: u64,
    /// SYSENTER_CS.
    pub sysenter_cs: u64,
    /// SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// CR2.
    pub cr2: u64,
    /// Reserved.
    pub _reserved_248: [u8; 32],
    /// Guest PAT.
    pub g_pat: u64,
    /// DBGCTL.
    pub dbgctl: u64,
    /// BR_FROM.
    pub br_from: u64,
    /// BR_TO.
    pub br_to: u64,
    /// LASTEXCPFROM.
    pub last_excp_from: u64,
    /// LASTEXCPTO.
    pub last_excp_to: u64,
    /// Reserved.
    pub _reserved_298: [u8; 80],
    /// PKRU.
    pub pkru: u32,
    /// TSC_AUX.
    pub tsc_aux: u32,
    /// GUEST_TSC_SCALE (Secure TSC; zeroed by the firmware before measuring).
    pub guest_tsc_scale: u64,
    /// GUEST_TSC_OFFSET (Secure TSC; zeroed by the firmware before measuring).
    pub guest_tsc_offset: u64,
    /// VMSA register-protection nonce (written by the firmware after measuring).
    pub reg_prot_nonce: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX (the CPUID Fn1 EAX signature at reset).
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
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// Reserved.
    pub _reserved_380: [u8; 16],
    /// GUEST_EXITINFO1.
    pub guest_exit_info_1: u64,
    /// GUEST_EXITINFO2.
    pub guest_exit_info_2: u64,
    /// GUEST_EXITINTINFO.
    pub guest_exit_int_info: u64,
    /// GUEST_NRIP.
    pub guest_nrip: u64,
    /// SEV_FEATURES.
    pub sev_features: u64,
    /// VINTR_CTRL.
    pub vintr_ctrl: u64,
    /// GUEST_EXITCODE.
    pub guest_exit_code: u64,
    /// VIRTUAL_TOM.
    pub virtual_tom: u64,
    /// TLB_ID.
    pub tlb_id: u64,
    /// PCPU_ID.
    pub pcpu_id: u64,
    /// EVENTINJ.
    pub event_inj: u64,
    /// XCR0.
    pub xcr0: u64,
    /// Reserved.
    pub _reserved_3f0: [u8; 16],
    /// x87 data pointer.
    pub x87_dp: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 tag word.
    pub x87_ftw: u16,
    /// x87 status word.
    pub x87_fsw: u16,
    /// x87 control word.
    pub x87_fcw: u16,
    /// x87 opcode.
    pub x87_fop: u16,
    /// x87 data segment.
    pub x87_ds: u16,
    /// x87 code segment.
    pub x87_cs: u16,
    /// x87 instruction pointer.
    pub x87_rip: u64,
    /// x87 registers (8 × 10 bytes).
    pub fpreg_x87: [u8; 80],
    /// XMM registers (16 × 16 bytes).
    pub fpreg_xmm: [u8; 256],
    /// YMM upper halves (16 × 16 bytes).
    pub fpreg_ymm: [u8; 256],
    /// LBR stack from/to pairs.
    pub lbr_stack_from_to: [u8; 256],
    /// LBR_SELECT.
    pub lbr_select: u64,
    /// IBS_FETCH_CTL.
    pub ibs_fetch_ctl: u64,
    /// IBS_FETCH_LINADDR.
    pub ibs_fetch_linaddr: u64,
    /// IBS_OP_CTL.
    pub ibs_op_ctl: u64,
    /// IBS_OP_RIP.
    pub ibs_op_rip: u64,
    /// IBS_OP_DATA.
    pub ibs_op_data: u64,
    /// IBS_OP_DATA2.
    pub ibs_op_data2: u64,
    /// IBS_OP_DATA3.
    pub ibs_op_data3: u64,
    /// IBS_DC_LINADDR.
    pub ibs_dc_linaddr: u64,
    /// BP_IBSTGT_RIP.
    pub bp_ibstgt_rip: u64,
    /// IC_IBS_EXTD_CTL.
    pub ic_ibs_extd_ctl: u64,
    /// Reserved to the end of the page.
    pub _reserved_7c8: [u8; 0x838],
}

crate::assert_layout!(
    Vmsa,
    size = 0x1000,
    es = 0x000,
    cs = 0x010,
    ss = 0x020,
    ds = 0x030,
    fs = 0x040,
    gs = 0x050,
    gdtr = 0x060,
    ldtr = 0x070,
    idtr = 0x080,
    tr = 0x090,
    vmpl0_ssp = 0x0A0,
    vmpl1_ssp = 0x0A8,
    vmpl2_ssp = 0x0B0,
    vmpl3_ssp = 0x0B8,
    u_cet = 0x0C0,
    _reserved_0c8 = 0x0C8,
    vmpl = 0x0CA,
    cpl = 0x0CB,
    _reserved_0cc = 0x0CC,
    efer = 0x0D0,
    _reserved_0d8 = 0x0D8,
    xss = 0x140,
    cr4 = 0x148,
    cr3 = 0x150,
    cr0 = 0x158,
    dr7 = 0x160,
    dr6 = 0x168,
    rflags = 0x170,
    rip = 0x178,
    dr0 = 0x180,
    dr1 = 0x188,
    dr2 = 0x190,
    dr3 = 0x198,
    dr0_addr_mask = 0x1A0,
    dr1_addr_mask = 0x1A8,
    dr2_addr_mask = 0x1B0,
    dr3_addr_mask = 0x1B8,
    _reserved_1c0 = 0x1C0,
    rsp = 0x1D8,
    s_cet = 0x1E0,
    ssp = 0x1E8,
    isst_addr = 0x1F0,
    rax = 0x1F8,
    star = 0x200,
    lstar = 0x208,
    cstar = 0x210,
    sfmask = 0x218,
    kernel_gs_base = 0x220,
    sysenter_cs = 0x228,
    sysenter_esp = 0x230,
    sysenter_eip = 0x238,
    cr2 = 0x240,
    _reserved_248 = 0x248,
    g_pat = 0x268,
    dbgctl = 0x270,
    br_from = 0x278,
    br_to = 0x280,
    last_excp_from = 0x288,
    last_excp_to = 0x290,
    _reserved_298 = 0x298,
    pkru = 0x2E8,
    tsc_aux = 0x2EC,
    guest_tsc_scale = 0x2F0,
    guest_tsc_offset = 0x2F8,
    reg_prot_nonce = 0x300,
    rcx = 0x308,
    rdx = 0x310,
    rbx = 0x318,
    _reserved_320 = 0x320,
    rbp = 0x328,
    rsi = 0x330,
    rdi = 0x338,
    r8 = 0x340,
    r9 = 0x348,
    r10 = 0x350,
    r11 = 0x358,
    r12 = 0x360,
    r13 = 0x368,
    r14 = 0x370,
    r15 = 0x378,
    _reserved_380 = 0x380,
    guest_exit_info_1 = 0x390,
    guest_exit_info_2 = 0x398,
    guest_exit_int_info = 0x3A0,
    guest_nrip = 0x3A8,
    sev_features = 0x3B0,
    vintr_ctrl = 0x3B8,
    guest_exit_code = 0x3C0,
    virtual_tom = 0x3C8,
    tlb_id = 0x3D0,
    pcpu_id = 0x3D8,
    event_inj = 0x3E0,
    xcr0 = 0x3E8,
    _reserved_3f0 = 0x3F0,
    x87_dp = 0x400,
    mxcsr = 0x408,
    x87_ftw = 0x40C,
    x87_fsw = 0x40E,
    x87_fcw = 0x410,
    x87_fop = 0x412,
    x87_ds = 0x414,
    x87_cs = 0x416,
    x87_rip = 0x418,
    fpreg_x87 = 0x420,
    fpreg_xmm = 0x470,
    fpreg_ymm = 0x570,
    lbr_stack_from_to = 0x670,
    lbr_select = 0x770,
    ibs_fetch_ctl = 0x778,
    ibs_fetch_linaddr = 0x780,
    ibs_op_ctl = 0x788,
    ibs_op_rip = 0x790,
    ibs_op_data = 0x798,
    ibs_op_data2 = 0x7A0,
    ibs_op_data3 = 0x7A8,
    ibs_dc_linaddr = 0x7B0,
    bp_ibstgt_rip = 0x7B8,
    ic_ibs_extd_ctl = 0x7C0,
    _reserved_7c8 = 0x7C8,
);

impl Vmsa {
    /// An all-zero save area.
    pub fn zeroed() -> Vmsa {
        Vmsa::new_zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_a_page_of_zeros() {
        let v = Vmsa::zeroed();
        assert_eq!(v.as_bytes().len(), 4096);
        assert!(v.as_bytes().iter().all(|&b| b == 0));
    }
}
