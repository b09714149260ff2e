//! SEV-SNP ATTESTATION_REPORT (0x4A0 bytes, versions 2, 3 and 5), the structure
//! MSG_REPORT_RSP carries and every verifier parses (SNP ABI "ATTESTATION_REPORT
//! Structure"). Notes with sources: shared/spec/snp-attestation.md §1.
//!
//! One plain `#[repr(C)]` struct with public fields lets the firmware fill every field
//! and a verifier read every field; [`AttestationReport::parse`] adds the size and
//! version checks, [`AttestationReport::check_reserved`] the must-be-zero rules of
//! the version. TCB fields are [`RawTcb`]; decode them with the product's layout
//! ([`AttestationReport::product`] tells the product from CPUID, v3 and later).

use crate::ecdsa::EcdsaSignature;
use crate::policy::GuestPolicy;
use crate::product::Product;
use crate::tcb::{RawTcb, TcbError, TcbVersion};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Size of a report in bytes.
pub const REPORT_SIZE: usize = 0x4A0;
/// Bytes covered by the signature: `[0, 0x2A0)`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions this crate understands.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

crate::open_enum! {
    /// SIGNATURE_ALGO (u32 @0x34).
    pub struct SignatureAlgo(u32) {
        /// Invalid / no signature.
        INVALID = 0,
        /// ECDSA P-384 with SHA-384.
        ECDSA_P384_SHA384 = 1,
    }
}

crate::open_enum! {
    /// SIGNING_KEY, bits 4:2 of KEY_INFO: which key signed the report.
    pub struct SigningKey(u8) {
        /// Versioned Chip Endorsement Key.
        VCEK = 0,
        /// Versioned Loaded Endorsement Key.
        VLEK = 1,
        /// No key: the report is unsigned (MASK_CHIP_KEY with VCEK selected).
        NONE = 7,
    }
}

/// PLATFORM_INFO (u64 @0x40): platform state when the report was made.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// Bit 0: SMT is enabled.
    pub const SMT_EN: u64 = 1 << 0;
    /// Bit 1: TSME is enabled.
    pub const TSME_EN: u64 = 1 << 1;
    /// Bit 2: the platform uses ECC memory.
    pub const ECC_EN: u64 = 1 << 2;
    /// Bit 3: RAPL is disabled.
    pub const RAPL_DIS: u64 = 1 << 3;
    /// Bit 4: ciphertext hiding is enabled for DRAM.
    pub const CIPHERTEXT_HIDING_EN: u64 = 1 << 4;
    /// Bit 5: the BadRAM alias check completed.
    pub const ALIAS_CHECK_COMPLETE: u64 = 1 << 5;
    /// Bit 6: reserved in the published ABI; set by real Turin parts (identified by a
    /// third party as IOMMU_WRITE_SAFE).
    pub const BIT6: u64 = 1 << 6;
    /// Bit 7: SEV-TIO is enabled.
    pub const TIO_EN: u64 = 1 << 7;
    /// Bits with a published meaning (0..=5 and 7).
    pub const KNOWN: u64 = 0xBF;

    /// Names of the bits, lowest first.
    pub const NAMES: [(u64, &'static str); 8] = [
        (Self::SMT_EN, "SMT_EN"),
        (Self::TSME_EN, "TSME_EN"),
        (Self::ECC_EN, "ECC_EN"),
        (Self::RAPL_DIS, "RAPL_DIS"),
        (Self::CIPHERTEXT_HIDING_EN, "CIPHERTEXT_HIDING_EN"),
        (Self::ALIAS_CHECK_COMPLETE, "ALIAS_CHECK_COMPLETE"),
        (Self::BIT6, "BIT6"),
        (Self::TIO_EN, "TIO_EN"),
    ];

    /// Whether every bit of `bit` is set.
    pub const fn has(self, bit: u64) -> bool {
        self.0 & bit == bit
    }
    /// SMT enabled.
    pub const fn smt_en(self) -> bool {
        self.has(Self::SMT_EN)
    }
    /// TSME enabled.
    pub const fn tsme_en(self) -> bool {
        self.has(Self::TSME_EN)
    }
    /// ECC memory in use.
    pub const fn ecc_en(self) -> bool {
        self.has(Self::ECC_EN)
    }
    /// RAPL disabled.
    pub const fn rapl_dis(self) -> bool {
        self.has(Self::RAPL_DIS)
    }
    /// Ciphertext hiding enabled.
    pub const fn ciphertext_hiding_en(self) -> bool {
        self.has(Self::CIPHERTEXT_HIDING_EN)
    }
    /// Alias check complete.
    pub const fn alias_check_complete(self) -> bool {
        self.has(Self::ALIAS_CHECK_COMPLETE)
    }
    /// SEV-TIO enabled.
    pub const fn tio_en(self) -> bool {
        self.has(Self::TIO_EN)
    }
    /// The names of the set bits; unnamed bits appear as `bitN`.
    pub fn flag_names(self) -> Vec<String> {
        (0..64)
            .filter(|i| self.0 & (1u64 << i) != 0)
            .map(|i| {
                Self::NAMES
                    .iter()
                    .find(|(b, _)| *b == 1u64 << i)
                    .map_or_else(|| format!("bit{i}"), |(_, n)| (*n).to_string())
            })
            .collect()
    }
}

