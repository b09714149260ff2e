//! The firmware's state, as a leaf the command handlers share: the platform state
//! machines, the ASID table and the guest table (AMD SEV firmware `sev_plat.h`,
//! `sev_guest.c`; SNP ABI "Platform State", "Guest State";
//! shared/spec/sev-legacy.md §1.2–1.3 for the legacy side).
//!
//! SNP's machine (UNINIT ↔ INIT) and legacy SEV's (UNINIT → INIT → WORKING) run side by
//! side on one chip and share the ASID table; legacy guests are named by
//! firmware-allocated handles instead of context pages: [`SevPlatformState`],
//! [`SevHandle`] and [`SevHandleAllocator`] are those types, and the legacy side's own
//! state (identity store, TMR, guest contexts) is `crate::sev_ctx`.

use crate::guest_ctx::GuestContext;
use softsev_abi::{FwStatus, Spa, TcbVersion};
use softsev_crypto::rng::Rng;
use std::collections::HashMap;

/// A firmware version (API major.minor and build id), as PLATFORM_STATUS and the
/// attestation report carry it; ordered by (major, minor, build).
pub use softsev_abi::report::FirmwareVersion as FwVersion;

/// A firmware image as SNP_DOWNLOAD_FIRMWARE_EX would install it: its version and the
/// TCB it runs at (its SNP SVN; the other components come from the boot loader, the
/// TEE and the microcode, which [`crate::Firmware::download_firmware`] takes from the
/// image too, so a whole "platform update" can be modelled in one step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareImage {
    /// The image's version.
    pub version: FwVersion,
    /// The TCB the platform runs at with this image.
    pub tcb: TcbVersion,
}

/// SNP platform state (`SNP_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PlatformState {
    /// Not initialised (after reset or SNP_SHUTDOWN).
    Uninit = 0,
    /// Initialised (after SNP_INIT / SNP_INIT_EX).
    Init = 1,
}

/// Legacy SEV platform state (`SEV_STATE_*`, SEV API §5.1): UNINIT → INIT (INIT)
/// → WORKING (first LAUNCH_START or RECEIVE_START) → back to INIT when the last guest
/// is decommissioned; SHUTDOWN → UNINIT from any state (sev-legacy.md §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SevPlatformState {
    /// Not initialised.
    Uninit = 0,
    /// Initialised, no guests.
    Init = 1,
    /// At least one guest exists.
    Working = 2,
}

/// The firmware's bookkeeping of an ASID (per CCX on hardware; the model has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsidState {
    /// May hold stale cache lines: DF_FLUSH (after WBINVD) needed before reuse.
    Dirty,
    /// Free.
    Clean,
    /// Bound to a guest that has not run yet (activation pending).
    Allocated,
    /// Bound to a running guest.
    InUse,
}

/// The state of ASIDs 1..=max (ASID 0 is the host's and has no entry).
#[derive(Debug)]
pub(crate) struct AsidTable {
    /// Index asid - 1.
    slots: Vec<AsidState>,
}

impl AsidTable {
    /// ASIDs 1..=`max`, all dirty (the state after reset).
    pub(crate) fn new(max: usize) -> Self {
        AsidTable {
            slots: vec![AsidState::Dirty; max],
        }
    }

    /// The highest ASID.
    pub(crate) fn max(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// The state of `asid` (`None` for 0 or beyond the table).
    pub(crate) fn get(&self, asid: u32) -> Option<AsidState> {
        self.slots.get(asid.checked_sub(1)? as usize).copied()
    }

    /// Set the state of `asid` (ignored for 0 or beyond the table).
    pub(crate) fn set(&mut self, asid: u32, state: AsidState) {
        if let Some(s) = asid
            .checked_sub(1)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            *s = state;
        }
    }

    /// Every ASID dirty (SNP_INIT: the host must WBINVD and DF_FLUSH first).
    pub(crate) fn mark_all_dirty(&mut self) {
        self.slots.fill(AsidState::Dirty);
    }

