//! What the firmware keeps for the legacy SEV API beside the SNP state
//! (shared/spec/sev-legacy.md §1.3–1.5, §1.9, §3; ASPFW `sev_plat.h`, `sev_guest.h`):
//! the SEV platform machine, its persistent identity store, the TMR of SEV-ES, and the
//! guest contexts keyed by [`SevHandle`].
//!
//! The persistent store is the plaintext of [`SevIdentity::to_store`]: kept in the
//! model's memory for INIT (the firmware's SPI flash) or sealed into the host's
//! 32 KiB buffer for INIT_EX (docs/firmware-sev.md, "persistent state").

use crate::identity::sev::SevIdentity;
use crate::state::{SevHandle, SevHandleAllocator, SevPlatformState};
use softsev_abi::sev_buf::SevGuestState;
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::sev::SevKey;
use softsev_measure::SevDigest;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Size of one VMSA integrity block in the TMR (a model choice: ASPFW's block size is
/// not in the published headers; a 1 MiB TMR holds 16384 blocks).
pub(crate) const CRC_BLOCK_LEN: u64 = 64;

/// The trusted memory region SEV-ES INIT reserves (§1.2, §3.3): its place and the pool
/// of VMSA integrity blocks.
pub(crate) struct Tmr {
    /// Physical base.
    pub(crate) base: u64,
    /// Length (1 MiB, or 2 MiB with the SNP RMP initialised).
    pub(crate) len: u64,
    /// Integrity value per used block (index = offset / [`CRC_BLOCK_LEN`]): the model
    /// keeps SHA-256 of VMSA bytes 0..0xFC0 where ASPFW keeps a CRC64.
    pub(crate) blocks: BTreeMap<u32, [u8; 32]>,
}

impl Tmr {
    /// Take the lowest free block for `integrity`; `None` when the pool is empty.
    pub(crate) fn allocate(&mut self, integrity: [u8; 32]) -> Option<u32> {
        let count = u32::try_from(self.len / CRC_BLOCK_LEN).unwrap_or(u32::MAX);
        let free = (0..count).find(|i| !self.blocks.contains_key(i))?;
        self.blocks.insert(free, integrity);
        Some(free)
    }

    /// The physical address of block `i`.
    pub(crate) fn block_pa(&self, i: u32) -> u64 {
        self.base + u64::from(i) * CRC_BLOCK_LEN
    }
}

/// Where the persistent store of the running platform lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreLoc {
    /// The firmware's own flash (INIT).
    Spi,
    /// The host's NV buffer given to INIT_EX.
    Nv {
        /// Physical address.
        paddr: u64,
        /// Length (32 KiB).
        len: u32,
    },
}

/// The ASID binding of a legacy guest (§1.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SevBinding {
    /// No ASID.
    None,
    /// ACTIVATE bound the ASID (key installed) before the guest runs: Allocated until
    /// LAUNCH_FINISH / RECEIVE_FINISH makes it valid.
    Pending(u32),
    /// The ASID is valid (InUse).
    Active(u32),
}

impl SevBinding {
    /// The bound ASID, pending or active.
    pub(crate) fn asid(self) -> Option<u32> {
        match self {
            SevBinding::None => None,
            SevBinding::Pending(a) | SevBinding::Active(a) => Some(a),
        }
    }
}

/// The launch channel: TEK and TIK (zero without a session, §0.2-4) and, after
/// LAUNCH_MEASURE, the measurement LAUNCH_SECRET MACs (§3.5). Wiped at LAUNCH_FINISH.
pub(crate) struct Channel {
    pub(crate) tek: SevKey,
    pub(crate) tik: SevKey,
    pub(crate) measure: Option<[u8; 32]>,
}

/// One legacy guest context.
pub(crate) struct SevGuest {
    pub(crate) state: SevGuestState,
    pub(crate) policy: u32,
    /// The memory encryption key seed (shared with the guest named at LAUNCH_START).
    pub(crate) vek: Zeroizing<[u8; 16]>,
    pub(crate) binding: SevBinding,
    pub(crate) channel: Option<Channel>,
    /// The running launch digest (LUPDATE only).
    pub(crate) digest: Option<SevDigest>,
    /// LD as LAUNCH_MEASURE finalised it (ATTESTATION reports it).
    pub(crate) ld: [u8; 32],
    /// The TMR integrity blocks of this guest's VMSAs.
    pub(crate) crc_blocks: Vec<u32>,
    /// The Offline Encryption Key of SWAP_OUT/IN (§5.6) and its IV counter; drawn at
    /// the first SWAP_OUT (a model choice: the OEK never leaves the context, so when
    /// it is drawn is unobservable).
    pub(crate) oek: Option<(Zeroizing<[u8; 32]>, u64)>,
}

