//! AMD SEV-SNP certificates and CRLs as a relying party reads them: ARK, ASK, ASVK
//! (RSA-4096, RSASSA-PSS SHA-384) and VCEK / VLEK (ECDSA P-384 keys, AMD extensions
//! under 1.3.6.1.4.1.3704.1). X.509 decoding is `x509-cert`'s; signatures go through
//! `softsev-crypto`. Notes: shared/spec/snp-attestation.md §6.

use der::{Decode, Encode, Reader, SliceReader};
use softsev_abi::{Product, TcbVersion};
use softsev_crypto::ecdsa::{P384PublicKey, P384Signature, P384Verifier};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::name::Name;

/// rsaEncryption.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// RSASSA-PSS.
pub const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
/// ecdsa-with-SHA384 (not used by AMD, recognised for clear errors).
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp384r1.
const OID_SECP384R1: &str = "1.3.132.0.34";
/// commonName.
const OID_CN: &str = "2.5.4.3";
/// DER of the SHA-384 OID, which the PSS parameters must name.
const SHA384_OID_DER: [u8; 11] = [
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];

/// AMD VCEK/VLEK extension OIDs (arc 1.3.6.1.4.1.3704.1).
pub mod oid {
    /// structVersion (INTEGER).
    pub const STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
    /// productName1 (IA5String).
    pub const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    /// blSPL.
    pub const BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    /// teeSPL.
    pub const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    /// snpSPL.
    pub const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    /// spl_4 .. spl_7 prefix (reserved components).
    pub const SPL_4: &str = "1.3.6.1.4.1.3704.1.3.4";
    /// spl_5.
    pub const SPL_5: &str = "1.3.6.1.4.1.3704.1.3.5";
    /// spl_6.
    pub const SPL_6: &str = "1.3.6.1.4.1.3704.1.3.6";
    /// spl_7.
    pub const SPL_7: &str = "1.3.6.1.4.1.3704.1.3.7";
    /// ucodeSPL.
    pub const UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    /// fmcSPL (Turin and later).
    pub const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    /// hwID (raw CHIP_ID bytes; VCEK only).
    pub const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
    /// csp_id (IA5String; VLEK only).
    pub const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

/// Why a certificate or CRL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not DER X.509.
    #[error("{what}: not a DER X.509 structure: {why}")]
    Der {
        /// Which object.
        what: String,
        /// The decoder's message.
        why: String,
    },
    /// PEM armour is broken.
    #[error("{what}: bad PEM: {why}")]
    Pem {
        /// Which input.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A field does not have the shape AMD certificates have.
    #[error("{what}: {why}")]
    Shape {
        /// Which certificate.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A signature does not verify.
    #[error("{what}: signature by {issuer} does not verify ({why})")]
    Signature {
        /// The signed object.
        what: String,
        /// The claimed signer.
        issuer: String,
        /// The crypto layer's message.
        why: String,
    },
}

fn der_err(what: &str, e: impl std::fmt::Display) -> CertError {
    CertError::Der {
        what: what.to_string(),
        why: e.to_string(),
    }
}

/// The raw bytes of the first element (the signed TBS part) of a DER SEQUENCE
/// `Certificate` / `CertificateList`, exactly as given (no re-encoding).
fn tbs_raw<'a>(what: &str, der_bytes: &'a [u8]) -> Result<&'a [u8], CertError> {
    let mut outer = SliceReader::new(der_bytes).map_err(|e| der_err(what, e))?;
    let header = der::Header::decode(&mut outer).map_err(|e| der_err(what, e))?;
    let body_len = usize::try_from(header.length).map_err(|e| der_err(what, e))?;
    let body = outer
        .read_slice(body_len.try_into().map_err(|e| der_err(what, e))?)
        .map_err(|e| der_err(what, e))?;
    let mut inner = SliceReader::new(body).map_err(|e| der_err(what, e))?;
    let tbs_header = der::Header::decode(&mut inner).map_err(|e| der_err(what, e))?;
    let tbs_len = usize::try_from(tbs_header.encoded_len().map_err(|e| der_err(what, e))?)
        .map_err(|e| der_err(what, e))?
        + usize::try_from(tbs_header.length).map_err(|e| der_err(what, e))?;
    body.get(..tbs_len)
        .ok_or_else(|| der_err(what, "TBS longer than the structure"))
}

