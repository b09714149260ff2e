//! Guest-message client against the fake host's toy firmware.

use crate::common::{Ev, FakeHost};
use softsev_abi::Gpa;
use softsev_abi::ghcb::CertTableEntry;
use softsev_abi::guest_msg::KeySel;
use softsev_abi::secrets::SecretsPage;
use softsev_guest::error::GuestError;
use softsev_guest::ghcb::GhcbClient;
use softsev_guest::memory::{MemRange, Validated};
use softsev_guest::msg::{KeyRequest, MsgClient, ReportRequest, SeqnoStore, parse_cert_table};
use zerocopy::IntoBytes;

const GHCB: u64 = 0x8000;
const SECRETS: u64 = 0x7000;
const SHARED: u64 = 0x10_0000;
const REQ: u64 = SHARED;
const RESP: u64 = SHARED + 0x1000;
const CERTS: u64 = SHARED + 0x2000;

fn setup(store_in_secrets: bool) -> (FakeHost, GhcbClient, MsgClient) {
    let mut h = FakeHost::new();
    h.install_secrets(SECRETS);
    h.prevalidate(GHCB, 0x1000);
    let mut c = GhcbClient::new();
    let mut v = Validated::new();
    v.mark_validated(MemRange::new(GHCB, 0x1000));
    c.negotiate(&mut h).unwrap();
    v.make_shared_msr(&mut h, &mut c, Gpa(GHCB)).unwrap();
    c.register(&mut h, Gpa(GHCB)).unwrap();
    v.make_shared(&mut h, &mut c, MemRange::new(SHARED, 0x40_0000))
        .unwrap();
    let sp = SecretsPage::parse(&h.peek(SECRETS, 0x1000)).unwrap();
    let store = if store_in_secrets {
        SeqnoStore::SecretsPage(Gpa(SECRETS))
    } else {
        SeqnoStore::Memory
    };
    let m = MsgClient::from_secrets(&sp, Gpa(SECRETS), 0, store, Gpa(REQ), Gpa(RESP)).unwrap();
    (h, c, m)
}

fn nonce() -> ReportRequest {
    let mut d = [0u8; 64];
    for (i, b) in d.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5A;
    }
    ReportRequest {
        report_data: d,
        vmpl: 0,
        key_sel: KeySel::VLEK_OR_VCEK,
    }
}

fn fw_seqnos(h: &FakeHost) -> Vec<u64> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Ev::FwRequest { seqno, .. } => Some(*seqno),
            _ => None,
        })
        .collect()
}

fn secrets_seqno(h: &FakeHost) -> u32 {
    u32::from_le_bytes(h.peek(SECRETS + 0xA0, 4).try_into().unwrap())
}

/// A cert table with three blobs of the given sizes.
pub(crate) fn cert_blob(sizes: [usize; 3]) -> Vec<u8> {
    let guids = [
        softsev_abi::Guid::parse("c0b406a4-a803-4952-9743-3fb6014cd0ae"),
        softsev_abi::Guid::parse("4ab7b379-bbac-4fe4-a02f-05aef327c782"),
        softsev_abi::Guid::parse("63da758d-e664-4564-adc5-f4b93be8accd"),
    ];
    let mut out = Vec::new();
    let mut off = 24 * 4;
    let mut blobs = Vec::new();
    for (i, (g, n)) in guids.iter().zip(sizes).enumerate() {
        let e = CertTableEntry {
            guid: g.as_bytes().try_into().unwrap(),
            offset: off as u32,
            length: n as u32,
        };
        out.extend_from_slice(e.as_bytes());
        blobs.extend(std::iter::repeat_n(0x30 + i as u8, n));
        off += n;
    }
    out.extend_from_slice(&[0u8; 24]);
    out.extend_from_slice(&blobs);
    out
}

#[test]
fn report_and_key_advance_the_secrets_page_seqno() {
    let (mut h, mut c, mut m) = setup(true);
    let req = nonce();
    let r = m.report(&mut h, &mut c, &req, None).unwrap();
    assert_eq!(r.len(), 0x4A0);
    assert_eq!(&r[0x50..0x90], &req.report_data);
    assert_eq!(secrets_seqno(&h), 2);
    let k1 = m
        .derived_key(&mut h, &mut c, &KeyRequest::default())
        .unwrap();
    assert_eq!(secrets_seqno(&h), 4);
    assert_eq!(fw_seqnos(&h), vec![1, 3]);
    // Same request, same key; a different firmware input, a different key.
    let k2 = m
        .derived_key(&mut h, &mut c, &KeyRequest::default())
        .unwrap();
    assert_eq!(*k1, *k2);
    h.derived_key_salt = 1;
    let k3 = m
        .derived_key(&mut h, &mut c, &KeyRequest::default())
        .unwrap();
    assert_ne!(*k1, *k3);
    assert_eq!(m.exchanges, 4);
    assert!(!m.is_disabled());
    // The request went out encrypted: the nonce is not visible in the shared page.
    let shared = h.peek(REQ, 0x1000);
    assert!(!shared.windows(16).any(|w| w == &req.report_data[..16]));
}

#[test]
fn memory_seqno_store() {
    let (mut h, mut c, mut m) = setup(false);
    m.report(&mut h, &mut c, &nonce(), None).unwrap();
    m.report(&mut h, &mut c, &nonce(), None).unwrap();
    assert_eq!(m.last_seqno(&mut h).unwrap(), 4);
    assert_eq!(secrets_seqno(&h), 0);
}

