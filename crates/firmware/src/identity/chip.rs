//! A simulated SNP-capable chip: product personality, CHIP_ID, chip-unique secret, and
//! the versioned endorsement keys derived from them.
//!
//! **VCEK derivation.** AMD's exact KDF is not public. We keep the properties that are
//! (snp-attestation.md §4): a per-component "hash stick" — for component `c` at SVN
//! `s`, `stick_c(s) = SHA-384^(255−s)(top_c)` with `top_c = KDF(secret, "softsev hash
//! stick", c)` — so a newer TCB's stick yields every older one (`stick_c(s−1) =
//! SHA-384(stick_c(s))`) but not the reverse; the sticks, chained in TCB order, feed
//! `KDF("sev-versioned-chip-endorsement-key")` (NIST SP 800-108 counter mode,
//! HMAC-SHA-384) whose 64 bytes become the P-384 key by FIPS 186-5 A.4.1 reduction. The
//! result is deterministic per (chip, TCB) and cached.

use super::IdentityError;
use super::amd::AmdRoot;
use super::cert::{self, VekKind};
use super::table::{CertTable, CertTableGuid};
use softsev_abi::{Product, RawTcb, TcbVersion};
use softsev_crypto::aead::{Aes256Gcm, NONCE_LEN, TAG_LEN};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::hash::{SHA384_LEN, sha384};
use softsev_crypto::kdf;
use softsev_crypto::rng::Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;

/// A VCEK: the chip's P-384 key for one TCB, and its certificate once issued.
pub struct Vcek {
    tcb: TcbVersion,
    key: P384SigningKey,
    keyreq_root: Zeroizing<[u8; 48]>,
    cert: OnceLock<Result<Vec<u8>, IdentityError>>,
}

impl std::fmt::Debug for Vcek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcek")
            .field("tcb", &self.tcb)
            .field("public", self.key.public())
            .finish_non_exhaustive()
    }
}

impl Vcek {
    /// The TCB this key belongs to.
    pub fn tcb(&self) -> &TcbVersion {
        &self.tcb
    }
    /// The signing key (report signatures).
    pub fn signing_key(&self) -> &P384SigningKey {
        &self.key
    }
}

/// A loaded VLEK: a P-384 key AMD provisioned to a cloud provider for this chip.
pub struct Vlek {
    tcb: TcbVersion,
    csp_id: String,
    key: P384SigningKey,
    root: Zeroizing<[u8; 48]>,
    cert: Vec<u8>,
}

impl std::fmt::Debug for Vlek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vlek")
            .field("tcb", &self.tcb)
            .field("csp_id", &self.csp_id)
            .field("public", self.key.public())
            .finish_non_exhaustive()
    }
}

impl Vlek {
    /// The TCB the VLEK was issued for.
    pub fn tcb(&self) -> &TcbVersion {
        &self.tcb
    }
    /// The cloud provider id in its certificate.
    pub fn csp_id(&self) -> &str {
        &self.csp_id
    }
    /// The signing key.
    pub fn signing_key(&self) -> &P384SigningKey {
        &self.key
    }
    /// Its certificate (DER, signed by the ASVK).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }
    /// The secret MSG_KEY_REQ derives from when the VLEK is the root.
    pub(crate) fn root_secret(&self) -> &[u8; 48] {
        &self.root
    }
}

/// A VLEK as AMD's KDS hands it to a cloud provider for one chip: the 64-byte seed
/// encrypted (AES-256-GCM) under a key only that chip can derive, with the TCB, the
/// CSP id and the certificate in the clear (authenticated). Load it with
/// [`Chip::load_vlek`] (the SNP_VLEK_LOAD path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedVlek {
    /// TCB the VLEK is for.
    pub tcb: TcbVersion,
    /// Cloud provider id.
    pub csp_id: String,
    /// GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Encrypted 64-byte seed.
    pub ciphertext: [u8; 64],
    /// GCM tag.
    pub tag: [u8; TAG_LEN],
    /// The VLEK certificate (DER).
    pub cert: Vec<u8>,
}