impl core::fmt::Debug for PlatformInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PlatformInfo({:#x}", self.0)?;
        for n in self.flag_names() {
            write!(f, " {n}")?;
        }
        f.write_str(")")
    }
}

/// KEY_INFO ("signer info", u32 @0x48).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct KeyInfo(pub u32);

impl KeyInfo {
    /// Bit 0: an author key is present in the guest context.
    pub const AUTHOR_KEY_EN: u32 = 1 << 0;
    /// Bit 1: the platform masks the chip key (VCEK signing disabled).
    pub const MASK_CHIP_KEY: u32 = 1 << 1;
    /// Bits 4:2: [`SigningKey`].
    pub const SIGNING_KEY_SHIFT: u32 = 2;
    /// Mask of SIGNING_KEY after shifting.
    pub const SIGNING_KEY_MASK: u32 = 0x7;
    /// Bits 31:5: reserved, must be zero.
    pub const RESERVED_MBZ: u32 = !0x1F;

    /// Build from the three fields.
    pub const fn new(author_key_en: bool, mask_chip_key: bool, key: SigningKey) -> KeyInfo {
        KeyInfo(
            (author_key_en as u32)
                | ((mask_chip_key as u32) << 1)
                | (((key.0 as u32) & Self::SIGNING_KEY_MASK) << Self::SIGNING_KEY_SHIFT),
        )
    }
    /// AUTHOR_KEY_EN.
    pub const fn author_key_en(self) -> bool {
        self.0 & Self::AUTHOR_KEY_EN != 0
    }
    /// MASK_CHIP_KEY.
    pub const fn mask_chip_key(self) -> bool {
        self.0 & Self::MASK_CHIP_KEY != 0
    }
    /// SIGNING_KEY.
    pub const fn signing_key(self) -> SigningKey {
        SigningKey(((self.0 >> Self::SIGNING_KEY_SHIFT) & Self::SIGNING_KEY_MASK) as u8)
    }
}

impl core::fmt::Debug for KeyInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "KeyInfo({:#x} signing_key={:?} author_key_en={} mask_chip_key={})",
            self.0,
            self.signing_key(),
            self.author_key_en(),
            self.mask_chip_key()
        )
    }
}

