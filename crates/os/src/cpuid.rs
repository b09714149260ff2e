//! The CPUID answers the preloaded `softsev-cpuid` library gives (frontends.md §3.2,
//! §7.1 step 5): host tools (snphost `ProcessorGeneration::current`, the sev crate's
//! `Generation::identify_host_generation`, snphost `ok`) execute CPUID to learn that
//! they run on an SEV-SNP-capable AMD EPYC; on another CPU the library answers the
//! leaves they read and leaves every other leaf to the real instruction.
//!
//! The table travels in the environment variable [`ENV`] as
//! `LEAF=EAX,EBX,ECX,EDX;…` (hexadecimal, `*` = the real register), one entry per leaf
//! (sub-leaf 0 semantics: ECX is not looked at — none of the overridden leaves has
//! sub-leaves).

/// The environment variable carrying the override table.
pub const ENV: &str = "SOFTSEV_CPUID";

/// One overridden leaf: `None` registers are taken from the real CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf (EAX on entry).
    pub leaf: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [Option<u32>; 4],
}

/// The leaves of an SEV-SNP host on an AMD EPYC: `signature` is CPUID Fn0000_0001_EAX of
/// the product (family/model/stepping), `brand` its brand string (must contain "EPYC" for
/// snphost `ok`). Values (AMD64 APM vol. 3, Appendix E; snphost-0.9.0 src/ok/mod.rs):
///
/// - Fn0000_0000 and Fn8000_0000: vendor "AuthenticAMD" (EBX, EDX, ECX), the real maximum
///   standard leaf, maximum extended leaf 0x8000_0021;
/// - Fn0000_0001_EAX and Fn8000_0001_EAX: `signature`; Fn8000_0001_EBX 0 (package type
///   bits 31:28, which snphost reads to tell Bergamo from Siena);
/// - Fn8000_0002..4: `brand`, NUL padded to 48 bytes;
/// - Fn8000_001F: EAX bits 0 SME, 1 SEV, 2 page-flush MSR, 3 SEV-ES, 4 SEV-SNP, 5 VMPL;
///   EBX C-bit 51 (bits 5:0), one reduced physical-address bit (11:6), 4 VMPLs (15:12);
///   ECX 509 encrypted guests at once, EDX minimum SEV-only ASID 1.
pub fn epyc_host(signature: u32, brand: &str) -> Vec<Leaf> {
    const AUTH: u32 = u32::from_le_bytes(*b"Auth");
    const ENTI: u32 = u32::from_le_bytes(*b"enti");
    const CAMD: u32 = u32::from_le_bytes(*b"cAMD");
    let mut b = [0u8; 48];
    let n = brand.len().min(47);
    b[..n].copy_from_slice(&brand.as_bytes()[..n]);
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut v = vec![
        Leaf {
            leaf: 0,
            regs: [None, Some(AUTH), Some(CAMD), Some(ENTI)],
        },
        Leaf {
            leaf: 1,
            regs: [Some(signature), None, None, None],
        },
        Leaf {
            leaf: 0x8000_0000,
            regs: [Some(0x8000_0021), Some(AUTH), Some(CAMD), Some(ENTI)],
        },
        Leaf {
            leaf: 0x8000_0001,
            regs: [Some(signature), Some(0), None, None],
        },
    ];
    for (k, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let o = k * 16;
        v.push(Leaf {
            leaf,
            regs: [
                Some(word(o)),
                Some(word(o + 4)),
                Some(word(o + 8)),
                Some(word(o + 12)),
            ],
        });
    }
    v.push(Leaf {
        leaf: 0x8000_001F,
        regs: [
            Some(0x3F),
            Some(51 | (1 << 6) | (4 << 12)),
            Some(509),
            Some(1),
        ],
    });
    v
}

/// The [`ENV`] value for `leaves`.
pub fn encode(leaves: &[Leaf]) -> String {
    leaves
        .iter()
        .map(|l| {
            let r: Vec<String> = l
                .regs
                .iter()
                .map(|r| r.map_or("*".to_string(), |v| format!("{v:x}")))
                .collect();
            format!("{:x}={}", l.leaf, r.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Parse an [`ENV`] value (the preload library has its own copy of this parser, kept
/// allocation-free; this one checks what [`encode`] writes).
pub fn decode(s: &str) -> Result<Vec<Leaf>, String> {
    let mut out = Vec::new();
    for item in s.split(';').filter(|i| !i.is_empty()) {
        let (leaf, regs) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: no '='"))?;
        let leaf = u32::from_str_radix(leaf, 16).map_err(|e| format!("leaf {leaf:?}: {e}"))?;
        let parts: Vec<&str> = regs.split(',').collect();
        if parts.len() != 4 {
            return Err(format!("{item:?}: {} registers, want 4", parts.len()));
        }
        let mut r = [None; 4];
        for (slot, p) in r.iter_mut().zip(parts) {
            if p != "*" {
                *slot =
                    Some(u32::from_str_radix(p, 16).map_err(|e| format!("register {p:?}: {e}"))?);
            }
        }
        out.push(Leaf { leaf, regs: r });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milan_table_round_trips_and_carries_the_brand() {
        let t = epyc_host(0x00A0_0F11, "AMD EPYC-Milan Processor");
        let s = encode(&t);
        assert!(s.starts_with("0=*,68747541,444d4163,69746e65;"), "{s}");
        assert_eq!(decode(&s).unwrap(), t);
        let brand: Vec<u8> = t
            .iter()
            .filter(|l| (0x8000_0002..=0x8000_0004).contains(&l.leaf))
            .flat_map(|l| l.regs.iter().flat_map(|r| r.unwrap().to_le_bytes()))
            .collect();
        assert!(brand.starts_with(b"AMD EPYC-Milan Processor\0"));
        let f = t.iter().find(|l| l.leaf == 0x8000_001F).unwrap();
        assert_eq!(f.regs[1].unwrap() & 0x3F, 51);
        assert_eq!((f.regs[1].unwrap() >> 12) & 0xF, 4);
        assert!(decode("1=1,2,3").is_err());
        assert!(decode("zz=*,*,*,*").is_err());
    }
}