impl SevGuest {
    /// Whether the policy asks for SEV-ES (bit 2, §3.8).
    pub(crate) fn is_es(&self) -> bool {
        self.policy & POLICY_ES != 0
    }
}

/// Policy bit 0: no debugging (§3.8).
pub(crate) const POLICY_NODBG: u32 = 1 << 0;
/// Policy bit 1: no key sharing.
pub(crate) const POLICY_NOKS: u32 = 1 << 1;
/// Policy bit 2: SEV-ES.
pub(crate) const POLICY_ES: u32 = 1 << 2;
/// Policy bits 6–15: reserved.
pub(crate) const POLICY_RESERVED: u32 = 0xFFC0;

/// The legacy SEV side of the firmware state.
pub(crate) struct SevState {
    /// UNINIT / INIT / WORKING.
    pub(crate) platform: SevPlatformState,
    /// INIT flag bit 0: SEV-ES initialised (PLATFORM_STATUS config flags).
    pub(crate) es: bool,
    /// The reserved TMR (ES INIT).
    pub(crate) tmr: Option<Tmr>,
    /// Where the running platform's store lives (set at INIT / INIT_EX).
    pub(crate) store: StoreLoc,
    /// The last INIT_EX NV buffer (PLATFORM_RESET erases it, docs/firmware-sev.md).
    pub(crate) last_nv: Option<(u64, u32)>,
    /// The SPI store's plaintext (`None` = empty).
    pub(crate) spi: Option<Zeroizing<Vec<u8>>>,
    /// OCA, PEK, PDH of the running platform (INIT / WORKING).
    pub(crate) identity: Option<SevIdentity>,
    /// The CEK derived at INIT.
    pub(crate) cek: Option<P384SigningKey>,
    pub(crate) handles: SevHandleAllocator,
    pub(crate) guests: BTreeMap<SevHandle, SevGuest>,
}

impl SevState {
    /// After reset: UNINIT, empty store.
    pub(crate) fn new() -> SevState {
        SevState {
            platform: SevPlatformState::Uninit,
            es: false,
            tmr: None,
            store: StoreLoc::Spi,
            last_nv: None,
            spi: None,
            identity: None,
            cek: None,
            handles: SevHandleAllocator::default(),
            guests: BTreeMap::new(),
        }
    }
}

// ---- legacy SEV observers and simulator-only accessors (not mailbox commands) ----

impl crate::Firmware {
    /// The AMD-format ASK and ARK of this product (sev-legacy.md §2.2), encoded as AMD
    /// publishes them: the `--ca` file of `sevctl verify` is `ask ‖ ark`. They carry
    /// the same RSA-4096 keys as the SNP X.509 ASK/ARK ([`crate::identity::AmdRoot`]).
    /// Simulator-only: on real systems these come from AMD.
    ///
    /// # Panics
    ///
    /// Only if the RSA backend cannot sign with the product's own root keys.
    pub fn sev_ca_certs(&self) -> (Vec<u8>, Vec<u8>) {
        let ca = self
            .chip
            .root()
            .sev_legacy_ca()
            .unwrap_or_else(|e| panic!("legacy SEV CA of {}: {e}", self.chip.product()));
        (ca.ask.encode(), ca.ark.encode())
    }

    /// This chip's CEK signed by the product's ASK with (0x13, RSA_SHA384) in sig1 and
    /// the firmware's API version, as AMD's KDS serves it at `/cek/id/<GET_ID hex>`
    /// (sev-legacy.md §2.6; PDH_CERT_EXPORT returns the CEK unsigned, §0.2-9).
    /// Simulator-only.
    ///
    /// # Panics
    ///
    /// Only if the chip cannot derive its CEK or the RSA backend cannot sign.
    pub fn sev_kds_cek(&self) -> softsev_abi::sev_cert::SevCert {
        let root = self.chip.root();
        let version = self.state.lock().current.version;
        let cek = self
            .chip
            .sev_cek()
            .unwrap_or_else(|e| panic!("CEK of this chip: {e}"));
        root.sev_legacy_ca()
            .and_then(|ca| ca.sign_cek(root, cek.public(), version))
            .unwrap_or_else(|e| panic!("signing the CEK with the {} ASK: {e}", root.product()))
    }

