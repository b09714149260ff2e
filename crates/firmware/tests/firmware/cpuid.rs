//! The SNP_LAUNCH_UPDATE CPUID page check: every policy kind accepted and rejected
//! with the right correction written back, page-level checks, unchecked ranges,
//! mutations of QEMU-built pages (softsev-vmm's builder, a dev-dependency; its own
//! tests are in crates/vmm/tests/vmm/cpuid.rs), and random pages.

use proptest::prelude::*;
use softsev_abi::fw_buf::{SNP_CPUID_COUNT_MAX, SnpCpuidFunction, SnpCpuidPage};
use softsev_abi::{FwStatus, Product};
use softsev_firmware::cpuid::{
    LeafCheck, PlatformCpuid, Policy, check_cpuid_page, leaf_is_checked, rejected_functions,
    xsave_size_compacted,
};
use softsev_vmm::cpuid::qemu_cpuid_page;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const PRODUCTS: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

fn f(leaf: u32, subleaf: u32, regs: [u32; 4]) -> SnpCpuidFunction {
    let mut f = SnpCpuidFunction::new_zeroed();
    f.eax_in = leaf;
    f.ecx_in = subleaf;
    [f.eax, f.ebx, f.ecx, f.edx] = regs;
    f
}

fn regs(f: &SnpCpuidFunction) -> [u32; 4] {
    [f.eax, f.ebx, f.ecx, f.edx]
}

fn page_of(funcs: &[SnpCpuidFunction]) -> SnpCpuidPage {
    let mut p = SnpCpuidPage::new_zeroed();
    for (slot, x) in p.functions.iter_mut().zip(funcs) {
        *slot = *x;
    }
    p.count = funcs.len() as u32;
    p
}

/// Checks one function alone; returns the verdict and the corrected registers.
fn check_one(product: Product, func: SnpCpuidFunction) -> (Result<(), FwStatus>, [u32; 4]) {
    let plat = PlatformCpuid::for_product(product);
    let mut page = page_of(&[func]);
    let r = check_cpuid_page(&plat, &mut page);
    (r, regs(&page.functions[0]))
}

fn genoa(func: SnpCpuidFunction) -> (Result<(), FwStatus>, [u32; 4]) {
    check_one(Product::Genoa, func)
}

const BAD: Result<(), FwStatus> = Err(FwStatus::INVALID_PARAM);

#[test]
fn count_above_max_is_rejected_untouched() {
    let plat = PlatformCpuid::for_product(Product::Genoa);
    let mut page = qemu_cpuid_page(Product::Genoa, 2);
    page.functions[0].eax = 0xFFFF_FFFF; // would be corrected if checked
    for count in [65, 100, u32::MAX] {
        page.count = count;
        let before = page;
        assert_eq!(check_cpuid_page(&plat, &mut page), BAD);
        assert_eq!(page.as_bytes(), before.as_bytes());
    }
    page.count = 64;
    assert_eq!(check_cpuid_page(&plat, &mut page), BAD);
    assert_eq!(page.functions[0].eax, 0x10);
}

#[test]
fn page_reserved_fields_are_rejected_untouched() {
    let plat = PlatformCpuid::for_product(Product::Milan);
    for (r1, r2) in [(1u32, 0u64), (0, 1), (0x8000_0000, 1 << 63)] {
        let mut page = qemu_cpuid_page(Product::Milan, 2);
        page.reserved = r1;
        page.reserved2 = r2;
        page.functions[3].eax = 0x1234; // leaf 3 is unlisted: would be zeroed
        let before = page;
        assert_eq!(check_cpuid_page(&plat, &mut page), BAD);
        assert_eq!(page.as_bytes(), before.as_bytes());
    }
}

#[test]
fn function_reserved_field_fails_without_correction() {
    let mut func = f(0, 0, [0x10, 0, 0, 0]);
    func.reserved = 1;
    let plat = PlatformCpuid::for_product(Product::Genoa);
    let mut page = page_of(&[func]);
    assert_eq!(check_cpuid_page(&plat, &mut page), BAD);
    assert_eq!(
        page.functions[0].reserved, 1,
        "AMD's firmware does not clear it"
    );
    // Outside the checked ranges the reserved field is not looked at either.
    let mut hv = f(0x4000_0000, 0, [1, 2, 3, 4]);
    hv.reserved = 7;
    let mut page = page_of(&[hv]);
    assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()));
}