/// A firmware version as the report stores it (build, minor, major bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, PartialOrd, Ord)]
pub struct FirmwareVersion {
    /// Major version (compared first).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

impl core::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The ATTESTATION_REPORT (0x4A0 bytes, little-endian). Reserved spans are named by
/// offset; [`AttestationReport::new_zeroed`]/`Default` zero them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AttestationReport {
    /// VERSION: 2, 3 or 5 (4 exists but its layout is not public).
    pub version: u32,
    /// GUEST_SVN from the ID block (0 without one).
    pub guest_svn: u32,
    /// POLICY: the guest policy ([`GuestPolicy`]).
    pub policy: u64,
    /// FAMILY_ID from the ID block.
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block.
    pub image_id: [u8; 16],
    /// VMPL of the requester.
    pub vmpl: u32,
    /// SIGNATURE_ALGO ([`SignatureAlgo`]).
    pub signature_algo: u32,
    /// CURRENT_TCB: the TCB the platform runs now.
    pub current_tcb: RawTcb,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// KEY_INFO (signer info).
    pub key_info: KeyInfo,
    /// Reserved, MBZ.
    pub _reserved_04c: u32,
    /// REPORT_DATA supplied by the guest.
    pub report_data: [u8; 64],
    /// MEASUREMENT: the launch digest.
    pub measurement: [u8; 48],
    /// HOST_DATA given at LAUNCH_FINISH.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST: SHA-384 of the ID public key (AMD 0x404-byte form).
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST: SHA-384 of the author public key, zero without one.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID: random per launch.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA: the migration agent's report id, all 0xFF without one.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB of the VCEK that signed the report.
    pub reported_tcb: RawTcb,
    /// CPUID_FAM_ID: extended + base family (v3+; reserved in v2).
    pub cpuid_fam_id: u8,
    /// CPUID_MOD_ID: (extended model << 4) | base model (v3+).
    pub cpuid_mod_id: u8,
    /// CPUID_STEP: stepping (v3+).
    pub cpuid_step: u8,
    /// Reserved, MBZ.
    pub _reserved_18b: [u8; 21],
    /// CHIP_ID: zero when masked; on Turin only the first 8 bytes are used.
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: RawTcb,
    /// CURRENT_BUILD.
    pub current_build: u8,
    /// CURRENT_MINOR.
    pub current_minor: u8,
    /// CURRENT_MAJOR.
    pub current_major: u8,
    /// Reserved, MBZ.
    pub _reserved_1eb: u8,
    /// COMMITTED_BUILD.
    pub committed_build: u8,
    /// COMMITTED_MINOR.
    pub committed_minor: u8,
    /// COMMITTED_MAJOR.
    pub committed_major: u8,
    /// Reserved, MBZ.
    pub _reserved_1ef: u8,
    /// LAUNCH_TCB: CURRENT_TCB when the guest was launched.
    pub launch_tcb: RawTcb,
    /// LAUNCH_MIT_VECTOR (v5; reserved before).
    pub launch_mit_vector: u64,
    /// CURRENT_MIT_VECTOR (v5; reserved before).
    pub current_mit_vector: u64,
    /// Reserved, MBZ.
    pub _reserved_208: [u8; 0x98],
    /// SIGNATURE over bytes `[0, 0x2A0)`.
    pub signature: EcdsaSignature,
}

crate::assert_layout!(
    AttestationReport,
    size = 0x4A0,
    version = 0x000,
    guest_svn = 0x004,
    policy = 0x008,
    family_id = 0x010,
    image_id = 0x020,
    vmpl = 0x030,
    signature_algo = 0x034,
    current_tcb = 0x038,
    platform_info = 0x040,
    key_info = 0x048,
    _reserved_04c = 0x04C,
    report_data = 0x050,
    measurement = 0x090,
    host_data = 0x0C0,
    id_key_digest = 0x0E0,
    author_key_digest = 0x110,
    report_id = 0x140,
    report_id_ma = 0x160,
    reported_tcb = 0x180,
    cpuid_fam_id = 0x188,
    cpuid_mod_id = 0x189,
    cpuid_step = 0x18A,
    _reserved_18b = 0x18B,
    chip_id = 0x1A0,
    committed_tcb = 0x1E0,
    current_build = 0x1E8,
    current_minor = 0x1E9,
    current_major = 0x1EA,
    _reserved_1eb = 0x1EB,
    committed_build = 0x1EC,
    committed_minor = 0x1ED,
    committed_major = 0x1EE,
    _reserved_1ef = 0x1EF,
    launch_tcb = 0x1F0,
    launch_mit_vector = 0x1F8,
    current_mit_vector = 0x200,
    _reserved_208 = 0x208,
    signature = 0x2A0,
);

