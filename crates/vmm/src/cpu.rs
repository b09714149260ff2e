//! QEMU x86 CPU models an SNP guest can use: the CPUID signature QEMU puts in RDX at
//! reset (and so in every measured VMSA; shared/spec/snp-launch.md §3.3) and the SNP
//! product generation of the simulated host.
//!
//! A guest CPU model never exceeds its host, so Milan/Genoa/Turin models name their
//! own product; older models (EPYC, EPYC-Rome, qemu64, kvm64) run on the oldest SNP
//! host, Milan. `host`/`max` mean the simulated host itself (Milan by default). The
//! models themselves are `softsev_measure::qemu`'s catalogue.

use serde::Serialize;
use softsev_abi::Product;
use softsev_measure::qemu::QemuCpuModel;

use crate::error::ConfigError;

/// A resolved `-cpu` option.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuModel {
    /// The model name as QEMU spells it (canonical case, version suffix kept).
    pub name: String,
    /// The host product generation.
    pub product: Product,
    /// CPUID Fn0000_0001_EAX of the model (RDX of every VMSA).
    pub signature: u32,
    /// Feature flags given after the model (`+x`, `-x`, `x=on`); they shape the CPUID
    /// page, never the launch digest.
    pub features: Vec<String>,
}

/// The C-bit position every SNP product reports in CPUID 0x8000001F `EBX\[5:0\]`.
pub const fn host_cbitpos(product: Product) -> u32 {
    match product {
        Product::Milan | Product::Genoa | Product::Turin => 51,
    }
}

impl CpuModel {
    /// The default host product when the model does not name one.
    pub const DEFAULT_PRODUCT: Product = Product::Milan;

    /// Resolve a `-cpu` argument (`EPYC-Milan-v2`, `EPYC-v4,+x2apic`, `host`, `qemu64`).
    pub fn parse(arg: &str) -> Result<CpuModel, ConfigError> {
        let mut parts = crate::keyval::split(arg).into_iter();
        let model = parts.next().unwrap_or_default();
        let features: Vec<String> = parts.filter(|p| !p.is_empty()).collect();
        let lower = model.to_ascii_lowercase();
        let (name, product, signature) = match lower.as_str() {
            "host" | "max" => (
                lower.clone(),
                Self::DEFAULT_PRODUCT,
                Self::DEFAULT_PRODUCT.cpuid_signature(),
            ),
            _ => {
                let unknown = || ConfigError::UnknownCpu(model.clone());
                let (base, version) = split_version(&model);
                let known = QemuCpuModel::find(base).ok_or_else(unknown)?;
                if let Some(v) = version
                    && (v == 0 || v > known.versions)
                {
                    return Err(unknown());
                }
                let name = match version {
                    Some(v) => format!("{}-v{v}", known.name),
                    None => known.name.to_string(),
                };
                (
                    name,
                    known.product.unwrap_or(Self::DEFAULT_PRODUCT),
                    known.signature(),
                )
            }
        };
        Ok(CpuModel {
            name,
            product,
            signature,
            features,
        })
    }
}

/// `EPYC-Milan-v2` → (`EPYC-Milan`, Some(2)).
fn split_version(model: &str) -> (&str, Option<u32>) {
    if let Some(i) = model.to_ascii_lowercase().rfind("-v") {
        let digits = &model[i + 2..];
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(v) = digits.parse()
        {
            return (&model[..i], Some(v));
        }
    }
    (model, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models() {
        let m = CpuModel::parse("EPYC-Milan-v2").unwrap();
        assert_eq!((m.product, m.signature), (Product::Milan, 0x00A0_0F11));
        assert_eq!(m.name, "EPYC-Milan-v2");
        let g = CpuModel::parse("epyc-genoa").unwrap();
        assert_eq!(
            (g.product, g.signature, g.name.as_str()),
            (Product::Genoa, 0x00A1_0F10, "EPYC-Genoa")
        );
        let t = CpuModel::parse("EPYC-Turin").unwrap();
        assert_eq!((t.product, t.signature), (Product::Turin, 0x00B0_0F00));
        let e = CpuModel::parse("EPYC-v4,+x2apic,-svm").unwrap();
        assert_eq!((e.product, e.signature), (Product::Milan, 0x0080_0F12));
        assert_eq!(e.features, vec!["+x2apic", "-svm"]);
        assert_eq!(CpuModel::parse("EPYC-Rome").unwrap().signature, 0x0083_0F10);
        assert_eq!(CpuModel::parse("qemu64").unwrap().signature, 0x0006_0FB1);
        assert_eq!(CpuModel::parse("host").unwrap().signature, 0x00A0_0F11);
        for bad in [
            "EPYC-Milan-v9",
            "EPYC-Milan-v0",
            "Skylake-Server",
            "EPYC-Milan-x",
            "",
        ] {
            let e = CpuModel::parse(bad).unwrap_err();
            assert_eq!(e.to_string(), format!("unable to find CPU model '{bad}'"));
        }
        for p in Product::ALL {
            assert_eq!(host_cbitpos(p), 51);
        }
    }
}