#[test]
fn leaves_outside_the_ranges_pass_unchecked() {
    let plat = PlatformCpuid::for_product(Product::Turin);
    let junk = [0xFFFF_FFFF, 0xDEAD_BEEF, 0x1234_5678, 0x8765_4321];
    for leaf in [
        0x0001_0000,
        0x4000_0000,
        0x4000_0001,
        0x7FFF_FFFF,
        0x8001_0000,
        0xC000_0000,
        0xFFFF_FFFF,
    ] {
        assert!(!leaf_is_checked(leaf));
        let mut page = page_of(&[f(leaf, 0x55, junk)]);
        let before = page;
        assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()), "leaf {leaf:#x}");
        assert_eq!(page.as_bytes(), before.as_bytes());
    }
    for leaf in [0, 0xFFFF, 0x8000_0000, 0x8000_FFFF] {
        assert!(leaf_is_checked(leaf));
    }
}

#[test]
fn functions_beyond_count_are_ignored() {
    let plat = PlatformCpuid::for_product(Product::Genoa);
    let mut page = page_of(&[f(0, 0, [0x10, 0, 0, 0]), f(3, 0, [1, 1, 1, 1])]);
    page.count = 1;
    assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()));
    assert_eq!(regs(&page.functions[1]), [1, 1, 1, 1]);
    page.count = 0;
    assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()));
}

#[test]
fn unlisted_architectural_leaves_must_be_zero() {
    for (leaf, sub) in [
        (3, 0),
        (8, 0),
        (0xC, 0),
        (0x1, 1),
        (0x8000_001C, 0),
        (0x12, 0),
    ] {
        assert_eq!(genoa(f(leaf, sub, [0; 4])).0, Ok(()));
        let (r, out) = genoa(f(leaf, sub, [0, 0, 0, 1]));
        assert_eq!(r, BAD, "{leaf:#x}/{sub}");
        assert_eq!(out, [0; 4]);
    }
}

#[test]
fn strict_policy() {
    // Fn0000_0006 EBX: strict 0.
    assert_eq!(genoa(f(6, 0, [4, 0, 1, 0])), (Ok(()), [4, 0, 1, 0]));
    assert_eq!(genoa(f(6, 0, [4, 0x10, 1, 0])), (BAD, [4, 0, 1, 0]));
    // Fn0000_000D_x02: AVX state at offset 0x240, size 0x100.
    assert_eq!(genoa(f(0xD, 2, [0x100, 0x240, 0, 0])).0, Ok(()));
    assert_eq!(
        genoa(f(0xD, 2, [0x200, 0x240, 0, 0])),
        (BAD, [0x100, 0x240, 0, 0])
    );
    // Fn8000_0022 EDX strict 0; Fn0000_0007_x01 EBX strict 0.
    assert_eq!(genoa(f(0x8000_0022, 0, [1, 6, 0, 5])), (BAD, [1, 6, 0, 0]));
    assert_eq!(genoa(f(7, 1, [0x20, 1, 0, 0])), (BAD, [0x20, 0, 0, 0]));
}

#[test]
fn mask_policy() {
    // Fn0000_0006 EAX: only ARAT (bit 2).
    assert_eq!(genoa(f(6, 0, [5, 0, 0, 0])), (BAD, [4, 0, 0, 0]));
    assert_eq!(genoa(f(6, 0, [0, 0, 0, 0])).0, Ok(()));
    // Fn8000_0021 EAX on Genoa: no SRSO_USER_KERNEL_NO; on Turin it is allowed.
    let bit30 = f(0x8000_0021, 0, [(1 << 30) | 1, 0, 0, 0]);
    assert_eq!(genoa(bit30), (BAD, [1, 0, 0, 0]));
    assert_eq!(check_one(Product::Turin, bit30).0, Ok(()));
    // SVM feature mask with a reserved bit.
    assert_eq!(
        genoa(f(0x8000_000A, 0, [1, 0x10, 0, 1 | (1 << 8)])),
        (BAD, [1, 0x10, 0, 1])
    );
}

