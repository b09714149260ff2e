//! The guest owner's side of a legacy SEV launch (sev-legacy.md §3.2–§3.5,
//! host-interfaces.md §4.6–§4.8, §4.11), byte-compatible with sevctl's files:
//!
//! * [`OwnerSession`]: from the platform's PDH, a fresh GODH key pair, Z = ECDH
//!   (X coordinate, big-endian), master secret/KEK/KIK by the SEV KDF, random TEK and
//!   TIK wrapped under KEK/KIK, and the policy MAC — the GODH certificate (usage PDH,
//!   ECDH_SHA256, API 0.0, both slots empty) and the 128-byte session blob that
//!   LAUNCH_START takes (sevctl `session`: `N_godh.b64`, `N_session.b64`, raw 16-byte
//!   `N_tik.bin`, `N_tek.bin`). Unlike sevctl (§9.3), the policy MACed is exactly the
//!   policy given: sevctl's `Policy::from(u32)` drops bits 6–31 into a different value.
//! * [`open_session`]: what the firmware does with them at LAUNCH_START (§3.1): for tests
//!   and simulators holding the PDH private key.
//! * [`launch_measure_blob`] / [`check_measurement`]: measure ‖ mnonce (48 bytes) with
//!   measure = HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖ LE32(policy) ‖ LD ‖
//!   mnonce) (§3.4), compared in constant time.
//! * [`secret_table`], [`seal_secret`], [`open_secret`]: sevctl's OVMF secret table
//!   (GUID 1e74f542-71dd-4d66-963e-ef4287ff173b ‖ u32 length ‖ entries GUID ‖ u32
//!   length ‖ data, padded to 16, §8.3) and the LAUNCH_SECRET packet: 52-byte header
//!   {flags 0, IV, MAC} and AES-128-CTR(TEK, IV) payload, MAC = HMAC-SHA256(TIK, 0x01 ‖
//!   LE32(flags) ‖ IV ‖ LE32(len) ‖ LE32(len) ‖ ciphertext ‖ measure) (§3.5).

use super::SevError;
use super::chain::{ecc_key, sev_cert_format};
use base64::Engine;
use softsev_abi::guid::Guid;
use softsev_abi::sev_buf::{SEV_SECRET_FLAG_COMPRESSED, SevPacketHeader, SevSession};
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevUsage};
use softsev_crypto::ct::ct_eq;
use softsev_crypto::rng::Rng;
use softsev_crypto::sev::{
    EcdhP384, MacMismatch, aes128_ctr, derive_session_secrets, launch_measure, policy_mac,
    secret_packet_mac, unwrap_transport_keys, wrap_transport_keys,
};
use zeroize::Zeroizing;

/// A 16-byte transport key (TEK or TIK), zeroized on drop.
pub type TransportKey = Zeroizing<[u8; 16]>;

/// Why an owner operation cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The PDH is not a usable PDH certificate.
    #[error("PDH certificate: {0}")]
    BadPdh(String),
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] softsev_crypto::CryptoError),
}

/// Why the platform side refuses a session (the firmware status it would return, §3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The GODH is not a PDH / ECDH_SHA256 P-384 certificate, or its point is invalid.
    #[error("INVALID_CERTIFICATE: GODH {0}")]
    InvalidCertificate(String),
    /// wrap_mac does not verify under KIK.
    #[error("BAD_MEASUREMENT: wrap_mac does not verify (wrong PDH or tampered session)")]
    WrapMac,
    /// policy_mac does not verify under TIK for this policy.
    #[error("BAD_MEASUREMENT: policy_mac does not verify for policy {0:#x}")]
    PolicyMac(u32),
}

/// The owner's fresh session for one launch.
pub struct OwnerSession {
    godh: SevCert,
    session: SevSession,
    policy: u32,
    tek: TransportKey,
    tik: TransportKey,
}

