//! Guest policies: the SNP guest policy (u64; LAUNCH_START, ID block, attestation
//! report 0x08; snp-launch.md §7.4, snp-attestation.md §1.5), the legacy SEV / SEV-ES
//! policy (u32; SEV API LAUNCH_START), and the one rule for which SNP policy bits a
//! KVM host accepts.
//!
//! The rule is Linux's, in two steps:
//! 1. what the running firmware supports (`sev_get_snp_policy_bits`,
//!    drivers/crypto/ccp/sev-dev.c): the base bits of every SNP firmware, plus
//!    RAPL_DIS, CIPHERTEXT_HIDING_DRAM, MEM_AES_256_XTS and CXL_ALLOW when
//!    SNP_FEATURE_INFO(0).ECX says so, plus PAGE_SWAP_DISABLE from API 1.58;
//! 2. masked with the bits KVM knows (`KVM_SNP_POLICY_MASK_VALID`, arch/x86/kvm/svm/sev.c),
//!    which leaves out MIGRATE_MA. The result is what `KVM_GET_DEVICE_ATTR(KVM_X86_GRP_SEV,
//!    KVM_X86_SNP_POLICY_BITS)` returns and what KVM_SEV_SNP_LAUNCH_START checks
//!    (`params.policy & ~snp_supported_policy_bits` → -EINVAL, then bit 17 → -EINVAL).
//!
//! The host computes its answer with [`SnpPolicySupport::kvm_policy_bits`]; a VMM asks
//! the host for it and checks with [`GuestPolicy::check_kvm`]; without a host a VMM can
//! only refuse what no KVM accepts ([`GuestPolicy::KVM_KNOWN`]).

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

    /// Bits 15:0: minimum firmware ABI major (15:8) and minor (7:0).
    pub const ABI_VERSION: u64 = 0xFFFF;
    /// The bits every SNP firmware supports (Linux `SNP_POLICY_MASK_BASE`): ABI
    /// version, SMT, bit 17, MIGRATE_MA, DEBUG, SINGLE_SOCKET.
    pub const FIRMWARE_BASE: u64 = Self::ABI_VERSION
        | Self::SMT
        | Self::RESERVED_MBO
        | Self::MIGRATE_MA
        | Self::DEBUG
        | Self::SINGLE_SOCKET;
    /// The bits KVM knows and can allow (Linux `KVM_SNP_POLICY_MASK_VALID`, 6.19+):
    /// everything defined through bit 25 except MIGRATE_MA. A policy with a bit outside
    /// this set fails KVM_SEV_SNP_LAUNCH_START on every host.
    pub const KVM_KNOWN: u64 = Self::ABI_VERSION
        | Self::SMT
        | Self::RESERVED_MBO
        | Self::DEBUG
        | Self::SINGLE_SOCKET
        | Self::CXL_ALLOW
        | Self::MEM_AES_256_XTS
        | Self::RAPL_DIS
        | Self::CIPHERTEXT_HIDING
        | Self::PAGE_SWAP_DISABLE;

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

    /// KVM_SEV_SNP_LAUNCH_START's policy checks against the host's supported bits
    /// (`KVM_X86_SNP_POLICY_BITS`), in KVM's order: bits outside `supported`, then bit
    /// 17 clear. Both are -EINVAL from KVM.
    pub fn check_kvm(self, supported: u64) -> Result<(), KvmPolicyError> {
        let unsupported = self.0 & !supported;
        if unsupported != 0 {
            return Err(KvmPolicyError::Unsupported {
                policy: self.0,
                unsupported,
            });
        }
        if !self.has(Self::RESERVED_MBO) {
            return Err(KvmPolicyError::Bit17Clear(self.0));
        }
        Ok(())
    }
}