    /// The pinned ARK of this firmware (key id and hash, sev-legacy.md §2.2): the
    /// product's simulated ARK.
    ///
    /// # Panics
    ///
    /// As [`crate::Firmware::sev_ca_certs`].
    pub fn sev_pinned_ark(&self) -> crate::identity::sev::PinnedArk {
        self.chip
            .root()
            .sev_legacy_ca()
            .unwrap_or_else(|e| panic!("legacy SEV CA of {}: {e}", self.chip.product()))
            .pinned()
    }

    /// The state of legacy guest `handle` (`None` if no such context).
    pub fn sev_guest_state(&self, handle: u32) -> Option<SevGuestState> {
        let st = self.state.lock();
        SevHandle::new(handle).and_then(|h| st.sev.guests.get(&h).map(|g| g.state))
    }

    /// The launch digest of legacy guest `handle` as LAUNCH_MEASURE finalised it (zero
    /// before), for comparing with `softsev measure`.
    pub fn sev_launch_digest(&self, handle: u32) -> Option<[u8; 32]> {
        let st = self.state.lock();
        SevHandle::new(handle).and_then(|h| st.sev.guests.get(&h).map(|g| g.ld))
    }

    /// Test-only observer: the TEK and TIK of legacy guest `handle`'s launch channel
    /// (all zero without a session; `None` once LAUNCH_FINISH wiped it). Real firmware
    /// never reveals them; tests compare them with the guest owner's (sevctl session).
    #[doc(hidden)]
    pub fn sev_transport_keys_for_test(&self, handle: u32) -> Option<(SevKey, SevKey)> {
        let st = self.state.lock();
        let g = st.sev.guests.get(&SevHandle::new(handle)?)?;
        let ch = g.channel.as_ref()?;
        Some((ch.tek.clone(), ch.tik.clone()))
    }

    /// Test-only: replace the PDH private key by `scalar` (big-endian P-384) and
    /// re-issue the PDH certificate signed by the PEK, so the spec's session vectors
    /// (sev-legacy.md §3.2, d_pdh) can run through LAUNCH_START. The platform must be
    /// INIT or WORKING (INVALID_PLATFORM_STATE); an invalid scalar is INVALID_PARAM. Not
    /// persisted.
    #[doc(hidden)]
    pub fn sev_set_pdh_scalar_for_test(&self, scalar: &[u8; 48]) -> crate::FwResult {
        let mut st = self.state.lock();
        let api = st.current.version;
        let st = &mut *st;
        let id = st
            .sev
            .identity
            .as_mut()
            .ok_or(softsev_abi::FwStatus::INVALID_PLATFORM_STATE)?;
        id.set_pdh_scalar(scalar, &mut st.rng, api)
    }
}

// ---- the CPU's use of the TMR for SEV-ES register state (not mailbox commands) ----

/// Size of a VMSA (sev-legacy.md §1.2).
pub(crate) const VMSA_LEN: usize = 4096;
/// VMSA offset the firmware zeroes when it stamps a VMSA (§3.3).
pub(crate) const VMSA_STAMP_ZERO: usize = 0x380;
/// VMSA offset holding the integrity block's physical address (§3.3).
pub(crate) const VMSA_STAMP_CRC: usize = 0x388;
/// Bytes of the VMSA the integrity value covers (§3.3: 0..0xFBF).
pub(crate) const VMSA_CRC_SPAN: usize = 0xFC0;

/// Why the CPU refused an SEV-ES VMSA ([`crate::Firmware::cpu_sev_es_save_vmsa`],
/// [`crate::Firmware::cpu_sev_es_load_vmsa`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmsaIntegrityError {
    /// The platform has no TMR (not initialised for SEV-ES).
    #[error("no SEV-ES trusted memory region")]
    NoTmr,
    /// The page's integrity pointer (offset 0x388) names no block of a guest bound
    /// to this ASID.
    #[error("VMSA integrity pointer {0:#x} names no block of this guest")]
    NotOwned(u64),
    /// The page's contents do not match its integrity block (tampered or stale).
    #[error("VMSA integrity check failed")]
    Mismatch,
    /// The page could not be read or written with the guest's key.
    #[error("VMSA access: {0}")]
    Access(String),
}

