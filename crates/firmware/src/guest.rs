//! Guest contexts and their lifecycle commands: SNP_GCTX_CREATE, SNP_ACTIVATE,
//! SNP_DECOMMISSION, SNP_GUEST_STATUS.
//!
//! The firmware keeps each guest's context in a page the host donates (CONTEXT state
//! in the RMP: assigned to the firmware, immutable, so the host can neither read its
//! plaintext nor change it). The model holds the context's contents in its own memory,
//! keyed by that page's address, and treats the RMP state of the page as authoritative.

use crate::fw::{AsidState, Firmware, FwResult, PlatformState, State, misaligned};
use softsev_abi::fw_buf::{
    SnpActivate, SnpActivateEx, SnpGuestStatus, SnpGuestStatusCmd, SnpPaddr,
};
use softsev_abi::id_block::IdBlock;
use softsev_abi::rmp::PageState;
use softsev_abi::{Asid, FwStatus, GuestPolicy, Spa, TcbVersion};
use softsev_measure::SnpDigest;
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

/// Most APIC ids SNP_ACTIVATE_EX takes in one list.
pub const MAX_APIC_IDS: u32 = 1024;
/// APIC ids of the modelled platform are below this.
pub const APIC_ID_LIMIT: u32 = 4096;

/// SNP guest state (`SNP_GUEST_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum GuestState {
    /// After SNP_GCTX_CREATE.
    Init = 0,
    /// After SNP_LAUNCH_START.
    Launch = 1,
    /// After SNP_LAUNCH_FINISH.
    Running = 2,
}

/// Whether the guest's ASID is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// No ASID.
    Inactive,
    /// ASID bound, key installed, guest not running yet.
    Pending,
    /// ASID bound and valid on the cores.
    Active,
}

/// The firmware's state for one guest (the contents of its context page).
pub(crate) struct GuestContext {
    pub state: GuestState,
    pub policy: u64,
    pub asid: u32,
    pub activation: Activation,
    /// Memory encryption key (VEK) seed, installed in the memory controller at ACTIVATE.
    pub vek: Zeroizing<[u8; 16]>,
    /// Launch digest (GCTX.LD).
    pub ld: SnpDigest,
    /// Incoming-migration-image digest (GCTX.IMD).
    pub imd: SnpDigest,
    pub imi_en: bool,
    pub ma_gctx: Option<u64>,
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub gosvw: [u8; 16],
    pub desired_tsc_freq: u32,
    /// VMPCK0..3 (drawn at LAUNCH_START) and their message counters.
    pub msg: crate::guest_msg::GuestMsgState,
    /// VM root key (migration), drawn at LAUNCH_START.
    pub vmrk: Zeroizing<[u8; 32]>,
    pub id_block: Option<IdBlock>,
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub id_block_en: bool,
    pub author_key_en: bool,
    pub vcek_dis: bool,
    pub host_data: [u8; 32],
    /// Committed TCB when the context was created.
    pub launch_tcb: TcbVersion,
    /// Firmware version when the context was created.
    pub created_version: crate::fw::FwVersion,
}

impl GuestContext {
    fn new(
        vek: Zeroizing<[u8; 16]>,
        launch_tcb: TcbVersion,
        version: crate::fw::FwVersion,
    ) -> Self {
        GuestContext {
            state: GuestState::Init,
            policy: 0,
            asid: 0,
            activation: Activation::Inactive,
            vek,
            ld: SnpDigest::new(),
            imd: SnpDigest::new(),
            imi_en: false,
            ma_gctx: None,
            report_id: [0; 32],
            report_id_ma: [0; 32],
            gosvw: [0; 16],
            desired_tsc_freq: 0,
            msg: crate::guest_msg::GuestMsgState::from_keys(&[[0; 32]; 4]),
            vmrk: Zeroizing::new([0; 32]),
            id_block: None,
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            id_block_en: false,
            author_key_en: false,
            vcek_dis: false,
            host_data: [0; 32],
            launch_tcb,
            created_version: version,
        }
    }

    pub fn is_inactive(&self) -> bool {
        self.activation == Activation::Inactive
    }

    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy)
    }
}

