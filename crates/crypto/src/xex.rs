//! AES-128 in XEX form with a tweak taken from the system physical address: the cipher
//! of the SME/SEV memory-encryption engine in the memory controller (Zen 2 and later
//! use an address-tweaked mode so that equal plaintext at two addresses gives different
//! ciphertext and ciphertext moved to another address decrypts to garbage).
//!
//! AMD does not publish the exact tweak function, so softsev defines its own and uses
//! it consistently (the ciphertext never leaves the model, so no interoperability is
//! at stake). For the 16-byte block at system physical address `a` (16-byte aligned):
//!
//! ```text
//! N  = a >> 12                                (the 4 KiB page frame number)
//! j  = ((a & 0xFFF) >> 4) + 1                 (block index in the page, from 1)
//! T  = E_K(LE128(N)) ⊗ x^j                    (GF(2^128), polynomial x^128+x^7+x^2+x+1,
//!                                              little-endian bit order as in IEEE 1619)
//! C  = E_K(P ⊕ T) ⊕ T
//! ```
//!
//! This is Rogaway's single-key XEX construction; the exponent starts at 1 so that the
//! tweak is never the raw encryption of a page number. One AES call per page derives
//! the page tweak; the blocks of a page are then processed several at a time through
//! the `aes` crate's `encrypt_blocks` (AES-NI pipelining where the CPU has it).
//!
//! Keys are held in an [`XexKey`] whose AES key schedule is zeroized on drop and whose
//! `Debug` prints nothing secret.

use aes::Aes128;
use aes::cipher::{Block, BlockDecrypt, BlockEncrypt, Key, KeyInit};
use thiserror::Error;
use zeroize::Zeroize;

/// Key length of the engine (AES-128).
pub const XEX_KEY_LEN: usize = 16;
/// Cipher block size; addresses and lengths must be multiples of it.
pub const XEX_BLOCK_LEN: usize = 16;
/// The tweak changes per 4 KiB page.
pub const XEX_PAGE_LEN: u64 = 4096;

/// How many blocks are handed to the cipher at once.
const PAR_BLOCKS: usize = 32;

/// Bad input to the XEX engine.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XexError {
    /// The start address is not 16-byte aligned.
    #[error("XEX span at address {addr:#x} is not 16-byte aligned")]
    Misaligned {
        /// The address given.
        addr: u64,
    },
    /// The length is not a multiple of 16.
    #[error("XEX span length {len} at address {addr:#x} is not a multiple of 16")]
    BadLength {
        /// The address given.
        addr: u64,
        /// The length given.
        len: usize,
    },
    /// The span runs past the end of the 64-bit address space.
    #[error("XEX span of {len} bytes at address {addr:#x} overflows the address space")]
    Overflow {
        /// The address given.
        addr: u64,
        /// The length given.
        len: usize,
    },
}

/// An AES-128 memory-encryption key. The key schedule is zeroized on drop (the `aes`
/// crate's `zeroize` feature) and `Debug` never prints it.
#[derive(Clone)]
pub struct XexKey {
    cipher: Aes128,
}

impl std::fmt::Debug for XexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XexKey(<secret>)")
    }
}

