//! Debug commands: SNP_DBG_DECRYPT and SNP_DBG_ENCRYPT (SNP ABI §8.19–8.20; AMD SEV
//! firmware `snp_mcmd_dbg_decrypt`, `snp_mcmd_dbg_encrypt`): one 4 KiB page between
//! a guest page (the guest's key) and a plaintext page, for guests whose policy
//! allows debugging.

use super::pages::PAGE_2M;
use crate::error::CmdResult;
use crate::fw::{Firmware, misaligned};
use crate::state::State;
use softsev_abi::fw_buf::{SnpDbgDecrypt, SnpDbgEncrypt};
use softsev_abi::rmp::{PageState, RmpEntry};
use softsev_abi::{Asid, FwStatus, GuestPolicy};
use softsev_soc::KeySel;
use zeroize::Zeroize;

/// Which way a debug command copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Guest page → plaintext page.
    Decrypt,
    /// Plaintext page → guest page.
    Encrypt,
}

/// The operands both debug commands share.
#[derive(Clone, Copy, Debug)]
struct DbgOperands {
    gctx_paddr: u64,
    src_paddr: u64,
    dst_paddr: u64,
}

impl Firmware {
    pub(crate) fn snp_dbg_decrypt(&self, st: &mut State, cmd: SnpDbgDecrypt) -> CmdResult {
        let op = DbgOperands {
            gctx_paddr: cmd.gctx_paddr,
            src_paddr: cmd.src_paddr,
            dst_paddr: cmd.dst_paddr,
        };
        self.snp_dbg(st, op, Direction::Decrypt)
    }

    pub(crate) fn snp_dbg_encrypt(&self, st: &mut State, cmd: SnpDbgEncrypt) -> CmdResult {
        let op = DbgOperands {
            gctx_paddr: cmd.gctx_paddr,
            src_paddr: cmd.src_paddr,
            dst_paddr: cmd.dst_paddr,
        };
        self.snp_dbg(st, op, Direction::Encrypt)
    }

    fn snp_dbg(&self, st: &mut State, cmd: DbgOperands, dir: Direction) -> CmdResult {
        let encrypt = dir == Direction::Encrypt;
        if misaligned(cmd.gctx_paddr) || misaligned(cmd.src_paddr) || misaligned(cmd.dst_paddr) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        let (_, gctx_state) = self.page_state(cmd.gctx_paddr)?;
        let src = self.dbg_entry(cmd.src_paddr)?;
        let dst = self.dbg_entry(cmd.dst_paddr)?;
        if gctx_state != PageState::CONTEXT {
            return Err(FwStatus::INVALID_GUEST.into());
        }
        let (guest_page, guest_entry) = if encrypt {
            if !matches!(dst.1, PageState::PRE_SWAP | PageState::PRE_GUEST) {
                return Err(FwStatus::INVALID_PAGE_STATE.into());
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
                return Err(FwStatus::INVALID_PAGE_STATE.into());
            }
            (cmd.src_paddr, src.0)
        };
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        if guest_entry.asid() != g.asid() {
            return Err(FwStatus::INVALID_PAGE_OWNER.into());
        }
        if !GuestPolicy(g.policy()).debug() {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        if g.is_inactive() {
            return Err(FwStatus::INACTIVE.into());
        }
        let key = KeySel::Guest(Asid(g.asid()));
        let mut buf = vec![0u8; 0x1000];
        let r = if encrypt {
            self.read_plain(cmd.src_paddr, &mut buf)
                .and_then(|()| self.write_with(guest_page, key, &buf))
        } else {
            self.read_with(guest_page, key, &mut buf)
                .and_then(|()| self.write_plain(cmd.dst_paddr, &buf))
        };
        buf.zeroize();
        r
    }

    /// The entry that governs a 4 KiB debug operand: the page's own, or the head of the
    /// 2 MiB page it sits in.
    fn dbg_entry(&self, spa: u64) -> CmdResult<(RmpEntry, PageState)> {
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