#[test]
fn at_most_policy() {
    assert_eq!(genoa(f(0, 0, [0xD, 1, 2, 3])).0, Ok(()));
    assert_eq!(genoa(f(0, 0, [0x10, 1, 2, 3])).0, Ok(()));
    assert_eq!(genoa(f(0, 0, [0x11, 1, 2, 3])), (BAD, [0x10, 1, 2, 3]));
    assert_eq!(
        genoa(f(0x8000_0000, 0, [0x8000_0029, 0, 0, 0])).1[0],
        0x8000_0028
    );
    assert_eq!(
        check_one(Product::Milan, f(0x8000_0000, 0, [0x8000_0024, 0, 0, 0])),
        (BAD, [0x8000_0023, 0, 0, 0])
    );
    // Fn8000_0008 fields, each on its own: phys 60 > 52, linear ok, INVLPGB 9 > 7.
    let (r, out) = genoa(f(0x8000_0008, 0, [60 | (48 << 8), 0, 0, 9 | (1 << 16)]));
    assert_eq!(r, BAD);
    assert_eq!(out, [52 | (48 << 8), 0, 0, 7 | (1 << 16)]);
    // Milan has no 5-level paging: linear size at most 48.
    let (r, out) = check_one(Product::Milan, f(0x8000_0008, 0, [40 | (57 << 8), 0, 0, 0]));
    assert_eq!((r, out[0]), (BAD, 40 | (48 << 8)));
}

#[test]
fn pass_through_policy_checks_only_reserved_bits() {
    let brand = f(0x8000_0002, 0, [0xFFFF_FFFF, 0x1234_5678, 0xFFFF_FFFF, 7]);
    assert_eq!(genoa(brand), (Ok(()), regs(&brand)));
    // Fn0000_000B: EAX[31:5], EBX/ECX[31:16] reserved.
    assert_eq!(genoa(f(0xB, 1, [3, 8, 0x201, 9])).0, Ok(()));
    assert_eq!(
        genoa(f(0xB, 1, [0x23, 8, 0x201, 9])),
        (BAD, [3, 8, 0x201, 9])
    );
    // Fn8000_001E EDX does not exist.
    assert_eq!(genoa(f(0x8000_001E, 0, [5, 0, 0, 1])), (BAD, [5, 0, 0, 0]));
}

#[test]
fn fms_rules() {
    let plat = PlatformCpuid::for_product(Product::Genoa);
    let fms = plat.fms();
    assert_eq!(fms, Product::Genoa.cpuid_signature());
    let good = f(1, 0, [fms, 8 << 8, 0, 0]);
    assert_eq!(genoa(good).0, Ok(()));
    // A later family (Turin's) is above the platform: replaced by the platform's FMS.
    let turin = Product::Turin.cpuid_signature();
    assert_eq!(
        genoa(f(1, 0, [turin, 8 << 8, 0, 0])),
        (BAD, [fms, 8 << 8, 0, 0])
    );
    // Higher stepping.
    assert_eq!(genoa(f(1, 0, [fms + 1, 8 << 8, 0, 0])).1[0], fms);
    // Reserved bits of EAX are cleared.
    assert_eq!(
        genoa(f(1, 0, [fms | 0x1000, 8 << 8, 0, 0])),
        (BAD, [fms, 8 << 8, 0, 0])
    );
    // CLFLUSH size strict 8; brand id (EBX[7:0]) reserved; EBX[31:16] unchecked.
    assert_eq!(
        genoa(f(1, 0, [fms, 4 << 8, 0, 0])),
        (BAD, [fms, 8 << 8, 0, 0])
    );
    assert_eq!(
        genoa(f(1, 0, [fms, 0x0304_0801, 0, 0])),
        (BAD, [fms, 0x0304_0800, 0, 0])
    );
    // Fn8000_0001 EAX follows the same rule; a lower product is fine.
    let milan = Product::Milan.cpuid_signature();
    assert_eq!(genoa(f(0x8000_0001, 0, [milan, 0, 0, 0])).0, Ok(()));
    assert_eq!(
        genoa(f(0x8000_0001, 0, [turin, 0, 0, 0])),
        (BAD, [fms, 0, 0, 0])
    );
    // Fn8000_0001 EBX[27:0] reserved.
    assert_eq!(
        genoa(f(0x8000_0001, 0, [milan, 0x4000_0001, 0, 0])).1[1],
        0x4000_0000
    );
}

