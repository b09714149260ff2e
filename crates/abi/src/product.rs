//! AMD EPYC product generations that run SEV-SNP, with the facts that differ between
//! them (CPUID signature, TCB_VERSION layout, chip-id length, KDS product name).
//! Spec notes: shared/spec/snp-attestation.md §0, §1.3, §6.

use serde::{Deserialize, Serialize};

/// An SNP-capable product line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Product {
    /// 3rd-generation EPYC (Zen 3), family 0x19 models 0x00–0x0F.
    Milan,
    /// 4th-generation EPYC (Zen 4), family 0x19 models 0x10–0x1F, 0xA0–0xAF.
    Genoa,
    /// 5th-generation EPYC (Zen 5), family 0x1A models 0x00–0x11.
    Turin,
}

/// CPUID Fn0000_0001_EAX (the processor signature) from a family, model and stepping
/// (AMD CPUID specification, Fn0000_0001_EAX; the same word is RDX at reset and so
/// in every measured VMSA): a family above 0xF is split into base family 0xF plus
/// extended family `family - 0xF` (`EAX[27:20]`); the model's high nibble is the
/// extended model (`EAX[19:16]`), its low nibble the base model (`EAX[7:4]`); stepping
/// is `EAX[3:0]`. Each field is truncated to its width, as sev-snp-measure does.
pub const fn cpuid_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (base_family, ext_family) = if family > 0xF {
        (0xF, (family - 0xF) & 0xFF)
    } else {
        (family, 0)
    };
    (ext_family << 20)
        | (((model >> 4) & 0xF) << 16)
        | (base_family << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
}

/// How the 8 bytes of a TCB_VERSION are laid out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcbLayout {
    /// Milan/Genoa: bootloader, tee, 4 reserved, snp, microcode (VCEK structVersion 0).
    Legacy,
    /// Turin and later: fmc, bootloader, tee, snp, 3 reserved, microcode (structVersion 1).
    Turin,
}

impl Product {
    /// Every product.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD's KDS and certificates use ("Milan", "Genoa", "Turin").
    pub const fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Parse a product name, case-insensitively.
    pub fn from_name(s: &str) -> Option<Product> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// CPUID family/model/stepping a report of this product carries at 0x188..0x18A;
    /// the values every verifier recognises (snp-attestation.md §0).
    pub const fn cpuid_fms(self) -> (u8, u8, u8) {
        match self {
            Product::Milan => (0x19, 0x01, 0x01),
            Product::Genoa => (0x19, 0x11, 0x01),
            Product::Turin => (0x1A, 0x02, 0x01),
        }
    }

    /// CPUID Fn0000_0001_EAX for `cpuid_fms()`.
    pub const fn cpuid_signature(self) -> u32 {
        let (family, model, stepping) = self.cpuid_fms();
        cpuid_signature(family as u32, model as u32, stepping as u32)
    }

    /// Identify the product from CPUID family and model (as virtee/sev does).
    pub const fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The TCB_VERSION byte layout.
    pub const fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Turin => TcbLayout::Turin,
            _ => TcbLayout::Legacy,
        }
    }

    /// Significant CHIP_ID bytes (the rest of the 64-byte field is zero): 8 on Turin.
    pub const fn chip_id_len(self) -> usize {
        match self {
            Product::Turin => 8,
            _ => 64,
        }
    }
}

impl core::fmt::Display for Product {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(Product::Milan.cpuid_signature(), 0x00A0_0F11);
        assert_eq!(Product::Genoa.cpuid_signature(), 0x00A1_0F11);
        assert_eq!(Product::Turin.cpuid_signature(), 0x00B0_0F21);
        for p in Product::ALL {
            let (f, m, _) = p.cpuid_fms();
            assert_eq!(Product::from_cpuid(f, m), Some(p));
            assert_eq!(Product::from_name(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
    }

    #[test]
    fn general_signature() {
        // sev-snp-measure tests/test_vcpu_types.py.
        assert_eq!(cpuid_signature(14, 1, 2), 0x0E12);
        assert_eq!(cpuid_signature(23, 1, 2), 0x80_0F12);
        assert_eq!(cpuid_signature(25, 17, 0), 0xA1_0F10);
        // QEMU's qemu64: family 15 (no extended family), model 107.
        assert_eq!(cpuid_signature(15, 107, 1), 0x0006_0FB1);
        // Every field is truncated to its width.
        assert_eq!(cpuid_signature(0xF + 0x1FF, 0x1FF, 0x1F), 0x0FFF_0FFF);
    }
}
