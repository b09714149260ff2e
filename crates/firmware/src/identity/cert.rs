//! X.509 certificates and CRLs in AMD's exact shape (snp-attestation.md §6.1, §6.2):
//! the location name, RSASSA-PSS/SHA-384/salt-48 signature parameters byte-for-byte as
//! AMD encodes them, the serial and validity conventions, and the VCEK/VLEK extensions
//! under 1.3.6.1.4.1.3704.1 with AMD's encodings (INTEGER SPLs, IA5String product name,
//! raw hwID bytes without an ASN.1 tag).
//!
//! Structures are composed with the `x509-cert`/`der` crates; signatures come from
//! `softsev_crypto::rsa_sign`.

use super::IdentityError;
use der::asn1::{Any, BitString, Ia5String, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Tag};
use softsev_abi::{Product, TcbVersion};
use softsev_crypto::ecdsa::P384PublicKey;
use softsev_crypto::rng::Rng;
use softsev_crypto::rsa_sign::RsaPrivateKey;
use std::time::Duration;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, CrlNumber,
    SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

/// rsassaPss (RFC 4055).
pub const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// rsaEncryption.
pub const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// AMD VCEK/VLEK extension: structVersion (INTEGER).
pub const OID_STRUCT_VERSION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
/// AMD extension: productName (IA5String).
pub const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
/// AMD extension: blSPL.
pub const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// AMD extension: teeSPL.
pub const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// AMD extension: snpSPL.
pub const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// AMD extension: spl_4 (reserved, 0; absent on Turin).
pub const OID_SPL_4: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.4");
/// AMD extension: spl_5 (reserved, 0).
pub const OID_SPL_5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.5");
/// AMD extension: spl_6 (reserved, 0).
pub const OID_SPL_6: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.6");
/// AMD extension: spl_7 (reserved, 0).
pub const OID_SPL_7: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.7");
/// AMD extension: ucodeSPL.
pub const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// AMD extension: fmcSPL (Turin and later).
pub const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// AMD extension: hwID (raw CHIP_ID bytes; VCEK only).
pub const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
/// AMD extension: csp_id (IA5String; VLEK only).
pub const OID_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

/// RSASSA-PSS-params {sha384, mgf1(sha384), salt 48, trailerField 1}: AMD writes the
/// default trailer explicitly in its ARK/ASK/ASVK and older (Milan) VCEKs.
const PSS_PARAMS_WITH_TRAILER: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];
/// Length of the RSASSA-PSS-params without the explicit trailer (Genoa/Turin VCEKs,
/// CRLs): the same bytes minus the last five, with the outer length 0x34.
const PSS_PARAMS_NO_TRAILER_LEN: usize = 54;

/// How the RSASSA-PSS parameters are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PssStyle {
    /// With the explicit `[3] INTEGER 1` trailer field (ARK, ASK, ASVK, Milan VCEK).
    ExplicitTrailer,
    /// DER-canonical, trailer omitted (Genoa/Turin VCEK, CRLs).
    Canonical,
}

fn pss_params_bytes(style: PssStyle) -> Vec<u8> {
    match style {
        PssStyle::ExplicitTrailer => PSS_PARAMS_WITH_TRAILER.to_vec(),
        PssStyle::Canonical => {
            let mut v = PSS_PARAMS_WITH_TRAILER[..PSS_PARAMS_NO_TRAILER_LEN].to_vec();
            if let Some(len) = v.get_mut(1) {
                *len = 0x34;
            }
            v
        }
    }
}

/// The AlgorithmIdentifier AMD uses for every signature in its PKI.
pub fn pss_algorithm(style: PssStyle) -> Result<AlgorithmIdentifierOwned, IdentityError> {
    Ok(AlgorithmIdentifierOwned {
        oid: OID_RSASSA_PSS,
        parameters: Some(Any::from_der(&pss_params_bytes(style))?),
    })
}

