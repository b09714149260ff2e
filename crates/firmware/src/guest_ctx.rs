//! SNP guest contexts as per-state data (SNP ABI "Guest State"; AMD SEV firmware
//! `snp_guest.c`): a context holds only what exists in its state, and each launch
//! command consumes the old state to build the next.
//!
//! * [`GuestState::Init`] after SNP_GCTX_CREATE: the VEK, the committed TCB and the
//!   firmware version at creation. No policy, no ASID, no keys for guest messages.
//! * [`GuestState::Launch`] after SNP_LAUNCH_START: the policy, the ASID binding
//!   (ACTIVATE), VMPCK0..3 and the VMRK, the report ids, the running launch digest
//!   (GCTX.LD) and the incoming-migration-image digest (GCTX.IMD).
//! * [`GuestState::Running`] after SNP_LAUNCH_FINISH: the bound ASID, the guest-message
//!   keys, and one [`LaunchRecord`]: everything reports and derived keys take from the
//!   launch, written once.
//!
//! The firmware keeps each guest's context in a page the host donates (CONTEXT state
//! in the RMP: assigned to the firmware, immutable, so the host can neither read its
//! plaintext nor change it). The model holds the context's contents in its own memory,
//! keyed by that page's address ([`crate::state::GuestHandle::Snp`]), and treats the
//! RMP state of the page as authoritative.

use crate::guest_msg::GuestMsgState;
use crate::state::FwVersion;
use softsev_abi::{Spa, TcbVersion};
use softsev_measure::SnpDigest;
use zeroize::Zeroizing;

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

/// What the launch of a guest established, as SNP_LAUNCH_FINISH writes it once: the
/// facts an attestation report and a derived key take from the guest context
/// (shared/spec/snp-attestation.md §1.8). [`crate::guest_msg::GuestMsgEnv`] borrows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRecord {
    /// Guest policy (LAUNCH_START).
    pub policy: u64,
    /// FAMILY_ID from the ID block (zero without one).
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block (zero without one).
    pub image_id: [u8; 16],
    /// GUEST_SVN from the ID block (zero without one).
    pub guest_svn: u32,
    /// Whether LAUNCH_FINISH had an ID block (ID_BLOCK_EN).
    pub id_block_en: bool,
    /// SHA-384 of the ID key (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// Whether LAUNCH_FINISH had an author key (AUTHOR_KEY_EN).
    pub author_key_en: bool,
    /// SHA-384 of the author key (zero unless enabled).
    pub author_key_digest: [u8; 48],
    /// HOST_DATA from LAUNCH_FINISH.
    pub host_data: [u8; 32],
    /// REPORT_ID (random at LAUNCH_START).
    pub report_id: [u8; 32],
    /// REPORT_ID_MA: the migration agent's report id (all 0xFF without one).
    pub report_id_ma: [u8; 32],
    /// VCEK_DIS from LAUNCH_FINISH.
    pub vcek_disabled: bool,
    /// LAUNCH_TCB: the committed TCB when the context was created.
    pub launch_tcb: TcbVersion,
    /// The launch digest (GCTX.LD at LAUNCH_FINISH), the report's MEASUREMENT.
    pub measurement: [u8; 48],
    /// DESIRED_TSC_FREQ from LAUNCH_START, kHz (Secure TSC).
    pub desired_tsc_freq_khz: u32,
}

impl Default for LaunchRecord {
    /// A guest launched with policy 0x30000 (ABI 0.0, SMT allowed), no ID block, no
    /// migration agent, zero TCB, zero measurement.
    fn default() -> Self {
        LaunchRecord {
            policy: 0x30000,
            family_id: [0; 16],
            image_id: [0; 16],
            guest_svn: 0,
            id_block_en: false,
            id_key_digest: [0; 48],
            author_key_en: false,
            author_key_digest: [0; 48],
            host_data: [0; 32],
            report_id: [0; 32],
            report_id_ma: [0xFF; 32],
            vcek_disabled: false,
            launch_tcb: TcbVersion::default(),
            measurement: [0; 48],
            desired_tsc_freq_khz: 0,
        }
    }
}

/// What SNP_GCTX_CREATE establishes; kept in every state.
pub(crate) struct Created {
    /// Memory encryption key (VEK) seed, installed in the memory controller at ACTIVATE.
    pub(crate) vek: Zeroizing<[u8; 16]>,
    /// Committed TCB when the context was created (LAUNCH_TCB).
    pub(crate) launch_tcb: TcbVersion,
    /// Firmware version when the context was created.
    pub(crate) version: FwVersion,
}