#[test]
fn leaf1_unchecked_bits() {
    let fms = Product::Genoa.cpuid_signature();
    // OSXSAVE and the hypervisor bit pass even though they are not in the mask.
    let ecx = (1 << 27) | (1 << 31) | 1;
    assert_eq!(genoa(f(1, 0, [fms, 8 << 8, ecx, 0])).0, Ok(()));
    // TSC-deadline (bit 24) is reserved to the firmware.
    let (r, out) = genoa(f(1, 0, [fms, 8 << 8, ecx | (1 << 24), 0]));
    assert_eq!((r, out[2]), (BAD, ecx));
    // Leaf 7: OSPKE unchecked, TSC_ADJUST (EBX bit 1) rejected.
    assert_eq!(genoa(f(7, 0, [1, 0, 1 << 4, 0])).0, Ok(()));
    assert_eq!(genoa(f(7, 0, [2, 2 | 1, 0, 0])), (BAD, [1, 1, 0, 0]));
}

#[test]
fn xsave_rules() {
    // Sub-leaf 0: EBX follows XCR0_IN.
    let mut d0 = f(0xD, 0, [0x2E7, 0x340, 0x988, 0]);
    d0.xcr0_in = 0x7;
    assert_eq!(genoa(d0).0, Ok(()));
    d0.xcr0_in = 0x2E7;
    assert_eq!(genoa(d0), (BAD, [0x2E7, 0x988, 0x988, 0]));
    // x87 and SSE are required; components beyond the platform's are removed.
    let mut d0 = f(0xD, 0, [0x4, 0x240, 0, 0]);
    d0.xcr0_in = 1;
    assert_eq!(genoa(d0), (BAD, [0x7, 0x240, 0, 0]));
    let (r, out) = check_one(Product::Milan, f(0xD, 0, [0x2E7, 0x240, 0, 0]));
    assert_eq!((r, out[0]), (BAD, 0x207));
    // EDX strict 0.
    assert_eq!(genoa(f(0xD, 0, [0x3, 0x240, 0, 1])).1[3], 0);
    // Sub-leaf 1: compacted size from XCR0_IN and XSS_IN.
    let mut d1 = f(0xD, 1, [0xF, 0x240, 0, 0]);
    assert_eq!(genoa(d1).0, Ok(()));
    d1.xcr0_in = 0x207;
    d1.xss_in = 1 << 11;
    let want = xsave_size_compacted(0x207, 1 << 11);
    assert_eq!(want, 0x240 + 0x100 + 0x8 + 0x10);
    assert_eq!(genoa(d1), (BAD, [0xF, want, 0, 0]));
    d1.ebx = want;
    d1.ecx = 1 << 11;
    assert_eq!(genoa(d1).0, Ok(()));
    d1.eax = 0x1F;
    assert_eq!(genoa(d1).1[0], 0xF);
}

#[test]
fn sev_leaf_rules() {
    // C-bit strict, EBX[11:6] unchecked, VMPLs at most 4.
    let ok = f(0x8000_001F, 0, [0x1A, 0x33 | (5 << 6) | (4 << 12), 7, 9]);
    assert_eq!(genoa(ok), (Ok(()), regs(&ok)));
    assert_eq!(
        genoa(f(0x8000_001F, 0, [0x1A, 0x2F | (1 << 6), 0, 0])),
        (BAD, [0x1A, 0x33 | (1 << 6), 0, 0])
    );
    assert_eq!(
        genoa(f(0x8000_001F, 0, [0x1A, 0x33 | (5 << 12), 0, 0])),
        (BAD, [0x1A, 0x33 | (4 << 12), 0, 0])
    );
    // Reserved SEV feature bits.
    assert_eq!(
        genoa(f(0x8000_001F, 0, [0x1A | (1 << 31), 0x33, 0, 0])).1[0],
        0x1A
    );
    // PerfMonV2 limits.
    assert_eq!(
        genoa(f(0x8000_0022, 0, [1, 7 | (0x11 << 4), 3, 0])),
        (BAD, [1, 6 | (0x10 << 4), 3, 0])
    );
}

#[test]
fn feature_info_leaf_agrees_with_snp_feature_info() {
    let fi = f(
        0x8000_0024,
        0,
        [
            softsev_firmware::FEATURE_INFO_0_EAX,
            softsev_firmware::FEATURE_INFO_0_EBX,
            softsev_firmware::FEATURE_INFO_0_ECX,
            0,
        ],
    );
    assert_eq!(genoa(fi).0, Ok(()));
    let fi1 = f(
        0x8000_0024,
        1,
        [softsev_firmware::FEATURE_INFO_1_EAX, 0, 0, 0],
    );
    assert_eq!(genoa(fi1).0, Ok(()));
    assert_eq!(genoa(f(0x8000_0024, 0, [2, 0, 0, 0])).1[0], 1);
}

