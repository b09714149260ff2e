//! SEND_* / RECEIVE_* between two platforms (sev-legacy.md §5): an SEV guest's pages
//! and an SEV-ES guest's VMSA move from chip A to chip B; every SEND_START refusal
//! (NOSEND, DOMAIN with a foreign owner, the SEV bit with a chain not rooted in the
//! fused ARK, a PDH not signed by the target's PEK) comes before any page; a tampered
//! packet is BAD_MEASUREMENT; the length queries; the §5.3 transport-MAC vector, also
//! through RECEIVE_UPDATE_DATA.

use crate::sevcommon::*;
use softsev_abi::sev_buf::*;
use softsev_abi::{FwStatus, Product, Spa};
use softsev_crypto::sev::{EcdhP384, aes128_ctr, secret_packet_mac, transport_packet_mac};

const PAGES: u32 = 3;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn seq(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

/// A plausible VMSA: recognisable bytes everywhere, zero where the firmware stamps.
fn vmsa_image() -> [u8; 4096] {
    let mut v = [0u8; 4096];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ 0xC3;
    }
    v
}

/// Move guest `g` of `a` (policy `policy`) to `b`: SEND_START to b's certificates,
/// RECEIVE_START there, `pages` data pages and optionally one VMSA; returns b's handle.
fn migrate(a: &Host, g: u32, b: &Host, asid: u32, vmsa: bool) -> u32 {
    let (policy, session) = a.sev_send_start(g, &b.target_certs()).unwrap();
    let a_pdh = a.sev_export()[0];
    let h = b.sev_receive_start(policy, &a_pdh, &session).unwrap();
    b.sev_activate(h, asid).unwrap();
    assert_eq!(b.sev_guest_status(h).state_id(), SevGuestState::RUPDATE);
    for i in 0..PAGES {
        let addr = GMEM + u64::from(i) * 4096;
        let (hdr, data) = a.sev_send_packet(g, addr, 4096, false).unwrap();
        b.sev_receive_packet(h, addr, &hdr, &data, false).unwrap();
    }
    if vmsa {
        let addr = GMEM + u64::from(PAGES) * 4096;
        let (hdr, data) = a.sev_send_packet(g, addr, 4096, true).unwrap();
        b.sev_receive_packet(h, addr, &hdr, &data, true).unwrap();
    }
    a.sev(&mut SevSendFinish { handle: g }).unwrap();
    b.sev(&mut SevReceiveFinish { handle: h }).unwrap();
    h
}

#[test]
fn an_sev_guest_moves_between_two_chips() {
    let (a, b) = (sev_host(), sev_host_b(Product::Milan));
    a.sev_init(false);
    b.sev_init(false);
    let g = a.sev_running_guest(0, SEV_ASID, PAGES, None);
    let before: Vec<Vec<u8>> = (0..PAGES)
        .map(|i| a.sev_peek(g, GMEM + u64::from(i) * 4096, 4096))
        .collect();
    let h = migrate(&a, g, &b, SEV_ASID, false);
    assert_eq!(a.sev_guest_status(g).state_id(), SevGuestState::SENT);
    assert_eq!(b.sev_guest_status(h).state_id(), SevGuestState::RUNNING);
    for (i, want) in before.iter().enumerate() {
        let addr = GMEM + i as u64 * 4096;
        assert_eq!(&b.sev_peek(h, addr, 4096), want, "page {i}");
        // In B's DRAM the page is ciphertext under B's key, not the plaintext.
        let mut raw = vec![0u8; 4096];
        b.soc.host_read(Spa(addr), false, &mut raw).unwrap();
        assert_ne!(&raw, want);
    }
    // A SENT guest cannot be activated again (§3.7).
    a.sev(&mut SevDeactivate { handle: g }).unwrap();
    assert_eq!(
        status(a.sev_activate(g, SEV_ASID + 1)),
        FwStatus::INVALID_GUEST_STATE
    );
}

