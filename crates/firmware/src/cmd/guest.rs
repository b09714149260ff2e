//! Guest-context lifecycle commands: SNP_GCTX_CREATE, SNP_ACTIVATE(_EX),
//! SNP_DECOMMISSION, SNP_GUEST_STATUS (SNP ABI §8.10–8.14; AMD SEV firmware
//! `snp_mcmd_gctx_create`, `snp_mcmd_activate`, ...). The contexts themselves are in
//! [`crate::guest_ctx`].

use crate::error::{CmdResult, soc_error};
use crate::fw::{Firmware, misaligned};
use crate::guest_ctx::{Binding, GuestContext, GuestState};
use crate::state::{AsidState, GuestHandle, PlatformState, State};
use softsev_abi::fw_buf::{
    SnpActivate, SnpActivateEx, SnpDecommission, SnpGctxCreate, SnpGuestStatus, SnpGuestStatusCmd,
};
use softsev_abi::rmp::PageState;
use softsev_abi::{Asid, FwStatus, GuestPolicy, Spa};
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

/// Most APIC ids SNP_ACTIVATE_EX takes in one list.
pub const MAX_APIC_IDS: u32 = 1024;
/// APIC ids of the modelled platform are below this.
pub const APIC_ID_LIMIT: u32 = 4096;

impl Firmware {
    pub(crate) fn snp_gctx_create(&self, st: &mut State, cmd: SnpGctxCreate) -> CmdResult {
        let gctx = cmd.gctx_paddr;
        if misaligned(gctx) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        let (mut e, s) = self.page_state(gctx)?;
        if s != PageState::FIRMWARE {
            return Err(FwStatus::INVALID_PAGE_STATE.into());
        }
        if e.is_2m() {
            return Err(FwStatus::INVALID_PAGE_SIZE.into());
        }
        self.soc
            .fw_zero(Spa(gctx), 0x1000)
            .map_err(|e| soc_error(Spa(gctx), e))?;
        e.set_vmsa(true);
        self.rmp_write(gctx, e)?;
        let mut vek = Zeroizing::new([0u8; 16]);
        st.rng.fill(&mut vek[..]);
        let ctx = GuestContext::create(vek, st.committed.tcb, st.current.version);
        st.guests.insert(GuestHandle::Snp(Spa(gctx)), ctx);
        Ok(())
    }