impl std::fmt::Debug for OwnerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerSession")
            .field("policy", &format_args!("{:#x}", self.policy))
            .field("nonce", &hex::encode(self.session.nonce))
            .finish_non_exhaustive()
    }
}

/// The PDH's point (big-endian X, Y) after the firmware's own-PDH checks (§3.1: usage
/// PDH, ECDH_SHA256 or ECDH_SHA384, P-384 on the curve).
fn pdh_point(pdh: &SevCert) -> Result<([u8; 48], [u8; 48]), OwnerError> {
    sev_cert_format(pdh, SevUsage::PDH).map_err(OwnerError::BadPdh)?;
    let p = pdh
        .ecc_pubkey()
        .ok_or_else(|| OwnerError::BadPdh("not an ECC key".into()))?;
    Ok((p.x, p.y))
}

impl OwnerSession {
    /// A session for `pdh` and `policy` with fresh randomness from `rng` (seed it for a
    /// reproducible session): GODH key, nonce, wrap IV, TEK, TIK, in that order.
    pub fn start(pdh: &SevCert, policy: u32, rng: &mut Rng) -> Result<OwnerSession, OwnerError> {
        let godh = EcdhP384::generate(rng);
        let nonce = rng.array::<16>();
        let wrap_iv = rng.array::<16>();
        let tek = Zeroizing::new(rng.array::<16>());
        let tik = Zeroizing::new(rng.array::<16>());
        Self::start_with(pdh, policy, &godh, nonce, wrap_iv, tek, tik)
    }

    /// A session from given parts (known-answer vectors, §3.2).
    pub fn start_with(
        pdh: &SevCert,
        policy: u32,
        godh_key: &EcdhP384,
        nonce: [u8; 16],
        wrap_iv: [u8; 16],
        tek: TransportKey,
        tik: TransportKey,
    ) -> Result<OwnerSession, OwnerError> {
        let (px, py) = pdh_point(pdh)?;
        let z = godh_key.shared_x_be(&px, &py)?;
        let s = derive_session_secrets(&z, &nonce);
        let (wrap_tk, wrap_mac) = wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &tek, &tik);
        let session = SevSession {
            nonce,
            wrap_tk,
            wrap_iv,
            wrap_mac,
            policy_mac: policy_mac(&tik, policy),
        };
        let (gx, gy) = godh_key.public_xy_be();
        let godh = SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA256, 0, 0, &gx, &gy);
        Ok(OwnerSession {
            godh,
            session,
            policy,
            tek,
            tik,
        })
    }

    /// The GODH certificate (LAUNCH_START `dh_cert`).
    pub fn godh(&self) -> &SevCert {
        &self.godh
    }
    /// The 128-byte session blob (LAUNCH_START `session`).
    pub fn session(&self) -> &SevSession {
        &self.session
    }
    /// The policy the session MACs.
    pub fn policy(&self) -> u32 {
        self.policy
    }
    /// The transport encryption key (for LAUNCH_SECRET packets).
    pub fn tek(&self) -> &[u8; 16] {
        &self.tek
    }
    /// The transport integrity key (measurement, packet MACs).
    pub fn tik(&self) -> &[u8; 16] {
        &self.tik
    }
    /// sevctl's `N_godh.b64` contents: base64 of the 0x824-byte GODH.
    pub fn godh_b64(&self) -> String {
        b64_encode(zerocopy::IntoBytes::as_bytes(&self.godh))
    }
    /// sevctl's `N_session.b64` contents: base64 of the 128-byte session.
    pub fn session_b64(&self) -> String {
        b64_encode(zerocopy::IntoBytes::as_bytes(&self.session))
    }
}

