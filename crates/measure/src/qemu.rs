//! QEMU's x86 CPU models that an SEV guest can name (`-cpu`, sev-snp-measure's
//! `--vcpu-type`): one catalogue of their names, versions, family/model/stepping
//! (whose CPUID signature QEMU puts in RDX at reset and so in every measured VMSA;
//! shared/spec/snp-launch.md §3.3) and, for each SNP product's own EPYC model, the
//! feature words QEMU's CPUID setup starts from (target/i386/cpu.c
//! `builtin_x86_defs`). The measurement, the launcher's `-cpu` parser and its CPUID
//! page builder all read this table; a new model or version is one edit here.

use softsev_abi::Product;
use softsev_abi::product::cpuid_signature;

/// One QEMU CPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuCpuModel {
    /// The name as QEMU spells it (`EPYC-Milan`).
    pub name: &'static str,
    /// The highest `-vN` version QEMU defines; 0 for a name that takes no version
    /// (an alias such as `EPYC-IBPB`, or a generic model such as `qemu64`).
    pub versions: u32,
    /// CPUID family.
    pub family: u32,
    /// CPUID model.
    pub model: u32,
    /// CPUID stepping.
    pub stepping: u32,
    /// The SNP product the model names, when it names one (a guest model never
    /// exceeds its host).
    pub product: Option<Product>,
    /// Whether sev-snp-measure's `--vcpu-type` knows the model (`softsev measure`
    /// accepts exactly these).
    pub sev_snp_measure: bool,
}

/// Every model, in QEMU's order.
pub const QEMU_CPU_MODELS: &[QemuCpuModel] = &[
    model("EPYC", 5, (23, 1, 2), None, true),
    // QEMU's EPYC-v2 under its old name; it takes no version of its own.
    model("EPYC-IBPB", 0, (23, 1, 2), None, true),
    model("EPYC-Rome", 5, (23, 49, 0), None, true),
    EPYC_MILAN,
    EPYC_GENOA,
    EPYC_TURIN,
    // Generic models (family 15 model 107 / 6, stepping 1).
    model("qemu64", 0, (15, 107, 1), None, false),
    model("kvm64", 0, (15, 6, 1), None, false),
];

const EPYC_MILAN: QemuCpuModel = model("EPYC-Milan", 3, (25, 1, 1), Some(Product::Milan), true);
const EPYC_GENOA: QemuCpuModel = model("EPYC-Genoa", 2, (25, 17, 0), Some(Product::Genoa), true);
const EPYC_TURIN: QemuCpuModel = model("EPYC-Turin", 1, (26, 0, 0), Some(Product::Turin), true);

const fn model(
    name: &'static str,
    versions: u32,
    (family, model, stepping): (u32, u32, u32),
    product: Option<Product>,
    sev_snp_measure: bool,
) -> QemuCpuModel {
    QemuCpuModel {
        name,
        versions,
        family,
        model,
        stepping,
        product,
        sev_snp_measure,
    }
}

impl QemuCpuModel {
    /// CPUID Fn0000_0001_EAX of the model (RDX of every VMSA).
    pub const fn signature(&self) -> u32 {
        cpuid_signature(self.family, self.model, self.stepping)
    }

    /// The model with this base name (no `-vN`), case-insensitively.
    pub fn find(base: &str) -> Option<&'static QemuCpuModel> {
        QEMU_CPU_MODELS
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(base))
    }

    /// The EPYC model of an SNP product (`EPYC-Milan`, `EPYC-Genoa`, `EPYC-Turin`):
    /// the model QEMU's CPUID page is built from for a guest on that product.
    pub const fn for_product(product: Product) -> &'static QemuCpuModel {
        match product {
            Product::Milan => &EPYC_MILAN,
            Product::Genoa => &EPYC_GENOA,
            Product::Turin => &EPYC_TURIN,
        }
    }
}

/// Signature of a CPU model name as sev-snp-measure's `--vcpu-type` reads it (`EPYC`,
/// `EPYC-v4`, `EPYC-Milan-v2`, ...; case-insensitive; any `-vN` version suffix of a
/// versioned model, none for the others).
pub fn vcpu_type_sig(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let (base, versioned) = match lower.rfind("-v") {
        Some(i) if i + 2 < lower.len() && lower[i + 2..].bytes().all(|b| b.is_ascii_digit()) => {
            (&lower[..i], true)
        }
        _ => (lower.as_str(), false),
    };
    QemuCpuModel::find(base)
        .filter(|m| m.sev_snp_measure && (m.versions > 0 || !versioned))
        .map(QemuCpuModel::signature)
}

