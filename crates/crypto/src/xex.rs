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
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    Block, BlockBackend, BlockClosure, BlockDecrypt, BlockEncrypt, BlockSizeUser, Key, KeyInit,
    ParBlocks,
};
use thiserror::Error;
use zeroize::Zeroize;

/// Key length of the engine (AES-128).
pub const XEX_KEY_LEN: usize = 16;
/// Cipher block size; addresses and lengths must be multiples of it.
pub const XEX_BLOCK_LEN: usize = 16;
/// The tweak changes per 4 KiB page.
pub const XEX_PAGE_LEN: u64 = 4096;

/// Backend parallelism the fast path is written for (the AES-NI backend's 8 blocks);
/// other backends go block by block.
const PAR: usize = 8;

/// `b·(x^7+x^2+x+1)` carry-less, for every byte `b`: the reduction of the 8 bits
/// shifted out by a multiplication by x^8.
const REDUCE8: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let mut r = 0u16;
        let mut i = 0;
        while i < 8 {
            if b & (1 << i) != 0 {
                r ^= 0x87 << i;
            }
            i += 1;
        }
        t[b] = r;
        b += 1;
    }
    t
};

/// Multiply a tweak by x^8 in GF(2^128).
#[inline(always)]
fn mul_x8(t: u128) -> u128 {
    (t << 8) ^ REDUCE8[(t >> 120) as usize] as u128
}

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
    /// Source and destination of an out-of-place operation differ in length.
    #[error("XEX at address {addr:#x}: source has {src} bytes, destination {dst}")]
    LengthMismatch {
        /// The address given.
        addr: u64,
        /// Source length.
        src: usize,
        /// Destination length.
        dst: usize,
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
    (t << 1) ^ (((t >> 127) as u64).wrapping_neg() as u128 & 0x87)
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
        self.process(addr, None, data, true)
    }

    /// Decrypt `data` in place, read from system physical address `addr`.
    pub fn decrypt(&self, addr: u64, data: &mut [u8]) -> Result<(), XexError> {
        self.process(addr, None, data, false)
    }

    /// Encrypt `src` into `dst` (same length) for address `addr`, in one pass.
    pub fn encrypt_to(&self, addr: u64, src: &[u8], dst: &mut [u8]) -> Result<(), XexError> {
        self.check_pair(addr, src, dst)?;
        self.process(addr, Some(src), dst, true)
    }

    /// Decrypt `src` (read from address `addr`) into `dst` (same length), in one pass.
    pub fn decrypt_to(&self, addr: u64, src: &[u8], dst: &mut [u8]) -> Result<(), XexError> {
        self.check_pair(addr, src, dst)?;
        self.process(addr, Some(src), dst, false)
    }

    fn check_pair(&self, addr: u64, src: &[u8], dst: &[u8]) -> Result<(), XexError> {
        if src.len() != dst.len() {
            return Err(XexError::LengthMismatch {
                addr,
                src: src.len(),
                dst: dst.len(),
            });
        }
        Ok(())
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

    fn process(
        &self,
        addr: u64,
        src: Option<&[u8]>,
        data: &mut [u8],
        encrypt: bool,
    ) -> Result<(), XexError> {
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
        let mut src_rest = src;
        while !rest.is_empty() {
            let in_page = (XEX_PAGE_LEN - (a % XEX_PAGE_LEN)) as usize;
            let take = in_page.min(rest.len());
            let (span, tail) = rest.split_at_mut(take);
            let (src_span, src_tail) = match src_rest {
                Some(s) => {
                    let (h, t) = s.split_at(take.min(s.len()));
                    (Some(h), Some(t))
                }
                None => (None, None),
            };
            let mut t = mul_x(self.page_tweak(a / XEX_PAGE_LEN));
            for _ in 0..(a % XEX_PAGE_LEN) / XEX_BLOCK_LEN as u64 {
                t = mul_x(t);
            }
            let pass = XexPass {
                src: src_span,
                data: span,
                tweak: t,
            };
            if encrypt {
                self.cipher.encrypt_with_backend(pass);
            } else {
                self.cipher.decrypt_with_backend(pass);
            }
            a += take as u64;
            rest = tail;
            src_rest = src_tail;
        }
        Ok(())
    }
}

/// One XEX pass over a span, run inside the cipher backend so that whole
/// `ParBlocks` (8 blocks with AES-NI) are tweaked, ciphered and tweaked again while
/// in registers.
struct XexPass<'a> {
    /// Source blocks; `None` = in place (read from `data`).
    src: Option<&'a [u8]>,
    data: &'a mut [u8],
    tweak: u128,
}