/// Certificates from the ARK to one versioned endorsement key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertChain {
    /// ARK (DER).
    pub ark: Vec<u8>,
    /// ASK (VCEK chain) or ASVK (VLEK chain), DER.
    pub ask: Vec<u8>,
    /// VCEK or VLEK, DER.
    pub vek: Vec<u8>,
    /// Whether `vek` is a VLEK (then `ask` is the ASVK).
    pub is_vlek: bool,
}

impl CertChain {
    /// File stems snpguest/snphost use: (`ark`, `ask`|`asvk`, `vcek`|`vlek`).
    pub fn file_stems(&self) -> [&'static str; 3] {
        if self.is_vlek {
            ["ark", "asvk", "vlek"]
        } else {
            ["ark", "ask", "vcek"]
        }
    }

    /// Write `ark.pem`, `ask.pem`, `vcek.pem` (or `asvk`/`vlek`) into `dir` — the layout
    /// `snpguest verify certs DIR` reads. `pem = false` writes `.der` files.
    pub fn write_dir(&self, dir: &Path, pem: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (stem, der_bytes) in self
            .file_stems()
            .into_iter()
            .zip([&self.ark, &self.ask, &self.vek])
        {
            if pem {
                let text = cert::to_pem("CERTIFICATE", der_bytes)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                std::fs::write(dir.join(format!("{stem}.pem")), text)?;
            } else {
                std::fs::write(dir.join(format!("{stem}.der")), der_bytes)?;
            }
        }
        Ok(())
    }

    /// The GHCB certificate table (ARK, ASK/ASVK, VCEK/VLEK entries; no CRL, since
    /// snpguest and virtee/sev parse every entry as a certificate).
    pub fn cert_table(&self) -> CertTable {
        let mut t = CertTable::new();
        t.push(CertTableGuid::ARK, self.ark.clone());
        t.push(CertTableGuid::ASK, self.ask.clone());
        t.push(
            if self.is_vlek {
                CertTableGuid::VLEK
            } else {
                CertTableGuid::VCEK
            },
            self.vek.clone(),
        );
        t
    }

    /// Verify the signatures ARK→ARK, ARK→ASK, ASK→VEK.
    pub fn verify(&self) -> Result<(), IdentityError> {
        cert::verify_signed_by(&self.ark, &self.ark)?;
        cert::verify_signed_by(&self.ask, &self.ark)?;
        cert::verify_signed_by(&self.vek, &self.ask)
    }
}

/// A simulated chip. Secrets are zeroized on drop and never printed.
pub struct Chip {
    product: Product,
    chip_id: [u8; 64],
    secret: Zeroizing<[u8; 64]>,
    root: Arc<AmdRoot>,
    vek_not_before: u64,
    vceks: Mutex<HashMap<RawTcb, Arc<Vcek>>>,
    vlek: Mutex<Option<Arc<Vlek>>>,
}

impl std::fmt::Debug for Chip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chip")
            .field("product", &self.product)
            .field(
                "chip_id",
                &HexPrefix(&self.chip_id[..self.product.chip_id_len()]),
            )
            .finish_non_exhaustive()
    }
}

struct HexPrefix<'a>(&'a [u8]);
impl std::fmt::Debug for HexPrefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Chip {
    /// A chip whose CHIP_ID and secret come from `seed` (same seed and product, same
    /// chip), endorsed by the shared softsev AMD root of `product`.
    pub fn from_seed(product: Product, seed: &[u8]) -> Result<Chip, IdentityError> {
        let mut rng = Rng::seeded(seed, "softsev chip");
        Self::with_root(product, &mut rng, AmdRoot::default_for(product)?)
    }

    /// A chip with a random CHIP_ID and secret (OS RNG), shared softsev AMD root.
    pub fn random(product: Product) -> Result<Chip, IdentityError> {
        Self::with_root(product, &mut Rng::os(), AmdRoot::default_for(product)?)
    }

