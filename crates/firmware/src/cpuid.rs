//! The CPUID page check of SNP_LAUNCH_UPDATE (page type CPUID). (The VMM builds the
//! page: softsev-vmm's `cpuid` module builds it as QEMU does.)
//!
//! When the host hands the firmware a page of type CPUID, the firmware checks
//! `count <= 64` and the page's reserved fields, then every function whose leaf lies in
//! the standard (`0x0000_0000..=0x0000_FFFF`) or extended (`0x8000_0000..=0x8000_FFFF`)
//! range against what the platform allows: per leaf, sub-leaf and register one of four
//! [`Policy`] kinds plus a mask of reserved bits that must be zero, and a few leaves
//! with rules of their own (family/model/stepping, XSAVE sizes from XCR0/XSS, the
//! C-bit position, …). A leaf in those ranges that the platform does not list must be
//! all zero. Functions outside both ranges (hypervisor leaves) pass unchecked.
//!
//! On any bad function the firmware writes the *corrected* values into the page (the
//! caller copies them back to the host so the VMM can see which leaves were rejected)
//! and fails with INVALID_PARAM; when every function is good the page is measured and
//! encrypted like any other.
//!
//! The policy tables follow AMD's published SEV firmware (`cpuid_lookup.c`, the
//! "Strict / Mask / Less than / Unchecked" rules and their reserved masks); see
//! docs/firmware-cpuid.md for the sources and the places where softsev differs or
//! had to guess.
//!
//! The public surface a host or VMM uses is [`PlatformCpuid::for_product`],
//! [`check_cpuid_page`], [`leaf_is_checked`] and the XSAVE size rules; the policy
//! tables (`Policy`, `RegCheck`, `LeafPolicy`, …) and `rejected_functions` are public,
//! hidden from the docs, for the tests that pin them.

use crate::{FEATURE_INFO_0_EAX, FEATURE_INFO_0_EBX, FEATURE_INFO_0_ECX, FEATURE_INFO_1_EAX};
use softsev_abi::fw_buf::{SNP_CPUID_COUNT_MAX, SnpCpuidFunction, SnpCpuidPage};
use softsev_abi::{FwStatus, Product};

/// Leaves the firmware checks: the standard range.
pub const CPUID_STD_RANGE: core::ops::RangeInclusive<u32> = 0x0000_0000..=0x0000_FFFF;
/// Leaves the firmware checks: the extended range.
pub const CPUID_EXT_RANGE: core::ops::RangeInclusive<u32> = 0x8000_0000..=0x8000_FFFF;

/// Whether the firmware checks a function with this leaf (EAX input) at all.
pub fn leaf_is_checked(leaf: u32) -> bool {
    CPUID_STD_RANGE.contains(&leaf) || CPUID_EXT_RANGE.contains(&leaf)
}

/// How one output register of one leaf is checked against the platform.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The register must equal this value exactly; a bad value is replaced by it.
    Strict(u32),
    /// Only these bits may be set; a bad value is ANDed with the mask.
    Mask(u32),
    /// The register, read as a number, must be at most this value; a bad value is
    /// replaced by it.
    AtMost(u32),
    /// Any value (only the reserved bits are checked).
    PassThrough,
}

impl Policy {
    /// Applies the policy to `reg`; returns false (and corrects `reg`) on a violation.
    fn apply(self, reg: &mut u32) -> bool {
        match self {
            Policy::Strict(v) => replace_if(reg, *reg != v, v),
            Policy::Mask(m) => {
                let ok = *reg & !m == 0;
                *reg &= m;
                ok
            }
            Policy::AtMost(v) => replace_if(reg, *reg > v, v),
            Policy::PassThrough => true,
        }
    }
}

fn replace_if(reg: &mut u32, bad: bool, v: u32) -> bool {
    if bad {
        *reg = v;
    }
    !bad
}

/// Clears `reserved` bits of `reg`; false if any was set.
fn clear_reserved(reg: &mut u32, reserved: u32) -> bool {
    let ok = *reg & reserved == 0;
    *reg &= !reserved;
    ok
}

/// One register's check: a policy and the bits that must be zero.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegCheck {
    /// The policy.
    pub policy: Policy,
    /// Reserved bits (must be zero; cleared on correction).
    pub reserved: u32,
}

impl RegCheck {
    fn check(self, reg: &mut u32) -> bool {
        let a = self.policy.apply(reg);
        let b = clear_reserved(reg, self.reserved);
        a && b
    }
}

const fn strict(v: u32, reserved: u32) -> RegCheck {
    RegCheck {
        policy: Policy::Strict(v),
        reserved,
    }
}
const fn mask(v: u32, reserved: u32) -> RegCheck {
    RegCheck {
        policy: Policy::Mask(v),
        reserved,
    }
}
const fn at_most(v: u32, reserved: u32) -> RegCheck {
    RegCheck {
        policy: Policy::AtMost(v),
        reserved,
    }
}
const fn pass(reserved: u32) -> RegCheck {
    RegCheck {
        policy: Policy::PassThrough,
        reserved,
    }
}
/// A register that does not exist on the platform: must be zero.
const ZERO: RegCheck = strict(0, !0);

