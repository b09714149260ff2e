//! The CPUID page QEMU builds for an SEV-SNP guest (target/i386/sev.c
//! `sev_snp_cpuid_info_fill` over the vCPU's KVM_SET_CPUID2 table): the CPUID functions
//! of the host product's EPYC model (from `softsev_measure::qemu`) after KVM's feature
//! filtering and QEMU's SNP adjustments, in QEMU's order. The firmware checks the page
//! at SNP_LAUNCH_UPDATE (`softsev_firmware::cpuid::check_cpuid_page`); building it is
//! the VMM's job.

use softsev_abi::Product;
use softsev_abi::fw_buf::{SNP_CPUID_COUNT_MAX, SnpCpuidFunction, SnpCpuidPage};
use softsev_firmware::cpuid::xsave_size_standard;
use softsev_measure::qemu::{CpuidFeatures, QemuCpuModel};
use zerocopy::FromZeros;

/// XCR0 bit 0: x87 state, the XCR0 QEMU's XSAVE leaves are computed for.
const XCR0_X87: u64 = 1 << 0;
/// Fn0000_0001_EDX bits QEMU mirrors into Fn8000_0001_EDX for AMD CPUs.
const AMD_EXT2_ALIASES: u32 = 0x0183_F3FF;
const CPUID_EXT_MONITOR: u32 = 1 << 3;
const CPUID_EXT_X2APIC: u32 = 1 << 21;
const CPUID_EXT_HYPERVISOR: u32 = 1 << 31;
const CPUID_HTT: u32 = 1 << 28;
const CPUID_EXT3_CMP_LEG: u32 = 1 << 1;
const CPUID_EXT3_SVM: u32 = 1 << 2;

/// Number of bits needed for `n` distinct ids (QEMU's apicid_bitwidth_for_count).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn vendor_regs() -> (u32, u32, u32) {
    // "AuthenticAMD" in EBX, EDX, ECX.
    (
        u32::from_le_bytes(*b"Auth"),
        u32::from_le_bytes(*b"enti"),
        u32::from_le_bytes(*b"cAMD"),
    )
}

fn func(leaf: u32, subleaf: u32, regs: [u32; 4]) -> SnpCpuidFunction {
    let mut f = SnpCpuidFunction::new_zeroed();
    f.eax_in = leaf;
    f.ecx_in = subleaf;
    f.eax = regs[0];
    f.ebx = regs[1];
    f.ecx = regs[2];
    f.edx = regs[3];
    f
}