/// FEATURE_INFO sub-function 0 ECX bits that gate SNP policy bits (Linux
/// include/linux/psp-sev.h `SNP_*_SUPPORTED`).
pub mod feature_info_ecx {
    /// Bit 2: RAPL can be disabled (policy RAPL_DIS).
    pub const RAPL_DISABLE: u32 = 1 << 2;
    /// Bit 3: ciphertext hiding for DRAM (policy CIPHERTEXT_HIDING).
    pub const CIPHERTEXT_HIDING: u32 = 1 << 3;
    /// Bit 4: the AES-256-XTS policy bit is supported (MEM_AES_256_XTS).
    pub const AES_256_XTS_POLICY: u32 = 1 << 4;
    /// Bit 5: the CXL_ALLOW policy bit is supported.
    pub const CXL_ALLOW_POLICY: u32 = 1 << 5;
}

/// What a host knows about its SNP firmware that decides the policy bits it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpPolicySupport {
    /// SNP API major version of the running firmware (SNP_PLATFORM_STATUS).
    pub api_major: u8,
    /// SNP API minor version.
    pub api_minor: u8,
    /// SNP_FEATURE_INFO(0).ECX, or `None` when the firmware has no FEATURE_INFO
    /// (SNP_PLATFORM_STATUS.FEATURE_INFO clear).
    pub feature_info_ecx: Option<u32>,
}

impl SnpPolicySupport {
    /// The policy bits the firmware supports (Linux `sev_get_snp_policy_bits`).
    pub const fn firmware_policy_bits(self) -> u64 {
        let mut bits = GuestPolicy::FIRMWARE_BASE;
        if let Some(ecx) = self.feature_info_ecx {
            if ecx & feature_info_ecx::RAPL_DISABLE != 0 {
                bits |= GuestPolicy::RAPL_DIS;
            }
            if ecx & feature_info_ecx::CIPHERTEXT_HIDING != 0 {
                bits |= GuestPolicy::CIPHERTEXT_HIDING;
            }
            if ecx & feature_info_ecx::AES_256_XTS_POLICY != 0 {
                bits |= GuestPolicy::MEM_AES_256_XTS;
            }
            if ecx & feature_info_ecx::CXL_ALLOW_POLICY != 0 {
                bits |= GuestPolicy::CXL_ALLOW;
            }
            if self.api_major > 1 || (self.api_major == 1 && self.api_minor >= 58) {
                bits |= GuestPolicy::PAGE_SWAP_DISABLE;
            }
        }
        bits
    }

    /// What KVM accepts and reports as `KVM_X86_SNP_POLICY_BITS`
    /// (`snp_supported_policy_bits = sev_get_snp_policy_bits() & KVM_SNP_POLICY_MASK_VALID`).
    pub const fn kvm_policy_bits(self) -> u64 {
        self.firmware_policy_bits() & GuestPolicy::KVM_KNOWN
    }
}

/// Why KVM_SEV_SNP_LAUNCH_START refuses a policy (-EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvmPolicyError {
    /// Bits outside the host's `KVM_X86_SNP_POLICY_BITS` are set.
    #[error(
        "guest policy {policy:#x}: bits {unsupported:#x} are not in the host's KVM_X86_SNP_POLICY_BITS"
    )]
    Unsupported {
        /// The policy.
        policy: u64,
        /// The bits the host does not accept.
        unsupported: u64,
    },
    /// Bit 17 must be 1.
    #[error("guest policy {0:#x}: reserved bit 17 must be 1")]
    Bit17Clear(u64),
}

/// The legacy SEV / SEV-ES guest policy (u32; SEV API LAUNCH_START, AMD 55766 §3).
/// QEMU's `sev-guest` default is NODBG (0x1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SevPolicy(pub u32);