#[test]
fn an_es_vmsa_moves_and_the_target_restamps_it() {
    let (a, b) = (sev_host(), sev_host_b(Product::Milan));
    a.sev_init(true);
    b.sev_init(true);
    // Occupy B's first TMR block so its stamp differs from A's.
    let other = b.sev_running_guest(0x4, ES_ASID + 1, 0, Some(&vmsa_image()));
    assert_eq!(other, 1);
    let g = a.sev_running_guest(0x4, ES_ASID, PAGES, Some(&vmsa_image()));
    let at = GMEM + u64::from(PAGES) * 4096;
    let src = a.sev_peek(g, at, 4096);
    let h = migrate(&a, g, &b, ES_ASID, true);
    let dst = b.sev_peek(h, at, 4096);
    let image = vmsa_image();
    for (i, (s, d)) in src.iter().zip(&dst).enumerate() {
        match i {
            0x380..0x388 => assert_eq!((*s, *d), (0, 0), "0x380 is zeroed"),
            0x388..0x390 => {}
            _ => assert_eq!((*s, *d), (image[i], image[i]), "byte {i:#x}"),
        }
    }
    let stamp = |v: &[u8]| u64::from_le_bytes(v[0x388..0x390].try_into().unwrap());
    assert_eq!(stamp(&src), TMR);
    assert_eq!(stamp(&dst), TMR + 64, "B's second integrity block");
    // The received VMSA is B's to send on: its integrity block matches.
    let t = b.target_certs();
    b.sev_send_start(h, &t).unwrap();
    b.sev_send_packet(h, at, 4096, true).unwrap();
    // A page that is not a VMSA of the guest fails the integrity check.
    assert_eq!(
        status(b.sev_send_packet(h, GMEM, 4096, true).map(|_| ())),
        FwStatus::INVALID_PARAM
    );
    // VMSA packets of a plain SEV guest are UNSUPPORTED.
    let s = b.sev_running_guest(0, SEV_ASID, 1, None);
    b.sev_send_start(s, &t).unwrap();
    assert_eq!(
        status(b.sev_send_packet(s, GMEM, 4096, true).map(|_| ())),
        FwStatus::UNSUPPORTED
    );
}

