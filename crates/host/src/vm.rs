//! A VM: its type, SEV state, memory, vCPUs, and the VM ioctls — memslots,
//! guest_memfd, KVM_SET_MEMORY_ATTRIBUTES, KVM_ENABLE_CAP, KVM_PRE_FAULT_MEMORY and
//! KVM_MEMORY_ENCRYPT_OP (host-interfaces.md §1.3–1.8, snp-launch.md §1.3–1.5).

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::{Event, EventLog};
use crate::mem::{Mapping, MemState, TranslateError};
use crate::platform::{AsidClass, SNP_POLICY_RSVD_MBO, SoftHost};
use crate::usermem::Hva;
use crate::vcpu::{SoftVcpu, VcpuExit, VcpuShared};
use parking_lot::Mutex;
use softsev_abi::fw_buf::{
    SnpActivate, SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate, SnpPaddr,
};
use softsev_abi::kvm::*;
use softsev_abi::page_info::{PageType, VMSA_GPA};
use softsev_abi::rmp::RmpUpdateInput;
use softsev_abi::{FwCmd, FwStatus, Gpa, PAGE_SIZE_4K, Spa};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use zerocopy::{FromBytes, IntoBytes};

/// One GFN's state: GFN, PRIVATE attribute, RMP entry and size of its private page.
pub type GfnState = (
    u64,
    bool,
    Option<(softsev_abi::rmp::RmpEntry, softsev_soc::PageSize)>,
);

/// Highest GHCB protocol version KVM supports.
pub const GHCB_VERSION_MAX: u16 = 2;
/// Default GHCB version for SEV-ES/SNP guests created with INIT2.
pub const GHCB_VERSION_DEFAULT: u16 = 2;

/// The SEV part of a VM (`struct kvm_sev_info`).
#[derive(Debug, Default, Clone)]
pub struct SevState {
    /// INIT/INIT2 done.
    pub active: bool,
    /// SEV-ES (or SNP).
    pub es: bool,
    /// SNP.
    pub snp: bool,
    /// The ASID.
    pub asid: u32,
    /// SEV_FEATURES of the VMSAs.
    pub vmsa_features: u64,
    /// Highest GHCB version offered.
    pub ghcb_version: u16,
    /// SNP guest context page.
    pub snp_context: Option<Spa>,
    /// SNP policy.
    pub policy: u64,
    /// SNP_LAUNCH_FINISH done.
    pub launched: bool,
    /// KVM_SEV_SNP_ENABLE_REQ_CERTS.
    pub req_certs: bool,
    /// Guest-request bounce page (hypervisor).
    pub req_buf: Option<Spa>,
    /// Guest-request response page (firmware state).
    pub resp_buf: Option<Spa>,
    /// Encryption context moved away (intra-host migration source).
    pub moved_away: bool,
    /// A mirror of another VM's context (does not own the ASID).
    pub mirror: bool,
}

/// Shared VM state (what `struct kvm` holds).
pub struct VmInner {
    pub(crate) host: Arc<SoftHost>,
    pub(crate) vm_type: VmType,
    pub(crate) sev: Mutex<SevState>,
    pub(crate) mem: Mutex<MemState>,
    pub(crate) vcpus: Mutex<Vec<Arc<VcpuShared>>>,
    pub(crate) log: Arc<EventLog>,
    pub(crate) exit_hypercall: AtomicU64,
    pub(crate) asid: AtomicU32,
    pub(crate) guest_req: Mutex<()>,
}

impl std::fmt::Debug for VmInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("type", &self.vm_type)
            .field("sev", &*self.sev.lock())
            .finish_non_exhaustive()
    }
}

/// A VM of the software host (a VM file descriptor).
#[derive(Debug, Clone)]
pub struct SoftVm {
    pub(crate) inner: Arc<VmInner>,
}

impl SoftHost {
    /// KVM_CREATE_VM.
    pub fn create_vm(self: &Arc<Self>, vm_type: VmType) -> KvmResult<SoftVm> {
        if vm_type.0 > 31 || self.vm_types() & (1 << vm_type.0) == 0 {
            return einval(format!("VM type {vm_type:?} is not supported"));
        }
        let log = Arc::new(EventLog::new(self.params.event_log_cap));
        Ok(SoftVm {
            inner: Arc::new(VmInner {
                host: self.clone(),
                vm_type,
                sev: Mutex::new(SevState::default()),
                mem: Mutex::new(MemState::new(log.clone())),
                vcpus: Mutex::new(Vec::new()),
                log,
                exit_hypercall: AtomicU64::new(0),
                asid: AtomicU32::new(0),
                guest_req: Mutex::new(()),
            }),
        })
    }
}

impl VmInner {
    pub(crate) fn snp(&self) -> bool {
        self.vm_type == VmType::SNP
    }

    /// Read guest memory through the shared (VMM) mapping, whatever the attribute
    /// (`kvm_read_guest`).
    pub(crate) fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> KvmResult {
        let hva = self.gpa_to_hva(gpa, buf.len() as u64)?;
        self.host.user.read(hva, buf)
    }