const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_CRL_DP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
const OID_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const OID_L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const OID_ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// AMD's distinguished name with common name `cn`, RDNs in AMD's order:
/// OU=Engineering, C=US (PrintableString), L=Santa Clara, ST=CA,
/// O=Advanced Micro Devices, CN=`cn` (UTF8String except C).
pub fn amd_name(cn: &str) -> Result<Name, IdentityError> {
    let parts: [(ObjectIdentifier, Tag, &str); 6] = [
        (OID_OU, Tag::Utf8String, "Engineering"),
        (OID_C, Tag::PrintableString, "US"),
        (OID_L, Tag::Utf8String, "Santa Clara"),
        (OID_ST, Tag::Utf8String, "CA"),
        (OID_O, Tag::Utf8String, "Advanced Micro Devices"),
        (OID_CN, Tag::Utf8String, cn),
    ];
    let mut rdns = Vec::with_capacity(parts.len());
    for (oid, tag, value) in parts {
        let atv = AttributeTypeAndValue {
            oid,
            value: Any::new(tag, value.as_bytes())?,
        };
        rdns.push(RelativeDistinguishedName(SetOfVec::try_from(vec![atv])?));
    }
    Ok(RdnSequence(rdns))
}

/// Which AMD key a certificate is for; fixes its CN, serial, extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmdKeyRole {
    /// AMD Root Key (self-signed).
    Ark,
    /// AMD SEV Key, signs VCEKs.
    Ask,
    /// AMD SEV VLEK Key, signs VLEKs.
    Asvk,
}

impl AmdKeyRole {
    /// Certificate common name, e.g. `ARK-Milan`, `SEV-Genoa`, `SEV-VLEK-Turin`.
    pub fn common_name(self, product: Product) -> String {
        match self {
            AmdKeyRole::Ark => format!("ARK-{}", product.name()),
            AmdKeyRole::Ask => format!("SEV-{}", product.name()),
            AmdKeyRole::Asvk => format!("SEV-VLEK-{}", product.name()),
        }
    }

    /// Serial number bytes as AMD assigns them (0x010000 ARK-Milan, 0x020002
    /// SEV-Genoa, 0x030101 SEV-VLEK-Turin, ...).
    pub fn serial(self, product: Product) -> [u8; 3] {
        let line = match product {
            Product::Milan => 1,
            Product::Genoa => 2,
            Product::Turin => 3,
        };
        match (self, product) {
            (AmdKeyRole::Ark, _) => [line, 0, 0],
            (AmdKeyRole::Ask, Product::Genoa) => [line, 0, 2],
            (AmdKeyRole::Ask, _) => [line, 0, 1],
            (AmdKeyRole::Asvk, _) => [line, 1, 1],
        }
    }

    /// CRL distribution point URL (`vcek` tree for ARK/ASK, `vlek` for ASVK).
    pub fn crl_url(self, product: Product) -> String {
        let tree = match self {
            AmdKeyRole::Asvk => "vlek",
            _ => "vcek",
        };
        format!("https://kdsintf.amd.com/{tree}/v1/{}/crl", product.name())
    }

    /// Start of validity, copied from AMD's genuine certificate of the same role and
    /// product (seconds since the Unix epoch); validity is 25 years.
    pub fn not_before_unix(self, product: Product) -> u64 {
        match (self, product) {
            (AmdKeyRole::Ark, Product::Milan) => 1_603_387_385, // 2020-10-22 17:23:05
            (_, Product::Milan) => 1_603_391_060,               // 2020-10-22 18:24:20
            (AmdKeyRole::Ark, Product::Genoa) => 1_643_211_277, // 2022-01-26 15:34:37
            (_, Product::Genoa) => 1_667_223_228,               // 2022-10-31 13:33:48
            (AmdKeyRole::Ark, Product::Turin) => 1_684_180_992, // 2023-05-15 20:03:12
            (_, Product::Turin) => 1_684_182_321,               // 2023-05-15 20:25:21
        }
    }
}

