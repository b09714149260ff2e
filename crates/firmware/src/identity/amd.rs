//! The simulated AMD side of the PKI: ARK, ASK and ASVK (RSA-4096, e = 65537) for a
//! product, their certificates and CRLs.
//!
//! Like real AMD, all softsev chips of one product share one root: by default the keys
//! are generated deterministically from [`DEFAULT_ROOT_SEED`], so every softsev
//! platform (and every run) has the same ARK-Milan, and a verifier given
//! `ask_ark_<product>.pem` once accepts every simulated chip. A custom root seed gives a
//! separate PKI. RSA-4096 key generation takes seconds, so roots are cached per
//! (seed, product) for the life of the process, and the ASVK is generated only when a
//! VLEK is first needed.

use super::IdentityError;
use super::cert::{self, AmdKeyRole};
use softsev_abi::Product;
use softsev_crypto::rng::Rng;
use softsev_crypto::rsa_sign::RsaPrivateKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The seed all softsev AMD roots come from unless the user asks for another.
pub const DEFAULT_ROOT_SEED: &[u8] = b"softsev simulated AMD root v1";

/// RSA modulus size of ARK/ASK/ASVK, as AMD's.
pub const AMD_RSA_BITS: usize = 4096;

/// A product's AMD root of trust: keys and certificates.
pub struct AmdRoot {
    product: Product,
    seed: Vec<u8>,
    ark: RsaPrivateKey,
    ask: RsaPrivateKey,
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_crl_der: Vec<u8>,
    asvk: OnceLock<Result<AsvkPart, IdentityError>>,
    legacy: OnceLock<Result<super::sev::LegacyCa, IdentityError>>,
}

struct AsvkPart {
    key: RsaPrivateKey,
    der: Vec<u8>,
    crl_der: Vec<u8>,
}

impl std::fmt::Debug for AmdRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmdRoot")
            .field("product", &self.product)
            .finish_non_exhaustive()
    }
}

type RootCell = Arc<OnceLock<Result<Arc<AmdRoot>, IdentityError>>>;
type RootCache = Mutex<HashMap<(Vec<u8>, Product), RootCell>>;
/// PKCS#1 DER of a private key, zeroized on drop.
pub type SecretDer = zeroize::Zeroizing<Vec<u8>>;

fn cache() -> &'static RootCache {
    static CACHE: OnceLock<RootCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Generate the RSA-4096 key of `role` for `product` from `seed` (deterministic; takes
/// seconds: about 9 s in the test profile, see docs/firmware-identity.md).
pub fn generate_role_key(
    seed: &[u8],
    product: Product,
    role: AmdKeyRole,
) -> Result<RsaPrivateKey, IdentityError> {
    let label = format!(
        "softsev amd {} {:?} rsa-{AMD_RSA_BITS}",
        product.name(),
        role
    );
    let mut rng = Rng::seeded(seed, &label);
    Ok(RsaPrivateKey::generate(&mut rng, AMD_RSA_BITS)?)
}

/// PKCS#1 DER of the keys [`generate_role_key`] makes from [`DEFAULT_ROOT_SEED`],
/// stored in the source tree so that a process does not spend seconds per product
/// generating them; `tests/identity_roots.rs` re-derives them and checks they match.
/// These are simulation keys: anyone can derive them from the public seed.
pub fn embedded_default_key_der(product: Product, role: AmdKeyRole) -> &'static [u8] {
    match (product, role) {
        (Product::Milan, AmdKeyRole::Ark) => include_bytes!("roots/milan-ark.der"),
        (Product::Milan, AmdKeyRole::Ask) => include_bytes!("roots/milan-ask.der"),
        (Product::Milan, AmdKeyRole::Asvk) => include_bytes!("roots/milan-asvk.der"),
        (Product::Genoa, AmdKeyRole::Ark) => include_bytes!("roots/genoa-ark.der"),
        (Product::Genoa, AmdKeyRole::Ask) => include_bytes!("roots/genoa-ask.der"),
        (Product::Genoa, AmdKeyRole::Asvk) => include_bytes!("roots/genoa-asvk.der"),
        (Product::Turin, AmdKeyRole::Ark) => include_bytes!("roots/turin-ark.der"),
        (Product::Turin, AmdKeyRole::Ask) => include_bytes!("roots/turin-ask.der"),
        (Product::Turin, AmdKeyRole::Asvk) => include_bytes!("roots/turin-asvk.der"),
    }
}

fn role_key(
    seed: &[u8],
    product: Product,
    role: AmdKeyRole,
) -> Result<RsaPrivateKey, IdentityError> {
    if seed == DEFAULT_ROOT_SEED {
        Ok(RsaPrivateKey::from_pkcs1_der(embedded_default_key_der(
            product, role,
        ))?)
    } else {
        generate_role_key(seed, product, role)
    }
}

impl AmdRoot {
    /// The shared softsev root of `product` (from [`DEFAULT_ROOT_SEED`]), cached.
    pub fn default_for(product: Product) -> Result<Arc<AmdRoot>, IdentityError> {
        Self::cached(product, DEFAULT_ROOT_SEED)
    }

    /// The root of `product` generated from `seed`, cached for the process: the first
    /// call per (seed, product) generates two RSA-4096 keys (seconds); concurrent
    /// callers wait for it instead of generating twice.
    pub fn cached(product: Product, seed: &[u8]) -> Result<Arc<AmdRoot>, IdentityError> {
        let cell = {
            let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
            map.entry((seed.to_vec(), product))
                .or_insert_with(|| Arc::new(OnceLock::new()))
                .clone()
        };
        cell.get_or_init(|| Self::generate(product, seed).map(Arc::new))
            .clone()
    }