#[test]
fn only_bad_functions_are_corrected() {
    let plat = PlatformCpuid::for_product(Product::Genoa);
    let good = qemu_cpuid_page(Product::Genoa, 4);
    let mut page = good;
    let i6 = (0..good.count as usize)
        .find(|&i| good.functions[i].eax_in == 6)
        .unwrap();
    page.functions[i6].ebx = 0x55;
    assert_eq!(rejected_functions(&plat, &page), vec![i6]);
    assert_eq!(check_cpuid_page(&plat, &mut page), BAD);
    assert_eq!(page.as_bytes(), good.as_bytes());
}

/// Flipping a feature bit the platform does not offer in a strict or masked field of a
/// QEMU page fails, and the correction written back is the original page.
#[test]
fn flipped_feature_bits_fail_and_are_restored() {
    let cases: &[(Product, u32, u32, usize, u32)] = &[
        (Product::Milan, 7, 0, 1, 1 << 16),           // AVX512F on Zen 3
        (Product::Milan, 7, 0, 2, 1 << 16),           // LA57 on Zen 3
        (Product::Genoa, 7, 0, 2, 1 << 27),           // MOVDIRI before Zen 5
        (Product::Genoa, 7, 0, 1, 1 << 1),            // TSC_ADJUST
        (Product::Genoa, 1, 0, 2, 1 << 24),           // TSC-deadline
        (Product::Genoa, 6, 0, 1, 1),                 // strict EBX
        (Product::Turin, 0x8000_0008, 0, 1, 1 << 25), // VIRT_SSBD
        (Product::Turin, 0x8000_0001, 0, 2, 1 << 11), // XOP
        (Product::Turin, 0xD, 2, 3, 1),               // strict EDX
        (Product::Milan, 0x8000_001F, 0, 0, 1 << 24), // VMSA register protection
    ];
    for &(p, leaf, sub, reg, bit) in cases {
        let plat = PlatformCpuid::for_product(p);
        let good = qemu_cpuid_page(p, 8);
        let i = (0..good.count as usize)
            .find(|&i| good.functions[i].eax_in == leaf && good.functions[i].ecx_in == sub)
            .unwrap();
        let mut page = good;
        let func = &mut page.functions[i];
        match reg {
            0 => func.eax ^= bit,
            1 => func.ebx ^= bit,
            2 => func.ecx ^= bit,
            _ => func.edx ^= bit,
        }
        assert_eq!(
            check_cpuid_page(&plat, &mut page),
            BAD,
            "{p:?} {leaf:#x}/{sub} reg {reg}"
        );
        assert_eq!(page.as_bytes(), good.as_bytes(), "{p:?} {leaf:#x}/{sub}");
    }
}

/// Every table entry is self-consistent: a policy's value never has reserved bits, so
/// one correction always yields a passing function.
#[test]
fn tables_are_consistent() {
    for p in PRODUCTS {
        let plat = PlatformCpuid::for_product(p);
        for l in plat.leaves() {
            if let LeafCheck::Regs(rs) = l.check {
                for r in rs {
                    let v = match r.policy {
                        Policy::Strict(v) | Policy::Mask(v) | Policy::AtMost(v) => v,
                        Policy::PassThrough => 0,
                    };
                    assert_eq!(v & r.reserved, 0, "{p:?} {:#x}/{}", l.leaf, l.subleaf);
                }
            }
        }
        for m in [
            plat.params().std1_ecx,
            plat.params().std1_edx,
            plat.params().std7_ebx,
            plat.params().std7_ecx,
            plat.params().std7_edx,
            plat.params().xsave0_eax,
            plat.params().ext1_ecx,
            plat.params().ext1_edx,
            plat.params().ext8_ebx,
            plat.params().sev_features,
        ] {
            assert_eq!(m.allowed & m.reserved, 0, "{p:?} {m:?}");
        }
    }
}