// Feature words shared by the EPYC models.
const F1_EDX: u32 = 0x078B_FBFF; // FPU..SSE2 as in the EPYC models (no HTT)
const F1_ECX_MILAN: u32 = 0x76DA_320B; // SSE3 PCLMULQDQ MONITOR SSSE3 FMA CX16 PCID SSE4.1/4.2 MOVBE POPCNT AES XSAVE AVX F16C RDRAND
const F1_ECX_GENOA: u32 = F1_ECX_MILAN;
const E1_ECX: u32 = 0x00C0_03F5; // LAHF SVM CR8LEG ABM SSE4A MISALIGNSSE 3DNOWPREFETCH OSVW TOPOEXT PERFCORE
const E1_EDX: u32 = 0x2E50_0800; // SYSCALL NX MMXEXT FFXSR PDPE1GB RDTSCP LM (+ aliases below)
const XSAVE: u32 = 0xF; // XSAVEOPT XSAVEC XGETBV1 XSAVES
const F7_EBX_MILAN: u32 = 0x219C_07A9; // FSGSBASE BMI1 AVX2 SMEP BMI2 ERMS INVPCID RDSEED ADX SMAP CLFLUSHOPT CLWB SHA
const F7_EBX_AVX512: u32 = 0xD023_0000; // AVX512F DQ IFMA CD BW VL
const F7_ECX_MILAN: u32 = 0x0040_000C; // UMIP PKU RDPID
const F7_ECX_GENOA: u32 = 0x0041_5F4E; // + VBMI VBMI2 GFNI VAES VPCLMULQDQ VNNI BITALG VPOPCNTDQ LA57
const E8_EBX_MILAN: u32 = 0x0100_D205; // CLZERO XSAVEERPTR WBNOINVD IBPB IBRS STIBP AMD_SSBD
const E8_EBX_GENOA: u32 = E8_EBX_MILAN | (1 << 17) | (1 << 28); // + STIBP_ALWAYS_ON, PSFD

/// What QEMU's definition of an SNP product's EPYC model puts in the CPUID leaves
/// (before KVM's filtering and QEMU's SNP adjustments, which the CPUID page builder
/// applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidFeatures {
    /// The brand string (`model_id`), Fn8000_0002..4.
    pub brand: &'static str,
    /// Highest standard leaf (`level`).
    pub level: u32,
    /// Highest extended leaf (`xlevel`, as raised for SEV guests).
    pub xlevel: u32,
    /// Fn0000_0001 ECX.
    pub f1_ecx: u32,
    /// Fn0000_0001 EDX.
    pub f1_edx: u32,
    /// Fn0000_0006 EAX.
    pub f6_eax: u32,
    /// Fn0000_0007_x00 EBX.
    pub f7_0_ebx: u32,
    /// Fn0000_0007_x00 ECX.
    pub f7_0_ecx: u32,
    /// Fn0000_0007_x00 EDX.
    pub f7_0_edx: u32,
    /// Fn0000_0007_x01 EAX (non-zero: the model has sub-leaf 1).
    pub f7_1_eax: u32,
    /// Fn0000_000D_x01 EAX (XSAVE features).
    pub xsave: u32,
    /// Fn8000_0001 ECX.
    pub e1_ecx: u32,
    /// Fn8000_0001 EDX.
    pub e1_edx: u32,
    /// Fn8000_0007 EBX.
    pub e7_ebx: u32,
    /// Fn8000_0008 EBX.
    pub e8_ebx: u32,
    /// Fn8000_0021 EAX.
    pub e21_eax: u32,
    /// Fn8000_0022 EAX (PerfMonV2).
    pub e22_eax: u32,
    /// Fn8000_000A EDX (SVM features).
    pub svm_edx: u32,
    /// L2 cache size, KiB.
    pub l2_kib: u32,
    /// L3 cache size, MiB.
    pub l3_mib: u32,
}

impl CpuidFeatures {
    /// The features of [`QemuCpuModel::for_product`]`(product)`.
    pub const fn for_product(product: Product) -> &'static CpuidFeatures {
        match product {
            Product::Milan => &MILAN_CPUID,
            Product::Genoa => &GENOA_CPUID,
            Product::Turin => &TURIN_CPUID,
        }
    }
}

const MILAN_CPUID: CpuidFeatures = CpuidFeatures {
    brand: "AMD EPYC-Milan Processor",
    level: 0xD,
    // xlevel 0x8000001E, raised to 0x8000001F for SEV guests.
    xlevel: 0x8000_001F,
    f1_ecx: F1_ECX_MILAN,
    f1_edx: F1_EDX,
    f6_eax: 1 << 2,
    f7_0_ebx: F7_EBX_MILAN,
    f7_0_ecx: F7_ECX_MILAN,
    f7_0_edx: 1 << 4,
    f7_1_eax: 0,
    xsave: XSAVE,
    e1_ecx: E1_ECX,
    e1_edx: E1_EDX,
    e7_ebx: 0,
    e8_ebx: E8_EBX_MILAN,
    e21_eax: 0,
    e22_eax: 0,
    svm_edx: (1 << 0) | (1 << 3),
    l2_kib: 512,
    l3_mib: 32,
};

