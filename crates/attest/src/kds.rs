//! AMD Key Distribution Service: URLs for VCEK, VLEK, certificate chains and CRLs
//! (snp-attestation.md §6.3), a pluggable [`Fetcher`], and an offline cache directory.
//! No network is used by this crate; a caller that has one plugs in its own fetcher.

use crate::cert::{AmdCert, AmdCrl, CertError, certs_from_bytes, crl_from_bytes};
use softsev_abi::report::SigningKey;
use softsev_abi::{Product, TcbVersion};
use std::path::{Path, PathBuf};

/// KDS base URL.
pub const KDS_BASE: &str = "https://kdsintf.amd.com";
/// KDS base URL for VLEK requests (mTLS, port 444).
pub const KDS_VLEK_BASE: &str = "https://kdsintf.amd.com:444";

fn path_kind(signer: SigningKey) -> &'static str {
    if signer == SigningKey::VLEK {
        "vlek"
    } else {
        "vcek"
    }
}

/// `…/vcek/v1/{product}/{hwid}?[fmcSPL=F&]blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=U`, with
/// `hwid` the lowercase hex of the significant CHIP_ID bytes (8 on Turin).
pub fn vcek_url(product: Product, chip_id: &[u8], tcb: &TcbVersion) -> String {
    let hwid = hex::encode(chip_id.get(..product.chip_id_len()).unwrap_or(chip_id));
    let fmc = if product == Product::Turin {
        format!("fmcSPL={}&", tcb.fmc)
    } else {
        String::new()
    };
    format!(
        "{KDS_BASE}/vcek/v1/{product}/{hwid}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    )
}

/// `https://kdsintf.amd.com:444/vlek/v1/{product}/cert?…` (CSP-only endpoint).
pub fn vlek_url(product: Product, tcb: &TcbVersion) -> String {
    let fmc = if product == Product::Turin {
        format!("fmcSPL={}&", tcb.fmc)
    } else {
        String::new()
    };
    format!(
        "{KDS_VLEK_BASE}/vlek/v1/{product}/cert?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    )
}

/// `…/{vcek|vlek}/v1/{product}/cert_chain` (PEM: ASK or ASVK, then ARK).
pub fn cert_chain_url(product: Product, signer: SigningKey) -> String {
    format!("{KDS_BASE}/{}/v1/{product}/cert_chain", path_kind(signer))
}

/// `…/{vcek|vlek}/v1/{product}/crl` (DER, signed by the ARK).
pub fn crl_url(product: Product, signer: SigningKey) -> String {
    format!("{KDS_BASE}/{}/v1/{product}/crl", path_kind(signer))
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not available (no network, not cached).
    #[error("{url}: not available ({why})")]
    Unavailable {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The bytes do not parse.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Cache I/O failed.
    #[error("cache {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
}

/// Something that turns a KDS URL into bytes (an HTTP client, a cache, a test map).
pub trait Fetcher: Send + Sync {
    /// Fetch `url`.
    fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError>;
}

/// A fetcher that has no network: every fetch fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct Offline;

impl Fetcher for Offline {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        Err(FetchError::Unavailable {
            url: url.to_string(),
            why: "offline (no fetcher configured)".into(),
        })
    }
}

/// An offline cache directory: one file per URL, named by [`CacheDir::file_name`].
/// On a miss it asks `inner` and stores what it gets.
#[derive(Clone, Debug)]
pub struct CacheDir<F = Offline> {
    dir: PathBuf,
    inner: F,
}

impl CacheDir<Offline> {
    /// A read-only cache (misses fail).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CacheDir {
            dir: dir.into(),
            inner: Offline,
        }
    }
}

impl<F: Fetcher> CacheDir<F> {
    /// A cache in front of `inner`.
    pub fn with_fetcher(dir: impl Into<PathBuf>, inner: F) -> Self {
        CacheDir {
            dir: dir.into(),
            inner,
        }
    }

    /// The cache file name of a URL: scheme dropped, every character outside
    /// `[A-Za-z0-9._-]` replaced by `_`.
    pub fn file_name(url: &str) -> String {
        let tail = url.split_once("://").map_or(url, |(_, t)| t);
        tail.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The cache path of a URL.
    pub fn path(&self, url: &str) -> PathBuf {
        self.dir.join(Self::file_name(url))
    }

    /// Store bytes for a URL.
    pub fn store(&self, url: &str, bytes: &[u8]) -> Result<(), FetchError> {
        let p = self.path(url);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&p, bytes))
            .map_err(|source| FetchError::Io {
                path: p.display().to_string(),
                source,
            })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl<F: Fetcher> Fetcher for CacheDir<F> {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let p = self.path(url);
        match crate::input::read_bounded(&p, crate::input::MAX_CERT_FILE, "a KDS cache file") {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let b = self
                    .inner
                    .fetch(url)
                    .map_err(|inner| FetchError::Unavailable {
                        url: url.to_string(),
                        why: format!("not in cache {} and {inner}", self.dir.display()),
                    })?;
                self.store(url, &b)?;
                Ok(b)
            }
            Err(source) => Err(FetchError::Io {
                path: p.display().to_string(),
                source,
            }),
        }
    }
}

