//! Legacy SEV SWAP_OUT / SWAP_IN: same-context paging of a guest page (or an SEV-ES
//! VMSA) to host memory and back (shared/spec/sev-legacy.md §5.6; ASPFW
//! `sev_mcmd_swap_out`, `sev_mcmd_swap_in`). The page is sealed with AES-256-GCM under
//! the guest's Offline Encryption Key, which never leaves the context: swapped-out
//! pages can only come back into the same live guest. The 64-byte metadata entry (with
//! its tag zeroed) is the AAD; the IV is the guest's 64-bit counter.

use crate::error::CmdResult;
use crate::fw::Firmware;
use crate::sev_ctx::{VMSA_CRC_SPAN, VMSA_LEN};
use crate::state::{SevPlatformState, State};
use softsev_abi::sev_buf::{
    SEV_SWAP_FLAG_IN_PLACE, SEV_SWAP_FLAG_PAGE_SIZE_2M, SEV_SWAP_FLAG_PAGE_TYPE_MASK,
    SEV_SWAP_PAGE_TYPE_VMSA, SevSwapIn, SevSwapMetadata, SevSwapOut,
};
use softsev_abi::{Asid, FwStatus, PAGE_SIZE_2M, PAGE_SIZE_4K};
use softsev_crypto::aead::Aes256Gcm;
use softsev_crypto::ct::ct_eq;
use softsev_crypto::hash::sha256;
use softsev_soc::KeySel;
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

/// The flag bits SWAP_OUT defines (size, type); SWAP_IN adds IN_PLACE.
const SWAP_OUT_FLAGS: u32 = SEV_SWAP_FLAG_PAGE_SIZE_2M | SEV_SWAP_FLAG_PAGE_TYPE_MASK;

/// The page a SWAP command names: size in bytes and whether it is a VMSA.
#[derive(Clone, Copy, Debug)]
struct SwapPage {
    len: u64,
    vmsa: bool,
}

/// The 96-bit GCM nonce of IV counter `iv` (a model choice, §10: ASPFW passes the
/// 8-byte counter; any construction is unobservable since the OEK never leaves).
fn nonce(iv: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&iv.to_le_bytes());
    n
}

