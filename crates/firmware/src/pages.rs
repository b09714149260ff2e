//! Page commands: SNP_PAGE_RECLAIM, SNP_PAGE_UNSMASH, SNP_DBG_DECRYPT / SNP_DBG_ENCRYPT.

use crate::fw::{Firmware, FwResult, State, misaligned};
use softsev_abi::fw_buf::{RECLAIM_RESERVED_MASK, SnpDbg, SnpPaddr};
use softsev_abi::rmp::{PageState, RmpEntry};
use softsev_abi::{Asid, FwStatus, Spa};
use softsev_soc::KeySel;
use zeroize::Zeroize;

const PAGE_2M: u64 = 0x20_0000;

impl Firmware {
    pub(crate) fn snp_page_reclaim(&self, st: &mut State, cmd: SnpPaddr) -> FwResult {
        if cmd.paddr & RECLAIM_RESERVED_MASK != 0 {
            return Err(FwStatus::INVALID_PARAM);
        }
        let addr = cmd.paddr & !0xFFF;
        let size_2m = cmd.paddr & 1 != 0;
        self.require_init(st)?;
        let len = if size_2m { PAGE_2M } else { 0x1000 };
        if addr
            .checked_add(len)
            .is_none_or(|end| end > self.soc.mem_size())
        {
            return Err(FwStatus::INVALID_ADDRESS);
        }
        let (mut e, s) = self.page_state(addr)?;
        if e.is_2m() != size_2m {
            return Err(FwStatus::INVALID_PAGE_SIZE);
        }
        if e.is_2m() && addr & (PAGE_2M - 1) != 0 {
            return Err(FwStatus::INVALID_ADDRESS);
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
            _ => return Err(FwStatus::INVALID_PAGE_STATE),
        }
        self.rmp_write(addr, e)
    }

    pub(crate) fn snp_page_unsmash(&self, st: &mut State, cmd: SnpPaddr) -> FwResult {
        if cmd.paddr & RECLAIM_RESERVED_MASK != 0 || cmd.paddr & (PAGE_2M - 1) != 0 {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        let base = cmd.paddr;
        if base
            .checked_add(PAGE_2M)
            .is_none_or(|end| end > self.soc.mem_size())
            || !self.soc.rmp_covered(Spa(base))
        {
            return Err(FwStatus::INVALID_ADDRESS);
        }
        // Check every entry before changing any (no time-of-check/time-of-use window:
        // the state lock serialises firmware commands, and the entries are immutable so
        // RMPUPDATE cannot change them).
        let mut entries: Vec<RmpEntry> = Vec::with_capacity(512);
        let mut first: Option<(PageState, u32, u64, [Option<u8>; 4])> = None;
        for i in 0..512u64 {
            let (e, s) = self.page_state(base + i * 0x1000)?;
            if e.is_2m() || !e.immutable() || e.vmsa() || e.asid() == 0 {
                return Err(FwStatus::INVALID_PAGE_STATE);
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
                        return Err(FwStatus::INVALID_PAGE_STATE);
                    }
                    first = Some((s, e.asid(), e.gpa(), perms));
                }
                Some((s0, a0, g0, p0)) => {
                    if s != s0 || e.asid() != a0 || e.gpa() != g0 + i * 0x1000 || perms != p0 {
                        return Err(FwStatus::INVALID_PAGE_STATE);
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

    pub(crate) fn snp_dbg(&self, st: &mut State, cmd: SnpDbg, encrypt: bool) -> FwResult {
        if misaligned(cmd.gctx_paddr) || misaligned(cmd.src_paddr) || misaligned(cmd.dst_paddr) {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        let (_, gctx_state) = self.page_state(cmd.gctx_paddr)?;
        let src = self.dbg_entry(cmd.src_paddr)?;
        let dst = self.dbg_entry(cmd.dst_paddr)?;
        if gctx_state != PageState::CONTEXT {
            return Err(FwStatus::INVALID_GUEST);
        }
        let (guest_page, guest_entry) = if encrypt {
            if !matches!(dst.1, PageState::PRE_SWAP | PageState::PRE_GUEST) {
                return Err(FwStatus::INVALID_PAGE_STATE);
            }
            (cmd.dst_paddr, dst.0)
        } else {
            if !matches!(
                src.1,
                PageState::PRE_GUEST
                    | PageState::PRE_SWAP
                    | PageState::GUEST_INVALID
                    | PageState::GUEST_VALID
            ) || dst.1 != PageState::FIRMWARE
            {
                return Err(FwStatus::INVALID_PAGE_STATE);
            }
            (cmd.src_paddr, src.0)
        };
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        if guest_entry.asid() != g.asid {
            return Err(FwStatus::INVALID_PAGE_OWNER);
        }
        if !g.policy().debug() {
            return Err(FwStatus::POLICY_FAILURE);
        }
        if g.is_inactive() {
            return Err(FwStatus::INACTIVE);
        }
        let key = KeySel::Guest(Asid(g.asid));
        let mut buf = vec![0u8; 0x1000];
        let r = if encrypt {
            self.read_plain(cmd.src_paddr, &mut buf).and_then(|()| {
                self.soc
                    .fw_write(Spa(guest_page), key, &buf)
                    .map_err(crate::fw::soc_status)
            })
        } else {
            self.soc
                .fw_read(Spa(guest_page), key, &mut buf)
                .map_err(crate::fw::soc_status)
                .and_then(|()| self.write_plain(cmd.dst_paddr, &buf))
        };
        buf.zeroize();
        r
    }

    /// The entry that governs a 4 KiB debug operand: the page's own, or the head of the
    /// 2 MiB page it sits in.
    fn dbg_entry(&self, spa: u64) -> FwResult<(RmpEntry, PageState)> {
        let (e, s) = self.page_state(spa)?;
        if s != PageState::DEFAULT && !e.is_2m() && e.asid() == 0 {
            let (h, hs) = self.page_state(spa & !(PAGE_2M - 1))?;
            if h.is_2m() {
                return Ok((h, hs));
            }
        }
        Ok((e, s))
    }
}
