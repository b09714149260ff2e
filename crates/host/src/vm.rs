//! A VM: its type, SEV state, memory, vCPUs, and the VM ioctls that are not SEV
//! commands — memslots, guest_memfd, KVM_SET_MEMORY_ATTRIBUTES, KVM_ENABLE_CAP,
//! KVM_PRE_FAULT_MEMORY (host-interfaces.md §1.3–1.8; Linux `virt/kvm/kvm_main.c`).
//! KVM_MEMORY_ENCRYPT_OP is in [`crate::sev`].

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::{Event, EventLog};
use crate::mem::{Mapping, MemState, Memslot, TranslateError};
use crate::platform::SoftHost;
use crate::state::{GuestTsc, SevState, VcpuShared};
use crate::usermem::Hva;
use crate::vcpu::{SoftVcpu, VcpuExit};
use parking_lot::Mutex;
use softsev_abi::fw_buf::SnpPaddr;
use softsev_abi::kvm::*;
use softsev_abi::rmp::RmpEntry;
use softsev_abi::{AddrRange, FwCmd, Gfn, Gpa, PAGE_SIZE_4K, PageSize, Spa};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One GFN's state, as [`SoftVm::rmp_snapshot`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GfnState {
    /// The GFN.
    pub gfn: Gfn,
    /// It has the PRIVATE attribute.
    pub private: bool,
    /// The RMP entry of its private backing page, if that page exists.
    pub rmp: Option<RmpState>,
}

/// An RMP entry and the size it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmpState {
    /// The entry.
    pub entry: RmpEntry,
    /// Its page size.
    pub size: PageSize,
}

/// What backs a GPA for the guest right now ([`SoftVm::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A prepared private (guest_memfd) page.
    Private(Spa),
    /// A shared (VMM memory) page.
    Shared(Spa),
}

/// The memory attribute a conversion sets (KVM_SET_MEMORY_ATTRIBUTES PRIVATE or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemAttr {
    /// PRIVATE: guest_memfd backing.
    Private,
    /// No attribute: shared VMM backing.
    Shared,
}

/// When private pages of a conversion are prepared (RMPUPDATE to guest-owned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefault {
    /// At once (KVM_PRE_FAULT_MEMORY after the conversion).
    Now,
    /// On the guest's first access.
    OnAccess,
}

/// Highest GHCB protocol version KVM supports.
pub const GHCB_VERSION_MAX: u16 = 2;
/// Default GHCB version for SEV-ES/SNP guests created with INIT2.
pub const GHCB_VERSION_DEFAULT: u16 = 2;

/// Shared VM state (what `struct kvm` holds).
pub(crate) struct VmInner {
    pub(crate) host: Arc<SoftHost>,
    pub(crate) vm_type: VmType,
    pub(crate) sev: Mutex<SevState>,
    pub(crate) mem: Mutex<MemState>,
    pub(crate) vcpus: Mutex<Vec<Arc<VcpuShared>>>,
    pub(crate) log: Arc<EventLog>,
    pub(crate) exit_hypercall: AtomicU64,
    /// The ASID, readable without the SEV lock (the guest's memory path).
    pub(crate) asid: AtomicU32,
    pub(crate) guest_req: Mutex<()>,
    /// The SEV-ES AP jump table address (`kvm_sev_info.ap_jump_table`, NAE 0x8000_0005).
    pub(crate) ap_jump_table: AtomicU64,
    /// The guest's TSC: per VM, so RDTSC answers depend only on this VM's history.
    tsc: GuestTsc,
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
                ap_jump_table: AtomicU64::new(0),
                tsc: GuestTsc::new(),
            }),
        })
    }
}

impl VmInner {
    pub(crate) fn snp(&self) -> bool {
        self.vm_type == VmType::SNP
    }

    /// RDTSC: the guest's TSC, advanced for the next read.
    pub(crate) fn read_tsc(&self) -> u64 {
        self.tsc.read()
    }

    /// Whether the guest enabled the MAP_GPA_RANGE hypercall exit.
    pub(crate) fn map_gpa_range_enabled(&self) -> bool {
        self.exit_hypercall.load(Ordering::Relaxed) & (1 << KVM_HC_MAP_GPA_RANGE) != 0
    }