/// The platform side of LAUNCH_START with a session (§3.1, §3.2): GODH sanity check
/// (usage PDH, algo ECDH_SHA256, P-384), Z = ECDH(PDH private, GODH), KEK/KIK, wrap_mac
/// checked before unwrapping, then policy_mac for `policy`. Returns (TEK, TIK).
pub fn open_session(
    pdh_key: &EcdhP384,
    godh: &SevCert,
    session: &SevSession,
    policy: u32,
) -> Result<(TransportKey, TransportKey), OpenError> {
    // `sev_cert_sanity_check(cert, PDH, ECDH_SHA256)` (§2.3).
    if godh.version != 1 {
        return Err(OpenError::InvalidCertificate(format!(
            "version {} is not 1",
            godh.version
        )));
    }
    if SevUsage(godh.pubkey_usage) != SevUsage::PDH
        || SevAlgo(godh.pubkey_algo) != SevAlgo::ECDH_SHA256
    {
        return Err(OpenError::InvalidCertificate(format!(
            "key {:?} / {:?} is not PDH / ECDH_SHA256",
            SevUsage(godh.pubkey_usage),
            SevAlgo(godh.pubkey_algo)
        )));
    }
    ecc_key(godh).map_err(OpenError::InvalidCertificate)?;
    let p = godh
        .ecc_pubkey()
        .ok_or_else(|| OpenError::InvalidCertificate("not an ECC key".into()))?;
    let z = pdh_key
        .shared_x_be(&p.x, &p.y)
        .map_err(|e| OpenError::InvalidCertificate(e.to_string()))?;
    let s = derive_session_secrets(&z, &session.nonce);
    let (tek, tik) = unwrap_transport_keys(
        &s.kek,
        &s.kik,
        &session.wrap_iv,
        &session.wrap_tk,
        &session.wrap_mac,
    )
    .map_err(|MacMismatch| OpenError::WrapMac)?;
    if !ct_eq(&policy_mac(&tik, policy), &session.policy_mac) {
        return Err(OpenError::PolicyMac(policy));
    }
    Ok((tek, tik))
}

/// The policy value sevctl 0.6.2's `session` (the sev crate's `Policy::from(u32)`)
/// actually MACs for the `policy` typed (sev-legacy.md §9.3): only the six flag bits
/// 0–5 are kept, and bits 16–31 are read as a u16 `v` whose bits 4–7 become the API
/// major (bits 16–23) and bits 0–3 the API minor (bits 24–31). Equal to `policy` only
/// when bits 6–31 are zero; otherwise a firmware given the typed policy answers
/// BAD_MEASUREMENT. For diagnosing sevctl-made sessions (`open_session` with this value
/// succeeds where the typed one fails).
pub fn sevctl_macs_policy(policy: u32) -> u32 {
    let flags = policy & 0x3F;
    let v = policy >> 16;
    let major = (v >> 4) & 0xF;
    let minor = v & 0xF;
    flags | (major << 16) | (minor << 24)
}

/// Base64 as sevctl writes it (standard alphabet, padded, no newline).
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 as QEMU and sevctl read it (standard alphabet; surrounding whitespace and
/// line breaks ignored).
pub fn b64_decode(text: &str) -> Result<Vec<u8>, SevError> {
    let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|e| SevError::Format(format!("not base64: {e}")))
}

/// What the launch measurement covers besides TIK and mnonce (§3.4): the firmware's
/// API version and build (PLATFORM_STATUS), the policy and the launch digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeasureInputs {
    /// Firmware API major.
    pub api_major: u8,
    /// Firmware API minor.
    pub api_minor: u8,
    /// Firmware build.
    pub build: u8,
    /// Guest policy.
    pub policy: u32,
    /// Launch digest (SHA-256 of everything LAUNCH_UPDATE_DATA/VMSA measured).
    pub launch_digest: [u8; 32],
}

/// measure ‖ mnonce, the 48 bytes LAUNCH_MEASURE returns (and QEMU's
/// `query-sev-launch-measure` base64-encodes, and `sevctl measurement build` prints).
pub fn launch_measure_blob(tik: &[u8; 16], m: &MeasureInputs, mnonce: &[u8; 16]) -> [u8; 48] {
    let measure = launch_measure(
        tik,
        m.api_major,
        m.api_minor,
        m.build,
        m.policy,
        &m.launch_digest,
        mnonce,
    );
    let mut out = [0u8; 48];
    out[..32].copy_from_slice(&measure);
    out[32..].copy_from_slice(mnonce);
    out
}

