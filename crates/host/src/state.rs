//! The state the host keeps per VM and per vCPU, as a leaf: what `struct kvm_sev_info`
//! and the SEV part of `struct vcpu_svm` hold in Linux (`arch/x86/kvm/svm/svm.h`).
//! Behaviour (ioctls, VMGEXIT handling) lives in the modules that use it; they go
//! through the methods here instead of setting fields.
//!
//! The SEV state of a VM is one [`SevMode`] — none, SEV, SEV-ES, or SNP with its launch
//! progress — and one [`ContextRole`] (owner, mirror, moved away), not a set of flags
//! whose combinations mean nothing.

use softsev_abi::vmsa::Vmsa;
use softsev_abi::{Gpa, Spa};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which SEV flavour INIT / INIT2 made the VM, with the data that exists only in it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum SevMode {
    /// No INIT yet: not an SEV guest.
    #[default]
    None,
    /// SEV (memory encryption only).
    Sev,
    /// SEV-ES (encrypted register state).
    SevEs,
    /// SEV-SNP.
    Snp(SnpState),
}

/// Where an SNP guest's launch is (the context page exists from SNP_LAUNCH_START).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpLaunch {
    /// INIT2 done, no guest context yet.
    NotStarted,
    /// SNP_LAUNCH_START done: the guest context page.
    Started {
        /// The SNP guest context page.
        context: Spa,
    },
    /// SNP_LAUNCH_FINISH done.
    Finished {
        /// The SNP guest context page.
        context: Spa,
    },
}

/// The hypervisor pages SNP guest requests bounce through (allocated at INIT2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRequestPages {
    /// The request copy (a hypervisor page).
    pub request: Spa,
    /// The response page (a firmware page).
    pub response: Spa,
}

/// The SNP part of a VM's SEV state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpState {
    launch: SnpLaunch,
    policy: u64,
    req_certs: bool,
    pages: GuestRequestPages,
}

impl SnpState {
    /// INIT2 of an SNP VM with its guest-request pages.
    pub(crate) fn new(pages: GuestRequestPages) -> Self {
        SnpState {
            launch: SnpLaunch::NotStarted,
            policy: 0,
            req_certs: false,
            pages,
        }
    }

    /// The launch progress.
    pub fn launch(&self) -> SnpLaunch {
        self.launch
    }

    /// The guest context page, once SNP_LAUNCH_START succeeded.
    pub fn context(&self) -> Option<Spa> {
        match self.launch {
            SnpLaunch::NotStarted => None,
            SnpLaunch::Started { context } | SnpLaunch::Finished { context } => Some(context),
        }
    }

    /// SNP_LAUNCH_FINISH done.
    pub fn launched(&self) -> bool {
        matches!(self.launch, SnpLaunch::Finished { .. })
    }

    /// The policy given to SNP_LAUNCH_START (0 before).
    pub fn policy(&self) -> u64 {
        self.policy
    }

    /// KVM_SEV_SNP_ENABLE_REQ_CERTS was issued.
    pub fn req_certs(&self) -> bool {
        self.req_certs
    }

    /// The guest-request bounce pages.
    pub fn guest_request_pages(&self) -> GuestRequestPages {
        self.pages
    }

    pub(crate) fn start(&mut self, context: Spa, policy: u64) {
        self.launch = SnpLaunch::Started { context };
        self.policy = policy;
    }

    pub(crate) fn finish(&mut self) {
        if let SnpLaunch::Started { context } = self.launch {
            self.launch = SnpLaunch::Finished { context };
        }
    }

    /// Forget the context page (decommissioned); returns it.
    pub(crate) fn take_context(&mut self) -> Option<Spa> {
        let c = self.context();
        self.launch = SnpLaunch::NotStarted;
        c
    }

    pub(crate) fn enable_req_certs(&mut self) {
        self.req_certs = true;
    }
}

/// Whose encryption context a VM holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ContextRole {
    /// Its own (it frees the ASID at teardown).
    #[default]
    Owner,
    /// A mirror of another VM's context (KVM_CAP_VM_COPY_ENC_CONTEXT_FROM): shares the
    /// ASID, does not own it.
    Mirror,
    /// The context moved to another VM (intra-host migration source): unusable.
    MovedAway,
}

/// The SEV part of a VM (`struct kvm_sev_info`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SevState {
    mode: SevMode,
    role: ContextRole,
    asid: u32,
    vmsa_features: u64,
    ghcb_version: u16,
    /// Legacy SEV / SEV-ES: the firmware guest handle from LAUNCH_START (0 = none).
    handle: u32,
    /// Legacy SEV / SEV-ES: the policy given to LAUNCH_START.
    policy: u32,
}

