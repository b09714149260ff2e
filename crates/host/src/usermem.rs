//! The VMM's ("userspace") address space: anonymous mappings at host virtual
//! addresses ([`Hva`]) backed lazily, page by page, by hypervisor-owned SoC pages.
//! Memslots point their shared backing here, KVM commands take user pointers into it.

use crate::alloc::PhysAlloc;
use crate::error::{Errno, KvmError, KvmResult};
use parking_lot::RwLock;
use softsev_abi::{PAGE_SIZE_4K, Spa};
use softsev_soc::Soc;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A host (VMM) virtual address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Hva(pub u64);

/// First address handed out by [`UserMemory::mmap`].
pub const USER_BASE: u64 = 0x7f00_0000_0000;

#[derive(Debug, Default)]
struct Mapping {
    len: u64,
    pages: HashMap<u64, Spa>,
}

#[derive(Debug, Default)]
struct State {
    maps: BTreeMap<u64, Mapping>,
    next: u64,
}

/// The VMM address space.
#[derive(Debug)]
pub struct UserMemory {
    soc: Arc<Soc>,
    alloc: Arc<PhysAlloc>,
    st: RwLock<State>,
}

impl UserMemory {
    pub(crate) fn new(soc: Arc<Soc>, alloc: Arc<PhysAlloc>) -> Self {
        Self {
            soc,
            alloc,
            st: RwLock::new(State {
                maps: BTreeMap::new(),
                next: USER_BASE,
            }),
        }
    }

