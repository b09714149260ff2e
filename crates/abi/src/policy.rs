//! SNP guest policy (u64; LAUNCH_START, ID block, attestation report 0x08).
//! snp-launch.md §7.4, snp-attestation.md §1.5.

use serde::{Deserialize, Serialize};

/// The SNP guest policy word. Bit accessors name each field; unknown bits are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bit 16: SMT allowed.
    pub const SMT: u64 = 1 << 16;
    /// Bit 17: reserved, must be 1.
    pub const RESERVED_MBO: u64 = 1 << 17;
    /// Bit 18: migration agent allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19: debugging allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20: single socket only.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// Bit 21: CXL may be populated with guest memory.
    pub const CXL_ALLOW: u64 = 1 << 21;
    /// Bit 22: AES-256-XTS memory encryption required.
    pub const MEM_AES_256_XTS: u64 = 1 << 22;
    /// Bit 23: RAPL must be disabled.
    pub const RAPL_DIS: u64 = 1 << 23;
    /// Bit 24: ciphertext hiding must be enabled.
    pub const CIPHERTEXT_HIDING: u64 = 1 << 24;
    /// Bit 25: page swap (SWAP_OUT/IN) disabled (ABI 1.58).
    pub const PAGE_SWAP_DISABLE: u64 = 1 << 25;
    /// Bits 63:26: reserved, must be zero.
    pub const RESERVED_MBZ: u64 = !((1u64 << 26) - 1);

    /// QEMU's default (`policy=0x30000`: SMT allowed, bit 17 set, ABI 0.0).
    pub const QEMU_DEFAULT: GuestPolicy = GuestPolicy(0x30000);

    /// Minimum firmware ABI minor version.
    pub const fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Minimum firmware ABI major version.
    pub const fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Whether a bit (one of the consts above) is set.
    pub const fn has(self, bit: u64) -> bool {
        self.0 & bit == bit
    }
    /// SMT allowed.
    pub const fn smt(self) -> bool {
        self.has(Self::SMT)
    }
    /// Debugging allowed.
    pub const fn debug(self) -> bool {
        self.has(Self::DEBUG)
    }
    /// Migration agent allowed.
    pub const fn migrate_ma(self) -> bool {
        self.has(Self::MIGRATE_MA)
    }
    /// Single socket required.
    pub const fn single_socket(self) -> bool {
        self.has(Self::SINGLE_SOCKET)
    }
    /// The structural checks every consumer applies: bit 17 set, bits 63:26 clear.
    pub fn check_reserved(self) -> Result<(), PolicyError> {
        if !self.has(Self::RESERVED_MBO) {
            return Err(PolicyError::Bit17Clear(self.0));
        }
        if self.0 & Self::RESERVED_MBZ != 0 {
            return Err(PolicyError::ReservedSet(self.0));
        }
        Ok(())
    }
}

/// A structurally invalid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Bit 17 must be 1.
    #[error("guest policy {0:#x}: reserved bit 17 must be 1")]
    Bit17Clear(u64),
    /// Bits 63:26 must be 0.
    #[error("guest policy {0:#x}: reserved bits 63:26 must be 0")]
    ReservedSet(u64),
}

impl core::fmt::Debug for GuestPolicy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GuestPolicy({:#x}", self.0)?;
        for (bit, name) in [
            (Self::SMT, "SMT"),
            (Self::MIGRATE_MA, "MIGRATE_MA"),
            (Self::DEBUG, "DEBUG"),
            (Self::SINGLE_SOCKET, "SINGLE_SOCKET"),
            (Self::CXL_ALLOW, "CXL_ALLOW"),
            (Self::MEM_AES_256_XTS, "MEM_AES_256_XTS"),
            (Self::RAPL_DIS, "RAPL_DIS"),
            (Self::CIPHERTEXT_HIDING, "CIPHERTEXT_HIDING"),
            (Self::PAGE_SWAP_DISABLE, "PAGE_SWAP_DISABLE"),
        ] {
            if self.has(bit) {
                write!(f, " {name}")?;
            }
        }
        write!(f, " ABI>={}.{})", self.abi_major(), self.abi_minor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let p = GuestPolicy(0xb0000);
        assert!(p.smt() && p.debug() && !p.migrate_ma());
        assert!(p.check_reserved().is_ok());
        assert_eq!(
            GuestPolicy(0x10000).check_reserved(),
            Err(PolicyError::Bit17Clear(0x10000))
        );
        assert!(GuestPolicy(0x30000 | 1 << 26).check_reserved().is_err());
        assert_eq!(GuestPolicy(0x3011f).abi_major(), 1);
        assert_eq!(GuestPolicy(0x3011f).abi_minor(), 0x1f);
        assert_eq!(
            format!("{:?}", GuestPolicy(0x30000)),
            "GuestPolicy(0x30000 SMT ABI>=0.0)"
        );
    }
}
