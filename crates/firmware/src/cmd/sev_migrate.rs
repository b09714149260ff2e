//! Legacy SEV / SEV-ES migration: SEND_START, SEND_UPDATE_DATA, SEND_UPDATE_VMSA,
//! SEND_FINISH, SEND_CANCEL, RECEIVE_START, RECEIVE_UPDATE_DATA, RECEIVE_UPDATE_VMSA,
//! RECEIVE_FINISH (shared/spec/sev-legacy.md §5.1–§5.5, state tables §1.3 and §3.7;
//! ASPFW `sev_mcmd_send_start`, `validate_platform`, `validate_domain`,
//! `sev_mcmd_send_update`, `sev_mcmd_receive_*`, `sev_channel_open_client`,
//! `ccp_direct_cipher.c:aesctr_hmac256_encrypt/_decrypt`). Checks run in the
//! firmware's order; every packet is AES-128-CTR under the TEK with a random IV and
//! HMAC-SHA256 under the TIK over the 29-byte AAD (ctx 2) and the ciphertext (§5.3).
//!
//! The session a source builds is exactly the one a guest owner builds for
//! LAUNCH_START (the source firmware is the DH "client": its own PDH key and the
//! target's PDH); the target opens it with the same server code as LAUNCH_START.

use crate::error::CmdResult;
use crate::fw::Firmware;
use crate::identity::sev::{
    CERT_LEN, SevSigner, sev_cert_sanity_check, sev_cert_validate, validate_amd_certs,
};
use crate::sev_ctx::{
    Channel, POLICY_ES, POLICY_NOKS, POLICY_RESERVED, SevBinding, SevGuest, VMSA_CRC_SPAN,
    VMSA_LEN, VMSA_STAMP_CRC, VMSA_STAMP_ZERO,
};
use crate::state::{SevPlatformState, State};
use softsev_abi::sev_buf::{
    SEV_PACKET_HEADER_LEN, SEV_PDH_CHAIN_LEN, SEV_SCRATCH_LEN, SEV_SECRET_FLAG_COMPRESSED,
    SEV_SESSION_LEN, SevGuestState, SevPacketHeader, SevReceiveFinish, SevReceiveStart,
    SevReceiveUpdateData, SevSendCancel, SevSendFinish, SevSendStart, SevSendUpdateData,
    SevSession,
};
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevUsage};
use softsev_abi::{Asid, FwStatus};
use softsev_crypto::ct::ct_eq;
use softsev_crypto::hash::sha256;
use softsev_crypto::sev::{
    SevKey, aes128_ctr, derive_session_secrets, policy_mac, transport_packet_mac,
    unwrap_transport_keys, wrap_transport_keys,
};
use softsev_soc::KeySel;
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

/// Policy bit 3: the guest may not be sent (§3.8).
const POLICY_NOSEND: u32 = 1 << 3;
/// Policy bit 4: send only to a platform of the same owner (OCA, §3.8).
const POLICY_DOMAIN: u32 = 1 << 4;
/// Policy bit 5: send only to an AMD platform with at least the policy's API (§3.8).
const POLICY_SEV: u32 = 1 << 5;

/// The C-bit of the modelled parts (CPUID Fn8000_001F EBX[5:0] = 51): KVM sets it in
/// the guest address of SEND/RECEIVE_UPDATE_* (§7.2); the firmware ignores it (§5.2).
const C_BIT: u64 = 1 << 51;

/// The transport-shape buffer of the four UPDATE commands, by value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transport {
    pub(crate) handle: u32,
    pub(crate) hdr_address: u64,
    pub(crate) hdr_len: u32,
    pub(crate) guest_address: u64,
    pub(crate) guest_len: u32,
    pub(crate) trans_address: u64,
    pub(crate) trans_len: u32,
}

/// Data page or VMSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    Data,
    Vmsa,
}

