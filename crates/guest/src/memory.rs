//! Private and shared memory as an SNP guest manages it (host-interfaces.md §2.6,
//! §3.3, §3.5; Linux `set_pages_state` / `pvalidate_pages`, OVMF
//! `MemEncryptSevSnpPreValidateSystemRam`):
//!
//! * make private (accept): page state change to private, then PVALIDATE each page,
//!   2 MiB where the range is 2 MiB aligned, falling back to 512 × 4 KiB when the RMP
//!   entry is 4 KiB (`FAIL_SIZEMISMATCH`);
//! * make shared: rescind validation of what the guest validated, then page state
//!   change to shared.
//!
//! The guest remembers which pages it validated ([`Validated`]). PVALIDATE answering
//! "nothing changed" is a failure, as in Linux: validating a page twice is how a
//! hypervisor would alias two GPAs onto one page.

use crate::error::{GuestError, access_fault};
use crate::ghcb::GhcbClient;
use crate::platform::{GuestPlatform, PageSize};
use softsev_abi::ghcb::{PSC_MAX_ENTRIES, PscEntry, PscOp};
use softsev_abi::rmp::RmpStatus;
use softsev_abi::{AddrRange, Gpa, IntervalSet, PAGE_SIZE_2M, PAGE_SIZE_4K};

/// A half-open GPA range `[start, end)` (abi's [`AddrRange`] over GPAs).
pub type MemRange = AddrRange<Gpa>;

/// A set of disjoint, merged GPA ranges (abi's [`IntervalSet`] over GPAs).
pub type RangeSet = IntervalSet<Gpa>;

/// Counters of the memory work.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct MemStats {
    /// PVALIDATE(validate) with 2 MiB size that succeeded.
    pub pvalidate_2m: u64,
    /// PVALIDATE with 4 KiB size (validate or rescind).
    pub pvalidate_4k: u64,
    /// PVALIDATE(rescind) with 2 MiB size that succeeded.
    pub rescind_2m: u64,
    /// 2 MiB PVALIDATEs that fell back to 4 KiB (FAIL_SIZEMISMATCH).
    pub size_mismatch_fallbacks: u64,
    /// Bytes made private and validated.
    pub accepted_bytes: u64,
    /// Bytes made shared.
    pub shared_bytes: u64,
}

/// The guest's record of which pages it validated, and the operations that change it.
#[derive(Clone, Default, Debug)]
pub struct Validated {
    set: RangeSet,
    /// Counters.
    pub stats: MemStats,
}

/// Split a page-aligned range into PSC entries: 2 MiB entries where aligned and whole,
/// 4 KiB entries elsewhere.
pub fn psc_entries(r: MemRange, op: PscOp) -> Vec<PscEntry> {
    let mut out = Vec::new();
    let mut a = r.start.0;
    while a < r.end.0 {
        if a.is_multiple_of(PAGE_SIZE_2M) && r.end.0 - a >= PAGE_SIZE_2M {
            out.push(PscEntry::new(a >> 12, op, true));
            a += PAGE_SIZE_2M;
        } else {
            out.push(PscEntry::new(a >> 12, op, false));
            a += PAGE_SIZE_4K;
        }
    }
    out
}

fn entry_gpa(e: &PscEntry) -> Gpa {
    Gpa(e.gfn() << 12)
}

impl Validated {
    /// Nothing validated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record ranges validated by someone else (the launch: SNP_LAUNCH_UPDATE pages
    /// and the firmware's pre-validated ranges).
    pub fn mark_validated(&mut self, r: MemRange) {
        self.set.insert(r);
    }

    /// Whether the page holding `gpa` is validated.
    pub fn is_validated(&self, gpa: Gpa) -> bool {
        self.set.contains(gpa)
    }

    /// The validated set.
    pub fn set(&self) -> &RangeSet {
        &self.set
    }

    fn check(r: MemRange) -> Result<(), GuestError> {
        if !r.is_page_aligned() || r.start.0 > r.end.0 {
            return Err(GuestError::Config(format!(
                "range {}..{} is not 4 KiB aligned",
                r.start, r.end
            )));
        }
        Ok(())
    }