/// The ASID binding of a guest in the LAUNCH state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// No ASID.
    Inactive,
    /// ASID bound, key installed, guest not running yet (activation pending until
    /// LAUNCH_FINISH).
    Pending(u32),
}

/// A guest between SNP_LAUNCH_START and SNP_LAUNCH_FINISH.
pub(crate) struct Launching {
    pub(crate) created: Created,
    pub(crate) binding: Binding,
    pub(crate) policy: u64,
    /// The migration agent's context page (MA_EN).
    pub(crate) ma_gctx: Option<Spa>,
    /// VMPCK0..3 (drawn at LAUNCH_START) and their message counters.
    pub(crate) msg: GuestMsgState,
    /// VM root key (migration), drawn at LAUNCH_START.
    pub(crate) vmrk: Zeroizing<[u8; 32]>,
    pub(crate) report_id: [u8; 32],
    pub(crate) report_id_ma: [u8; 32],
    /// IMI_EN: the guest is an incoming migration image (LAUNCH_FINISH refused).
    pub(crate) imi_en: bool,
    /// Guest-OS-visible workarounds for the secrets page.
    pub(crate) gosvw: [u8; 16],
    /// DESIRED_TSC_FREQ.
    pub(crate) desired_tsc_freq: u32,
    /// Launch digest (GCTX.LD).
    pub(crate) ld: SnpDigest,
    /// Incoming-migration-image digest (GCTX.IMD).
    pub(crate) imd: SnpDigest,
}

/// A launched guest.
pub(crate) struct Running {
    pub(crate) created: Created,
    /// The bound ASID (a running guest is always active).
    pub(crate) asid: u32,
    /// The migration agent's context page (MA_EN at LAUNCH_START).
    pub(crate) ma_gctx: Option<Spa>,
    /// VMPCK0..3 and their message counters.
    pub(crate) msg: GuestMsgState,
    /// VM root key.
    pub(crate) vmrk: Zeroizing<[u8; 32]>,
    /// What the launch established.
    pub(crate) record: LaunchRecord,
}

/// What SNP_LAUNCH_START adds to a context.
pub(crate) struct LaunchStart {
    pub(crate) policy: u64,
    pub(crate) ma_gctx: Option<Spa>,
    pub(crate) msg: GuestMsgState,
    pub(crate) vmrk: Zeroizing<[u8; 32]>,
    pub(crate) report_id: [u8; 32],
    pub(crate) report_id_ma: [u8; 32],
    pub(crate) imi_en: bool,
    pub(crate) gosvw: [u8; 16],
    pub(crate) desired_tsc_freq: u32,
}

/// What SNP_LAUNCH_FINISH adds to a context (the ID block already checked).
pub(crate) struct LaunchFinish {
    pub(crate) family_id: [u8; 16],
    pub(crate) image_id: [u8; 16],
    pub(crate) guest_svn: u32,
    pub(crate) id_block_en: bool,
    pub(crate) id_key_digest: [u8; 48],
    pub(crate) author_key_en: bool,
    pub(crate) author_key_digest: [u8; 48],
    pub(crate) host_data: [u8; 32],
    pub(crate) vcek_disabled: bool,
}

/// The firmware's state for one guest (the contents of its context page).
pub(crate) enum GuestContext {
    /// After SNP_GCTX_CREATE.
    Init(Created),
    /// After SNP_LAUNCH_START.
    Launch(Box<Launching>),
    /// After SNP_LAUNCH_FINISH.
    Running(Box<Running>),
}

impl GuestContext {
    /// A context as SNP_GCTX_CREATE makes it.
    pub(crate) fn create(
        vek: Zeroizing<[u8; 16]>,
        launch_tcb: TcbVersion,
        version: FwVersion,
    ) -> Self {
        GuestContext::Init(Created {
            vek,
            launch_tcb,
            version,
        })
    }

    /// The guest state.
    pub(crate) fn state(&self) -> GuestState {
        match self {
            GuestContext::Init(_) => GuestState::Init,
            GuestContext::Launch(_) => GuestState::Launch,
            GuestContext::Running(_) => GuestState::Running,
        }
    }

    fn created(&self) -> &Created {
        match self {
            GuestContext::Init(c) => c,
            GuestContext::Launch(l) => &l.created,
            GuestContext::Running(r) => &r.created,
        }
    }

    /// The guest policy (0 before LAUNCH_START, as the zeroed context holds).
    pub(crate) fn policy(&self) -> u64 {
        match self {
            GuestContext::Init(_) => 0,
            GuestContext::Launch(l) => l.policy,
            GuestContext::Running(r) => r.record.policy,
        }
    }