/// Validity of ARK/ASK/ASVK certificates, in calendar years.
const CA_YEARS: i64 = 25;
/// Validity of VCEK/VLEK certificates, in calendar years.
const VEK_YEARS: i64 = 7;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `secs` moved `years` calendar years later, same month, day and time of day (as AMD
/// dates its certificates; 29 February becomes 28 February in a common year).
fn add_years(secs: u64, years: i64) -> u64 {
    let s = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (days, tod) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let ny = y + years;
    let leap = (ny % 4 == 0 && ny % 100 != 0) || ny % 400 == 0;
    let nd = if m == 2 && d == 29 && !leap { 28 } else { d };
    u64::try_from(days_from_civil(ny, m, nd) * 86_400 + tod).unwrap_or(u64::MAX)
}

fn utc(secs: u64) -> Result<Time, IdentityError> {
    Ok(Time::UtcTime(UtcTime::from_unix_duration(
        Duration::from_secs(secs),
    )?))
}

fn validity(not_before: u64, years: i64) -> Result<Validity, IdentityError> {
    Ok(Validity {
        not_before: utc(not_before)?,
        not_after: utc(add_years(not_before, years))?,
    })
}

fn ext(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Result<Extension, IdentityError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value)?,
    })
}

/// Key identifier: the leftmost 160 bits of SHA-256 of the subjectPublicKey bits
/// (RFC 7093 §2 method 1).
pub fn key_identifier(public_key_bits: &[u8]) -> [u8; 20] {
    let h = softsev_crypto::hash::sha256(public_key_bits);
    let mut id = [0u8; 20];
    id.copy_from_slice(&h[..20]);
    id
}

fn rsa_spki(pkcs1: &[u8]) -> Result<SubjectPublicKeyInfoOwned, IdentityError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        subject_public_key: BitString::from_bytes(pkcs1)?,
    })
}

/// Sign a TBS with `key` and wrap it into a certificate. The PSS salt comes from a
/// ChaCha stream keyed by the TBS digest, so equal inputs give equal bytes.
fn sign_tbs(
    tbs: TbsCertificate,
    alg: AlgorithmIdentifierOwned,
    key: &RsaPrivateKey,
) -> Result<Vec<u8>, IdentityError> {
    let tbs_der = tbs.to_der()?;
    let sig = sign_bytes(key, &tbs_der)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig)?,
    };
    Ok(cert.to_der()?)
}

fn sign_bytes(key: &RsaPrivateKey, msg: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let digest = softsev_crypto::hash::sha384(msg);
    let mut rng = Rng::seeded(&digest, "softsev amd pss salt");
    Ok(key.sign_pss_sha384(&mut rng, msg)?)
}

/// Build and sign an ARK (self-signed), ASK or ASVK certificate (signed by `ark_key`).
/// `subject_key` is the certified key; for the ARK it is also the signer.
pub fn amd_ca_cert(
    role: AmdKeyRole,
    product: Product,
    subject_key: &RsaPrivateKey,
    ark_key: &RsaPrivateKey,
) -> Result<Vec<u8>, IdentityError> {
    let pub_der = subject_key.public_pkcs1_der()?;
    let ski = key_identifier(&pub_der);
    let ark_ski = key_identifier(&ark_key.public_pkcs1_der()?);
    let alg = pss_algorithm(PssStyle::ExplicitTrailer)?;
    let crl_dp = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![
            GeneralName::UniformResourceIdentifier(Ia5String::new(&role.crl_url(product))?),
        ])),
        reasons: None,
        crl_issuer: None,
    }])
    .to_der()?;
    let ski_der = SubjectKeyIdentifier(OctetString::new(ski.to_vec())?).to_der()?;
    let extensions = match role {
        // AMD's ARK order: KeyUsage, SKI, BasicConstraints, CRL DP.
        AmdKeyRole::Ark => vec![
            ext(
                OID_KEY_USAGE,
                true,
                // {keyCertSign, cRLSign}: 1 unused bit.
                BitString::new(1, [0x06])?.to_der()?,
            )?,
            ext(OID_SKI, false, ski_der)?,
            ext(
                OID_BASIC_CONSTRAINTS,
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                }
                .to_der()?,
            )?,
            ext(OID_CRL_DP, false, crl_dp)?,
        ],
        // AMD's ASK/ASVK order: SKI, AKI, BasicConstraints(pathlen 0), KeyUsage, CRL DP.
        AmdKeyRole::Ask | AmdKeyRole::Asvk => vec![
            ext(OID_SKI, false, ski_der)?,
            ext(
                OID_AKI,
                false,
                AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(ark_ski.to_vec())?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                }
                .to_der()?,
            )?,
            ext(
                OID_BASIC_CONSTRAINTS,
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                }
                .to_der()?,
            )?,
            ext(
                OID_KEY_USAGE,
                true,
                // BIT STRING {keyCertSign} with 1 unused bit (`03 02 01 04`), exactly as
                // AMD writes it, although minimal DER would say 2.
                BitString::new(1, [0x04])?.to_der()?,
            )?,
            ext(OID_CRL_DP, false, crl_dp)?,
        ],
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&role.serial(product))?,
        signature: alg.clone(),
        issuer: amd_name(&AmdKeyRole::Ark.common_name(product))?,
        validity: validity(role.not_before_unix(product), CA_YEARS)?,
        subject: amd_name(&role.common_name(product))?,
        subject_public_key_info: rsa_spki(&pub_der)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_tbs(tbs, alg, ark_key)
}

