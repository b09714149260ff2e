//! The legacy SEV / SEV-ES trusted channel and identity math (spec sev-legacy.md §1.8,
//! §2.5, §3.2–3.5, §5.3; host-interfaces.md §4.6–4.8).
//!
//! - the SP 800-108 counter-mode KDF with HMAC-SHA256 and **little-endian** counter and
//!   length words (ASPFW `nist_kdf.c`, host-interfaces.md §4.6 step 4);
//! - P-384 ECDH whose shared secret Z is the X coordinate, 48 bytes big-endian
//!   (sev-legacy.md §3.1: `ecdh.c` reverses the CCP's little-endian output);
//! - master secret, KEK and KIK (§3.2); the TEK‖TIK wrap with AES-128-CTR whose IV is
//!   the whole 128-bit big-endian counter block, and its HMAC, verified in constant
//!   time before anything is decrypted (§3.2);
//! - the policy MAC (§3.1), the launch measurement (§3.4), the LAUNCH_SECRET packet MAC
//!   (context byte 0x01 and the measurement, §3.5) and the SEND/RECEIVE transport MAC
//!   (context byte 0x02, §5.3);
//! - the CEK private scalar from the chip-unique key (§2.5) and GET_ID's secp256k1 public
//!   key of the CUK (§1.8).
//!
//! Every key is a `Zeroizing<[u8; 16]>` (or larger) and no type here prints a secret.

use crate::CryptoError;
use crate::ct::ct_eq;
use crate::hash::{SHA256_LEN, hmac_sha256, sha256};
use crate::rng::Rng;
use p384::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::{Zeroize, Zeroizing};

/// A 16-byte SEV channel key (TEK, TIK, KEK, KIK, master secret), zeroized on drop.
pub type SevKey = Zeroizing<[u8; 16]>;

/// Label of the master-secret derivation (§3.2).
pub const LABEL_MASTER_SECRET: &[u8] = b"sev-master-secret";
/// Label of the key-encryption-key derivation (§3.2).
pub const LABEL_KEK: &[u8] = b"sev-kek";
/// Label of the key-integrity-key derivation (§3.2).
pub const LABEL_KIK: &[u8] = b"sev-kik";
/// Label of the CEK derivation from SHA-256(CUK) (§2.5).
pub const LABEL_CEK: &[u8] = b"sev-chip-endorsement-key";

/// Context byte of the LAUNCH_SECRET packet MAC (§3.5).
pub const MAC_CTX_SECRET: u8 = 0x01;
/// Context byte of the SEND/RECEIVE_UPDATE_DATA and _VMSA packet MAC (§5.3: 0x02 for
/// both; ASPFW defines a VMSA context 3 but these handlers do not use it).
pub const MAC_CTX_TRANSPORT: u8 = 0x02;
/// First byte of the LAUNCH_MEASURE HMAC input (§3.4).
pub const MEASURE_CTX: u8 = 0x04;

/// A MAC (wrap_mac, policy_mac, packet MAC, measurement) did not match. The firmware
/// reports this as BAD_MEASUREMENT (sev-legacy.md §0.2-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SEV channel MAC mismatch")]
pub struct MacMismatch;

/// NIST SP 800-108 counter-mode KDF with HMAC-SHA256 as the PRF, as SEV uses it: block
/// i = HMAC(key, LE32(i) ‖ label ‖ 0x00 ‖ context ‖ LE32(L)), i from 1, L = `out.len()`
/// in bits; the output is the blocks concatenated and truncated (ASPFW `nist_kdf.c`,
/// host-interfaces.md §4.6 step 4). `out.len()` must be below 2^29 bytes.
pub fn kdf_hmac_sha256(key: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let bits = u32::try_from(out.len().saturating_mul(8)).unwrap_or(u32::MAX);
    let l = bits.to_le_bytes();
    for (i, chunk) in out.chunks_mut(SHA256_LEN).enumerate() {
        let counter = u32::try_from(i + 1).unwrap_or(u32::MAX).to_le_bytes();
        let mut block = hmac_sha256(key, &[&counter, label, &[0u8], context, &l]);
        chunk.copy_from_slice(&block[..chunk.len()]);
        block.zeroize();
    }
}

fn kdf16(key: &[u8], label: &[u8], context: &[u8]) -> SevKey {
    let mut out = Zeroizing::new([0u8; 16]);
    kdf_hmac_sha256(key, label, context, &mut out[..]);
    out
}