/// Why bytes are not a report this crate can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Fewer bytes than a report (or more, for an exact parse).
    #[error("attestation report: {got} bytes, expected {expected} (0x4A0)")]
    Size {
        /// Bytes given.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// VERSION is not 2, 3 or 5.
    #[error(
        "attestation report version {0} is not supported (supported: 2, 3, 5; v4's layout is not public)"
    )]
    UnsupportedVersion(u32),
    /// A must-be-zero span has a non-zero byte.
    #[error("attestation report v{version}: reserved {field} at {offset:#05x} is not zero")]
    ReservedNonZero {
        /// The report version whose rules applied.
        version: u32,
        /// What the span is.
        field: &'static str,
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// A TCB field does not decode in the product's layout.
    #[error("attestation report {field}: {source}")]
    Tcb {
        /// Which TCB field.
        field: &'static str,
        /// The layout error.
        source: TcbError,
    },
}

/// The four TCB fields of a report, decoded in one product's layout.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReportTcbs {
    /// CURRENT_TCB.
    pub current: TcbVersion,
    /// REPORTED_TCB.
    pub reported: TcbVersion,
    /// COMMITTED_TCB.
    pub committed: TcbVersion,
    /// LAUNCH_TCB.
    pub launch: TcbVersion,
}

impl Default for AttestationReport {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl AttestationReport {
    /// Size in bytes.
    pub const SIZE: usize = REPORT_SIZE;
    /// Bytes covered by the signature.
    pub const SIGNED_LEN: usize = SIGNED_LEN;