fn mutate(page: &mut SnpCpuidPage, idx: usize, reg: usize, xor: u32) {
    let count = page.count as usize;
    let f = &mut page.functions[idx % count];
    match reg % 4 {
        0 => f.eax ^= xor,
        1 => f.ebx ^= xor,
        2 => f.ecx ^= xor,
        _ => f.edx ^= xor,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// A random mutation of a good page either passes unchanged or fails with
    /// corrections that then pass unchanged.
    #[test]
    fn mutated_pages_correct_to_passing_pages(
        prod in 0usize..3,
        vcpus in 1u32..300,
        muts in proptest::collection::vec((0usize..64, 0usize..4, any::<u32>()), 1..6),
    ) {
        let p = PRODUCTS[prod];
        let plat = PlatformCpuid::for_product(p);
        let mut page = qemu_cpuid_page(p, vcpus);
        for (i, r, x) in muts {
            mutate(&mut page, i, r, x);
        }
        let sent = page;
        match check_cpuid_page(&plat, &mut page) {
            Ok(()) => prop_assert_eq!(page.as_bytes(), sent.as_bytes()),
            Err(s) => {
                prop_assert_eq!(s, FwStatus::INVALID_PARAM);
                let corrected = page;
                prop_assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()));
                prop_assert_eq!(page.as_bytes(), corrected.as_bytes());
            }
        }
    }

    /// Mutating the inputs (leaf, sub-leaf, XCR0/XSS) as well never panics and the
    /// corrected page passes.
    #[test]
    fn mutated_inputs_correct_to_passing_pages(
        prod in 0usize..3,
        idx in 0usize..64,
        leaf in prop_oneof![0u32..0x20, 0x8000_0000u32..0x8000_0030, any::<u32>()],
        sub in 0u32..16,
        xcr0 in any::<u64>(),
        xss in any::<u64>(),
    ) {
        let p = PRODUCTS[prod];
        let plat = PlatformCpuid::for_product(p);
        let mut page = qemu_cpuid_page(p, 4);
        let i = idx % page.count as usize;
        page.functions[i].eax_in = leaf;
        page.functions[i].ecx_in = sub;
        page.functions[i].xcr0_in = xcr0;
        page.functions[i].xss_in = xss;
        if check_cpuid_page(&plat, &mut page).is_err() {
            let corrected = page;
            prop_assert_eq!(check_cpuid_page(&plat, &mut page), Ok(()));
            prop_assert_eq!(page.as_bytes(), corrected.as_bytes());
        }
    }
}

/// Random pages never panic; when the page-level fields are valid and no function in
/// the checked ranges has a non-zero reserved field, the corrected page passes.
#[test]
fn random_pages_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let plats: Vec<_> = PRODUCTS
        .iter()
        .map(|&p| PlatformCpuid::for_product(p))
        .collect();
    let mut passes_after_fix = 0;
    for round in 0..3000 {
        let mut bytes = [0u8; 4096];
        for chunk in bytes.chunks_mut(8) {
            let v = next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let mut page = SnpCpuidPage::read_from_bytes(&bytes).unwrap();
        // Make most pages get past the page-level checks, and steer many functions
        // into listed leaves so the per-leaf rules run.
        if round % 4 != 0 {
            page.count = (next() % 65) as u32;
            page.reserved = 0;
            page.reserved2 = 0;
            for (k, func) in page.functions.iter_mut().enumerate() {
                match next() % 4 {
                    0 => func.eax_in = (next() % 0x30) as u32,
                    1 => func.eax_in = 0x8000_0000 | (next() % 0x30) as u32,
                    _ => {}
                }
                func.ecx_in = (next() % 14) as u32;
                if k % 3 != 0 {
                    func.reserved = 0;
                }
            }
        }
        let plat = &plats[round % 3];
        let before = page;
        let r = check_cpuid_page(plat, &mut page);
        let count = before.count as usize;
        let page_ok = before.reserved == 0 && before.reserved2 == 0 && count <= SNP_CPUID_COUNT_MAX;
        if !page_ok {
            assert!(r.is_err());
            assert_eq!(page.as_bytes(), before.as_bytes());
            continue;
        }
        // Nothing outside the first `count` functions changes.
        assert_eq!(
            page.as_bytes()[0x10 + 0x30 * count..],
            before.as_bytes()[0x10 + 0x30 * count..]
        );
        let reserved_clean = before.functions[..count]
            .iter()
            .all(|f| !leaf_is_checked(f.eax_in) || f.reserved == 0);
        if reserved_clean {
            let corrected = page;
            assert_eq!(check_cpuid_page(plat, &mut page), Ok(()), "round {round}");
            assert_eq!(page.as_bytes(), corrected.as_bytes());
            passes_after_fix += 1;
        }
    }
    assert!(
        passes_after_fix > 100,
        "only {passes_after_fix} pages reached the re-check"
    );
}