/// A P-384 ECDH private key (the firmware's PDH, or a guest owner's ephemeral GODH key).
/// The scalar is zeroized on drop; `Debug` shows only the public point.
pub struct EcdhP384 {
    secret: p384::SecretKey,
    public: ([u8; 48], [u8; 48]),
}

impl std::fmt::Debug for EcdhP384 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdhP384")
            .field("x", &Hex(&self.public.0))
            .field("y", &Hex(&self.public.1))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl EcdhP384 {
    /// A fresh key from `rng` (deterministic when `rng` is seeded).
    pub fn generate(rng: &mut Rng) -> Self {
        Self::from_secret(p384::SecretKey::random(rng))
    }

    /// From a big-endian scalar in [1, n−1].
    pub fn from_scalar_be(scalar: &[u8; 48]) -> Result<Self, CryptoError> {
        let secret = p384::SecretKey::from_slice(scalar).map_err(|_| CryptoError::InvalidKey {
            what: "P-384 ECDH private",
            why: "scalar is zero or not below the group order".into(),
        })?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: p384::SecretKey) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        let mut x = [0u8; 48];
        let mut y = [0u8; 48];
        x.copy_from_slice(point.x().expect("uncompressed, not identity"));
        y.copy_from_slice(point.y().expect("uncompressed, not identity"));
        Self {
            secret,
            public: (x, y),
        }
    }

    /// The private scalar, big-endian (secret; for persisting a PDH key).
    pub fn scalar_be(&self) -> Zeroizing<[u8; 48]> {
        let mut out = Zeroizing::new([0u8; 48]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The public point's affine (X, Y), big-endian.
    pub fn public_xy_be(&self) -> ([u8; 48], [u8; 48]) {
        self.public
    }

    /// Z = X coordinate of d·Q_peer, 48 bytes big-endian (§3.1). The peer point must be
    /// on P-384 and not the identity, else `CryptoError::InvalidKey`.
    pub fn shared_x_be(
        &self,
        peer_x_be: &[u8; 48],
        peer_y_be: &[u8; 48],
    ) -> Result<Zeroizing<[u8; 48]>, CryptoError> {
        let mut sec1 = [0u8; 97];
        sec1[0] = 4;
        sec1[1..49].copy_from_slice(peer_x_be);
        sec1[49..].copy_from_slice(peer_y_be);
        let peer =
            p384::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CryptoError::InvalidKey {
                what: "P-384 ECDH peer public",
                why: "not a point on P-384".into(),
            })?;
        // The point is valid (p384 checked it); the scalar multiplication is aws-lc-rs's
        // (~15–25× the `p384` crate in a dev build; benches/sev.rs). Its shared secret is the
        // big-endian X coordinate (SEC1 §3.3.1), the Z of §3.1.
        use aws_lc_rs::agreement::{self, ECDH_P384, PrivateKey, UnparsedPublicKey};
        let scalar = self.scalar_be();
        let private = PrivateKey::from_private_key(&ECDH_P384, &scalar[..])
            .map_err(|_| CryptoError::Backend("P-384 ECDH private key"))?;
        let peer_sec1 = peer.to_encoded_point(false);
        agreement::agree(
            &private,
            UnparsedPublicKey::new(&ECDH_P384, peer_sec1.as_bytes()),
            CryptoError::Backend("P-384 ECDH"),
            |shared| {
                let mut z = Zeroizing::new([0u8; 48]);
                z.copy_from_slice(shared);
                Ok(z)
            },
        )
    }
}

/// The keys one session's Z and nonce give (§3.2). `Debug` prints no key.
pub struct SessionSecrets {
    /// master = KDF(Z, "sev-master-secret", nonce), 16 bytes.
    pub master: SevKey,
    /// KEK = KDF(master, "sev-kek", empty), 16 bytes: encrypts TEK‖TIK.
    pub kek: SevKey,
    /// KIK = KDF(master, "sev-kik", empty), 16 bytes: MACs the wrapped keys.
    pub kik: SevKey,
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecrets { .. }")
    }
}

/// master, KEK and KIK from the ECDH secret `z` and the session `nonce` (§3.2).
pub fn derive_session_secrets(z: &[u8; 48], nonce: &[u8; 16]) -> SessionSecrets {
    let master = kdf16(z, LABEL_MASTER_SECRET, nonce);
    let kek = kdf16(&master[..], LABEL_KEK, &[]);
    let kik = kdf16(&master[..], LABEL_KIK, &[]);
    SessionSecrets { master, kek, kik }
}

