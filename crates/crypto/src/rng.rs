//! Randomness: the OS RNG, or a ChaCha20 stream seeded by the user so that a whole run
//! (keys, nonces, VMPCKs, report ids) is byte-identical for the same seed.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, OsRng, RngCore, SeedableRng};

/// A cryptographic RNG that is either the OS RNG or deterministic.
pub struct Rng(Inner);

enum Inner {
    Os,
    Seeded(Box<ChaCha20Rng>),
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Inner::Os => f.write_str("Rng(os)"),
            Inner::Seeded(_) => f.write_str("Rng(seeded)"),
        }
    }
}

impl Rng {
    /// The operating system's RNG.
    pub fn os() -> Self {
        Rng(Inner::Os)
    }

    /// A deterministic stream derived from `seed` (any length) and a domain `label`, so
    /// that independent consumers seeded from one user seed get independent streams.
    pub fn seeded(seed: &[u8], label: &str) -> Self {
        let key = crate::hash::hmac_sha256(b"softsev rng v1", &[label.as_bytes(), &[0], seed]);
        Rng(Inner::Seeded(Box::new(ChaCha20Rng::from_seed(key))))
    }

    /// Whether this RNG is deterministic.
    pub fn is_deterministic(&self) -> bool {
        matches!(self.0, Inner::Seeded(_))
    }

    /// A child RNG for a named purpose: seeded children are derived from 32 bytes of this
    /// stream plus the label; the OS RNG's children are the OS RNG.
    pub fn fork(&mut self, label: &str) -> Rng {
        match &mut self.0 {
            Inner::Os => Rng::os(),
            Inner::Seeded(r) => {
                let mut s = [0u8; 32];
                r.fill_bytes(&mut s);
                Rng::seeded(&s, label)
            }
        }
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.fill_bytes(buf)
    }

    /// `N` random bytes.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        self.fill(&mut a);
        a
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        match &mut self.0 {
            Inner::Os => OsRng.next_u32(),
            Inner::Seeded(r) => r.next_u32(),
        }
    }
    fn next_u64(&mut self) -> u64 {
        match &mut self.0 {
            Inner::Os => OsRng.next_u64(),
            Inner::Seeded(r) => r.next_u64(),
        }
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match &mut self.0 {
            Inner::Os => OsRng.fill_bytes(dest),
            Inner::Seeded(r) => r.fill_bytes(dest),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Rng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_reproducible_and_label_separated() {
        let a: [u8; 16] = Rng::seeded(b"s", "x").array();
        let b: [u8; 16] = Rng::seeded(b"s", "x").array();
        let c: [u8; 16] = Rng::seeded(b"s", "y").array();
        let d: [u8; 16] = Rng::seeded(b"t", "x").array();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let mut p = Rng::seeded(b"s", "x");
        let mut q = Rng::seeded(b"s", "x");
        assert_eq!(p.fork("k").array::<8>(), q.fork("k").array::<8>());
        assert!(p.is_deterministic());
        let o1: [u8; 16] = Rng::os().array();
        let o2: [u8; 16] = Rng::os().array();
        assert_ne!(o1, o2);
    }
}
