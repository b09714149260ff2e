//! Legacy SEV platform commands (shared/spec/sev-legacy.md §1.3–1.8; ASPFW `sev_mcmd.c`
//! `sev_mcmd_init_common`, `sev_mcmd_shutdown`, `sev_mcmd_platform_status`,
//! `sev_mcmd_pek_*`, `sev_mcmd_pdh_*`, `sev_mcmd_get_id`): INIT, INIT_EX, SHUTDOWN,
//! PLATFORM_RESET, PLATFORM_STATUS, PEK_GEN, PEK_CSR, PEK_CERT_IMPORT, PDH_GEN,
//! PDH_CERT_EXPORT, GET_ID, DF_FLUSH, NOP. Checks run in the firmware's order.

use crate::error::{CmdResult, ModelFault};
use crate::fw::Firmware;
use crate::identity::sev::{
    self as ident, CERT_LEN, SevIdentity, SevSigner, open_nv, seal_nv, sev_cert_validate,
};
use crate::sev_ctx::{StoreLoc, Tmr};
use crate::state::{AsidState, PlatformState, SevPlatformState, State};
use softsev_abi::rmp::PageState;
use softsev_abi::sev_buf::{
    SEV_GET_ID_LEN, SEV_INIT_EX_LEN, SEV_INIT_EX_NV_LEN, SEV_PDH_CHAIN_LEN, SevGetId, SevInit,
    SevInitEx, SevPdhCertExport, SevPekCertImport, SevPekCsr, SevPlatformStatus,
};
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevSigSlot, SevUsage};
use softsev_abi::{Asid, FwStatus};
use softsev_crypto::kdf;
use std::collections::BTreeMap;
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

/// INIT flag bit 0: SEV-ES (a TMR is supplied, §1.4).
const INIT_FLAG_ES: u32 = 1;
/// TMR size without the SNP RMP (§1.2).
const TMR_LEN: u64 = 0x10_0000;
/// TMR size when the RMP is initialised (§1.2).
const TMR_LEN_SNP: u64 = 0x20_0000;

