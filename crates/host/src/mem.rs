//! Guest memory as KVM models it for SNP (host-interfaces.md §1.8): memslots whose
//! shared backing is VMM memory and whose private backing is a guest_memfd, the
//! per-GFN PRIVATE attribute, the nested translation that picks one of the two (never
//! both: the attribute decides), and the gmem hooks — *prepare* (first private use:
//! RMPUPDATE to guest-owned, 2 MiB when the whole aligned range allows it) and
//! *invalidate* (hole punch / teardown: back to hypervisor-owned, PSMASH first when only
//! part of a 2 MiB entry goes, SNP_PAGE_RECLAIM first for immutable pages).

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::{Event, EventLog};
use crate::platform::SoftHost;
use crate::psp::rmp_ok;
use crate::usermem::Hva;
use softsev_abi::kvm::{KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KvmUserspaceMemoryRegion2};
use softsev_abi::rmp::{RmpStatus, RmpUpdateInput};
use softsev_abi::{AddrRange, Gfn, Gpa, IntervalSet, PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize, Spa};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const PAGES_2M: u64 = 512;

/// `KVM_USER_MEM_SLOTS` on x86 (`KVM_MEM_SLOTS_NUM` = `SHRT_MAX` less the 3
/// internal slots): the slot ids KVM_GET_DIRTY_LOG accepts.
const KVM_USER_MEM_SLOTS: u32 = 32764;
/// `KVM_ADDRESS_SPACE_NUM` on x86 (normal and SMM).
const KVM_ADDRESS_SPACE_NUM: u32 = 2;

/// A memslot.
#[derive(Debug, Clone)]
pub struct Memslot {
    /// Slot id.
    pub slot: u32,
    /// First GFN.
    pub base_gfn: u64,
    /// Pages.
    pub npages: u64,
    /// Shared backing.
    pub uaddr: u64,
    /// `KVM_MEM_*` flags (LOG_DIRTY_PAGES, GUEST_MEMFD).
    pub flags: u32,
    /// The guest_memfd range backing the slot's private pages (private-capable slots).
    pub gmem: Option<GmemBinding>,
}

/// Where a memslot's private pages live: a guest_memfd and the offset of the slot's
/// first page in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GmemBinding {
    /// The guest_memfd.
    pub fd: u32,
    /// Byte offset of the slot's first page in the file.
    pub offset: u64,
}

impl Memslot {
    fn contains(&self, gfn: u64) -> bool {
        gfn >= self.base_gfn && gfn - self.base_gfn < self.npages
    }
    /// Whether `uaddr` lies in the slot's shared backing; the GFN it maps.
    fn gfn_of_uaddr(&self, uaddr: u64) -> Option<u64> {
        let off = uaddr.checked_sub(self.uaddr)?;
        (off / PAGE_SIZE_4K < self.npages).then_some(self.base_gfn + off / PAGE_SIZE_4K)
    }
    fn gmem_offset(&self, gfn: u64) -> Option<(u32, u64)> {
        let b = self.gmem?;
        Some((b.fd, b.offset + (gfn - self.base_gfn) * PAGE_SIZE_4K))
    }
}

#[derive(Debug)]
struct Chunk {
    spa: Spa,
    populated: [u64; 8],
}