/// A snapshot of a guest context's public fields (what reports and GUEST_STATUS show;
/// never the keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestInfo {
    /// Guest state.
    pub state: GuestState,
    /// Guest policy.
    pub policy: u64,
    /// Bound ASID (0 when inactive).
    pub asid: u32,
    /// Current launch digest.
    pub measurement: [u8; 48],
    /// Host data from LAUNCH_FINISH.
    pub host_data: [u8; 32],
    /// Report id.
    pub report_id: [u8; 32],
    /// Report id of the migration agent (all 0xFF without one).
    pub report_id_ma: [u8; 32],
    /// The ID block, when LAUNCH_FINISH had one.
    pub id_block: Option<IdBlock>,
    /// SHA-384 of the ID key (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key (zero unless enabled).
    pub author_key_digest: [u8; 48],
    /// VCEK_DIS from LAUNCH_FINISH.
    pub vcek_dis: bool,
    /// Committed TCB when the context was created (the report's LAUNCH_TCB).
    pub launch_tcb: TcbVersion,
    /// Firmware version when the context was created.
    pub created_version: crate::fw::FwVersion,
}

impl GuestContext {
    pub(crate) fn info(&self) -> GuestInfo {
        GuestInfo {
            state: self.state,
            policy: self.policy,
            asid: if self.is_inactive() { 0 } else { self.asid },
            measurement: self.ld.digest(),
            host_data: self.host_data,
            report_id: self.report_id,
            report_id_ma: self.report_id_ma,
            id_block: self.id_block,
            id_key_digest: self.id_key_digest,
            author_key_digest: self.author_key_digest,
            vcek_dis: self.vcek_dis,
            launch_tcb: self.launch_tcb,
            created_version: self.created_version,
        }
    }
}

impl Firmware {
    /// The public fields of the guest context at `gctx`, if it exists.
    pub fn guest_info(&self, gctx: Spa) -> Option<GuestInfo> {
        self.state
            .lock()
            .guests
            .get(&gctx.0)
            .map(GuestContext::info)
    }