impl SevPolicy {
    /// Bit 0: debugging disallowed.
    pub const NODBG: u32 = 1 << 0;
    /// Bit 1: key sharing disallowed.
    pub const NOKS: u32 = 1 << 1;
    /// Bit 2: SEV-ES required.
    pub const ES: u32 = 1 << 2;
    /// Bit 3: sending to another platform disallowed.
    pub const NOSEND: u32 = 1 << 3;
    /// Bit 4: sending outside the domain disallowed.
    pub const DOMAIN: u32 = 1 << 4;
    /// Bit 5: sending to a non-SEV platform disallowed.
    pub const SEV: u32 = 1 << 5;
    /// QEMU's default for `sev-guest` (`DEFAULT_GUEST_POLICY`: NODBG).
    pub const QEMU_DEFAULT: SevPolicy = SevPolicy(Self::NODBG);

    /// Whether the policy asks for SEV-ES (QEMU `sev_es_enabled`).
    pub const fn es(self) -> bool {
        self.0 & Self::ES != 0
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

    fn support(api_minor: u8, ecx: Option<u32>) -> SnpPolicySupport {
        SnpPolicySupport {
            api_major: 1,
            api_minor,
            feature_info_ecx: ecx,
        }
    }

    #[test]
    fn kvm_policy_bits_follow_linux() {
        // A 1.55 firmware without FEATURE_INFO: the base bits minus MIGRATE_MA.
        let base = 0xFFFF | GuestPolicy::SMT | 1 << 17 | 1 << 19 | 1 << 20;
        assert_eq!(support(55, None).kvm_policy_bits(), base);
        assert_eq!(
            support(55, None).firmware_policy_bits(),
            base | GuestPolicy::MIGRATE_MA
        );
        // Each FEATURE_INFO ECX bit adds its policy bit.
        for (ecx, bit) in [
            (feature_info_ecx::RAPL_DISABLE, GuestPolicy::RAPL_DIS),
            (
                feature_info_ecx::CIPHERTEXT_HIDING,
                GuestPolicy::CIPHERTEXT_HIDING,
            ),
            (
                feature_info_ecx::AES_256_XTS_POLICY,
                GuestPolicy::MEM_AES_256_XTS,
            ),
            (feature_info_ecx::CXL_ALLOW_POLICY, GuestPolicy::CXL_ALLOW),
        ] {
            assert_eq!(support(55, Some(ecx)).kvm_policy_bits(), base | bit);
        }
        // PAGE_SWAP_DISABLE from API 1.58, and only with FEATURE_INFO.
        assert_eq!(
            support(58, Some(0)).kvm_policy_bits(),
            base | GuestPolicy::PAGE_SWAP_DISABLE
        );
        assert_eq!(support(58, None).kvm_policy_bits(), base);
        // Everything at once is KVM_SNP_POLICY_MASK_VALID.
        assert_eq!(
            support(58, Some(0x3C)).kvm_policy_bits(),
            GuestPolicy::KVM_KNOWN
        );
        assert_eq!(GuestPolicy::KVM_KNOWN, 0x3FB_FFFF);
    }

    #[test]
    fn kvm_check_order() {
        let bits = support(55, None).kvm_policy_bits();
        assert!(GuestPolicy(0x30000).check_kvm(bits).is_ok());
        // No SMT and SINGLE_SOCKET are KVM's to accept (the firmware decides SMT).
        assert!(GuestPolicy(0x20000).check_kvm(bits).is_ok());
        assert!(GuestPolicy(0x130000).check_kvm(bits).is_ok());
        assert_eq!(
            GuestPolicy(0x70000).check_kvm(bits),
            Err(KvmPolicyError::Unsupported {
                policy: 0x70000,
                unsupported: GuestPolicy::MIGRATE_MA
            })
        );
        // Unsupported bits are checked before bit 17.
        assert!(matches!(
            GuestPolicy(0x10000 | 1 << 21).check_kvm(bits),
            Err(KvmPolicyError::Unsupported { .. })
        ));
        assert_eq!(
            GuestPolicy(0x10000).check_kvm(bits),
            Err(KvmPolicyError::Bit17Clear(0x10000))
        );
    }

    #[test]
    fn sev_policy_es() {
        assert!(!SevPolicy::QEMU_DEFAULT.es());
        assert!(SevPolicy(0x5).es());
    }
}
