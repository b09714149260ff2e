//! MSG_KEY_REQ derived keys (snp-attestation.md §4).
//!
//! A derived key is `KDF(root, "softsev gmsg-keyreq", mix)` (NIST SP 800-108 counter
//! mode, HMAC-SHA-384, 32 bytes out). `mix` always holds the root-key selector, the
//! GUEST_FIELD_SELECT mask, the VMPL, HOST_DATA and the launch key kind and digest; the
//! optional fields (policy, image id, family id, measurement, guest SVN, TCB version,
//! launch mitigation vector) are copied in when their GUEST_FIELD_SELECT bit is set and
//! are zero otherwise. So a key changes whenever a selected input changes, and never
//! when an unselected one does. AMD's own mix layout is similar but not reproduced
//! (keys need not match real hardware: no two chips share them anyway).
//!
//! Request validation against the guest context (VMPL below the requester's, SVN and
//! TCB above the committed ones) yields firmware status codes and belongs to the
//! command dispatcher; this module only rejects values it cannot represent.

use super::IdentityError;
use super::chip::{Chip, Vlek};
use softsev_abi::TcbVersion;
use softsev_crypto::kdf;
use zeroize::Zeroizing;

/// GUEST_FIELD_SELECT of MSG_KEY_REQ: which optional guest fields are mixed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestFieldSelect(pub u64);

impl GuestFieldSelect {
    /// Bit 0: guest policy.
    pub const POLICY: u64 = 1 << 0;
    /// Bit 1: IMAGE_ID.
    pub const IMAGE_ID: u64 = 1 << 1;
    /// Bit 2: FAMILY_ID.
    pub const FAMILY_ID: u64 = 1 << 2;
    /// Bit 3: launch MEASUREMENT.
    pub const MEASUREMENT: u64 = 1 << 3;
    /// Bit 4: GUEST_SVN.
    pub const GUEST_SVN: u64 = 1 << 4;
    /// Bit 5: TCB_VERSION.
    pub const TCB_VERSION: u64 = 1 << 5;
    /// Bit 6: LAUNCH_MIT_VECTOR (message version 2).
    pub const LAUNCH_MIT_VECTOR: u64 = 1 << 6;
    /// All defined bits.
    pub const ALL: u64 = 0x7f;

    fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }
}

/// Which launch-time key signed the ID block, if any (mixed into every derived key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LaunchKey {
    /// No ID block key.
    #[default]
    None,
    /// The ID key, by its SHA-384 digest.
    IdKey([u8; 48]),
    /// The author key, by its SHA-384 digest.
    AuthorKey([u8; 48]),
}

/// The root a key is derived from.
pub enum KeyRoot<'a> {
    /// The chip's versioned secret (the VCEK chain). `platform_tcb` is the TCB used when
    /// the request does not select TCB_VERSION (the guest's committed TCB).
    Vcek {
        /// The chip.
        chip: &'a Chip,
        /// TCB used when TCB_VERSION is not selected.
        platform_tcb: TcbVersion,
    },
    /// The loaded VLEK's secret.
    Vlek(&'a Vlek),
    /// The guest's VM root key (ROOT_KEY_SELECT = 1), from launch or migration.
    Vmrk(&'a [u8; 32]),
}

/// Names the root only: its secret never reaches a log.
impl std::fmt::Debug for KeyRoot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRoot::Vcek { platform_tcb, .. } => f
                .debug_struct("Vcek")
                .field("platform_tcb", platform_tcb)
                .finish_non_exhaustive(),
            KeyRoot::Vlek(_) => f.write_str("Vlek(..)"),
            KeyRoot::Vmrk(_) => f.write_str("Vmrk(..)"),
        }
    }
}

/// Everything a derived key depends on besides the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedKeyRequest {
    /// Optional fields to mix.
    pub guest_field_select: GuestFieldSelect,
    /// Requested VMPL (always mixed).
    pub vmpl: u32,
    /// Requested guest SVN (mixed if selected).
    pub guest_svn: u32,
    /// Requested TCB (mixed, and the VCEK secret re-derived for it, if selected).
    pub tcb: TcbVersion,
    /// Launch mitigation vector (mixed if selected).
    pub launch_mit_vector: u64,
    /// Guest policy of the context (mixed if selected).
    pub policy: u64,
    /// IMAGE_ID from the ID block (mixed if selected).
    pub image_id: [u8; 16],
    /// FAMILY_ID from the ID block (mixed if selected).
    pub family_id: [u8; 16],
    /// Launch measurement (mixed if selected).
    pub measurement: [u8; 48],
    /// HOST_DATA (always mixed).
    pub host_data: [u8; 32],
    /// The launch key (always mixed).
    pub launch_key: LaunchKey,
}