    /// Map `len` bytes of zeroed anonymous memory (rounded up to 4 KiB); pages get
    /// physical memory on first touch.
    pub fn mmap(&self, len: u64) -> KvmResult<Hva> {
        let len = len
            .checked_next_multiple_of(PAGE_SIZE_4K)
            .filter(|l| *l > 0)
            .ok_or_else(|| KvmError::inval(format!("mmap length {len:#x}")))?;
        let mut st = self.st.write();
        let at = st.next;
        st.next = at
            .checked_add(len)
            .and_then(|e| e.checked_add(PAGE_SIZE_4K))
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "user address space exhausted"))?;
        st.maps.insert(
            at,
            Mapping {
                len,
                pages: HashMap::new(),
            },
        );
        Ok(Hva(at))
    }

    /// Unmap the mapping starting at `hva`, freeing its pages.
    pub fn munmap(&self, hva: Hva) -> KvmResult {
        let m = self
            .st
            .write()
            .maps
            .remove(&hva.0)
            .ok_or_else(|| KvmError::inval(format!("no mapping at {:#x}", hva.0)))?;
        for (_, spa) in m.pages {
            self.alloc.free_4k(spa);
        }
        Ok(())
    }

    /// Whether `[hva, hva+len)` lies inside one mapping.
    pub fn is_mapped(&self, hva: Hva, len: u64) -> bool {
        let st = self.st.read();
        Self::find(&st, hva.0, len).is_some()
    }

    fn find(st: &State, addr: u64, len: u64) -> Option<(u64, u64)> {
        let (base, m) = st.maps.range(..=addr).next_back()?;
        let end = addr.checked_add(len)?;
        (end <= base + m.len).then_some((*base, addr - base))
    }

    /// The SPA backing the page holding `hva` (allocated and zeroed on first touch).
    pub fn page_spa(&self, hva: Hva) -> KvmResult<Spa> {
        let page = hva.0 & !(PAGE_SIZE_4K - 1);
        {
            let st = self.st.read();
            let (base, off) = Self::find(&st, page, PAGE_SIZE_4K).ok_or_else(|| efault(hva))?;
            if let Some(spa) = st.maps.get(&base).and_then(|m| m.pages.get(&off)) {
                return Ok(*spa);
            }
        }
        let mut st = self.st.write();
        let (base, off) = Self::find(&st, page, PAGE_SIZE_4K).ok_or_else(|| efault(hva))?;
        let m = st.maps.get_mut(&base).ok_or_else(|| efault(hva))?;
        if let Some(spa) = m.pages.get(&off) {
            return Ok(*spa);
        }
        let spa = self
            .alloc
            .alloc_4k()
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "out of physical memory"))?;
        self.soc
            .host_write(spa, false, &[0u8; PAGE_SIZE_4K as usize])
            .map_err(|e| KvmError::new(Errno::EFAULT, format!("zeroing user page: {e}")))?;
        m.pages.insert(off, spa);
        Ok(spa)
    }

    /// The SPA backing `hva` if the page was touched.
    pub fn page_spa_if_present(&self, hva: Hva) -> Option<Spa> {
        let page = hva.0 & !(PAGE_SIZE_4K - 1);
        let st = self.st.read();
        let (base, off) = Self::find(&st, page, PAGE_SIZE_4K)?;
        st.maps.get(&base)?.pages.get(&off).copied()
    }

    /// mincore(2): for each 4 KiB page of `[hva, hva+len)`, whether it is resident
    /// (was touched and has a physical page). `hva` must be page aligned (`-EINVAL`);
    /// a range not inside one mapping is `-ENOMEM`, as mincore answers for unmapped
    /// memory. Costs the number of resident pages, not the range's size.
    pub fn mincore(&self, hva: Hva, len: u64) -> KvmResult<Vec<bool>> {
        if !hva.0.is_multiple_of(PAGE_SIZE_4K) {
            return Err(KvmError::inval(format!(
                "mincore of unaligned address {:#x}",
                hva.0
            )));
        }
        let pages = len.div_ceil(PAGE_SIZE_4K);
        let st = self.st.read();
        let (base, off) = Self::find(&st, hva.0, pages * PAGE_SIZE_4K).ok_or_else(|| {
            KvmError::new(
                Errno::ENOMEM,
                format!("mincore of unmapped range {:#x}+{len:#x}", hva.0),
            )
        })?;
        let n = usize::try_from(pages)
            .map_err(|_| KvmError::new(Errno::ENOMEM, "mincore vector too large"))?;
        let mut v = vec![false; n];
        if let Some(m) = st.maps.get(&base) {
            let end = off + pages * PAGE_SIZE_4K;
            if (m.pages.len() as u64) < pages {
                for o in m.pages.keys() {
                    if *o >= off && *o < end {
                        v[((o - off) / PAGE_SIZE_4K) as usize] = true;
                    }
                }
            } else {
                for (i, r) in v.iter_mut().enumerate() {
                    *r = m.pages.contains_key(&(off + i as u64 * PAGE_SIZE_4K));
                }
            }
        }
        Ok(v)
    }

    /// Discard the pages of `[hva, hva+len)` (MADV_DONTNEED / fallocate punch hole):
    /// they read as zero again.
    pub fn discard(&self, hva: Hva, len: u64) -> KvmResult {
        let mut st = self.st.write();
        let (base, off) = Self::find(&st, hva.0, len).ok_or_else(|| efault(hva))?;
        let m = st.maps.get_mut(&base).ok_or_else(|| efault(hva))?;
        let first = off & !(PAGE_SIZE_4K - 1);
        let mut freed = Vec::new();
        if len / PAGE_SIZE_4K > m.pages.len() as u64 {
            m.pages.retain(|o, spa| {
                let drop = *o >= first && *o < off + len;
                if drop {
                    freed.push(*spa);
                }
                !drop
            });
        } else {
            let mut o = first;
            while o < off + len {
                if let Some(spa) = m.pages.remove(&o) {
                    freed.push(spa);
                }
                o += PAGE_SIZE_4K;
            }
        }
        drop(st);
        for spa in freed {
            self.alloc.free_4k(spa);
        }
        Ok(())
    }

    /// Copy `data` to `hva` (copy_to_user); `-EFAULT` outside a mapping.
    pub fn write(&self, hva: Hva, data: &[u8]) -> KvmResult {
        let mut done = 0usize;
        while done < data.len() {
            let a = hva.0.checked_add(done as u64).ok_or_else(|| efault(hva))?;
            let in_page = (PAGE_SIZE_4K - (a & (PAGE_SIZE_4K - 1))) as usize;
            let n = in_page.min(data.len() - done);
            let spa = self.page_spa(Hva(a))?;
            let chunk = data.get(done..done + n).ok_or_else(|| efault(hva))?;
            self.soc
                .host_write(Spa(spa.0 + (a & (PAGE_SIZE_4K - 1))), false, chunk)
                .map_err(|e| KvmError::new(Errno::EFAULT, format!("user write: {e}")))?;
            done += n;
        }
        Ok(())
    }

    /// Copy from `hva` into `buf` (copy_from_user); `-EFAULT` outside a mapping.
    pub fn read(&self, hva: Hva, buf: &mut [u8]) -> KvmResult {
        let mut done = 0usize;
        let len = buf.len();
        while done < len {
            let a = hva.0.checked_add(done as u64).ok_or_else(|| efault(hva))?;
            let in_page = (PAGE_SIZE_4K - (a & (PAGE_SIZE_4K - 1))) as usize;
            let n = in_page.min(len - done);
            let chunk = buf.get_mut(done..done + n).ok_or_else(|| efault(hva))?;
            match self.page_spa_if_present(Hva(a)) {
                Some(spa) => self
                    .soc
                    .host_read(Spa(spa.0 + (a & (PAGE_SIZE_4K - 1))), false, chunk)
                    .map_err(|e| KvmError::new(Errno::EFAULT, format!("user read: {e}")))?,
                None => {
                    if !self.is_mapped(Hva(a), n as u64) {
                        return Err(efault(hva));
                    }
                    chunk.fill(0);
                }
            }
            done += n;
        }
        Ok(())
    }
}

fn efault(hva: Hva) -> KvmError {
    KvmError::new(Errno::EFAULT, format!("bad user address {:#x}", hva.0))
}