    /// Write guest memory through the shared mapping (`kvm_write_guest`).
    pub(crate) fn write_shared(&self, gpa: u64, data: &[u8]) -> KvmResult {
        let hva = self.gpa_to_hva(gpa, data.len() as u64)?;
        self.host.user.write(hva, data)
    }

    fn gpa_to_hva(&self, gpa: u64, len: u64) -> KvmResult<Hva> {
        let m = self.mem.lock();
        let gfn = gpa / PAGE_SIZE_4K;
        let s = m
            .slot_of(gfn)
            .ok_or_else(|| KvmError::new(Errno::EFAULT, format!("no memslot for GPA {gpa:#x}")))?;
        let end_gfn = (gpa + len.max(1) - 1) / PAGE_SIZE_4K;
        if end_gfn >= s.base_gfn + s.npages {
            return Err(KvmError::new(
                Errno::EFAULT,
                format!("GPA range {gpa:#x}+{len:#x} leaves its memslot"),
            ));
        }
        Ok(Hva(s.uaddr + (gpa - s.base_gfn * PAGE_SIZE_4K)))
    }
}

impl SoftVm {
    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.inner.vm_type
    }

    /// The host.
    pub fn host(&self) -> &Arc<SoftHost> {
        &self.inner.host
    }

    /// A copy of the SEV state.
    pub fn sev_state(&self) -> SevState {
        self.inner.sev.lock().clone()
    }

    /// The VM's event log.
    pub fn events(&self) -> &EventLog {
        &self.inner.log
    }

    /// `KVM_CHECK_EXTENSION` on the VM.
    pub fn check_extension(&self, cap: KvmCap) -> u64 {
        match cap {
            KvmCap::MEMORY_ATTRIBUTES if self.inner.snp() => KVM_MEMORY_ATTRIBUTE_PRIVATE,
            KvmCap::MEMORY_ATTRIBUTES => 0,
            KvmCap::GUEST_MEMFD => u64::from(self.inner.snp()),
            c => self.inner.host.check_extension(c),
        }
    }

    /// KVM_ENABLE_CAP (only EXIT_HYPERCALL is modelled).
    pub fn enable_cap(&self, cap: KvmCap, arg0: u64) -> KvmResult {
        match cap {
            KvmCap::EXIT_HYPERCALL => {
                if arg0 & !(1 << KVM_HC_MAP_GPA_RANGE) != 0 {
                    return einval(format!("hypercall mask {arg0:#x}"));
                }
                self.inner.exit_hypercall.store(arg0, Ordering::Relaxed);
                Ok(())
            }
            c => einval(format!("capability {c:?} cannot be enabled")),
        }
    }

    /// KVM_CREATE_GUEST_MEMFD: returns the fd.
    pub fn create_guest_memfd(&self, args: &KvmCreateGuestMemfd) -> KvmResult<u32> {
        if !self.inner.snp() && self.inner.vm_type != VmType::SW_PROTECTED {
            return einval(format!("guest_memfd on a {:?} VM", self.inner.vm_type));
        }
        if args.reserved.iter().any(|r| *r != 0) {
            return einval("guest_memfd reserved fields");
        }
        self.inner.mem.lock().create_gmem(args.size, args.flags)
    }

    /// KVM_SET_USER_MEMORY_REGION2.
    pub fn set_user_memory_region2(&self, r: &KvmUserspaceMemoryRegion2) -> KvmResult {
        let user = self.inner.host.user.clone();
        let mut m = self.inner.mem.lock();
        if let Some(old) = m.set_region(r, |a, l| user.is_mapped(Hva(a), l))? {
            // Deleting a slot drops its private pages (gmem unbinding).
            if let Some((fd, off)) = old.gmem {
                m.punch_hole(&self.inner.host, fd, off, old.npages * PAGE_SIZE_4K)?;
            }
        }
        Ok(())
    }

    /// KVM_SET_MEMORY_ATTRIBUTES. Changing a GFN's attribute changes which backing the
    /// guest sees (the other is no longer mapped); backings are released by the VMM
    /// (see [`SoftVm::convert_memory`]).
    pub fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> KvmResult {
        if self.check_extension(KvmCap::MEMORY_ATTRIBUTES) == 0 {
            return einval("memory attributes are not supported by this VM type");
        }
        if a.flags != 0 {
            return einval(format!("attribute flags {:#x}", a.flags));
        }
        if a.attributes & !KVM_MEMORY_ATTRIBUTE_PRIVATE != 0 {
            return einval(format!("attributes {:#x}", a.attributes));
        }
        if a.size == 0
            || !a.address.is_multiple_of(PAGE_SIZE_4K)
            || !a.size.is_multiple_of(PAGE_SIZE_4K)
            || a.address.checked_add(a.size).is_none()
        {
            return einval(format!("attribute range {:#x}+{:#x}", a.address, a.size));
        }
        let private = a.attributes != 0;
        self.inner.mem.lock().private.set(
            a.address / PAGE_SIZE_4K,
            (a.address + a.size) / PAGE_SIZE_4K,
            private,
        );
        self.inner.log.push(Event::SetAttributes {
            gpa: a.address,
            size: a.size,
            private,
        });
        Ok(())
    }

    /// What QEMU's `kvm_convert_memory` does: set the attribute, then discard the
    /// backing that is no longer used (punch the gmem hole when going shared, drop the
    /// VMM pages when going private). With `prefault`, private pages are prepared
    /// (RMPUPDATE to guest-owned) at once (KVM_PRE_FAULT_MEMORY).
    pub fn convert_memory(&self, gpa: u64, size: u64, private: bool, prefault: bool) -> KvmResult {
        self.set_memory_attributes(&KvmMemoryAttributes {
            address: gpa,
            size,
            attributes: if private {
                KVM_MEMORY_ATTRIBUTE_PRIVATE
            } else {
                0
            },
            flags: 0,
        })?;
        let mut gfn = gpa / PAGE_SIZE_4K;
        let end = (gpa + size) / PAGE_SIZE_4K;
        while gfn < end {
            let m = self.inner.mem.lock();
            let Some(s) = m.slot_of(gfn).cloned() else {
                drop(m);
                gfn += 1;
                continue;
            };
            drop(m);
            let n = (s.base_gfn + s.npages).min(end) - gfn;
            if private {
                let hva = Hva(s.uaddr + (gfn - s.base_gfn) * PAGE_SIZE_4K);
                self.inner.host.user.discard(hva, n * PAGE_SIZE_4K)?;
                if prefault {
                    self.pre_fault_memory(gfn * PAGE_SIZE_4K, n * PAGE_SIZE_4K)?;
                }
            } else if let Some((fd, off)) = s.gmem {
                let off = off + (gfn - s.base_gfn) * PAGE_SIZE_4K;
                self.inner
                    .mem
                    .lock()
                    .punch_hole(&self.inner.host, fd, off, n * PAGE_SIZE_4K)?;
            }
            gfn += n;
        }
        Ok(())
    }

    /// KVM_PRE_FAULT_MEMORY: map (and for private GFNs prepare) `[gpa, gpa+size)`.
    /// For SNP only after SNP_LAUNCH_FINISH.
    pub fn pre_fault_memory(&self, gpa: u64, size: u64) -> KvmResult {
        let (snp, launched, asid) = {
            let s = self.inner.sev.lock();
            (s.snp, s.launched, s.asid)
        };
        if snp && !launched {
            return einval("pre-faulting an SNP VM before SNP_LAUNCH_FINISH");
        }
        let mut m = self.inner.mem.lock();
        let mut g = gpa / PAGE_SIZE_4K;
        let end = (gpa + size).div_ceil(PAGE_SIZE_4K);
        while g < end {
            let private = m.private.contains(g);
            match m.translate(&self.inner.host, asid, Gpa(g * PAGE_SIZE_4K), private) {
                Ok(Mapping::Private {
                    npt: softsev_soc::PageSize::Size2M,
                    ..
                }) if g.is_multiple_of(512) && g + 512 <= end => g += 512,
                Ok(_) => g += 1,
                Err(TranslateError::NoSlot(_)) => {
                    return Err(KvmError::new(
                        Errno::ENOENT,
                        format!("no memslot at GFN {g:#x}"),
                    ));
                }
                Err(e) => return Err(KvmError::new(Errno::EFAULT, format!("{e:?}"))),
            }
        }
        Ok(())
    }

    /// Answer a `KVM_EXIT_HYPERCALL(MAP_GPA_RANGE)` exit as a VMM does: convert the range
    /// (`prefault` = prepare private pages at once) and set `ret` (0 or EINVAL).
    pub fn handle_map_gpa_range(&self, exit: &mut VcpuExit, prefault: bool) -> bool {
        let VcpuExit::Hypercall { nr, args, ret } = exit else {
            return false;
        };
        if *nr != KVM_HC_MAP_GPA_RANGE {
            return false;
        }
        let (gpa, npages, attrs) = (args[0], args[1], args[2]);
        let size = npages.checked_mul(PAGE_SIZE_4K);
        let in_slots = size.is_some_and(|sz| {
            let m = self.inner.mem.lock();
            let mut g = gpa / PAGE_SIZE_4K;
            let end = (gpa + sz) / PAGE_SIZE_4K;
            while g < end {
                match m.slot_of(g) {
                    Some(s) => g = s.base_gfn + s.npages,
                    None => return false,
                }
            }
            true
        });
        *ret = match size {
            Some(sz) if in_slots && gpa.is_multiple_of(PAGE_SIZE_4K) => {
                let private = attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0;
                match self.convert_memory(gpa, sz, private, prefault) {
                    Ok(()) => 0,
                    Err(_) => Errno::EINVAL.0 as u64,
                }
            }
            _ => Errno::EINVAL.0 as u64,
        };
        true
    }

    /// Punch a hole in a guest_memfd (fallocate PUNCH_HOLE).
    pub fn gmem_punch_hole(&self, fd: u32, off: u64, len: u64) -> KvmResult {
        self.inner
            .mem
            .lock()
            .punch_hole(&self.inner.host, fd, off, len)
    }

    /// The memslots.
    pub fn memslots(&self) -> Vec<crate::mem::Memslot> {
        self.inner.mem.lock().slots().cloned().collect()
    }

    /// The nested translation the guest would get for `gpa` (`private` access), without
    /// preparing anything: `Some(Private)` only if the page is already guest-owned.
    pub fn lookup(&self, gpa: u64) -> Option<(bool, Spa)> {
        let mut m = self.inner.mem.lock();
        let gfn = gpa / PAGE_SIZE_4K;
        let private = m.private.contains(gfn);
        let s = m.slot_of(gfn)?.clone();
        if private {
            let (spa, _, _) = m.gmem_spa(&self.inner.host, gfn).ok()?;
            Some((true, spa))
        } else {
            drop(m);
            let hva = Hva(s.uaddr + (gfn - s.base_gfn) * PAGE_SIZE_4K);
            self.inner
                .host
                .user
                .page_spa_if_present(hva)
                .map(|spa| (false, spa))
        }
    }

    /// For each GFN in `gfns`: its PRIVATE attribute, and the RMP entry (with its size)
    /// of its private backing page if one exists. Nothing is allocated.
    pub fn rmp_snapshot(&self, gfns: std::ops::Range<u64>) -> Vec<GfnState> {
        let m = self.inner.mem.lock();
        gfns.map(|g| {
            let e = m
                .gmem_peek(g)
                .and_then(|spa| self.inner.host.soc.rmp_lookup(spa).ok());
            (g, m.private.contains(g), e)
        })
        .collect()
    }

    /// Whether `gfn` has the PRIVATE attribute.
    pub fn is_private(&self, gfn: u64) -> bool {
        self.inner.mem.lock().private.contains(gfn)
    }

    /// KVM_CREATE_VCPU.
    pub fn create_vcpu(&self, id: u32) -> KvmResult<SoftVcpu> {
        SoftVcpu::create(self.inner.clone(), id)
    }

    // ---- KVM_MEMORY_ENCRYPT_OP ----

    /// KVM_MEMORY_ENCRYPT_OP with the command in `cmd` (its `data` is a user address
    /// in [`SoftHost::user`]); `cmd.error` receives the firmware status.
    pub fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult {
        let id = SevCmdId(cmd.id);
        let span = tracing::debug_span!("memory_encrypt_op", ?id);
        let _g = span.enter();
        cmd.error = 0;
        let r = self.encrypt_op(id, cmd);
        if let Err(e) = &r
            && let Some(s) = e.fw
        {
            cmd.error = s.0;
        }
        self.inner.log.push(Event::EncryptOp {
            id: id.0,
            errno: r.as_ref().err().map_or(0, |e| e.errno.0),
            fw_error: cmd.error,
        });
        r
    }

    fn encrypt_op(&self, id: SevCmdId, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        if !h.params.sev {
            return Err(KvmError::new(Errno::ENOTTY, "SEV is disabled"));
        }
        let mut sev = self.inner.sev.lock();
        match id {
            SevCmdId::INIT | SevCmdId::ES_INIT => {
                if self.inner.vm_type != VmType::DEFAULT {
                    return einval("legacy INIT on a VM that is not KVM_X86_DEFAULT_VM");
                }
                let es = id == SevCmdId::ES_INIT;
                let init = KvmSevInit {
                    ghcb_version: u16::from(es),
                    ..Default::default()
                };
                return self.guest_init(
                    &mut sev,
                    &init,
                    if es { VmType::SEV_ES } else { VmType::SEV },
                );
            }
            SevCmdId::INIT2 => {
                if !matches!(
                    self.inner.vm_type,
                    VmType::SEV | VmType::SEV_ES | VmType::SNP
                ) {
                    return einval(format!("INIT2 on a {:?} VM", self.inner.vm_type));
                }
                let init: KvmSevInit = self.copy_from_user(cmd.data)?;
                return self.guest_init(&mut sev, &init, self.inner.vm_type);
            }
            _ => {}
        }
        if !sev.active || sev.moved_away {
            return Err(KvmError::new(Errno::ENOTTY, "not an SEV guest"));
        }
        if sev.snp && id.0 < SevCmdId::SNP_LAUNCH_START.0 {
            return Err(KvmError::new(
                Errno::EPERM,
                format!("{id:?} on an SNP guest"),
            ));
        }
        match id {
            SevCmdId::SNP_LAUNCH_START => self.snp_launch_start(&mut sev, cmd),
            SevCmdId::SNP_LAUNCH_UPDATE => self.snp_launch_update(&mut sev, cmd),
            SevCmdId::SNP_LAUNCH_FINISH => self.snp_launch_finish(&mut sev, cmd),
            SevCmdId::SNP_ENABLE_REQ_CERTS => {
                if !sev.snp {
                    return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
                }
                if !self.inner.vcpus.lock().is_empty() {
                    return einval("SNP_ENABLE_REQ_CERTS after vCPUs were created");
                }
                sev.req_certs = true;
                Ok(())
            }
            SevCmdId::LAUNCH_START
            | SevCmdId::LAUNCH_UPDATE_DATA
            | SevCmdId::LAUNCH_UPDATE_VMSA
            | SevCmdId::LAUNCH_SECRET
            | SevCmdId::LAUNCH_MEASURE
            | SevCmdId::LAUNCH_FINISH
            | SevCmdId::SEND_START
            | SevCmdId::SEND_UPDATE_DATA
            | SevCmdId::SEND_FINISH
            | SevCmdId::SEND_CANCEL
            | SevCmdId::RECEIVE_START
            | SevCmdId::RECEIVE_UPDATE_DATA
            | SevCmdId::RECEIVE_FINISH
            | SevCmdId::GUEST_STATUS
            | SevCmdId::DBG_DECRYPT
            | SevCmdId::DBG_ENCRYPT
            | SevCmdId::GET_ATTESTATION_REPORT => {
                if sev.snp {
                    return Err(KvmError::new(
                        Errno::ENOTTY,
                        format!("{id:?} is not an SNP command"),
                    ));
                }
                // The legacy SEV API: forwarded to the firmware, which answers with its
                // status (the firmware model implements only the SNP ABI).
                let legacy = match id {
                    SevCmdId::LAUNCH_START => FwCmd::LAUNCH_START,
                    SevCmdId::LAUNCH_UPDATE_DATA => FwCmd::LAUNCH_UPDATE_DATA,
                    SevCmdId::LAUNCH_UPDATE_VMSA => FwCmd::LAUNCH_UPDATE_VMSA,
                    SevCmdId::LAUNCH_MEASURE => FwCmd::LAUNCH_MEASURE,
                    SevCmdId::LAUNCH_SECRET => FwCmd::LAUNCH_UPDATE_SECRET,
                    SevCmdId::LAUNCH_FINISH => FwCmd::LAUNCH_FINISH,
                    SevCmdId::GUEST_STATUS => FwCmd::GUEST_STATUS,
                    SevCmdId::DBG_DECRYPT => FwCmd::DBG_DECRYPT,
                    SevCmdId::DBG_ENCRYPT => FwCmd::DBG_ENCRYPT,
                    SevCmdId::GET_ATTESTATION_REPORT => FwCmd::ATTESTATION,
                    _ => return einval(format!("{id:?}: migration is not supported by this host")),
                };
                h.psp_raw(legacy)
                    .map_err(|s| KvmError::fw(s, format!("{id:?}")))
            }
            _ => einval(format!("unknown or unsupported command {id:?}")),
        }
    }

    fn copy_from_user<T: FromBytes + IntoBytes>(&self, uaddr: u64) -> KvmResult<T> {
        let mut v = T::new_zeroed();
        self.inner.host.user.read(Hva(uaddr), v.as_mut_bytes())?;
        Ok(v)
    }

    fn copy_to_user<T: IntoBytes + zerocopy::Immutable>(&self, uaddr: u64, v: &T) -> KvmResult {
        self.inner.host.user.write(Hva(uaddr), v.as_bytes())
    }

    fn guest_init(&self, sev: &mut SevState, init: &KvmSevInit, vm_type: VmType) -> KvmResult {
        let h = &self.inner.host;
        if !self.inner.vcpus.lock().is_empty() {
            return einval("SEV init after vCPUs were created");
        }
        if init.flags != 0 {
            return einval(format!("kvm_sev_init.flags {:#x} must be 0", init.flags));
        }
        let es = vm_type != VmType::SEV;
        let valid = if es { h.supported_vmsa_features() } else { 0 };
        if init.vmsa_features & !valid != 0 {
            return einval(format!(
                "vmsa_features {:#x} not within the supported {valid:#x}",
                init.vmsa_features
            ));
        }
        if init.ghcb_version > GHCB_VERSION_MAX || (!es && init.ghcb_version != 0) {
            return einval(format!("ghcb_version {}", init.ghcb_version));
        }
        if vm_type == VmType::SNP && init.ghcb_version != 0 && init.ghcb_version < 2 {
            return einval(format!(
                "SNP needs GHCB version 2, got {}",
                init.ghcb_version
            ));
        }
        if sev.active {
            return einval("SEV already initialised");
        }
        let (allowed, class) = match vm_type {
            VmType::SNP => (h.params.sev_snp, AsidClass::Snp),
            VmType::SEV_ES => (h.params.sev_es, AsidClass::SevEs),
            _ => (h.params.sev, AsidClass::Sev),
        };
        if !allowed {
            return einval(format!("{vm_type:?} guests are disabled"));
        }
        let asid = h.asid_alloc(class)?;
        let mut st = SevState {
            active: true,
            es,
            snp: vm_type == VmType::SNP,
            asid,
            vmsa_features: init.vmsa_features,
            ghcb_version: if es && init.ghcb_version == 0 {
                GHCB_VERSION_DEFAULT
            } else {
                init.ghcb_version
            },
            ..Default::default()
        };
        if st.snp {
            st.vmsa_features |= softsev_abi::vmsa::SEV_FEATURE_SNP_ACTIVE;
            let req = h.alloc_page();
            let resp = h.alloc_page();
            match (req, resp) {
                (Ok(req), Ok(resp)) => {
                    if let Err(e) = h.make_firmware_page(resp) {
                        h.alloc.free_4k(req);
                        h.alloc.free_4k(resp);
                        h.asid_free(asid);
                        return Err(e);
                    }
                    st.req_buf = Some(req);
                    st.resp_buf = Some(resp);
                }
                (a, b) => {
                    for p in [a, b].into_iter().flatten() {
                        h.alloc.free_4k(p);
                    }
                    h.asid_free(asid);
                    return Err(KvmError::new(Errno::ENOMEM, "guest request pages"));
                }
            }
        }
        self.inner.asid.store(asid, Ordering::Relaxed);
        *sev = st;
        Ok(())
    }

    fn snp_launch_start(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        if !sev.snp {
            return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
        }
        if sev.snp_context.is_some() {
            return einval("SNP_LAUNCH_START already issued");
        }
        let p: KvmSevSnpLaunchStart = self.copy_from_user(cmd.data)?;
        if p.policy & SNP_POLICY_RSVD_MBO == 0 {
            return einval(format!(
                "policy {:#x} lacks the must-be-one bit 17",
                p.policy
            ));
        }
        if p.policy & !h.snp_policy_bits() != 0 {
            return einval(format!(
                "policy {:#x} has bits outside {:#x}",
                p.policy,
                h.snp_policy_bits()
            ));
        }
        if p.flags != 0 {
            return einval(format!("flags {:#x} must be 0", p.flags));
        }
        let gctx = h.alloc_page()?;
        h.make_firmware_page(gctx)?;
        let mut c = SnpPaddr { paddr: gctx.0 };
        if let Err(s) = h.psp(FwCmd::SNP_GCTX_CREATE, &mut c) {
            let _ = h.reclaim_page(gctx, false);
            h.alloc.free_4k(gctx);
            return Err(KvmError::new(
                Errno::ENOTTY,
                format!("SNP_GCTX_CREATE failed: {s:?}"),
            ));
        }
        sev.snp_context = Some(gctx);
        sev.policy = p.policy;
        let mut start = SnpLaunchStart {
            gctx_paddr: gctx.0,
            policy: p.policy,
            ma_gctx_paddr: 0,
            flags: 0,
            desired_tsc_freq: 0,
            gosvw: p.gosvw,
        };
        let r = h
            .psp(FwCmd::SNP_LAUNCH_START, &mut start)
            .map_err(|s| KvmError::fw(s, "SNP_LAUNCH_START"))
            .and_then(|()| {
                let mut a = SnpActivate {
                    gctx_paddr: gctx.0,
                    asid: sev.asid,
                    pad: 0,
                };
                h.psp(FwCmd::SNP_ACTIVATE, &mut a)
                    .map_err(|s| KvmError::fw(s, "SNP_ACTIVATE"))
            });
        if r.is_err() {
            self.decommission(sev);
        }
        r
    }

    /// SNP_DECOMMISSION and reclaim of the context page.
    pub(crate) fn decommission(&self, sev: &mut SevState) {
        let h = &self.inner.host;
        if let Some(gctx) = sev.snp_context.take() {
            let mut c = SnpPaddr { paddr: gctx.0 };
            if h.psp(FwCmd::SNP_DECOMMISSION, &mut c).is_ok() && h.reclaim_page(gctx, false).is_ok()
            {
                h.alloc.free_4k(gctx);
            }
        }
    }

    fn snp_launch_update(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        let Some(gctx) = sev.snp_context.filter(|_| sev.snp) else {
            return einval("SNP_LAUNCH_UPDATE without SNP_LAUNCH_START");
        };
        let mut p: KvmSevSnpLaunchUpdate = self.copy_from_user(cmd.data)?;
        let ty = PageType(p.page_type);
        let type_ok = matches!(
            ty,
            PageType::NORMAL
                | PageType::ZERO
                | PageType::UNMEASURED
                | PageType::SECRETS
                | PageType::CPUID
        );
        if p.len == 0 || !p.len.is_multiple_of(PAGE_SIZE_4K) || p.flags != 0 || !type_ok {
            return einval(format!(
                "len {:#x}, flags {:#x}, type {} must be non-zero page multiple, 0, one of 1/3/4/5/6",
                p.len, p.flags, p.page_type
            ));
        }
        let src = (ty != PageType::ZERO).then_some(p.uaddr);
        if src.is_some_and(|u| !u.is_multiple_of(PAGE_SIZE_4K)) {
            return einval(format!("uaddr {:#x} not page aligned", p.uaddr));
        }
        let npages = p.len / PAGE_SIZE_4K;
        let (slot_end, can_private) = {
            let m = self.inner.mem.lock();
            match m.slot_of(p.gfn_start) {
                Some(s) => (s.base_gfn + s.npages, s.gmem.is_some()),
                None => (0, false),
            }
        };
        if !can_private {
            return einval(format!(
                "GFN {:#x} is not in a guest_memfd memslot",
                p.gfn_start
            ));
        }
        let mut todo = npages.min(slot_end - p.gfn_start);
        if let Some(b) = h.params.launch_update_batch {
            todo = todo.min(b.max(1));
        }
        let mut done = 0u64;
        let mut failure: Option<KvmError> = None;
        while done < todo {
            let gfn = p.gfn_start + done;
            match self.populate_one(
                sev.asid,
                gctx,
                gfn,
                ty,
                src.map(|u| u + done * PAGE_SIZE_4K),
            ) {
                Ok(()) => done += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if done == 0
            && let Some(e) = failure
        {
            // kvm_gmem_populate failed on its first page: the ioctl returns -EIO and
            // `error` carries the firmware status (0 for a KVM-side check).
            return Err(KvmError {
                errno: Errno::EIO,
                fw: e.fw.or(Some(FwStatus::SUCCESS)),
                reason: format!("SNP_LAUNCH_UPDATE of GFN {:#x}: {}", p.gfn_start, e.reason),
            });
        }
        p.gfn_start += done;
        p.len -= done * PAGE_SIZE_4K;
        if ty != PageType::ZERO {
            p.uaddr += done * PAGE_SIZE_4K;
        }
        self.copy_to_user(cmd.data, &p)
    }

    fn populate_one(
        &self,
        asid: u32,
        gctx: Spa,
        gfn: u64,
        ty: PageType,
        src: Option<u64>,
    ) -> KvmResult {
        let h = &self.inner.host;
        let spa = {
            let mut m = self.inner.mem.lock();
            if !m.private.contains(gfn) {
                return einval(format!("GFN {gfn:#x} is not private"));
            }
            m.gmem_spa(h, gfn)?.0
        };
        let (e, _) = h
            .soc
            .rmp_lookup(spa)
            .map_err(|e| KvmError::inval(e.to_string()))?;
        if e.assigned() {
            return einval(format!(
                "the page {spa} of GFN {gfn:#x} is already assigned in the RMP"
            ));
        }
        let mut page = [0u8; PAGE_SIZE_4K as usize];
        if let Some(u) = src {
            h.user.read(Hva(u), &mut page)?;
        }
        h.soc
            .host_write(spa, false, &page)
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
        let st = h.soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                gpa: gfn * PAGE_SIZE_4K,
                assigned: 1,
                immutable: 1,
                asid,
                ..Default::default()
            },
        );
        crate::platform::rmp_ok(st, spa, "to pre-guest")?;
        let mut u = SnpLaunchUpdate {
            gctx_paddr: gctx.0,
            page_flags: SnpLaunchUpdate::flags(false, ty.0, false),
            reserved: 0,
            page_paddr: spa.0,
            vmpl_perms: 0,
            reserved2: 0,
        };
        if let Err(s) = h.psp(FwCmd::SNP_LAUNCH_UPDATE, &mut u) {
            if h.reclaim_page(spa, false).is_ok()
                && ty == PageType::CPUID
                && s == FwStatus::INVALID_PARAM
                && let Some(u) = src
            {
                let mut fixed = [0u8; PAGE_SIZE_4K as usize];
                if h.soc.host_read(spa, false, &mut fixed).is_ok() {
                    let _ = h.user.write(Hva(u), &fixed);
                }
            }
            return Err(KvmError::fw(
                s,
                format!("SNP_LAUNCH_UPDATE of GFN {gfn:#x}"),
            ));
        }
        Ok(())
    }

    fn snp_launch_finish(&self, sev: &mut SevState, cmd: &KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        if !sev.snp {
            return Err(KvmError::new(Errno::ENOTTY, "not an SNP guest"));
        }
        let Some(gctx) = sev.snp_context else {
            return einval("SNP_LAUNCH_FINISH without SNP_LAUNCH_START");
        };
        let p: KvmSevSnpLaunchFinish = self.copy_from_user(cmd.data)?;
        if p.flags != 0 {
            return einval(format!("flags {:#x} must be 0", p.flags));
        }
        // Measure every vCPU's VMSA, in vCPU index order.
        let vcpus: Vec<Arc<VcpuShared>> = self.inner.vcpus.lock().clone();
        for v in &vcpus {
            let mut c = v.st.lock();
            if c.protected {
                continue;
            }
            let mut regs = c.regs.clone();
            regs.sev_features = sev.vmsa_features;
            let spa = c.vmsa_spa;
            h.soc
                .host_write(spa, false, regs.as_bytes())
                .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            let st = h.soc.rmpupdate(
                spa,
                &RmpUpdateInput {
                    gpa: VMSA_GPA,
                    assigned: 1,
                    immutable: 1,
                    asid: sev.asid,
                    ..Default::default()
                },
            );
            crate::platform::rmp_ok(st, spa, "VMSA to pre-guest")?;
            let mut u = SnpLaunchUpdate {
                gctx_paddr: gctx.0,
                page_flags: SnpLaunchUpdate::flags(false, PageType::VMSA.0, false),
                reserved: 0,
                page_paddr: spa.0,
                vmpl_perms: 0,
                reserved2: 0,
            };
            if let Err(s) = h.psp(FwCmd::SNP_LAUNCH_UPDATE, &mut u) {
                let _ = h.reclaim_page(spa, false);
                return Err(KvmError::fw(
                    s,
                    format!("SNP_LAUNCH_UPDATE of the VMSA of vCPU {}", v.id),
                ));
            }
            c.regs = regs;
            c.protected = true;
        }
        let mut f = SnpLaunchFinish {
            gctx_paddr: gctx.0,
            id_block_paddr: 0,
            id_auth_paddr: 0,
            flags: 0,
            host_data: p.host_data,
        };
        let mut pages = Vec::new();
        if p.id_block_en != 0 {
            let mut blk = vec![0u8; KVM_SEV_SNP_ID_BLOCK_SIZE];
            h.user.read(Hva(p.id_block_uaddr), &mut blk)?;
            let mut auth = vec![0u8; KVM_SEV_SNP_ID_AUTH_SIZE];
            h.user.read(Hva(p.id_auth_uaddr), &mut auth)?;
            let bp = h.alloc_page()?;
            let ap = h.alloc_page()?;
            pages.push(bp);
            pages.push(ap);
            for (spa, d) in [(bp, &blk), (ap, &auth)] {
                h.soc
                    .host_write(spa, false, d)
                    .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
            }
            f.id_block_paddr = bp.0;
            f.id_auth_paddr = ap.0;
            f.flags |= SnpLaunchFinish::ID_BLOCK_EN;
            if p.auth_key_en != 0 {
                f.flags |= SnpLaunchFinish::AUTH_KEY_EN;
            }
        }
        if p.vcek_disabled != 0 {
            f.flags |= SnpLaunchFinish::VCEK_DIS;
        }
        let r = h.psp(FwCmd::SNP_LAUNCH_FINISH, &mut f);
        for pg in pages {
            h.alloc.free_4k(pg);
        }
        r.map_err(|s| KvmError::fw(s, "SNP_LAUNCH_FINISH"))?;
        sev.launched = true;
        Ok(())
    }

    /// KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: take over `src`'s encryption context
    /// (intra-host migration). SNP guests cannot be migrated this way.
    pub fn move_enc_context_from(&self, src: &SoftVm) -> KvmResult {
        self.take_context(src, true)
    }

    /// KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: make this VM a mirror of `src`'s context.
    pub fn copy_enc_context_from(&self, src: &SoftVm) -> KvmResult {
        self.take_context(src, false)
    }

    fn take_context(&self, src: &SoftVm, mv: bool) -> KvmResult {
        if Arc::ptr_eq(&self.inner, &src.inner) {
            return einval("source and destination are the same VM");
        }
        let mut dst = self.inner.sev.lock();
        let mut s = src.inner.sev.lock();
        if dst.active {
            return einval("destination is already an SEV guest");
        }
        if !s.active || s.moved_away {
            return einval("source is not an SEV guest");
        }
        if s.snp || self.inner.snp() || src.inner.snp() {
            return einval("SNP guests cannot be moved or mirrored");
        }
        if mv {
            let (nd, ns) = (self.inner.vcpus.lock().len(), src.inner.vcpus.lock().len());
            if nd != ns {
                return einval(format!("vCPU counts differ ({nd} vs {ns})"));
            }
            *dst = s.clone();
            s.moved_away = true;
        } else {
            if !self.inner.vcpus.lock().is_empty() {
                return einval("mirror destination already has vCPUs");
            }
            *dst = s.clone();
            dst.mirror = true;
        }
        self.inner.asid.store(dst.asid, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for VmInner {
    fn drop(&mut self) {
        let h = self.host.clone();
        let mut sev = std::mem::take(&mut *self.sev.lock());
        // VMSA pages back to the hypervisor.
        for v in self.vcpus.lock().iter() {
            let spa = v.st.lock().vmsa_spa;
            if h.reclaim_page(spa, false).is_ok() {
                h.alloc.free_4k(spa);
            }
        }
        if let Some(gctx) = sev.snp_context.take() {
            let mut c = SnpPaddr { paddr: gctx.0 };
            if h.psp(FwCmd::SNP_DECOMMISSION, &mut c).is_ok() && h.reclaim_page(gctx, false).is_ok()
            {
                h.alloc.free_4k(gctx);
            }
        }
        self.mem.lock().release_all(&h);
        if let Some(p) = sev.req_buf.take() {
            h.alloc.free_4k(p);
        }
        if let Some(p) = sev.resp_buf.take()
            && h.reclaim_page(p, false).is_ok()
        {
            h.alloc.free_4k(p);
        }
        if sev.active && !sev.moved_away && !sev.mirror {
            h.asid_free(sev.asid);
        }
    }
}