impl crate::Firmware {
    /// The block index the VMSA `page` points at (offset 0x388), if it lies in the
    /// TMR and belongs to a legacy guest bound to `asid`.
    fn es_block(
        st: &crate::state::State,
        asid: u32,
        page: &[u8],
    ) -> Result<u32, VmsaIntegrityError> {
        let tmr = st.sev.tmr.as_ref().ok_or(VmsaIntegrityError::NoTmr)?;
        let mut pa = [0u8; 8];
        pa.copy_from_slice(&page[VMSA_STAMP_CRC..VMSA_STAMP_CRC + 8]);
        let pa = u64::from_le_bytes(pa);
        let idx = pa
            .checked_sub(tmr.base)
            .filter(|o| o % CRC_BLOCK_LEN == 0 && *o < tmr.len)
            .and_then(|o| u32::try_from(o / CRC_BLOCK_LEN).ok())
            .ok_or(VmsaIntegrityError::NotOwned(pa))?;
        let owned = st
            .sev
            .guests
            .values()
            .any(|g| g.binding.asid() == Some(asid) && g.crc_blocks.contains(&idx));
        if !owned {
            return Err(VmsaIntegrityError::NotOwned(pa));
        }
        Ok(idx)
    }

    /// Simulator hook for the CPU, not a firmware command: the #VMEXIT of an SEV-ES
    /// guest of `asid` saves its register state into its VMSA page at `spa`,
    /// encrypted with the guest's key, and records the new integrity value in the TMR
    /// block the page names (AMD APM vol. 2 §15.35 "SEV-ES": guest state is saved to
    /// the encrypted VMSA with an integrity check value in protected memory; the
    /// firmware's stamp at 0x380..0x38F is kept). `vmsa` is the new plaintext; its
    /// bytes 0x380..0x38F are ignored.
    pub fn cpu_sev_es_save_vmsa(
        &self,
        asid: u32,
        spa: softsev_abi::Spa,
        vmsa: &[u8; VMSA_LEN],
    ) -> Result<(), VmsaIntegrityError> {
        use softsev_soc::KeySel;
        let key = KeySel::Guest(softsev_abi::Asid(asid));
        let mut cur = Zeroizing::new(vec![0u8; VMSA_LEN]);
        self.soc
            .fw_read(spa, key, &mut cur)
            .map_err(|e| VmsaIntegrityError::Access(e.to_string()))?;
        let mut st = self.state.lock();
        let idx = Self::es_block(&st, asid, &cur)?;
        let mut new = Zeroizing::new(vmsa.to_vec());
        new[VMSA_STAMP_ZERO..VMSA_STAMP_CRC + 8]
            .copy_from_slice(&cur[VMSA_STAMP_ZERO..VMSA_STAMP_CRC + 8]);
        let tmr = st.sev.tmr.as_mut().ok_or(VmsaIntegrityError::NoTmr)?;
        tmr.blocks
            .insert(idx, softsev_crypto::hash::sha256(&new[..VMSA_CRC_SPAN]));
        drop(st);
        self.soc
            .fw_write(spa, key, &new)
            .map_err(|e| VmsaIntegrityError::Access(e.to_string()))
    }

    /// Simulator hook for the CPU: VMRUN of an SEV-ES guest of `asid` loads its
    /// register state from the VMSA page at `spa` (decrypted with the guest's key)
    /// after checking it against its TMR integrity block; a mismatch fails VMRUN.
    pub fn cpu_sev_es_load_vmsa(
        &self,
        asid: u32,
        spa: softsev_abi::Spa,
    ) -> Result<Zeroizing<Vec<u8>>, VmsaIntegrityError> {
        use softsev_soc::KeySel;
        let mut page = Zeroizing::new(vec![0u8; VMSA_LEN]);
        self.soc
            .fw_read(spa, KeySel::Guest(softsev_abi::Asid(asid)), &mut page)
            .map_err(|e| VmsaIntegrityError::Access(e.to_string()))?;
        let st = self.state.lock();
        let idx = Self::es_block(&st, asid, &page)?;
        let tmr = st.sev.tmr.as_ref().ok_or(VmsaIntegrityError::NoTmr)?;
        let want = tmr.blocks.get(&idx).ok_or(VmsaIntegrityError::Mismatch)?;
        if !softsev_crypto::ct::ct_eq(want, &softsev_crypto::hash::sha256(&page[..VMSA_CRC_SPAN])) {
            return Err(VmsaIntegrityError::Mismatch);
        }
        Ok(page)
    }
}