impl Chunk {
    fn is_set(&self, i: u64) -> bool {
        self.populated[(i / 64) as usize % 8] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: u64, v: bool) {
        let w = &mut self.populated[(i / 64) as usize % 8];
        if v {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
    fn empty(&self) -> bool {
        self.populated.iter().all(|w| *w == 0)
    }
}

/// A guest_memfd: private memory of fixed size, in 2 MiB chunks of contiguous SoC
/// memory allocated on first use.
#[derive(Debug)]
struct GmemFile {
    size: u64,
    chunks: HashMap<u64, Chunk>,
    bound: Vec<(u64, u64, u32)>,
}

/// Result of a nested translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Private (gmem) page, with the NPT mapping size.
    Private {
        /// System address of the GPA (same page offset).
        spa: Spa,
        /// NPT mapping size.
        npt: PageSize,
    },
    /// Shared page (VMM memory).
    Shared {
        /// System address of the GPA.
        spa: Spa,
    },
}

/// Why a translation did not produce a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TranslateError {
    /// The access's private-ness disagrees with the attribute: KVM_EXIT_MEMORY_FAULT.
    MemoryFault {
        /// GPA (page aligned).
        gpa: Gpa,
        /// The access was private.
        private: bool,
    },
    /// No memslot: emulated MMIO.
    NoSlot(Gpa),
    /// The private page cannot be given to the guest (owned by someone else).
    Refused(String),
}

/// The memory state of one VM.
#[derive(Debug, Default)]
pub(crate) struct MemState {
    slots: BTreeMap<u32, Memslot>,
    gmem: HashMap<u32, GmemFile>,
    /// GFNs with the PRIVATE attribute.
    pub(crate) private: IntervalSet<Gfn>,
    next_fd: u32,
    log: Arc<EventLog>,
    /// The dirty bitmaps of the slots with `KVM_MEM_LOG_DIRTY_PAGES` (one bit per
    /// page, `memslot->dirty_bitmap`).
    dirty: HashMap<u32, Vec<u64>>,
}

impl MemState {
    /// Empty memory whose RMP work is logged to `log`.
    pub(crate) fn new(log: Arc<EventLog>) -> Self {
        Self {
            log,
            ..Default::default()
        }
    }