    /// Read guest memory through the shared (VMM) mapping, whatever the attribute
    /// (`kvm_read_guest`).
    pub(crate) fn read_shared(&self, gpa: Gpa, buf: &mut [u8]) -> KvmResult {
        let hva = self.gpa_to_hva(gpa, buf.len() as u64)?;
        self.host.user.read(hva, buf)
    }

    /// Write guest memory through the shared mapping (`kvm_write_guest`).
    pub(crate) fn write_shared(&self, gpa: Gpa, data: &[u8]) -> KvmResult {
        let hva = self.gpa_to_hva(gpa, data.len() as u64)?;
        self.host.user.write(hva, data)
    }

    fn gpa_to_hva(&self, gpa: Gpa, len: u64) -> KvmResult<Hva> {
        let gpa = gpa.0;
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
            if let Some(b) = old.gmem {
                m.punch_hole(&self.inner.host, b.fd, b.offset, old.npages * PAGE_SIZE_4K)?;
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
        let gfns = AddrRange {
            start: Gfn(a.address / PAGE_SIZE_4K),
            end: Gfn((a.address + a.size) / PAGE_SIZE_4K),
        };
        let mut m = self.inner.mem.lock();
        if private {
            m.private.insert(gfns);
        } else {
            m.private.remove(gfns);
        }
        drop(m);
        self.inner.log.push(Event::SetAttributes {
            gpa: a.address,
            size: a.size,
            private,
        });
        Ok(())
    }

    /// What QEMU's `kvm_convert_memory` does: set the attribute, then discard the
    /// backing that is no longer used (punch the gmem hole when going shared, drop the
    /// VMM pages when going private). With [`Prefault::Now`], private pages are
    /// prepared (RMPUPDATE to guest-owned) at once (KVM_PRE_FAULT_MEMORY).
    pub fn convert_memory(
        &self,
        gpa: Gpa,
        size: u64,
        to: MemAttr,
        prefault: Prefault,
    ) -> KvmResult {
        let private = to == MemAttr::Private;
        let gpa = gpa.0;
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
                if prefault == Prefault::Now {
                    self.pre_fault_memory(Gfn(gfn).gpa(), n * PAGE_SIZE_4K)?;
                }
            } else if let Some(b) = s.gmem {
                let (fd, off) = (b.fd, b.offset + (gfn - s.base_gfn) * PAGE_SIZE_4K);
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
    pub fn pre_fault_memory(&self, gpa: Gpa, size: u64) -> KvmResult {
        let gpa = gpa.0;
        let (pending, asid) = {
            let s = self.inner.sev.lock();
            (s.snp_launch_pending(), s.asid())
        };
        if pending {
            return einval("pre-faulting an SNP VM before SNP_LAUNCH_FINISH");
        }
        let mut m = self.inner.mem.lock();
        let mut g = gpa / PAGE_SIZE_4K;
        let end = (gpa + size).div_ceil(PAGE_SIZE_4K);
        while g < end {
            let private = m.private.contains(Gfn(g));
            match m.translate(&self.inner.host, asid, Gpa(g * PAGE_SIZE_4K), private) {
                Ok(Mapping::Private {
                    npt: PageSize::Size2M,
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
    /// (`prefault`: when to prepare private pages) and set `ret` (0 or EINVAL). Returns
    /// whether `exit` was such an exit.
    pub fn handle_map_gpa_range(&self, exit: &mut VcpuExit, prefault: Prefault) -> bool {
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
                let to = if attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0 {
                    MemAttr::Private
                } else {
                    MemAttr::Shared
                };
                match self.convert_memory(Gpa(gpa), sz, to, prefault) {
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

    /// KVM_GET_DIRTY_LOG: the slot's dirty bitmap (one bit per 4 KiB page, LSB
    /// first, u64 words, `ALIGN(npages, 64) / 8` bytes) written to `log.dirty_bitmap`
    /// in VMM memory, and cleared (`kvm_get_dirty_log_protect`). A bad slot id is
    /// `-EINVAL`, a missing slot or one without `KVM_MEM_LOG_DIRTY_PAGES` `-ENOENT`,
    /// an unmapped bitmap `-EFAULT` (the bits are lost then, as KVM has cleared them
    /// before `copy_to_user`).
    pub fn get_dirty_log(&self, log: &KvmDirtyLog) -> KvmResult {
        let words = self.inner.mem.lock().take_dirty_log(log.slot)?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.inner.host.user.write(Hva(log.dirty_bitmap), &bytes)
    }

    /// Mark the guest pages behind `[uaddr, uaddr+len)` dirty (KVM's own writes into
    /// guest memory through pinned user pages).
    pub(crate) fn mark_dirty_uaddr(&self, uaddr: u64, len: u64) {
        self.inner.mem.lock().mark_dirty_uaddr(uaddr, len);
    }

    /// The memslots.
    pub fn memslots(&self) -> Vec<Memslot> {
        self.inner.mem.lock().slots().cloned().collect()
    }

    /// The page backing `gpa` for the guest (by its PRIVATE attribute), without
    /// preparing anything; `None` if it has no backing page yet.
    pub fn lookup(&self, gpa: Gpa) -> Option<Backing> {
        let mut m = self.inner.mem.lock();
        let gfn = gpa.0 / PAGE_SIZE_4K;
        let private = m.private.contains(Gfn(gfn));
        let s = m.slot_of(gfn)?.clone();
        if private {
            let spa = m.gmem_spa(&self.inner.host, gfn).ok()?;
            Some(Backing::Private(spa))
        } else {
            drop(m);
            let hva = Hva(s.uaddr + (gfn - s.base_gfn) * PAGE_SIZE_4K);
            self.inner
                .host
                .user
                .page_spa_if_present(hva)
                .map(Backing::Shared)
        }
    }

    /// For each GFN in `gfns`: its PRIVATE attribute, and the RMP entry (with its size)
    /// of its private backing page if one exists. Nothing is allocated.
    pub fn rmp_snapshot(&self, gfns: AddrRange<Gfn>) -> Vec<GfnState> {
        let m = self.inner.mem.lock();
        (gfns.start.0..gfns.end.0)
            .map(|g| {
                let rmp = m
                    .gmem_peek(g)
                    .and_then(|spa| self.inner.host.soc.rmp_lookup(spa).ok())
                    .map(|(entry, size)| RmpState { entry, size });
                GfnState {
                    gfn: Gfn(g),
                    private: m.private.contains(Gfn(g)),
                    rmp,
                }
            })
            .collect()
    }

    /// Whether `gfn` has the PRIVATE attribute.
    pub fn is_private(&self, gfn: Gfn) -> bool {
        self.inner.mem.lock().private.contains(gfn)
    }

    /// KVM_CREATE_VCPU.
    pub fn create_vcpu(&self, id: u32) -> KvmResult<SoftVcpu> {
        SoftVcpu::create(self.inner.clone(), id)
    }
}

impl Drop for VmInner {
    fn drop(&mut self) {
        let h = self.host.clone();
        let mut sev = std::mem::take(&mut *self.sev.lock());
        // Legacy SEV / SEV-ES (`sev_vm_destroy`): DEACTIVATE + DECOMMISSION of the
        // context this VM owns (not a mirror's, not one moved away); the ASID goes to
        // the reclaim set below.
        if sev.owns_asid() {
            let handle = sev.take_handle();
            crate::sev::unbind_asid(&h, &self.log, sev.asid(), handle);
        }
        // VMSA pages back to the hypervisor.
        for v in self.vcpus.lock().iter() {
            let spa = v.state().vmsa_spa();
            if h.psp.reclaim_page(spa, PageSize::Size4K).is_ok() {
                h.alloc.free_4k(spa);
            }
        }
        let snp = sev
            .snp_mut()
            .map(|s| (s.take_context(), s.guest_request_pages()));
        if let Some((Some(gctx), _)) = snp {
            let mut c = SnpPaddr { paddr: gctx.0 };
            if h.psp.issue(FwCmd::SNP_DECOMMISSION, &mut c).is_ok()
                && h.psp.reclaim_page(gctx, PageSize::Size4K).is_ok()
            {
                h.alloc.free_4k(gctx);
            }
        }
        self.mem.lock().release_all(&h);
        if let Some((_, pages)) = snp {
            h.alloc.free_4k(pages.request);
            if h.psp.reclaim_page(pages.response, PageSize::Size4K).is_ok() {
                h.alloc.free_4k(pages.response);
            }
        }
        if sev.owns_asid() {
            h.asid_free(sev.asid());
        }
    }
}
