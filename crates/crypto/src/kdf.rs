//! NIST SP 800-108 key derivation in counter mode with HMAC-SHA-384 as the PRF.
//!
//! Each block is `HMAC(key, [i]_32 ‖ label ‖ 0x00 ‖ context ‖ [L]_32)` with `i` counting
//! from 1 and `L` the output length in bits, both big-endian (SP 800-108r1 §4.1). The
//! firmware model uses it for VCEK seeds, hash sticks and MSG_KEY_REQ derived keys.

use crate::hash::{SHA384_LEN, hmac_sha384};
use zeroize::Zeroize;

/// Fill `out` with `KDF(key, label, context)`. `out.len()` must be below 2^29 bytes
/// (always true for key-sized outputs).
pub fn sp800_108_hmac_sha384(key: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let bits = u32::try_from(out.len().saturating_mul(8)).unwrap_or(u32::MAX);
    let l = bits.to_be_bytes();
    for (i, chunk) in out.chunks_mut(SHA384_LEN).enumerate() {
        let counter = u32::try_from(i + 1).unwrap_or(u32::MAX).to_be_bytes();
        let mut block = hmac_sha384(key, &[&counter, label, &[0u8], context, &l]);
        chunk.copy_from_slice(&block[..chunk.len()]);
        block.zeroize();
    }
}

/// `N` bytes of `KDF(key, label, context)`.
pub fn derive<const N: usize>(key: &[u8], label: &[u8], context: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    sp800_108_hmac_sha384(key, label, context, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_construction() {
        let out: [u8; 64] = derive(b"k", b"lab", b"ctx");
        let l = 512u32.to_be_bytes();
        let b1 = hmac_sha384(b"k", &[&1u32.to_be_bytes(), b"lab", &[0], b"ctx", &l]);
        let b2 = hmac_sha384(b"k", &[&2u32.to_be_bytes(), b"lab", &[0], b"ctx", &l]);
        assert_eq!(&out[..48], &b1[..]);
        assert_eq!(&out[48..], &b2[..16]);
    }

    #[test]
    fn length_label_and_context_separate_outputs() {
        let a: [u8; 32] = derive(b"k", b"lab", b"ctx");
        let b: [u8; 48] = derive(b"k", b"lab", b"ctx");
        assert_ne!(a[..], b[..32], "L is mixed in");
        assert_ne!(a, derive::<32>(b"k", b"lac", b"ctx"));
        assert_ne!(a, derive::<32>(b"k", b"lab", b"cty"));
        assert_ne!(a, derive::<32>(b"K", b"lab", b"ctx"));
        assert_eq!(a, derive::<32>(b"k", b"lab", b"ctx"));
    }
}