    /// SNP_ACTIVATE_EX: SNP_ACTIVATE for the CCXs holding the listed APIC ids. The model
    /// has one CCX, so every valid list selects it; the list itself is checked (length
    /// field, reserved word, 1..=MAX_APIC_IDS ids readable at IDS_PADDR, each below the
    /// platform's APIC id limit).
    pub(crate) fn snp_activate_ex(&self, st: &mut State, cmd: SnpActivateEx) -> CmdResult {
        if cmd.ex_len as usize != SnpActivateEx::LEN || cmd.reserved != 0 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if cmd.numids == 0 || cmd.numids > MAX_APIC_IDS {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let mut ids = vec![0u8; cmd.numids as usize * 4];
        self.read_plain(cmd.ids_paddr, &mut ids)?;
        if ids
            .chunks_exact(4)
            .any(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >= APIC_ID_LIMIT)
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.snp_activate(
            st,
            SnpActivate {
                gctx_paddr: cmd.gctx_paddr,
                asid: cmd.asid,
                pad: 0,
            },
        )
    }

    pub(crate) fn snp_activate(&self, st: &mut State, cmd: SnpActivate) -> CmdResult {
        if misaligned(cmd.gctx_paddr) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        let asid = cmd.asid;
        let sockets = self.config.sockets;
        let max_asid = st.asids.max();
        {
            let g = self.context_mut(st, cmd.gctx_paddr)?;
            if !matches!(g.state(), GuestState::Launch | GuestState::Running) {
                return Err(FwStatus::INVALID_GUEST_STATE.into());
            }
            // The RMP's per-ASID counters: an ASID beyond them is invalid; ASID 0
            // (the host's) is rejected by the range check below.
            if asid > max_asid {
                return Err(FwStatus::INVALID_ASID.into());
            }
            if asid != 0 && self.soc.fw_rmp_count_asid(asid) != 0 {
                return Err(FwStatus::INVALID_CONFIG.into());
            }
            if GuestPolicy(g.policy()).single_socket() && sockets > 1 {
                return Err(FwStatus::POLICY_FAILURE.into());
            }
        }
        if asid == 0 || asid > max_asid {
            return Err(FwStatus::INVALID_ASID.into());
        }
        let astate = st.asids.get(asid).ok_or(FwStatus::INVALID_ASID)?;
        if matches!(astate, AsidState::InUse | AsidState::Allocated) {
            return Err(FwStatus::ASID_OWNED.into());
        }
        // Only a LAUNCH guest can be unbound (a RUNNING guest always has its ASID).
        let Some(l) = self.context_mut(st, cmd.gctx_paddr)?.inactive_launch_mut() else {
            return Err(FwStatus::ACTIVE.into());
        };
        if astate == AsidState::Dirty {
            return Err(FwStatus::DFFLUSH_REQUIRED.into());
        }
        if asid >= self.config.min_sev_asid {
            return Err(FwStatus::INVALID_ASID.into());
        }
        self.soc
            .activate_key(Asid(asid), &l.created.vek)
            .map_err(|e| match e {
                softsev_soc::KeyError::NeedsFlush(_) => FwStatus::DFFLUSH_REQUIRED,
                _ => FwStatus::ASID_OWNED,
            })?;
        l.binding = Binding::Pending(asid);
        st.asids.set(asid, AsidState::Allocated);
        Ok(())
    }

    pub(crate) fn snp_decommission(&self, st: &mut State, cmd: SnpDecommission) -> CmdResult {
        let gctx = cmd.gctx_paddr;
        if misaligned(gctx) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        self.check_context(st, gctx)?;
        let Some(g) = st.guests.remove(GuestHandle::Snp(Spa(gctx))) else {
            return Err(FwStatus::INVALID_GUEST.into());
        };
        let asid = g.asid();
        if asid != 0 {
            match st.asids.get(asid) {
                Some(AsidState::InUse) => {
                    // Ran on the cores: its cache lines may linger until WBINVD + DF_FLUSH.
                    let _ = self.soc.deactivate_key(Asid(asid));
                    st.asids.set(asid, AsidState::Dirty);
                }
                Some(AsidState::Allocated) => {
                    let _ = self.soc.release_unused_key(Asid(asid));
                    st.asids.set(asid, AsidState::Clean);
                }
                _ => {}
            }
        }
        if g.state() != GuestState::Init {
            st.guest_count = st.guest_count.saturating_sub(1);
        }
        let (mut e, _) = self.page_state(gctx)?;
        e.set_vmsa(false);
        self.rmp_write(gctx, e)?;
        Ok(())
    }

    pub(crate) fn snp_guest_status(&self, st: &mut State, cmd: SnpGuestStatusCmd) -> CmdResult {
        if misaligned(cmd.gctx_paddr) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if (cmd.status_paddr & 0xFFF) as usize + SnpGuestStatus::LEN > 0x1000 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if st.snp != PlatformState::Init {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        self.check_context(st, cmd.gctx_paddr)?;
        self.check_output_page(st, cmd.status_paddr, SnpGuestStatus::LEN)?;
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        let out = SnpGuestStatus {
            policy: g.policy(),
            asid: g.asid(),
            state: g.state() as u8,
            reserved: [0; 3],
            flags: u32::from(g.vcek_disabled()),
            reserved2: [0; 12],
        };
        self.write_plain(cmd.status_paddr, out.as_bytes())
    }
}
