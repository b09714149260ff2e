//! Trust anchors: AMD's genuine ARK, ASK and ASVK for Milan, Genoa and Turin, built in
//! and pinned by default, or custom roots (softsev's own simulated AMD root, test
//! roots) given by the caller.
//!
//! The built-in files in `roots/` are AMD's KDS `cert_chain` bundles (ASK or ASVK,
//! then ARK), byte-identical to the copies in go-sev-guest `verify/trust/`
//! (roots/PROVENANCE.md).

use crate::cert::{AmdCert, CertError, CertRole, certs_from_bytes};
use softsev_abi::Product;
use std::path::Path;
use std::sync::OnceLock;

/// The anchors of one product line.
#[derive(Clone, Debug)]
pub struct RootSet {
    /// Product line.
    pub product: Product,
    /// The root (self-signed).
    pub ark: AmdCert,
    /// The VCEK intermediate, if known.
    pub ask: Option<AmdCert>,
    /// The VLEK intermediate, if known.
    pub asvk: Option<AmdCert>,
}

/// Where the trust store came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustKind {
    /// AMD's genuine roots, compiled in.
    BuiltinAmd,
    /// Roots given by the caller.
    Custom,
}

/// A set of trusted roots, at most one per product line.
#[derive(Clone, Debug)]
pub struct TrustStore {
    kind: TrustKind,
    sets: Vec<RootSet>,
}

const BUILTIN: [(Product, &str, &str); 3] = [
    (
        Product::Milan,
        include_str!("../roots/milan_vcek_cert_chain.pem"),
        include_str!("../roots/milan_vlek_cert_chain.pem"),
    ),
    (
        Product::Genoa,
        include_str!("../roots/genoa_vcek_cert_chain.pem"),
        include_str!("../roots/genoa_vlek_cert_chain.pem"),
    ),
    (
        Product::Turin,
        include_str!("../roots/turin_vcek_cert_chain.pem"),
        include_str!("../roots/turin_vlek_cert_chain.pem"),
    ),
];

/// Why roots cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A certificate does not parse.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No ARK among the given certificates.
    #[error("custom roots in {0}: no ARK certificate (ark.pem / ark.der or CN=ARK-<product>)")]
    NoArk(String),
    /// The product of a custom root cannot be told.
    #[error("custom root {0}: cannot tell the product line from its CN; pass the product")]
    UnknownProduct(String),
    /// The ARK is not self-signed.
    #[error("root {name}: not self-signed: {why}")]
    NotSelfSigned {
        /// The ARK's CN.
        name: String,
        /// Why.
        why: String,
    },
}

fn split_bundle(product: Product, vcek: &str, vlek: &str) -> Result<RootSet, TrustError> {
    let a = certs_from_bytes(&format!("builtin {product} VCEK chain"), vcek.as_bytes())?;
    let b = certs_from_bytes(&format!("builtin {product} VLEK chain"), vlek.as_bytes())?;
    let find = |v: &[AmdCert], role: CertRole| {
        v.iter()
            .find(|c| c.role().map(|r| r.0) == Some(role))
            .cloned()
    };
    let ark = find(&a, CertRole::Ark).ok_or_else(|| TrustError::NoArk(product.to_string()))?;
    Ok(RootSet {
        product,
        ask: find(&a, CertRole::Ask),
        asvk: find(&b, CertRole::Asvk),
        ark,
    })
}