/// AES-128-CTR in place; `iv` is the initial 128-bit counter block, incremented as one
/// big-endian 128-bit integer (§3.2). Encryption and decryption are the same operation.
pub fn aes128_ctr(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
    // aws-lc-rs (AES-NI; ~3 GiB/s on a 4 KiB page here) rather than RustCrypto `ctr`,
    // whose generic code runs at the calling crate's opt-level (~7 MiB/s in a dev build;
    // benches/sev.rs). AWS-LC's CTR mode carries into all 128 bits of the counter; the
    // tests check it against RustCrypto `Ctr128BE` and at the 32-, 64- and 128-bit wraps.
    let k = UnboundCipherKey::new(&AES_128, key)
        .and_then(EncryptingKey::ctr)
        .expect("AES-128 accepts a 16-byte key");
    k.less_safe_encrypt(data, EncryptionContext::Iv128((*iv).into()))
        .expect("CTR encrypts any length");
}

/// Guest-owner side of the session (host-interfaces.md §4.6 step 5): wrap_tk =
/// AES-128-CTR(KEK, wrap_iv, TEK ‖ TIK), wrap_mac = HMAC-SHA256(KIK, wrap_tk).
pub fn wrap_transport_keys(
    kek: &[u8; 16],
    kik: &[u8; 16],
    wrap_iv: &[u8; 16],
    tek: &[u8; 16],
    tik: &[u8; 16],
) -> ([u8; 32], [u8; 32]) {
    let mut wrap_tk = [0u8; 32];
    wrap_tk[..16].copy_from_slice(tek);
    wrap_tk[16..].copy_from_slice(tik);
    aes128_ctr(kek, wrap_iv, &mut wrap_tk);
    let wrap_mac = hmac_sha256(kik, &[&wrap_tk]);
    (wrap_tk, wrap_mac)
}

/// Firmware side (§3.1, §3.2): check HMAC(KIK, wrap_tk) against `wrap_mac` in constant
/// time, and only then decrypt TEK ‖ TIK. A mismatch is BAD_MEASUREMENT (§0.2-5).
pub fn unwrap_transport_keys(
    kek: &[u8; 16],
    kik: &[u8; 16],
    wrap_iv: &[u8; 16],
    wrap_tk: &[u8; 32],
    wrap_mac: &[u8; 32],
) -> Result<(SevKey, SevKey), MacMismatch> {
    let expect = hmac_sha256(kik, &[wrap_tk]);
    if !ct_eq(&expect, wrap_mac) {
        return Err(MacMismatch);
    }
    let mut keys = Zeroizing::new(*wrap_tk);
    aes128_ctr(kek, wrap_iv, &mut keys[..]);
    let mut tek = Zeroizing::new([0u8; 16]);
    let mut tik = Zeroizing::new([0u8; 16]);
    tek.copy_from_slice(&keys[..16]);
    tik.copy_from_slice(&keys[16..]);
    Ok((tek, tik))
}

/// policy_mac = HMAC-SHA256(TIK, LE32(policy)) (§3.1).
pub fn policy_mac(tik: &[u8; 16], policy: u32) -> [u8; 32] {
    hmac_sha256(tik, &[&policy.to_le_bytes()])
}

/// LAUNCH_MEASURE's measure = HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖
/// LE32(policy) ‖ LD ‖ mnonce) (§3.4; the API ≥ 0.17 form).
pub fn launch_measure(
    tik: &[u8; 16],
    api_major: u8,
    api_minor: u8,
    build: u8,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    hmac_sha256(
        tik,
        &[
            &[MEASURE_CTX, api_major, api_minor, build],
            &policy.to_le_bytes(),
            ld,
            mnonce,
        ],
    )
}

/// The 29-byte authenticated header of a channel packet: ctx ‖ LE32(flags) ‖ iv ‖
/// LE32(guest_len) ‖ LE32(trans_len) (§5.3, ASPFW `send_receive_update_aad_t`).
fn packet_aad(ctx: u8, flags: u32, iv: &[u8; 16], guest_len: u32, trans_len: u32) -> [u8; 29] {
    let mut aad = [0u8; 29];
    aad[0] = ctx;
    aad[1..5].copy_from_slice(&flags.to_le_bytes());
    aad[5..21].copy_from_slice(iv);
    aad[21..25].copy_from_slice(&guest_len.to_le_bytes());
    aad[25..29].copy_from_slice(&trans_len.to_le_bytes());
    aad
}