    /// A chip drawing its identity from `rng`, endorsed by `root`.
    pub fn with_root(
        product: Product,
        rng: &mut Rng,
        root: Arc<AmdRoot>,
    ) -> Result<Chip, IdentityError> {
        if root.product() != product {
            return Err(IdentityError::Malformed("AMD root is for another product"));
        }
        let mut chip_id = [0u8; 64];
        let len = product.chip_id_len();
        if let Some(sig) = chip_id.get_mut(..len) {
            rng.fill(sig);
        }
        let mut secret = Zeroizing::new([0u8; 64]);
        rng.fill(&mut secret[..]);
        Ok(Chip {
            product,
            chip_id,
            secret,
            root,
            vek_not_before: cert::DEFAULT_VEK_NOT_BEFORE,
            vceks: Mutex::new(HashMap::new()),
            vlek: Mutex::new(None),
        })
    }

    /// Set the notBefore (Unix seconds) of VCEK/VLEK certificates issued from now on.
    pub fn set_vek_not_before(&mut self, unix_secs: u64) {
        self.vek_not_before = unix_secs;
        self.vceks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The product personality.
    pub fn product(&self) -> Product {
        self.product
    }

    /// CHIP_ID as reported (64 bytes; on Turin only the first 8 are non-zero).
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// The hwid KDS uses in its VCEK URL: lowercase hex of the significant CHIP_ID bytes.
    pub fn kds_hwid(&self) -> String {
        format!(
            "{:?}",
            HexPrefix(&self.chip_id[..self.product.chip_id_len()])
        )
    }

    /// The AMD root endorsing this chip.
    pub fn root(&self) -> &Arc<AmdRoot> {
        &self.root
    }

    fn check_tcb(&self, tcb: &TcbVersion) -> Result<RawTcb, IdentityError> {
        tcb.encode(self.product).map_err(|e| IdentityError::BadTcb {
            product: self.product,
            tcb: *tcb,
            why: e.to_string(),
        })
    }

    /// TCB components in derivation order with their names.
    fn components(&self, tcb: &TcbVersion) -> Vec<(&'static str, u8)> {
        let mut v = Vec::with_capacity(5);
        if self.product == Product::Turin {
            v.push(("fmc", tcb.fmc));
        }
        v.extend([
            ("bootloader", tcb.bootloader),
            ("tee", tcb.tee),
            ("snp", tcb.snp),
            ("microcode", tcb.microcode),
        ]);
        v
    }

    /// The hash stick of component `name` at SVN `svn` (see the module docs).
    fn hash_stick(&self, name: &str, svn: u8) -> Zeroizing<[u8; SHA384_LEN]> {
        let mut stick = Zeroizing::new(kdf::derive::<SHA384_LEN>(
            &self.secret[..],
            b"softsev hash stick",
            name.as_bytes(),
        ));
        for _ in 0..(255 - u32::from(svn)) {
            *stick = sha384(&stick[..]);
        }
        stick
    }

    /// The hash sticks of `tcb`'s components, chained in derivation order.
    fn versioned_chain(&self, tcb: &TcbVersion) -> Zeroizing<Vec<u8>> {
        let mut chained = Zeroizing::new(Vec::with_capacity(5 * SHA384_LEN));
        for (name, svn) in self.components(tcb) {
            chained.extend_from_slice(&self.hash_stick(name, svn)[..]);
        }
        chained
    }

    fn vcek_from_chain(&self, chained: &[u8]) -> P384SigningKey {
        let mut context = Vec::with_capacity(64 + 8);
        context.extend_from_slice(self.product.name().as_bytes());
        context.extend_from_slice(&self.chip_id);
        let material = Zeroizing::new(kdf::derive::<64>(
            chained,
            b"sev-versioned-chip-endorsement-key",
            &context,
        ));
        P384SigningKey::from_seed_material(&material)
    }

    /// Derive the VCEK private key for `tcb` without the cache.
    pub fn derive_vcek_uncached(&self, tcb: &TcbVersion) -> Result<P384SigningKey, IdentityError> {
        self.check_tcb(tcb)?;
        Ok(self.vcek_from_chain(&self.versioned_chain(tcb)))
    }

    /// The VCEK for `tcb` (normally REPORTED_TCB), derived once and cached.
    pub fn vcek(&self, tcb: &TcbVersion) -> Result<Arc<Vcek>, IdentityError> {
        let raw = self.check_tcb(tcb)?;
        if let Some(v) = self
            .vceks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&raw)
        {
            return Ok(v.clone());
        }
        let chained = self.versioned_chain(tcb);
        let v = Arc::new(Vcek {
            tcb: *tcb,
            key: self.vcek_from_chain(&chained),
            keyreq_root: self.keyreq_root_from_chain(&chained),
            cert: OnceLock::new(),
        });
        let mut map = self.vceks.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(raw).or_insert(v).clone())
    }

    /// The VCEK certificate (DER) for `tcb`, as AMD's KDS would return it; cached.
    pub fn vcek_cert_der(&self, tcb: &TcbVersion) -> Result<Vec<u8>, IdentityError> {
        let v = self.vcek(tcb)?;
        v.cert
            .get_or_init(|| {
                self.root.issue_vek(
                    tcb,
                    &VekKind::Vcek {
                        chip_id: self.chip_id,
                    },
                    v.key.public(),
                    self.vek_not_before,
                )
            })
            .clone()
    }

    /// ARK → ASK → VCEK for `tcb`.
    pub fn vcek_chain(&self, tcb: &TcbVersion) -> Result<CertChain, IdentityError> {
        Ok(CertChain {
            ark: self.root.ark_der().to_vec(),
            ask: self.root.ask_der().to_vec(),
            vek: self.vcek_cert_der(tcb)?,
            is_vlek: false,
        })
    }

    /// ARK → ASVK → VLEK for the loaded VLEK.
    pub fn vlek_chain(&self) -> Result<CertChain, IdentityError> {
        let vlek = self.vlek().ok_or(IdentityError::NoVlek(self.product))?;
        Ok(CertChain {
            ark: self.root.ark_der().to_vec(),
            ask: self.root.asvk_der()?.to_vec(),
            vek: vlek.cert.clone(),
            is_vlek: true,
        })
    }

    fn vlek_wrapping_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(kdf::derive::<32>(
            &self.secret[..],
            b"vlek-wrapping-key",
            &self.chip_id,
        ))
    }

    fn vlek_aad(&self, tcb: &TcbVersion, csp_id: &str, cert_der: &[u8]) -> Vec<u8> {
        let mut aad = Vec::new();
        aad.extend_from_slice(self.product.name().as_bytes());
        aad.extend_from_slice(&[tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode]);
        aad.extend_from_slice(&(csp_id.len() as u64).to_le_bytes());
        aad.extend_from_slice(csp_id.as_bytes());
        aad.extend_from_slice(&sha384(cert_der));
        aad
    }

    /// Act as AMD's KDS: draw a VLEK seed from `rng`, certify the key under the ASVK
    /// for `tcb` and `csp_id`, and wrap the seed for this chip.
    pub fn provision_vlek(
        &self,
        rng: &mut Rng,
        tcb: &TcbVersion,
        csp_id: &str,
    ) -> Result<WrappedVlek, IdentityError> {
        self.check_tcb(tcb)?;
        let seed = Zeroizing::new(rng.array::<64>());
        let key = vlek_key(&seed);
        let cert = self.root.issue_vek(
            tcb,
            &VekKind::Vlek {
                csp_id: csp_id.to_string(),
            },
            key.public(),
            self.vek_not_before,
        )?;
        let nonce = rng.array::<NONCE_LEN>();
        let mut ciphertext = *seed;
        let tag = Aes256Gcm::new(&self.vlek_wrapping_key()).seal(
            &nonce,
            &self.vlek_aad(tcb, csp_id, &cert),
            &mut ciphertext,
        )?;
        Ok(WrappedVlek {
            tcb: *tcb,
            csp_id: csp_id.to_string(),
            nonce,
            ciphertext,
            tag,
            cert,
        })
    }

    /// Unwrap and install a VLEK (SNP_VLEK_LOAD). Fails if it was wrapped for another
    /// chip or altered, or if its certificate does not certify the unwrapped key.
    pub fn load_vlek(&self, wrapped: &WrappedVlek) -> Result<Arc<Vlek>, IdentityError> {
        self.check_tcb(&wrapped.tcb)?;
        let mut seed = Zeroizing::new(wrapped.ciphertext);
        Aes256Gcm::new(&self.vlek_wrapping_key())
            .open(
                &wrapped.nonce,
                &self.vlek_aad(&wrapped.tcb, &wrapped.csp_id, &wrapped.cert),
                &mut seed[..],
                &wrapped.tag,
            )
            .map_err(|_| IdentityError::VlekRejected {
                product: self.product,
                why: "authentication failed (wrong chip or tampered blob)",
            })?;
        let key = vlek_key(&seed);
        let cert_key = {
            use der::{Decode, Encode};
            let c = x509_cert::Certificate::from_der(&wrapped.cert)?;
            c.tbs_certificate.subject_public_key_info.to_der()?
        };
        if cert_key != key.public().to_spki_der() {
            return Err(IdentityError::VlekRejected {
                product: self.product,
                why: "certificate does not match the wrapped key",
            });
        }
        let v = Arc::new(Vlek {
            tcb: wrapped.tcb,
            csp_id: wrapped.csp_id.clone(),
            key,
            root: Zeroizing::new(kdf::derive::<48>(
                &seed[..],
                b"softsev msg-key-req vlek root",
                b"",
            )),
            cert: wrapped.cert.clone(),
        });
        *self.vlek.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// Act as AMD's KDS for SNP_VLEK_LOAD: draw a VLEK seed from `rng`, certify its key
    /// under the ASVK for `tcb` and `csp_id`, and wrap it for this chip in AMD's
    /// `vlek_wrapped_t` layout (AES-256-GCM over the 0x180-byte payload, the TCB and
    /// its 8 reserved bytes authenticated). Returns the blob and the VLEK certificate.
    /// The payload's content is softsev's (AMD's is not public): the 64-byte seed,
    /// then the CSP id's length and bytes, zero padded.
    pub fn provision_vlek_blob(
        &self,
        rng: &mut Rng,
        tcb: &TcbVersion,
        csp_id: &str,
    ) -> Result<(softsev_abi::fw_buf::VlekWrapped, Vec<u8>), IdentityError> {
        let raw = self.check_tcb(tcb)?;
        let id = csp_id.as_bytes();
        if id.len() > 255 {
            return Err(IdentityError::Malformed("CSP id longer than 255 bytes"));
        }
        let seed = Zeroizing::new(rng.array::<64>());
        let key = vlek_key(&seed);
        let cert = self.root.issue_vek(
            tcb,
            &VekKind::Vlek {
                csp_id: csp_id.to_string(),
            },
            key.public(),
            self.vek_not_before,
        )?;
        let mut payload = Zeroizing::new([0u8; 0x180]);
        payload[..64].copy_from_slice(&seed[..]);
        payload[64] = id.len() as u8;
        payload[65..65 + id.len()].copy_from_slice(id);
        let iv = rng.array::<NONCE_LEN>();
        let aad = vlek_blob_aad(raw);
        let tag = Aes256Gcm::new(&self.vlek_wrapping_key()).seal(&iv, &aad, &mut payload[..])?;
        let blob = softsev_abi::fw_buf::VlekWrapped {
            iv,
            reserved: [0; 4],
            vlek_wrapped: *payload,
            tcb_version: raw.to_u64(),
            reserved2: [0; 8],
            auth_tag: tag,
        };
        Ok((blob, cert))
    }

    /// Unwrap and install a VLEK from AMD's blob layout (SNP_VLEK_LOAD). The blob must
    /// be for `reported_tcb`, for this chip, and unaltered; the certificate is issued
    /// again under the ASVK (the KDS role of the same process).
    pub fn load_vlek_blob(
        &self,
        blob: &softsev_abi::fw_buf::VlekWrapped,
        reported_tcb: &TcbVersion,
    ) -> Result<Arc<Vlek>, IdentityError> {
        let raw = self.check_tcb(reported_tcb)?;
        let rejected = |why| IdentityError::VlekRejected {
            product: self.product,
            why,
        };
        if blob.tcb_version != raw.to_u64() {
            return Err(rejected("blob is for another TCB"));
        }
        let mut aad = vlek_blob_aad(raw);
        aad[8..].copy_from_slice(&blob.reserved2);
        let mut payload = Zeroizing::new(blob.vlek_wrapped);
        Aes256Gcm::new(&self.vlek_wrapping_key())
            .open(&blob.iv, &aad, &mut payload[..], &blob.auth_tag)
            .map_err(|_| rejected("authentication failed (wrong chip or tampered blob)"))?;
        let mut seed = Zeroizing::new([0u8; 64]);
        seed.copy_from_slice(&payload[..64]);
        let n = payload[64] as usize;
        let csp_id = std::str::from_utf8(&payload[65..65 + n])
            .map_err(|_| rejected("CSP id is not UTF-8"))?
            .to_string();
        let key = vlek_key(&seed);
        let cert = self.root.issue_vek(
            reported_tcb,
            &VekKind::Vlek {
                csp_id: csp_id.clone(),
            },
            key.public(),
            self.vek_not_before,
        )?;
        let v = Arc::new(Vlek {
            tcb: *reported_tcb,
            csp_id,
            key,
            root: Zeroizing::new(kdf::derive::<48>(
                &seed[..],
                b"softsev msg-key-req vlek root",
                b"",
            )),
            cert,
        });
        *self.vlek.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// Forget the loaded VLEK (SNP_SHUTDOWN wipes it).
    pub fn unload_vlek(&self) {
        *self.vlek.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The loaded VLEK, if any.
    pub fn vlek(&self) -> Option<Arc<Vlek>> {
        self.vlek.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The chip-unique root secret for MSG_KEY_REQ with the VCEK root: the
    /// `tcb`-versioned secret (derivable, like the VCEK, for any TCB). Taken from the
    /// VCEK cache when that TCB's VCEK exists; otherwise computed without caching, so
    /// guests asking for many old TCBs cannot grow the cache.
    pub(crate) fn vcek_root_secret(
        &self,
        tcb: &TcbVersion,
    ) -> Result<Zeroizing<[u8; 48]>, IdentityError> {
        let raw = self.check_tcb(tcb)?;
        if let Some(v) = self
            .vceks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&raw)
        {
            return Ok(v.keyreq_root.clone());
        }
        Ok(self.keyreq_root_from_chain(&self.versioned_chain(tcb)))
    }

    fn keyreq_root_from_chain(&self, chained: &[u8]) -> Zeroizing<[u8; 48]> {
        Zeroizing::new(kdf::derive::<48>(
            chained,
            b"softsev msg-key-req vcek root",
            &self.chip_id,
        ))
    }
}

impl Chip {
    /// The chip-unique key (CUK) of the legacy SEV identity (sev-legacy.md §1.8, §2.5):
    /// fused on real parts; here `KDF(chip_secret, "softsev sev chip-unique key",
    /// CHIP_ID ‖ counter)` (32 bytes), so it is fixed per chip seed like the SNP chip
    /// secrets. GET_ID uses it as a secp256k1 private key: the first counter value whose
    /// output is a valid secp256k1 scalar is taken (a miss has probability < 2^-127).
    pub(crate) fn sev_cuk(&self) -> Zeroizing<[u8; 32]> {
        let mut counter = 0u32;
        loop {
            let mut context = self.chip_id.to_vec();
            context.extend_from_slice(&counter.to_le_bytes());
            let cuk = Zeroizing::new(kdf::derive::<32>(
                &self.secret[..],
                b"softsev sev chip-unique key",
                &context,
            ));
            if softsev_crypto::sev::get_id_from_cuk(&cuk).is_ok() {
                return cuk;
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// GET_ID's 64 bytes for this chip: X ‖ Y (big-endian) of the secp256k1 public key
    /// CUK·G (sev-legacy.md §1.8). The hex of these bytes names the chip's CEK at AMD's
    /// KDS (`/cek/id/<hex>`).
    pub fn sev_get_id(&self) -> [u8; 64] {
        let cuk = self.sev_cuk();
        // sev_cuk only returns a CUK that get_id_from_cuk accepts.
        softsev_crypto::sev::get_id_from_cuk(&cuk).unwrap_or([0; 64])
    }

    /// The chip endorsement key (CEK), re-derived from the CUK as the firmware does at
    /// every legacy INIT (sev-legacy.md §2.5: SHA-256(CUK) → KDF "sev-chip-endorsement-key"
    /// → little-endian integer mod (n−1) + 1 on P-384).
    pub(crate) fn sev_cek(&self) -> Result<P384SigningKey, IdentityError> {
        let cuk = self.sev_cuk();
        let scalar = softsev_crypto::sev::cek_scalar_from_cuk(&cuk);
        Ok(P384SigningKey::from_scalar(&scalar)?)
    }
}

/// AAD of the AMD-layout VLEK blob: the TCB and its 8 reserved bytes.
fn vlek_blob_aad(raw: RawTcb) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..8].copy_from_slice(&raw.to_u64().to_le_bytes());
    aad
}

fn vlek_key(seed: &[u8; 64]) -> P384SigningKey {
    let material = Zeroizing::new(kdf::derive::<64>(
        seed,
        b"sev-versioned-loaded-attestation-key",
        b"",
    ));
    P384SigningKey::from_seed_material(&material)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_chip(product: Product) -> Chip {
        // A root from a small test key set is not possible (AMD uses 4096 bits), so
        // unit tests use the shared default root.
        Chip::from_seed(product, b"unit").unwrap()
    }

    #[test]
    fn hash_sticks_go_down_not_up() {
        let chip = test_chip(Product::Milan);
        let s5 = chip.hash_stick("snp", 5);
        let s4 = chip.hash_stick("snp", 4);
        assert_eq!(sha384(&s5[..]), *s4);
        assert_ne!(sha384(&s4[..]), *s5);
        assert_ne!(*chip.hash_stick("tee", 5), *s5);
    }

    #[test]
    fn vcek_is_per_tcb_cached_and_reproducible() {
        let chip = test_chip(Product::Genoa);
        let t1 = TcbVersion {
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
            fmc: 0,
        };
        let mut t2 = t1;
        t2.microcode = 73;
        let a = chip.vcek(&t1).unwrap();
        let b = chip.vcek(&t1).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = chip.vcek(&t2).unwrap();
        assert_ne!(a.signing_key().public(), c.signing_key().public());
        let again = Chip::from_seed(Product::Genoa, b"unit").unwrap();
        assert_eq!(
            again.vcek(&t1).unwrap().signing_key().public(),
            a.signing_key().public()
        );
        let other = Chip::from_seed(Product::Genoa, b"unit2").unwrap();
        assert_ne!(
            other.vcek(&t1).unwrap().signing_key().public(),
            a.signing_key().public()
        );
        // fmc does not exist on Genoa.
        let mut bad = t1;
        bad.fmc = 1;
        assert!(matches!(chip.vcek(&bad), Err(IdentityError::BadTcb { .. })));
    }

    #[test]
    fn random_chips_differ_but_share_the_root() {
        let a = Chip::random(Product::Milan).unwrap();
        let b = Chip::random(Product::Milan).unwrap();
        assert_ne!(a.chip_id(), b.chip_id());
        assert!(Arc::ptr_eq(a.root(), b.root()));
        let t = TcbVersion::default();
        assert_ne!(
            a.vcek(&t).unwrap().signing_key().public(),
            b.vcek(&t).unwrap().signing_key().public()
        );
    }

    #[test]
    fn turin_chip_id_is_eight_bytes() {
        let chip = test_chip(Product::Turin);
        assert!(chip.chip_id()[8..].iter().all(|&b| b == 0));
        assert!(chip.chip_id()[..8].iter().any(|&b| b != 0));
        assert_eq!(chip.kds_hwid().len(), 16);
        assert_eq!(test_chip(Product::Milan).kds_hwid().len(), 128);
        assert!(!format!("{chip:?}").contains("secret"));
    }
}