impl SevState {
    /// The state INIT / INIT2 leaves.
    pub(crate) fn initialised(
        mode: SevMode,
        asid: u32,
        vmsa_features: u64,
        ghcb_version: u16,
    ) -> Self {
        SevState {
            mode,
            role: ContextRole::Owner,
            asid,
            vmsa_features,
            ghcb_version,
            handle: 0,
            policy: 0,
        }
    }

    /// The SEV flavour.
    pub fn mode(&self) -> &SevMode {
        &self.mode
    }

    /// Whose context this VM holds.
    pub fn role(&self) -> ContextRole {
        self.role
    }

    /// INIT / INIT2 done.
    pub fn is_active(&self) -> bool {
        self.mode != SevMode::None
    }

    /// Active and the context has not moved away (encryption commands are accepted).
    pub fn is_usable(&self) -> bool {
        self.is_active() && self.role != ContextRole::MovedAway
    }

    /// SEV-ES or SNP (encrypted register state).
    pub fn is_es(&self) -> bool {
        matches!(self.mode, SevMode::SevEs | SevMode::Snp(_))
    }

    /// The SNP state, for an SNP VM.
    pub fn snp(&self) -> Option<&SnpState> {
        match &self.mode {
            SevMode::Snp(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn snp_mut(&mut self) -> Option<&mut SnpState> {
        match &mut self.mode {
            SevMode::Snp(s) => Some(s),
            _ => None,
        }
    }

    /// The SNP guest context page, if any.
    pub fn snp_context(&self) -> Option<Spa> {
        self.snp().and_then(SnpState::context)
    }

    /// An SNP VM whose launch is not finished (it may not run or pre-fault yet).
    pub fn snp_launch_pending(&self) -> bool {
        self.snp().is_some_and(|s| !s.launched())
    }

    /// The ASID (0 before INIT).
    pub fn asid(&self) -> u32 {
        self.asid
    }

    /// SEV_FEATURES of the VMSAs.
    pub fn vmsa_features(&self) -> u64 {
        self.vmsa_features
    }

    /// Highest GHCB version offered.
    pub fn ghcb_version(&self) -> u16 {
        self.ghcb_version
    }

    /// Legacy SEV / SEV-ES: the firmware guest handle (0 before LAUNCH_START).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Legacy SEV / SEV-ES: the policy of LAUNCH_START (`kvm_sev_info.policy`).
    pub fn policy(&self) -> u32 {
        self.policy
    }

    pub(crate) fn set_policy(&mut self, policy: u32) {
        self.policy = policy;
    }

    /// LAUNCH_START bound `handle` to this VM's ASID.
    pub(crate) fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    /// Forget the handle (the context was decommissioned); returns it.
    pub(crate) fn take_handle(&mut self) -> u32 {
        std::mem::take(&mut self.handle)
    }

    /// This VM becomes the other end of a move or mirror of `src`'s context.
    pub(crate) fn take_over(src: &SevState, role: ContextRole) -> SevState {
        SevState {
            role: if role == ContextRole::Mirror {
                ContextRole::Mirror
            } else {
                src.role
            },
            ..src.clone()
        }
    }

    pub(crate) fn mark_moved_away(&mut self) {
        self.role = ContextRole::MovedAway;
    }

    /// Whether teardown frees the ASID (active owner).
    pub(crate) fn owns_asid(&self) -> bool {
        self.is_active() && self.role == ContextRole::Owner
    }
}

/// A VM's guest TSC as RDTSC / RDTSCP report it: starts at [`GuestTsc::START`] and
/// advances [`GuestTsc::STEP`] per read. Each VM has its own, so the answers depend
/// only on that VM's history, not on what else ran in the process.
#[derive(Debug)]
pub(crate) struct GuestTsc(AtomicU64);

impl GuestTsc {
    /// The value of the first read.
    pub(crate) const START: u64 = 1 << 20;
    /// Ticks between two reads.
    pub(crate) const STEP: u64 = 1000;

    pub(crate) fn new() -> Self {
        GuestTsc(AtomicU64::new(Self::START))
    }

    /// The current value; the next read is [`GuestTsc::STEP`] later.
    pub(crate) fn read(&self) -> u64 {
        self.0.fetch_add(Self::STEP, Ordering::Relaxed)
    }
}

/// One CPUID leaf (`struct kvm_cpuid_entry2`, the parts that matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidEntry {
    /// Function (EAX in).
    pub function: u32,
    /// Index (ECX in).
    pub index: u32,
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The state of an AP with respect to SNP AP creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApState {
    /// Runs from its launch VMSA.
    Launch,
    /// AP creation gave it a new VMSA (guest page at this GPA).
    Created(Gpa),
    /// AP creation (DESTROY) removed its VMSA: it cannot run.
    Destroyed,
    /// CREATE_ON_INIT: the VMSA at this GPA is used after the next INIT
    /// ([`crate::SoftVcpu::send_init`]); until then the vCPU keeps its current state.
    PendingInit(Gpa),
}

/// The host's state of one vCPU (the SEV parts of `struct vcpu_svm`).
#[derive(Debug)]
pub(crate) struct VcpuState {
    regs: Box<Vmsa>,
    /// KVM's own copy of the registers after the VMSA was encrypted, for a VM whose
    /// type has no protected state (KVM_X86_DEFAULT_VM made SEV-ES by ES_INIT):
    /// KVM_SET_REGS there still writes it, though the guest never sees it.
    stale: Option<Box<Vmsa>>,
    vmsa_spa: Spa,
    protected: bool,
    ghcb_msr: u64,
    ghcb_registered: Option<Gpa>,
    cpuid: Vec<CpuidEntry>,
    msrs: HashMap<u32, u64>,
    ap: ApState,
    ap_vmsa_gpa: Option<Gpa>,
    /// SEV-ES: RECEIVE_UPDATE_VMSA wrote the VMSA page; the register file is loaded
    /// from it at the next VMRUN.
    load_vmsa: bool,
}

impl VcpuState {
    /// A vCPU whose launch VMSA is `regs` in the hypervisor page `vmsa_spa`.
    pub(crate) fn new(regs: Vmsa, vmsa_spa: Spa) -> Self {
        VcpuState {
            regs: Box::new(regs),
            stale: None,
            vmsa_spa,
            protected: false,
            ghcb_msr: 0,
            ghcb_registered: None,
            cpuid: Vec::new(),
            msrs: HashMap::new(),
            ap: ApState::Launch,
            ap_vmsa_gpa: None,
            load_vmsa: false,
        }
    }

    /// RECEIVE_UPDATE_VMSA (SEV-ES) put a migrated VMSA into the page: the state is
    /// protected, and the next VMRUN loads the register file from the page.
    pub(crate) fn received_vmsa(&mut self) {
        self.protected = true;
        self.load_vmsa = true;
    }

    /// Whether the next VMRUN must load the register file from the VMSA page
    /// (cleared by the call).
    pub(crate) fn take_load_vmsa(&mut self) -> bool {
        std::mem::take(&mut self.load_vmsa)
    }

    /// The register file of a running guest (the CPU's registers: what the guest's
    /// own instructions change, whatever the protection).
    pub(crate) fn regs_mut(&mut self) -> &mut Vmsa {
        &mut self.regs
    }

    /// The register state (as measured, once protected).
    pub(crate) fn regs(&self) -> &Vmsa {
        &self.regs
    }

    /// The page of the launch VMSA.
    pub(crate) fn vmsa_spa(&self) -> Spa {
        self.vmsa_spa
    }

    /// The launch VMSA was encrypted and measured (SNP_LAUNCH_FINISH,
    /// LAUNCH_UPDATE_VMSA).
    pub(crate) fn protected(&self) -> bool {
        self.protected
    }

    /// Set the register state; `false` (nothing changed) once protected.
    pub(crate) fn set_regs(&mut self, regs: &Vmsa) -> bool {
        if self.protected {
            return false;
        }
        *self.regs = regs.clone();
        true
    }

    /// KVM's stale register copy of a protected vCPU of a DEFAULT-type VM (what
    /// KVM_GET_REGS returns there), if KVM_SET_REGS wrote one.
    pub(crate) fn stale(&self) -> Option<&Vmsa> {
        self.stale.as_deref()
    }

    /// KVM_SET_REGS on a protected vCPU of a DEFAULT-type VM: only KVM's copy changes.
    pub(crate) fn set_stale(&mut self, regs: &Vmsa) {
        self.stale = Some(Box::new(regs.clone()));
    }

    /// The launch measured `regs` into the VMSA page: the state is now protected.
    pub(crate) fn protect(&mut self, regs: Vmsa) {
        *self.regs = regs;
        self.protected = true;
    }

    pub(crate) fn ghcb_msr(&self) -> u64 {
        self.ghcb_msr
    }

    pub(crate) fn set_ghcb_msr(&mut self, v: u64) {
        self.ghcb_msr = v;
    }

    /// The GHCB GPA the guest registered (SNP).
    pub(crate) fn ghcb_registered(&self) -> Option<Gpa> {
        self.ghcb_registered
    }

    pub(crate) fn register_ghcb(&mut self, gpa: Gpa) {
        self.ghcb_registered = Some(gpa);
    }

    pub(crate) fn set_cpuid(&mut self, entries: &[CpuidEntry]) {
        self.cpuid = entries.to_vec();
    }

    /// The CPUID entry of exactly (`function`, `index`).
    pub(crate) fn cpuid(&self, function: u32, index: u32) -> Option<CpuidEntry> {
        self.cpuid
            .iter()
            .find(|e| e.function == function && e.index == index)
            .copied()
    }

    /// An MSR the guest wrote through the GHCB (0 if never written).
    pub(crate) fn msr(&self, msr: u32) -> u64 {
        self.msrs.get(&msr).copied().unwrap_or(0)
    }

    pub(crate) fn set_msr(&mut self, msr: u32, v: u64) {
        self.msrs.insert(msr, v);
    }

    pub(crate) fn ap(&self) -> ApState {
        self.ap
    }

    /// GPA of the VMSA the vCPU started from after AP creation.
    pub(crate) fn ap_vmsa_gpa(&self) -> Option<Gpa> {
        self.ap_vmsa_gpa
    }

    /// AP creation CREATE: run from the VMSA at `gpa`.
    pub(crate) fn ap_create(&mut self, gpa: Gpa) {
        self.ap = ApState::Created(gpa);
        self.ap_vmsa_gpa = Some(gpa);
    }

    /// AP creation CREATE_ON_INIT: the VMSA at `gpa` takes effect at the next INIT.
    pub(crate) fn ap_create_on_init(&mut self, gpa: Gpa) {
        self.ap = ApState::PendingInit(gpa);
    }

    /// AP creation DESTROY.
    pub(crate) fn ap_destroy(&mut self) {
        self.ap = ApState::Destroyed;
        self.ap_vmsa_gpa = None;
    }

    /// INIT: a CREATE_ON_INIT VMSA takes effect.
    pub(crate) fn deliver_init(&mut self) {
        if let ApState::PendingInit(gpa) = self.ap {
            self.ap_create(gpa);
        }
    }
}

/// A vCPU's state shared by its file descriptor, its VM and its guest thread.
#[derive(Debug)]
pub(crate) struct VcpuShared {
    id: u32,
    st: parking_lot::Mutex<VcpuState>,
}

impl VcpuShared {
    pub(crate) fn new(id: u32, st: VcpuState) -> Self {
        VcpuShared {
            id,
            st: parking_lot::Mutex::new(st),
        }
    }

    /// vCPU id (= APIC id).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The state, locked.
    pub(crate) fn state(&self) -> parking_lot::MutexGuard<'_, VcpuState> {
        self.st.lock()
    }

    pub(crate) fn ghcb_msr(&self) -> u64 {
        self.st.lock().ghcb_msr()
    }

    pub(crate) fn set_ghcb_msr(&self, v: u64) {
        self.st.lock().set_ghcb_msr(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 11, review §5): the TSC was a process-wide static, so a VM's
    /// RDTSC answers depended on every other VM of the process. Each VM now counts
    /// from the same start whatever another VM read.
    #[test]
    fn regression_tsc_is_per_vm() {
        let (a, b) = (GuestTsc::new(), GuestTsc::new());
        for _ in 0..5 {
            a.read();
        }
        assert_eq!(b.read(), GuestTsc::START);
        assert_eq!(b.read(), GuestTsc::START + GuestTsc::STEP);
        assert_eq!(a.read(), GuestTsc::START + 5 * GuestTsc::STEP);
    }

    #[test]
    fn sev_state_roles_and_snp_launch() {
        let pages = GuestRequestPages {
            request: Spa(0x1000),
            response: Spa(0x2000),
        };
        let mut s = SevState::initialised(SevMode::Snp(SnpState::new(pages)), 3, 1, 2);
        assert!(s.is_active() && s.is_es() && s.is_usable() && s.owns_asid());
        assert!(s.snp_launch_pending() && s.snp_context().is_none());
        let snp = s.snp_mut().unwrap();
        snp.start(Spa(0x3000), 0x30000);
        assert_eq!(
            snp.launch(),
            SnpLaunch::Started {
                context: Spa(0x3000)
            }
        );
        snp.finish();
        assert!(snp.launched() && snp.policy() == 0x30000);
        assert!(!s.snp_launch_pending());
        assert_eq!(s.snp_context(), Some(Spa(0x3000)));

        let mut src = SevState::initialised(SevMode::SevEs, 7, 0, 1);
        let mirror = SevState::take_over(&src, ContextRole::Mirror);
        assert_eq!((mirror.role(), mirror.asid()), (ContextRole::Mirror, 7));
        assert!(!mirror.owns_asid());
        let moved = SevState::take_over(&src, ContextRole::Owner);
        src.mark_moved_away();
        assert!(moved.owns_asid() && !src.is_usable() && !src.owns_asid());
        assert!(!SevState::default().is_active());
    }
}