fn assert_disabled(h: &mut FakeHost, c: &mut GhcbClient, m: &mut MsgClient) {
    assert!(m.is_disabled());
    let e = m.report(h, c, &nonce(), None).unwrap_err();
    assert!(matches!(e, GuestError::VmpckDisabled { vmpck: 0 }), "{e}");
    // The key is wiped in the secrets page too.
    assert_eq!(h.peek(SECRETS + 0x20, 32), vec![0u8; 32]);
    // VMPCK1 is untouched.
    assert_eq!(h.peek(SECRETS + 0x40, 32), vec![0x41u8; 32]);
}

#[test]
fn seqno_mismatch_disables_the_vmpck() {
    let (mut h, mut c, mut m) = setup(true);
    h.k.resp_seqno_delta = 2;
    let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
    match &e {
        GuestError::MsgResponse {
            what: "MSG_SEQNO",
            expected: 2,
            got: 4,
            ..
        } => {}
        e => panic!("{e}"),
    }
    assert_disabled(&mut h, &mut c, &mut m);
}

#[test]
fn bad_tag_type_or_fw_error_disable_the_vmpck() {
    for case in 0..3 {
        let (mut h, mut c, mut m) = setup(true);
        match case {
            0 => h.k.resp_corrupt = true,
            1 => h.k.resp_type = Some(4),
            _ => h.k.fw_error = 0x1D,
        }
        let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
        match (case, &e) {
            (0, GuestError::MsgAuth { seqno: 2, .. }) => {}
            (
                1,
                GuestError::MsgResponse {
                    what: "MSG_TYPE", ..
                },
            ) => {}
            (2, GuestError::GuestRequest { .. }) => {}
            _ => panic!("case {case}: {e}"),
        }
        // The exchange consumed the sequence number either way.
        assert_eq!(secrets_seqno(&h), 2, "case {case}");
        assert_disabled(&mut h, &mut c, &mut m);
    }
}

#[test]
fn status_and_content_errors_keep_the_vmpck() {
    let (mut h, mut c, mut m) = setup(true);
    h.k.report_status = 0x16;
    let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
    assert!(matches!(e, GuestError::MsgStatus { .. }), "{e}");
    h.k.report_status = 0;
    h.k.report_data_wrong = true;
    let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
    assert!(matches!(e, GuestError::ReportMismatch { .. }), "{e}");
    assert!(!m.is_disabled());
    h.k.report_data_wrong = false;
    m.report(&mut h, &mut c, &nonce(), None).unwrap();
}

#[test]
fn extended_report_retries_with_a_bigger_buffer() {
    let (mut h, mut c, mut m) = setup(true);
    let blob = cert_blob([1500, 1500, 1400]); // 4496 bytes: 2 pages
    h.k.certs = blob.clone();
    let x = m
        .extended_report(&mut h, &mut c, &nonce(), Gpa(CERTS), 1, 4)
        .unwrap();
    assert_eq!(x.too_small_retries, 1);
    assert_eq!(x.cert_pages, 2);
    assert_eq!(x.certs, blob);
    assert_eq!(x.entries.len(), 3);
    assert_eq!(x.report.len(), 0x4A0);
    // First attempt: extended (too small) then the same message as a plain request
    // (seqno 1 consumed), then the retry with seqno 3.
    assert_eq!(fw_seqnos(&h), vec![1, 3]);
    let exits = h.ghcb_exits();
    let reqs: Vec<u64> = exits.into_iter().filter(|&e| e >= 0x8000_0011).collect();
    assert_eq!(reqs, vec![0x8000_0012, 0x8000_0011, 0x8000_0012]);
    assert_eq!(secrets_seqno(&h), 4);
    assert!(!m.is_disabled());
    assert!(parse_cert_table(&x.certs).is_ok());
}

#[test]
fn extended_report_beyond_the_limit_fails_without_disabling() {
    let (mut h, mut c, mut m) = setup(true);
    h.k.certs = cert_blob([6000, 6000, 6000]); // 5 pages
    let e = m
        .extended_report(&mut h, &mut c, &nonce(), Gpa(CERTS), 1, 4)
        .unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::CertBufferTooSmall {
                given: 1,
                needed: 5
            }
        ),
        "{e}"
    );
    assert!(!m.is_disabled());
    // The host with no certificates: an empty table.
    h.k.certs = Vec::new();
    let x = m
        .extended_report(&mut h, &mut c, &nonce(), Gpa(CERTS), 1, 4)
        .unwrap();
    assert_eq!(x.certs, vec![0u8; 24]);
    assert!(x.entries.is_empty());
}

#[test]
fn seqno_exhaustion_and_absent_keys() {
    let (mut h, mut c, mut m) = setup(true);
    h.poke(SECRETS + 0xA0, &(u32::MAX - 1).to_le_bytes());
    let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
    assert!(matches!(e, GuestError::SeqnoExhausted { .. }), "{e}");
    assert!(MsgClient::new(0, &[0; 32], SeqnoStore::Memory, Gpa(REQ), Gpa(RESP)).is_err());
    assert!(MsgClient::new(4, &[1; 32], SeqnoStore::Memory, Gpa(REQ), Gpa(RESP)).is_err());
    assert!(MsgClient::new(0, &[1; 32], SeqnoStore::Memory, Gpa(REQ), Gpa(REQ)).is_err());
}

#[test]
fn tampered_secrets_page_is_reported() {
    let (mut h, mut c, mut m) = setup(true);
    h.tamper(SECRETS);
    let e = m.report(&mut h, &mut c, &nonce(), None).unwrap_err();
    match e {
        GuestError::Tampered { gpa, .. } => assert_eq!(gpa, Gpa(SECRETS)),
        e => panic!("{e}"),
    }
}