impl Firmware {
    /// The legacy platform state must be one of `allowed` (§1.3), else
    /// INVALID_PLATFORM_STATE.
    pub(crate) fn sev_require(&self, st: &State, allowed: &[SevPlatformState]) -> CmdResult {
        if !allowed.contains(&st.sev.platform) {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        Ok(())
    }

    /// §1.1: with SNP initialised every page the firmware writes for a legacy command
    /// must be a Firmware page (or memory the RMP does not cover); INVALID_PAGE_STATE
    /// otherwise (`check_page_range_firmware_writable`). Without SNP any page will do.
    pub(crate) fn sev_writable(&self, st: &State, spa: u64, len: u64) -> CmdResult {
        if len == 0 {
            return Ok(());
        }
        let end = spa
            .checked_add(len)
            .filter(|&e| e <= self.soc.mem_size())
            .ok_or(FwStatus::INVALID_ADDRESS)?;
        if st.snp != PlatformState::Init {
            return Ok(());
        }
        let mut page = spa & !0xFFF;
        while page < end {
            let (_, s) = self.page_state(page)?;
            if s != PageState::FIRMWARE && s != PageState::DEFAULT {
                return Err(FwStatus::INVALID_PAGE_STATE.into());
            }
            page += 0x1000;
        }
        Ok(())
    }

    /// The key sealing the INIT_EX NV buffer: a chip secret (from the CUK), so only
    /// this chip can read or forge its store.
    fn sev_nv_key(&self) -> Zeroizing<[u8; 32]> {
        let cuk = self.chip.sev_cuk();
        Zeroizing::new(kdf::derive::<32>(
            &cuk[..],
            b"softsev sev nv store key",
            b"",
        ))
    }

    /// Write `id` to the running platform's store (§1.4 step 5, §1.7 "persist"). A
    /// failure leaves the store as it was.
    fn sev_persist(&self, st: &mut State, id: &SevIdentity) -> CmdResult {
        let plain = id.to_store();
        match st.sev.store {
            StoreLoc::Spi => st.sev.spi = Some(plain),
            StoreLoc::Nv { paddr, len } => {
                self.sev_writable(st, paddr, u64::from(len))?;
                let sealed = seal_nv(&self.sev_nv_key(), &mut st.rng, &plain, len as usize)
                    .map_err(|e| ModelFault::Chip(format!("sealing the SEV store: {e}")))?;
                self.write_plain(paddr, &sealed)?;
            }
        }
        Ok(())
    }

    /// INIT and INIT_EX (`sev_mcmd_init_common`, §1.4).
    pub(crate) fn sev_init(
        &self,
        st: &mut State,
        init: SevInit,
        ex: Option<SevInitEx>,
    ) -> CmdResult {
        if st.sev.platform != SevPlatformState::Uninit {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        // (SME/UMC encryption is always enabled on the modelled cores.)
        if init.flags & !INIT_FLAG_ES != 0 || init.reserved != 0 {
            return Err(FwStatus::INVALID_CONFIG.into());
        }
        if let Some(ex) = &ex
            && ex.reserved != 0
        {
            return Err(FwStatus::INVALID_CONFIG.into());
        }
        if st.snp == PlatformState::Init && !st.rmp_initialized {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        let store = match &ex {
            None => StoreLoc::Spi,
            Some(ex) => {
                if ex.length as usize != SEV_INIT_EX_LEN {
                    return Err(FwStatus::INVALID_LENGTH.into());
                }
                if ex.nv_address & 0xFFF != 0 {
                    return Err(FwStatus::INVALID_ADDRESS.into());
                }
                if ex.nv_len as usize != SEV_INIT_EX_NV_LEN {
                    return Err(FwStatus::INVALID_LENGTH.into());
                }
                StoreLoc::Nv {
                    paddr: ex.nv_address,
                    len: ex.nv_len,
                }
            }
        };
        // Load the persistent state.
        let stored = match store {
            StoreLoc::Spi => st.sev.spi.clone(),
            StoreLoc::Nv { paddr, len } => {
                self.sev_writable(st, paddr, u64::from(len))?;
                st.sev.last_nv = Some((paddr, len));
                let mut nv = Zeroizing::new(vec![0u8; len as usize]);
                self.read_plain(paddr, &mut nv)?;
                match open_nv(&self.sev_nv_key(), &nv) {
                    Ok(p) => p,
                    Err(s) => {
                        // The NV area is erased; Linux retries INIT once on this status.
                        self.write_plain(paddr, &vec![0xFF; len as usize])?;
                        return Err(s.into());
                    }
                }
            }
        };
        let loaded = match &stored {
            Some(p) => match SevIdentity::from_store(p) {
                Ok(id) => Some(id),
                Err(s) => {
                    match store {
                        StoreLoc::Spi => st.sev.spi = None,
                        StoreLoc::Nv { paddr, len } => {
                            self.write_plain(paddr, &vec![0xFF; len as usize])?
                        }
                    }
                    return Err(s.into());
                }
            },
            None => None,
        };
        // 1. the CEK.
        let cek = self
            .chip
            .sev_cek()
            .map_err(|e| ModelFault::Chip(format!("CEK: {e}")))?;
        let api = st.current.version;
        st.sev.store = store;
        // 2.–4. OCA, PEK, PDH when none is stored; 5. persist.
        let id = match loaded {
            Some(id) => id,
            None => {
                let id = SevIdentity::generate(&mut st.rng, &cek, api);
                self.sev_persist(st, &id)?;
                id
            }
        };
        // 6. without SNP every ASID is invalid until WBINVD + DF_FLUSH.
        if st.snp == PlatformState::Uninit {
            st.asids.mark_all_dirty();
            self.soc.clear_wbinvd_done();
        }
        // 7. the TMR of SEV-ES.
        let es = init.flags & INIT_FLAG_ES != 0;
        let mut tmr = None;
        if es {
            let want = if st.rmp_initialized {
                TMR_LEN_SNP
            } else {
                TMR_LEN
            };
            let (base, len) = (init.tmr_address, u64::from(init.tmr_len));
            if len != want {
                return Err(FwStatus::INVALID_LENGTH.into());
            }
            if base & (want - 1) != 0 {
                return Err(FwStatus::INVALID_ADDRESS.into());
            }
            if let StoreLoc::Nv { paddr, len: nv_len } = store
                && base < paddr + u64::from(nv_len)
                && paddr < base + len
            {
                return Err(FwStatus::INVALID_ADDRESS.into());
            }
            self.sev_writable(st, base, len)?;
            tmr = Some(Tmr {
                base,
                len,
                blocks: BTreeMap::new(),
            });
        }
        // 8. INIT.
        st.sev.es = es;
        st.sev.tmr = tmr;
        st.sev.identity = Some(id);
        st.sev.cek = Some(cek);
        st.sev.platform = SevPlatformState::Init;
        tracing::info!(
            es,
            init_ex = ex.is_some(),
            "legacy SEV platform initialised"
        );
        Ok(())
    }

    /// SHUTDOWN (`sev_mcmd_shutdown`, `sev_clear`, §1.5): legal in every state; every
    /// legacy guest is decommissioned (its ASID deactivated: Allocated → Clean, InUse →
    /// Dirty; without SNP every ASID becomes invalid), the TMR released, → UNINIT. The
    /// persistent OCA/PEK/PDH survive.
    pub(crate) fn sev_shutdown(&self, st: &mut State) -> CmdResult {
        if st.sev.platform == SevPlatformState::Uninit {
            return Ok(());
        }
        let guests = std::mem::take(&mut st.sev.guests);
        for g in guests.values() {
            if let Some(asid) = g.binding.asid() {
                self.sev_release_asid(st, asid);
            }
        }
        if st.snp == PlatformState::Uninit {
            st.asids.mark_all_dirty();
            self.soc.clear_wbinvd_done();
        }
        st.sev.handles = Default::default();
        st.sev.tmr = None;
        st.sev.es = false;
        st.sev.identity = None;
        st.sev.cek = None;
        st.sev.platform = SevPlatformState::Uninit;
        tracing::info!("legacy SEV platform shut down");
        Ok(())
    }

    /// Deactivate `asid` as the firmware's bitmaps do: an ASID that ran (InUse) is Dirty
    /// until WBINVD + DF_FLUSH, one that never ran (Allocated) is Clean at once.
    pub(crate) fn sev_release_asid(&self, st: &mut State, asid: u32) {
        match st.asids.get(asid) {
            Some(AsidState::InUse) => {
                let _ = self.soc.deactivate_key(Asid(asid));
                st.asids.set(asid, AsidState::Dirty);
            }
            Some(AsidState::Allocated) => {
                let _ = self.soc.release_unused_key(Asid(asid));
                st.asids.set(asid, AsidState::Clean);
            }
            _ => {}
        }
    }

    /// PLATFORM_RESET (FACTORY_RESET, §1.5): UNINIT only; the persistent store the next
    /// INIT reads is cleared (the SPI store, and the NV buffer of the last INIT_EX,
    /// erased to 0xFF — a model choice, docs/firmware-sev.md).
    pub(crate) fn sev_platform_reset(&self, st: &mut State) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Uninit])?;
        if let Some((paddr, len)) = st.sev.last_nv {
            self.sev_writable(st, paddr, u64::from(len))?;
            self.write_plain(paddr, &vec![0xFF; len as usize])?;
        }
        st.sev.spi = None;
        Ok(())
    }

