//! The AEAD framing of SEV-SNP guest messages (SNP ABI "Guest Message Header";
//! shared/spec/snp-attestation.md §2.1–2.2), shared by the firmware model, which opens
//! requests and seals responses, and the guest side, which does the reverse.
//!
//! A message is the 0x60-byte header followed by the payload. The framing only needs
//! four facts about the header (its full layout lives in `softsev_abi::guest_msg`):
//!
//! * AUTHTAG at `0x00..0x20`: the 16-byte GCM tag, then 16 zero bytes;
//! * MSG_SEQNO, a little-endian u64 at `0x20`: the IV is these 8 bytes followed by
//!   four zero bytes;
//! * the additional authenticated data is header bytes `0x30..0x60`;
//! * the key is the 32-byte VMPCK the header's MSG_VMPCK names (chosen by the caller).

use crate::CryptoError;
use crate::aead::{Aes256Gcm, NONCE_LEN, TAG_LEN};

/// Header size.
pub const HEADER_SIZE: usize = 0x60;
/// Offset of MSG_SEQNO.
pub const SEQNO_OFFSET: usize = 0x20;
/// Start of the additional authenticated data.
pub const AAD_START: usize = 0x30;

fn split(msg: &mut [u8]) -> Result<(&mut [u8], &mut [u8]), CryptoError> {
    if msg.len() < HEADER_SIZE {
        return Err(CryptoError::Backend(
            "guest message shorter than its 0x60-byte header",
        ));
    }
    Ok(msg.split_at_mut(HEADER_SIZE))
}

fn nonce(header: &[u8]) -> [u8; NONCE_LEN] {
    let mut iv = [0u8; NONCE_LEN];
    if let Some(seq) = header.get(SEQNO_OFFSET..SEQNO_OFFSET + 8) {
        iv[..8].copy_from_slice(seq);
    }
    iv
}

/// Seal a guest message in place with an already-keyed cipher: `msg` is the header
/// (with MSG_SEQNO and the AAD fields set) followed by the plaintext payload; the
/// payload becomes ciphertext and AUTHTAG is written.
pub fn seal_with(cipher: &Aes256Gcm, msg: &mut [u8]) -> Result<(), CryptoError> {
    let (header, payload) = split(msg)?;
    let iv = nonce(header);
    let tag = cipher.seal(&iv, &header[AAD_START..HEADER_SIZE], payload)?;
    header[..TAG_LEN].copy_from_slice(&tag);
    header[TAG_LEN..2 * TAG_LEN].fill(0);
    Ok(())
}

/// Seal a guest message in place with the 32-byte key `vmpck` (see [`seal_with`]).
pub fn seal(vmpck: &[u8; 32], msg: &mut [u8]) -> Result<(), CryptoError> {
    seal_with(&Aes256Gcm::new(vmpck), msg)
}

/// Open a guest message in place with an already-keyed cipher: check the tag over
/// the AAD and the ciphertext, then decrypt the payload. On failure the payload is
/// zeroed and [`CryptoError::AeadAuth`] returned.
pub fn open_with(cipher: &Aes256Gcm, msg: &mut [u8]) -> Result<(), CryptoError> {
    let (header, payload) = split(msg)?;
    let iv = nonce(header);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&header[..TAG_LEN]);
    cipher.open(&iv, &header[AAD_START..HEADER_SIZE], payload, &tag)
}

/// Open a guest message in place with the 32-byte key `vmpck` (see [`open_with`]).
pub fn open(vmpck: &[u8; 32], msg: &mut [u8]) -> Result<(), CryptoError> {
    open_with(&Aes256Gcm::new(vmpck), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seqno: u64, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_SIZE];
        m[0x20..0x28].copy_from_slice(&seqno.to_le_bytes());
        m[0x30] = 1;
        m[0x31] = 1;
        m[0x32] = 0x60;
        m[0x34] = 5;
        m[0x35] = 1;
        m[0x36..0x38].copy_from_slice(&(payload.len() as u16).to_le_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn round_trip_and_every_bound_field_matters() {
        let key = [7u8; 32];
        let mut m = message(3, &[0x42; 32]);
        seal(&key, &mut m).unwrap();
        assert_ne!(&m[0x60..], &[0x42; 32]);
        assert!(m[16..32].iter().all(|&b| b == 0));
        let sealed = m.clone();
        open(&key, &mut m).unwrap();
        assert_eq!(&m[0x60..], &[0x42; 32]);

        // Tag, seqno (IV), AAD, ciphertext: each flip fails; bytes outside (0x28..0x30,
        // AUTHTAG tail) are not authenticated.
        for (i, must_fail) in [
            (0, true),
            (0x20, true),
            (0x30, true),
            (0x5F, true),
            (0x60, true),
        ]
        .into_iter()
        .chain([(0x28, false), (0x10, false)])
        {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(open(&key, &mut t).is_err(), must_fail, "byte {i:#x}");
        }
        let mut t = sealed.clone();
        assert_eq!(open(&[8u8; 32], &mut t), Err(CryptoError::AeadAuth));
        assert!(t[0x60..].iter().all(|&b| b == 0));
        assert!(open(&key, &mut [0u8; 0x5F]).is_err());
    }
}