/// The commonName of an X.509 name, if any.
pub fn common_name(name: &Name) -> Option<String> {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid.to_string() == OID_CN {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::Ia5StringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
            }
        }
    }
    None
}

/// The role an AMD certificate plays, from its subject CN.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub enum CertRole {
    /// AMD Root Key (`ARK-<product>`).
    Ark,
    /// AMD SEV Key (`SEV-<product>`), signs VCEKs.
    Ask,
    /// AMD SEV VLEK key (`SEV-VLEK-<product>`), signs VLEKs.
    Asvk,
    /// Versioned Chip Endorsement Key (`SEV-VCEK`).
    Vcek,
    /// Versioned Loaded Endorsement Key (`SEV-VLEK`).
    Vlek,
}

impl CertRole {
    /// The file stem snpguest uses ("ark", "ask", "asvk", "vcek", "vlek").
    pub fn file_stem(self) -> &'static str {
        match self {
            CertRole::Ark => "ark",
            CertRole::Ask => "ask",
            CertRole::Asvk => "asvk",
            CertRole::Vcek => "vcek",
            CertRole::Vlek => "vlek",
        }
    }

    /// Role and product from a subject CN (`ARK-Milan`, `SEV-Genoa`, `SEV-VLEK-Turin`,
    /// `SEV-VCEK`, `SEV-VLEK`). The product is `None` for VCEK/VLEK.
    pub fn from_cn(cn: &str) -> Option<(CertRole, Option<Product>)> {
        match cn {
            "SEV-VCEK" => return Some((CertRole::Vcek, None)),
            "SEV-VLEK" => return Some((CertRole::Vlek, None)),
            _ => {}
        }
        if let Some(p) = cn.strip_prefix("ARK-") {
            return Product::from_name(p).map(|p| (CertRole::Ark, Some(p)));
        }
        if let Some(p) = cn.strip_prefix("SEV-VLEK-") {
            return Product::from_name(p).map(|p| (CertRole::Asvk, Some(p)));
        }
        if let Some(p) = cn.strip_prefix("SEV-") {
            return Product::from_name(p).map(|p| (CertRole::Ask, Some(p)));
        }
        None
    }
}

/// The public key a certificate certifies.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// RSA, as the PKCS#1 `RSAPublicKey` DER.
    Rsa(Vec<u8>),
    /// ECDSA P-384.
    P384(P384PublicKey),
}

/// The AMD extensions of a VCEK or VLEK.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VekExtensions {
    /// structVersion (0 Milan/Genoa, 1 Turin).
    pub struct_version: Option<u64>,
    /// productName1 (`Milan-B0`, `Genoa`, `Turin`, ...).
    pub product_name: Option<String>,
    /// blSPL.
    pub bl_spl: Option<u64>,
    /// teeSPL.
    pub tee_spl: Option<u64>,
    /// snpSPL.
    pub snp_spl: Option<u64>,
    /// ucodeSPL.
    pub ucode_spl: Option<u64>,
    /// fmcSPL.
    pub fmc_spl: Option<u64>,
    /// spl_4..spl_7 that are present and non-zero (reserved components).
    pub nonzero_reserved_spl: Vec<String>,
    /// hwID bytes (CHIP_ID, or its first 8 bytes on Turin).
    #[serde(serialize_with = "crate::verdict::ser_hex_opt")]
    pub hw_id: Option<Vec<u8>>,
    /// csp_id (VLEK).
    pub csp_id: Option<String>,
}

impl VekExtensions {
    /// The product line named by productName (prefix before `-`).
    pub fn product(&self) -> Option<Product> {
        // `<Product>` or `<Product>-<stepping>` with a stepping of one capital letter and
        // digits (`Milan-B0`); anything else (`MilanX-B0`, trailing NULs) names nothing.
        let name = self.product_name.as_deref()?;
        let (line, step) = match name.split_once('-') {
            Some((l, s)) => (l, Some(s)),
            None => (name, None),
        };
        let step_ok = step.is_none_or(|s| {
            let mut b = s.bytes();
            b.next().is_some_and(|c| c.is_ascii_uppercase())
                && s.len() >= 2
                && b.all(|c| c.is_ascii_digit())
        });
        if !step_ok {
            return None;
        }
        Product::from_name(line).filter(|p| p.name() == line)
    }

    /// The stepping in productName (`Milan-B0` → 0, `Genoa-B2` → 2), if it names one.
    pub fn stepping(&self) -> Option<u8> {
        let name = self.product_name.as_deref()?;
        let (_, step) = name.split_once('-')?;
        step.get(1..)?.parse().ok()
    }