    /// DF_FLUSH: every dirty ASID becomes clean.
    pub(crate) fn flush(&mut self) {
        for a in self.slots.iter_mut() {
            if *a == AsidState::Dirty {
                *a = AsidState::Clean;
            }
        }
    }

    /// Whether every ASID is clean (SNP_SHUTDOWN's precondition).
    pub(crate) fn all_clean(&self) -> bool {
        self.slots.iter().all(|a| *a == AsidState::Clean)
    }

    /// `(asid, state)` for every ASID.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, AsidState)> + '_ {
        (1u32..).zip(self.slots.iter().copied())
    }
}

/// A legacy SEV guest handle: 1..=[`SevHandle::MAX`] (`SEV_GUEST_COUNT_MAX`), allocated
/// by the firmware at LAUNCH_START / RECEIVE_START. 0 is never a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SevHandle(u32);

impl SevHandle {
    /// The highest handle (`SEV_GUEST_COUNT_MAX`).
    pub const MAX: u32 = 1024;

    /// `raw` as a handle, if it is in 1..=[`SevHandle::MAX`].
    pub fn new(raw: u32) -> Option<SevHandle> {
        (1..=Self::MAX).contains(&raw).then_some(SevHandle(raw))
    }

    /// The handle's number, as the command buffers carry it.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The firmware's handle allocator for legacy SEV guests: the lowest free handle
/// first (`find_free_guest_handle`); none free is RESOURCE_LIMIT.
#[derive(Clone, Debug, Default)]
pub struct SevHandleAllocator {
    used: std::collections::BTreeSet<u32>,
}

impl SevHandleAllocator {
    /// Allocate the lowest free handle.
    pub fn allocate(&mut self) -> Result<SevHandle, FwStatus> {
        let free = (1..=SevHandle::MAX)
            .find(|h| !self.used.contains(h))
            .ok_or(FwStatus::RESOURCE_LIMIT)?;
        self.used.insert(free);
        Ok(SevHandle(free))
    }

    /// Return `handle` to the pool (DECOMMISSION); false if it was not allocated.
    pub fn release(&mut self, handle: SevHandle) -> bool {
        self.used.remove(&handle.0)
    }

    /// Whether `handle` is allocated.
    pub fn is_allocated(&self, handle: SevHandle) -> bool {
        self.used.contains(&handle.0)
    }
}

/// How the firmware names a guest: SNP by its context page, legacy SEV by handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestHandle {
    /// An SNP guest: the address of its context page (CONTEXT state in the RMP).
    Snp(Spa),
    /// A legacy SEV / SEV-ES guest: its firmware-allocated handle.
    Sev(SevHandle),
}

/// The live guest contexts.
#[derive(Default)]
pub(crate) struct Guests {
    map: HashMap<GuestHandle, GuestContext>,
}

impl Guests {
    /// The context of `h`.
    pub(crate) fn get(&self, h: GuestHandle) -> Option<&GuestContext> {
        self.map.get(&h)
    }

    /// The context of `h`, mutably.
    pub(crate) fn get_mut(&mut self, h: GuestHandle) -> Option<&mut GuestContext> {
        self.map.get_mut(&h)
    }

    /// Whether `h` names a live context.
    pub(crate) fn contains(&self, h: GuestHandle) -> bool {
        self.map.contains_key(&h)
    }

    /// Add (or replace) the context of `h`.
    pub(crate) fn insert(&mut self, h: GuestHandle, ctx: GuestContext) {
        self.map.insert(h, ctx);
    }

    /// Remove the context of `h`.
    pub(crate) fn remove(&mut self, h: GuestHandle) -> Option<GuestContext> {
        self.map.remove(&h)
    }