impl TrustStore {
    /// AMD's genuine roots for Milan, Genoa and Turin (parsed once per process).
    pub fn builtin() -> &'static TrustStore {
        static STORE: OnceLock<TrustStore> = OnceLock::new();
        STORE.get_or_init(|| {
            let sets = BUILTIN
                .iter()
                .filter_map(|(p, a, b)| split_bundle(*p, a, b).ok())
                .collect();
            TrustStore {
                kind: TrustKind::BuiltinAmd,
                sets,
            }
        })
    }

    /// Custom roots from certificates (ARK required; ASK/ASVK optional). The product
    /// comes from each ARK's CN, or `product` when given.
    pub fn custom(certs: Vec<AmdCert>, product: Option<Product>) -> Result<TrustStore, TrustError> {
        let mut sets: Vec<RootSet> = Vec::new();
        let arks: Vec<&AmdCert> = certs
            .iter()
            .filter(|c| c.role().map(|r| r.0) == Some(CertRole::Ark))
            .collect();
        if arks.is_empty() {
            return Err(TrustError::NoArk("the given certificates".into()));
        }
        for ark in arks {
            let p = product
                .or_else(|| ark.role().and_then(|r| r.1))
                .ok_or_else(|| TrustError::UnknownProduct(ark.name().to_string()))?;
            ark.verify_signed_by(ark)
                .map_err(|e| TrustError::NotSelfSigned {
                    name: ark.name().to_string(),
                    why: e.to_string(),
                })?;
            let inter = |role: CertRole| {
                certs
                    .iter()
                    .find(|c| {
                        c.role().map(|r| r.0) == Some(role) && c.verify_signed_by(ark).is_ok()
                    })
                    .cloned()
            };
            sets.retain(|s| s.product != p);
            sets.push(RootSet {
                product: p,
                ark: ark.clone(),
                ask: inter(CertRole::Ask),
                asvk: inter(CertRole::Asvk),
            });
        }
        Ok(TrustStore {
            kind: TrustKind::Custom,
            sets,
        })
    }

    /// Custom roots from a directory holding `ark.{pem,der}` (and optionally
    /// `ask.*`, `asvk.*`), or any `.pem` bundle of them.
    pub fn from_dir(dir: &Path, product: Option<Product>) -> Result<TrustStore, TrustError> {
        let mut certs = Vec::new();
        let rd = std::fs::read_dir(dir).map_err(|source| TrustError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "pem" | "der" | "crt" | "cer") {
                continue;
            }
            let bytes = crate::input::read_bounded(
                &p,
                crate::input::MAX_CERT_FILE,
                "a root certificate file",
            )
            .map_err(|source| TrustError::Io {
                path: p.display().to_string(),
                source,
            })?;
            // Skip files that are not certificates (CRLs, keys) in a mixed directory.
            if let Ok(c) = certs_from_bytes(&p.display().to_string(), &bytes) {
                certs.extend(c);
            }
        }
        TrustStore::custom(certs, product).map_err(|e| match e {
            TrustError::NoArk(_) => TrustError::NoArk(dir.display().to_string()),
            e => e,
        })
    }

    /// Built-in or custom.
    pub fn kind(&self) -> TrustKind {
        self.kind
    }
    /// The anchors for `product`.
    pub fn get(&self, product: Product) -> Option<&RootSet> {
        self.sets.iter().find(|s| s.product == product)
    }
    /// Every root set.
    pub fn sets(&self) -> &[RootSet] {
        &self.sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_parse_and_self_verify() {
        let t = TrustStore::builtin();
        assert_eq!(t.sets().len(), 3);
        for p in Product::ALL {
            let s = t.get(p).unwrap();
            assert_eq!(s.ark.subject_cn(), Some(format!("ARK-{p}").as_str()));
            s.ark.verify_signed_by(&s.ark).unwrap();
            let ask = s.ask.as_ref().unwrap();
            assert_eq!(ask.subject_cn(), Some(format!("SEV-{p}").as_str()));
            ask.verify_signed_by(&s.ark).unwrap();
            let asvk = s.asvk.as_ref().unwrap();
            assert_eq!(asvk.subject_cn(), Some(format!("SEV-VLEK-{p}").as_str()));
            asvk.verify_signed_by(&s.ark).unwrap();
            assert!(s.ark.is_ca() && ask.is_ca());
            assert!(ask.signature_is_pss_sha384());
            // An ASK does not verify under another product's ARK.
            let other = t.get(if p == Product::Milan {
                Product::Genoa
            } else {
                Product::Milan
            });
            assert!(ask.verify_signed_by(&other.unwrap().ark).is_err());
        }
        assert_eq!(t.kind(), TrustKind::BuiltinAmd);
    }

    #[test]
    fn custom_needs_an_ark() {
        let t = TrustStore::builtin();
        let s = t.get(Product::Genoa).unwrap();
        assert!(matches!(
            TrustStore::custom(vec![s.ask.clone().unwrap()], None),
            Err(TrustError::NoArk(_))
        ));
        let c = TrustStore::custom(vec![s.ark.clone(), s.ask.clone().unwrap()], None).unwrap();
        assert_eq!(c.kind(), TrustKind::Custom);
        assert!(c.get(Product::Genoa).unwrap().ask.is_some());
        assert!(c.get(Product::Milan).is_none());
    }
}