    /// The bound ASID (0 when none is bound).
    pub(crate) fn asid(&self) -> u32 {
        match self {
            GuestContext::Init(_) => 0,
            GuestContext::Launch(l) => match l.binding {
                Binding::Inactive => 0,
                Binding::Pending(a) => a,
            },
            GuestContext::Running(r) => r.asid,
        }
    }

    /// No ASID bound.
    pub(crate) fn is_inactive(&self) -> bool {
        self.asid() == 0
    }

    /// REPORT_ID (zero before LAUNCH_START).
    pub(crate) fn report_id(&self) -> [u8; 32] {
        match self {
            GuestContext::Init(_) => [0; 32],
            GuestContext::Launch(l) => l.report_id,
            GuestContext::Running(r) => r.record.report_id,
        }
    }

    /// Whether the guest was launched with a migration agent.
    pub(crate) fn has_migration_agent(&self) -> bool {
        match self {
            GuestContext::Init(_) => false,
            GuestContext::Launch(l) => l.ma_gctx.is_some(),
            GuestContext::Running(r) => r.ma_gctx.is_some(),
        }
    }

    /// VCEK_DIS (false before LAUNCH_FINISH).
    pub(crate) fn vcek_disabled(&self) -> bool {
        match self {
            GuestContext::Running(r) => r.record.vcek_disabled,
            _ => false,
        }
    }

    /// The current launch digest.
    pub(crate) fn launch_digest(&self) -> [u8; 48] {
        match self {
            GuestContext::Init(_) => SnpDigest::new().digest(),
            GuestContext::Launch(l) => l.ld.digest(),
            GuestContext::Running(r) => r.record.measurement,
        }
    }

    /// The LAUNCH-state data of a guest with no ASID bound (what ACTIVATE binds).
    pub(crate) fn inactive_launch_mut(&mut self) -> Option<&mut Launching> {
        match self {
            GuestContext::Launch(l) if l.binding == Binding::Inactive => Some(l),
            _ => None,
        }
    }

    /// SNP_LAUNCH_START: INIT → LAUNCH. Any other state is returned as it was (the
    /// caller checked the state).
    pub(crate) fn start(self, s: LaunchStart) -> GuestContext {
        match self {
            GuestContext::Init(created) => GuestContext::Launch(Box::new(Launching {
                created,
                binding: Binding::Inactive,
                policy: s.policy,
                ma_gctx: s.ma_gctx,
                msg: s.msg,
                vmrk: s.vmrk,
                report_id: s.report_id,
                report_id_ma: s.report_id_ma,
                imi_en: s.imi_en,
                gosvw: s.gosvw,
                desired_tsc_freq: s.desired_tsc_freq,
                ld: SnpDigest::new(),
                imd: SnpDigest::new(),
            })),
            other => other,
        }
    }

    /// SNP_LAUNCH_FINISH: LAUNCH (with an ASID bound) → RUNNING, writing the launch
    /// record. Any other context is returned as it was (the caller checked it).
    pub(crate) fn finish(self, f: LaunchFinish) -> GuestContext {
        match self {
            GuestContext::Launch(l) => {
                let Binding::Pending(asid) = l.binding else {
                    return GuestContext::Launch(l);
                };
                let Launching {
                    created,
                    policy,
                    ma_gctx,
                    msg,
                    vmrk,
                    report_id,
                    report_id_ma,
                    desired_tsc_freq,
                    ld,
                    ..
                } = *l;
                let record = LaunchRecord {
                    policy,
                    family_id: f.family_id,
                    image_id: f.image_id,
                    guest_svn: f.guest_svn,
                    id_block_en: f.id_block_en,
                    id_key_digest: f.id_key_digest,
                    author_key_en: f.author_key_en,
                    author_key_digest: f.author_key_digest,
                    host_data: f.host_data,
                    report_id,
                    report_id_ma,
                    vcek_disabled: f.vcek_disabled,
                    launch_tcb: created.launch_tcb,
                    measurement: ld.digest(),
                    desired_tsc_freq_khz: desired_tsc_freq,
                };
                GuestContext::Running(Box::new(Running {
                    created,
                    asid,
                    ma_gctx,
                    msg,
                    vmrk,
                    record,
                }))
            }
            other => other,
        }
    }

    /// A view of the public side of this context.
    pub(crate) fn info(&self) -> GuestInfo<'_> {
        GuestInfo { ctx: self }
    }
}

/// A view of a guest context's public side (what GUEST_STATUS and reports show;
/// never the keys), borrowed from the firmware's state
/// ([`crate::Firmware::inspect_guest`]).
#[derive(Clone, Copy)]
pub struct GuestInfo<'a> {
    ctx: &'a GuestContext,
}

