//! AMD's ECDSA wire structures (SNP ABI "ECDSA Signature Format" and "ECDSA Public Key
//! Format"; AMD SEV firmware `ecdsa_sig_t` / `ecc_pubkey_t`): used by the ID
//! authentication page and the attestation report signature.
//! Notes: shared/spec/snp-launch.md §7.2.
//!
//! Integers are 72-byte little-endian fields (the CCP's scalar width), zero-extended
//! from P-384's 48 bytes. The conversions here take and give the big-endian 48-byte
//! components that `softsev_crypto::ecdsa` uses (abi stays free of crypto; the
//! P-384 type conversions live in `softsev_measure::id_block`).

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Width of an AMD ECC scalar field (`ECC_SCALAR_SIZE_BYTES`).
pub const ECC_SCALAR_LEN: usize = 72;
/// Bytes of a P-384 component that may be non-zero in a 72-byte field.
pub const P384_LEN: usize = 48;

crate::open_enum! {
    /// ECC curve identifier (`ecc_curve_name_t`), the CURVE word of a public key.
    pub struct EcdsaCurve(u32) {
        /// Invalid / not set.
        INVALID = 0,
        /// secp256k1 (never accepted by the SNP commands).
        SECP256K1 = 1,
        /// NIST P-384 (secp384r1): the only curve SNP accepts.
        P384 = 2,
    }
}

/// Why a wire signature or public key does not convert to a P-384 value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcdsaLayoutError {
    /// The CURVE word is not [`EcdsaCurve::P384`].
    #[error("ECDSA public key: curve {0} is not P-384 (2)")]
    Curve(EcdsaCurve),
    /// A 72-byte field has non-zero bytes above the 48 a P-384 value can use.
    #[error("ECDSA {field}: bytes 48..72 of the 72-byte little-endian field are not zero")]
    Oversized {
        /// Which field ("signature R", "public key QX", ...).
        field: &'static str,
    },
}

/// 48 big-endian bytes → 72 little-endian bytes, zero-extended.
pub fn be48_to_le72(be: &[u8; P384_LEN]) -> [u8; ECC_SCALAR_LEN] {
    let mut out = [0u8; ECC_SCALAR_LEN];
    for (o, b) in out.iter_mut().zip(be.iter().rev()) {
        *o = *b;
    }
    out
}

/// 72 little-endian bytes → 48 big-endian bytes, if the top 24 bytes are zero.
pub fn le72_to_be48(
    le: &[u8; ECC_SCALAR_LEN],
    field: &'static str,
) -> Result<[u8; P384_LEN], EcdsaLayoutError> {
    let (low, high) = le.split_at(P384_LEN);
    if high.iter().any(|&b| b != 0) {
        return Err(EcdsaLayoutError::Oversized { field });
    }
    let mut out = [0u8; P384_LEN];
    for (o, b) in out.iter_mut().zip(low.iter().rev()) {
        *o = *b;
    }
    Ok(out)
}

/// ECDSA signature (0x200 bytes): R and S as 72-byte little-endian integers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EcdsaSignature {
    /// R, little-endian, zero-extended.
    pub r: [u8; ECC_SCALAR_LEN],
    /// S, little-endian, zero-extended.
    pub s: [u8; ECC_SCALAR_LEN],
    /// Reserved.
    pub _reserved_90: [u8; 0x170],
}

crate::assert_layout!(
    EcdsaSignature,
    size = 0x200,
    r = 0x00,
    s = 0x48,
    _reserved_90 = 0x90
);

impl Default for EcdsaSignature {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl EcdsaSignature {
    /// Size in bytes.
    pub const SIZE: usize = 0x200;

    /// The wire form of a P-384 signature given as big-endian (r, s); reserved bytes
    /// zero.
    pub fn from_be(r: &[u8; P384_LEN], s: &[u8; P384_LEN]) -> Self {
        Self {
            r: be48_to_le72(r),
            s: be48_to_le72(s),
            ..Self::default()
        }
    }

