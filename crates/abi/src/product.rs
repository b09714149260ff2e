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
        let (fam, model, step) = self.cpuid_fms();
        let (base_fam, ext_fam) = if fam > 0xF {
            (0xF, fam - 0xF)
        } else {
            (fam, 0)
        };
        ((ext_fam as u32) << 20)
            | (((model >> 4) as u32) << 16)
            | ((base_fam as u32) << 8)
            | (((model & 0xF) as u32) << 4)
            | step as u32
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
}