    /// Move the context of `h` to its next state: `step` consumes the old state and
    /// returns the new one. Nothing happens if `h` names no context.
    pub(crate) fn transition(
        &mut self,
        h: GuestHandle,
        step: impl FnOnce(GuestContext) -> GuestContext,
    ) {
        if let Some(ctx) = self.map.remove(&h) {
            self.map.insert(h, step(ctx));
        }
    }

    /// Drop every context (SNP_SHUTDOWN).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of live contexts.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The handles of every live context.
    pub(crate) fn handles(&self) -> impl Iterator<Item = GuestHandle> + '_ {
        self.map.keys().copied()
    }
}

/// Everything the firmware keeps between commands, behind the mailbox lock.
pub(crate) struct State {
    /// The SNP platform machine.
    pub(crate) snp: PlatformState,
    /// The legacy SEV side: platform machine, identity store, TMR, guests.
    pub(crate) sev: crate::sev_ctx::SevState,
    /// Whether the RMP has been initialised since the last IOMMU shutdown.
    pub(crate) rmp_initialized: bool,
    /// The running firmware image.
    pub(crate) current: FirmwareImage,
    /// The committed image (the anti-rollback floor).
    pub(crate) committed: FirmwareImage,
    /// REPORTED_TCB (SNP_CONFIG).
    pub(crate) reported_tcb: TcbVersion,
    /// SNP_CONFIG MASK_CHIP_ID.
    pub(crate) mask_chip_id: bool,
    /// SNP_CONFIG MASK_CHIP_KEY.
    pub(crate) mask_chip_key: bool,
    /// The ASID table.
    pub(crate) asids: AsidTable,
    /// The guest table.
    pub(crate) guests: Guests,
    /// SNP guests launched and not decommissioned (PLATFORM_STATUS GUEST_COUNT).
    pub(crate) guest_count: u32,
    /// The firmware's random numbers (VEKs, VMPCKs, report ids).
    pub(crate) rng: Rng,
}

impl State {
    /// The state after reset: both machines UNINIT, every ASID dirty, no guests.
    pub(crate) fn new(image: FirmwareImage, max_asid: usize, rng: Rng) -> Self {
        State {
            snp: PlatformState::Uninit,
            sev: crate::sev_ctx::SevState::new(),
            rmp_initialized: false,
            current: image,
            committed: image,
            reported_tcb: image.tcb,
            mask_chip_id: false,
            mask_chip_key: false,
            asids: AsidTable::new(max_asid),
            guests: Guests::default(),
            guest_count: 0,
            rng,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sev_handles_are_1_to_1024() {
        assert_eq!(SevHandle::new(0), None);
        assert_eq!(SevHandle::new(1).map(SevHandle::get), Some(1));
        assert_eq!(SevHandle::new(1024).map(SevHandle::get), Some(1024));
        assert_eq!(SevHandle::new(1025), None);
    }

    #[test]
    fn allocator_hands_out_the_lowest_free_handle_until_none_is_left() {
        let mut a = SevHandleAllocator::default();
        let first = a.allocate().unwrap();
        assert_eq!(first.get(), 1);
        assert_eq!(a.allocate().unwrap().get(), 2);
        assert!(a.release(first));
        assert!(!a.release(first));
        assert_eq!(a.allocate().unwrap().get(), 1);
        for _ in 2..SevHandle::MAX {
            a.allocate().unwrap();
        }
        assert!(a.is_allocated(SevHandle::new(1024).unwrap()));
        assert_eq!(a.allocate(), Err(FwStatus::RESOURCE_LIMIT));
    }

    #[test]
    fn asid_table_skips_the_host_asid() {
        let mut t = AsidTable::new(4);
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(4), Some(AsidState::Dirty));
        assert_eq!(t.get(5), None);
        t.flush();
        assert!(t.all_clean());
        t.set(2, AsidState::InUse);
        assert_eq!(t.get(2), Some(AsidState::InUse));
        assert!(!t.all_clean());
    }
}