impl Default for DerivedKeyRequest {
    fn default() -> Self {
        Self {
            guest_field_select: GuestFieldSelect::default(),
            vmpl: 0,
            guest_svn: 0,
            tcb: TcbVersion::default(),
            launch_mit_vector: 0,
            policy: 0,
            image_id: [0; 16],
            family_id: [0; 16],
            measurement: [0; 48],
            host_data: [0; 32],
            launch_key: LaunchKey::None,
        }
    }
}

fn tcb_bytes(t: &TcbVersion) -> [u8; 8] {
    [t.fmc, t.bootloader, t.tee, t.snp, t.microcode, 0, 0, 0]
}

/// Derive the 32-byte key of a MSG_KEY_REQ. Errors only on undefined
/// GUEST_FIELD_SELECT bits or a TCB the chip's product cannot have.
pub fn derive_key(
    root: &KeyRoot<'_>,
    req: &DerivedKeyRequest,
) -> Result<Zeroizing<[u8; 32]>, IdentityError> {
    let gfs = req.guest_field_select;
    if gfs.0 & !GuestFieldSelect::ALL != 0 {
        return Err(IdentityError::BadKeyRequest {
            field: "GUEST_FIELD_SELECT",
            value: gfs.0,
        });
    }
    let sel_tcb = gfs.has(GuestFieldSelect::TCB_VERSION);
    let (selector, secret): (u32, Zeroizing<Vec<u8>>) = match root {
        KeyRoot::Vcek { chip, platform_tcb } => {
            let tcb = if sel_tcb { &req.tcb } else { platform_tcb };
            (0, Zeroizing::new(chip.vcek_root_secret(tcb)?.to_vec()))
        }
        KeyRoot::Vlek(v) => (2, Zeroizing::new(v.root_secret().to_vec())),
        KeyRoot::Vmrk(k) => (1, Zeroizing::new(k.to_vec())),
    };
    let pick = |bit: u64, bytes: &[u8]| -> Vec<u8> {
        if gfs.has(bit) {
            bytes.to_vec()
        } else {
            vec![0; bytes.len()]
        }
    };
    let (lk_kind, lk_digest) = match &req.launch_key {
        LaunchKey::None => (0u32, [0u8; 48]),
        LaunchKey::IdKey(d) => (1, *d),
        LaunchKey::AuthorKey(d) => (2, *d),
    };
    let mut mix = Vec::with_capacity(256);
    mix.extend_from_slice(&selector.to_le_bytes());
    mix.extend_from_slice(&gfs.0.to_le_bytes());
    mix.extend_from_slice(&req.vmpl.to_le_bytes());
    mix.extend_from_slice(&pick(
        GuestFieldSelect::GUEST_SVN,
        &req.guest_svn.to_le_bytes(),
    ));
    mix.extend_from_slice(&pick(GuestFieldSelect::TCB_VERSION, &tcb_bytes(&req.tcb)));
    mix.extend_from_slice(&pick(GuestFieldSelect::POLICY, &req.policy.to_le_bytes()));
    mix.extend_from_slice(&pick(GuestFieldSelect::IMAGE_ID, &req.image_id));
    mix.extend_from_slice(&pick(GuestFieldSelect::FAMILY_ID, &req.family_id));
    mix.extend_from_slice(&pick(GuestFieldSelect::MEASUREMENT, &req.measurement));
    mix.extend_from_slice(&pick(
        GuestFieldSelect::LAUNCH_MIT_VECTOR,
        &req.launch_mit_vector.to_le_bytes(),
    ));
    mix.extend_from_slice(&req.host_data);
    mix.extend_from_slice(&lk_kind.to_le_bytes());
    mix.extend_from_slice(&lk_digest);
    Ok(Zeroizing::new(kdf::derive::<32>(
        &secret,
        b"softsev gmsg-keyreq",
        &mix,
    )))
}