/// Check a LAUNCH_MEASURE blob against the expected inputs: recompute HMAC(TIK, …) with
/// the blob's mnonce and compare in constant time.
pub fn check_measurement(
    tik: &[u8; 16],
    m: &MeasureInputs,
    blob: &[u8; 48],
) -> Result<(), MacMismatch> {
    let mut mnonce = [0u8; 16];
    mnonce.copy_from_slice(&blob[32..]);
    let want = launch_measure_blob(tik, m, &mnonce);
    if ct_eq(&want[..32], &blob[..32]) {
        Ok(())
    } else {
        Err(MacMismatch)
    }
}

/// GUID of sevctl's secret table (`sevctl:src/secret.rs`, §8.3).
pub const SECRET_TABLE_GUID: Guid = Guid::parse("1e74f542-71dd-4d66-963e-ef4287ff173b");

/// The largest LAUNCH_SECRET payload the firmware takes (`guest_len` ≤ 0x5000, §3.5).
pub const MAX_SECRET_LEN: usize = 0x5000;

/// Parse a GUID's text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (EFI byte order).
pub fn parse_guid(text: &str) -> Result<Guid, SevError> {
    let t = text.trim();
    let ok = t.len() == 36
        && t.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !ok {
        return Err(SevError::Format(format!(
            "'{text}' is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        )));
    }
    Ok(Guid::parse(t))
}

/// One secret of the table.
pub struct SecretEntry {
    /// Its GUID (the guest looks secrets up by it).
    pub guid: Guid,
    /// The secret bytes.
    pub data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("guid", &self.guid)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// Length of an entry header: GUID ‖ u32 length.
const ENTRY_HEADER: usize = 20;

/// sevctl's secret table: GUID ‖ u32 total length ‖ entries (GUID ‖ u32 length
/// including the 20-byte header ‖ data), zero-padded to a multiple of 16.
pub fn secret_table(entries: &[SecretEntry]) -> Result<Zeroizing<Vec<u8>>, SevError> {
    let body: usize = entries.iter().map(|e| ENTRY_HEADER + e.data.len()).sum();
    let total = ENTRY_HEADER + body;
    let padded = total.div_ceil(16) * 16;
    if padded > MAX_SECRET_LEN {
        return Err(SevError::Format(format!(
            "secret table of {padded} bytes exceeds the firmware's {MAX_SECRET_LEN:#x}-byte LAUNCH_SECRET limit"
        )));
    }
    let mut t = Zeroizing::new(Vec::with_capacity(padded));
    t.extend_from_slice(&SECRET_TABLE_GUID.0);
    t.extend_from_slice(&(total as u32).to_le_bytes());
    for e in entries {
        t.extend_from_slice(&e.guid.0);
        t.extend_from_slice(&((ENTRY_HEADER + e.data.len()) as u32).to_le_bytes());
        t.extend_from_slice(&e.data);
    }
    t.resize(padded, 0);
    Ok(t)
}

/// Parse a secret table (as OVMF does): the table GUID, its length, the entries.
pub fn parse_secret_table(bytes: &[u8]) -> Result<Vec<SecretEntry>, SevError> {
    let bad = |m: String| SevError::Format(format!("secret table: {m}"));
    let head = bytes
        .get(..ENTRY_HEADER)
        .ok_or_else(|| bad(format!("{} bytes, shorter than its header", bytes.len())))?;
    if head[..16] != SECRET_TABLE_GUID.0 {
        return Err(bad(
            "does not start with GUID 1e74f542-71dd-4d66-963e-ef4287ff173b".into(),
        ));
    }
    let total = u32::from_le_bytes([head[16], head[17], head[18], head[19]]) as usize;
    if total < ENTRY_HEADER || total > bytes.len() {
        return Err(bad(format!(
            "length {total} outside {ENTRY_HEADER}..={}",
            bytes.len()
        )));
    }
    let mut out = Vec::new();
    let mut off = ENTRY_HEADER;
    while off < total {
        let h = bytes
            .get(off..off + ENTRY_HEADER)
            .filter(|_| off + ENTRY_HEADER <= total)
            .ok_or_else(|| bad(format!("entry at {off} runs past the table")))?;
        let len = u32::from_le_bytes([h[16], h[17], h[18], h[19]]) as usize;
        if len < ENTRY_HEADER || off + len > total {
            return Err(bad(format!("entry at {off} has length {len}")));
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&h[..16]);
        out.push(SecretEntry {
            guid: Guid(guid),
            data: Zeroizing::new(bytes[off + ENTRY_HEADER..off + len].to_vec()),
        });
        off += len;
    }
    Ok(out)
}

/// A LAUNCH_SECRET packet: the 52-byte header and the encrypted payload.
#[derive(Clone, Debug)]
pub struct SecretPacket {
    /// flags (0), IV, MAC.
    pub header: SevPacketHeader,
    /// AES-128-CTR(TEK, IV, plaintext).
    pub ciphertext: Vec<u8>,
}

/// Why a secret packet cannot be made or opened (the firmware status, §3.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Length 0, not a multiple of 16 or above 0x5000 (INVALID_LENGTH).
    #[error("INVALID_LENGTH: secret of {0} bytes (must be 16..=0x5000 and a multiple of 16)")]
    Length(usize),
    /// The packet MAC does not verify (BAD_MEASUREMENT).
    #[error("BAD_MEASUREMENT: the packet MAC does not verify under this TIK and measurement")]
    Mac,
    /// The COMPRESSED flag is set (UNSUPPORTED, checked after the MAC).
    #[error("UNSUPPORTED: packet flags {0:#x} set COMPRESSED")]
    Compressed(u32),
}

fn check_len(n: usize) -> Result<u32, SecretError> {
    if n == 0 || !n.is_multiple_of(16) || n > MAX_SECRET_LEN {
        return Err(SecretError::Length(n));
    }
    Ok(n as u32)
}

/// Encrypt and MAC `plaintext` for LAUNCH_SECRET (flags 0, as sevctl): `measure` is the
/// first 32 bytes of the LAUNCH_MEASURE blob.
pub fn seal_secret(
    tek: &[u8; 16],
    tik: &[u8; 16],
    measure: &[u8; 32],
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Result<SecretPacket, SecretError> {
    let len = check_len(plaintext.len())?;
    let mut ciphertext = plaintext.to_vec();
    aes128_ctr(tek, iv, &mut ciphertext);
    let mac = secret_packet_mac(tik, 0, iv, len, len, &ciphertext, measure);
    Ok(SecretPacket {
        header: SevPacketHeader {
            flags: 0,
            iv: *iv,
            mac,
        },
        ciphertext,
    })
}

/// What the firmware does with a packet (§3.5): lengths, the MAC in constant time,
/// decryption, then the COMPRESSED flag.
pub fn open_secret(
    tek: &[u8; 16],
    tik: &[u8; 16],
    measure: &[u8; 32],
    header: &SevPacketHeader,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let len = check_len(ciphertext.len())?;
    let flags = header.flags;
    let iv = header.iv;
    let want = secret_packet_mac(tik, flags, &iv, len, len, ciphertext, measure);
    if !ct_eq(&want, &header.mac) {
        return Err(SecretError::Mac);
    }
    let mut pt = Zeroizing::new(ciphertext.to_vec());
    aes128_ctr(tek, &iv, &mut pt);
    if flags & SEV_SECRET_FLAG_COMPRESSED != 0 {
        return Err(SecretError::Compressed(flags));
    }
    Ok(pt)
}