    /// Make a root without the cache (ARK and ASK now, ASVK on first use): the default
    /// seed loads the embedded keys, any other seed generates RSA-4096 keys.
    pub fn generate(product: Product, seed: &[u8]) -> Result<AmdRoot, IdentityError> {
        let ark = role_key(seed, product, AmdKeyRole::Ark)?;
        let ask = role_key(seed, product, AmdKeyRole::Ask)?;
        Self::from_keys(product, seed, ark, ask)
    }

    /// Build a root from existing ARK and ASK keys (e.g. loaded from PKCS#1 DER).
    /// `seed` is only used to derive the ASVK when it is first needed.
    pub fn from_keys(
        product: Product,
        seed: &[u8],
        ark: RsaPrivateKey,
        ask: RsaPrivateKey,
    ) -> Result<AmdRoot, IdentityError> {
        let ark_der = cert::amd_ca_cert(AmdKeyRole::Ark, product, &ark, &ark)?;
        let ask_der = cert::amd_ca_cert(AmdKeyRole::Ask, product, &ask, &ark)?;
        let vcek_crl_der = cert::crl(product, &ark, &[], 1, cert::DEFAULT_CRL_THIS_UPDATE)?;
        Ok(AmdRoot {
            product,
            seed: seed.to_vec(),
            ark,
            ask,
            ark_der,
            ask_der,
            vcek_crl_der,
            asvk: OnceLock::new(),
            legacy: OnceLock::new(),
        })
    }

    fn asvk(&self) -> Result<&AsvkPart, IdentityError> {
        self.asvk
            .get_or_init(|| {
                let key = role_key(&self.seed, self.product, AmdKeyRole::Asvk)?;
                let der = cert::amd_ca_cert(AmdKeyRole::Asvk, self.product, &key, &self.ark)?;
                let crl_der = cert::crl(
                    self.product,
                    &self.ark,
                    &[],
                    1,
                    cert::DEFAULT_CRL_THIS_UPDATE,
                )?;
                Ok(AsvkPart { key, der, crl_der })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The legacy SEV CA of this product: AMD-format ARK and ASK over the same RSA keys
    /// as [`AmdRoot::ark_der`] / [`AmdRoot::ask_der`] (sev-legacy.md §2.2), built once.
    pub fn sev_legacy_ca(&self) -> Result<&super::sev::LegacyCa, IdentityError> {
        self.legacy
            .get_or_init(|| super::sev::LegacyCa::build(self))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The ARK and ASK private keys.
    pub(crate) fn rsa_keys(&self) -> (&RsaPrivateKey, &RsaPrivateKey) {
        (&self.ark, &self.ask)
    }

    /// The product this root serves.
    pub fn product(&self) -> Product {
        self.product
    }

    /// ARK certificate (DER, self-signed).
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// ASK certificate (DER, signed by the ARK).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// ASVK certificate (DER, signed by the ARK); generates the ASVK on first use.
    pub fn asvk_der(&self) -> Result<&[u8], IdentityError> {
        Ok(&self.asvk()?.der)
    }

    /// The ARK-signed CRL of the VCEK tree (`/vcek/v1/<product>/crl`), empty.
    pub fn vcek_crl_der(&self) -> &[u8] {
        &self.vcek_crl_der
    }

    /// The ARK-signed CRL of the VLEK tree (`/vlek/v1/<product>/crl`), empty.
    pub fn vlek_crl_der(&self) -> Result<&[u8], IdentityError> {
        Ok(&self.asvk()?.crl_der)
    }

    /// A CRL listing `revoked` serials (e.g. `AmdKeyRole::Ask.serial(product)`), signed
    /// by the ARK, numbered `crl_number`.
    pub fn crl_revoking(
        &self,
        revoked: &[[u8; 3]],
        crl_number: u8,
    ) -> Result<Vec<u8>, IdentityError> {
        cert::crl(
            self.product,
            &self.ark,
            revoked,
            crl_number,
            cert::DEFAULT_CRL_THIS_UPDATE,
        )
    }

    /// The KDS `cert_chain` answer: PEM ASK then ARK (what go-sev-guest's
    /// `-product_key_path` and `trust.FromKDSCertBytes` take).
    pub fn kds_cert_chain_pem(&self) -> Result<String, IdentityError> {
        Ok(cert::to_pem("CERTIFICATE", &self.ask_der)?
            + &cert::to_pem("CERTIFICATE", &self.ark_der)?)
    }

    /// The KDS VLEK `cert_chain` answer: PEM ASVK then ARK.
    pub fn kds_vlek_cert_chain_pem(&self) -> Result<String, IdentityError> {
        Ok(cert::to_pem("CERTIFICATE", self.asvk_der()?)?
            + &cert::to_pem("CERTIFICATE", &self.ark_der)?)
    }

    /// Issue a VCEK/VLEK certificate (the KDS): VCEKs are signed by the ASK, VLEKs by
    /// the ASVK.
    pub fn issue_vek(
        &self,
        tcb: &softsev_abi::TcbVersion,
        kind: &cert::VekKind,
        public: &softsev_crypto::ecdsa::P384PublicKey,
        not_before_unix: u64,
    ) -> Result<Vec<u8>, IdentityError> {
        let issuer = match kind {
            cert::VekKind::Vcek { .. } => &self.ask,
            cert::VekKind::Vlek { .. } => &self.asvk()?.key,
        };
        cert::vek_cert(self.product, tcb, kind, public, issuer, not_before_unix)
    }

    /// Export the ARK and ASK private keys (PKCS#1 DER), e.g. to let another tool act
    /// as this simulated AMD. Secret: zeroized on drop.
    pub fn export_private_keys(&self) -> Result<(SecretDer, SecretDer), IdentityError> {
        Ok((self.ark.to_pkcs1_der()?, self.ask.to_pkcs1_der()?))
    }
}