/// Leaves whose registers follow rules of their own rather than four [`RegCheck`]s.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomLeaf {
    /// Fn0000_0001: FMS at most the platform's, CLFLUSH size 8, feature masks
    /// (OSXSAVE and the hypervisor bit unchecked).
    Std1,
    /// Fn0000_0007 sub-leaf 0: max sub-leaf at most, feature masks (OSPKE unchecked).
    Std7,
    /// Fn0000_000D sub-leaf 0: x87 and SSE required, component mask, EBX = XSAVE
    /// size for the entry's XCR0_IN, EDX = 0.
    Xsave0,
    /// Fn0000_000D sub-leaf 1: masks, EBX = compacted XSAVE size for XCR0_IN/XSS_IN.
    Xsave1,
    /// Fn8000_0001: FMS at most the platform's, feature masks.
    Ext1,
    /// Fn8000_0008: address sizes and INVLPGB/RDPRU limits at most, feature mask.
    Ext8,
    /// Fn8000_001F: SEV feature mask, C-bit position strict, VMPL count at most.
    Ext1F,
    /// Fn8000_0022: PerfMonV2 mask, counter/LBR-stack sizes at most, EDX = 0.
    Ext22,
}

/// How a listed leaf is checked.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafCheck {
    /// One [`RegCheck`] per register, EAX, EBX, ECX, EDX.
    Regs([RegCheck; 4]),
    /// Rules of the leaf's own.
    Custom(CustomLeaf),
}

/// One leaf/sub-leaf the platform lists.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafPolicy {
    /// EAX input.
    pub leaf: u32,
    /// ECX input.
    pub subleaf: u32,
    /// The check.
    pub check: LeafCheck,
}

/// A mask-policed register field of a custom leaf: allowed bits and reserved bits.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskField {
    /// Bits the platform allows.
    pub allowed: u32,
    /// Bits that must be zero.
    pub reserved: u32,
}

impl MaskField {
    const fn new(allowed: u32, reserved: u32) -> Self {
        MaskField { allowed, reserved }
    }
    /// Mask check, ignoring `unchecked` bits; then reserved.
    fn check(self, reg: &mut u32, unchecked: u32) -> bool {
        let mut ok = true;
        if *reg & !unchecked & !self.allowed != 0 {
            *reg &= self.allowed | unchecked;
            ok = false;
        }
        clear_reserved(reg, self.reserved) && ok
    }
}

/// The platform's values behind the custom leaves.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomParams {
    /// Fn0000_0001 ECX.
    pub std1_ecx: MaskField,
    /// Fn0000_0001 EDX.
    pub std1_edx: MaskField,
    /// Fn0000_0007_x00 EAX: highest sub-leaf.
    pub std7_max_subleaf: u32,
    /// Fn0000_0007_x00 EBX.
    pub std7_ebx: MaskField,
    /// Fn0000_0007_x00 ECX.
    pub std7_ecx: MaskField,
    /// Fn0000_0007_x00 EDX.
    pub std7_edx: MaskField,
    /// Fn0000_000D_x00 EAX: XSAVE components supported in XCR0.
    pub xsave0_eax: MaskField,
    /// Fn0000_000D_x01 EAX: XSAVEOPT/XSAVEC/XGETBV1/XSAVES.
    pub xsave1_eax: MaskField,
    /// Fn0000_000D_x01 ECX: XSS components.
    pub xsave1_ecx: MaskField,
    /// Fn8000_0001 ECX.
    pub ext1_ecx: MaskField,
    /// Fn8000_0001 EDX.
    pub ext1_edx: MaskField,
    /// Fn8000_0008 `EAX[7:0]` physical address size, at most.
    pub phys_addr_bits: u32,
    /// Fn8000_0008 `EAX[15:8]` linear address size, at most.
    pub lin_addr_bits: u32,
    /// Fn8000_0008 `EAX[23:16]` guest physical address size, at most.
    pub guest_phys_addr_bits: u32,
    /// Fn8000_0008 EBX.
    pub ext8_ebx: MaskField,
    /// Fn8000_0008 `EDX[15:0]` INVLPGB count, at most.
    pub invlpgb_max: u32,
    /// Fn8000_0008 `EDX[23:16]` RDPRU max ECX, at most.
    pub rdpru_max: u32,
    /// Fn8000_001F EAX.
    pub sev_features: MaskField,
    /// Fn8000_001F `EBX[5:0]` C-bit position (strict).
    pub cbit: u32,
    /// Fn8000_001F `EBX[15:12]` number of VMPLs, at most.
    pub vmpl_max: u32,
    /// Fn8000_0022 EAX.
    pub perfmon_eax: MaskField,
    /// Fn8000_0022 `EBX[3:0]` core performance counters, at most.
    pub perf_ctr_core_max: u32,
    /// Fn8000_0022 `EBX[9:4]` LBR v2 stack size, at most.
    pub lbr_stack_max: u32,
}

