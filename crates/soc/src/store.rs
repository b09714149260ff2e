//! Sparse backing store for DRAM and the RMP, in 2 MiB regions.
//!
//! Each 2 MiB region of physical memory has two lazily allocated parts, each behind
//! its own lock: the DRAM bytes (`Box<[u8]>` of 2 MiB, allocated zeroed on the first
//! write — the allocator satisfies it with lazily zero-filled pages, so only touched
//! 4 KiB pages cost RSS) and the 512 RMP entries of the region (8 KiB, allocated on the
//! first RMP change). Regions are grouped by 1 GiB; a group's slot array is created
//! the first time anything in it is touched, so a 1 TiB address space costs a few KiB
//! until used.
//!
//! Lock order: a region's RMP lock before its data lock; never two regions' locks of
//! the same kind at once.

use parking_lot::RwLock;
use softsev_abi::rmp::RmpEntry;
use std::sync::OnceLock;

/// Bytes per region (one RMP 2 MiB page).
pub(crate) const REGION_SIZE: u64 = 0x20_0000;
/// 4 KiB pages per region.
pub(crate) const PAGES_PER_REGION: usize = 512;
/// Regions per group (1 GiB).
const REGIONS_PER_GROUP: u64 = 512;

/// The RMP entries of one 2 MiB region plus the model's "in use" bits (VMCB, VMSA or
/// AVIC page of a running vCPU; RMPUPDATE/PSMASH return FAIL_INUSE on them).
pub(crate) struct RmpRegion {
    pub entries: [RmpEntry; PAGES_PER_REGION],
    pub in_use: [u64; PAGES_PER_REGION / 64],
}

impl RmpRegion {
    pub fn new_boxed() -> Box<Self> {
        Box::new(Self {
            entries: [RmpEntry::default(); PAGES_PER_REGION],
            in_use: [0; PAGES_PER_REGION / 64],
        })
    }
    pub fn is_in_use(&self, idx: usize) -> bool {
        self.in_use
            .get(idx / 64)
            .is_some_and(|w| w & (1u64 << (idx % 64)) != 0)
    }
    pub fn set_in_use(&mut self, idx: usize, v: bool) {
        if let Some(w) = self.in_use.get_mut(idx / 64) {
            if v {
                *w |= 1u64 << (idx % 64);
            } else {
                *w &= !(1u64 << (idx % 64));
            }
        }
    }
    pub fn entry(&self, idx: usize) -> RmpEntry {
        self.entries.get(idx).copied().unwrap_or_default()
    }
}

/// One 2 MiB region.
#[derive(Default)]
pub(crate) struct Region {
    pub rmp: RwLock<Option<Box<RmpRegion>>>,
    pub data: RwLock<Option<Box<[u8]>>>,
}

/// Allocate the zeroed DRAM of one region.
pub(crate) fn new_chunk() -> Box<[u8]> {
    vec![0u8; REGION_SIZE as usize].into_boxed_slice()
}

/// All regions of the physical address space.
pub(crate) struct Store {
    groups: Box<[OnceLock<Box<[Region]>>]>,
    regions: u64,
}

impl Store {
    /// A store for `size` bytes (rounded up to whole regions).
    pub fn new(size: u64) -> Self {
        let regions = size.div_ceil(REGION_SIZE);
        let groups = regions.div_ceil(REGIONS_PER_GROUP);
        Self {
            groups: (0..groups).map(|_| OnceLock::new()).collect(),
            regions,
        }
    }

    /// The region with index `idx` (SPA / 2 MiB), created on demand; `None` beyond
    /// the end of memory.
    pub fn region(&self, idx: u64) -> Option<&Region> {
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
    pub fn region_if_present(&self, idx: u64) -> Option<&Region> {
        let group = self
            .groups
            .get(usize::try_from(idx / REGIONS_PER_GROUP).ok()?)?
            .get()?;
        group.get(usize::try_from(idx % REGIONS_PER_GROUP).ok()?)
    }

    /// Number of regions.
    pub fn regions(&self) -> u64 {
        self.regions
    }
}
