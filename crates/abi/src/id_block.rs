//! SNP_LAUNCH_FINISH inputs: the ID block and the ID authentication information
//! structure (SNP ABI "ID Block" / "ID Authentication Information Structure"; AMD SEV
//! firmware `snp_mcmd_launch_finish_id_block_t`, `snp_mcmd_launch_finish_id_auth_page_t`).
//! Notes: shared/spec/snp-launch.md §7.1–§7.3.

use crate::GuestPolicy;
use crate::ecdsa::{EcdsaPublicKey, EcdsaSignature};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

crate::open_enum! {
    /// Signature algorithm word (ID_KEY_ALGO, AUTH_KEY_ALGO, report SIGNATURE_ALGO).
    pub struct SignatureAlgo(u32) {
        /// Not set (softsev writes this for AUTH_KEY_ALGO when no author key is used).
        INVALID = 0,
        /// ECDSA P-384 with SHA-384: the only algorithm the firmware accepts.
        ECDSA_P384_SHA384 = 1,
    }
}

/// Size of the ID block.
pub const ID_BLOCK_LEN: usize = 0x60;
/// Size of the ID authentication information structure.
pub const ID_AUTH_LEN: usize = 0x1000;

/// ID block version written by the tools (and the highest the ABI defines).
pub const ID_BLOCK_VERSION: u32 = 1;

/// The ID block (96 bytes): what the guest owner signs with the ID key.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IdBlock {
    /// LD: the expected launch digest.
    pub ld: [u8; 48],
    /// FAMILY_ID, chosen by the guest owner; copied to the report.
    pub family_id: [u8; 16],
    /// IMAGE_ID, chosen by the guest owner; copied to the report.
    pub image_id: [u8; 16],
    /// VERSION of the structure (1).
    pub version: u32,
    /// GUEST_SVN; copied to the report.
    pub guest_svn: u32,
    /// POLICY: must equal the policy given to SNP_LAUNCH_START.
    pub policy: u64,
}

crate::assert_layout!(
    IdBlock,
    size = ID_BLOCK_LEN,
    ld = 0x00,
    family_id = 0x30,
    image_id = 0x40,
    version = 0x50,
    guest_svn = 0x54,
    policy = 0x58,
);

/// Why bytes do not parse as an ID block or ID authentication structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdLayoutError {
    /// The input has the wrong size.
    #[error("{what}: {len} bytes, expected {expected}")]
    Length {
        /// "ID block" or "ID auth".
        what: &'static str,
        /// Size given.
        len: usize,
        /// Size required.
        expected: usize,
    },
}

impl IdBlock {
    /// Parse exactly [`ID_BLOCK_LEN`] bytes.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, IdLayoutError> {
        Self::read_from_bytes(bytes).map_err(|_| IdLayoutError::Length {
            what: "ID block",
            len: bytes.len(),
            expected: ID_BLOCK_LEN,
        })
    }

    /// The 96 wire bytes (what ID_BLOCK_SIG signs).
    pub fn as_wire(&self) -> &[u8] {
        self.as_bytes()
    }

    /// The POLICY field as a [`GuestPolicy`].
    pub fn guest_policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy)
    }
}

/// The ID authentication information structure (4096 bytes): signatures over the ID
/// block (by the ID key) and over the ID key (by the optional author key), and both
/// public keys.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IdAuth {
    /// ID_KEY_ALGO ([`SignatureAlgo`]).
    pub id_key_algo: u32,
    /// AUTH_KEY_ALGO ([`SignatureAlgo`]); checked only when the author key is enabled.
    pub auth_key_algo: u32,
    /// Reserved.
    pub _reserved_08: [u8; 0x38],
    /// ID_BLOCK_SIG: ID key's signature over the 96-byte ID block.
    pub id_block_sig: EcdsaSignature,
    /// ID_KEY: the ID public key.
    pub id_key: EcdsaPublicKey,
    /// Reserved.
    pub _reserved_644: [u8; 0x3C],
    /// ID_KEY_SIG: author key's signature over the 0x404-byte ID_KEY field.
    pub id_key_sig: EcdsaSignature,
    /// AUTHOR_KEY: the author public key.
    pub author_key: EcdsaPublicKey,
    /// Reserved.
    pub _reserved_c84: [u8; 0x37C],
}