/// Typed KDS requests over a fetcher.
#[derive(Clone, Debug)]
pub struct Kds<F> {
    fetcher: F,
}

impl<F: Fetcher> Kds<F> {
    /// Over `fetcher`.
    pub fn new(fetcher: F) -> Self {
        Kds { fetcher }
    }
    /// The VCEK for a chip and REPORTED_TCB.
    pub fn vcek(
        &self,
        product: Product,
        chip_id: &[u8],
        tcb: &TcbVersion,
    ) -> Result<AmdCert, FetchError> {
        let url = vcek_url(product, chip_id, tcb);
        let b = self.fetcher.fetch(&url)?;
        Ok(AmdCert::from_der(&url, &b)?)
    }
    /// The chain bundle (ASK or ASVK, then ARK).
    pub fn cert_chain(
        &self,
        product: Product,
        signer: SigningKey,
    ) -> Result<Vec<AmdCert>, FetchError> {
        let url = cert_chain_url(product, signer);
        let b = self.fetcher.fetch(&url)?;
        Ok(certs_from_bytes(&url, &b)?)
    }
    /// The CRL.
    pub fn crl(&self, product: Product, signer: SigningKey) -> Result<AmdCrl, FetchError> {
        let url = crl_url(product, signer);
        let b = self.fetcher.fetch(&url)?;
        Ok(crl_from_bytes(&url, &b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let chip = hex::decode("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d").unwrap();
        let t = TcbVersion {
            fmc: 0,
            bootloader: 2,
            tee: 0,
            snp: 5,
            microcode: 68,
        };
        assert_eq!(
            vcek_url(Product::Milan, &chip, &t),
            "https://kdsintf.amd.com/vcek/v1/Milan/3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"
        );
        let mut turin_chip = [0u8; 64];
        turin_chip[..8].copy_from_slice(&[0x3b, 0x42, 0x09, 0x2f, 0x69, 0xc6, 0x56, 0xd3]);
        let tt = TcbVersion {
            fmc: 0,
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71,
        };
        assert_eq!(
            vcek_url(Product::Turin, &turin_chip, &tt),
            "https://kdsintf.amd.com/vcek/v1/Turin/3b42092f69c656d3?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71"
        );
        assert_eq!(
            cert_chain_url(Product::Genoa, SigningKey::VLEK),
            "https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain"
        );
        assert_eq!(
            crl_url(Product::Milan, SigningKey::VCEK),
            "https://kdsintf.amd.com/vcek/v1/Milan/crl"
        );
        assert!(
            vlek_url(Product::Milan, &t)
                .starts_with("https://kdsintf.amd.com:444/vlek/v1/Milan/cert?blSPL=2")
        );
    }

    struct Map(Vec<(String, Vec<u8>)>);
    impl Fetcher for Map {
        fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
            self.0
                .iter()
                .find(|(u, _)| u == url)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| FetchError::Unavailable {
                    url: url.into(),
                    why: "absent".into(),
                })
        }
    }

    #[test]
    fn cache_dir_reads_stores_and_fails_offline() {
        let d = tempfile::tempdir().unwrap();
        let url = crl_url(Product::Milan, SigningKey::VCEK);
        assert_eq!(
            CacheDir::<Offline>::file_name(&url),
            "kdsintf.amd.com_vcek_v1_Milan_crl"
        );
        let offline = CacheDir::new(d.path());
        assert!(matches!(
            offline.fetch(&url),
            Err(FetchError::Unavailable { .. })
        ));
        let cached = CacheDir::with_fetcher(d.path(), Map(vec![(url.clone(), vec![1, 2, 3])]));
        assert_eq!(cached.fetch(&url).unwrap(), vec![1, 2, 3]);
        // Now the offline cache has it.
        assert_eq!(offline.fetch(&url).unwrap(), vec![1, 2, 3]);
        let kds = Kds::new(offline);
        assert!(matches!(
            kds.crl(Product::Milan, SigningKey::VCEK),
            Err(FetchError::Cert(_))
        ));
        assert!(kds.cert_chain(Product::Milan, SigningKey::VCEK).is_err());
    }
}
