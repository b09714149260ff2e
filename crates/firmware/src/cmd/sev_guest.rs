//! Legacy SEV guest-context housekeeping (shared/spec/sev-legacy.md §1.9; ASPFW
//! `mcmd_activate_common`, `sev_guest_activate`, `sev_es_validate_asid`,
//! `sev_mcmd_deactivate`, `sev_mcmd_decommission`, `sev_mcmd_guest_status`): ACTIVATE,
//! DEACTIVATE, DECOMMISSION, GUEST_STATUS by handle, over the same ASID table as the SNP
//! guests (Dirty / Clean / Allocated / InUse).

use crate::error::CmdResult;
use crate::fw::Firmware;
use crate::sev_ctx::{SevBinding, SevGuest};
use crate::state::{AsidState, SevHandle, SevPlatformState, State};
use softsev_abi::sev_buf::{
    SevActivate, SevDeactivate, SevDecommission, SevGuestState, SevGuestStatus,
};
use softsev_abi::{Asid, FwStatus};

impl Firmware {
    /// The live legacy guest `handle` names, else INVALID_GUEST.
    pub(crate) fn sev_guest<'a>(
        &self,
        st: &'a mut State,
        handle: u32,
    ) -> CmdResult<&'a mut SevGuest> {
        let h = SevHandle::new(handle).ok_or(FwStatus::INVALID_GUEST)?;
        Ok(st.sev.guests.get_mut(&h).ok_or(FwStatus::INVALID_GUEST)?)
    }

    /// ACTIVATE (§1.9), in the firmware's order: WORKING; unknown handle →
    /// INVALID_GUEST; ASID 0 or above the maximum → INVALID_ASID; ASID Allocated/InUse
    /// (by any guest, SNP included) → ASID_OWNED; guest already active or pending →
    /// ACTIVE; guest SENT → INVALID_GUEST_STATE; ASID Dirty → DFFLUSH_REQUIRED; ES guest
    /// outside 1..min_sev_asid or non-ES guest outside min_sev_asid..=max → INVALID_ASID.
    /// The key goes into the memory controller; a RUNNING/SUPDATE guest's ASID is valid
    /// at once (InUse), otherwise the activation is pending (Allocated) until
    /// LAUNCH_FINISH / RECEIVE_FINISH.
    pub(crate) fn sev_activate(&self, st: &mut State, b: SevActivate) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let max = st.asids.max();
        self.sev_guest(st, b.handle)?;
        let asid = b.asid;
        if asid == 0 || asid > max {
            return Err(FwStatus::INVALID_ASID.into());
        }
        let astate = st.asids.get(asid).ok_or(FwStatus::INVALID_ASID)?;
        if matches!(astate, AsidState::InUse | AsidState::Allocated) {
            return Err(FwStatus::ASID_OWNED.into());
        }
        let min_sev = self.config.min_sev_asid;
        let g = self.sev_guest(st, b.handle)?;
        if g.binding != SevBinding::None {
            return Err(FwStatus::ACTIVE.into());
        }
        if g.state == SevGuestState::SENT {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        if astate == AsidState::Dirty {
            return Err(FwStatus::DFFLUSH_REQUIRED.into());
        }
        let in_range = if g.is_es() {
            asid < min_sev
        } else {
            asid >= min_sev
        };
        if !in_range {
            return Err(FwStatus::INVALID_ASID.into());
        }
        let runs = matches!(g.state, SevGuestState::RUNNING | SevGuestState::SUPDATE);
        self.soc
            .activate_key(Asid(asid), &g.vek)
            .map_err(|e| match e {
                softsev_soc::KeyError::NeedsFlush(_) => FwStatus::DFFLUSH_REQUIRED,
                _ => FwStatus::ASID_OWNED,
            })?;
        g.binding = if runs {
            SevBinding::Active(asid)
        } else {
            SevBinding::Pending(asid)
        };
        st.asids.set(
            asid,
            if runs {
                AsidState::InUse
            } else {
                AsidState::Allocated
            },
        );
        Ok(())
    }

    /// DEACTIVATE (§1.9): WORKING, any guest state; unknown handle → INVALID_GUEST; no
    /// ASID → INACTIVE. Allocated → Clean, InUse → Dirty (WBINVD + DF_FLUSH before
    /// reuse).
    pub(crate) fn sev_deactivate(&self, st: &mut State, b: SevDeactivate) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, b.handle)?;
        let asid = g.binding.asid().ok_or(FwStatus::INACTIVE)?;
        g.binding = SevBinding::None;
        self.sev_release_asid(st, asid);
        Ok(())
    }

    /// DECOMMISSION (§1.9): WORKING, any guest state; unknown handle → INVALID_GUEST; an
    /// ASID still bound → ACTIVE. The context and its TMR blocks are freed; the last
    /// guest takes the platform back to INIT.
    pub(crate) fn sev_decommission(&self, st: &mut State, b: SevDecommission) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        if self.sev_guest(st, b.handle)?.binding != SevBinding::None {
            return Err(FwStatus::ACTIVE.into());
        }
        let h = SevHandle::new(b.handle).ok_or(FwStatus::INVALID_GUEST)?;
        let g = st.sev.guests.remove(&h).ok_or(FwStatus::INVALID_GUEST)?;
        if let Some(tmr) = st.sev.tmr.as_mut() {
            for i in &g.crc_blocks {
                tmr.blocks.remove(i);
            }
        }
        st.sev.handles.release(h);
        if st.sev.guests.is_empty() {
            st.sev.platform = SevPlatformState::Init;
        }
        Ok(())
    }

    /// GUEST_STATUS (§1.9): INIT or WORKING; an unknown handle is SUCCESS with state 0
    /// (§0.2-10); ASID 0 when none is bound.
    pub(crate) fn sev_guest_status(&self, st: &mut State, b: &mut SevGuestStatus) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        let found = SevHandle::new(b.handle).and_then(|h| st.sev.guests.get(&h));
        let (policy, asid, state) = match found {
            Some(g) => (g.policy, g.binding.asid().unwrap_or(0), g.state),
            None => (0, 0, SevGuestState::INVALID),
        };
        b.policy = policy;
        b.asid = asid;
        b.state = state.0;
        Ok(())
    }
}
