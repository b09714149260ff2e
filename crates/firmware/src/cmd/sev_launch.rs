//! Legacy SEV / SEV-ES launch, attestation and debug (shared/spec/sev-legacy.md §3, §4,
//! §6.1; ASPFW `sev_mcmd_launch_*`, `launch_update_common`, `sev_es_setup_vmsa`,
//! `sev_guest_measure`, `sev_channel.c`, `sev_mcmd_attestation`, `debug_crypt_common`).
//!
//! A guest's memory is encrypted with its VEK through the SoC, once ACTIVATE installed
//! the key for its ASID (a pending activation counts: the key is there).

use crate::error::CmdResult;
use crate::fw::Firmware;
use crate::sev_ctx::{Channel, POLICY_ES, POLICY_NODBG, SevBinding, SevGuest};
use crate::state::{AsidState, SevPlatformState, State};
use softsev_abi::sev_buf::{
    SEV_MEASURE_LEN, SEV_PACKET_HEADER_LEN, SEV_REPORT_LEN, SEV_SCRATCH_LEN,
    SEV_SECRET_FLAG_COMPRESSED, SEV_SESSION_LEN, SevAttestation, SevDbgDecrypt, SevDbgEncrypt,
    SevGuestState, SevLaunchFinish, SevLaunchMeasure, SevLaunchSecret, SevLaunchStart,
    SevLaunchUpdateData, SevLaunchUpdateVmsa, SevPacketHeader,
};
use softsev_abi::sev_cert::{SevAlgo, SevUsage};
use softsev_abi::{Asid, FwStatus};
use softsev_crypto::ct::ct_eq;
use softsev_crypto::hash::sha256;
use softsev_crypto::sev::{aes128_ctr, launch_measure, secret_packet_mac};
use softsev_measure::SevDigest;
use softsev_soc::KeySel;
use zerocopy::{FromZeros, IntoBytes};
use zeroize::{Zeroize, Zeroizing};

use crate::sev_ctx::{VMSA_CRC_SPAN, VMSA_LEN, VMSA_STAMP_CRC, VMSA_STAMP_ZERO};

/// Which way a debug command copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dbg {
    Decrypt,
    Encrypt,
}