/// Multiply a tweak by x in GF(2^128) (IEEE 1619 little-endian convention).
#[inline(always)]
fn mul_x(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

impl XexKey {
    /// A key from 16 raw bytes. The caller's copy is not touched; keep it in a
    /// `Zeroizing` buffer.
    pub fn new(key: &[u8; XEX_KEY_LEN]) -> Self {
        let mut raw: Key<Aes128> = (*key).into();
        let cipher = Aes128::new(&raw);
        let bytes: &mut [u8] = &mut raw;
        bytes.zeroize();
        Self { cipher }
    }

    /// Encrypt `data` in place as the memory controller would store it at system
    /// physical address `addr`.
    pub fn encrypt(&self, addr: u64, data: &mut [u8]) -> Result<(), XexError> {
        self.process(addr, data, true)
    }

    /// Decrypt `data` in place, read from system physical address `addr`.
    pub fn decrypt(&self, addr: u64, data: &mut [u8]) -> Result<(), XexError> {
        self.process(addr, data, false)
    }

    /// The tweak of the first block (index 0) of page frame `pfn`, before the `x^1`
    /// step: `E_K(LE128(pfn))`.
    fn page_tweak(&self, pfn: u64) -> u128 {
        let mut b: Block<Aes128> = u128::from(pfn).to_le_bytes().into();
        self.cipher.encrypt_block(&mut b);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&b);
        u128::from_le_bytes(bytes)
    }

    fn process(&self, addr: u64, data: &mut [u8], encrypt: bool) -> Result<(), XexError> {
        if !addr.is_multiple_of(XEX_BLOCK_LEN as u64) {
            return Err(XexError::Misaligned { addr });
        }
        if !data.len().is_multiple_of(XEX_BLOCK_LEN) {
            return Err(XexError::BadLength {
                addr,
                len: data.len(),
            });
        }
        if addr.checked_add(data.len() as u64).is_none() {
            return Err(XexError::Overflow {
                addr,
                len: data.len(),
            });
        }
        let mut a = addr;
        let mut rest = data;
        while !rest.is_empty() {
            let in_page = (XEX_PAGE_LEN - (a % XEX_PAGE_LEN)) as usize;
            let take = in_page.min(rest.len());
            let (span, tail) = rest.split_at_mut(take);
            let mut t = mul_x(self.page_tweak(a / XEX_PAGE_LEN));
            for _ in 0..(a % XEX_PAGE_LEN) / XEX_BLOCK_LEN as u64 {
                t = mul_x(t);
            }
            self.run(t, span, encrypt);
            a += take as u64;
            rest = tail;
        }
        Ok(())
    }

    /// XEX over consecutive blocks of one page, starting with tweak `t`.
    fn run(&self, mut t: u128, data: &mut [u8], encrypt: bool) {
        let mut blocks: [Block<Aes128>; PAR_BLOCKS] = Default::default();
        let mut tweaks = [0u128; PAR_BLOCKS];
        for chunk in data.chunks_mut(PAR_BLOCKS * XEX_BLOCK_LEN) {
            let n = chunk.len() / XEX_BLOCK_LEN;
            for ((b, tw), src) in blocks
                .iter_mut()
                .zip(tweaks.iter_mut())
                .zip(chunk.chunks_exact(XEX_BLOCK_LEN))
            {
                let mut v = [0u8; 16];
                v.copy_from_slice(src);
                *tw = t;
                b.copy_from_slice(&(u128::from_le_bytes(v) ^ t).to_le_bytes());
                t = mul_x(t);
            }
            let active = blocks.get_mut(..n).unwrap_or_default();
            if encrypt {
                self.cipher.encrypt_blocks(active);
            } else {
                self.cipher.decrypt_blocks(active);
            }
            for ((b, tw), dst) in blocks
                .iter()
                .zip(tweaks.iter())
                .zip(chunk.chunks_exact_mut(XEX_BLOCK_LEN))
            {
                let mut v = [0u8; 16];
                v.copy_from_slice(b);
                dst.copy_from_slice(&(u128::from_le_bytes(v) ^ tw).to_le_bytes());
            }
        }
        blocks.iter_mut().for_each(|b| b.fill(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> XexKey {
        XexKey::new(&[b; 16])
    }

    #[test]
    fn roundtrip_and_address_binding() {
        let k = key(1);
        let plain: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        let mut c = plain.clone();
        k.encrypt(0x10_0000, &mut c).unwrap();
        assert_ne!(c, plain);
        let mut d = c.clone();
        k.decrypt(0x10_0000, &mut d).unwrap();
        assert_eq!(d, plain);
        // Moved ciphertext decrypts to garbage.
        let mut moved = c.clone();
        k.decrypt(0x20_0000, &mut moved).unwrap();
        assert_ne!(moved, plain);
        // Another key decrypts to garbage.
        let mut other = c.clone();
        key(2).decrypt(0x10_0000, &mut other).unwrap();
        assert_ne!(other, plain);
    }

    #[test]
    fn same_plaintext_two_addresses_and_blocks_differ() {
        let k = key(3);
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        k.encrypt(0x1000, &mut a).unwrap();
        k.encrypt(0x2000, &mut b).unwrap();
        assert_ne!(a, b);
        // Within one page, equal plaintext blocks give distinct ciphertext blocks.
        let blocks: Vec<&[u8]> = a.chunks(16).collect();
        for i in 1..blocks.len() {
            assert_ne!(blocks[0], blocks[i], "block {i} equals block 0");
        }
    }

    #[test]
    fn partial_spans_match_whole_page() {
        let k = key(9);
        let plain: Vec<u8> = (0..3 * 4096u32).map(|i| (i ^ (i >> 8)) as u8).collect();
        let mut whole = plain.clone();
        k.encrypt(0x7000, &mut whole).unwrap();
        // Encrypt the same bytes in odd pieces that cross page boundaries.
        let mut pieces = plain.clone();
        let cuts = [0usize, 16, 48, 4080, 4112, 8192, 9000 / 16 * 16, 3 * 4096];
        for w in cuts.windows(2) {
            k.encrypt(0x7000 + w[0] as u64, &mut pieces[w[0]..w[1]])
                .unwrap();
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn tweak_first_block_follows_the_definition() {
        // C = E(P ^ T) ^ T with T = E(LE128(pfn)) * x for block 0.
        let raw = [0x42u8; 16];
        let k = XexKey::new(&raw);
        let aes = Aes128::new(&raw.into());
        let pfn = 0x1234u64;
        let mut tb: Block<Aes128> = u128::from(pfn).to_le_bytes().into();
        aes.encrypt_block(&mut tb);
        let ts: &[u8] = &tb;
        let t = mul_x(u128::from_le_bytes(ts.try_into().unwrap()));
        let p = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        let mut pb: Block<Aes128> = (p ^ t).to_le_bytes().into();
        aes.encrypt_block(&mut pb);
        let ps: &[u8] = &pb;
        let expect = u128::from_le_bytes(ps.try_into().unwrap()) ^ t;
        let mut data = p.to_le_bytes();
        k.encrypt(pfn << 12, &mut data).unwrap();
        assert_eq!(u128::from_le_bytes(data), expect);
    }

    #[test]
    fn rejects_bad_spans() {
        let k = key(0);
        let mut b = [0u8; 32];
        assert_eq!(k.encrypt(8, &mut b), Err(XexError::Misaligned { addr: 8 }));
        assert!(matches!(
            k.encrypt(0, &mut b[..15]),
            Err(XexError::BadLength { .. })
        ));
        assert!(matches!(
            k.encrypt(u64::MAX - 15, &mut b),
            Err(XexError::Overflow { .. })
        ));
        assert_eq!(format!("{k:?}"), "XexKey(<secret>)");
    }

    #[test]
    fn mul_x_reduces() {
        assert_eq!(mul_x(1), 2);
        assert_eq!(mul_x(1u128 << 127), 0x87);
    }
}