    /// Parse exactly one report: `bytes` must be 0x4A0 long and VERSION one of 2, 3, 5.
    /// Reserved bytes are not checked here (see [`Self::check_reserved`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        if bytes.len() != REPORT_SIZE {
            return Err(ReportError::Size {
                got: bytes.len(),
                expected: REPORT_SIZE,
            });
        }
        Self::parse_prefix(bytes).map(|(r, _)| r)
    }

    /// Parse a report at the start of `bytes` (e.g. a report followed by a certificate
    /// table), returning the rest.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Self, &[u8]), ReportError> {
        let (report, rest) = Self::read_from_prefix(bytes).map_err(|_| ReportError::Size {
            got: bytes.len(),
            expected: REPORT_SIZE,
        })?;
        if !SUPPORTED_VERSIONS.contains(&report.version) {
            return Err(ReportError::UnsupportedVersion(report.version));
        }
        Ok((report, rest))
    }

    /// The bytes the signature covers, `[0, 0x2A0)`.
    pub fn signed_bytes(&self) -> &[u8] {
        self.as_bytes().split_at(SIGNED_LEN).0
    }

    /// POLICY as a [`GuestPolicy`].
    pub fn guest_policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy)
    }

    /// SIGNATURE_ALGO as a [`SignatureAlgo`].
    pub fn signature_algo(&self) -> SignatureAlgo {
        SignatureAlgo(self.signature_algo)
    }

    /// CURRENT_BUILD/MINOR/MAJOR.
    pub fn current_version(&self) -> FirmwareVersion {
        FirmwareVersion {
            major: self.current_major,
            minor: self.current_minor,
            build: self.current_build,
        }
    }

    /// COMMITTED_BUILD/MINOR/MAJOR.
    pub fn committed_version(&self) -> FirmwareVersion {
        FirmwareVersion {
            major: self.committed_major,
            minor: self.committed_minor,
            build: self.committed_build,
        }
    }

    /// Set CURRENT_BUILD/MINOR/MAJOR.
    pub fn set_current_version(&mut self, v: FirmwareVersion) {
        (self.current_major, self.current_minor, self.current_build) = (v.major, v.minor, v.build);
    }

    /// Set COMMITTED_BUILD/MINOR/MAJOR.
    pub fn set_committed_version(&mut self, v: FirmwareVersion) {
        (
            self.committed_major,
            self.committed_minor,
            self.committed_build,
        ) = (v.major, v.minor, v.build);
    }

    /// CPUID family, model, stepping (0, 0, 0 in v2).
    pub fn cpuid_fms(&self) -> (u8, u8, u8) {
        (self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step)
    }

    /// Set the CPUID fields to `product`'s canonical values.
    pub fn set_cpuid_for(&mut self, product: Product) {
        (self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step) = product.cpuid_fms();
    }

    /// The product from the CPUID fields (v3 and later). `None` for v2 or an unknown
    /// family/model.
    pub fn product(&self) -> Option<Product> {
        if self.version < 3 {
            return None;
        }
        Product::from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)
    }

    /// Whether CHIP_ID looks like Turin's short form: first 8 bytes non-zero, bytes
    /// 8..64 zero. (A v2 report cannot tell Milan from Genoa; this tells Turin.)
    pub fn chip_id_is_short(&self) -> bool {
        let (head, tail) = self.chip_id.split_at(8);
        head.iter().any(|&b| b != 0) && tail.iter().all(|&b| b == 0)
    }

    /// Whether CHIP_ID is all zero (masked).
    pub fn chip_id_masked(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }

    /// The significant CHIP_ID bytes for `product` (8 on Turin, 64 otherwise): the
    /// hwID of its VCEK and the id in its KDS URL.
    pub fn chip_id_for(&self, product: Product) -> &[u8] {
        self.chip_id.split_at(product.chip_id_len()).0
    }

    /// Decode the four TCB fields in `product`'s layout.
    pub fn tcbs(&self, product: Product) -> Result<ReportTcbs, ReportError> {
        let d = |raw: RawTcb, field: &'static str| {
            TcbVersion::decode(raw, product).map_err(|source| ReportError::Tcb { field, source })
        };
        Ok(ReportTcbs {
            current: d(self.current_tcb, "CURRENT_TCB")?,
            reported: d(self.reported_tcb, "REPORTED_TCB")?,
            committed: d(self.committed_tcb, "COMMITTED_TCB")?,
            launch: d(self.launch_tcb, "LAUNCH_TCB")?,
        })
    }

    /// Encode and set the four TCB fields in `product`'s layout.
    pub fn set_tcbs(&mut self, product: Product, tcbs: &ReportTcbs) -> Result<(), TcbError> {
        self.current_tcb = tcbs.current.encode(product)?;
        self.reported_tcb = tcbs.reported.encode(product)?;
        self.committed_tcb = tcbs.committed.encode(product)?;
        self.launch_tcb = tcbs.launch.encode(product)?;
        Ok(())
    }

    /// The must-be-zero spans of this report's version, as (name, start, end) byte
    /// ranges. Beyond these, KEY_INFO bits 31:5 must be zero (see
    /// [`Self::check_reserved`]).
    pub fn reserved_spans(&self) -> &'static [(&'static str, usize, usize)] {
        const V2: &[(&str, usize, usize)] = &[
            ("0x04C..0x050", 0x04C, 0x050),
            ("0x188..0x1A0 (v2)", 0x188, 0x1A0),
            ("0x1EB", 0x1EB, 0x1EC),
            ("0x1EF", 0x1EF, 0x1F0),
            ("0x1F8..0x2A0 (v2/v3)", 0x1F8, 0x2A0),
            ("signature bytes 0x330..0x4A0", 0x330, 0x4A0),
        ];
        const V3: &[(&str, usize, usize)] = &[
            ("0x04C..0x050", 0x04C, 0x050),
            ("0x18B..0x1A0", 0x18B, 0x1A0),
            ("0x1EB", 0x1EB, 0x1EC),
            ("0x1EF", 0x1EF, 0x1F0),
            ("0x1F8..0x2A0 (v2/v3)", 0x1F8, 0x2A0),
            ("signature bytes 0x330..0x4A0", 0x330, 0x4A0),
        ];
        const V5: &[(&str, usize, usize)] = &[
            ("0x04C..0x050", 0x04C, 0x050),
            ("0x18B..0x1A0", 0x18B, 0x1A0),
            ("0x1EB", 0x1EB, 0x1EC),
            ("0x1EF", 0x1EF, 0x1F0),
            ("0x208..0x2A0", 0x208, 0x2A0),
            ("signature bytes 0x330..0x4A0", 0x330, 0x4A0),
        ];
        match self.version {
            0..=2 => V2,
            3 | 4 => V3,
            _ => V5,
        }
    }

    /// Check every must-be-zero span of the version and KEY_INFO bits 31:5.
    /// (Guest policy bits and TCB reserved bytes are checked by
    /// [`GuestPolicy::check_reserved`] and [`Self::tcbs`].)
    pub fn check_reserved(&self) -> Result<(), ReportError> {
        let bytes = self.as_bytes();
        for &(field, start, end) in self.reserved_spans() {
            let span = bytes.get(start..end).unwrap_or(&[]);
            if let Some(i) = span.iter().position(|&b| b != 0) {
                return Err(ReportError::ReservedNonZero {
                    version: self.version,
                    field,
                    offset: start + i,
                });
            }
        }
        if self.key_info.0 & KeyInfo::RESERVED_MBZ != 0 {
            return Err(ReportError::ReservedNonZero {
                version: self.version,
                field: "KEY_INFO bits 31:5",
                offset: 0x048,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AttestationReport {
        let mut r = AttestationReport {
            version: 3,
            policy: 0x30000,
            signature_algo: 1,
            platform_info: PlatformInfo(0x25),
            key_info: KeyInfo::new(false, false, SigningKey::VCEK),
            report_id_ma: [0xFF; 32],
            ..Default::default()
        };
        r.set_cpuid_for(Product::Milan);
        r.report_data[0] = 0xAA;
        r.measurement[47] = 0x5A;
        r.chip_id = [0x11; 64];
        let t = TcbVersion {
            fmc: 0,
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 219,
        };
        r.set_tcbs(
            Product::Milan,
            &ReportTcbs {
                current: t,
                reported: t,
                committed: t,
                launch: t,
            },
        )
        .unwrap();
        r.set_current_version(FirmwareVersion {
            major: 1,
            minor: 55,
            build: 29,
        });
        r.set_committed_version(r.current_version());
        r
    }

    #[test]
    fn byte_positions_and_round_trip() {
        let r = sample();
        let b = r.as_bytes();
        assert_eq!(b.len(), 0x4A0);
        assert_eq!(b[0], 3);
        assert_eq!(b[0x0A], 0x03); // policy bit 17:16
        assert_eq!(b[0x34], 1);
        assert_eq!(b[0x40], 0x25);
        assert_eq!(b[0x50], 0xAA);
        assert_eq!(b[0x90 + 47], 0x5A);
        assert_eq!(b[0x180..0x188], [4, 0, 0, 0, 0, 0, 24, 219]);
        assert_eq!(b[0x188..0x18B], [0x19, 0x01, 0x01]);
        assert_eq!(b[0x1E8..0x1EB], [29, 55, 1]);
        let p = AttestationReport::parse(b).unwrap();
        assert_eq!(p, r);
        assert_eq!(p.product(), Some(Product::Milan));
        assert_eq!(p.current_version().to_string(), "1.55.29");
        assert_eq!(p.tcbs(Product::Milan).unwrap().reported.snp, 24);
        assert!(p.check_reserved().is_ok());
        assert_eq!(p.signed_bytes().len(), 0x2A0);
        assert_eq!(p.signature_algo(), SignatureAlgo::ECDSA_P384_SHA384);
        assert_eq!(p.key_info.signing_key(), SigningKey::VCEK);
        assert!(p.platform_info.smt_en() && p.platform_info.ecc_en());
        assert!(p.platform_info.alias_check_complete() && !p.platform_info.tsme_en());
    }

    #[test]
    fn size_and_version_errors() {
        let r = sample();
        let b = r.as_bytes();
        assert_eq!(
            AttestationReport::parse(&b[..793]),
            Err(ReportError::Size {
                got: 793,
                expected: 0x4A0
            })
        );
        let mut long = b.to_vec();
        long.extend_from_slice(&[1, 2, 3]);
        assert!(AttestationReport::parse(&long).is_err());
        let (p, rest) = AttestationReport::parse_prefix(&long).unwrap();
        assert_eq!((p, rest), (r, &[1u8, 2, 3][..]));
        for v in [0u32, 1, 4, 6, 0xFFFF_FFFF] {
            let mut x = r;
            x.version = v;
            assert_eq!(
                AttestationReport::parse(x.as_bytes()),
                Err(ReportError::UnsupportedVersion(v))
            );
        }
        let msg = ReportError::UnsupportedVersion(4).to_string();
        assert!(msg.contains("version 4"), "{msg}");
    }

    #[test]
    fn reserved_rules_per_version() {
        let r = sample();
        for (off, v, bad) in [
            (0x04C, 3, true),
            (0x18C, 3, true),
            (0x188, 3, false),
            (0x188, 2, true),
            (0x1EB, 5, true),
            (0x1EF, 5, true),
            (0x1F8, 3, true),
            (0x1F8, 5, false),
            (0x200, 5, false),
            (0x208, 5, true),
            (0x29F, 2, true),
            (0x330, 3, true),
            (0x4A0 - 1, 5, true),
            (0x2A0, 3, false),
        ] {
            let mut b = r.as_bytes().to_vec();
            b[0] = v as u8;
            if v == 2 {
                b[0x188..0x18B].fill(0);
            }
            b[off] = 1;
            let x = AttestationReport::parse(&b).unwrap();
            let res = x.check_reserved();
            assert_eq!(res.is_err(), bad, "offset {off:#x} v{v}: {res:?}");
            if let Err(ReportError::ReservedNonZero { offset, .. }) = res {
                assert_eq!(offset, off);
            }
        }
        let mut k = r;
        k.key_info = KeyInfo(1 << 5);
        assert!(k.check_reserved().is_err());
    }

    #[test]
    fn key_info_and_platform_info_bits() {
        let k = KeyInfo::new(true, true, SigningKey::VLEK);
        assert_eq!(k.0, 0b00111);
        assert!(k.author_key_en() && k.mask_chip_key());
        assert_eq!(k.signing_key(), SigningKey::VLEK);
        assert_eq!(KeyInfo(7 << 2).signing_key(), SigningKey::NONE);
        assert_eq!(KeyInfo(3 << 2).signing_key(), SigningKey(3));
        assert_eq!(
            PlatformInfo(0x65).flag_names(),
            ["SMT_EN", "ECC_EN", "ALIAS_CHECK_COMPLETE", "BIT6"]
        );
        assert_eq!(PlatformInfo(1 << 9).flag_names(), ["bit9"]);
        assert!(PlatformInfo(0x80).tio_en());
    }

    #[test]
    fn turin_chip_id_and_tcb() {
        let mut r = sample();
        r.version = 5;
        r.set_cpuid_for(Product::Turin);
        r.chip_id = [0; 64];
        r.chip_id[..8].copy_from_slice(&[0x3b, 0x42, 0x09, 0x2f, 0x69, 0xc6, 0x56, 0xd3]);
        r.reported_tcb = RawTcb([0, 1, 0, 2, 0, 0, 0, 71]);
        assert_eq!(r.product(), Some(Product::Turin));
        assert!(r.chip_id_is_short() && !r.chip_id_masked());
        assert_eq!(r.chip_id_for(Product::Turin).len(), 8);
        assert_eq!(r.chip_id_for(Product::Genoa).len(), 64);
        // The Milan-layout TCBs written by sample() do not decode as Turin.
        let e = r.tcbs(Product::Turin).unwrap_err();
        assert!(e.to_string().contains("CURRENT_TCB"), "{e}");
        r.current_tcb = r.reported_tcb;
        r.committed_tcb = r.reported_tcb;
        r.launch_tcb = r.reported_tcb;
        let t = r.tcbs(Product::Turin).unwrap();
        assert_eq!((t.reported.snp, t.reported.microcode), (2, 71));
    }

    #[test]
    fn real_report_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/snp/turin-v5-yaxi/report.bin"
        );
        let Ok(bytes) = std::fs::read(path) else {
            println!("SKIP: fixture {path} absent");
            return;
        };
        let r = AttestationReport::parse(&bytes).unwrap();
        assert_eq!(r.version, 5);
        assert_eq!(r.product(), Some(Product::Turin));
        assert!(r.check_reserved().is_ok());
        assert_eq!(r.as_bytes(), &bytes[..]);
    }
}