const GENOA_CPUID: CpuidFeatures = CpuidFeatures {
    brand: "AMD EPYC-Genoa Processor",
    level: 0xD,
    xlevel: 0x8000_0022,
    f1_ecx: F1_ECX_GENOA,
    f1_edx: F1_EDX,
    f6_eax: 1 << 2,
    f7_0_ebx: F7_EBX_MILAN | F7_EBX_AVX512,
    f7_0_ecx: F7_ECX_GENOA,
    f7_0_edx: 1 << 4,
    f7_1_eax: 1 << 5,
    xsave: XSAVE,
    e1_ecx: E1_ECX,
    e1_edx: E1_EDX,
    e7_ebx: 0,
    e8_ebx: E8_EBX_GENOA,
    // NoNestedDataBp, LfenceAlwaysSerializing, NullSelectClearsBase, AutoIBRS.
    e21_eax: (1 << 0) | (1 << 2) | (1 << 6) | (1 << 8),
    e22_eax: 0,
    svm_edx: (1 << 0) | (1 << 3) | (1 << 25) | (1 << 28),
    l2_kib: 1024,
    l3_mib: 32,
};

const TURIN_CPUID: CpuidFeatures = CpuidFeatures {
    brand: "AMD EPYC-Turin Processor",
    level: 0xD,
    xlevel: 0x8000_0022,
    f1_ecx: F1_ECX_GENOA,
    f1_edx: F1_EDX,
    f6_eax: 1 << 2,
    f7_0_ebx: F7_EBX_MILAN | F7_EBX_AVX512,
    f7_0_ecx: F7_ECX_GENOA | (1 << 27) | (1 << 28),
    f7_0_edx: (1 << 4) | (1 << 8),
    f7_1_eax: (1 << 4) | (1 << 5),
    xsave: XSAVE,
    e1_ecx: E1_ECX,
    e1_edx: E1_EDX,
    e7_ebx: (1 << 0) | (1 << 1),
    e8_ebx: E8_EBX_GENOA,
    // + FsGsBaseNs, SBPB, IBPB_BRTYPE, SRSO_USER_KERNEL_NO.
    e21_eax: (1 << 0)
        | (1 << 1)
        | (1 << 2)
        | (1 << 6)
        | (1 << 8)
        | (1 << 27)
        | (1 << 28)
        | (1 << 30),
    e22_eax: 1,
    svm_edx: (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 6)
        | (1 << 10)
        | (1 << 12)
        | (1 << 15)
        | (1 << 16)
        | (1 << 25)
        | (1 << 28),
    l2_kib: 1024,
    l3_mib: 32,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // SSM tests/test_vcpu_types.py
        assert_eq!(vcpu_type_sig("EPYC-v4"), Some(0x80_0F12));
        assert_eq!(vcpu_type_sig("epyc-milan-v2"), Some(0xA0_0F11));
        assert_eq!(vcpu_type_sig("EPYC-Rome-v3"), Some(0x83_0F10));
        assert_eq!(vcpu_type_sig("EPYC-Genoa"), Some(0xA1_0F10));
        assert_eq!(vcpu_type_sig("EPYC-Turin-v1"), Some(0xB0_0F00));
        assert_eq!(vcpu_type_sig("EPYC-IBPB"), Some(0x80_0F12));
        assert_eq!(vcpu_type_sig("EPYC-X"), None);
        assert_eq!(vcpu_type_sig("EPYC-v"), None);
        // Unversioned names take no suffix; QEMU-only models are not sev-snp-measure's.
        assert_eq!(vcpu_type_sig("EPYC-IBPB-v1"), None);
        assert_eq!(vcpu_type_sig("qemu64"), None);
        assert_eq!(
            QemuCpuModel::find("QEMU64").map(|m| m.signature()),
            Some(0x0006_0FB1)
        );
    }

    #[test]
    fn each_product_has_its_model() {
        for p in Product::ALL {
            let m = QemuCpuModel::for_product(p);
            assert_eq!(m.product, Some(p));
            assert_eq!(QemuCpuModel::find(m.name), Some(m));
            assert!(CpuidFeatures::for_product(p).brand.contains(m.name));
            assert_eq!(
                Product::from_cpuid(m.family as u8, m.model as u8),
                Some(p),
                "{}",
                m.name
            );
        }
    }
}