    /// The TCB the SPL extensions describe, if every needed one is present and fits a
    /// byte.
    pub fn tcb(&self, product: Product) -> Option<TcbVersion> {
        let b = |v: Option<u64>| v.and_then(|x| u8::try_from(x).ok());
        Some(TcbVersion {
            fmc: match product {
                Product::Turin => b(self.fmc_spl)?,
                _ => 0,
            },
            bootloader: b(self.bl_spl)?,
            tee: b(self.tee_spl)?,
            snp: b(self.snp_spl)?,
            microcode: b(self.ucode_spl)?,
        })
    }
}

/// A parsed certificate with the facts verification needs.
#[derive(Clone, Debug)]
pub struct AmdCert {
    der: Vec<u8>,
    tbs_range: (usize, usize),
    subject_cn: Option<String>,
    issuer_cn: Option<String>,
    serial: Vec<u8>,
    not_before: u64,
    not_after: u64,
    sig_alg: String,
    sig_params: Vec<u8>,
    signature: Vec<u8>,
    key: PublicKey,
    ext: VekExtensions,
    is_ca: bool,
}

impl AmdCert {
    /// Parse DER. `what` names the input in errors (a file name, "ARK", ...).
    pub fn from_der(what: &str, der_bytes: &[u8]) -> Result<AmdCert, CertError> {
        let cert = Certificate::from_der(der_bytes).map_err(|e| der_err(what, e))?;
        let tbs = tbs_raw(what, der_bytes)?;
        let start = tbs.as_ptr() as usize - der_bytes.as_ptr() as usize;
        let t = &cert.tbs_certificate;
        let spki = &t.subject_public_key_info;
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| shape(what, "public key BIT STRING has unused bits"))?;
        let key = match spki.algorithm.oid.to_string().as_str() {
            OID_RSA => PublicKey::Rsa(key_bits.to_vec()),
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                if curve.as_deref() != Some(OID_SECP384R1) {
                    return Err(shape(
                        what,
                        format!("EC key on curve {curve:?}, expected secp384r1"),
                    ));
                }
                let spki_der = spki.to_der().map_err(|e| der_err(what, e))?;
                PublicKey::P384(
                    P384PublicKey::from_spki_der(&spki_der)
                        .map_err(|e| shape(what, e.to_string()))?,
                )
            }
            other => return Err(shape(what, format!("public key algorithm {other}"))),
        };
        let sig_params = cert
            .signature_algorithm
            .parameters
            .as_ref()
            .map(|p| p.to_der())
            .transpose()
            .map_err(|e| der_err(what, e))?
            .unwrap_or_default();
        let mut ext = VekExtensions::default();
        let mut is_ca = false;
        for e in t.extensions.iter().flatten() {
            let id = e.extn_id.to_string();
            let v = e.extn_value.as_bytes();
            let int = || -> Result<u64, CertError> {
                u64::from_der(v).map_err(|err| shape(what, format!("extension {id}: {err}")))
            };
            let ia5 = || -> Result<String, CertError> {
                der::asn1::Ia5StringRef::from_der(v)
                    .map(|s| s.as_str().to_string())
                    .map_err(|err| shape(what, format!("extension {id}: {err}")))
            };
            match id.as_str() {
                oid::STRUCT_VERSION => ext.struct_version = Some(int()?),
                oid::PRODUCT_NAME => ext.product_name = Some(ia5()?),
                oid::BL_SPL => ext.bl_spl = Some(int()?),
                oid::TEE_SPL => ext.tee_spl = Some(int()?),
                oid::SNP_SPL => ext.snp_spl = Some(int()?),
                oid::UCODE_SPL => ext.ucode_spl = Some(int()?),
                oid::FMC_SPL => ext.fmc_spl = Some(int()?),
                oid::SPL_4 | oid::SPL_5 | oid::SPL_6 | oid::SPL_7 if int()? != 0 => {
                    ext.nonzero_reserved_spl.push(id.clone());
                }
                oid::HW_ID => {
                    // Raw bytes (AMD); some fakes wrap them in an OCTET STRING.
                    let raw = match der::asn1::OctetStringRef::from_der(v) {
                        Ok(o) if v.len() == 66 => o.as_bytes(),
                        _ => v,
                    };
                    ext.hw_id = Some(raw.to_vec());
                }
                oid::CSP_ID => ext.csp_id = Some(ia5()?),
                "2.5.29.19" => {
                    is_ca = x509_cert::ext::pkix::BasicConstraints::from_der(v)
                        .map(|b| b.ca)
                        .unwrap_or(false)
                }
                _ => {}
            }
        }
        Ok(AmdCert {
            der: der_bytes.to_vec(),
            tbs_range: (start, start + tbs.len()),
            subject_cn: common_name(&t.subject),
            issuer_cn: common_name(&t.issuer),
            serial: t.serial_number.as_bytes().to_vec(),
            not_before: t.validity.not_before.to_unix_duration().as_secs(),
            not_after: t.validity.not_after.to_unix_duration().as_secs(),
            sig_alg: cert.signature_algorithm.oid.to_string(),
            sig_params,
            signature: cert
                .signature
                .as_bytes()
                .ok_or_else(|| shape(what, "signature BIT STRING has unused bits"))?
                .to_vec(),
            key,
            ext,
            is_ca,
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// The signed TBSCertificate bytes, as given.
    pub fn tbs(&self) -> &[u8] {
        self.der
            .get(self.tbs_range.0..self.tbs_range.1)
            .unwrap_or(&[])
    }
    /// Subject CN.
    pub fn subject_cn(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }
    /// Issuer CN.
    pub fn issuer_cn(&self) -> Option<&str> {
        self.issuer_cn.as_deref()
    }
    /// Role and product line from the subject CN.
    pub fn role(&self) -> Option<(CertRole, Option<Product>)> {
        CertRole::from_cn(self.subject_cn.as_deref()?)
    }
    /// Serial number bytes (big-endian, as encoded).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }
    /// notBefore, seconds since the Unix epoch.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }
    /// notAfter, seconds since the Unix epoch.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }
    /// Whether `unix_secs` lies within [notBefore, notAfter].
    pub fn valid_at(&self, unix_secs: u64) -> bool {
        self.not_before <= unix_secs && unix_secs <= self.not_after
    }
    /// The certified public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
    /// AMD VCEK/VLEK extensions (empty for ARK/ASK/ASVK).
    pub fn extensions(&self) -> &VekExtensions {
        &self.ext
    }
    /// BasicConstraints cA.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }
    /// Signature algorithm OID (dotted).
    pub fn signature_algorithm(&self) -> &str {
        &self.sig_alg
    }
    /// Whether the signature algorithm is RSASSA-PSS whose parameters name SHA-384
    /// (AMD's only certificate signature scheme).
    pub fn signature_is_pss_sha384(&self) -> bool {
        self.sig_alg == OID_RSASSA_PSS
            && self
                .sig_params
                .windows(SHA384_OID_DER.len())
                .any(|w| w == SHA384_OID_DER)
    }
    /// A display name: the subject CN or "certificate".
    pub fn name(&self) -> &str {
        self.subject_cn.as_deref().unwrap_or("certificate")
    }

    /// Same subject key as `other` (the pinning comparison).
    pub fn same_key(&self, other: &AmdCert) -> bool {
        match (&self.key, &other.key) {
            (PublicKey::Rsa(a), PublicKey::Rsa(b)) => a == b,
            (PublicKey::P384(a), PublicKey::P384(b)) => a == b,
            _ => false,
        }
    }

    /// Verify that `issuer`'s RSA key signed this certificate with RSASSA-PSS SHA-384.
    pub fn verify_signed_by(&self, issuer: &AmdCert) -> Result<(), CertError> {
        verify_pss(
            self.name(),
            issuer,
            &self.sig_alg,
            &self.sig_params,
            self.tbs(),
            &self.signature,
        )
    }

    /// A P-384 verifier for the certified key (VCEK/VLEK).
    pub fn p384_verifier(&self) -> Result<P384Verifier, CertError> {
        match &self.key {
            PublicKey::P384(k) => k.verifier().map_err(|e| shape(self.name(), e.to_string())),
            PublicKey::Rsa(_) => Err(shape(self.name(), "key is RSA, not ECDSA P-384")),
        }
    }
}

fn shape(what: &str, why: impl Into<String>) -> CertError {
    CertError::Shape {
        what: what.to_string(),
        why: why.into(),
    }
}

fn verify_pss(
    what: &str,
    issuer: &AmdCert,
    alg: &str,
    params: &[u8],
    tbs: &[u8],
    sig: &[u8],
) -> Result<(), CertError> {
    let fail = |why: String| CertError::Signature {
        what: what.to_string(),
        issuer: issuer.name().to_string(),
        why,
    };
    if alg == OID_ECDSA_SHA384 {
        // Not AMD's scheme, but verify it properly for custom roots built that way.
        let PublicKey::P384(k) = issuer.public_key() else {
            return Err(fail(
                "ecdsa-with-SHA384 signature, issuer key is RSA".into(),
            ));
        };
        let s = P384Signature::from_der(sig).map_err(|e| fail(e.to_string()))?;
        return k.verify(tbs, &s).map_err(|e| fail(e.to_string()));
    }
    if alg != OID_RSASSA_PSS {
        return Err(fail(format!("signature algorithm {alg} is not RSASSA-PSS")));
    }
    if !params
        .windows(SHA384_OID_DER.len())
        .any(|w| w == SHA384_OID_DER)
    {
        return Err(fail("RSASSA-PSS parameters do not name SHA-384".into()));
    }
    let PublicKey::Rsa(key) = issuer.public_key() else {
        return Err(fail("issuer key is not RSA".into()));
    };
    softsev_crypto::rsa::verify_pss_sha384(key, tbs, sig).map_err(|e| fail(e.to_string()))
}

/// A parsed CRL.
#[derive(Clone, Debug)]
pub struct AmdCrl {
    der: Vec<u8>,
    tbs_range: (usize, usize),
    issuer_cn: Option<String>,
    this_update: u64,
    next_update: Option<u64>,
    revoked: Vec<Vec<u8>>,
    sig_alg: String,
    sig_params: Vec<u8>,
    signature: Vec<u8>,
}

impl AmdCrl {
    /// Parse a DER CRL.
    pub fn from_der(what: &str, der_bytes: &[u8]) -> Result<AmdCrl, CertError> {
        let list = CertificateList::from_der(der_bytes).map_err(|e| der_err(what, e))?;
        let tbs = tbs_raw(what, der_bytes)?;
        let start = tbs.as_ptr() as usize - der_bytes.as_ptr() as usize;
        let t = &list.tbs_cert_list;
        Ok(AmdCrl {
            der: der_bytes.to_vec(),
            tbs_range: (start, start + tbs.len()),
            issuer_cn: common_name(&t.issuer),
            this_update: t.this_update.to_unix_duration().as_secs(),
            next_update: t.next_update.map(|n| n.to_unix_duration().as_secs()),
            revoked: t
                .revoked_certificates
                .iter()
                .flatten()
                .map(|r| r.serial_number.as_bytes().to_vec())
                .collect(),
            sig_alg: list.signature_algorithm.oid.to_string(),
            sig_params: list
                .signature_algorithm
                .parameters
                .as_ref()
                .map(|p| p.to_der())
                .transpose()
                .map_err(|e| der_err(what, e))?
                .unwrap_or_default(),
            signature: list
                .signature
                .as_bytes()
                .ok_or_else(|| shape(what, "signature BIT STRING has unused bits"))?
                .to_vec(),
        })
    }
    /// DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// Issuer CN (`ARK-<product>`).
    pub fn issuer_cn(&self) -> Option<&str> {
        self.issuer_cn.as_deref()
    }
    /// thisUpdate (Unix seconds).
    pub fn this_update(&self) -> u64 {
        self.this_update
    }
    /// nextUpdate (Unix seconds).
    pub fn next_update(&self) -> Option<u64> {
        self.next_update
    }
    /// Whether `unix_secs` lies in [thisUpdate, nextUpdate].
    pub fn current_at(&self, unix_secs: u64) -> bool {
        self.this_update <= unix_secs && self.next_update.is_none_or(|n| unix_secs <= n)
    }
    /// Whether the certificate with this serial is listed.
    pub fn revokes(&self, cert: &AmdCert) -> bool {
        self.revoked.iter().any(|s| s == cert.serial())
    }
    /// Revoked serials.
    pub fn revoked_serials(&self) -> &[Vec<u8>] {
        &self.revoked
    }
    /// Verify the ARK signed this CRL.
    pub fn verify_signed_by(&self, issuer: &AmdCert) -> Result<(), CertError> {
        verify_pss(
            "CRL",
            issuer,
            &self.sig_alg,
            &self.sig_params,
            self.der
                .get(self.tbs_range.0..self.tbs_range.1)
                .unwrap_or(&[]),
            &self.signature,
        )
    }
}

/// Every PEM block of `text` as (label, DER). Tolerates CRLF and text around blocks.
pub fn pem_blocks(what: &str, text: &str) -> Result<Vec<(String, Vec<u8>)>, CertError> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = rest.get(begin + 11..).unwrap_or("");
        let Some(label_end) = after.find("-----") else {
            return Err(pem_err(what, "unterminated BEGIN line"));
        };
        let label = after.get(..label_end).unwrap_or("").to_string();
        let body_and_rest = after.get(label_end + 5..).unwrap_or("");
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_and_rest.find(&end_marker) else {
            return Err(pem_err(what, format!("no END line for {label}")));
        };
        let body: String = body_and_rest
            .get(..end)
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der_bytes = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| pem_err(what, format!("{label}: {e}")))?;
        out.push((label, der_bytes));
        rest = body_and_rest.get(end + end_marker.len()..).unwrap_or("");
    }
    Ok(out)
}