/// What a versioned endorsement key certificate certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VekKind {
    /// A VCEK: bound to the chip by hwID (the significant CHIP_ID bytes).
    Vcek {
        /// CHIP_ID (64 bytes; only `product.chip_id_len()` of them go in hwID).
        chip_id: [u8; 64],
    },
    /// A VLEK: bound to a cloud provider by csp_id.
    Vlek {
        /// The cloud service provider's identifier.
        csp_id: String,
    },
}

/// The productName AMD's KDS writes into VCEKs: `Milan-B0` (also on stepping-1 parts),
/// `Genoa`, `Turin` (recent issuance); VLEKs carry the product line only.
pub fn vcek_product_name(product: Product) -> &'static str {
    match product {
        Product::Milan => "Milan-B0",
        Product::Genoa => "Genoa",
        Product::Turin => "Turin",
    }
}

/// DER INTEGER of a small non-negative value, minimal (0xdb → `02 02 00 db`).
fn der_uint(v: u8) -> Vec<u8> {
    if v >= 0x80 {
        vec![0x02, 0x02, 0x00, v]
    } else {
        vec![0x02, 0x01, v]
    }
}

/// The AMD extensions of a VCEK/VLEK for `tcb`, in AMD's observed order
/// (snp-attestation.md §6.2). All non-critical.
pub fn vek_extensions(
    product: Product,
    tcb: &TcbVersion,
    kind: &VekKind,
) -> Result<Vec<Extension>, IdentityError> {
    let turin = product == Product::Turin;
    let name = match kind {
        VekKind::Vcek { .. } => vcek_product_name(product),
        VekKind::Vlek { .. } => product.name(),
    };
    let ia5 = |s: &str| -> Result<Vec<u8>, IdentityError> { Ok(Ia5String::new(s)?.to_der()?) };
    let mut v = vec![
        ext(OID_STRUCT_VERSION, false, der_uint(u8::from(turin)))?,
        ext(OID_PRODUCT_NAME, false, ia5(name)?)?,
    ];
    if turin {
        v.push(ext(OID_FMC_SPL, false, der_uint(tcb.fmc))?);
        v.push(ext(OID_BL_SPL, false, der_uint(tcb.bootloader))?);
        v.push(ext(OID_TEE_SPL, false, der_uint(tcb.tee))?);
        v.push(ext(OID_SNP_SPL, false, der_uint(tcb.snp))?);
        for oid in [OID_SPL_5, OID_SPL_6, OID_SPL_7] {
            v.push(ext(oid, false, der_uint(0))?);
        }
    } else {
        v.push(ext(OID_BL_SPL, false, der_uint(tcb.bootloader))?);
        v.push(ext(OID_TEE_SPL, false, der_uint(tcb.tee))?);
        for oid in [OID_SPL_4, OID_SPL_5, OID_SPL_6, OID_SPL_7] {
            v.push(ext(oid, false, der_uint(0))?);
        }
        v.push(ext(OID_SNP_SPL, false, der_uint(tcb.snp))?);
    }
    v.push(ext(OID_UCODE_SPL, false, der_uint(tcb.microcode))?);
    match kind {
        VekKind::Vcek { chip_id } => {
            let hw = chip_id.get(..product.chip_id_len()).unwrap_or(&chip_id[..]);
            v.push(ext(OID_HW_ID, false, hw.to_vec())?);
        }
        VekKind::Vlek { csp_id } => v.push(ext(OID_CSP_ID, false, ia5(csp_id)?)?),
    }
    Ok(v)
}