    /// All memslots.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Memslot> {
        self.slots.values()
    }

    /// The slot holding `gfn`.
    pub(crate) fn slot_of(&self, gfn: u64) -> Option<&Memslot> {
        self.slots.values().find(|s| s.contains(gfn))
    }

    /// KVM_CREATE_GUEST_MEMFD.
    pub(crate) fn create_gmem(&mut self, size: u64, flags: u64) -> KvmResult<u32> {
        if flags != 0 {
            return einval(format!("guest_memfd flags {flags:#x}"));
        }
        if size == 0 || !size.is_multiple_of(PAGE_SIZE_4K) {
            return einval(format!("guest_memfd size {size:#x}"));
        }
        self.next_fd += 1;
        let fd = self.next_fd + 100;
        self.gmem.insert(
            fd,
            GmemFile {
                size,
                chunks: HashMap::new(),
                bound: Vec::new(),
            },
        );
        Ok(fd)
    }

    /// KVM_SET_USER_MEMORY_REGION2 (create, delete, or change only the flags of an
    /// existing slot; moving/resizing is refused). As `check_memory_region_flags`,
    /// dirty logging is not accepted on a guest_memfd slot ("dirty logging private
    /// memory is not currently supported"); as `__kvm_set_memory_region`, a slot
    /// re-registered with the same address, size and backing but other flags is a
    /// KVM_MR_FLAGS_ONLY change (LOG_DIRTY_PAGES on allocates a clear bitmap, off frees
    /// it), toggling GUEST_MEMFD is `-EINVAL`.
    pub(crate) fn set_region(
        &mut self,
        r: &KvmUserspaceMemoryRegion2,
        user_ok: impl Fn(u64, u64) -> bool,
    ) -> KvmResult<Option<Memslot>> {
        if r.flags & !(KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES) != 0 {
            return einval(format!("memslot flags {:#x}", r.flags));
        }
        if r.flags & KVM_MEM_GUEST_MEMFD != 0 && r.flags & KVM_MEM_LOG_DIRTY_PAGES != 0 {
            return einval("dirty logging of a guest_memfd memslot is not supported");
        }
        if r.memory_size == 0 {
            self.dirty.remove(&r.slot);
            let old = self.slots.remove(&r.slot);
            if let Some(s) = &old
                && let Some(b) = s.gmem
                && let Some(f) = self.gmem.get_mut(&b.fd)
            {
                f.bound.retain(|b| b.2 != r.slot);
            }
            return Ok(old);
        }
        if !r.guest_phys_addr.is_multiple_of(PAGE_SIZE_4K)
            || !r.memory_size.is_multiple_of(PAGE_SIZE_4K)
            || !r.userspace_addr.is_multiple_of(PAGE_SIZE_4K)
        {
            return einval("memslot address, size or userspace address not page aligned");
        }
        if let Some(old) = self.slots.get_mut(&r.slot) {
            if r.userspace_addr != old.uaddr
                || r.memory_size / PAGE_SIZE_4K != old.npages
                || (r.flags ^ old.flags) & KVM_MEM_GUEST_MEMFD != 0
            {
                return einval(format!(
                    "memslot {}: address, size or guest_memfd changed",
                    r.slot
                ));
            }
            if r.guest_phys_addr / PAGE_SIZE_4K != old.base_gfn {
                return einval(format!(
                    "memslot {} exists (moving is not supported)",
                    r.slot
                ));
            }
            let was = old.flags & KVM_MEM_LOG_DIRTY_PAGES != 0;
            let now = r.flags & KVM_MEM_LOG_DIRTY_PAGES != 0;
            old.flags = r.flags;
            let words = old.npages.div_ceil(64) as usize;
            match (was, now) {
                (false, true) => {
                    self.dirty.insert(r.slot, vec![0; words]);
                }
                (true, false) => {
                    self.dirty.remove(&r.slot);
                }
                _ => {}
            }
            return Ok(None);
        }
        let base_gfn = r.guest_phys_addr / PAGE_SIZE_4K;
        let npages = r.memory_size / PAGE_SIZE_4K;
        let end = base_gfn
            .checked_add(npages)
            .ok_or_else(|| KvmError::inval("memslot wraps"))?;
        if self
            .slots
            .values()
            .any(|s| s.base_gfn < end && base_gfn < s.base_gfn + s.npages)
        {
            return Err(KvmError::new(Errno::EEXIST, "memslot overlaps another"));
        }
        if !user_ok(r.userspace_addr, r.memory_size) {
            return Err(KvmError::new(
                Errno::EFAULT,
                format!("userspace_addr {:#x} is not mapped", r.userspace_addr),
            ));
        }
        let gmem = if r.flags & KVM_MEM_GUEST_MEMFD != 0 {
            let off = r.guest_memfd_offset;
            let f = self.gmem.get_mut(&r.guest_memfd).ok_or_else(|| {
                KvmError::new(Errno::EBADF, format!("guest_memfd {}", r.guest_memfd))
            })?;
            if !off.is_multiple_of(PAGE_SIZE_4K)
                || off.checked_add(r.memory_size).is_none_or(|e| e > f.size)
            {
                return einval(format!(
                    "guest_memfd range {off:#x}+{:#x} outside the file",
                    r.memory_size
                ));
            }
            if f.bound
                .iter()
                .any(|(o, l, _)| *o < off + r.memory_size && off < o + l)
            {
                return Err(KvmError::new(
                    Errno::EEXIST,
                    "guest_memfd range already bound",
                ));
            }
            f.bound.push((off, r.memory_size, r.slot));
            Some(GmemBinding {
                fd: r.guest_memfd,
                offset: off,
            })
        } else {
            None
        };
        let s = Memslot {
            slot: r.slot,
            base_gfn,
            npages,
            uaddr: r.userspace_addr,
            flags: r.flags,
            gmem,
        };
        if r.flags & KVM_MEM_LOG_DIRTY_PAGES != 0 {
            self.dirty
                .insert(r.slot, vec![0; npages.div_ceil(64) as usize]);
        }
        self.slots.insert(r.slot, s);
        Ok(None)
    }

    /// `mark_page_dirty`: set `gfn`'s bit if its slot logs dirty pages.
    pub(crate) fn mark_dirty(&mut self, gfn: u64) {
        if self.dirty.is_empty() {
            return;
        }
        let Some(s) = self.slots.values().find(|s| s.contains(gfn)) else {
            return;
        };
        if let Some(bm) = self.dirty.get_mut(&s.slot) {
            let i = gfn - s.base_gfn;
            if let Some(w) = bm.get_mut((i / 64) as usize) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// Mark dirty the pages of `[uaddr, uaddr+len)` that back a memslot (KVM writing
    /// guest memory through a pinned user page: RECEIVE_UPDATE_DATA, DBG_ENCRYPT,
    /// LAUNCH_SECRET).
    pub(crate) fn mark_dirty_uaddr(&mut self, uaddr: u64, len: u64) {
        if self.dirty.is_empty() || len == 0 {
            return;
        }
        let first = uaddr & !(PAGE_SIZE_4K - 1);
        let last = uaddr.saturating_add(len - 1) & !(PAGE_SIZE_4K - 1);
        let mut page = first;
        while page <= last {
            let gfn = self.slots.values().find_map(|s| s.gfn_of_uaddr(page));
            if let Some(g) = gfn {
                self.mark_dirty(g);
            }
            match page.checked_add(PAGE_SIZE_4K) {
                Some(p) => page = p,
                None => break,
            }
        }
    }

    /// KVM_GET_DIRTY_LOG's bitmap of `slot` (`kvm_get_dirty_log_protect` without
    /// manual protection): read and cleared. A slot id or address space out of range is
    /// `-EINVAL`; no such slot, or one without `KVM_MEM_LOG_DIRTY_PAGES`, `-ENOENT`.
    pub(crate) fn take_dirty_log(&mut self, slot: u32) -> KvmResult<Vec<u64>> {
        let (as_id, id) = (slot >> 16, slot & 0xFFFF);
        if as_id >= KVM_ADDRESS_SPACE_NUM || id >= KVM_USER_MEM_SLOTS {
            return einval(format!("dirty log of slot {slot:#x}"));
        }
        // softsev has one address space: ids in address space 1 (SMM) do not exist.
        let bm = (as_id == 0)
            .then(|| self.dirty.get_mut(&id))
            .flatten()
            .ok_or_else(|| {
                KvmError::new(
                    Errno::ENOENT,
                    format!("memslot {slot:#x} does not exist or does not log dirty pages"),
                )
            })?;
        let n = bm.len();
        Ok(std::mem::replace(bm, vec![0; n]))
    }

    /// The SPA of gmem page `off` of `fd`, allocating its 2 MiB chunk if needed.
    fn gmem_page(&mut self, h: &SoftHost, fd: u32, off: u64) -> Result<(Spa, u64), TranslateError> {
        let f = self
            .gmem
            .get_mut(&fd)
            .ok_or_else(|| TranslateError::Refused(format!("guest_memfd {fd} is gone")))?;
        if off >= f.size {
            return Err(TranslateError::Refused(format!(
                "offset {off:#x} beyond guest_memfd"
            )));
        }
        let ci = off / PAGE_SIZE_2M;
        let chunk = match f.chunks.get(&ci) {
            Some(c) => c.spa,
            None => {
                let spa = h
                    .alloc
                    .alloc_2m()
                    .ok_or_else(|| TranslateError::Refused("out of physical memory".into()))?;
                f.chunks.insert(
                    ci,
                    Chunk {
                        spa,
                        populated: [0; 8],
                    },
                );
                spa
            }
        };
        Ok((Spa(chunk.0 + off % PAGE_SIZE_2M), ci))
    }

    fn mark_populated(&mut self, fd: u32, ci: u64, page: Option<u64>) {
        if let Some(c) = self.gmem.get_mut(&fd).and_then(|f| f.chunks.get_mut(&ci)) {
            match page {
                Some(i) => c.set(i, true),
                None => c.populated = [u64::MAX; 8],
            }
        }
    }

    /// Translate `gpa` for an access of private-ness `private` by the guest of `asid`,
    /// preparing (RMPUPDATE to guest-owned) the private page on first use.
    pub(crate) fn translate(
        &mut self,
        h: &SoftHost,
        asid: u32,
        gpa: Gpa,
        private: bool,
    ) -> Result<Mapping, TranslateError> {
        let gfn = gpa.0 / PAGE_SIZE_4K;
        let page_gpa = Gpa(gpa.0 & !(PAGE_SIZE_4K - 1));
        let slot = self
            .slot_of(gfn)
            .cloned()
            .ok_or(TranslateError::NoSlot(gpa))?;
        let attr_private = self.private.contains(Gfn(gfn));
        if private != attr_private || (private && slot.gmem.is_none()) {
            return Err(TranslateError::MemoryFault {
                gpa: page_gpa,
                private,
            });
        }
        if !private {
            let hva = Hva(slot.uaddr + (gfn - slot.base_gfn) * PAGE_SIZE_4K);
            let spa = h
                .user
                .page_spa(hva)
                .map_err(|e| TranslateError::Refused(e.to_string()))?;
            return Ok(Mapping::Shared {
                spa: Spa(spa.0 + gpa.page_offset()),
            });
        }
        let (fd, off) = slot
            .gmem_offset(gfn)
            .ok_or_else(|| TranslateError::Refused("slot has no guest_memfd".into()))?;
        let (spa, ci) = self.gmem_page(h, fd, off)?;
        let g2 = gfn & !(PAGE_SIZE_2M / PAGE_SIZE_4K - 1);
        let all_private = self.private.contains_all(AddrRange {
            start: Gfn(g2),
            end: Gfn(g2 + PAGES_2M),
        });
        let (entry, size) = h
            .soc
            .rmp_lookup(spa)
            .map_err(|e| TranslateError::Refused(e.to_string()))?;
        let mine = |e: &softsev_abi::rmp::RmpEntry, size: PageSize| {
            let expect = match size {
                PageSize::Size2M => g2 * PAGE_SIZE_4K,
                PageSize::Size4K => page_gpa.0,
            };
            e.assigned() && e.asid() == asid && e.gpa() == expect
        };
        let npt = if entry.assigned() {
            if !mine(&entry, size) {
                return Err(TranslateError::Refused(format!(
                    "private page {spa} for GPA {page_gpa} is owned by ASID {} at GPA {:#x}",
                    entry.asid(),
                    entry.gpa()
                )));
            }
            if size == PageSize::Size2M && !all_private {
                let head = Spa(spa.0 & !(PAGE_SIZE_2M - 1));
                let st = h.soc.psmash(head);
                self.log.push(Event::Psmash {
                    spa: head.0,
                    status: st.0,
                });
                PageSize::Size4K
            } else {
                size
            }
        } else {
            // gmem prepare.
            let can_2m = all_private
                && g2 >= slot.base_gfn
                && g2 + PAGES_2M <= slot.base_gfn + slot.npages
                && slot
                    .gmem_offset(g2)
                    .is_some_and(|(_, o)| o.is_multiple_of(PAGE_SIZE_2M));
            let mut done = None;
            if can_2m {
                let head = Spa(spa.0 & !(PAGE_SIZE_2M - 1));
                let st = h.soc.rmpupdate(
                    head,
                    &RmpUpdateInput {
                        gpa: g2 * PAGE_SIZE_4K,
                        assigned: 1,
                        pagesize: 1,
                        immutable: 0,
                        asid,
                        ..Default::default()
                    },
                );
                if st.is_success() {
                    self.mark_populated(fd, ci, None);
                    self.log.push(Event::GmemPrepare {
                        gpa: g2 * PAGE_SIZE_4K,
                        spa: head.0,
                        huge: true,
                    });
                    done = Some(PageSize::Size2M);
                }
            }
            match done {
                Some(s) => s,
                None => {
                    let st = h.soc.rmpupdate(
                        spa,
                        &RmpUpdateInput {
                            gpa: page_gpa.0,
                            assigned: 1,
                            asid,
                            ..Default::default()
                        },
                    );
                    if !st.is_success() {
                        return Err(TranslateError::Refused(format!(
                            "RMPUPDATE of {spa} to private failed: {st:?}"
                        )));
                    }
                    self.mark_populated(fd, ci, Some((off % PAGE_SIZE_2M) / PAGE_SIZE_4K));
                    self.log.push(Event::GmemPrepare {
                        gpa: page_gpa.0,
                        spa: spa.0,
                        huge: false,
                    });
                    PageSize::Size4K
                }
            }
        };
        Ok(Mapping::Private {
            spa: Spa(spa.0 + gpa.page_offset()),
            npt,
        })
    }

    /// The gmem page backing `gfn` if its chunk exists (no allocation, no change).
    pub(crate) fn gmem_peek(&self, gfn: u64) -> Option<Spa> {
        let s = self.slot_of(gfn)?;
        let (fd, off) = s.gmem_offset(gfn)?;
        let c = self.gmem.get(&fd)?.chunks.get(&(off / PAGE_SIZE_2M))?;
        Some(Spa(c.spa.0 + off % PAGE_SIZE_2M))
    }

    /// The gmem page backing `gfn` (allocated, marked populated) without preparing it.
    pub(crate) fn gmem_spa(&mut self, h: &SoftHost, gfn: u64) -> KvmResult<Spa> {
        let slot = self
            .slot_of(gfn)
            .cloned()
            .ok_or_else(|| KvmError::inval(format!("no memslot for GFN {gfn:#x}")))?;
        let (fd, off) = slot.gmem_offset(gfn).ok_or_else(|| {
            KvmError::inval(format!("memslot {} is not private-capable", slot.slot))
        })?;
        let (spa, ci) = self
            .gmem_page(h, fd, off)
            .map_err(|e| KvmError::new(Errno::ENOMEM, format!("{e:?}")))?;
        self.mark_populated(fd, ci, Some((off % PAGE_SIZE_2M) / PAGE_SIZE_4K));
        Ok(spa)
    }

    /// Punch a hole in gmem `fd` over `[off, off+len)`: every populated page goes
    /// back to the hypervisor (invalidate hook), chunks left empty are freed.
    pub(crate) fn punch_hole(&mut self, h: &SoftHost, fd: u32, off: u64, len: u64) -> KvmResult {
        let f = self
            .gmem
            .get_mut(&fd)
            .ok_or_else(|| KvmError::new(Errno::EBADF, format!("guest_memfd {fd}")))?;
        if !off.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
            return einval("hole not page aligned");
        }
        let end = off.saturating_add(len).min(f.size);
        let mut ci = off / PAGE_SIZE_2M;
        let mut first_err = None;
        while ci * PAGE_SIZE_2M < end {
            let c_start = ci * PAGE_SIZE_2M;
            let lo = off.max(c_start) - c_start;
            let hi = end.min(c_start + PAGE_SIZE_2M) - c_start;
            if let Some(c) = f.chunks.get_mut(&ci) {
                if let Err(e) =
                    invalidate_chunk(h, &self.log, c, lo / PAGE_SIZE_4K, hi / PAGE_SIZE_4K)
                {
                    first_err.get_or_insert(e);
                }
                if c.empty() {
                    let spa = c.spa;
                    f.chunks.remove(&ci);
                    h.alloc.free_2m(spa);
                }
            }
            ci += 1;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Release everything (VM teardown): all gmem pages back to the hypervisor.
    pub(crate) fn release_all(&mut self, h: &SoftHost) {
        let fds: Vec<(u32, u64)> = self.gmem.iter().map(|(fd, f)| (*fd, f.size)).collect();
        for (fd, size) in fds {
            let _ = self.punch_hole(h, fd, 0, size);
        }
    }
}

fn invalidate_chunk(h: &SoftHost, log: &EventLog, c: &mut Chunk, lo: u64, hi: u64) -> KvmResult {
    let head = c.spa;
    let (e, size) = h
        .soc
        .rmp_lookup(head)
        .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
    let mut res = Ok(());
    if e.assigned() && size == PageSize::Size2M {
        if lo == 0 && hi == PAGES_2M {
            let reclaimed = e.immutable();
            res = h.psp.reclaim_page(head, PageSize::Size2M);
            log.push(Event::GmemInvalidate {
                spa: head.0,
                huge: true,
                reclaimed,
            });
            c.populated = [0; 8];
            return res;
        }
        let st = h.soc.psmash(head);
        log.push(Event::Psmash {
            spa: head.0,
            status: st.0,
        });
        if st != RmpStatus::SUCCESS {
            return rmp_ok(st, head, "PSMASH");
        }
    }
    for i in lo..hi {
        if !c.is_set(i) {
            continue;
        }
        let spa = Spa(head.0 + i * PAGE_SIZE_4K);
        match h.soc.rmp_lookup(spa) {
            Ok((e, _)) if e.assigned() => {
                let reclaimed = e.immutable();
                let r = h.psp.reclaim_page(spa, PageSize::Size4K);
                log.push(Event::GmemInvalidate {
                    spa: spa.0,
                    huge: false,
                    reclaimed,
                });
                if r.is_err() && res.is_ok() {
                    res = r;
                }
            }
            _ => {}
        }
        c.set(i, false);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gfns(start: u64, end: u64) -> AddrRange<Gfn> {
        AddrRange {
            start: Gfn(start),
            end: Gfn(end),
        }
    }

    fn set(r: &mut IntervalSet<Gfn>, start: u64, end: u64, on: bool) {
        if on {
            r.insert(gfns(start, end));
        } else {
            r.remove(gfns(start, end));
        }
    }

    proptest! {
        /// The attribute set agrees with a per-GFN model after any sequence of
        /// set/clear operations, and stays merged (no empty or touching ranges).
        #[test]
        fn range_set_matches_a_bitmap(ops in proptest::collection::vec((0u64..200, 0u64..40, any::<bool>()), 0..60)) {
            let mut r = IntervalSet::<Gfn>::new();
            let mut model = [false; 256];
            for (start, len, on) in ops {
                set(&mut r, start, start + len, on);
                for m in model.iter_mut().skip(start as usize).take(len as usize) {
                    *m = on;
                }
                for (g, m) in model.iter().enumerate() {
                    prop_assert_eq!(r.contains(Gfn(g as u64)), *m, "GFN {}", g);
                }
                prop_assert_eq!(r.total(), model.iter().filter(|m| **m).count() as u64);
                let v: Vec<(u64, u64)> = r.ranges().iter().map(|x| (x.start.0, x.end.0)).collect();
                for w in v.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "ranges {:?} not merged", w);
                }
                prop_assert!(v.iter().all(|(a, b)| a < b));
                let (a, b) = (start, start + len);
                let all = (a..b).all(|g| model[g as usize]);
                prop_assert_eq!(r.contains_all(gfns(a, b)), all);
            }
        }
    }

    #[test]
    fn range_set() {
        let mut r = IntervalSet::<Gfn>::new();
        set(&mut r, 10, 20, true);
        set(&mut r, 20, 30, true);
        assert!(r.contains_all(gfns(10, 30)));
        assert_eq!(r.total(), 20);
        set(&mut r, 15, 16, false);
        assert!(!r.contains(Gfn(15)));
        assert!(r.contains(Gfn(14)) && r.contains(Gfn(16)));
        assert!(!r.contains_all(gfns(10, 30)));
        assert_eq!(r.total(), 19);
        set(&mut r, 0, 100, false);
        assert!(r.is_empty());
        set(&mut r, 5, 6, true);
        set(&mut r, 7, 8, true);
        set(&mut r, 6, 7, true);
        assert!(r.contains_all(gfns(5, 8)));
        assert_eq!(r.ranges().len(), 1);
    }
}