    /// PLATFORM_STATUS (§1.6): the 12 bytes in the command buffer, any state.
    pub(crate) fn sev_platform_status(
        &self,
        st: &mut State,
        out: &mut SevPlatformStatus,
    ) -> CmdResult {
        let v = st.current.version;
        let up = st.sev.platform != SevPlatformState::Uninit;
        let owner = u32::from(up && st.sev.identity.as_ref().is_some_and(|i| i.owned));
        let config_es = u32::from(up && st.sev.es);
        *out = SevPlatformStatus {
            api_major: v.major,
            api_minor: v.minor,
            state: st.sev.platform as u8,
            flags: owner | (config_es << 8),
            build: v.build,
            guest_count: if up {
                u32::try_from(st.sev.guests.len()).unwrap_or(u32::MAX)
            } else {
                0
            },
        };
        Ok(())
    }

    /// The running identity (present in INIT and WORKING).
    fn sev_identity<'a>(&self, st: &'a mut State) -> CmdResult<&'a mut SevIdentity> {
        Ok(st
            .sev
            .identity
            .as_mut()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?)
    }

    /// A copy of the running identity (through the store form), to change and persist
    /// before it replaces the running one: a failed persist changes nothing.
    fn sev_identity_copy(&self, st: &State) -> CmdResult<SevIdentity> {
        let id = st
            .sev
            .identity
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        Ok(SevIdentity::from_store(&id.to_store())
            .map_err(|_| ModelFault::Chip("re-reading the SEV identity store".into()))?)
    }

    /// PEK_GEN (§1.7): INIT only; a new self-owned OCA, a new PEK and PDH, persisted;
    /// on failure nothing changes.
    pub(crate) fn sev_pek_gen(&self, st: &mut State) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init])?;
        let api = st.current.version;
        let cek = st.sev.cek.take().ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        let id = SevIdentity::generate(&mut st.rng, &cek, api);
        st.sev.cek = Some(cek);
        self.sev_persist(st, &id)?;
        st.sev.identity = Some(id);
        Ok(())
    }

    /// PDH_GEN (§1.7): INIT or WORKING; a new PDH signed by the PEK, persisted. Live
    /// guests keep their channels.
    pub(crate) fn sev_pdh_gen(&self, st: &mut State) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        let api = st.current.version;
        let mut id = self.sev_identity_copy(st)?;
        id.regenerate_pdh(&mut st.rng, api);
        self.sev_persist(st, &id)?;
        st.sev.identity = Some(id);
        Ok(())
    }

    /// PEK_CSR (§1.7): INIT or WORKING; `csr_len` < 0x824 → INVALID_LENGTH with the
    /// length written back; else the current PEK body with both signature slots empty.
    pub(crate) fn sev_pek_csr(&self, st: &mut State, b: &mut SevPekCsr) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        if (b.len as usize) < CERT_LEN {
            b.len = CERT_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.address, CERT_LEN as u64)?;
        let mut csr = self.sev_identity(st)?.pek;
        csr.sig1 = SevSigSlot::empty();
        csr.sig2 = SevSigSlot::empty();
        self.write_plain(b.address, csr.as_bytes())?;
        b.len = CERT_LEN as u32;
        Ok(())
    }

    /// PEK_CERT_IMPORT (§1.7), in the firmware's order: externally owned →
    /// ALREADY_OWNED; a length ≠ 0x824 → INVALID_LENGTH; OCA self-signature, PEK←OCA
    /// (§2.3 statuses); PEK body ≠ the current PEK's → INVALID_CERTIFICATE; the CEK's
    /// signature goes into the imported PEK's free slot (none → INVALID_CERTIFICATE).
    /// Then PEK and OCA are stored, the owner bit set, a new PDH made, all persisted;
    /// any failure restores the previous state.
    pub(crate) fn sev_pek_cert_import(&self, st: &mut State, b: SevPekCertImport) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init])?;
        if self.sev_identity(st)?.owned {
            return Err(FwStatus::ALREADY_OWNED.into());
        }
        if b.pek_cert_len as usize != CERT_LEN || b.oca_cert_len as usize != CERT_LEN {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let mut pek = SevCert::new_zeroed();
        self.read_plain(b.pek_cert_address, pek.as_mut_bytes())?;
        let mut oca = SevCert::new_zeroed();
        self.read_plain(b.oca_cert_address, oca.as_mut_bytes())?;
        let oca_signer = SevSigner::from_cert(&oca)?;
        sev_cert_validate(&oca, &oca_signer)?;
        sev_cert_validate(&pek, &oca_signer)?;
        let api = st.current.version;
        let id = self.sev_identity(st)?;
        if pek.body() != id.pek.body() {
            return Err(FwStatus::INVALID_CERTIFICATE.into());
        }
        let cek_slot = [id.pek.sig1, id.pek.sig2]
            .into_iter()
            .find(|s| SevUsage(s.usage) == SevUsage::CEK)
            .ok_or(FwStatus::INVALID_CERTIFICATE)?;
        if pek.sig1.is_empty() {
            pek.sig1 = cek_slot;
        } else if pek.sig2.is_empty() {
            pek.sig2 = cek_slot;
        } else {
            return Err(FwStatus::INVALID_CERTIFICATE.into());
        }
        let mut new = self.sev_identity_copy(st)?;
        new.import_owner(pek, oca);
        new.regenerate_pdh(&mut st.rng, api);
        self.sev_persist(st, &new)?;
        st.sev.identity = Some(new);
        Ok(())
    }

    /// PDH_CERT_EXPORT (§1.7): INIT or WORKING; `pdh_len` < 0x824 or `chain_len` <
    /// 0x186C → INVALID_LENGTH with both lengths written back; else the PDH and
    /// PEK ‖ OCA ‖ CEK, the CEK unsigned (§0.2-9).
    pub(crate) fn sev_pdh_cert_export(
        &self,
        st: &mut State,
        b: &mut SevPdhCertExport,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        if (b.pdh_cert_len as usize) < CERT_LEN || (b.cert_chain_len as usize) < SEV_PDH_CHAIN_LEN {
            b.pdh_cert_len = CERT_LEN as u32;
            b.cert_chain_len = SEV_PDH_CHAIN_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.pdh_cert_address, CERT_LEN as u64)?;
        self.sev_writable(st, b.cert_chain_address, SEV_PDH_CHAIN_LEN as u64)?;
        let api = st.current.version;
        let cek = st
            .sev
            .cek
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        let cek_cert = ident::ecc_cert(SevUsage::CEK, SevAlgo::ECDSA_SHA256, api, cek.public());
        let id = st
            .sev
            .identity
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        let mut chain = Vec::with_capacity(SEV_PDH_CHAIN_LEN);
        for c in [&id.pek, &id.oca, &cek_cert] {
            chain.extend_from_slice(c.as_bytes());
        }
        let pdh = id.pdh;
        self.write_plain(b.pdh_cert_address, pdh.as_bytes())?;
        self.write_plain(b.cert_chain_address, &chain)?;
        b.pdh_cert_len = CERT_LEN as u32;
        b.cert_chain_len = SEV_PDH_CHAIN_LEN as u32;
        Ok(())
    }

    /// GET_ID (§1.8): any state; `len` < 64 → INVALID_LENGTH with `len` = 64; else the
    /// 64 bytes of this socket (the model has one: a 128-byte buffer gets 64).
    pub(crate) fn sev_get_id(&self, st: &mut State, b: &mut SevGetId) -> CmdResult {
        if (b.len as usize) < SEV_GET_ID_LEN {
            b.len = SEV_GET_ID_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.address, SEV_GET_ID_LEN as u64)?;
        self.write_plain(b.address, &self.chip.sev_get_id())?;
        b.len = SEV_GET_ID_LEN as u32;
        Ok(())
    }
}