/// LAUNCH_SECRET header MAC = HMAC-SHA256(TIK, 0x01 ‖ LE32(flags) ‖ iv ‖ LE32(guest_len)
/// ‖ LE32(trans_len) ‖ ciphertext ‖ measure), `measure` the 32 bytes LAUNCH_MEASURE
/// returned (§3.5). Compare with [`crate::ct::ct_eq`].
pub fn secret_packet_mac(
    tik: &[u8; 16],
    flags: u32,
    iv: &[u8; 16],
    guest_len: u32,
    trans_len: u32,
    ciphertext: &[u8],
    measure: &[u8; 32],
) -> [u8; 32] {
    let aad = packet_aad(MAC_CTX_SECRET, flags, iv, guest_len, trans_len);
    hmac_sha256(tik, &[&aad, ciphertext, measure])
}

/// SEND/RECEIVE_UPDATE_DATA and _VMSA packet MAC = HMAC-SHA256(TIK, 0x02 ‖ LE32(flags) ‖
/// iv ‖ LE32(guest_len) ‖ LE32(trans_len) ‖ ciphertext) (§5.3). Compare with
/// [`crate::ct::ct_eq`].
pub fn transport_packet_mac(
    tik: &[u8; 16],
    flags: u32,
    iv: &[u8; 16],
    guest_len: u32,
    trans_len: u32,
    ciphertext: &[u8],
) -> [u8; 32] {
    let aad = packet_aad(MAC_CTX_TRANSPORT, flags, iv, guest_len, trans_len);
    hmac_sha256(tik, &[&aad, ciphertext])
}

/// The CEK private scalar (big-endian, in [1, n−1] of P-384) the firmware re-derives
/// from the chip-unique key at every INIT (§2.5, ASPFW `ecc_keypair_from_extra_bits`):
/// seed = SHA-256(CUK); 56 bytes = KDF(seed, "sev-chip-endorsement-key", empty context);
/// c = those bytes read as a little-endian integer; d = (c mod (n−1)) + 1.
pub fn cek_scalar_from_cuk(cuk: &[u8; 32]) -> Zeroizing<[u8; 48]> {
    use p384::elliptic_curve::Curve;
    use p384::elliptic_curve::bigint::{Encoding, NonZero, U384, U448};

    let mut seed = Zeroizing::new(sha256(cuk));
    let mut extra = Zeroizing::new([0u8; 56]);
    kdf_hmac_sha256(&seed[..], LABEL_CEK, &[], &mut extra[..]);
    seed.zeroize();

    let n_minus_1: U448 = p384::NistP384::ORDER.wrapping_sub(&U384::ONE).resize();
    let modulus = NonZero::new(n_minus_1).expect("n − 1 is not zero");
    let mut c = U448::from_le_slice(&extra[..]);
    let mut r = c.rem(&modulus);
    c.zeroize();
    // r < n − 1, so r + 1 < n < 2^384 and the top 64 bits are zero.
    let mut d: U384 = r.wrapping_add(&U448::ONE).resize();
    r.zeroize();
    let out = Zeroizing::new(d.to_be_bytes());
    d.zeroize();
    out
}

/// GET_ID's 64 bytes: X ‖ Y (big-endian, 32 bytes each) of the secp256k1 public key
/// CUK·G (§1.8). The CUK is used as the private key as it is, so a CUK that is zero or
/// not below the secp256k1 order is not a private key at all and is refused with
/// `CryptoError::InvalidKey` (a fused CUK is a valid key; a random 32-byte value misses
/// with probability below 2^-127, so the caller may simply draw another).
pub fn get_id_from_cuk(cuk: &[u8; 32]) -> Result<[u8; 64], CryptoError> {
    let sk = k256::SecretKey::from_slice(cuk).map_err(|_| CryptoError::InvalidKey {
        what: "secp256k1 CUK",
        why: "zero or not below the secp256k1 group order".into(),
    })?;
    let point = sk.public_key().to_encoded_point(false);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(point.x().expect("uncompressed, not identity"));
    out[32..].copy_from_slice(point.y().expect("uncompressed, not identity"));
    Ok(out)
}