fn pem_err(what: &str, why: impl Into<String>) -> CertError {
    CertError::Pem {
        what: what.to_string(),
        why: why.into(),
    }
}

/// Certificates in a file's bytes: PEM (one or more CERTIFICATE blocks) or one DER.
pub fn certs_from_bytes(what: &str, bytes: &[u8]) -> Result<Vec<AmdCert>, CertError> {
    if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = std::str::from_utf8(bytes).map_err(|e| pem_err(what, e.to_string()))?;
        let blocks = pem_blocks(what, text)?;
        let certs = blocks
            .iter()
            .filter(|(l, _)| l == "CERTIFICATE")
            .enumerate()
            .map(|(i, (_, d))| AmdCert::from_der(&format!("{what}[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(pem_err(what, "no CERTIFICATE block"));
        }
        Ok(certs)
    } else {
        Ok(vec![AmdCert::from_der(what, bytes)?])
    }
}

/// A CRL from PEM (`X509 CRL`) or DER bytes.
pub fn crl_from_bytes(what: &str, bytes: &[u8]) -> Result<AmdCrl, CertError> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = std::str::from_utf8(bytes).map_err(|e| pem_err(what, e.to_string()))?;
        let blocks = pem_blocks(what, text)?;
        let (_, d) = blocks
            .iter()
            .find(|(l, _)| l == "X509 CRL")
            .ok_or_else(|| pem_err(what, "no X509 CRL block"))?;
        AmdCrl::from_der(what, d)
    } else {
        AmdCrl::from_der(what, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_cn() {
        assert_eq!(
            CertRole::from_cn("ARK-Milan"),
            Some((CertRole::Ark, Some(Product::Milan)))
        );
        assert_eq!(
            CertRole::from_cn("SEV-VLEK-Turin"),
            Some((CertRole::Asvk, Some(Product::Turin)))
        );
        assert_eq!(
            CertRole::from_cn("SEV-Genoa"),
            Some((CertRole::Ask, Some(Product::Genoa)))
        );
        assert_eq!(CertRole::from_cn("SEV-VCEK"), Some((CertRole::Vcek, None)));
        assert_eq!(CertRole::from_cn("SEV-Rome"), None);
        assert_eq!(CertRole::from_cn("x"), None);
    }

    #[test]
    fn pem_blocks_crlf_and_errors() {
        let t =
            "junk\r\n-----BEGIN CERTIFICATE-----\r\nAAEC\r\nAw==\r\n-----END CERTIFICATE-----\r\n";
        let b = pem_blocks("t", t).unwrap();
        assert_eq!(b, vec![("CERTIFICATE".to_string(), vec![0, 1, 2, 3])]);
        assert!(pem_blocks("t", "-----BEGIN X-----\nAA==\n").is_err());
        assert!(pem_blocks("t", "-----BEGIN X-----\n!!\n-----END X-----").is_err());
        assert!(certs_from_bytes("t", t.as_bytes()).is_err());
        assert!(certs_from_bytes("t", &[0x30, 0x03, 1, 2, 3]).is_err());
    }

    #[test]
    fn tbs_raw_bounds() {
        assert!(tbs_raw("x", &[]).is_err());
        assert!(tbs_raw("x", &[0x30, 0x05, 0x30, 0x09]).is_err());
        assert_eq!(
            tbs_raw("x", &[0x30, 0x04, 0x30, 0x02, 0xAA, 0xBB]).unwrap(),
            &[0x30, 0x02, 0xAA, 0xBB]
        );
    }
}