impl std::fmt::Debug for GuestInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInfo")
            .field("state", &self.state())
            .field("policy", &format_args!("{:#x}", self.policy()))
            .field("asid", &self.asid())
            .field("launch", &self.launch())
            .finish()
    }
}

impl<'a> GuestInfo<'a> {
    /// Guest state.
    pub fn state(&self) -> GuestState {
        self.ctx.state()
    }

    /// Guest policy (0 before LAUNCH_START).
    pub fn policy(&self) -> u64 {
        self.ctx.policy()
    }

    /// Bound ASID (0 when inactive).
    pub fn asid(&self) -> u32 {
        self.ctx.asid()
    }

    /// Current launch digest (the measurement once running).
    pub fn measurement(&self) -> [u8; 48] {
        self.ctx.launch_digest()
    }

    /// The launch record, once SNP_LAUNCH_FINISH wrote it.
    pub fn launch(&self) -> Option<&'a LaunchRecord> {
        match self.ctx {
            GuestContext::Running(r) => Some(&r.record),
            _ => None,
        }
    }

    /// Committed TCB when the context was created (the report's LAUNCH_TCB).
    pub fn launch_tcb(&self) -> TcbVersion {
        self.ctx.created().launch_tcb
    }

    /// Firmware version when the context was created.
    pub fn created_version(&self) -> FwVersion {
        self.ctx.created().version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> GuestContext {
        GuestContext::create(
            Zeroizing::new([7; 16]),
            TcbVersion {
                snp: 3,
                ..TcbVersion::default()
            },
            FwVersion {
                major: 1,
                minor: 55,
                build: 9,
            },
        )
    }

    fn start() -> LaunchStart {
        LaunchStart {
            policy: 0x3_0000,
            ma_gctx: None,
            msg: GuestMsgState::from_keys(&[[1; 32]; 4]),
            vmrk: Zeroizing::new([2; 32]),
            report_id: [3; 32],
            report_id_ma: [0xFF; 32],
            imi_en: false,
            gosvw: [0; 16],
            desired_tsc_freq: 1000,
        }
    }

    fn finish() -> LaunchFinish {
        LaunchFinish {
            family_id: [4; 16],
            image_id: [5; 16],
            guest_svn: 6,
            id_block_en: true,
            id_key_digest: [7; 48],
            author_key_en: false,
            author_key_digest: [0; 48],
            host_data: [8; 32],
            vcek_disabled: true,
        }
    }

    #[test]
    fn init_has_no_policy_asid_or_report_id() {
        let g = created();
        assert_eq!(g.state(), GuestState::Init);
        assert_eq!((g.policy(), g.asid(), g.report_id()), (0, 0, [0; 32]));
        assert!(g.is_inactive() && !g.vcek_disabled() && !g.has_migration_agent());
        assert_eq!(g.launch_digest(), SnpDigest::new().digest());
        assert!(g.info().launch().is_none());
    }

    #[test]
    fn finish_needs_a_bound_asid_and_then_writes_the_record_once() {
        let mut g = created().start(start());
        assert_eq!(g.state(), GuestState::Launch);
        // Not activated: FINISH leaves the context as it was.
        g = g.finish(finish());
        assert_eq!(g.state(), GuestState::Launch);
        let l = g.inactive_launch_mut().expect("inactive LAUNCH guest");
        l.binding = Binding::Pending(5);
        assert!(g.inactive_launch_mut().is_none());
        let ld = g.launch_digest();
        let g = g.finish(finish());
        assert_eq!(
            (g.state(), g.asid(), g.policy()),
            (GuestState::Running, 5, 0x3_0000)
        );
        let info = g.info();
        let r = info.launch().expect("record");
        assert_eq!(r.measurement, ld);
        assert_eq!(r.report_id, [3; 32]);
        assert_eq!(r.launch_tcb.snp, 3);
        assert_eq!(
            (r.family_id, r.guest_svn, r.host_data),
            ([4; 16], 6, [8; 32])
        );
        assert_eq!(r.desired_tsc_freq_khz, 1000);
        assert!(r.vcek_disabled && g.vcek_disabled());
        assert_eq!(info.created_version().build, 9);
    }

    #[test]
    fn start_only_applies_to_init() {
        let mut g = created().start(start());
        g.inactive_launch_mut().expect("LAUNCH").binding = Binding::Pending(1);
        let g = g.finish(finish()).start(LaunchStart {
            policy: 0x7_0000,
            ..start()
        });
        assert_eq!((g.state(), g.policy()), (GuestState::Running, 0x3_0000));
    }
}