macro_rules! transport_from {
    ($($t:ty),*) => {$(
        impl From<&$t> for Transport {
            fn from(b: &$t) -> Transport {
                Transport {
                    handle: b.handle,
                    hdr_address: b.hdr_address,
                    hdr_len: b.hdr_len,
                    guest_address: b.guest_address,
                    guest_len: b.guest_len,
                    trans_address: b.trans_address,
                    trans_len: b.trans_len,
                }
            }
        }
    )*};
}
transport_from!(
    SevSendUpdateData,
    softsev_abi::sev_buf::SevSendUpdateVmsa,
    SevReceiveUpdateData,
    softsev_abi::sev_buf::SevReceiveUpdateVmsa
);

impl Firmware {
    /// The server side of a session (LAUNCH_START with a GODH, RECEIVE_START; §3.1
    /// step 1): own PDH must be a PDH key (INVALID_CERTIFICATE), the peer's DH
    /// certificate sanity (INVALID_CERTIFICATE), Z = ECDH, master/KEK/KIK, the wrap MAC
    /// then TEK ‖ TIK (BAD_MEASUREMENT), the policy MAC (BAD_MEASUREMENT), the policy's
    /// API against the firmware's and its reserved bits (POLICY_FAILURE).
    pub(crate) fn sev_server_channel(
        &self,
        st: &State,
        dh_address: u64,
        session_address: u64,
        policy: u32,
    ) -> CmdResult<(SevKey, SevKey)> {
        let v = st.current.version;
        let id = st
            .sev
            .identity
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        if id.pdh.usage() != SevUsage::PDH
            || !matches!(id.pdh.algo(), SevAlgo::ECDH_SHA256 | SevAlgo::ECDH_SHA384)
        {
            return Err(FwStatus::INVALID_CERTIFICATE.into());
        }
        let mut peer = SevCert::new_zeroed();
        self.read_plain(dh_address, peer.as_mut_bytes())?;
        let mut session = SevSession::new_zeroed();
        self.read_plain(session_address, session.as_mut_bytes())?;
        sev_cert_sanity_check(&peer, SevUsage::PDH, SevAlgo::ECDH_SHA256)?;
        let p = peer.ecc_pubkey().ok_or(FwStatus::INVALID_CERTIFICATE)?;
        let z = id
            .pdh_key()
            .shared_x_be(&p.x, &p.y)
            .map_err(|_| FwStatus::INVALID_CERTIFICATE)?;
        let s = derive_session_secrets(&z, &session.nonce);
        let (tek, tik) = unwrap_transport_keys(
            &s.kek,
            &s.kik,
            &session.wrap_iv,
            &session.wrap_tk,
            &session.wrap_mac,
        )
        .map_err(|_| FwStatus::BAD_MEASUREMENT)?;
        if !ct_eq(&policy_mac(&tik, policy), &session.policy_mac) {
            return Err(FwStatus::BAD_MEASUREMENT.into());
        }
        let (p_major, p_minor) = ((policy >> 16) as u8, (policy >> 24) as u8);
        if (p_major, p_minor) > (v.major, v.minor) {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        if policy & POLICY_RESERVED != 0 {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        Ok((tek, tik))
    }

    /// The memory key of a new context (§3.1 step 2): fresh for `handle` 0, else the
    /// VEK of the live guest `handle` names (INVALID_GUEST), whose policy must equal
    /// `policy` and allow sharing (POLICY_FAILURE).
    pub(crate) fn sev_new_vek(
        &self,
        st: &mut State,
        handle: u32,
        policy: u32,
    ) -> CmdResult<Zeroizing<[u8; 16]>> {
        if handle == 0 {
            let mut k = Zeroizing::new([0u8; 16]);
            st.rng.fill(&mut k[..]);
            return Ok(k);
        }
        let other = self.sev_guest(st, handle)?;
        if other.policy != policy || other.policy & POLICY_NOKS != 0 {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        Ok(other.vek.clone())
    }

    /// SEND_START (§5.1), in the firmware's order: WORKING; handle → INVALID_GUEST;
    /// `session_len` ≠ 128 → INVALID_LENGTH with 128 written back; not RUNNING →
    /// INVALID_GUEST_STATE; NOSEND → POLICY_FAILURE; SEV: lengths, ARK (pinned) → ASK →
    /// CEK → PEK → PDH, the PEK's API against the policy's (POLICY_FAILURE); DOMAIN:
    /// lengths, OCA self-signed, PEK ← OCA, PDH ← PEK, the OCA byte-identical to this
    /// platform's (POLICY_FAILURE); neither: only `pdh_len`. Then the client channel:
    /// fresh TEK, TIK, nonce and wrap IV, Z = ECDH(own PDH, target PDH), the session
    /// written, `policy` returned, → SUPDATE.
    pub(crate) fn sev_send_start(&self, st: &mut State, b: &mut SevSendStart) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, b.handle)?;
        if b.session_len as usize != SEV_SESSION_LEN {
            b.session_len = SEV_SESSION_LEN as u32;
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        if g.state != SevGuestState::RUNNING {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let policy = g.policy;
        if policy & POLICY_NOSEND != 0 {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        let chain_lengths_ok =
            b.plat_certs_len as usize == SEV_PDH_CHAIN_LEN && b.pdh_cert_len as usize == CERT_LEN;
        let mut pdh = SevCert::new_zeroed();
        let (mut pek, mut oca, mut cek) = (
            SevCert::new_zeroed(),
            SevCert::new_zeroed(),
            SevCert::new_zeroed(),
        );
        if policy & (POLICY_SEV | POLICY_DOMAIN) != 0 {
            if !chain_lengths_ok {
                return Err(FwStatus::INVALID_LENGTH.into());
            }
            self.read_plain(b.pdh_cert_address, pdh.as_mut_bytes())?;
            let base = b.plat_certs_address;
            self.read_plain(base, pek.as_mut_bytes())?;
            self.read_plain(base + CERT_LEN as u64, oca.as_mut_bytes())?;
            self.read_plain(base + 2 * CERT_LEN as u64, cek.as_mut_bytes())?;
        } else if b.pdh_cert_len as usize != CERT_LEN {
            return Err(FwStatus::INVALID_LENGTH.into());
        } else {
            self.read_plain(b.pdh_cert_address, pdh.as_mut_bytes())?;
        }
        if policy & POLICY_SEV != 0 {
            // `validate_platform`: the target is an AMD platform (chain to the fused
            // ARK) with at least the API the policy asks for.
            let len = b.amd_certs_len as usize;
            if !softsev_abi::sev_cert::amd_certs_len_is_valid(len) {
                return Err(FwStatus::INVALID_LENGTH.into());
            }
            let mut amd = vec![0u8; len];
            self.read_plain(b.amd_certs_address, &mut amd)?;
            let ask = validate_amd_certs(&amd, &self.sev_pinned_ark())?;
            sev_cert_validate(&cek, &ask)?;
            sev_cert_validate(&pek, &SevSigner::from_cert(&cek)?)?;
            sev_cert_validate(&pdh, &SevSigner::from_cert(&pek)?)?;
            let (p_major, p_minor) = ((policy >> 16) as u8, (policy >> 24) as u8);
            if (pek.api_major, pek.api_minor) < (p_major, p_minor) {
                return Err(FwStatus::POLICY_FAILURE.into());
            }
        }
        if policy & POLICY_DOMAIN != 0 {
            // `validate_domain`: the target has this platform's owner.
            let oca_signer = SevSigner::from_cert(&oca)?;
            sev_cert_validate(&oca, &oca_signer)?;
            sev_cert_validate(&pek, &oca_signer)?;
            sev_cert_validate(&pdh, &SevSigner::from_cert(&pek)?)?;
            let own = st
                .sev
                .identity
                .as_ref()
                .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
            if oca.as_bytes() != own.oca.as_bytes() {
                return Err(FwStatus::POLICY_FAILURE.into());
            }
        }
        // `sev_channel_open_client`.
        let id = st
            .sev
            .identity
            .as_ref()
            .ok_or(FwStatus::INVALID_PLATFORM_STATE)?;
        if id.pdh.usage() != SevUsage::PDH
            || !matches!(id.pdh.algo(), SevAlgo::ECDH_SHA256 | SevAlgo::ECDH_SHA384)
        {
            return Err(FwStatus::INVALID_CERTIFICATE.into());
        }
        sev_cert_sanity_check(&pdh, SevUsage::PDH, SevAlgo::ECDH_SHA256)?;
        let p = pdh.ecc_pubkey().ok_or(FwStatus::INVALID_CERTIFICATE)?;
        let z = id
            .pdh_key()
            .shared_x_be(&p.x, &p.y)
            .map_err(|_| FwStatus::INVALID_CERTIFICATE)?;
        self.sev_writable(st, b.session_address, SEV_SESSION_LEN as u64)?;
        let tek = Zeroizing::new(st.rng.array::<16>());
        let tik = Zeroizing::new(st.rng.array::<16>());
        let nonce = st.rng.array::<16>();
        let wrap_iv = st.rng.array::<16>();
        let s = derive_session_secrets(&z, &nonce);
        let (wrap_tk, wrap_mac) = wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &tek, &tik);
        let session = SevSession {
            nonce,
            wrap_tk,
            wrap_iv,
            wrap_mac,
            policy_mac: policy_mac(&tik, policy),
        };
        self.write_plain(b.session_address, session.as_bytes())?;
        let g = self.sev_guest(st, b.handle)?;
        g.channel = Some(Channel {
            tek,
            tik,
            measure: None,
        });
        g.state = SevGuestState::SUPDATE;
        b.policy = policy;
        b.session_len = SEV_SESSION_LEN as u32;
        Ok(())
    }

    /// SEND_UPDATE_DATA / SEND_UPDATE_VMSA (§5.2), in the firmware's order: WORKING;
    /// `hdr_len` < 52 → INVALID_LENGTH with 52 written back (before the handle);
    /// handle; not SUPDATE → INVALID_GUEST_STATE; VMSA of a non-ES guest →
    /// UNSUPPORTED; no ASID → INACTIVE; `guest_len` 0 / > 0x5000 / not 16-aligned,
    /// `trans_len` 0 or < `guest_len` → INVALID_LENGTH (and, a model choice, a VMSA
    /// `guest_len` ≠ 4096); `guest_address` not 16-aligned → INVALID_ADDRESS. The
    /// guest bytes are decrypted with the guest key (C-bit ignored), a VMSA must match
    /// one of the guest's TMR integrity blocks (INVALID_PARAM), then encrypted under
    /// the TEK with a random IV: exactly `guest_len` bytes to `trans_address`, the
    /// header {0, IV, MAC} to `hdr_address`. The returned header length is written
    /// back (`hdr_len`); this firmware does not write `trans_len`.
    pub(crate) fn sev_send_update(
        &self,
        st: &mut State,
        t: Transport,
        kind: Payload,
    ) -> CmdResult<u32> {
        self.sev_require(st, &[SevPlatformState::Working])?;
        if (t.hdr_len as usize) < SEV_PACKET_HEADER_LEN {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let g = self.sev_guest(st, t.handle)?;
        if g.state != SevGuestState::SUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        if kind == Payload::Vmsa && !g.is_es() {
            return Err(FwStatus::UNSUPPORTED.into());
        }
        let asid = g.binding.asid().ok_or(FwStatus::INACTIVE)?;
        let glen = t.guest_len as usize;
        if glen == 0
            || glen > SEV_SCRATCH_LEN
            || glen & 0xF != 0
            || t.trans_len == 0
            || t.trans_len < t.guest_len
            || (kind == Payload::Vmsa && glen != VMSA_LEN)
        {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let gaddr = t.guest_address & !C_BIT;
        if gaddr & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        self.sev_writable(st, t.trans_address, u64::from(t.guest_len))?;
        self.sev_writable(st, t.hdr_address, SEV_PACKET_HEADER_LEN as u64)?;
        let mut data = Zeroizing::new(vec![0u8; glen]);
        self.read_with(gaddr, KeySel::Guest(Asid(asid)), &mut data)?;
        let g = self.sev_guest(st, t.handle)?;
        if kind == Payload::Vmsa {
            let want = sha256(&data[..VMSA_CRC_SPAN]);
            let blocks = g.crc_blocks.clone();
            let tmr = st.sev.tmr.as_ref().ok_or(FwStatus::INVALID_PARAM)?;
            let ok = blocks
                .iter()
                .any(|i| tmr.blocks.get(i).is_some_and(|v| ct_eq(v, &want)));
            if !ok {
                return Err(FwStatus::INVALID_PARAM.into());
            }
        }
        let iv = st.rng.array::<16>();
        let g = self.sev_guest(st, t.handle)?;
        let ch = g.channel.as_ref().ok_or(FwStatus::INVALID_GUEST_STATE)?;
        aes128_ctr(&ch.tek, &iv, &mut data);
        let mac = transport_packet_mac(&ch.tik, 0, &iv, t.guest_len, t.guest_len, &data);
        let hdr = SevPacketHeader { flags: 0, iv, mac };
        self.write_plain(t.trans_address, &data)?;
        self.write_plain(t.hdr_address, hdr.as_bytes())?;
        Ok(SEV_PACKET_HEADER_LEN as u32)
    }

    /// SEND_FINISH / SEND_CANCEL (§5.4): WORKING; handle; not SUPDATE →
    /// INVALID_GUEST_STATE; the channel is wiped; FINISH → SENT, CANCEL → RUNNING.
    pub(crate) fn sev_send_end(&self, st: &mut State, handle: u32, finish: bool) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, handle)?;
        if g.state != SevGuestState::SUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        g.channel = None;
        g.state = if finish {
            SevGuestState::SENT
        } else {
            SevGuestState::RUNNING
        };
        Ok(())
    }

    /// SEND_FINISH.
    pub(crate) fn sev_send_finish(&self, st: &mut State, b: SevSendFinish) -> CmdResult {
        self.sev_send_end(st, b.handle, true)
    }

    /// SEND_CANCEL.
    pub(crate) fn sev_send_cancel(&self, st: &mut State, b: SevSendCancel) -> CmdResult {
        self.sev_send_end(st, b.handle, false)
    }

    /// RECEIVE_START (§5.5): INIT or WORKING; `session_len` ≠ 128 or `pdh_len` ≠
    /// 0x824 → INVALID_LENGTH (a session is required); the server channel with the
    /// **source** PDH and the caller's `policy` as LAUNCH_START (the source PDH's
    /// signatures are not checked); key sharing through `handle`; a handle; ES on a
    /// non-ES platform → UNSUPPORTED; → RUPDATE, platform WORKING, the handle written
    /// back (on success only).
    pub(crate) fn sev_receive_start(&self, st: &mut State, b: &mut SevReceiveStart) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Init, SevPlatformState::Working])?;
        if b.session_len as usize != SEV_SESSION_LEN || b.pdh_cert_len as usize != CERT_LEN {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let policy = b.policy;
        let (tek, tik) =
            self.sev_server_channel(st, b.pdh_cert_address, b.session_address, policy)?;
        let vek = self.sev_new_vek(st, b.handle, policy)?;
        let handle = st.sev.handles.allocate()?;
        if policy & POLICY_ES != 0 && !st.sev.es {
            st.sev.handles.release(handle);
            return Err(FwStatus::UNSUPPORTED.into());
        }
        st.sev.guests.insert(
            handle,
            SevGuest {
                state: SevGuestState::RUPDATE,
                policy,
                vek,
                binding: SevBinding::None,
                channel: Some(Channel {
                    tek,
                    tik,
                    measure: None,
                }),
                digest: None,
                ld: [0; 32],
                crc_blocks: Vec::new(),
                oek: None,
            },
        );
        st.sev.platform = SevPlatformState::Working;
        b.handle = handle.get();
        Ok(())
    }

    /// RECEIVE_UPDATE_DATA / RECEIVE_UPDATE_VMSA (§5.5), in the firmware's order:
    /// WORKING; handle; not RUPDATE → INVALID_GUEST_STATE; VMSA of a non-ES guest →
    /// UNSUPPORTED; no ASID → INACTIVE; `trans_len` 0 / > 0x5000, `guest_len` 0 / ≠
    /// `trans_len` / not 16-aligned, `hdr_len` < 52 → INVALID_LENGTH (and, a model
    /// choice, a VMSA `guest_len` ≠ 4096); `guest_address` not 16-aligned →
    /// INVALID_ADDRESS; COMPRESSED → UNSUPPORTED; the MAC (ctx 2) → BAD_MEASUREMENT;
    /// decrypt; a VMSA gets a TMR integrity block (none → RESOURCE_LIMIT) and the
    /// 0x380/0x388 stamps; written with the guest key (C-bit ignored).
    pub(crate) fn sev_receive_update(
        &self,
        st: &mut State,
        t: Transport,
        kind: Payload,
    ) -> CmdResult {
        self.sev_require(st, &[SevPlatformState::Working])?;
        let g = self.sev_guest(st, t.handle)?;
        if g.state != SevGuestState::RUPDATE {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        if kind == Payload::Vmsa && !g.is_es() {
            return Err(FwStatus::UNSUPPORTED.into());
        }
        let asid = g.binding.asid().ok_or(FwStatus::INACTIVE)?;
        let glen = t.guest_len as usize;
        if t.trans_len == 0
            || t.trans_len as usize > SEV_SCRATCH_LEN
            || glen == 0
            || t.guest_len != t.trans_len
            || glen & 0xF != 0
            || (t.hdr_len as usize) < SEV_PACKET_HEADER_LEN
            || (kind == Payload::Vmsa && glen != VMSA_LEN)
        {
            return Err(FwStatus::INVALID_LENGTH.into());
        }
        let gaddr = t.guest_address & !C_BIT;
        if gaddr & 0xF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        let mut hdr = SevPacketHeader::new_zeroed();
        self.read_plain(t.hdr_address, hdr.as_mut_bytes())?;
        if hdr.flags & SEV_SECRET_FLAG_COMPRESSED != 0 {
            return Err(FwStatus::UNSUPPORTED.into());
        }
        let mut data = Zeroizing::new(vec![0u8; glen]);
        self.read_plain(t.trans_address, &mut data)?;
        let g = self.sev_guest(st, t.handle)?;
        let ch = g.channel.as_ref().ok_or(FwStatus::INVALID_GUEST_STATE)?;
        let mac =
            transport_packet_mac(&ch.tik, hdr.flags, &hdr.iv, t.guest_len, t.trans_len, &data);
        if !ct_eq(&mac, &hdr.mac) {
            return Err(FwStatus::BAD_MEASUREMENT.into());
        }
        aes128_ctr(&ch.tek, &hdr.iv, &mut data);
        self.sev_writable(st, gaddr, glen as u64)?;
        if kind == Payload::Vmsa {
            data[VMSA_STAMP_ZERO..VMSA_STAMP_ZERO + 8].fill(0);
            let tmr = st.sev.tmr.as_mut().ok_or(FwStatus::UNSUPPORTED)?;
            let idx = tmr.allocate([0; 32]).ok_or(FwStatus::RESOURCE_LIMIT)?;
            let pa = tmr.block_pa(idx);
            data[VMSA_STAMP_CRC..VMSA_STAMP_CRC + 8].copy_from_slice(&pa.to_le_bytes());
            tmr.blocks.insert(idx, sha256(&data[..VMSA_CRC_SPAN]));
            self.sev_guest(st, t.handle)?.crc_blocks.push(idx);
        }
        self.write_with(gaddr, KeySel::Guest(Asid(asid)), &data)
    }

    /// RECEIVE_FINISH (§5.5): WORKING; handle; not RUPDATE → INVALID_GUEST_STATE; a
    /// pending activation becomes valid (InUse), the channel is wiped, → RUNNING.
    pub(crate) fn sev_receive_finish(&self, st: &mut State, b: SevReceiveFinish) -> CmdResult {
        self.sev_finish_to_running(st, b.handle, SevGuestState::RUPDATE)
    }
}