crate::assert_layout!(
    IdAuth,
    size = ID_AUTH_LEN,
    id_key_algo = 0x000,
    auth_key_algo = 0x004,
    _reserved_08 = 0x008,
    id_block_sig = 0x040,
    id_key = 0x240,
    _reserved_644 = 0x644,
    id_key_sig = 0x680,
    author_key = 0x880,
    _reserved_c84 = 0xC84,
);

impl Default for IdAuth {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdAuth {
    /// Parse exactly [`ID_AUTH_LEN`] bytes. Reserved bytes are kept as given (the
    /// firmware does not check them).
    pub fn from_wire(bytes: &[u8]) -> Result<Self, IdLayoutError> {
        Self::read_from_bytes(bytes).map_err(|_| IdLayoutError::Length {
            what: "ID auth",
            len: bytes.len(),
            expected: ID_AUTH_LEN,
        })
    }

    /// The 4096 wire bytes.
    pub fn as_wire(&self) -> &[u8] {
        self.as_bytes()
    }

    /// ID_KEY_ALGO as a [`SignatureAlgo`].
    pub fn id_key_algo(&self) -> SignatureAlgo {
        SignatureAlgo(self.id_key_algo)
    }

    /// AUTH_KEY_ALGO as a [`SignatureAlgo`].
    pub fn auth_key_algo(&self) -> SignatureAlgo {
        SignatureAlgo(self.auth_key_algo)
    }

    /// Whether every reserved byte (of the page, both signatures and both keys) is zero,
    /// as the tools write it. The firmware does not require this.
    pub fn reserved_is_zero(&self) -> bool {
        let z = |b: &[u8]| b.iter().all(|&x| x == 0);
        z(&self._reserved_08)
            && z(&self._reserved_644)
            && z(&self._reserved_c84)
            && z(&self.id_block_sig._reserved_90)
            && z(&self.id_key_sig._reserved_90)
            && z(&self.id_key._reserved_94)
            && z(&self.author_key._reserved_94)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lengths() {
        let b = IdBlock::from_wire(&[0u8; ID_BLOCK_LEN]).unwrap();
        assert_eq!(b.as_bytes(), &[0u8; ID_BLOCK_LEN]);
        assert_eq!(
            IdBlock::from_wire(&[0u8; 95]),
            Err(IdLayoutError::Length {
                what: "ID block",
                len: 95,
                expected: 96
            })
        );
        assert!(IdAuth::from_wire(&[0u8; ID_AUTH_LEN + 1]).is_err());
        let mut raw = vec![0u8; ID_AUTH_LEN];
        raw[0] = 1;
        raw[0x240] = 2;
        raw[0x880] = 2;
        let a = IdAuth::from_wire(&raw).unwrap();
        assert_eq!(a.id_key_algo(), SignatureAlgo::ECDSA_P384_SHA384);
        assert_eq!(a.id_key.curve, 2);
        assert_eq!(a.author_key.curve, 2);
        assert!(a.reserved_is_zero());
        assert_eq!(a.as_bytes(), &raw[..]);
        raw[0xFFF] = 1;
        assert!(!IdAuth::from_wire(&raw).unwrap().reserved_is_zero());
    }

    #[test]
    fn block_fields_little_endian() {
        let mut raw = [0u8; ID_BLOCK_LEN];
        raw[0x50] = 1;
        raw[0x54] = 7;
        raw[0x5A] = 3;
        let b = IdBlock::from_wire(&raw).unwrap();
        assert_eq!(b.version, 1);
        assert_eq!(b.guest_svn, 7);
        assert_eq!(b.policy, 0x30000);
        assert_eq!(b.guest_policy(), GuestPolicy(0x30000));
    }
}