impl Firmware {
    /// The checks both commands share (§5.6), in the firmware's order: flags (reserved
    /// bits, a type other than data or VMSA → INVALID_PARAM); addresses in memory and
    /// aligned to the page size, metadata 64-aligned → INVALID_ADDRESS; metadata
    /// overlapping a page → INVALID_PARAM; a 2 MiB VMSA → INVALID_PARAM.
    fn swap_page(
        &self,
        flags: u32,
        defined: u32,
        pages: [u64; 2],
        mdata: u64,
    ) -> CmdResult<SwapPage> {
        if flags & !defined != 0 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let ty = (flags & SEV_SWAP_FLAG_PAGE_TYPE_MASK) >> 1;
        if ty != 0 && ty != SEV_SWAP_PAGE_TYPE_VMSA {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let vmsa = ty != 0;
        let len = if flags & SEV_SWAP_FLAG_PAGE_SIZE_2M != 0 {
            PAGE_SIZE_2M
        } else {
            PAGE_SIZE_4K
        };
        let mem = self.soc.mem_size();
        let inside = |a: u64, l: u64| a.checked_add(l).is_some_and(|e| e <= mem);
        for p in pages {
            if !p.is_multiple_of(len) || !inside(p, len) {
                return Err(FwStatus::INVALID_ADDRESS.into());
            }
        }
        let mlen = SevSwapMetadata::LEN as u64;
        if !mdata.is_multiple_of(64) || !inside(mdata, mlen) {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        if pages.iter().any(|p| mdata < p + len && *p < mdata + mlen) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if vmsa && len != PAGE_SIZE_4K {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        Ok(SwapPage { len, vmsa })
    }

    /// Whether the guest-key plaintext `page` is a VMSA of a guest whose TMR blocks
    /// are `blocks` (its contents match one of them).
    fn is_vmsa_of(st: &State, blocks: &[u32], page: &[u8]) -> bool {
        let Some(tmr) = st.sev.tmr.as_ref() else {
            return false;
        };
        if page.len() != VMSA_LEN {
            return false;
        }
        let want = sha256(&page[..VMSA_CRC_SPAN]);
        blocks
            .iter()
            .any(|i| tmr.blocks.get(i).is_some_and(|v| ct_eq(v, &want)))
    }

    /// SWAP_OUT (§5.6): WORKING; the shared checks; handle → INVALID_GUEST; no ASID →
    /// INACTIVE; the page type must say whether the page is a VMSA of this guest
    /// (INVALID_PARAM); the IV counter at UINT64_MAX−1 → AEAD_OFLOW. The page (read
    /// with the guest key) is sealed under the OEK into `dst`, the metadata
    /// {software_data, iv, tag, page flags} into `mdata`; the counter advances.
    pub(crate) fn sev_swap_out(&self, st: &mut State, b: &mut SevSwapOut) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let page = self.swap_page(
            b.flags,
            SWAP_OUT_FLAGS,
            [b.src_paddr, b.dst_paddr],
            b.mdata_paddr,
        )?;
        let g = self.sev_guest(st, b.handle)?;
        let asid = g.binding.asid().ok_or(FwStatus::INACTIVE)?;
        self.sev_writable(st, b.dst_paddr, page.len)?;
        self.sev_writable(st, b.mdata_paddr, SevSwapMetadata::LEN as u64)?;
        let mut data = Zeroizing::new(vec![0u8; page.len as usize]);
        self.read_with(b.src_paddr, KeySel::Guest(Asid(asid)), &mut data)?;
        let g = self.sev_guest(st, b.handle)?;
        let (es, blocks) = (g.is_es(), g.crc_blocks.clone());
        let is_vmsa = es && page.len == PAGE_SIZE_4K && Self::is_vmsa_of(st, &blocks, &data);
        if is_vmsa != page.vmsa {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if self.sev_guest(st, b.handle)?.oek.is_none() {
            let k = Zeroizing::new(st.rng.array::<32>());
            self.sev_guest(st, b.handle)?.oek = Some((k, 0));
        }
        let g = self.sev_guest(st, b.handle)?;
        let (oek, iv) = g.oek.as_mut().ok_or(FwStatus::INVALID_GUEST_STATE)?;
        if *iv >= u64::MAX - 1 {
            return Err(FwStatus::AEAD_OFLOW.into());
        }
        let mut md = SevSwapMetadata::new_zeroed();
        md.software_data = b.software_data;
        md.iv = *iv;
        md.page_flags = b.flags & SWAP_OUT_FLAGS;
        let tag = Aes256Gcm::new(oek)
            .seal(&nonce(*iv), md.as_bytes(), &mut data)
            .map_err(|e| crate::error::ModelFault::Chip(format!("SWAP_OUT seal: {e}")))?;
        *iv += 1;
        md.auth_tag = tag;
        self.write_plain(b.dst_paddr, &data)?;
        self.write_plain(b.mdata_paddr, md.as_bytes())
    }

    /// SWAP_IN (§5.6): WORKING; the shared checks (plus IN_PLACE, bit 3); handle →
    /// INVALID_GUEST; no ASID → INACTIVE; page size and type against the metadata →
    /// INVALID_PARAM; the tag (AAD = metadata with the tag zeroed) → BAD_MEASUREMENT
    /// (the status ASPFW returns here is not in the published source, §11.5; this
    /// firmware's MAC failures are BAD_MEASUREMENT, §0.2-5). The plaintext is written
    /// with the guest key to `dst` (to `src` with IN_PLACE).
    pub(crate) fn sev_swap_in(&self, st: &mut State, b: SevSwapIn) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let page = self.swap_page(
            b.flags,
            SWAP_OUT_FLAGS | SEV_SWAP_FLAG_IN_PLACE,
            [b.src_paddr, b.dst_paddr],
            b.mdata_paddr,
        )?;
        let g = self.sev_guest(st, b.handle)?;
        let asid = g.binding.asid().ok_or(FwStatus::INACTIVE)?;
        let mut md = SevSwapMetadata::new_zeroed();
        self.read_plain(b.mdata_paddr, md.as_mut_bytes())?;
        if md.page_flags != b.flags & SWAP_OUT_FLAGS {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let mut data = Zeroizing::new(vec![0u8; page.len as usize]);
        self.read_plain(b.src_paddr, &mut data)?;
        let tag = md.auth_tag;
        md.auth_tag = [0; 16];
        let g = self.sev_guest(st, b.handle)?;
        let (oek, _) = g.oek.as_ref().ok_or(FwStatus::BAD_MEASUREMENT)?;
        Aes256Gcm::new(oek)
            .open(&nonce(md.iv), md.as_bytes(), &mut data, &tag)
            .map_err(|_| FwStatus::BAD_MEASUREMENT)?;
        let dst = if b.flags & SEV_SWAP_FLAG_IN_PLACE != 0 {
            b.src_paddr
        } else {
            b.dst_paddr
        };
        self.sev_writable(st, dst, page.len)?;
        self.write_with(dst, KeySel::Guest(Asid(asid)), &data)
    }
}