    pub(crate) fn snp_gctx_create(&self, st: &mut State, cmd: SnpPaddr) -> FwResult {
        let gctx = cmd.paddr;
        if misaligned(gctx) {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        let (mut e, s) = self.page_state(gctx)?;
        if s != PageState::FIRMWARE {
            return Err(FwStatus::INVALID_PAGE_STATE);
        }
        if e.is_2m() {
            return Err(FwStatus::INVALID_PAGE_SIZE);
        }
        self.soc
            .fw_zero(Spa(gctx), 0x1000)
            .map_err(crate::fw::soc_status)?;
        e.set_vmsa(true);
        self.rmp_write(gctx, e)?;
        let mut vek = Zeroizing::new([0u8; 16]);
        st.rng.fill(&mut vek[..]);
        let ctx = GuestContext::new(vek, st.committed.tcb, st.current.version);
        st.guests.insert(gctx, ctx);
        Ok(())
    }

    /// SNP_ACTIVATE_EX: SNP_ACTIVATE for the CCXs holding the listed APIC ids. The model
    /// has one CCX, so every valid list selects it; the list itself is checked (length
    /// field, reserved word, 1..=MAX_APIC_IDS ids readable at IDS_PADDR, each below the
    /// platform's APIC id limit).
    pub(crate) fn snp_activate_ex(&self, st: &mut State, cmd: SnpActivateEx) -> FwResult {
        if cmd.ex_len as usize != SnpActivateEx::LEN || cmd.reserved != 0 {
            return Err(FwStatus::INVALID_PARAM);
        }
        if cmd.numids == 0 || cmd.numids > MAX_APIC_IDS {
            return Err(FwStatus::INVALID_PARAM);
        }
        let mut ids = vec![0u8; cmd.numids as usize * 4];
        self.read_plain(cmd.ids_paddr, &mut ids)?;
        if ids
            .chunks_exact(4)
            .any(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >= APIC_ID_LIMIT)
        {
            return Err(FwStatus::INVALID_PARAM);
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

    pub(crate) fn snp_activate(&self, st: &mut State, cmd: SnpActivate) -> FwResult {
        if misaligned(cmd.gctx_paddr) {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        let asid = cmd.asid;
        let sockets = self.config.sockets;
        let max_asid = st.asids.len() as u32;
        {
            let g = self.context_mut(st, cmd.gctx_paddr)?;
            if !matches!(g.state, GuestState::Launch | GuestState::Running) {
                return Err(FwStatus::INVALID_GUEST_STATE);
            }
            // The RMP's per-ASID counters: an ASID beyond them is invalid; ASID 0
            // (the host's) is rejected by the range check below.
            if asid > max_asid {
                return Err(FwStatus::INVALID_ASID);
            }
            if asid != 0 && self.soc.fw_rmp_count_asid(asid) != 0 {
                return Err(FwStatus::INVALID_CONFIG);
            }
            if g.policy().single_socket() && sockets > 1 {
                return Err(FwStatus::POLICY_FAILURE);
            }
        }
        if asid == 0 || asid > max_asid {
            return Err(FwStatus::INVALID_ASID);
        }
        let slot = (asid - 1) as usize;
        let astate = st.asids.get(slot).copied().ok_or(FwStatus::INVALID_ASID)?;
        if matches!(astate, AsidState::InUse | AsidState::Allocated) {
            return Err(FwStatus::ASID_OWNED);
        }
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        if !g.is_inactive() {
            return Err(FwStatus::ACTIVE);
        }
        if astate == AsidState::Dirty {
            return Err(FwStatus::DFFLUSH_REQUIRED);
        }
        if asid >= self.config.min_sev_asid {
            return Err(FwStatus::INVALID_ASID);
        }
        self.soc
            .activate_key(Asid(asid), &g.vek)
            .map_err(|e| match e {
                softsev_soc::KeyError::NeedsFlush(_) => FwStatus::DFFLUSH_REQUIRED,
                _ => FwStatus::ASID_OWNED,
            })?;
        g.asid = asid;
        let running = g.state == GuestState::Running;
        g.activation = if running {
            Activation::Active
        } else {
            Activation::Pending
        };
        if let Some(a) = st.asids.get_mut(slot) {
            *a = if running {
                AsidState::InUse
            } else {
                AsidState::Allocated
            };
        }
        Ok(())
    }

    pub(crate) fn snp_decommission(&self, st: &mut State, cmd: SnpPaddr) -> FwResult {
        let gctx = cmd.paddr;
        if misaligned(gctx) {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        self.check_context(st, gctx)?;
        let Some(g) = st.guests.remove(&gctx) else {
            return Err(FwStatus::INVALID_GUEST);
        };
        if g.asid != 0 {
            let slot = (g.asid - 1) as usize;
            let asid = Asid(g.asid);
            match st.asids.get(slot).copied() {
                Some(AsidState::InUse) => {
                    // Ran on the cores: its cache lines may linger until WBINVD + DF_FLUSH.
                    let _ = self.soc.deactivate_key(asid);
                    if let Some(a) = st.asids.get_mut(slot) {
                        *a = AsidState::Dirty;
                    }
                }
                Some(AsidState::Allocated) => {
                    let _ = self.soc.release_unused_key(asid);
                    if let Some(a) = st.asids.get_mut(slot) {
                        *a = AsidState::Clean;
                    }
                }
                _ => {}
            }
        }
        if g.state != GuestState::Init {
            st.guest_count = st.guest_count.saturating_sub(1);
        }
        let (mut e, _) = self.page_state(gctx)?;
        e.set_vmsa(false);
        self.rmp_write(gctx, e)?;
        Ok(())
    }

    pub(crate) fn snp_guest_status(&self, st: &mut State, cmd: SnpGuestStatusCmd) -> FwResult {
        if misaligned(cmd.gctx_paddr) {
            return Err(FwStatus::INVALID_PARAM);
        }
        if (cmd.status_paddr & 0xFFF) as usize + SnpGuestStatus::LEN > 0x1000 {
            return Err(FwStatus::INVALID_PARAM);
        }
        if st.snp != PlatformState::Init {
            return Err(FwStatus::INVALID_PLATFORM_STATE);
        }
        self.check_context(st, cmd.gctx_paddr)?;
        self.check_output_page(st, cmd.status_paddr, SnpGuestStatus::LEN)?;
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        let out = SnpGuestStatus {
            policy: g.policy,
            asid: if g.is_inactive() { 0 } else { g.asid },
            state: g.state as u8,
            reserved: [0; 3],
            flags: u32::from(g.vcek_dis),
            reserved2: [0; 12],
        };
        self.write_plain(cmd.status_paddr, out.as_bytes())
    }
}