/// What the platform's CPU allows an SNP guest to see, for one product: the policy
/// table the firmware checks a CPUID page against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCpuid {
    product: Product,
    fms: u32,
    params: CustomParams,
    leaves: Vec<LeafPolicy>,
}

// Fn0000_0001 and Fn8000_0001 EAX reserved bits.
const FMS_RESERVED: u32 = 0xF000_F000;
const STD1_EBX_RESERVED: u32 = 0x0000_00FF;
const STD1_ECX_OSXSAVE: u32 = 1 << 27;
const STD1_ECX_HYPERVISOR: u32 = 1 << 31;
const STD7_ECX_OSPKE: u32 = 1 << 4;
const EXT1_EBX_RESERVED: u32 = 0x0FFF_FFFF;
const EXT8_EAX_RESERVED: u32 = 0xFF00_0000;
const EXT8_ECX_RESERVED: u32 = 0xFFFC_0F00;
const EXT8_EDX_RESERVED: u32 = 0xFF00_0000;
const EXT1F_EBX_UNCHECKED: u32 = 0x3F << 6;
const EXT1F_EBX_VMPL: u32 = 0xF << 12;
const EXT1F_EBX_RESERVED: u32 = 0xFFFF_0000;

// XCR0 / IA32_XSS component bits used by the XSAVE size rules.
const XCR0_X87: u64 = 1 << 0;
const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;
const XCR0_OPMASK: u64 = 1 << 5;
const XCR0_ZMM_HI256: u64 = 1 << 6;
const XCR0_HI16_ZMM: u64 = 1 << 7;
const XCR0_PKRU: u64 = 1 << 9;
const XSS_CET_U: u64 = 1 << 11;
const XSS_CET_S: u64 = 1 << 12;

/// Fn0000_000D_x00 EBX the firmware expects for a given XCR0: the end of the highest
/// enabled user component in the standard (non-compacted) XSAVE layout.
pub fn xsave_size_standard(xcr0: u64) -> u32 {
    if xcr0 & XCR0_PKRU != 0 {
        0x988
    } else if xcr0 & XCR0_HI16_ZMM != 0 {
        0x980
    } else if xcr0 & XCR0_ZMM_HI256 != 0 {
        0x580
    } else if xcr0 & XCR0_OPMASK != 0 {
        0x380
    } else if xcr0 & XCR0_AVX != 0 {
        0x340
    } else {
        0x240
    }
}

/// Fn0000_000D_x01 EBX the firmware expects: the compacted XSAVE size for the enabled
/// XCR0 and IA32_XSS components (the per-component sizes AMD's firmware adds).
pub fn xsave_size_compacted(xcr0: u64, xss: u64) -> u32 {
    let mut size = 0x240;
    for (bit, add) in [
        (XCR0_PKRU, 0x8),
        (XCR0_HI16_ZMM, 0x400),
        (XCR0_ZMM_HI256, 0x200),
        (XCR0_OPMASK, 0x40),
        (XCR0_AVX, 0x100),
    ] {
        if xcr0 & bit != 0 {
            size += add;
        }
    }
    if xss & XSS_CET_U != 0 {
        size += 0x10;
    }
    if xss & XSS_CET_S != 0 {
        size += 0x18;
    }
    size
}

/// (family, model, stepping) as AMD's firmware compares them: family = extended +
/// base family, model = extended + base model nibble (the firmware adds the two
/// model nibbles rather than concatenating them), stepping.
fn fms_key(eax: u32) -> (u32, u32, u32) {
    let family = ((eax >> 20) & 0xFF) + ((eax >> 8) & 0xF);
    let model = ((eax >> 16) & 0xF) + ((eax >> 4) & 0xF);
    (family, model, eax & 0xF)
}

/// Whether a guest FMS is at most the platform's, in the firmware's ordering.
fn fms_at_most(platform: u32, guest: u32) -> bool {
    fms_key(guest) <= fms_key(platform)
}

