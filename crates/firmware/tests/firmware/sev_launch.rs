//! Legacy SEV / SEV-ES launches through the mailbox (sev-legacy.md §3, §4, §6.1): the
//! spec's session vector, the whole ES flow (session → UPDATE_DATA → UPDATE_VMSA →
//! MEASURE → SECRET → FINISH → ATTESTATION → DBG) checked against softsev-crypto, key
//! sharing, ACTIVATE's ASID rules and the debug policy.

use crate::sevcommon::*;
use softsev_abi::sev_buf::*;
use softsev_abi::{Asid, FwCmd, FwStatus, Spa};
use softsev_crypto::ecdsa::P384Signature;
use softsev_crypto::hash::{Sha256, sha256};
use softsev_crypto::sev::{EcdhP384, aes128_ctr, launch_measure, secret_packet_mac};
use softsev_firmware::AsidState;
use zerocopy::IntoBytes;

fn hex48(s: &str) -> [u8; 48] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn seq16(start: u8) -> [u8; 16] {
    std::array::from_fn(|i| start + i as u8)
}

const D_PDH: &str = "f3a1e3ed1ed4e7d60f5d44098932ee747e4306ede7ac4d28470f21ade020cdba1522f14afca856077fc46f3ea3b447bf";
const D_GODH: &str = "a63543ab0b76d0b9a96a819b02f34de559d1b5d19deb4a438b2a97fe9cbc927b6c2e5d08d22d217149dcb1c1d38725b9";