impl BlockSizeUser for XexPass<'_> {
    type BlockSize = U16;
}

/// `dst = a ^ b` over 16 bytes.
#[inline(always)]
fn xor3(dst: &mut [u8], a: &[u8], b: &[u8; 16]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x ^ y;
    }
}

#[inline(always)]
fn load(b: &[u8]) -> u128 {
    let mut v = [0u8; 16];
    v.copy_from_slice(b);
    u128::from_le_bytes(v)
}

impl BlockClosure for XexPass<'_> {
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let par = <B::ParBlocksSize as Unsigned>::USIZE;
        let mut t = self.tweak;
        let mut rest: &mut [u8] = self.data;
        let mut src_rest: Option<&[u8]> = self.src;
        if par == PAR && rest.len() >= PAR * XEX_BLOCK_LEN {
            // PAR independent tweak chains, each advanced by x^PAR per round. Tweaks
            // are kept as bytes and XORed bytewise so that the compiler emits 16-byte
            // vector loads/stores (no store-forwarding stalls against the cipher's
            // 16-byte block loads).
            let mut tweaks = [[0u8; 16]; PAR];
            for tw in tweaks.iter_mut() {
                *tw = t.to_le_bytes();
                t = mul_x(t);
            }
            let round = PAR * XEX_BLOCK_LEN;
            let mut chunks = rest.chunks_exact_mut(round);
            let mut blocks = ParBlocks::<B>::default();
            let mut off = 0usize;
            for chunk in &mut chunks {
                let input: &[u8] = match src_rest.and_then(|s| s.get(off..off + round)) {
                    Some(s) => s,
                    None => chunk,
                };
                off += round;
                for ((b, tw), src) in blocks
                    .iter_mut()
                    .zip(tweaks.iter())
                    .zip(input.chunks_exact(XEX_BLOCK_LEN))
                {
                    xor3(b, src, tw);
                }
                backend.proc_par_blocks_inplace(&mut blocks);
                for ((b, tw), dst) in blocks
                    .iter()
                    .zip(tweaks.iter_mut())
                    .zip(chunk.chunks_exact_mut(XEX_BLOCK_LEN))
                {
                    xor3(dst, b, tw);
                    *tw = mul_x8(u128::from_le_bytes(*tw)).to_le_bytes();
                }
            }
            t = u128::from_le_bytes(tweaks[0]);
            rest = chunks.into_remainder();
            src_rest = src_rest.and_then(|s| s.get(off..));
        }
        for (i, dst) in rest.chunks_exact_mut(XEX_BLOCK_LEN).enumerate() {
            let input =
                match src_rest.and_then(|s| s.get(i * XEX_BLOCK_LEN..(i + 1) * XEX_BLOCK_LEN)) {
                    Some(s) => load(s),
                    None => load(dst),
                };
            let mut b: Block<B> = (input ^ t).to_le_bytes().into();
            backend.proc_block_inplace(&mut b);
            dst.copy_from_slice(&(load(&b) ^ t).to_le_bytes());
            b.fill(0);
            t = mul_x(t);
        }
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
    fn out_of_place_matches_in_place() {
        let k = key(5);
        let plain: Vec<u8> = (0..(2 * 4096 + 48) as u32)
            .map(|i| (i * 13) as u8)
            .collect();
        for (addr, range) in [
            (0x3000u64, 0..plain.len()),
            (0x3010, 16..4096 + 64),
            (0x4ff0, 0..48),
        ] {
            let src = &plain[range.clone()];
            let mut inplace = src.to_vec();
            k.encrypt(addr, &mut inplace).unwrap();
            let mut out = vec![0u8; src.len()];
            k.encrypt_to(addr, src, &mut out).unwrap();
            assert_eq!(out, inplace);
            let mut back = vec![0u8; src.len()];
            k.decrypt_to(addr, &out, &mut back).unwrap();
            assert_eq!(back, src);
        }
        let mut short = [0u8; 16];
        assert!(matches!(
            k.encrypt_to(0, &[0u8; 32], &mut short),
            Err(XexError::LengthMismatch { .. })
        ));
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
        let mut t = 0xdead_beef_0123_4567_89ab_cdef_fedc_ba98u128;
        for _ in 0..100 {
            let mut slow = t;
            for _ in 0..8 {
                slow = mul_x(slow);
            }
            assert_eq!(mul_x8(t), slow);
            t = slow ^ (t >> 3);
        }
    }
}