#[test]
fn send_start_refusals_come_before_any_page() {
    let (a, b) = (sev_host(), sev_host_b(Product::Milan));
    a.sev_init(false);
    b.sev_init(false);
    let tb = b.target_certs();
    let ta = a.target_certs();
    let refuse = |policy: u32, t: &TargetCerts, want: FwStatus| {
        let g = a.sev_running_guest(policy, SEV_ASID, 1, None);
        assert_eq!(
            status(a.sev_send_start(g, t).map(|_| ())),
            want,
            "policy {policy:#x}"
        );
        // Still RUNNING: no page can be sent.
        assert_eq!(a.sev_guest_status(g).state_id(), SevGuestState::RUNNING);
        assert_eq!(
            status(a.sev_send_packet(g, GMEM, 4096, false).map(|_| ())),
            FwStatus::INVALID_GUEST_STATE
        );
        a.sev(&mut SevDeactivate { handle: g }).unwrap();
        a.sev(&mut SevDecommission { handle: g }).unwrap();
        a.soc.wbinvd();
        a.cmd0(softsev_abi::FwCmd::DF_FLUSH).unwrap();
    };
    // NOSEND.
    refuse(0x8, &tb, FwStatus::POLICY_FAILURE);
    // DOMAIN with a foreign owner (B's OCA is not A's).
    refuse(0x10, &tb, FwStatus::POLICY_FAILURE);
    // SEV with a chain rooted in another product's ARK (not the fused one).
    let mut foreign = tb.amd.clone();
    let (g_ask, g_ark) = sev_host_b(Product::Genoa).fw.sev_ca_certs();
    foreign.clear();
    foreign.extend_from_slice(&g_ask);
    foreign.extend_from_slice(&g_ark);
    let mut t = TargetCerts {
        pdh: tb.pdh,
        plat: tb.plat.clone(),
        amd: foreign,
    };
    refuse(0x20, &t, FwStatus::INVALID_CERTIFICATE);
    // SEV with the unsigned CEK of PDH_CERT_EXPORT: no slot of the ASK's kind
    // (§2.3 step 2: INVALID_CERTIFICATE).
    let [_, _, _, unsigned_cek] = b.sev_export();
    t.amd = tb.amd.clone();
    t.plat[2 * SEV_CERT_LEN..].copy_from_slice(zerocopy::IntoBytes::as_bytes(&unsigned_cek));
    refuse(0x20, &t, FwStatus::INVALID_CERTIFICATE);
    // SEV with a PDH the target's PEK did not sign (A's own PDH).
    let wrong_pdh = TargetCerts {
        pdh: ta.pdh,
        plat: tb.plat.clone(),
        amd: tb.amd.clone(),
    };
    refuse(0x20, &wrong_pdh, FwStatus::BAD_SIGNATURE);
    // DOMAIN with this owner's chain but a PDH another PEK signed.
    let domain_wrong_pdh = TargetCerts {
        pdh: tb.pdh,
        plat: ta.plat.clone(),
        amd: ta.amd.clone(),
    };
    refuse(0x10, &domain_wrong_pdh, FwStatus::BAD_SIGNATURE);
    // SEV asking for an API above the target PEK's.
    refuse(0xFF << 16 | 0x20, &tb, FwStatus::POLICY_FAILURE);
    // Lengths are checked when a chain is needed.
    let short = TargetCerts {
        pdh: tb.pdh,
        plat: tb.plat[..SEV_CERT_LEN].to_vec(),
        amd: tb.amd.clone(),
    };
    refuse(0x20, &short, FwStatus::INVALID_LENGTH);
    // What is allowed: SEV to another AMD chip, DOMAIN to this platform itself.
    for (policy, t) in [(0x20, &tb), (0x10, &ta), (0x30, &ta), (0, &tb)] {
        let g = a.sev_running_guest(policy, SEV_ASID, 1, None);
        assert_eq!(a.sev_send_start(g, t).map(|r| r.0), Ok(policy));
        a.sev(&mut SevSendCancel { handle: g }).unwrap();
        assert_eq!(a.sev_guest_status(g).state_id(), SevGuestState::RUNNING);
        a.sev(&mut SevDeactivate { handle: g }).unwrap();
        a.sev(&mut SevDecommission { handle: g }).unwrap();
        a.soc.wbinvd();
        a.cmd0(softsev_abi::FwCmd::DF_FLUSH).unwrap();
    }
    // A session made for another PDH does not open on B (no chain check without the
    // policy bits: the target refuses at RECEIVE_START).
    let g = a.sev_running_guest(0, SEV_ASID, 1, None);
    let (policy, session) = a.sev_send_start(g, &wrong_pdh).unwrap();
    assert_eq!(
        b.sev_receive_start(policy, &a.sev_export()[0], &session),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    // The policy is MACed: another policy does not open it either.
    let (_, session) = {
        a.sev(&mut SevSendCancel { handle: g }).unwrap();
        a.sev_send_start(g, &tb).unwrap()
    };
    assert_eq!(
        b.sev_receive_start(0x1, &a.sev_export()[0], &session),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    assert!(b.sev_receive_start(0, &a.sev_export()[0], &session).is_ok());
}

#[test]
fn a_tampered_replayed_or_misplaced_packet() {
    let (a, b) = (sev_host(), sev_host_b(Product::Milan));
    a.sev_init(false);
    b.sev_init(false);
    let g = a.sev_running_guest(0, SEV_ASID, PAGES, None);
    let (policy, session) = a.sev_send_start(g, &b.target_certs()).unwrap();
    let h = b
        .sev_receive_start(policy, &a.sev_export()[0], &session)
        .unwrap();
    b.sev_activate(h, SEV_ASID).unwrap();
    let (hdr, data) = a.sev_send_packet(g, GMEM, 4096, false).unwrap();
    for i in [0usize, 100, 4095] {
        let mut bad = data.clone();
        bad[i] ^= 1;
        assert_eq!(
            b.sev_receive_packet(h, GMEM, &hdr, &bad, false),
            Err(FwStatus::BAD_MEASUREMENT),
            "byte {i}"
        );
    }
    let mut bad = hdr;
    bad.iv[0] ^= 1;
    assert_eq!(
        b.sev_receive_packet(h, GMEM, &bad, &data, false),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    let mut bad = hdr;
    bad.flags = 1;
    assert_eq!(
        b.sev_receive_packet(h, GMEM, &bad, &data, false),
        Err(FwStatus::UNSUPPORTED)
    );
    // Truncated: still MACed over the lengths.
    assert_eq!(
        b.sev_receive_packet(h, GMEM, &hdr, &data[..2048], false),
        Err(FwStatus::BAD_MEASUREMENT)
    );
    assert_eq!(b.sev_guest_status(h).state_id(), SevGuestState::RUPDATE);
    // §5.3: no address or sequence number in a packet — the firmware accepts it at
    // another address and twice (the VMM and guest layers must refuse that).
    b.sev_receive_packet(h, GMEM + 0x1000, &hdr, &data, false)
        .unwrap();
    b.sev_receive_packet(h, GMEM, &hdr, &data, false).unwrap();
    assert_eq!(
        b.sev_peek(h, GMEM + 0x1000, 4096),
        b.sev_peek(h, GMEM, 4096)
    );
}

#[test]
fn length_queries_and_checks() {
    let (a, b) = (sev_host(), sev_host_b(Product::Milan));
    a.sev_init(false);
    b.sev_init(false);
    let g = a.sev_running_guest(0, SEV_ASID, 1, None);
    // SEND_START with session_len 0: INVALID_LENGTH and 128 written back.
    let mut q = SevSendStart {
        handle: g,
        ..Default::default()
    };
    assert_eq!(status(a.sev(&mut q)), FwStatus::INVALID_LENGTH);
    assert_eq!({ q.session_len }, 128);
    a.sev_send_start(g, &b.target_certs()).unwrap();
    // SEND_UPDATE_DATA with hdr_len 0: 52 written back, before the handle check.
    let mut q = SevSendUpdateData {
        handle: 77,
        ..Default::default()
    };
    assert_eq!(status(a.sev(&mut q)), FwStatus::INVALID_LENGTH);
    assert_eq!(({ q.hdr_len }, { q.trans_len }), (52, 0));
    let bad = |glen: u32, tlen: u32, addr: u64| {
        status(a.sev(&mut SevSendUpdateData {
            handle: g,
            hdr_address: HDR,
            hdr_len: 52,
            guest_address: addr,
            guest_len: glen,
            trans_address: TRANS,
            trans_len: tlen,
            ..Default::default()
        }))
    };
    assert_eq!(bad(0, 16, GMEM), FwStatus::INVALID_LENGTH);
    assert_eq!(bad(0x5010, 0x5010, GMEM), FwStatus::INVALID_LENGTH);
    assert_eq!(bad(24, 32, GMEM), FwStatus::INVALID_LENGTH);
    assert_eq!(bad(32, 16, GMEM), FwStatus::INVALID_LENGTH);
    assert_eq!(bad(32, 32, GMEM + 8), FwStatus::INVALID_ADDRESS);
    // trans_len larger than guest_len is fine; exactly guest_len bytes are written.
    assert_eq!(bad(32, 64, GMEM), FwStatus::SUCCESS);
    // The C-bit KVM sets in the guest address is ignored.
    assert_eq!(bad(32, 32, GMEM | 1 << 51), FwStatus::SUCCESS);
    // RECEIVE_START needs a session and the PDH.
    let mut r = SevReceiveStart {
        session_len: 0,
        pdh_cert_len: SEV_CERT_LEN as u32,
        ..Default::default()
    };
    assert_eq!(status(b.sev(&mut r)), FwStatus::INVALID_LENGTH);
    assert_eq!({ r.handle }, 0, "no copy-back on failure");
}

#[test]
fn transport_mac_vector_of_the_spec() {
    // sev-legacy.md §5.3: TEK 20..2f, TIK 30..3f, IV 50..5f, flags 0, plaintext 00..1f.
    let tek: [u8; 16] = seq(0x20, 16).try_into().unwrap();
    let tik: [u8; 16] = seq(0x30, 16).try_into().unwrap();
    let iv: [u8; 16] = seq(0x50, 16).try_into().unwrap();
    let mut ct = seq(0, 32);
    aes128_ctr(&tek, &iv, &mut ct);
    assert_eq!(
        ct,
        hex("b0505bc0603c21e24d4ee2aa4b2cdfe43aaeef48ea3ac195ebe34bbff9770ae6")
    );
    let mac = transport_packet_mac(&tik, 0, &iv, 32, 32, &ct);
    assert_eq!(
        mac.to_vec(),
        hex("7b22ac9770e0185677f16d46a251e8b39e7be7a7972f720f74b60cb018a1a94f")
    );
    let measure: [u8; 32] = hex("a964fc65a71e5704df537bb307fc38f54c3bced638b4f76e3387e5ac97168dbb")
        .try_into()
        .unwrap();
    assert_eq!(
        secret_packet_mac(&tik, 0, &iv, 32, 32, &ct, &measure).to_vec(),
        hex("d8d5433de6d5009d53a9998f79ac240eea468983928700070277f3980485aad9")
    );
    // The same packet through RECEIVE_UPDATE_DATA of a target whose session carries
    // that TEK/TIK (a source stand-in built like a guest owner's session).
    let b = sev_host_b(Product::Milan);
    b.sev_init(false);
    let pdh = b.sev_export()[0];
    let key = EcdhP384::from_scalar_be(&[9; 48]).unwrap();
    let o = owner_session(key, &pdh, [1; 16], [2; 16], tek, tik, 0);
    let h = b.sev_receive_start(0, &o.godh, &o.session).unwrap();
    b.sev_activate(h, SEV_ASID).unwrap();
    let hdr = SevPacketHeader { flags: 0, iv, mac };
    b.sev_receive_packet(h, GMEM, &hdr, &ct, false).unwrap();
    assert_eq!(b.sev_peek(h, GMEM, 32), seq(0, 32));
    // And a source firmware's packet verifies with the same MAC function.
    let (hdr2, data2) = {
        b.sev(&mut SevReceiveFinish { handle: h }).unwrap();
        let t = b.target_certs();
        b.sev_send_start(h, &t).unwrap();
        b.sev_send_packet(h, GMEM, 32, false).unwrap()
    };
    let keys = b.fw.sev_transport_keys_for_test(h).unwrap();
    assert_eq!(
        transport_packet_mac(&keys.1, 0, &hdr2.iv, 32, 32, &data2),
        hdr2.mac
    );
    let mut plain = data2;
    aes128_ctr(&keys.0, &hdr2.iv, &mut plain);
    assert_eq!(plain, seq(0, 32));
}

/// SWAP_OUT of the page at `src` to `dst`, metadata at [`HDR`].
fn swap_out(h: &Host, g: u32, flags: u32, src: u64, dst: u64) -> softsev_firmware::FwResult {
    h.sev(&mut SevSwapOut {
        handle: g,
        flags,
        src_paddr: src,
        dst_paddr: dst,
        mdata_paddr: HDR,
        software_data: 0xFEED,
    })
}

fn swap_in(h: &Host, g: u32, flags: u32, src: u64, dst: u64) -> softsev_firmware::FwResult {
    h.sev(&mut SevSwapIn {
        handle: g,
        flags,
        src_paddr: src,
        dst_paddr: dst,
        mdata_paddr: HDR,
    })
}

#[test]
fn swap_out_and_in_within_the_same_context() {
    let a = sev_host();
    a.sev_init(true);
    let g = a.sev_running_guest(0x4, ES_ASID, 2, Some(&vmsa_image()));
    let page0 = a.sev_peek(g, GMEM, 4096);
    let vmsa_at = GMEM + 2 * 4096;
    let parked = GMEM + 0x10_0000;
    swap_out(&a, g, 0, GMEM, parked).unwrap();
    let mut md = [0u8; 64];
    a.soc.host_read(Spa(HDR), false, &mut md).unwrap();
    let md = <SevSwapMetadata as zerocopy::FromBytes>::read_from_bytes(&md).unwrap();
    assert_eq!(
        ({ md.software_data }, { md.iv }, { md.page_flags }),
        (0xFEED, 0, 0)
    );
    // The parked copy is neither the plaintext nor the guest-key ciphertext.
    let mut raw = vec![0u8; 4096];
    a.soc.host_read(Spa(parked), false, &mut raw).unwrap();
    assert_ne!(raw, page0);
    // Back into page 1's place (another address of the same guest).
    swap_in(&a, g, 0, parked, GMEM + 0x1000).unwrap();
    assert_eq!(a.sev_peek(g, GMEM + 0x1000, 4096), page0);
    // In place: written back at the source.
    swap_out(&a, g, 0, GMEM, parked).unwrap();
    swap_in(&a, g, SEV_SWAP_FLAG_IN_PLACE, parked, GMEM + 0x1000).unwrap();
    assert_eq!(a.sev_peek(g, parked, 4096), page0);
    // Tampered ciphertext or metadata → the tag fails; a type mismatch is refused.
    swap_out(&a, g, 0, GMEM, parked).unwrap();
    let mut md = [0u8; 64];
    a.soc.host_read(Spa(HDR), false, &mut md).unwrap();
    assert_eq!(
        u64::from_le_bytes(md[8..16].try_into().unwrap()),
        2,
        "the third SWAP_OUT uses IV 2"
    );
    let mut bad = md;
    bad[0] ^= 1;
    a.soc.host_write(Spa(HDR), false, &bad).unwrap();
    assert_eq!(
        status(swap_in(&a, g, 0, parked, GMEM)),
        FwStatus::BAD_MEASUREMENT
    );
    a.soc.host_write(Spa(HDR), false, &md).unwrap();
    assert_eq!(
        status(swap_in(&a, g, 2 << 1, parked, GMEM)),
        FwStatus::INVALID_PARAM
    );
    a.soc.host_write(Spa(parked + 9), false, &[0xEE]).unwrap();
    assert_eq!(
        status(swap_in(&a, g, 0, parked, GMEM)),
        FwStatus::BAD_MEASUREMENT
    );
    // A VMSA must be swapped as a VMSA and a data page as data.
    assert_eq!(
        status(swap_out(&a, g, 0, vmsa_at, parked)),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(swap_out(&a, g, 2 << 1, GMEM, parked)),
        FwStatus::INVALID_PARAM
    );
    swap_out(&a, g, 2 << 1, vmsa_at, parked).unwrap();
    swap_in(&a, g, 2 << 1, parked, vmsa_at).unwrap();
    // Alignment, overlap, reserved flags, a 2 MiB VMSA.
    assert_eq!(
        status(swap_out(&a, g, 0, GMEM + 16, parked)),
        FwStatus::INVALID_ADDRESS
    );
    assert_eq!(
        status(swap_out(&a, g, 1, GMEM, parked)),
        FwStatus::INVALID_ADDRESS
    );
    assert_eq!(
        status(swap_out(&a, g, 1 << 3, GMEM, parked)),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(swap_out(&a, g, 4 << 1, GMEM, parked)),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(swap_out(&a, g, 1 | 2 << 1, 0x20_0000, 0x40_0000)),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(a.sev(&mut SevSwapOut {
            handle: g,
            flags: 0,
            src_paddr: GMEM,
            dst_paddr: parked,
            mdata_paddr: parked + 64,
            software_data: 0,
        })),
        FwStatus::INVALID_PARAM
    );
    // Another guest (another OEK) cannot take the page in.
    let other = a.sev_running_guest(0x4, ES_ASID + 1, 0, None);
    swap_out(&a, g, 0, GMEM, parked).unwrap();
    assert_eq!(
        status(swap_in(&a, other, 0, parked, GMEM + 0x3000)),
        FwStatus::BAD_MEASUREMENT
    );
}
