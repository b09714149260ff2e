//! Page commands: SNP_PAGE_RECLAIM, SNP_PAGE_UNSMASH (SNP ABI §8.17–8.18; AMD SEV
//! firmware `snp_mcmd_page_reclaim`, `snp_mcmd_page_unsmash`).

use crate::error::CmdResult;
use crate::fw::Firmware;
use crate::state::State;
use softsev_abi::fw_buf::{RECLAIM_RESERVED_MASK, SnpPageReclaim, SnpPageUnsmash};
use softsev_abi::rmp::{PageState, RmpEntry};
use softsev_abi::{FwStatus, Spa};

/// Size of a 2 MiB page.
pub(super) const PAGE_2M: u64 = 0x20_0000;

impl Firmware {
    pub(crate) fn snp_page_reclaim(&self, st: &mut State, cmd: SnpPageReclaim) -> CmdResult {
        if cmd.paddr & RECLAIM_RESERVED_MASK != 0 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let addr = cmd.paddr & !0xFFF;
        let size_2m = cmd.paddr & 1 != 0;
        self.require_init(st)?;
        let len = if size_2m { PAGE_2M } else { 0x1000 };
        if addr
            .checked_add(len)
            .is_none_or(|end| end > self.soc.mem_size())
        {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        let (mut e, s) = self.page_state(addr)?;
        if e.is_2m() != size_2m {
            return Err(FwStatus::INVALID_PAGE_SIZE.into());
        }
        if e.is_2m() && addr & (PAGE_2M - 1) != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        if !e.immutable() {
            return Ok(());
        }
        match s {
            PageState::METADATA => {
                e.set_immutable(false);
                e.set_lock(false);
                // Clear the firmware's sub-state bits kept in the GPA field.
                e.set_gpa(e.gpa() & !(0x7 << 36));
            }
            PageState::FIRMWARE | PageState::PRE_GUEST | PageState::PRE_SWAP => {
                e.set_immutable(false);
                e.set_lock(false);
            }
            _ => return Err(FwStatus::INVALID_PAGE_STATE.into()),
        }
        self.rmp_write(addr, e)
    }

    pub(crate) fn snp_page_unsmash(&self, st: &mut State, cmd: SnpPageUnsmash) -> CmdResult {
        if cmd.paddr & RECLAIM_RESERVED_MASK != 0 || cmd.paddr & (PAGE_2M - 1) != 0 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        let base = cmd.paddr;
        if base
            .checked_add(PAGE_2M)
            .is_none_or(|end| end > self.soc.mem_size())
            || !self.soc.rmp_covered(Spa(base))
        {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        // Check every entry before changing any (no time-of-check/time-of-use window:
        // the state lock serialises firmware commands, and the entries are immutable so
        // RMPUPDATE cannot change them).
        let mut entries: Vec<RmpEntry> = Vec::with_capacity(512);
        let mut first: Option<(PageState, u32, u64, [Option<u8>; 4])> = None;
        for i in 0..512u64 {
            let (e, s) = self.page_state(base + i * 0x1000)?;
            if e.is_2m() || !e.immutable() || e.vmsa() || e.asid() == 0 {
                return Err(FwStatus::INVALID_PAGE_STATE.into());
            }
            let perms = [
                e.vmpl_perms(0),
                e.vmpl_perms(1),
                e.vmpl_perms(2),
                e.vmpl_perms(3),
            ];
            match first {
                None => {
                    if e.gpa() & (PAGE_2M - 1) != 0 {
                        return Err(FwStatus::INVALID_PAGE_STATE.into());
                    }
                    first = Some((s, e.asid(), e.gpa(), perms));
                }
                Some((s0, a0, g0, p0)) => {
                    if s != s0 || e.asid() != a0 || e.gpa() != g0 + i * 0x1000 || perms != p0 {
                        return Err(FwStatus::INVALID_PAGE_STATE.into());
                    }
                }
            }
            entries.push(e);
        }
        // Turn the 512 entries into one 2 MiB entry at the head.
        for (i, e) in entries.into_iter().enumerate() {
            let spa = base + i as u64 * 0x1000;
            if i == 0 {
                let mut h = e;
                h.set_2m(true);
                h.set_subpage_count(0);
                self.rmp_write(spa, h)?;
            } else {
                self.rmp_write(spa, RmpEntry::default())?;
            }
        }
        Ok(())
    }
}