/// The CPUID functions QEMU would hand to SNP_LAUNCH_UPDATE for a guest using the
/// product's EPYC CPU model with `vcpus` vCPUs (one socket, one thread per core),
/// in QEMU's order. `vcpus` is clamped to 1..=256.
///
/// The model is [`QemuCpuModel::for_product`], its feature words
/// [`CpuidFeatures::for_product`]. This is what QEMU's KVM vCPU setup collects (leaves 0..=level and
/// 0x8000_0000..=xlevel, sub-leaves for 4/7/0xB/0xD/0x8000_001D, the two KVM leaves)
/// after KVM's feature filtering and QEMU's SNP adjustments (no TSC-deadline,
/// TSC_ADJUST or VIRT_SSBD; XSAVE sizes for XCR0 = x87 in Fn0000_000D_x00/x01).
pub fn qemu_cpuid_functions(product: Product, vcpus: u32) -> Vec<SnpCpuidFunction> {
    let model = QemuCpuModel::for_product(product);
    let m = CpuidFeatures::for_product(product);
    let n = vcpus.clamp(1, 256);
    let core_bits = bits_for(n);
    let sig = model.signature();
    let (v_ebx, v_edx, v_ecx) = vendor_regs();
    let mut out = Vec::with_capacity(SNP_CPUID_COUNT_MAX);

    // Standard leaves.
    out.push(func(0, 0, [m.level, v_ebx, v_ecx, v_edx]));
    let mut f1_ebx = 8 << 8;
    let mut f1_edx = m.f1_edx;
    if n > 1 {
        f1_ebx |= (n & 0xFF) << 16;
        f1_edx |= CPUID_HTT;
    }
    // KVM does not offer MONITOR; QEMU adds x2APIC and the hypervisor bit.
    let f1_ecx = (m.f1_ecx & !CPUID_EXT_MONITOR) | CPUID_EXT_X2APIC | CPUID_EXT_HYPERVISOR;
    out.push(func(1, 0, [sig, f1_ebx, f1_ecx, f1_edx]));
    out.push(func(2, 0, [0; 4]));
    out.push(func(3, 0, [0; 4]));
    out.push(func(4, 0, [0; 4]));
    out.push(func(5, 0, [0; 4]));
    out.push(func(6, 0, [m.f6_eax, 0, 0, 0]));
    let max7 = u32::from(m.f7_1_eax != 0);
    out.push(func(7, 0, [max7, m.f7_0_ebx, m.f7_0_ecx, m.f7_0_edx]));
    if max7 == 1 {
        out.push(func(7, 1, [m.f7_1_eax, 0, 0, 0]));
    }
    out.push(func(8, 0, [0; 4]));
    out.push(func(9, 0, [0; 4]));
    out.push(func(0xA, 0, [0; 4]));
    // Topology: SMT level (1 thread), core level (n cores), terminating sub-leaf.
    out.push(func(0xB, 0, [0, 1, 0x100, 0]));
    out.push(func(0xB, 1, [core_bits, n, 0x201, 0]));
    out.push(func(0xB, 2, [0, 0, 0x2, 0]));
    out.push(func(0xC, 0, [0; 4]));
    let avx512 = m.f7_0_ebx & (1 << 16) != 0;
    let pku = m.f7_0_ecx & (1 << 3) != 0;
    let mut xcr0_mask: u32 = 0x7;
    if avx512 {
        xcr0_mask |= 0xE0;
    }
    if pku {
        xcr0_mask |= 0x200;
    }
    let max_size = xsave_size_standard(u64::from(xcr0_mask));
    let mut d0 = func(0xD, 0, [xcr0_mask, 0x240, max_size, 0]);
    d0.xcr0_in = XCR0_X87;
    out.push(d0);
    let mut d1 = func(0xD, 1, [m.xsave, 0x240, 0, 0]);
    d1.xcr0_in = XCR0_X87;
    out.push(d1);
    out.push(func(0xD, 2, [0x100, 0x240, 0, 0]));
    if avx512 {
        out.push(func(0xD, 5, [0x40, 0x340, 0, 0]));
        out.push(func(0xD, 6, [0x200, 0x380, 0, 0]));
        out.push(func(0xD, 7, [0x400, 0x580, 0, 0]));
    }
    if pku {
        out.push(func(0xD, 9, [0x8, 0x980, 0, 0]));
    }

    // KVM hypervisor leaves (outside the checked ranges).
    out.push(func(
        0x4000_0000,
        0,
        [
            0x4000_0001,
            u32::from_le_bytes(*b"KVMK"),
            u32::from_le_bytes(*b"VMKV"),
            u32::from_le_bytes(*b"M\0\0\0"),
        ],
    ));
    out.push(func(0x4000_0001, 0, [0x0100_FEFB, 0, 0, 0]));

    // Extended leaves.
    let mut leaf = 0x8000_0000u32;
    while leaf <= m.xlevel {
        match leaf {
            0x8000_0000 => out.push(func(leaf, 0, [m.xlevel, v_ebx, v_ecx, v_edx])),
            0x8000_0001 => {
                let mut ecx = m.e1_ecx;
                if n > 1 {
                    ecx |= CPUID_EXT3_CMP_LEG;
                }
                let edx = m.e1_edx | (m.f1_edx & AMD_EXT2_ALIASES);
                out.push(func(leaf, 0, [sig, 0, ecx, edx]));
            }
            0x8000_0002..=0x8000_0004 => {
                let mut brand = [0u8; 48];
                let name = m.brand.as_bytes();
                let len = name.len().min(47);
                brand[..len].copy_from_slice(&name[..len]);
                let base = ((leaf - 0x8000_0002) * 16) as usize;
                let mut regs = [0u32; 4];
                for (i, r) in regs.iter_mut().enumerate() {
                    let o = base + i * 4;
                    *r = u32::from_le_bytes([brand[o], brand[o + 1], brand[o + 2], brand[o + 3]]);
                }
                out.push(func(leaf, 0, regs));
            }
            0x8000_0005 => out.push(func(
                leaf,
                0,
                [0x01FF_01FF, 0x01FF_01FF, 0x2008_0140, 0x2008_0140],
            )),
            0x8000_0006 => {
                let l2 = (m.l2_kib << 16) | (0x6 << 12) | (1 << 8) | 64;
                let l3 = ((m.l3_mib * 2) << 18) | (0x8 << 12) | (1 << 8) | 64;
                out.push(func(leaf, 0, [0x0000_0000, 0x4200_4200, l2, l3]));
            }
            0x8000_0007 => out.push(func(leaf, 0, [0, m.e7_ebx, 0, 0])),
            0x8000_0008 => {
                let lin = if m.f7_0_ecx & (1 << 16) != 0 { 57 } else { 48 };
                let eax = 40 | (lin << 8);
                let ecx = (n - 1) | (core_bits << 12);
                out.push(func(leaf, 0, [eax, m.e8_ebx, ecx, 0]));
            }
            0x8000_000A => {
                if m.e1_ecx & CPUID_EXT3_SVM != 0 {
                    out.push(func(leaf, 0, [1, 0x10, 0, m.svm_edx]));
                } else {
                    out.push(func(leaf, 0, [0; 4]));
                }
            }
            0x8000_0019 => out.push(func(leaf, 0, [0xF040_F040, 0xF040_0000, 0, 0])),
            0x8000_001D => {
                let share_l3 = n.min(8) - 1;
                let l2_sets = m.l2_kib * 1024 / (64 * 8) - 1;
                let l3_sets = m.l3_mib * 1024 * 1024 / (64 * 16) - 1;
                let line = 63;
                out.push(func(leaf, 0, [0x121, line | (7 << 22), 63, 0]));
                out.push(func(leaf, 1, [0x122, line | (7 << 22), 63, 0]));
                out.push(func(leaf, 2, [0x143, line | (7 << 22), l2_sets, 2]));
                out.push(func(
                    leaf,
                    3,
                    [0x163 | (share_l3 << 14), line | (15 << 22), l3_sets, 1],
                ));
                out.push(func(leaf, 4, [0; 4]));
            }
            0x8000_001E => out.push(func(leaf, 0, [0, 0, 0, 0])),
            0x8000_001F => {
                // SEV, SEV-ES, SNP; C-bit 51, one reduced physical-address bit.
                out.push(func(leaf, 0, [0x1A, 0x33 | (1 << 6), 0, 0]));
            }
            0x8000_0021 => out.push(func(leaf, 0, [m.e21_eax, 0, 0, 0])),
            0x8000_0022 => {
                let ebx = if m.e22_eax != 0 { 6 } else { 0 };
                out.push(func(leaf, 0, [m.e22_eax, ebx, 0, 0]));
            }
            _ => out.push(func(leaf, 0, [0; 4])),
        }
        leaf += 1;
    }
    out
}

/// A CPUID page built the way QEMU builds it for an SNP guest on `product` (see
/// [`qemu_cpuid_functions`]). Functions beyond the page's 64 slots are dropped (the
/// three models need at most 64).
pub fn qemu_cpuid_page(product: Product, vcpus: u32) -> SnpCpuidPage {
    let funcs = qemu_cpuid_functions(product, vcpus);
    let mut page = SnpCpuidPage::new_zeroed();
    let mut count = 0u32;
    for (slot, f) in page.functions.iter_mut().zip(funcs.iter()) {
        *slot = *f;
        count += 1;
    }
    page.count = count;
    page
}