impl Firmware {
    /// LAUNCH_START (§3.1), in the firmware's order; returns the new handle in the
    /// buffer (written back on success only).
    pub(crate) fn sev_launch_start(&self, st: &mut State, b: &mut SevLaunchStart) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        let policy = b.policy;
        // 1. the channel.
        let (tek, tik) = if b.dh_cert_address != 0 {
            if b.session_len as usize != SEV_SESSION_LEN {
                return Err(FwStatus::INVALID_LENGTH.into());
            }
            if b.dh_cert_len as usize != crate::identity::sev::CERT_LEN {
                return Err(FwStatus::INVALID_LENGTH.into());
            }
            self.sev_server_channel(st, b.dh_cert_address, b.session_address, policy)?
        } else {
            // §0.2-4: no session, all-zero channel, no policy check.
            (Zeroizing::new([0u8; 16]), Zeroizing::new([0u8; 16]))
        };
        // 2. the memory key: fresh, or shared with the guest `handle` names.
        let vek = self.sev_new_vek(st, b.handle, policy)?;
        // 3. a handle.
        let handle = st.sev.handles.allocate()?;
        // 4. ES needs an ES platform.
        if policy & POLICY_ES != 0 && !st.sev.es {
            st.sev.handles.release(handle);
            return Err(FwStatus::UNSUPPORTED.into());
        }
        // 5. (The OEK for SWAP_OUT/IN is not drawn: swapping is not modelled.)
        // 6. LUPDATE, WORKING.
        st.sev.guests.insert(
            handle,
            SevGuest {
                state: SevGuestState::LUPDATE,
                policy,
                vek,
                binding: SevBinding::None,
                channel: Some(Channel {
                    tek,
                    tik,
                    measure: None,
                }),
                digest: Some(SevDigest::new()),
                ld: [0; 32],
                crc_blocks: Vec::new(),
                oek: None,
            },
        );
        st.sev.platform = SevPlatformState::Working;
        b.handle = handle.get();
        Ok(())
    }

    /// The ASID whose key the guest's memory goes through: bound (pending or active),
    /// else INACTIVE.
    fn sev_key_asid(g: &SevGuest) -> CmdResult<u32> {
        Ok(g.binding.asid().ok_or(FwStatus::INACTIVE)?)
    }

    /// LAUNCH_UPDATE_DATA (§3.3): WORKING; handle; not LUPDATE → INVALID_GUEST_STATE;
    /// inactive → INACTIVE; `address` not 16-aligned → INVALID_ADDRESS; `len` 0 or not
    /// 16-aligned → INVALID_LENGTH. In chunks of ≤ 0x5000 bytes the plaintext extends
    /// the launch digest and is encrypted in place with the guest key.
    pub(crate) fn sev_launch_update_data(
        &self,
        st: &mut State,
        b: SevLaunchUpdateData,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, b.handle)?;
        if g.state != SevGuestState::LUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let asid = Self::sev_key_asid(g)?;
        if b.address & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        if b.len == 0 || b.len & 0xF != 0 {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.address, u64::from(b.len))?;
        let mut chunk = vec![0u8; SEV_SCRATCH_LEN];
        let mut done = 0u64;
        let total = u64::from(b.len);
        while done < total {
            let n = (total - done).min(SEV_SCRATCH_LEN as u64) as usize;
            let spa = b.address + done;
            let buf = &mut chunk[..n];
            self.read_plain(spa, buf)?;
            let g = self.sev_guest(st, b.handle)?;
            if let Some(d) = g.digest.as_mut() {
                d.update(buf);
            }
            self.write_with(spa, KeySel::Guest(Asid(asid)), buf)?;
            done += n as u64;
        }
        chunk.zeroize();
        Ok(())
    }

    /// LAUNCH_UPDATE_VMSA (§3.3): as UPDATE_DATA, for an ES guest only (UNSUPPORTED
    /// otherwise), `len` must be 4096 (checked before the address). The unaltered VMSA
    /// extends the digest; a TMR integrity block is taken (none → RESOURCE_LIMIT), the
    /// page gets u64 0 at 0x380 and the block's address at 0x388, and is encrypted.
    pub(crate) fn sev_launch_update_vmsa(
        &self,
        st: &mut State,
        b: SevLaunchUpdateVmsa,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, b.handle)?;
        if g.state != SevGuestState::LUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        if !g.is_es() {
            return Err(FwStatus::UNSUPPORTED.into());
        }
        let asid = Self::sev_key_asid(g)?;
        if b.len as usize != VMSA_LEN {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        if b.address & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        self.sev_writable(st, b.address, VMSA_LEN as u64)?;
        let mut vmsa = Zeroizing::new(vec![0u8; VMSA_LEN]);
        self.read_plain(b.address, &mut vmsa)?;
        let mut stamped = vmsa.clone();
        stamped[VMSA_STAMP_ZERO..VMSA_STAMP_ZERO + 8].fill(0);
        let tmr = st.sev.tmr.as_mut().ok_or(FwStatus::UNSUPPORTED)?;
        // The block's address goes into the VMSA before the integrity value is taken,
        // so reserve the block first and fill it in once the page is final.
        let idx = tmr.allocate([0; 32]).ok_or(FwStatus::RESOURCE_LIMIT)?;
        let pa = tmr.block_pa(idx);
        stamped[VMSA_STAMP_CRC..VMSA_STAMP_CRC + 8].copy_from_slice(&pa.to_le_bytes());
        tmr.blocks.insert(idx, sha256(&stamped[..VMSA_CRC_SPAN]));
        let g = self.sev_guest(st, b.handle)?;
        g.crc_blocks.push(idx);
        if let Some(d) = g.digest.as_mut() {
            d.update(&vmsa);
        }
        self.write_with(b.address, KeySel::Guest(Asid(asid)), &stamped)
    }

    /// LAUNCH_MEASURE (§3.4): WORKING; handle; not LUPDATE → INVALID_GUEST_STATE;
    /// `len` < 48 → INVALID_LENGTH with `len` = 48 written back. The digest is
    /// finalised, a random mnonce drawn, measure = HMAC(TIK, 0x04 ‖ API ‖ build ‖ policy
    /// ‖ LD ‖ mnonce), measure ‖ mnonce written; → LSECRET.
    pub(crate) fn sev_launch_measure(&self, st: &mut State, b: &mut SevLaunchMeasure) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let v = st.current.version;
        let g = self.sev_guest(st, b.handle)?;
        if g.state != SevGuestState::LUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        if (b.len as usize) < SEV_MEASURE_LEN {
            b.len = SEV_MEASURE_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.address, SEV_MEASURE_LEN as u64)?;
        let mnonce = st.rng.array::<16>();
        let g = self.sev_guest(st, b.handle)?;
        let ld = g.digest.clone().unwrap_or_default().finish();
        let ch = g.channel.as_mut().ok_or(FwStatus::INVALID_GUEST_STATE)?;
        let measure = launch_measure(&ch.tik, v.major, v.minor, v.build, g.policy, &ld, &mnonce);
        let mut blob = [0u8; SEV_MEASURE_LEN];
        blob[..32].copy_from_slice(&measure);
        blob[32..].copy_from_slice(&mnonce);
        self.write_plain(b.address, &blob)?;
        let g = self.sev_guest(st, b.handle)?;
        if let Some(ch) = g.channel.as_mut() {
            ch.measure = Some(measure);
        }
        g.digest = None;
        g.ld = ld;
        g.state = SevGuestState::LSECRET;
        b.len = SEV_MEASURE_LEN as u32;
        Ok(())
    }

    /// LAUNCH_SECRET (§3.5), in the firmware's order: WORKING; handle; `guest_address`
    /// not 16-aligned → INVALID_ADDRESS; `hdr_len` ≠ 52, `guest_len` 0 / not 16-aligned
    /// / > 0x5000 or ≠ `trans_len` → INVALID_LENGTH; not LSECRET → INVALID_GUEST_STATE;
    /// inactive → INACTIVE; the header MAC → BAD_MEASUREMENT; COMPRESSED → UNSUPPORTED
    /// (after the MAC); the plaintext is written with the guest key.
    pub(crate) fn sev_launch_secret(&self, st: &mut State, b: SevLaunchSecret) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        self.sev_guest(st, b.handle)?;
        if b.guest_address & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        let glen = b.guest_len as usize;
        if b.hdr_len as usize != SEV_PACKET_HEADER_LEN
            || glen == 0
            || glen & 0xF != 0
            || glen > SEV_SCRATCH_LEN
            || b.guest_len != b.trans_len
        {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let g = self.sev_guest(st, b.handle)?;
        if g.state != SevGuestState::LSECRET {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let asid = Self::sev_key_asid(g)?;
        let mut hdr = SevPacketHeader::new_zeroed();
        self.read_plain(b.hdr_address, hdr.as_mut_bytes())?;
        let mut data = Zeroizing::new(vec![0u8; glen]);
        self.read_plain(b.trans_address, &mut data)?;
        let g = self.sev_guest(st, b.handle)?;
        let ch = g.channel.as_ref().ok_or(FwStatus::INVALID_GUEST_STATE)?;
        let measure = ch.measure.ok_or(FwStatus::INVALID_GUEST_STATE)?;
        let mac = secret_packet_mac(
            &ch.tik,
            hdr.flags,
            &hdr.iv,
            b.guest_len,
            b.trans_len,
            &data,
            &measure,
        );
        if !ct_eq(&mac, &hdr.mac) {
            return Err(FwStatus::BAD_MEASUREMENT.into());
        }
        aes128_ctr(&ch.tek, &hdr.iv, &mut data);
        if hdr.flags & SEV_SECRET_FLAG_COMPRESSED != 0 {
            return Err(FwStatus::UNSUPPORTED.into());
        }
        self.sev_writable(st, b.guest_address, glen as u64)?;
        self.write_with(b.guest_address, KeySel::Guest(Asid(asid)), &data)
    }

    /// LAUNCH_FINISH (§3.6): WORKING; handle; not LSECRET → INVALID_GUEST_STATE. A
    /// pending activation becomes valid (InUse), the channel is wiped, → RUNNING.
    pub(crate) fn sev_launch_finish(&self, st: &mut State, b: SevLaunchFinish) -> CmdResult {
        self.sev_finish_to_running(st, b.handle, SevGuestState::LSECRET)
    }

    /// The end of LAUNCH_FINISH and RECEIVE_FINISH (§3.6, §5.5): WORKING; handle; the
    /// guest must be in `from` (else INVALID_GUEST_STATE); a pending activation becomes
    /// valid (InUse), the channel is wiped, → RUNNING.
    pub(crate) fn sev_finish_to_running(
        &self,
        st: &mut State,
        handle: u32,
        from: SevGuestState,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, handle)?;
        if g.state != from {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let pending = match g.binding {
            SevBinding::Pending(a) => {
                g.binding = SevBinding::Active(a);
                Some(a)
            }
            _ => None,
        };
        g.channel = None;
        g.state = SevGuestState::RUNNING;
        if let Some(a) = pending {
            st.asids.set(a, AsidState::InUse);
        }
        Ok(())
    }

    /// ATTESTATION (§4): WORKING; handle; state not LSECRET/RUNNING/SUPDATE/SENT →
    /// INVALID_GUEST_STATE; `len` < 0xD0 → INVALID_LENGTH with `len` = 0xD0. The report
    /// carries the caller's mnonce, LD, policy, the PEK's usage/algo and the PEK's
    /// ECDSA P-384 signature over SHA-256 of bytes 0x00..0x34.
    pub(crate) fn sev_attestation(&self, st: &mut State, b: &mut SevAttestation) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, b.handle)?;
        if !matches!(
            g.state,
            SevGuestState::LSECRET
                | SevGuestState::RUNNING
                | SevGuestState::SUPDATE
                | SevGuestState::SENT
        ) {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let (ld, policy) = (g.ld, g.policy);
        if (b.len as usize) < SEV_REPORT_LEN {
            b.len = SEV_REPORT_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        self.sev_writable(st, b.address, SEV_REPORT_LEN as u64)?;
        let mut r = [0u8; SEV_REPORT_LEN];
        r[0x00..0x10].copy_from_slice(&b.mnonce);
        r[0x10..0x30].copy_from_slice(&ld);
        r[0x30..0x34].copy_from_slice(&policy.to_le_bytes());
        r[0x34..0x38].copy_from_slice(&SevUsage::PEK.0.to_le_bytes());
        r[0x38..0x3C].copy_from_slice(&SevAlgo::ECDSA_SHA256.0.to_le_bytes());
        let id = st
            .sev
            .identity
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        let sig = id
            .pek_key()
            .sign_digest_sha256_with_rng(&mut st.rng, &r[..0x34]);
        // r then s, each a 72-byte little-endian field (§4, §2.1).
        let (mut rr, mut ss) = (sig.r, sig.s);
        rr.reverse();
        ss.reverse();
        r[0x40..0x40 + 48].copy_from_slice(&rr);
        r[0x40 + 72..0x40 + 72 + 48].copy_from_slice(&ss);
        self.write_plain(b.address, &r)?;
        b.len = SEV_REPORT_LEN as u32;
        Ok(())
    }

    pub(crate) fn sev_dbg_decrypt(&self, st: &mut State, b: SevDbgDecrypt) -> CmdResult {
        self.sev_dbg(st, b.handle, b.src_addr, b.dst_addr, b.len, Dbg::Decrypt)
    }

    pub(crate) fn sev_dbg_encrypt(&self, st: &mut State, b: SevDbgEncrypt) -> CmdResult {
        self.sev_dbg(st, b.handle, b.src_addr, b.dst_addr, b.len, Dbg::Encrypt)
    }

    /// DBG_DECRYPT / DBG_ENCRYPT (§6.1), in the firmware's order: WORKING; `src` or
    /// `dst` not 16-aligned → INVALID_ADDRESS; `len` not 16-aligned (or 0, a model
    /// choice) → INVALID_LENGTH; handle → INVALID_GUEST; NODBG → POLICY_FAILURE; with
    /// SNP, `dst` firmware-writable; no ASID → INACTIVE. No guest-state check.
    fn sev_dbg(
        &self,
        st: &mut State,
        handle: u32,
        src: u64,
        dst: u64,
        len: u32,
        dir: Dbg,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        if src & 0xF != 0 || dst & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        if len == 0 || len & 0xF != 0 {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let g = self.sev_guest(st, handle)?;
        if g.policy & POLICY_NODBG != 0 {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        let binding = g.binding;
        self.sev_writable(st, dst, u64::from(len))?;
        let asid = binding.asid().ok_or(FwStatus::INACTIVE)?;
        let key = KeySel::Guest(Asid(asid));
        let mut chunk = vec![0u8; SEV_SCRATCH_LEN];
        let mut done = 0u64;
        let total = u64::from(len);
        let mut r = Ok(());
        while done < total && r.is_ok() {
            let n = (total - done).min(SEV_SCRATCH_LEN as u64) as usize;
            let buf = &mut chunk[..n];
            r = match dir {
                Dbg::Decrypt => self
                    .read_with(src + done, key, buf)
                    .and_then(|()| self.write_plain(dst + done, buf)),
                Dbg::Encrypt => self
                    .read_plain(src + done, buf)
                    .and_then(|()| self.write_with(dst + done, key, buf)),
            };
            done += n as u64;
        }
        chunk.zeroize();
        r
    }
}