/// Replays the committed `cpuid_page` fuzz corpus and mutations of it (plus QEMU
/// pages) through the fuzz entry point.
#[test]
fn fuzz_corpus_and_mutations() {
    use softsev_firmware::cpuid::fuzz_cpuid_page;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/cpuid_page");
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzz_cpuid_page(&data);
        seeds.push(data);
    }
    assert!(seeds.len() >= 7);
    // The good seed passes and the bad one is rejected with corrections.
    let read = |name: &str| {
        let data = std::fs::read(format!("{dir}/{name}")).unwrap();
        let mut bytes = [0u8; 4096];
        bytes[..data.len() - 1].copy_from_slice(&data[1..]);
        SnpCpuidPage::read_from_bytes(&bytes).unwrap()
    };
    let mut good = read("genoa_good");
    let plat = PlatformCpuid::for_product(Product::Genoa);
    assert_eq!(check_cpuid_page(&plat, &mut good), Ok(()));
    let mut bad = read("milan_bad");
    let milan = PlatformCpuid::for_product(Product::Milan);
    assert_eq!(rejected_functions(&milan, &bad), vec![0, 1, 2, 3, 4]);
    assert_eq!(check_cpuid_page(&milan, &mut bad), BAD);
    assert_eq!(regs(&bad.functions[0]), [0, 0, 0, 0]);
    assert_eq!(bad.functions[1].ebx, 0x240);
    assert_eq!(bad.functions[3].ebx, 0x33);
    assert_eq!(regs(&bad.functions[4]), [0x3030, 0, 0, 7]);
    for p in PRODUCTS {
        let mut data = vec![p as u8];
        data.extend_from_slice(qemu_cpuid_page(p, 4).as_bytes());
        seeds.push(data);
    }
    let mut state = 0x0123_4567_89AB_CDEFu64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..4000 {
        let mut data = seeds[i % seeds.len()].clone();
        if data.is_empty() {
            data.push(0);
        }
        for _ in 0..(1 + next() % 8) {
            let at = (next() as usize) % data.len();
            data[at] ^= 1 << (next() % 8);
        }
        if next() % 5 == 0 {
            data.truncate((next() as usize) % (data.len() + 1));
        }
        fuzz_cpuid_page(&data);
    }
}

/// End to end through SNP_LAUNCH_UPDATE: a QEMU page is accepted and measured; a page
/// with a bad leaf fails with INVALID_PARAM, leaves the launch digest alone and the
/// host finds the corrected page at the page's address.
#[test]
fn launch_update_checks_the_cpuid_page() {
    use crate::fwcommon::{GCTX, GUEST_BASE, Host};
    use softsev_abi::Spa;
    const CPUID_TYPE: u8 = 6;
    for p in PRODUCTS {
        let h = Host::with(p, |_| {});
        h.started_guest(0x30000);
        let good = qemu_cpuid_page(p, 4);
        let d0 = h.fw.launch_digest(Spa(GCTX)).unwrap();
        h.load_page(GCTX, GUEST_BASE, 0x1000, CPUID_TYPE, good.as_bytes())
            .unwrap_or_else(|s| panic!("{p:?}: {s:?}"));
        let d1 = h.fw.launch_digest(Spa(GCTX)).unwrap();
        assert_ne!(d0, d1, "{p:?}: the CPUID page is measured");

        let mut bad = good;
        let i = (0..bad.count as usize)
            .find(|&i| bad.functions[i].eax_in == 7 && bad.functions[i].ecx_in == 0)
            .unwrap();
        bad.functions[i].ebx |= 1 << 1; // TSC_ADJUST
        let spa = GUEST_BASE + 0x1000;
        let r = h.load_page(GCTX, spa, 0x2000, CPUID_TYPE, bad.as_bytes());
        assert_eq!(r, BAD, "{p:?}");
        assert_eq!(
            h.fw.launch_digest(Spa(GCTX)).unwrap(),
            d1,
            "{p:?}: not measured"
        );
        let mut back = [0u8; 4096];
        h.soc.host_read(Spa(spa), false, &mut back).unwrap();
        assert_eq!(
            &back[..],
            good.as_bytes(),
            "{p:?}: corrections written back"
        );
    }
}