    /// Big-endian (r, s). Fails if R or S uses more than 48 bytes (such a value is at
    /// least 2^384 > n, which the firmware rejects as BAD_SIGNATURE). Reserved bytes
    /// are ignored, as the firmware ignores them.
    pub fn to_be(&self) -> Result<([u8; P384_LEN], [u8; P384_LEN]), EcdsaLayoutError> {
        Ok((
            le72_to_be48(&self.r, "signature R")?,
            le72_to_be48(&self.s, "signature S")?,
        ))
    }
}

/// ECDSA public key (0x404 bytes): CURVE, then QX and QY as 72-byte little-endian
/// integers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EcdsaPublicKey {
    /// [`EcdsaCurve`] value.
    pub curve: u32,
    /// X coordinate, little-endian, zero-extended.
    pub qx: [u8; ECC_SCALAR_LEN],
    /// Y coordinate, little-endian, zero-extended.
    pub qy: [u8; ECC_SCALAR_LEN],
    /// Reserved.
    pub _reserved_94: [u8; 0x370],
}

crate::assert_layout!(
    EcdsaPublicKey,
    size = 0x404,
    curve = 0x00,
    qx = 0x04,
    qy = 0x4C,
    _reserved_94 = 0x94,
);

impl Default for EcdsaPublicKey {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl EcdsaPublicKey {
    /// Size in bytes.
    pub const SIZE: usize = 0x404;

    /// The wire form of a P-384 public key given as big-endian affine (x, y):
    /// CURVE = 2, reserved bytes zero.
    pub fn from_be(x: &[u8; P384_LEN], y: &[u8; P384_LEN]) -> Self {
        Self {
            curve: EcdsaCurve::P384.0,
            qx: be48_to_le72(x),
            qy: be48_to_le72(y),
            ..Self::default()
        }
    }

    /// The CURVE word as an [`EcdsaCurve`].
    pub fn curve(&self) -> EcdsaCurve {
        EcdsaCurve(self.curve)
    }

    /// Big-endian (x, y) after checking CURVE is P-384 and the coordinates fit in 48
    /// bytes. Whether the point is on the curve is for the crypto layer to check.
    /// Reserved bytes are ignored (the firmware ignores them too, though they are part
    /// of the key digest).
    pub fn to_be(&self) -> Result<([u8; P384_LEN], [u8; P384_LEN]), EcdsaLayoutError> {
        if self.curve() != EcdsaCurve::P384 {
            return Err(EcdsaLayoutError::Curve(self.curve()));
        }
        Ok((
            le72_to_be48(&self.qx, "public key QX")?,
            le72_to_be48(&self.qy, "public key QY")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_round_trip_and_oversize() {
        let mut be = [0u8; 48];
        for (i, b) in be.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let le = be48_to_le72(&be);
        assert_eq!(le[0], 48);
        assert_eq!(le[47], 1);
        assert!(le[48..].iter().all(|&b| b == 0));
        assert_eq!(le72_to_be48(&le, "x").unwrap(), be);
        let mut bad = le;
        bad[71] = 1;
        assert_eq!(
            le72_to_be48(&bad, "x"),
            Err(EcdsaLayoutError::Oversized { field: "x" })
        );
    }

    #[test]
    fn key_and_signature_round_trip() {
        let x: [u8; 48] = std::array::from_fn(|i| i as u8);
        let y: [u8; 48] = std::array::from_fn(|i| 0xff - i as u8);
        let wire = EcdsaPublicKey::from_be(&x, &y);
        assert_eq!(wire.curve(), EcdsaCurve::P384);
        assert_eq!(wire.as_bytes()[0..4], [2, 0, 0, 0]);
        assert_eq!(wire.as_bytes()[4], 47);
        assert_eq!(wire.as_bytes()[0x4C], 0xff - 47);
        assert_eq!(wire.to_be().unwrap(), (x, y));
        let ws = EcdsaSignature::from_be(&x, &y);
        assert_eq!(ws.to_be().unwrap(), (x, y));
        assert_eq!(ws.as_bytes()[0x48], 0xff - 47);
        assert_eq!(ws.as_bytes().len(), EcdsaSignature::SIZE);

        let mut c = wire;
        c.curve = 1;
        assert_eq!(
            c.to_be(),
            Err(EcdsaLayoutError::Curve(EcdsaCurve::SECP256K1))
        );
        let mut o = wire;
        o.qy[50] = 1;
        assert_eq!(
            o.to_be(),
            Err(EcdsaLayoutError::Oversized {
                field: "public key QY"
            })
        );
        let mut r = wire;
        r._reserved_94[5] = 9;
        assert_eq!(r.to_be().unwrap(), (x, y));
    }
}