#[test]
fn spec_session_vector_opens_through_launch_start() {
    let h = sev_host();
    h.sev_init(false);
    h.fw.sev_set_pdh_scalar_for_test(&hex48(D_PDH)).unwrap();
    let godh_key = EcdhP384::from_scalar_be(&hex48(D_GODH)).unwrap();
    let godh = godh_cert(&godh_key);
    assert_eq!(
        hex::encode(sha256(godh.as_bytes())),
        "a9572d0a6bed8d3ad8aecfde3944a6ef1b2a0ddb7fa5b9ac148a4c8cb2ec43bf"
    );
    let session_hex = concat!(
        "000102030405060708090a0b0c0d0e0f",
        "6babbbe438cbc20daf9cd84084475083abb4d56933e2c75767bf602ed41d7f02",
        "101112131415161718191a1b1c1d1e1f",
        "dcef35404e68cd47e88d47be5f1f36c904a74d364267fc292e984cdb0a5946a5",
        "8585504451b5248c1b852848af92a14f126f6a4e2516e31a8881ab061e143547"
    );
    let raw: [u8; 128] = hex::decode(session_hex).unwrap().try_into().unwrap();
    let session: SevSession = zerocopy::transmute!(raw);
    // A wrong policy: the policy MAC fails (BAD_MEASUREMENT, §0.2-5).
    assert_eq!(
        h.sev_start_session(2, &godh, &session),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    // A flipped wrap byte: the wrap MAC fails.
    let mut bad = raw;
    bad[20] ^= 1;
    let bad: SevSession = zerocopy::transmute!(bad);
    assert_eq!(
        h.sev_start_session(3, &godh, &bad),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    let handle = h.sev_start_session(3, &godh, &session).unwrap();
    let (tek, tik) = h.fw.sev_transport_keys_for_test(handle).unwrap();
    assert_eq!(*tek, seq16(0x20));
    assert_eq!(*tik, seq16(0x30));
    // The same session built with softsev-crypto (the guest owner's side).
    let pdh = h.sev_export()[0];
    let o = owner_session(
        godh_key,
        &pdh,
        seq16(0),
        seq16(0x10),
        seq16(0x20),
        seq16(0x30),
        3,
    );
    assert_eq!(o.session.as_bytes(), &raw[..]);
}

#[test]
fn launch_start_checks_the_session_and_policy() {
    let h = sev_host();
    h.sev_init(false);
    let pdh = h.sev_export()[0];
    let mut rng = softsev_crypto::rng::Rng::seeded(b"owner", "godh");
    let mk = |policy: u32, rng: &mut softsev_crypto::rng::Rng| {
        owner_session(
            EcdhP384::generate(rng),
            &pdh,
            [1; 16],
            [2; 16],
            [3; 16],
            [4; 16],
            policy,
        )
    };
    // Reserved bits 6–15 and an API newer than the firmware: POLICY_FAILURE.
    let o = mk(0x40, &mut rng);
    assert_eq!(
        h.sev_start_session(0x40, &o.godh, &o.session),
        Err(FwStatus::POLICY_FAILURE)
    );
    let v = h.fw.current_image().version;
    let newer = (u32::from(v.major) + 1) << 16;
    let o = mk(newer, &mut rng);
    assert_eq!(
        h.sev_start_session(newer, &o.godh, &o.session),
        Err(FwStatus::POLICY_FAILURE)
    );
    // Without a session the policy is not checked at all (§0.2-4).
    let handle = h.sev_start(0x40, 0).unwrap();
    let (tek, tik) = h.fw.sev_transport_keys_for_test(handle).unwrap();
    assert_eq!((*tek, *tik), ([0; 16], [0; 16]));
    // A GODH that is not a PDH/ECDH_SHA256 certificate: INVALID_CERTIFICATE.
    let o = mk(0, &mut rng);
    let mut godh = o.godh;
    godh.pubkey_algo = 2;
    assert_eq!(
        h.sev_start_session(0, &godh, &o.session),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    // Wrong lengths.
    let mut b = SevLaunchStart {
        policy: 0,
        dh_cert_address: GODH,
        dh_cert_len: 0x800,
        session_address: SESSION,
        session_len: 128,
        ..Default::default()
    };
    assert_eq!(h.sev(&mut b), Err(FwStatus::INVALID_LENGTH));
    // ES policy on a platform initialised without ES: UNSUPPORTED.
    assert_eq!(h.sev_start(POLICY_ES, 0), Err(FwStatus::UNSUPPORTED));
    let o = mk(0x4, &mut rng);
    assert_eq!(
        h.sev_start_session(0x4, &o.godh, &o.session),
        Err(FwStatus::UNSUPPORTED)
    );
}

const POLICY_ES: u32 = 0x4;

#[test]
fn sev_es_launch_end_to_end() {
    let h = sev_host();
    h.sev_init(true);
    let [pdh, pek, ..] = h.sev_export();
    // NOKS | ES, debugging allowed.
    let policy = 0x6;
    let owner = owner_session(
        EcdhP384::generate(&mut softsev_crypto::rng::Rng::seeded(b"e2e", "godh")),
        &pdh,
        [7; 16],
        [8; 16],
        [0xA1; 16],
        [0xB2; 16],
        policy,
    );
    let handle = h
        .sev_start_session(policy, &owner.godh, &owner.session)
        .unwrap();
    assert_eq!(
        h.sev_guest_status(handle).state_id(),
        SevGuestState::LUPDATE
    );
    // Not active yet: INACTIVE. A plain SEV ASID for an ES guest: INVALID_ASID.
    let data: Vec<u8> = (0..0x6000u32).map(|i| (i * 7) as u8).collect();
    h.soc.host_write(Spa(GMEM), false, &data).unwrap();
    assert_eq!(
        h.sev_update(handle, GMEM, data.len() as u32),
        Err(FwStatus::INACTIVE)
    );
    assert_eq!(
        h.sev_activate(handle, SEV_ASID),
        Err(FwStatus::INVALID_ASID)
    );
    h.sev_activate(handle, ES_ASID).unwrap();
    assert_eq!(h.fw.asid_state(ES_ASID), Some(AsidState::Allocated));
    assert_eq!(h.sev_activate(handle, 2), Err(FwStatus::ACTIVE));
    assert_eq!(
        h.sev_update(handle, GMEM + 8, 16),
        Err(FwStatus::INVALID_ADDRESS)
    );
    assert_eq!(h.sev_update(handle, GMEM, 0), Err(FwStatus::INVALID_LENGTH));
    h.sev_update(handle, GMEM, data.len() as u32).unwrap();
    // The host now reads ciphertext.
    let mut host_view = vec![0u8; data.len()];
    h.soc.host_read(Spa(GMEM), false, &mut host_view).unwrap();
    assert_ne!(host_view, data);
    // A VMSA: measured as given, stamped at 0x380/0x388 in the guest's view.
    let vmsa_at = GMEM + 0x10_0000;
    let vmsa: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    h.soc.host_write(Spa(vmsa_at), false, &vmsa).unwrap();
    let upd = |len: u32| {
        h.sev(&mut SevLaunchUpdateVmsa {
            handle,
            reserved: 0,
            address: vmsa_at,
            len,
        })
    };
    assert_eq!(upd(4095), Err(FwStatus::INVALID_LENGTH));
    upd(4096).unwrap();
    let mut guest_vmsa = vec![0u8; 4096];
    h.soc
        .fw_read(
            Spa(vmsa_at),
            softsev_soc::KeySel::Guest(Asid(ES_ASID)),
            &mut guest_vmsa,
        )
        .unwrap();
    assert_eq!(guest_vmsa[..0x380], vmsa[..0x380]);
    assert_eq!(guest_vmsa[0x380..0x388], [0; 8]);
    let crc_pa = u64::from_le_bytes(guest_vmsa[0x388..0x390].try_into().unwrap());
    assert!((TMR..TMR + SEV_TMR_LEN as u64).contains(&crc_pa));
    assert_eq!(guest_vmsa[0x390..], vmsa[0x390..]);

    // LAUNCH_MEASURE: length query, then measure = HMAC per §3.4.
    let mut q = SevLaunchMeasure {
        handle,
        reserved: 0,
        address: OUT,
        len: 0,
    };
    assert_eq!(h.sev(&mut q), Err(FwStatus::INVALID_LENGTH));
    assert_eq!({ q.len }, 48);
    let blob = h.sev_measure(handle).unwrap();
    let mut ld = Sha256::new();
    ld.update(&data);
    ld.update(&vmsa);
    let ld = ld.finish();
    assert_eq!(h.fw.sev_launch_digest(handle), Some(ld));
    let v = h.fw.current_image().version;
    let mnonce: [u8; 16] = blob[32..].try_into().unwrap();
    let expect = launch_measure(&owner.tik, v.major, v.minor, v.build, policy, &ld, &mnonce);
    assert_eq!(blob[..32], expect);
    assert_eq!(
        h.sev_guest_status(handle).state_id(),
        SevGuestState::LSECRET
    );
    assert_eq!(
        h.sev_update(handle, GMEM, 16),
        Err(FwStatus::INVALID_GUEST_STATE)
    );

    // LAUNCH_SECRET with a header built by hand.
    let secret = *b"a 32-byte secret for the guest!!";
    let iv = [0x5A; 16];
    let mut ct = secret;
    aes128_ctr(&owner.tek, &iv, &mut ct);
    let inject = |flags: u32, mac: [u8; 32], ct: &[u8]| {
        let hdr = SevPacketHeader { flags, iv, mac };
        h.soc.host_write(Spa(HDR), false, hdr.as_bytes()).unwrap();
        h.soc.host_write(Spa(TRANS), false, ct).unwrap();
        h.sev(&mut SevLaunchSecret {
            handle,
            hdr_address: HDR,
            hdr_len: 52,
            guest_address: GMEM + 0x2000,
            guest_len: 32,
            trans_address: TRANS,
            trans_len: 32,
            ..Default::default()
        })
    };
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    let mac = secret_packet_mac(&owner.tik, 0, &iv, 32, 32, &ct, &measure);
    let mut bad_mac = mac;
    bad_mac[0] ^= 1;
    assert_eq!(inject(0, bad_mac, &ct), Err(FwStatus::BAD_MEASUREMENT));
    let mut bad_ct = ct;
    bad_ct[3] ^= 1;
    assert_eq!(inject(0, mac, &bad_ct), Err(FwStatus::BAD_MEASUREMENT));
    // COMPRESSED with a valid MAC: UNSUPPORTED, after the MAC check.
    let cmac = secret_packet_mac(&owner.tik, 1, &iv, 32, 32, &ct, &measure);
    assert_eq!(inject(1, cmac, &ct), Err(FwStatus::UNSUPPORTED));
    inject(0, mac, &ct).unwrap();
    // The guest sees the plaintext (DBG_DECRYPT: the policy allows debugging).
    let mut dbg = SevDbgDecrypt {
        handle,
        reserved: 0,
        src_addr: GMEM + 0x2000,
        dst_addr: OUT2,
        len: 32,
    };
    h.sev(&mut dbg).unwrap();
    let mut seen = [0u8; 32];
    h.soc.host_read(Spa(OUT2), false, &mut seen).unwrap();
    assert_eq!(seen, secret);

    // ATTESTATION is legal from LSECRET on; the report verifies with the PEK.
    let report = |mnonce: [u8; 16]| {
        let mut a = SevAttestation {
            handle,
            reserved: 0,
            address: OUT,
            mnonce,
            len: 0,
        };
        assert_eq!(h.sev(&mut a), Err(FwStatus::INVALID_LENGTH));
        assert_eq!({ a.len }, 0xD0);
        h.sev(&mut a).unwrap();
        let mut r = [0u8; 0xD0];
        h.soc.host_read(Spa(OUT), false, &mut r).unwrap();
        r
    };
    let check = |r: &[u8; 0xD0], mnonce: [u8; 16]| {
        assert_eq!(r[..16], mnonce);
        assert_eq!(r[0x10..0x30], ld);
        assert_eq!(r[0x30..0x34], policy.to_le_bytes());
        assert_eq!(r[0x34..0x3C], [0x02, 0x10, 0, 0, 2, 0, 0, 0]);
        let be = |f: &[u8]| -> [u8; 48] {
            assert!(f[48..72].iter().all(|&b| b == 0));
            let mut v: [u8; 48] = f[..48].try_into().unwrap();
            v.reverse();
            v
        };
        let sig = P384Signature {
            r: be(&r[0x40..0x88]),
            s: be(&r[0x88..0xD0]),
        };
        p384(&pek).verify_sha256(&r[..0x34], &sig).unwrap();
        let mut tampered = *r;
        tampered[0x30] ^= 1;
        assert!(p384(&pek).verify_sha256(&tampered[..0x34], &sig).is_err());
    };
    let r = report([0x11; 16]);
    check(&r, [0x11; 16]);

    // LAUNCH_FINISH: the pending activation becomes InUse, the channel is gone.
    h.sev_finish(handle).unwrap();
    assert_eq!(h.fw.asid_state(ES_ASID), Some(AsidState::InUse));
    assert!(h.fw.sev_transport_keys_for_test(handle).is_none());
    let st = h.sev_guest_status(handle);
    assert_eq!(st.state_id(), SevGuestState::RUNNING);
    assert_eq!(({ st.policy }, { st.asid }), (policy, ES_ASID));
    assert_eq!(inject(0, mac, &ct), Err(FwStatus::INVALID_GUEST_STATE));
    check(&report([0x22; 16]), [0x22; 16]);
    // DBG_ENCRYPT then DBG_DECRYPT round trip in RUNNING.
    h.soc.host_write(Spa(OUT2), false, &[0xEE; 64]).unwrap();
    h.sev(&mut SevDbgEncrypt {
        handle,
        reserved: 0,
        src_addr: OUT2,
        dst_addr: GMEM + 0x3000,
        len: 64,
    })
    .unwrap();
    let mut g = [0u8; 64];
    h.soc
        .fw_read(
            Spa(GMEM + 0x3000),
            softsev_soc::KeySel::Guest(Asid(ES_ASID)),
            &mut g,
        )
        .unwrap();
    assert_eq!(g, [0xEE; 64]);
    // Teardown as KVM does: DEACTIVATE (InUse → Dirty), DECOMMISSION, platform INIT.
    assert_eq!(
        h.sev(&mut SevDecommission { handle }),
        Err(FwStatus::ACTIVE)
    );
    h.sev(&mut SevDeactivate { handle }).unwrap();
    assert_eq!(h.fw.asid_state(ES_ASID), Some(AsidState::Dirty));
    assert_eq!(
        h.sev(&mut SevDeactivate { handle }),
        Err(FwStatus::INACTIVE)
    );
    h.sev(&mut SevDecommission { handle }).unwrap();
    assert_eq!(h.sev_status().state_id(), SevPlatformStateId::INIT);
    let st = h.sev_guest_status(handle);
    assert_eq!((st.state_id(), { st.asid }), (SevGuestState::INVALID, 0));
    // The ASID is reusable after WBINVD + DF_FLUSH.
    let again = h.sev_start(POLICY_ES, 0).unwrap();
    assert_eq!(
        h.sev_activate(again, ES_ASID),
        Err(FwStatus::DFFLUSH_REQUIRED)
    );
    h.soc.wbinvd();
    h.cmd0(FwCmd::DF_FLUSH).unwrap();
    h.sev_activate(again, ES_ASID).unwrap();
}

#[test]
fn nodbg_refuses_debug_and_plain_sev_has_no_vmsa() {
    let h = sev_host();
    h.sev_init(false);
    let handle = h.sev_start(0x1, 0).unwrap();
    h.sev_activate(handle, SEV_ASID).unwrap();
    h.soc.host_write(Spa(GMEM), false, &[5; 4096]).unwrap();
    h.sev_update(handle, GMEM, 4096).unwrap();
    let dbg = |src: u64, len: u32| {
        h.sev(&mut SevDbgDecrypt {
            handle,
            reserved: 0,
            src_addr: src,
            dst_addr: OUT,
            len,
        })
    };
    assert_eq!(dbg(GMEM, 16), Err(FwStatus::POLICY_FAILURE));
    assert_eq!(dbg(GMEM + 1, 16), Err(FwStatus::INVALID_ADDRESS));
    assert_eq!(dbg(GMEM, 15), Err(FwStatus::INVALID_LENGTH));
    let vmsa = h.sev(&mut SevLaunchUpdateVmsa {
        handle,
        reserved: 0,
        address: GMEM,
        len: 4096,
    });
    assert_eq!(vmsa, Err(FwStatus::UNSUPPORTED));
    // With a zero TIK (no session) anyone can compute the measurement.
    let blob = h.sev_measure(handle).unwrap();
    let v = h.fw.current_image().version;
    let ld = sha256(&[5; 4096]);
    let mnonce: [u8; 16] = blob[32..].try_into().unwrap();
    assert_eq!(
        blob[..32],
        launch_measure(&[0; 16], v.major, v.minor, v.build, 1, &ld, &mnonce)
    );
}

#[test]
fn key_sharing_copies_the_vek_unless_noks() {
    let h = sev_host();
    h.sev_init(false);
    let a = h.sev_start(0, 0).unwrap();
    h.sev_activate(a, SEV_ASID).unwrap();
    let b = h.sev_start(0, a).unwrap();
    h.sev_activate(b, SEV_ASID + 1).unwrap();
    // The ASID of `a` is taken: ASID_OWNED for anyone.
    let c = h.sev_start(0, 0).unwrap();
    assert_eq!(h.sev_activate(c, SEV_ASID), Err(FwStatus::ASID_OWNED));
    // Both ASIDs carry the same key: data written through one reads back through the
    // other at the same address.
    h.soc.host_write(Spa(GMEM), false, &[0x42; 32]).unwrap();
    h.sev_update(a, GMEM, 32).unwrap();
    let mut via_b = [0u8; 32];
    h.soc
        .fw_read(
            Spa(GMEM),
            softsev_soc::KeySel::Guest(Asid(SEV_ASID + 1)),
            &mut via_b,
        )
        .unwrap();
    assert_eq!(via_b, [0x42; 32]);
    let mut via_c_key = [0u8; 32];
    h.sev_activate(c, SEV_ASID + 2).unwrap();
    h.soc
        .fw_read(
            Spa(GMEM),
            softsev_soc::KeySel::Guest(Asid(SEV_ASID + 2)),
            &mut via_c_key,
        )
        .unwrap();
    assert_ne!(via_c_key, [0x42; 32]);
    // A different policy, an unknown handle, a NOKS guest.
    assert_eq!(h.sev_start(1, a), Err(FwStatus::POLICY_FAILURE));
    assert_eq!(h.sev_start(0, 999), Err(FwStatus::INVALID_GUEST));
    let noks = h.sev_start(2, 0).unwrap();
    assert_eq!(h.sev_start(2, noks), Err(FwStatus::POLICY_FAILURE));
    assert_eq!(h.fw.asid_state(SEV_ASID), Some(AsidState::Allocated));
}

#[test]
fn snp_and_legacy_guests_share_the_asid_table() {
    let h = sev_host();
    // SNP first (as Linux does), then legacy INIT: the ASIDs stay as SNP left them.
    h.init();
    h.fw_page(SEVCMD);
    // With the RMP initialised the TMR is 2 MiB.
    assert_eq!(h.sev_init_only(true), Err(FwStatus::INVALID_LENGTH));
    let mut es = SevInit {
        flags: 1,
        reserved: 0,
        tmr_address: TMR,
        tmr_len: SEV_TMR_LEN_SNP as u32,
    };
    for i in 0..512 {
        h.fw_page(TMR + i * 0x1000);
    }
    h.sev(&mut es).unwrap();
    // An SNP guest on ASID 1.
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    h.launch_start(GCTX, 0x30000).unwrap();
    h.activate(GCTX, ES_ASID).unwrap();
    // A legacy ES guest cannot take it; ASID 2 works.
    let g = h.sev_start(POLICY_ES, 0).unwrap();
    assert_eq!(h.sev_activate(g, ES_ASID), Err(FwStatus::ASID_OWNED));
    h.sev_activate(g, 2).unwrap();
    // And SNP cannot take the legacy guest's ASID.
    h.fw_page(GCTX2);
    h.gctx_create(GCTX2).unwrap();
    h.launch_start(GCTX2, 0x30000).unwrap();
    assert_eq!(h.activate(GCTX2, 2), Err(FwStatus::ASID_OWNED));
    // GUEST_STATUS counts only SEV guests.
    assert_eq!({ h.sev_status().guest_count }, 1);
}