impl PlatformCpuid {
    /// The platform CPUID policy of `product`.
    ///
    /// Genoa uses the values of AMD's published firmware table verbatim (that
    /// firmware is a family 19h model 1xh build). Milan removes what Zen 3 lacks and
    /// Turin adds what Zen 5 has (see docs/firmware-cpuid.md for every difference).
    pub fn for_product(product: Product) -> Self {
        let mut p = Self::genoa_base(product);
        match product {
            Product::Genoa => {}
            Product::Milan => p.restrict_to_milan(),
            Product::Turin => p.extend_to_turin(),
        }
        p
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// Fn0000_0001_EAX of the platform (the upper bound for guests).
    pub fn fms(&self) -> u32 {
        self.fms
    }

    /// The custom leaves' platform values.
    #[doc(hidden)]
    pub fn params(&self) -> &CustomParams {
        &self.params
    }

    /// Every listed leaf/sub-leaf and its check.
    #[doc(hidden)]
    pub fn leaves(&self) -> &[LeafPolicy] {
        &self.leaves
    }

    /// The policy of one leaf/sub-leaf, if listed.
    #[doc(hidden)]
    pub fn leaf(&self, leaf: u32, subleaf: u32) -> Option<&LeafPolicy> {
        self.leaves
            .iter()
            .find(|l| l.leaf == leaf && l.subleaf == subleaf)
    }

    fn leaf_mut(&mut self, leaf: u32, subleaf: u32) -> Option<&mut LeafPolicy> {
        self.leaves
            .iter_mut()
            .find(|l| l.leaf == leaf && l.subleaf == subleaf)
    }

    fn set_regs(&mut self, leaf: u32, subleaf: u32, regs: [RegCheck; 4]) {
        if let Some(l) = self.leaf_mut(leaf, subleaf) {
            l.check = LeafCheck::Regs(regs);
        }
    }

    fn genoa_base(product: Product) -> Self {
        let params = CustomParams {
            std1_ecx: MaskField::new(0x76FA_320B, 0x0105_CDF4),
            std1_edx: MaskField::new(0x178B_FBFF, 0xE874_0400),
            std7_max_subleaf: 1,
            std7_ebx: MaskField::new(0xF1BF_97A9, 0x0E00_6846),
            std7_ecx: MaskField::new(0x0041_5FCE, 0xFFBE_A021),
            std7_edx: MaskField::new(0x1000_0010, 0xEFFF_FFEF),
            xsave0_eax: MaskField::new(0x0000_02E7, 0xFFFF_FD18),
            xsave1_eax: MaskField::new(0x0000_000F, 0xFFFF_FFF0),
            xsave1_ecx: MaskField::new(0x0000_1800, 0),
            ext1_ecx: MaskField::new(0x75C2_37FF, 0x803C_4000),
            ext1_edx: MaskField::new(0x2FD3_FBFF, 0x102C_0400),
            phys_addr_bits: 52,
            lin_addr_bits: 57,
            guest_phys_addr_bits: 0xFF,
            ext8_ebx: MaskField::new(0x79BE_F35F, 0x0600_08A0),
            invlpgb_max: 7,
            rdpru_max: 1,
            sev_features: MaskField::new(0x030F_FFFF, 0xFCF0_0000),
            cbit: 0x33,
            vmpl_max: 4,
            perfmon_eax: MaskField::new(0x7, !0x7),
            perf_ctr_core_max: 6,
            lbr_stack_max: 0x10,
        };
        let fi0_ebx = FEATURE_INFO_0_EBX;
        let fi0_ecx = FEATURE_INFO_0_ECX;
        let fi1_eax = FEATURE_INFO_1_EAX;
        let custom = |leaf, subleaf, c| LeafPolicy {
            leaf,
            subleaf,
            check: LeafCheck::Custom(c),
        };
        let regs = |leaf, subleaf, r: [RegCheck; 4]| LeafPolicy {
            leaf,
            subleaf,
            check: LeafCheck::Regs(r),
        };
        let cache = pass(0xFC00_3C00);
        let leaves = vec![
            regs(0x0, 0, [at_most(0x10, 0), pass(0), pass(0), pass(0)]),
            custom(0x1, 0, CustomLeaf::Std1),
            regs(0x2, 0, [pass(0); 4]),
            regs(0x4, 0, [pass(0); 4]),
            regs(
                0x5,
                0,
                [
                    pass(0xFFFF_0000),
                    pass(0xFFFF_0000),
                    pass(0xFFFF_FFFC),
                    pass(0xFFFF_FF00),
                ],
            ),
            regs(
                0x6,
                0,
                [
                    mask(0x4, 0xFFFF_FFFB),
                    strict(0, !0),
                    mask(0x1, 0xFFFF_FFFE),
                    strict(0, !0),
                ],
            ),
            custom(0x7, 0, CustomLeaf::Std7),
            regs(0x7, 1, [mask(0x20, !0x20), ZERO, ZERO, ZERO]),
            regs(
                0xB,
                0,
                [
                    pass(0xFFFF_FFE0),
                    pass(0xFFFF_0000),
                    pass(0xFFFF_0000),
                    pass(0),
                ],
            ),
            regs(
                0xB,
                1,
                [
                    pass(0xFFFF_FFE0),
                    pass(0xFFFF_0000),
                    pass(0xFFFF_0000),
                    pass(0),
                ],
            ),
            regs(
                0xB,
                2,
                [
                    pass(0xFFFF_FFE0),
                    pass(0xFFFF_0000),
                    pass(0xFFFF_0000),
                    pass(0),
                ],
            ),
            custom(0xD, 0, CustomLeaf::Xsave0),
            custom(0xD, 1, CustomLeaf::Xsave1),
            regs(
                0xD,
                2,
                [strict(0x100, 0), strict(0x240, 0), strict(0, !3), ZERO],
            ),
            regs(
                0xD,
                5,
                [strict(0x40, 0), strict(0x340, 0), mask(3, !3), ZERO],
            ),
            regs(
                0xD,
                6,
                [strict(0x200, 0), strict(0x380, 0), mask(3, !3), ZERO],
            ),
            regs(
                0xD,
                7,
                [strict(0x400, 0), strict(0x580, 0), mask(3, !3), ZERO],
            ),
            regs(
                0xD,
                9,
                [strict(0x8, 0), strict(0x980, 0), strict(0, !3), ZERO],
            ),
            regs(
                0xD,
                0xB,
                [strict(0x10, 0), strict(0, 0), strict(1, !3), ZERO],
            ),
            regs(
                0xD,
                0xC,
                [strict(0x18, 0), strict(0, 0), strict(1, !3), ZERO],
            ),
            regs(0xF, 0, [ZERO, pass(0), ZERO, pass(0xFFFF_FFFD)]),
            regs(
                0xF,
                1,
                [pass(0xFFFF_FE00), pass(0), pass(0), pass(0xFFFF_FFF8)],
            ),
            regs(0x10, 0, [ZERO, pass(0xFFFF_FFF9), ZERO, ZERO]),
            regs(
                0x10,
                1,
                [
                    pass(0xFFFF_FFE0),
                    pass(0),
                    pass(0xFFFF_FFFB),
                    pass(0xFFFF_0000),
                ],
            ),
            regs(
                0x8000_0000,
                0,
                [at_most(0x8000_0028, 0), pass(0), pass(0), pass(0)],
            ),
            custom(0x8000_0001, 0, CustomLeaf::Ext1),
            regs(0x8000_0002, 0, [pass(0); 4]),
            regs(0x8000_0003, 0, [pass(0); 4]),
            regs(0x8000_0004, 0, [pass(0); 4]),
            regs(0x8000_0005, 0, [pass(0); 4]),
            regs(
                0x8000_0006,
                0,
                [pass(0), pass(0), pass(0), pass(0x0003_0000)],
            ),
            regs(
                0x8000_0007,
                0,
                [
                    ZERO,
                    mask(0x3B, 0xFFFF_FFC0),
                    pass(0),
                    mask(0x6799, 0xFFFF_8026),
                ],
            ),
            custom(0x8000_0008, 0, CustomLeaf::Ext8),
            regs(
                0x8000_000A,
                0,
                [
                    pass(0xFFFF_FF00),
                    pass(0),
                    ZERO,
                    mask(0x1FBF_BCFF, 0xE040_4300),
                ],
            ),
            regs(0x8000_0019, 0, [pass(0), pass(0), ZERO, ZERO]),
            regs(0x8000_001A, 0, [pass(0xFFFF_FFF8), ZERO, ZERO, ZERO]),
            regs(0x8000_001B, 0, [mask(0xBFF, 0xFFFF_F000), ZERO, ZERO, ZERO]),
            regs(0x8000_001D, 0, [cache, pass(0), pass(0), pass(0xFFFF_FFFC)]),
            regs(0x8000_001D, 1, [cache, pass(0), pass(0), pass(0xFFFF_FFFC)]),
            regs(0x8000_001D, 2, [cache, pass(0), pass(0), pass(0xFFFF_FFFC)]),
            regs(0x8000_001D, 3, [cache, pass(0), pass(0), pass(0xFFFF_FFFC)]),
            regs(0x8000_001D, 4, [pass(0xFFFF_FFF0), ZERO, pass(0), ZERO]),
            regs(
                0x8000_001E,
                0,
                [pass(0), pass(0xFFFF_0000), pass(0xFFFF_F800), pass(!0)],
            ),
            custom(0x8000_001F, 0, CustomLeaf::Ext1F),
            regs(0x8000_0020, 0, [ZERO, pass(0xFFFF_FFE1), ZERO, ZERO]),
            regs(0x8000_0020, 1, [pass(0), ZERO, ZERO, pass(0)]),
            regs(0x8000_0020, 2, [pass(0), ZERO, ZERO, pass(0)]),
            regs(
                0x8000_0020,
                3,
                [strict(0, 0), pass(0), mask(0x7F, !0x7F), strict(0, 0)],
            ),
            regs(
                0x8000_0021,
                0,
                [
                    mask(0x1806_2FCF, 0xE7F9_D020),
                    pass(0xFFFF_F000),
                    ZERO,
                    ZERO,
                ],
            ),
            custom(0x8000_0022, 0, CustomLeaf::Ext22),
            regs(0x8000_0023, 0, [mask(1, !1), pass(0), ZERO, ZERO]),
            // Fn8000_0024 reflects SNP_FEATURE_INFO; softsev's values are used so the
            // two agree. Sub-function 0 EDX and sub-function 1 EBX/ECX/EDX are 0.
            regs(
                0x8000_0024,
                0,
                [
                    at_most(FEATURE_INFO_0_EAX, 0),
                    mask(fi0_ebx, !fi0_ebx),
                    mask(fi0_ecx, !fi0_ecx),
                    ZERO,
                ],
            ),
            regs(0x8000_0024, 1, [mask(fi1_eax, !fi1_eax), ZERO, ZERO, ZERO]),
            regs(0x8000_0026, 0, [pass(0); 4]),
            regs(0x8000_0026, 1, [pass(0); 4]),
            regs(0x8000_0026, 2, [pass(0); 4]),
            regs(0x8000_0026, 3, [pass(0); 4]),
        ];
        PlatformCpuid {
            product,
            fms: product.cpuid_signature(),
            params,
            leaves,
        }
    }

    /// Zen 3 (Milan): no AVX-512, LA57, BF16 or the Zen 4 additions.
    fn restrict_to_milan(&mut self) {
        let p = &mut self.params;
        // AVX512F/DQ/IFMA/CD/BW/VL.
        let avx512_ebx = (1 << 16) | (1 << 17) | (1 << 21) | (1 << 28) | (1 << 30) | (1 << 31);
        p.std7_ebx = restrict(p.std7_ebx, avx512_ebx);
        // AVX512_VBMI, VBMI2, GFNI, VNNI, BITALG, VPOPCNTDQ, LA57 (GFNI is Zen 4).
        let zen4_ecx =
            (1 << 1) | (1 << 6) | (1 << 8) | (1 << 11) | (1 << 12) | (1 << 14) | (1 << 16);
        p.std7_ecx = restrict(p.std7_ecx, zen4_ecx);
        p.std7_max_subleaf = 0;
        // Opmask, ZMM_Hi256, Hi16_ZMM.
        p.xsave0_eax = restrict(p.xsave0_eax, 0xE0);
        p.phys_addr_bits = 48;
        p.lin_addr_bits = 48;
        // Fn8000_001F: VmsaRegProt, SMT protection, IBS virt., VirtualTomMsr,
        // VmgexitParameter, VTE (Zen 4 SEV features).
        p.sev_features = restrict(p.sev_features, 0x030F_0000);
        self.set_regs(0x7, 1, [ZERO; 4]);
        for sub in [5, 6, 7] {
            self.set_regs(0xD, sub, [ZERO; 4]);
        }
        self.set_regs(
            0x8000_0000,
            0,
            [at_most(0x8000_0023, 0), pass(0), pass(0), pass(0)],
        );
        // Fn8000_001B: no Zen4IbsExt.
        self.set_regs(0x8000_001B, 0, [mask(0x3FF, 0xFFFF_F000), ZERO, ZERO, ZERO]);
        // Fn8000_0021 EAX without UpperAddressIgnore, AutomaticIBRS, FSRS, FSRC.
        let m = 0x1806_2FCF & !((1 << 7) | (1 << 8) | (1 << 10) | (1 << 11));
        self.set_regs(
            0x8000_0021,
            0,
            [mask(m, 0xE7F9_D020), pass(0xFFFF_F000), ZERO, ZERO],
        );
    }

    /// Zen 5 (Turin): MOVDIRI/MOVDIR64B, AVX512_VP2INTERSECT, AVX-VNNI and
    /// SRSO_USER_KERNEL_NO on top of Genoa.
    fn extend_to_turin(&mut self) {
        let p = &mut self.params;
        p.std7_ecx = extend(p.std7_ecx, (1 << 27) | (1 << 28));
        p.std7_edx = extend(p.std7_edx, 1 << 8);
        self.set_regs(0x7, 1, [mask(0x30, !0x30), ZERO, ZERO, ZERO]);
        let m = 0x1806_2FCF | (1 << 30);
        self.set_regs(
            0x8000_0021,
            0,
            [mask(m, 0xE7F9_D020 & !m), pass(0xFFFF_F000), ZERO, ZERO],
        );
    }

    /// Checks one function as the firmware does (only functions in the checked ranges
    /// should be passed; [`check_cpuid_page`] does the range test). Bad registers are
    /// corrected in place; a non-zero reserved field fails without correction, as in
    /// AMD's firmware.
    #[doc(hidden)]
    pub fn check_function(&self, f: &mut SnpCpuidFunction) -> Result<(), FwStatus> {
        let mut ok = f.reserved == 0;
        let (leaf, subleaf) = (f.eax_in, f.ecx_in);
        match self.leaf(leaf, subleaf).map(|l| l.check) {
            Some(LeafCheck::Regs(r)) => {
                let [ca, cb, cc, cd] = r;
                let a = ca.check(&mut f.eax);
                let b = cb.check(&mut f.ebx);
                let c = cc.check(&mut f.ecx);
                let d = cd.check(&mut f.edx);
                ok &= a && b && c && d;
            }
            Some(LeafCheck::Custom(c)) => ok &= self.check_custom(c, f),
            None => {
                // An architectural leaf the platform does not list must be all zero.
                if f.eax | f.ebx | f.ecx | f.edx != 0 {
                    f.eax = 0;
                    f.ebx = 0;
                    f.ecx = 0;
                    f.edx = 0;
                    ok = false;
                }
            }
        }
        if ok {
            Ok(())
        } else {
            Err(FwStatus::INVALID_PARAM)
        }
    }

    fn check_custom(&self, c: CustomLeaf, f: &mut SnpCpuidFunction) -> bool {
        let p = &self.params;
        let mut ok = true;
        match c {
            CustomLeaf::Std1 => {
                ok &= self.check_fms(&mut f.eax);
                // EBX[15:8]: CLFLUSH line size in quadwords, strict 8.
                if (f.ebx >> 8) & 0xFF != 8 {
                    f.ebx = (f.ebx & !0xFF00) | (8 << 8);
                    ok = false;
                }
                ok &= clear_reserved(&mut f.ebx, STD1_EBX_RESERVED);
                ok &= p
                    .std1_ecx
                    .check(&mut f.ecx, STD1_ECX_OSXSAVE | STD1_ECX_HYPERVISOR);
                ok &= p.std1_edx.check(&mut f.edx, 0);
            }
            CustomLeaf::Std7 => {
                ok &= at_most(p.std7_max_subleaf, 0).check(&mut f.eax);
                ok &= p.std7_ebx.check(&mut f.ebx, 0);
                ok &= p.std7_ecx.check(&mut f.ecx, STD7_ECX_OSPKE);
                ok &= p.std7_edx.check(&mut f.edx, 0);
            }
            CustomLeaf::Xsave0 => {
                let base = (XCR0_X87 | XCR0_SSE) as u32;
                if f.eax & base != base {
                    f.eax |= base;
                    ok = false;
                }
                ok &= p.xsave0_eax.check(&mut f.eax, 0);
                ok &= strict(xsave_size_standard(f.xcr0_in), 0).check(&mut f.ebx);
                ok &= strict(0, 0).check(&mut f.edx);
            }
            CustomLeaf::Xsave1 => {
                ok &= p.xsave1_eax.check(&mut f.eax, 0);
                ok &= strict(xsave_size_compacted(f.xcr0_in, f.xss_in), 0).check(&mut f.ebx);
                ok &= p.xsave1_ecx.check(&mut f.ecx, 0);
                ok &= strict(0, 0).check(&mut f.edx);
            }
            CustomLeaf::Ext1 => {
                ok &= self.check_fms(&mut f.eax);
                ok &= clear_reserved(&mut f.ebx, EXT1_EBX_RESERVED);
                ok &= p.ext1_ecx.check(&mut f.ecx, 0);
                ok &= p.ext1_edx.check(&mut f.edx, 0);
            }
            CustomLeaf::Ext8 => {
                ok &= field_at_most(&mut f.eax, 0, 0xFF, p.phys_addr_bits);
                ok &= field_at_most(&mut f.eax, 8, 0xFF, p.lin_addr_bits);
                ok &= field_at_most(&mut f.eax, 16, 0xFF, p.guest_phys_addr_bits);
                ok &= clear_reserved(&mut f.eax, EXT8_EAX_RESERVED);
                ok &= p.ext8_ebx.check(&mut f.ebx, 0);
                ok &= clear_reserved(&mut f.ecx, EXT8_ECX_RESERVED);
                ok &= field_at_most(&mut f.edx, 0, 0xFFFF, p.invlpgb_max);
                ok &= field_at_most(&mut f.edx, 16, 0xFF, p.rdpru_max);
                ok &= clear_reserved(&mut f.edx, EXT8_EDX_RESERVED);
            }
            CustomLeaf::Ext1F => {
                ok &= p.sev_features.check(&mut f.eax, 0);
                let loose = EXT1F_EBX_UNCHECKED | EXT1F_EBX_VMPL;
                if f.ebx & !loose != p.cbit {
                    f.ebx = (f.ebx & loose) | p.cbit;
                    ok = false;
                }
                ok &= field_at_most(&mut f.ebx, 12, 0xF, p.vmpl_max);
                ok &= clear_reserved(&mut f.ebx, EXT1F_EBX_RESERVED);
            }
            CustomLeaf::Ext22 => {
                ok &= p.perfmon_eax.check(&mut f.eax, 0);
                ok &= field_at_most(&mut f.ebx, 0, 0xF, p.perf_ctr_core_max);
                ok &= field_at_most(&mut f.ebx, 4, 0x3F, p.lbr_stack_max);
                ok &= strict(0, 0).check(&mut f.edx);
            }
        }
        ok
    }

    fn check_fms(&self, eax: &mut u32) -> bool {
        let mut ok = true;
        if !fms_at_most(self.fms, *eax) {
            *eax = self.fms;
            ok = false;
        }
        clear_reserved(eax, FMS_RESERVED) && ok
    }
}

fn restrict(m: MaskField, remove: u32) -> MaskField {
    MaskField::new(m.allowed & !remove, m.reserved)
}

fn extend(m: MaskField, add: u32) -> MaskField {
    MaskField::new(m.allowed | add, m.reserved & !add)
}

/// A bit field of `reg` (at `shift`, `width_mask` wide) must be at most `max`.
fn field_at_most(reg: &mut u32, shift: u32, width_mask: u32, max: u32) -> bool {
    let v = (*reg >> shift) & width_mask;
    if v > max {
        *reg = (*reg & !(width_mask << shift)) | ((max & width_mask) << shift);
        false
    } else {
        true
    }
}

/// The SNP_LAUNCH_UPDATE check of a CPUID page.
///
/// Returns `Err(INVALID_PARAM)` for a non-zero reserved field of the page or a count
/// above [`SNP_CPUID_COUNT_MAX`] (page untouched), or after writing corrected values
/// into `page` when any function in the checked ranges is bad. Functions at index
/// `count` and beyond are ignored.
pub fn check_cpuid_page(platform: &PlatformCpuid, page: &mut SnpCpuidPage) -> Result<(), FwStatus> {
    if page.reserved != 0 || page.reserved2 != 0 {
        return Err(FwStatus::INVALID_PARAM);
    }
    let count = usize::try_from(page.count).unwrap_or(usize::MAX);
    if count > SNP_CPUID_COUNT_MAX {
        return Err(FwStatus::INVALID_PARAM);
    }
    let mut ok = true;
    for f in page.functions.iter_mut().take(count) {
        if leaf_is_checked(f.eax_in) {
            ok &= platform.check_function(f).is_ok();
        }
    }
    if ok {
        Ok(())
    } else {
        Err(FwStatus::INVALID_PARAM)
    }
}

/// The indices of functions a check would reject (without changing `page`): test
/// machinery (a VMM compares the page it sent with the one it got back instead).
#[doc(hidden)]
pub fn rejected_functions(platform: &PlatformCpuid, page: &SnpCpuidPage) -> Vec<usize> {
    let count = (page.count as usize).min(SNP_CPUID_COUNT_MAX);
    page.functions
        .iter()
        .take(count)
        .enumerate()
        .filter(|(_, f)| {
            let mut g = **f;
            leaf_is_checked(g.eax_in) && platform.check_function(&mut g).is_err()
        })
        .map(|(i, _)| i)
        .collect()
}

/// Fuzz entry point (`fuzz/fuzz_targets/cpuid_page.rs`): the first byte picks the
/// product, the next 4096 bytes (zero-padded) are the page. Checks the invariants
/// the firmware relies on and panics (as a fuzzer expects) if one breaks: nothing past
/// `count` changes, a rejected page-level field leaves the page untouched, and a
/// corrected page passes unchanged unless a checked function has a non-zero reserved
/// field.
pub fn fuzz_cpuid_page(data: &[u8]) {
    let product = match data.first().map(|b| b % 3) {
        Some(0) => Product::Milan,
        Some(1) => Product::Genoa,
        _ => Product::Turin,
    };
    let mut bytes = [0u8; 4096];
    let body = data.get(1..).unwrap_or(&[]);
    let n = body.len().min(bytes.len());
    bytes[..n].copy_from_slice(&body[..n]);
    let Ok(mut page) = <SnpCpuidPage as zerocopy::FromBytes>::read_from_bytes(&bytes[..]) else {
        return;
    };
    let platform = PlatformCpuid::for_product(product);
    let sent = page;
    let r = check_cpuid_page(&platform, &mut page);
    let count = sent.count as usize;
    if sent.reserved != 0 || sent.reserved2 != 0 || count > SNP_CPUID_COUNT_MAX {
        assert!(
            r.is_err() && page == sent,
            "page-level rejection changed the page"
        );
        return;
    }
    assert!(
        page.functions[count..] == sent.functions[count..],
        "functions beyond count changed"
    );
    match r {
        Ok(()) => assert!(page == sent, "a passing page changed"),
        Err(_) => {
            let clean = sent.functions[..count]
                .iter()
                .all(|f| !leaf_is_checked(f.eax_in) || f.reserved == 0);
            if clean {
                let corrected = page;
                assert!(
                    check_cpuid_page(&platform, &mut page).is_ok() && page == corrected,
                    "corrected page does not pass"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softsev_abi::product::cpuid_signature as signature;

    #[test]
    fn fms_order_follows_firmware_arithmetic() {
        let genoa = Product::Genoa.cpuid_signature();
        assert!(fms_at_most(genoa, genoa));
        assert!(fms_at_most(genoa, signature(25, 17, 0)));
        assert!(!fms_at_most(genoa, signature(25, 17, 2)));
        assert!(!fms_at_most(genoa, signature(26, 0, 0)));
        assert!(fms_at_most(genoa, signature(25, 1, 1)));
    }

    #[test]
    fn xsave_sizes() {
        assert_eq!(xsave_size_standard(1), 0x240);
        assert_eq!(xsave_size_standard(0x7), 0x340);
        assert_eq!(xsave_size_standard(0x2E7), 0x988);
        assert_eq!(xsave_size_compacted(0x7, 0), 0x340);
        assert_eq!(
            xsave_size_compacted(0x2E7, 0),
            0x240 + 0x100 + 0x40 + 0x200 + 0x400 + 0x8
        );
        assert_eq!(
            xsave_size_compacted(0x3, XSS_CET_U | XSS_CET_S),
            0x240 + 0x28
        );
    }

    #[test]
    fn signature_matches_product() {
        for p in [Product::Milan, Product::Genoa, Product::Turin] {
            let (f, m, s) = p.cpuid_fms();
            assert_eq!(signature(f.into(), m.into(), s.into()), p.cpuid_signature());
        }
    }

    #[test]
    fn field_at_most_clamps() {
        let mut r = 0x1234_56FF;
        assert!(!field_at_most(&mut r, 0, 0xFF, 52));
        assert_eq!(r, 0x1234_5634);
        assert!(field_at_most(&mut r, 8, 0xFF, 0x56));
    }
}
