//! TCB_VERSION: the 8-byte security version of the platform's firmware and microcode
//! components, in the report (CURRENT/REPORTED/COMMITTED/LAUNCH_TCB), in VCEK
//! derivation and in the VCEK certificate's extensions. The byte layout depends on the
//! product (snp-attestation.md §1.3).

use crate::product::{Product, TcbLayout};
use serde::{Deserialize, Serialize};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A raw TCB_VERSION as it sits in a report or command buffer (little-endian u64).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
    Unaligned,
)]
#[repr(transparent)]
pub struct RawTcb(pub [u8; 8]);

impl RawTcb {
    /// As the little-endian u64 the firmware stores.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }
    /// From the little-endian u64 value.
    pub fn from_u64(v: u64) -> Self {
        RawTcb(v.to_le_bytes())
    }
}

impl core::fmt::Debug for RawTcb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RawTcb({:#018x})", self.to_u64())
    }
}

/// The components of a TCB, independent of byte layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, Deserialize)]
pub struct TcbVersion {
    /// FMC (first mutable code) SVN; Turin and later only, 0 on Milan/Genoa.
    pub fmc: u8,
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Lowest microcode patch level across cores (low byte).
    pub microcode: u8,
}

/// A TCB_VERSION that cannot be represented for a product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcbError {
    /// Reserved bytes are non-zero.
    #[error("TCB_VERSION {raw:#018x} has non-zero reserved bytes for the {product} layout")]
    ReservedNonZero {
        /// The raw value.
        raw: u64,
        /// The product whose layout was applied.
        product: Product,
    },
    /// Milan/Genoa have no FMC component.
    #[error("{product} TCB has no FMC component, but fmc = {fmc}")]
    FmcOnLegacy {
        /// The product.
        product: Product,
        /// The FMC value given.
        fmc: u8,
    },
}

impl TcbVersion {
    /// Encode in `product`'s layout.
    pub fn encode(&self, product: Product) -> Result<RawTcb, TcbError> {
        Ok(match product.tcb_layout() {
            TcbLayout::Legacy => {
                if self.fmc != 0 {
                    return Err(TcbError::FmcOnLegacy {
                        product,
                        fmc: self.fmc,
                    });
                }
                RawTcb([
                    self.bootloader,
                    self.tee,
                    0,
                    0,
                    0,
                    0,
                    self.snp,
                    self.microcode,
                ])
            }
            TcbLayout::Turin => RawTcb([
                self.fmc,
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ]),
        })
    }

    /// Decode in `product`'s layout, rejecting non-zero reserved bytes.
    pub fn decode(raw: RawTcb, product: Product) -> Result<TcbVersion, TcbError> {
        let b = raw.0;
        let (tcb, reserved) = match product.tcb_layout() {
            TcbLayout::Legacy => (
                TcbVersion {
                    fmc: 0,
                    bootloader: b[0],
                    tee: b[1],
                    snp: b[6],
                    microcode: b[7],
                },
                &b[2..6],
            ),
            TcbLayout::Turin => (
                TcbVersion {
                    fmc: b[0],
                    bootloader: b[1],
                    tee: b[2],
                    snp: b[3],
                    microcode: b[7],
                },
                &b[4..7],
            ),
        };
        if reserved.iter().any(|&x| x != 0) {
            return Err(TcbError::ReservedNonZero {
                raw: raw.to_u64(),
                product,
            });
        }
        Ok(tcb)
    }

    /// Component-wise `self >= other` (the TCB ordering: every component at least).
    pub fn dominates(&self, other: &TcbVersion) -> bool {
        self.fmc >= other.fmc
            && self.bootloader >= other.bootloader
            && self.tee >= other.tee
            && self.snp >= other.snp
            && self.microcode >= other.microcode
    }
}

impl core::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "fmc={} bl={} tee={} snp={} ucode={}",
            self.fmc, self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turin_sample() {
        // Real Turin report bytes (snp-attestation.md §1.3).
        let raw = RawTcb([0x01, 0x01, 0x01, 0x04, 0, 0, 0, 0x51]);
        let t = TcbVersion::decode(raw, Product::Turin).unwrap();
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (1, 1, 1, 4, 0x51)
        );
        assert_eq!(t.encode(Product::Turin).unwrap(), raw);
        assert!(TcbVersion::decode(raw, Product::Milan).is_err());
        assert!(t.encode(Product::Milan).is_err());
    }

    #[test]
    fn legacy_roundtrip_and_order() {
        let t = TcbVersion {
            fmc: 0,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        let raw = t.encode(Product::Milan).unwrap();
        assert_eq!(raw.0, [3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(TcbVersion::decode(raw, Product::Genoa).unwrap(), t);
        let mut lower = t;
        lower.snp = 7;
        assert!(t.dominates(&lower) && !lower.dominates(&t));
        assert_eq!(RawTcb::from_u64(raw.to_u64()), raw);
    }
}