/// Default VCEK/VLEK issuance time (2025-01-01T00:00:00Z): fixed so that certificates
/// are reproducible; valid until 2032.
pub const DEFAULT_VEK_NOT_BEFORE: u64 = 1_735_689_600;

/// Build and sign a VCEK or VLEK certificate for `public` at `tcb`, issued by the ASK
/// (VCEK) or ASVK (VLEK) whose private key is `issuer_key`.
pub fn vek_cert(
    product: Product,
    tcb: &TcbVersion,
    kind: &VekKind,
    public: &P384PublicKey,
    issuer_key: &RsaPrivateKey,
    not_before_unix: u64,
) -> Result<Vec<u8>, IdentityError> {
    let (issuer_role, cn) = match kind {
        VekKind::Vcek { .. } => (AmdKeyRole::Ask, "SEV-VCEK"),
        VekKind::Vlek { .. } => (AmdKeyRole::Asvk, "SEV-VLEK"),
    };
    // Milan VCEKs carry the explicit trailer field, newer ones do not.
    let style = match product {
        Product::Milan => PssStyle::ExplicitTrailer,
        _ => PssStyle::Canonical,
    };
    let alg = pss_algorithm(style)?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0])?,
        signature: alg.clone(),
        issuer: amd_name(&issuer_role.common_name(product))?,
        validity: validity(not_before_unix, VEK_YEARS)?,
        subject: amd_name(cn)?,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&public.to_spki_der())?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vek_extensions(product, tcb, kind)?),
    };
    sign_tbs(tbs, alg, issuer_key)
}

/// Default CRL dates: thisUpdate 2025-01-01T00:00:00Z, nextUpdate one year later.
pub const DEFAULT_CRL_THIS_UPDATE: u64 = 1_735_689_600;

/// Build and sign the ARK's CRL for `role`'s tree (`Ask` → vcek CRL, `Asvk` → vlek
/// CRL) listing `revoked` serials (as AMD's: usually none). Shape as AMD's: v2,
/// RSA-PSS without explicit trailer, issuer ARK, AKI and CRL number extensions.
pub fn crl(
    product: Product,
    ark_key: &RsaPrivateKey,
    revoked: &[[u8; 3]],
    crl_number: u8,
    this_update_unix: u64,
) -> Result<Vec<u8>, IdentityError> {
    let alg = pss_algorithm(PssStyle::Canonical)?;
    let ark_ski = key_identifier(&ark_key.public_pkcs1_der()?);
    let revoked_certificates = if revoked.is_empty() {
        None
    } else {
        let mut list = Vec::with_capacity(revoked.len());
        for serial in revoked {
            list.push(x509_cert::crl::RevokedCert {
                serial_number: SerialNumber::new(serial)?,
                revocation_date: utc(this_update_unix)?,
                crl_entry_extensions: None,
            });
        }
        Some(list)
    };
    let tbs = TbsCertList {
        version: Version::V2,
        signature: alg.clone(),
        issuer: amd_name(&AmdKeyRole::Ark.common_name(product))?,
        this_update: utc(this_update_unix)?,
        next_update: Some(utc(this_update_unix.saturating_add(365 * 86_400))?),
        revoked_certificates,
        crl_extensions: Some(vec![
            ext(
                OID_AKI,
                false,
                AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(ark_ski.to_vec())?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                }
                .to_der()?,
            )?,
            ext(
                OID_CRL_NUMBER,
                false,
                CrlNumber(der::asn1::Uint::new(&[crl_number])?).to_der()?,
            )?,
        ]),
    };
    let tbs_der = tbs.to_der()?;
    let sig = sign_bytes(ark_key, &tbs_der)?;
    let list = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig)?,
    };
    Ok(list.to_der()?)
}

/// PEM-armour DER bytes with `label` ("CERTIFICATE", "X509 CRL").
pub fn to_pem(label: &str, der_bytes: &[u8]) -> Result<String, IdentityError> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der_bytes)
        .map_err(|e| IdentityError::Pem(e.to_string()))
}

