//! Sparse backing store for DRAM and the RMP, in 2 MiB regions.
//!
//! Each 2 MiB region of physical memory has two lazily allocated parts, each behind
//! its own lock: the DRAM bytes (a 2 MiB anonymous mapping made on the first write —
//! the kernel fills pages with zeros on first touch, so only touched 4 KiB pages cost
//! RSS) and the 512 RMP entries of the region (in 1 KiB blocks of 64 entries, made on
//! the first RMP change in the block). Regions are grouped by 1 GiB; a group's slot array is created
//! the first time anything in it is touched, so a 1 TiB address space costs a few KiB
//! until used.
//!
//! Lock order: a region's RMP lock before its data lock; never two regions' locks of
//! the same kind at once.

use memmap2::MmapMut;
use parking_lot::RwLock;
use softsev_abi::rmp::RmpEntry;
use std::sync::OnceLock;

/// Bytes per region (one RMP 2 MiB page).
pub(crate) const REGION_SIZE: u64 = 0x20_0000;
/// 4 KiB pages per region.
pub(crate) const PAGES_PER_REGION: usize = 512;
/// Regions per group (1 GiB).
const REGIONS_PER_GROUP: u64 = 512;

/// RMP entries are allocated in blocks of this many (1 KiB), so a region with a few
/// assigned pages costs little.
const RMP_BLOCK: usize = 64;
const RMP_BLOCKS: usize = PAGES_PER_REGION / RMP_BLOCK;

/// The RMP entries of one 2 MiB region plus the model's "in use" bits (VMCB, VMSA or
/// AVIC page of a running vCPU; RMPUPDATE/PSMASH return FAIL_INUSE on them). Entries
/// live in lazily allocated blocks of 64; an absent block holds zero entries.
pub(crate) struct RmpRegion {
    blocks: [Option<Box<[RmpEntry; RMP_BLOCK]>>; RMP_BLOCKS],
    pub in_use: [u64; PAGES_PER_REGION / 64],
}

impl RmpRegion {
    pub(crate) fn new_boxed() -> Box<Self> {
        Box::new(Self {
            blocks: Default::default(),
            in_use: [0; PAGES_PER_REGION / 64],
        })
    }
    pub(crate) fn is_in_use(&self, idx: usize) -> bool {
        self.in_use
            .get(idx / 64)
            .is_some_and(|w| w & (1u64 << (idx % 64)) != 0)
    }
    pub(crate) fn set_in_use(&mut self, idx: usize, v: bool) {
        if let Some(w) = self.in_use.get_mut(idx / 64) {
            if v {
                *w |= 1u64 << (idx % 64);
            } else {
                *w &= !(1u64 << (idx % 64));
            }
        }
    }
    /// The entry of 4 KiB page `idx` (0..512) of the region.
    pub(crate) fn entry(&self, idx: usize) -> RmpEntry {
        self.blocks
            .get(idx / RMP_BLOCK)
            .and_then(|b| b.as_ref())
            .and_then(|b| b.get(idx % RMP_BLOCK))
            .copied()
            .unwrap_or_default()
    }
    /// Mutable access to entry `idx`, allocating its block; `None` if `idx` ≥ 512.
    pub(crate) fn entry_mut(&mut self, idx: usize) -> Option<&mut RmpEntry> {
        self.blocks
            .get_mut(idx / RMP_BLOCK)?
            .get_or_insert_with(|| Box::new([RmpEntry::default(); RMP_BLOCK]))
            .get_mut(idx % RMP_BLOCK)
    }
    /// Store entry `idx`; storing a zero entry into an absent block allocates nothing.
    pub(crate) fn set_entry(&mut self, idx: usize, e: RmpEntry) {
        let absent = self
            .blocks
            .get(idx / RMP_BLOCK)
            .is_some_and(|b| b.is_none());
        if absent && e == RmpEntry::default() {
            return;
        }
        if let Some(slot) = self.entry_mut(idx) {
            *slot = e;
        }
    }
    /// Indices and entries of every assigned entry of the region.
    pub(crate) fn assigned(&self) -> impl Iterator<Item = (usize, RmpEntry)> + '_ {
        self.blocks.iter().enumerate().flat_map(|(bi, b)| {
            b.iter().flat_map(move |b| {
                b.iter()
                    .enumerate()
                    .filter(|(_, e)| e.assigned())
                    .map(move |(i, e)| (bi * RMP_BLOCK + i, *e))
            })
        })
    }
}

/// One 2 MiB region.
#[derive(Default)]
pub(crate) struct Region {
    pub rmp: RwLock<Option<Box<RmpRegion>>>,
    pub data: RwLock<Option<Chunk>>,
}

/// The DRAM of one region: an anonymous private mapping (lazily zero-filled by the
/// kernel, independent of the allocator's thresholds), or heap memory if mapping fails.
pub(crate) enum Chunk {
    Map(MmapMut),
    Heap(Box<[u8]>),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Map(m) => m,
            Chunk::Heap(h) => h,
        }
    }
}

impl std::ops::DerefMut for Chunk {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Chunk::Map(m) => m,
            Chunk::Heap(h) => h,
        }
    }
}

/// Allocate the zeroed DRAM of one region; `huge` asks for transparent huge pages
/// (faster first touch, but a whole 2 MiB of RSS per touched region).
pub(crate) fn new_chunk(huge: bool) -> Chunk {
    match MmapMut::map_anon(REGION_SIZE as usize) {
        Ok(m) => {
            if huge {
                #[cfg(target_os = "linux")]
                let _ = m.advise(memmap2::Advice::HugePage);
            }
            Chunk::Map(m)
        }
        Err(_) => Chunk::Heap(vec![0u8; REGION_SIZE as usize].into_boxed_slice()),
    }
}

/// All regions of the physical address space.
pub(crate) struct Store {
    groups: Box<[OnceLock<Box<[Region]>>]>,
    regions: u64,
}

impl Store {
    /// A store for `size` bytes (rounded up to whole regions).
    pub(crate) fn new(size: u64) -> Self {
        let regions = size.div_ceil(REGION_SIZE);
        let groups = regions.div_ceil(REGIONS_PER_GROUP);
        Self {
            groups: (0..groups).map(|_| OnceLock::new()).collect(),
            regions,
        }
    }

    /// The region with index `idx` (SPA / 2 MiB), created on demand; `None` beyond
    /// the end of memory.
    pub(crate) fn region(&self, idx: u64) -> Option<&Region> {
        if idx >= self.regions {
            return None;
        }
        let group = self
            .groups
            .get(usize::try_from(idx / REGIONS_PER_GROUP).ok()?)?;
        let slots =
            group.get_or_init(|| (0..REGIONS_PER_GROUP).map(|_| Region::default()).collect());
        slots.get(usize::try_from(idx % REGIONS_PER_GROUP).ok()?)
    }

    /// The region if its group exists (no allocation); used to walk touched memory.
    pub(crate) fn region_if_present(&self, idx: u64) -> Option<&Region> {
        let group = self
            .groups
            .get(usize::try_from(idx / REGIONS_PER_GROUP).ok()?)?
            .get()?;
        group.get(usize::try_from(idx % REGIONS_PER_GROUP).ok()?)
    }

    /// Number of regions.
    pub(crate) fn regions(&self) -> u64 {
        self.regions
    }
}