    fn pvalidate_4k<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        validate: bool,
    ) -> Result<(), GuestError> {
        self.stats.pvalidate_4k += 1;
        let st = p
            .pvalidate(gpa, PageSize::Size4K, validate)
            .map_err(|f| access_fault("PVALIDATE", gpa, f))?;
        if st != RmpStatus::SUCCESS {
            return Err(GuestError::Pvalidate {
                gpa,
                size: PageSize::Size4K,
                validate,
                status: st,
            });
        }
        Ok(())
    }

    /// PVALIDATE one PSC-entry-sized piece (2 MiB with 4 KiB fallback, or 4 KiB).
    fn pvalidate_entry<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        e: &PscEntry,
        validate: bool,
    ) -> Result<(), GuestError> {
        let gpa = entry_gpa(e);
        if !e.huge() {
            return self.pvalidate_4k(p, gpa, validate);
        }
        let st = p
            .pvalidate(gpa, PageSize::Size2M, validate)
            .map_err(|f| access_fault("PVALIDATE", gpa, f))?;
        match st {
            RmpStatus::SUCCESS => {
                if validate {
                    self.stats.pvalidate_2m += 1;
                } else {
                    self.stats.rescind_2m += 1;
                }
                Ok(())
            }
            RmpStatus::FAIL_SIZEMISMATCH => {
                self.stats.size_mismatch_fallbacks += 1;
                for i in 0..(PAGE_SIZE_2M / PAGE_SIZE_4K) {
                    self.pvalidate_4k(p, Gpa(gpa.0 + i * PAGE_SIZE_4K), validate)?;
                }
                Ok(())
            }
            status => Err(GuestError::Pvalidate {
                gpa,
                size: PageSize::Size2M,
                validate,
                status,
            }),
        }
    }

    /// Make `r` private and validated (accept it): parts already validated are left
    /// alone; the rest goes through PSC(private) in descriptors of up to 253 entries,
    /// each followed by PVALIDATE of its entries.
    pub fn make_private<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        r: MemRange,
    ) -> Result<(), GuestError> {
        Self::check(r)?;
        for piece in self.set.subtract_from(r) {
            let entries = psc_entries(piece, PscOp::PRIVATE);
            for chunk in entries.chunks(PSC_MAX_ENTRIES) {
                ghcb.psc(p, chunk)?;
                for e in chunk {
                    self.pvalidate_entry(p, e, true)?;
                    let len = e.npages() * PAGE_SIZE_4K;
                    self.set.insert(MemRange::new(entry_gpa(e).0, len));
                    self.stats.accepted_bytes += len;
                }
            }
        }
        Ok(())
    }

    /// Make `r` shared: rescind validation of the validated parts (2 MiB where
    /// possible), then PSC(shared) the whole range.
    pub fn make_shared<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        r: MemRange,
    ) -> Result<(), GuestError> {
        Self::check(r)?;
        for v in self.set.intersect(r) {
            for e in psc_entries(v, PscOp::SHARED) {
                self.pvalidate_entry(p, &e, false)?;
                self.set
                    .remove(MemRange::new(entry_gpa(&e).0, e.npages() * PAGE_SIZE_4K));
            }
        }
        let entries = psc_entries(r, PscOp::SHARED);
        for chunk in entries.chunks(PSC_MAX_ENTRIES) {
            ghcb.psc(p, chunk)?;
        }
        self.stats.shared_bytes += r.len();
        Ok(())
    }

    /// Make one page shared over the MSR protocol (before a GHCB exists): rescind if
    /// validated, then PSC by MSR.
    pub fn make_shared_msr<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        gpa: Gpa,
    ) -> Result<(), GuestError> {
        let page = MemRange::new(gpa.align_down(PAGE_SIZE_4K).0, PAGE_SIZE_4K);
        if self.set.contains(page.start) {
            self.pvalidate_4k(p, page.start, false)?;
            self.set.remove(page);
        }
        ghcb.psc_msr(p, page.start, PscOp::SHARED)?;
        self.stats.shared_bytes += PAGE_SIZE_4K;
        Ok(())
    }

    /// Make one page private over the MSR protocol, then validate it.
    pub fn make_private_msr<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        gpa: Gpa,
    ) -> Result<(), GuestError> {
        let page = MemRange::new(gpa.align_down(PAGE_SIZE_4K).0, PAGE_SIZE_4K);
        if self.set.contains(page.start) {
            return Ok(());
        }
        ghcb.psc_msr(p, page.start, PscOp::PRIVATE)?;
        self.pvalidate_4k(p, page.start, true)?;
        self.set.insert(page);
        self.stats.accepted_bytes += PAGE_SIZE_4K;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_and_splits() {
        let mut s = RangeSet::new();
        s.insert(MemRange::new(0x1000, 0x1000));
        s.insert(MemRange::new(0x3000, 0x1000));
        s.insert(MemRange::new(0x2000, 0x1000));
        assert_eq!(s.ranges(), vec![MemRange::new(0x1000, 0x3000)]);
        s.remove(MemRange::new(0x2000, 0x800));
        assert_eq!(
            s.ranges(),
            vec![MemRange::new(0x1000, 0x1000), MemRange::new(0x2800, 0x1800)]
        );
        assert!(s.contains(Gpa(0x1FFF)));
        assert!(!s.contains(Gpa(0x2000)));
        assert_eq!(
            s.subtract_from(MemRange::new(0, 0x5000)),
            vec![
                MemRange::new(0, 0x1000),
                MemRange::new(0x2000, 0x800),
                MemRange::new(0x4000, 0x1000)
            ]
        );
        assert_eq!(s.total(), 0x2800);
        s.insert(MemRange::new(0, 0x10000));
        assert_eq!(s.ranges(), vec![MemRange::new(0, 0x10000)]);
    }

    #[test]
    fn entries_use_2m_where_aligned() {
        let e = psc_entries(MemRange::new(0x1F_F000, 0x40_2000), PscOp::PRIVATE);
        // 1 × 4K before the 2 MiB boundary, 2 × 2M, 1 × 4K after.
        assert_eq!(e.len(), 4);
        assert!(!e[0].huge() && e[1].huge() && e[2].huge() && !e[3].huge());
        assert_eq!(e[1].gfn(), 0x200);
        assert_eq!(e[3].gfn(), 0x600);
    }
}
