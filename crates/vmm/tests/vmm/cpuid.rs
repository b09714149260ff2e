//! QEMU's CPUID page builder (`softsev_vmm::cpuid`): the page's shape per product, and
//! every page it builds passes the firmware's SNP_LAUNCH_UPDATE check unchanged.

use softsev_abi::Product;
use softsev_abi::fw_buf::SNP_CPUID_COUNT_MAX;
use softsev_firmware::cpuid::{
    PlatformCpuid, check_cpuid_page, leaf_is_checked, rejected_functions,
};
use softsev_vmm::cpuid::{qemu_cpuid_functions, qemu_cpuid_page};
use zerocopy::IntoBytes;

const PRODUCTS: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

#[test]
fn qemu_pages_pass_unchanged_for_all_products() {
    for p in PRODUCTS {
        let plat = PlatformCpuid::for_product(p);
        for vcpus in [0, 1, 2, 3, 4, 8, 16, 64, 255, 256, 1000] {
            let page = qemu_cpuid_page(p, vcpus);
            assert!(page.count as usize <= SNP_CPUID_COUNT_MAX);
            let mut checked = page;
            let r = check_cpuid_page(&plat, &mut checked);
            assert_eq!(
                r,
                Ok(()),
                "{p:?} vcpus {vcpus}: rejected {:?}",
                rejected_functions(&plat, &page)
                    .iter()
                    .map(|&i| (i, page.functions[i].eax_in, page.functions[i].ecx_in))
                    .collect::<Vec<_>>()
            );
            assert_eq!(checked.as_bytes(), page.as_bytes());
        }
    }
}

#[test]
fn qemu_page_shape() {
    let genoa = qemu_cpuid_functions(Product::Genoa, 4);
    assert_eq!(genoa.len(), 64, "Genoa fills the page exactly");
    let milan = qemu_cpuid_functions(Product::Milan, 4);
    assert_eq!(milan.len(), 57);
    for (p, funcs) in [(Product::Genoa, &genoa), (Product::Milan, &milan)] {
        let find = |l: u32, s: u32| funcs.iter().find(|x| x.eax_in == l && x.ecx_in == s);
        // The vendor and signature.
        let l0 = find(0, 0).unwrap();
        assert_eq!(&l0.ebx.to_le_bytes(), b"Auth");
        // The hypervisor leaves are there and outside the checked ranges.
        assert!(find(0x4000_0000, 0).is_some());
        assert!(!leaf_is_checked(0x4000_0000));
        // XSAVE leaves describe XCR0 = x87 as QEMU does.
        let d0 = find(0xD, 0).unwrap();
        assert_eq!((d0.xcr0_in, d0.ebx), (1, 0x240));
        // SEV/SEV-ES/SNP with C-bit 51.
        let sev = find(0x8000_001F, 0).unwrap();
        assert_eq!(sev.eax & 0x1A, 0x1A);
        assert_eq!(sev.ebx & 0x3F, 51);
        // AVX-512 only where the CPU has it.
        let l7 = find(7, 0).unwrap();
        assert_eq!(l7.ebx & (1 << 16) != 0, p != Product::Milan);
    }
    let turin = qemu_cpuid_functions(Product::Turin, 4);
    let l1 = turin.iter().find(|x| x.eax_in == 1).unwrap();
    assert_eq!((l1.eax >> 8) & 0xF, 0xF);
    assert_eq!((l1.eax >> 20) & 0xFF, 0x1A - 0xF);
}
