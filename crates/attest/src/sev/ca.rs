//! The AMD CA of legacy SEV: the ARK (root, self-signed) and the ASK (signs the CEK)
//! in AMD's CA-certificate format (sev-legacy.md §2.2), built in per product
//! generation or given by the caller (sevctl's `--ca` file = ASK ‖ ARK, §2.4).
//!
//! The built-in files in `roots/sev/<product>/` are AMD's public certificates, copied
//! from virtee/sev (roots/sev/PROVENANCE.md). [`SevGeneration::detect`] picks the
//! generation whose ASK signs a chain's CEK, trying Naples, Rome, Milan, Genoa, Turin
//! in that order, as the sev crate's `Generation::try_from(&Chain)` does (§2.4).

use super::SevError;
use super::chain::{Signer, verify_sev_signature};
use softsev_abi::sev_cert::{AmdCaCert, SevCert, SevUsage};
use std::sync::OnceLock;

/// An AMD EPYC product generation that has a legacy SEV CA.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SevGeneration {
    /// EPYC 7001 (Zen 1): RSA-2048 ARK/ASK, RSA-PSS-SHA256.
    Naples,
    /// EPYC 7002 (Zen 2): RSA-4096, RSA-PSS-SHA384.
    Rome,
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4).
    Genoa,
    /// EPYC 9005 (Zen 5).
    Turin,
}

impl SevGeneration {
    /// Every generation, in the order sevctl tries them.
    pub const ALL: [SevGeneration; 5] = [
        SevGeneration::Naples,
        SevGeneration::Rome,
        SevGeneration::Milan,
        SevGeneration::Genoa,
        SevGeneration::Turin,
    ];

    /// The product name as AMD writes it ("Naples", …).
    pub fn name(self) -> &'static str {
        match self {
            SevGeneration::Naples => "Naples",
            SevGeneration::Rome => "Rome",
            SevGeneration::Milan => "Milan",
            SevGeneration::Genoa => "Genoa",
            SevGeneration::Turin => "Turin",
        }
    }

    /// From a name, case-insensitive.
    pub fn from_name(s: &str) -> Option<SevGeneration> {
        Self::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The generation whose built-in ASK signs `cek` (the first of [`Self::ALL`]), as
    /// sevctl picks the built-in CA when `--ca` is not given.
    pub fn detect(cek: &SevCert) -> Option<SevGeneration> {
        Self::ALL.into_iter().find(|g| {
            SevCa::builtin(*g)
                .is_some_and(|ca| verify_sev_signature(cek, Signer::Ca(&ca.ask)).is_ok())
        })
    }

    fn files(self) -> (&'static [u8], &'static [u8]) {
        match self {
            SevGeneration::Naples => (
                include_bytes!("../../roots/sev/naples/ark.cert"),
                include_bytes!("../../roots/sev/naples/ask.cert"),
            ),
            SevGeneration::Rome => (
                include_bytes!("../../roots/sev/rome/ark.cert"),
                include_bytes!("../../roots/sev/rome/ask.cert"),
            ),
            SevGeneration::Milan => (
                include_bytes!("../../roots/sev/milan/ark.cert"),
                include_bytes!("../../roots/sev/milan/ask.cert"),
            ),
            SevGeneration::Genoa => (
                include_bytes!("../../roots/sev/genoa/ark.cert"),
                include_bytes!("../../roots/sev/genoa/ask.cert"),
            ),
            SevGeneration::Turin => (
                include_bytes!("../../roots/sev/turin/ark.cert"),
                include_bytes!("../../roots/sev/turin/ask.cert"),
            ),
        }
    }
}

impl std::fmt::Display for SevGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a CA came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CaSource {
    /// AMD's genuine CA of that generation, compiled in.
    Builtin(SevGeneration),
    /// Given by the caller (a `--sev-ca` file, a simulated platform's CA).
    Custom,
}

/// An ARK and the ASK it signs.
#[derive(Clone, Debug)]
pub struct SevCa {
    /// The AMD Signing Key (signs CEKs).
    pub ask: AmdCaCert,
    /// The AMD Root Key (self-signed, signs the ASK).
    pub ark: AmdCaCert,
    /// Where it came from.
    pub source: CaSource,
}

impl SevCa {
    /// AMD's genuine CA for `generation` (parsed once per process; `None` only if the
    /// compiled-in bytes did not decode, which the crate's tests rule out).
    pub fn builtin(generation: SevGeneration) -> Option<&'static SevCa> {
        static CAS: OnceLock<Vec<SevCa>> = OnceLock::new();
        CAS.get_or_init(|| {
            SevGeneration::ALL
                .into_iter()
                .filter_map(|g| {
                    let (ark, ask) = g.files();
                    let (ark, _) = AmdCaCert::decode(ark).ok()?;
                    let (ask, _) = AmdCaCert::decode(ask).ok()?;
                    Some(SevCa {
                        ask,
                        ark,
                        source: CaSource::Builtin(g),
                    })
                })
                .collect()
        })
        .iter()
        .find(|c| c.source == CaSource::Builtin(generation))
    }

    /// A CA from sevctl's `--ca` file layout: the ASK, then the ARK, nothing after
    /// (sev crate `certs::sev::ca::Chain`, §2.4).
    pub fn from_ask_ark(bytes: &[u8]) -> Result<SevCa, SevError> {
        let (ask, n) = AmdCaCert::decode(bytes)?;
        let rest = bytes.get(n..).unwrap_or_default();
        let (ark, m) = AmdCaCert::decode(rest)?;
        if m != rest.len() {
            return Err(SevError::Format(format!(
                "CA file: {} bytes after the ASK ({n} B) and the ARK ({m} B); expected ASK ‖ ARK only",
                rest.len() - m
            )));
        }
        Ok(SevCa {
            ask,
            ark,
            source: CaSource::Custom,
        })
    }

    /// The sevctl `--ca` file bytes: ASK ‖ ARK.
    pub fn to_ask_ark(&self) -> Vec<u8> {
        let mut v = self.ask.encode();
        v.extend(self.ark.encode());
        v
    }

    /// The built-in generation whose ARK has this CA's ARK key id, if any (a custom CA
    /// that names an AMD root).
    pub fn claims_builtin(&self) -> Option<SevGeneration> {
        SevGeneration::ALL
            .into_iter()
            .find(|g| SevCa::builtin(*g).is_some_and(|b| b.ark.key_id == self.ark.key_id))
    }

    /// Whether the ARK is the same certificate as `other`'s (bytes of the signed part
    /// and the signature).
    pub fn same_ark(&self, other: &SevCa) -> bool {
        self.ark.encode() == other.ark.encode()
    }
}

/// The usage an AMD CA certificate must carry in its position.
pub(crate) fn expected_usage(is_ark: bool) -> SevUsage {
    if is_ark { SevUsage::ARK } else { SevUsage::ASK }
}