/// Parse PEM back into DER (label must match).
pub fn from_pem(label: &str, pem: &str) -> Result<Vec<u8>, IdentityError> {
    let (got, der_bytes) =
        der::pem::decode_vec(pem.as_bytes()).map_err(|e| IdentityError::Pem(e.to_string()))?;
    if got != label {
        return Err(IdentityError::PemLabel {
            expected: label.to_string(),
            got: got.to_string(),
        });
    }
    Ok(der_bytes)
}

/// Verify that certificate `cert_der` was signed (RSA-PSS-SHA384) by the RSA key in
/// `issuer_der`'s SubjectPublicKeyInfo. Used by tests and by the chain self-check.
pub fn verify_signed_by(cert_der: &[u8], issuer_der: &[u8]) -> Result<(), IdentityError> {
    let cert = Certificate::from_der(cert_der)?;
    let issuer = Certificate::from_der(issuer_der)?;
    let tbs = cert.tbs_certificate.to_der()?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or(IdentityError::Malformed(
            "issuer public key has unused bits",
        ))?;
    let sig = cert
        .signature
        .as_bytes()
        .ok_or(IdentityError::Malformed("signature has unused bits"))?;
    softsev_crypto::rsa::verify_pss_sha384(key, &tbs, sig)?;
    Ok(())
}

/// Verify that CRL `crl_der` was signed by the RSA key certified in `issuer_der`.
pub fn verify_crl_signed_by(crl_der: &[u8], issuer_der: &[u8]) -> Result<(), IdentityError> {
    let list = CertificateList::from_der(crl_der)?;
    let issuer = Certificate::from_der(issuer_der)?;
    let tbs = list.tbs_cert_list.to_der()?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or(IdentityError::Malformed(
            "issuer public key has unused bits",
        ))?;
    let sig = list
        .signature
        .as_bytes()
        .ok_or(IdentityError::Malformed("CRL signature has unused bits"))?;
    softsev_crypto::rsa::verify_pss_sha384(key, &tbs, sig)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_params_canonical_is_prefix_with_fixed_length() {
        let canon = pss_params_bytes(PssStyle::Canonical);
        assert_eq!(canon.len(), 54);
        assert_eq!(canon[1] as usize, canon.len() - 2);
        let full = pss_params_bytes(PssStyle::ExplicitTrailer);
        assert_eq!(full[1] as usize, full.len() - 2);
        assert!(pss_algorithm(PssStyle::Canonical).is_ok());
    }

    #[test]
    fn calendar_years() {
        // 2023-04-03 19:23:43 -> 2030-04-03 (two leap days on the way).
        assert_eq!(add_years(1_680_549_823, 7) - 1_680_549_823, 2557 * 86_400);
        // 2024-11-06 -> 2031-11-06 (one leap day).
        assert_eq!(add_years(1_730_927_640, 7) - 1_730_927_640, 2556 * 86_400);
        // 2024-02-29 -> 2025-02-28.
        assert_eq!(add_years(1_709_164_800, 1), 1_709_164_800 + 365 * 86_400);
        for z in [-1000i64, 0, 59, 10_000, 20_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn der_uint_is_minimal() {
        assert_eq!(der_uint(0), [2, 1, 0]);
        assert_eq!(der_uint(0x7f), [2, 1, 0x7f]);
        assert_eq!(der_uint(0xdb), [2, 2, 0, 0xdb]);
    }

    #[test]
    fn names_serials_and_urls() {
        assert_eq!(
            AmdKeyRole::Asvk.common_name(Product::Turin),
            "SEV-VLEK-Turin"
        );
        assert_eq!(AmdKeyRole::Ask.serial(Product::Genoa), [2, 0, 2]);
        assert_eq!(AmdKeyRole::Asvk.serial(Product::Milan), [1, 1, 1]);
        assert_eq!(
            AmdKeyRole::Asvk.crl_url(Product::Genoa),
            "https://kdsintf.amd.com/vlek/v1/Genoa/crl"
        );
        let n = amd_name("ARK-Milan").unwrap();
        assert_eq!(
            n.to_string(),
            "CN=ARK-Milan,O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering"
        );
    }
}
