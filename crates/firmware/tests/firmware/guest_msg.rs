//! SNP_GUEST_REQUEST message handling: the fixture vectors (byte-exact AEAD framing),
//! every header check and its status, the sequence-number rules, and the payload
//! statuses of MSG_REPORT_REQ / MSG_KEY_REQ / MSG_TSC_INFO_REQ.

use softsev_abi::FwStatus;
use softsev_abi::guest_msg::{
    HEADER_SIZE, KeyReq, KeyRsp, MsgHeader, MsgType, PAGE_SIZE, ReportReq, ReportRsp, TscInfoRsp,
};
use softsev_abi::report::AttestationReport;
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{Product, TcbVersion};
use softsev_firmware::fuzzing::{GuestMsgClient, open_response, seal_request};
use softsev_firmware::guest_msg::{
    GuestMsgEnv, GuestMsgError, GuestMsgState, handle_guest_request,
};
use softsev_firmware::identity::Chip;
use std::path::PathBuf;
use std::sync::OnceLock;
use zerocopy::{FromBytes, IntoBytes};

const KEYS: [[u8; 32]; 4] = [[0x10; 32], [0x21; 32], [0x32; 32], [0x43; 32]];
const VMRK: [u8; 32] = [0x99; 32];

fn chip() -> &'static Chip {
    static C: OnceLock<Chip> = OnceLock::new();
    C.get_or_init(|| Chip::from_seed(Product::Milan, b"guest_msg tests").unwrap())
}

fn tcb() -> TcbVersion {
    TcbVersion {
        fmc: 0,
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 0xdb,
    }
}

fn env() -> GuestMsgEnv<'static> {
    let mut e = GuestMsgEnv::new(chip(), &VMRK);
    e.current_tcb = tcb();
    e.reported_tcb = tcb();
    e.committed_tcb = tcb();
    e.launch_mut().launch_tcb = tcb();
    e
}

fn fixtures() -> Option<PathBuf> {
    softsev_testkit::fixture_dir("guest-msg")
}

fn report_req(vmpl: u32, key_sel: u32) -> Vec<u8> {
    ReportReq {
        report_data: core::array::from_fn(|i| i as u8),
        vmpl,
        key_sel,
        ..ReportReq::default()
    }
    .as_bytes()
    .to_vec()
}

/// Run one request through a fresh response page; returns the result and the page.
fn run(
    state: &mut GuestMsgState,
    env: &GuestMsgEnv<'_>,
    msg: &[u8],
) -> (Result<FwStatus, GuestMsgError>, Vec<u8>) {
    let mut rsp = vec![0xEEu8; PAGE_SIZE];
    let r = handle_guest_request(state, env, msg, &mut rsp).map(|r| r.payload_status);
    (r, rsp)
}

fn status_of(r: &Result<FwStatus, GuestMsgError>) -> FwStatus {
    match r {
        Ok(_) => FwStatus::SUCCESS,
        Err(e) => e.status().expect("a firmware status, not a model failure"),
    }
}

// ---------------------------------------------------------------------------------
// Fixture vectors

fn json_vectors(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("derived-aes-gcm/vectors.json")).unwrap();
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
}

fn key32(hexstr: &str) -> [u8; 32] {
    hex::decode(hexstr).unwrap().try_into().unwrap()
}

/// The self-generated AES-GCM vectors (Python `cryptography`): our framing opens each
/// file to the recorded plaintext, and sealing that plaintext gives the file back
/// byte for byte.
#[test]
fn derived_vectors_open_and_seal_byte_exact() {
    let Some(dir) = fixtures() else { return };
    let lit = std::fs::read(dir.join("lit-sev-snp-utils/snp_report_msg_resp.bin")).unwrap();
    for v in json_vectors(&dir) {
        let name = v["name"].as_str().unwrap();
        let file = std::fs::read(dir.join("derived-aes-gcm").join(name)).unwrap();
        let key = key32(v["vmpck"].as_str().unwrap());
        let seqno = v["msg_seqno"].as_u64().unwrap();
        let ty = MsgType(v["msg_type"].as_u64().unwrap() as u8);
        let plain = match v["plaintext_hex"].as_str() {
            Some(h) => hex::decode(h).unwrap(),
            None => lit[..0x4C0].to_vec(),
        };
        assert_eq!(file.len() as u64, v["message_len"].as_u64().unwrap());
        let hdr = MsgHeader::read(&file).unwrap();
        assert_eq!(hdr.msg_seqno, seqno, "{name}");
        assert_eq!(hdr.message_type(), ty, "{name}");
        assert_eq!(hex::encode(hdr.iv()), v["iv"].as_str().unwrap(), "{name}");
        assert_eq!(hex::encode(hdr.aad()), v["aad"].as_str().unwrap(), "{name}");
        assert_eq!(hex::encode(hdr.tag()), v["authtag"].as_str().unwrap());

        // Open (guest side and the shared framing).
        let opened = open_response(&key, &file).unwrap();
        assert_eq!(&opened.payload[..], &plain[..], "{name}");
        // Seal.
        let sealed = seal_request(&key, 0, seqno, ty, 1, &plain).unwrap();
        assert_eq!(sealed, file, "{name}: sealing is not byte-exact");
        // One flipped bit anywhere authenticated fails.
        for pos in [0usize, 0x20, 0x30, HEADER_SIZE, file.len() - 1] {
            let mut bad = file.clone();
            bad[pos] ^= 0x80;
            assert!(
                open_response(&key, &bad).is_err(),
                "{name}: flip at {pos:#x}"
            );
        }
    }
}

/// v1 is a well-formed MSG_REPORT_REQ (VMPCK0 = 00..1f, seqno 1): the firmware model
/// accepts it and answers seqno 2 with a MSG_REPORT_RSP carrying REPORT_DATA 00..3f.
/// v0 (coconut-svsm's unit-test inputs) has MSG_SIZE 0x17, which the firmware refuses.
#[test]
fn derived_vectors_through_the_handler() {
    let Some(dir) = fixtures() else { return };
    let key = key32("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let mut keys = KEYS;
    keys[0] = key;
    let env = env();

    let v1 = std::fs::read(dir.join("derived-aes-gcm/v1_msg_report_req.bin")).unwrap();
    let mut state = GuestMsgState::from_keys(&keys);
    let (r, page) = run(&mut state, &env, &v1);
    assert_eq!(r.unwrap(), FwStatus::SUCCESS);
    let rsp = open_response(&key, &page).unwrap();
    assert_eq!(rsp.header.msg_seqno, 2);
    assert_eq!(rsp.header.message_type(), MsgType::REPORT_RSP);
    let body = ReportRsp::read_from_bytes(&rsp.payload).unwrap();
    assert_eq!(body.status, 0);
    assert_eq!(body.report_size, 0x4A0);
    let want: [u8; 64] = core::array::from_fn(|i| i as u8);
    assert_eq!(body.report.report_data, want);
    assert_eq!(state.msg_count(0), Some(2));

    let v0 = std::fs::read(dir.join("derived-aes-gcm/v0_svsm_inputs_msg_report_req.bin")).unwrap();
    let mut state = GuestMsgState::from_keys(&[[5u8; 32]; 4]);
    let (r, _) = run(&mut state, &env, &v0);
    assert!(
        matches!(
            r,
            Err(GuestMsgError::BadHeader {
                field: "MSG_SIZE",
                value: 0x17
            })
        ),
        "{r:?}"
    );
    assert_eq!(state.msg_count(0), Some(0));
}

/// Our response framing reproduces the v2 vector: sealing the LIT response payload
/// as MSG_REPORT_RSP, seqno 2, gives the same bytes.
#[test]
fn response_header_shape_matches_the_v2_vector() {
    let Some(dir) = fixtures() else { return };
    let v2 = std::fs::read(dir.join("derived-aes-gcm/v2_msg_report_rsp.bin")).unwrap();
    let key = key32("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let mut keys = KEYS;
    keys[0] = key;
    let mut state = GuestMsgState::from_keys(&keys);
    let req = seal_request(&key, 0, 1, MsgType::REPORT_REQ, 1, &report_req(0, 0)).unwrap();
    let (r, page) = run(&mut state, &env(), &req);
    r.unwrap();
    // Header bytes 0x20..0x60 (seqno, AAD fields) equal the vector's; only the tag
    // (which covers different report contents) differs.
    assert_eq!(&page[0x20..HEADER_SIZE], &v2[0x20..HEADER_SIZE]);
    assert_eq!(&page[0x10..0x20], &[0u8; 16]);
}

// ---------------------------------------------------------------------------------
// Header checks

/// Every header check, with the status the firmware returns; nothing is written and
/// the counter does not move on failure.
#[test]
fn every_header_check_gives_its_status() {
    let env = env();
    let good = report_req(0, 0);
    let k0 = &KEYS[0];
    let seal = |f: &dyn Fn(&mut MsgHeader)| {
        let mut m = seal_request(k0, 0, 1, MsgType::REPORT_REQ, 1, &good).unwrap();
        let mut h = MsgHeader::read(&m).unwrap();
        f(&mut h);
        m[..HEADER_SIZE].copy_from_slice(h.as_bytes());
        m
    };
    // Rebuild then seal, so that only the checked field is wrong (tag valid).
    let sealed_with = |f: &dyn Fn(&mut MsgHeader), payload: &[u8]| {
        let mut h = MsgHeader::new(MsgType::REPORT_REQ, 1, payload.len() as u16, 0, 1);
        f(&mut h);
        let mut m = h.as_bytes().to_vec();
        m.extend_from_slice(payload);
        softsev_crypto::guest_msg_aead::seal(k0, &mut m).unwrap();
        m
    };
    let mut page_tail = vec![0u8; PAGE_SIZE];
    let big = seal_request(k0, 0, 1, MsgType::REPORT_REQ, 1, &[0u8; 0xFA0]).unwrap();
    page_tail[..big.len()].copy_from_slice(&big);

    let cases: Vec<(&str, Vec<u8>, FwStatus)> = vec![
        ("good", seal(&|_| {}), FwStatus::SUCCESS),
        (
            "HDR_VERSION 0",
            sealed_with(&|h| h.hdr_version = 0, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "HDR_VERSION 2",
            sealed_with(&|h| h.hdr_version = 2, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "HDR_SIZE 0x5f",
            sealed_with(&|h| h.hdr_size = 0x5F, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "HDR_SIZE 0x70",
            sealed_with(&|h| h.hdr_size = 0x70, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "ALGO 0",
            sealed_with(&|h| h.algo = 0, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "ALGO 2",
            sealed_with(&|h| h.algo = 2, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_SIZE 0",
            sealed_with(&|h| h.msg_size = 0, &[]),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_SIZE 0x5f",
            sealed_with(&|_| {}, &good[..0x5F]),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_SIZE 0x68",
            sealed_with(&|_| {}, &[0u8; 0x68]),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_SIZE past the page",
            {
                let mut m = page_tail.clone();
                m[0x36..0x38].copy_from_slice(&0xFB0u16.to_le_bytes());
                m
            },
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_VMPCK 4",
            sealed_with(&|h| h.msg_vmpck = 4, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_VMPCK 0xff",
            sealed_with(&|h| h.msg_vmpck = 0xFF, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "tag flipped",
            seal(&|h| h.auth_tag[3] ^= 1),
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "AAD: MSG_TYPE changed after sealing",
            seal(&|h| h.msg_type = 3),
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "AAD: reserved byte changed after sealing",
            seal(&|h| h._reserved_40[7] = 1),
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "IV: MSG_SEQNO changed after sealing",
            seal(&|h| h.msg_seqno = 3),
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "wrong VMPCK",
            seal(&|h| h.msg_vmpck = 1),
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "ciphertext flipped",
            {
                let mut m = seal(&|_| {});
                m[HEADER_SIZE + 5] ^= 4;
                m
            },
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "MSG_SEQNO 0",
            sealed_with(&|h| h.msg_seqno = 0, &good),
            FwStatus::AEAD_OFLOW,
        ),
        (
            "MSG_SEQNO 2",
            sealed_with(&|h| h.msg_seqno = 2, &good),
            FwStatus::AEAD_OFLOW,
        ),
        (
            "MSG_SEQNO 3 (skip)",
            sealed_with(&|h| h.msg_seqno = 3, &good),
            FwStatus::AEAD_OFLOW,
        ),
        (
            "MSG_VERSION 0",
            sealed_with(&|h| h.msg_version = 0, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "REPORT_REQ version 2",
            sealed_with(&|h| h.msg_version = 2, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "KEY_REQ version 3",
            sealed_with(
                &|h| {
                    h.msg_type = 3;
                    h.msg_version = 3
                },
                &[0u8; 0x20],
            ),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_TYPE 0",
            sealed_with(&|h| h.msg_type = 0, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_TYPE REPORT_RSP",
            sealed_with(&|h| h.msg_type = 6, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_TYPE 19",
            sealed_with(&|h| h.msg_type = 19, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MSG_TYPE 0xff",
            sealed_with(&|h| h.msg_type = 0xFF, &good),
            FwStatus::INVALID_PARAM,
        ),
        (
            "EXPORT_REQ (not modelled)",
            sealed_with(&|h| h.msg_type = 7, &good),
            FwStatus::UNSUPPORTED,
        ),
        (
            "VMRK_REQ (not modelled)",
            sealed_with(&|h| h.msg_type = 13, &good),
            FwStatus::UNSUPPORTED,
        ),
        (
            "shorter than a header",
            seal(&|_| {})[..0x5F].to_vec(),
            FwStatus::INVALID_PARAM,
        ),
        // Check order: header before decryption, decryption before the sequence
        // number, the sequence number before the message version.
        (
            "bad ALGO and bad tag",
            {
                let mut m = seal(&|h| h.algo = 2);
                m[0] ^= 1;
                m
            },
            FwStatus::INVALID_PARAM,
        ),
        (
            "bad tag and bad seqno",
            {
                let mut m = sealed_with(&|h| h.msg_seqno = 5, &good);
                m[0] ^= 1;
                m
            },
            FwStatus::BAD_MEASUREMENT,
        ),
        (
            "bad seqno and bad version",
            sealed_with(
                &|h| {
                    h.msg_seqno = 5;
                    h.msg_version = 9
                },
                &good,
            ),
            FwStatus::AEAD_OFLOW,
        ),
    ];
    for (name, msg, want) in cases {
        let mut state = GuestMsgState::from_keys(&KEYS);
        let (r, page) = run(&mut state, &env, &msg);
        assert_eq!(status_of(&r), want, "{name}: {r:?}");
        if want != FwStatus::SUCCESS {
            assert!(page.iter().all(|&b| b == 0xEE), "{name}: response written");
            assert_eq!(state.msg_counts(), [0; 4], "{name}: counter moved");
        } else {
            assert_eq!(state.msg_counts(), [2, 0, 0, 0], "{name}");
        }
    }
}

/// A request that starts inside its page: only the bytes up to the page end count.
#[test]
fn request_and_response_must_fit_their_pages() {
    let env = env();
    let mut state = GuestMsgState::from_keys(&KEYS);
    let msg = seal_request(&KEYS[0], 0, 1, MsgType::REPORT_REQ, 1, &report_req(0, 0)).unwrap();
    let mut rsp = vec![0u8; PAGE_SIZE];
    assert!(handle_guest_request(&mut state, &env, &msg, &mut rsp).is_ok());
    // The next request starts 0xB0 bytes before its page end: the 0xC0-byte message
    // does not fit.
    let msg = seal_request(&KEYS[0], 0, 3, MsgType::REPORT_REQ, 1, &report_req(0, 0)).unwrap();
    let e = handle_guest_request(&mut state, &env, &msg[..0xB0], &mut rsp).unwrap_err();
    assert!(
        matches!(
            e,
            GuestMsgError::RequestPastPage {
                msg_size: 0x60,
                room: 0x50
            }
        ),
        "{e}"
    );
    // Response room: a report response needs 0x520 bytes.
    let mut small = vec![0xEEu8; 0x51F];
    let e = handle_guest_request(&mut state, &env, &msg, &mut small).unwrap_err();
    assert_eq!(e.status(), Some(FwStatus::INVALID_PARAM));
    assert!(small.iter().all(|&b| b == 0xEE));
    assert_eq!(state.msg_count(0), Some(2));
    let mut exact = vec![0u8; 0x520];
    let r = handle_guest_request(&mut state, &env, &msg, &mut exact).unwrap();
    assert_eq!(r.response_len, 0x520);
    assert_eq!(state.msg_count(0), Some(4));
}

// ---------------------------------------------------------------------------------
// Sequence numbers

#[test]
fn sequence_numbers_advance_by_two_per_vmpck_and_reject_reuse() {
    let env = env();
    let mut state = GuestMsgState::from_keys(&KEYS);
    let mut rsp = vec![0u8; PAGE_SIZE];
    let mut sent = Vec::new();
    for round in 0..5u64 {
        let seqno = 2 * round + 1;
        let msg = seal_request(
            &KEYS[0],
            0,
            seqno,
            MsgType::REPORT_REQ,
            1,
            &report_req(0, 1),
        )
        .unwrap();
        handle_guest_request(&mut state, &env, &msg, &mut rsp).unwrap();
        let opened = open_response(&KEYS[0], &rsp).unwrap();
        assert_eq!(opened.header.msg_seqno, seqno + 1);
        assert_eq!(opened.header.msg_vmpck, 0);
        assert_eq!(state.msg_count(0), Some(seqno + 1));
        sent.push(msg);
    }
    // Replaying any earlier request fails, as does skipping ahead.
    for (i, old) in sent.iter().enumerate() {
        let e = handle_guest_request(&mut state, &env, old, &mut rsp).unwrap_err();
        assert_eq!(e.status(), Some(FwStatus::AEAD_OFLOW), "replay {i}");
        assert!(
            matches!(e, GuestMsgError::SeqNo { got, expected: 11, .. } if got == 2 * i as u64 + 1)
        );
    }
    let skip = seal_request(&KEYS[0], 0, 13, MsgType::REPORT_REQ, 1, &report_req(0, 0)).unwrap();
    assert!(handle_guest_request(&mut state, &env, &skip, &mut rsp).is_err());
    // Failures did not move the counter: 11 still works.
    let next = seal_request(&KEYS[0], 0, 11, MsgType::REPORT_REQ, 1, &report_req(0, 0)).unwrap();
    handle_guest_request(&mut state, &env, &next, &mut rsp).unwrap();
    // Other VMPCKs have their own counters, still at 0.
    assert_eq!(state.msg_counts(), [12, 0, 0, 0]);
    let v3 = seal_request(&KEYS[3], 3, 1, MsgType::REPORT_REQ, 1, &report_req(3, 0)).unwrap();
    handle_guest_request(&mut state, &env, &v3, &mut rsp).unwrap();
    assert_eq!(open_response(&KEYS[3], &rsp).unwrap().header.msg_vmpck, 3);
    assert_eq!(state.msg_counts(), [12, 0, 0, 2]);
    // A VMPCK3 request sealed with seqno 1 again is a reuse.
    let e = handle_guest_request(&mut state, &env, &v3, &mut rsp).unwrap_err();
    assert_eq!(e.status(), Some(FwStatus::AEAD_OFLOW));
}

#[test]
fn counter_exhaustion_is_aead_oflow() {
    let env = env();
    let mut state = GuestMsgState::from_keys(&KEYS);
    let mut rsp = vec![0u8; PAGE_SIZE];
    state.set_msg_counts([u64::MAX - 3, 0, u64::MAX - 1, 0]);
    // counter 2^64 - 4: request 2^64 - 3 is the last that works (response 2^64 - 2).
    let last = seal_request(
        &KEYS[0],
        0,
        u64::MAX - 2,
        MsgType::REPORT_REQ,
        1,
        &report_req(0, 0),
    )
    .unwrap();
    handle_guest_request(&mut state, &env, &last, &mut rsp).unwrap();
    assert_eq!(
        open_response(&KEYS[0], &rsp).unwrap().header.msg_seqno,
        u64::MAX - 1
    );
    assert_eq!(state.msg_count(0), Some(u64::MAX - 1));
    let after = seal_request(
        &KEYS[0],
        0,
        u64::MAX,
        MsgType::REPORT_REQ,
        1,
        &report_req(0, 0),
    )
    .unwrap();
    let e = handle_guest_request(&mut state, &env, &after, &mut rsp).unwrap_err();
    assert!(
        matches!(e, GuestMsgError::CounterExhausted { vmpck: 0 }),
        "{e}"
    );
    assert_eq!(e.status(), Some(FwStatus::AEAD_OFLOW));
    let v2 = seal_request(
        &KEYS[2],
        2,
        u64::MAX,
        MsgType::REPORT_REQ,
        1,
        &report_req(2, 0),
    )
    .unwrap();
    let e = handle_guest_request(&mut state, &env, &v2, &mut rsp).unwrap_err();
    assert_eq!(e.status(), Some(FwStatus::AEAD_OFLOW));
}

#[test]
fn state_keys_secrets_page_and_debug() {
    let mut rng = softsev_crypto::rng::Rng::seeded(b"s", "vmpck");
    let a = GuestMsgState::new(&mut rng);
    let b = GuestMsgState::new(&mut softsev_crypto::rng::Rng::seeded(b"s", "vmpck"));
    assert_eq!(a.vmpck(0), b.vmpck(0));
    let keys: Vec<_> = (0..4).map(|i| *a.vmpck(i).unwrap()).collect();
    for i in 0..4 {
        for j in 0..i {
            assert_ne!(keys[i], keys[j]);
        }
    }
    assert_eq!(a.vmpck(4), None);
    let mut page = SecretsPage::new(
        3,
        false,
        Product::Milan.cpuid_signature(),
        [0; 16],
        &[[0; 32]; 4],
        200,
    );
    a.write_secrets(&mut page);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(&page.as_bytes()[0x20 + 32 * i..0x40 + 32 * i], k);
    }
    let dbg = format!("{a:?}");
    assert!(dbg.contains("<secret>"), "{dbg}");
    let hexkey = hex::encode(keys[0]);
    assert!(!dbg.contains(&hexkey[..8]));
    // A guest using its secrets-page copy talks to the firmware.
    let mut state = a;
    let mut guest = GuestMsgClient::new(page.vmpck(1).unwrap(), 1);
    let msg = guest
        .request(MsgType::REPORT_REQ, 1, &report_req(1, 0))
        .unwrap();
    let mut rsp = vec![0u8; PAGE_SIZE];
    handle_guest_request(&mut state, &env(), &msg, &mut rsp).unwrap();
    let body = guest.response(&rsp).unwrap();
    assert_eq!(ReportRsp::read_from_bytes(&body).unwrap().report.vmpl, 1);
    assert_eq!(guest.last_seqno(), 2);
}

// ---------------------------------------------------------------------------------
// Payload statuses

fn exchange(env: &GuestMsgEnv<'_>, vmpck: u8, ty: MsgType, version: u8, payload: &[u8]) -> Vec<u8> {
    let mut state = GuestMsgState::from_keys(&KEYS);
    let key = &KEYS[usize::from(vmpck)];
    let msg = seal_request(key, vmpck, 1, ty, version, payload).unwrap();
    let mut rsp = vec![0u8; PAGE_SIZE];
    let reply = handle_guest_request(&mut state, env, &msg, &mut rsp).unwrap();
    let opened = open_response(key, &rsp).unwrap();
    assert_eq!(opened.header.message_type(), ty.response().unwrap());
    assert_eq!(reply.response_len, HEADER_SIZE + opened.payload.len());
    opened.payload.to_vec()
}

fn report_status(env: &GuestMsgEnv<'_>, vmpck: u8, payload: &[u8]) -> (FwStatus, ReportRsp) {
    let body = exchange(env, vmpck, MsgType::REPORT_REQ, 1, payload);
    let rsp = ReportRsp::read_from_bytes(&body).unwrap();
    (FwStatus(rsp.status), rsp)
}

#[test]
fn report_request_payload_statuses() {
    let e = env();
    let mut reserved = report_req(0, 0);
    reserved[0x5F] = 1;
    let mut reserved_bits = report_req(0, 0);
    reserved_bits[0x44] = 0x4;
    let mut no_vcek = env();
    no_vcek.launch_mut().vcek_disabled = true;
    let cases: Vec<(&str, &GuestMsgEnv<'_>, u8, Vec<u8>, FwStatus)> = vec![
        ("ok", &e, 0, report_req(0, 0), FwStatus::SUCCESS),
        ("reserved byte", &e, 0, reserved, FwStatus::INVALID_PARAM),
        (
            "reserved KEY_SEL bits",
            &e,
            0,
            reserved_bits,
            FwStatus::INVALID_PARAM,
        ),
        ("KEY_SEL 3", &e, 0, report_req(0, 3), FwStatus::INVALID_KEY),
        (
            "VLEK only, none loaded",
            &e,
            0,
            report_req(0, 2),
            FwStatus::INVALID_KEY,
        ),
        (
            "VCEK only, VCEK disabled",
            &no_vcek,
            0,
            report_req(0, 1),
            FwStatus::INVALID_KEY,
        ),
        (
            "VLEK or VCEK, neither",
            &no_vcek,
            0,
            report_req(0, 0),
            FwStatus::INVALID_KEY,
        ),
        (
            "VMPL 1 with VMPCK2",
            &e,
            2,
            report_req(1, 0),
            FwStatus::INVALID_PARAM,
        ),
        (
            "VMPL 2 with VMPCK2",
            &e,
            2,
            report_req(2, 0),
            FwStatus::SUCCESS,
        ),
        (
            "VMPL 3 with VMPCK0",
            &e,
            0,
            report_req(3, 0),
            FwStatus::SUCCESS,
        ),
        // KEY_SEL is checked before the VMPL.
        (
            "KEY_SEL 3 and VMPL 0 with VMPCK1",
            &e,
            1,
            report_req(0, 3),
            FwStatus::INVALID_KEY,
        ),
        // A short payload reads as zero-extended (AMD's scratch buffer).
        (
            "0x50-byte payload",
            &e,
            0,
            report_req(0, 0)[..0x50].to_vec(),
            FwStatus::SUCCESS,
        ),
    ];
    for (name, env, vmpck, payload, want) in cases {
        let (st, rsp) = report_status(env, vmpck, &payload);
        assert_eq!(st, want, "{name}");
        assert_eq!(
            rsp.report_size, 0x4A0,
            "{name}: REPORT_SIZE set even on error"
        );
        assert!(rsp._reserved_08.iter().all(|&b| b == 0));
        if want == FwStatus::SUCCESS {
            assert_eq!(rsp.report.version, 3, "{name}");
            assert_eq!(
                rsp.report.vmpl,
                u32::from_le_bytes(payload[0x40..0x44].try_into().unwrap())
            );
        } else {
            assert_eq!(
                rsp.report,
                AttestationReport::default(),
                "{name}: report not zero"
            );
        }
    }
}

/// A MSG_KEY_REQ payload: 0x20 bytes for version 1; for version 2 the 0x28-byte
/// structure padded to 0x30, since the firmware requires MSG_SIZE to be a multiple
/// of 16.
fn key_payload(req: &KeyReq, version: u8) -> Vec<u8> {
    let mut p = req.as_bytes().to_vec();
    if version >= 2 {
        p.resize(0x30, 0);
    } else {
        p.truncate(0x20);
    }
    p
}

fn key_rsp(env: &GuestMsgEnv<'_>, vmpck: u8, version: u8, req: &KeyReq) -> KeyRsp {
    let body = exchange(
        env,
        vmpck,
        MsgType::KEY_REQ,
        version,
        &key_payload(req, version),
    );
    KeyRsp::read_from_bytes(&body).unwrap()
}

#[test]
fn key_request_payload_statuses() {
    let e = env();
    let mut masked = env();
    masked.mask_chip_key = true;
    let mut no_vcek = env();
    no_vcek.launch_mut().vcek_disabled = true;
    let mut svn5 = env();
    svn5.launch_mut().guest_svn = 5;
    svn5.launch_mit_vector = 0b1010;
    let tcb_raw = |t: TcbVersion| t.encode(Product::Milan).unwrap();
    let mut higher = tcb();
    higher.snp += 1;
    let mut lower = tcb();
    lower.microcode -= 1;
    let mut reserved_tcb = tcb_raw(tcb());
    reserved_tcb.0[3] = 1;
    let base = KeyReq::default();
    let with = |f: &dyn Fn(&mut KeyReq)| {
        let mut r = base;
        f(&mut r);
        r
    };
    let cases: Vec<(&str, &GuestMsgEnv<'_>, u8, u8, KeyReq, FwStatus)> = vec![
        ("ok", &e, 0, 1, base, FwStatus::SUCCESS),
        (
            "reserved bit 3",
            &e,
            0,
            1,
            with(&|r| r.key_select = 8),
            FwStatus::INVALID_PARAM,
        ),
        (
            "reserved word",
            &e,
            0,
            1,
            with(&|r| r._reserved_04 = 1),
            FwStatus::INVALID_PARAM,
        ),
        (
            "MASK_CHIP_KEY, VCEK root",
            &masked,
            0,
            1,
            base,
            FwStatus::INVALID_KEY,
        ),
        (
            "MASK_CHIP_KEY, VMRK root",
            &masked,
            0,
            1,
            with(&|r| r.key_select = 1),
            FwStatus::SUCCESS,
        ),
        (
            "KEY_SEL 3",
            &e,
            0,
            1,
            with(&|r| r.key_select = 3 << 1),
            FwStatus::INVALID_KEY,
        ),
        (
            "KEY_SEL 3 with VMRK root (ignored)",
            &e,
            0,
            1,
            with(&|r| r.key_select = 3 << 1 | 1),
            FwStatus::SUCCESS,
        ),
        (
            "VLEK only, none",
            &e,
            0,
            1,
            with(&|r| r.key_select = 2 << 1),
            FwStatus::INVALID_KEY,
        ),
        (
            "VCEK only, disabled",
            &no_vcek,
            0,
            1,
            with(&|r| r.key_select = 1 << 1),
            FwStatus::INVALID_KEY,
        ),
        (
            "VMPL 0 with VMPCK1",
            &e,
            1,
            1,
            base,
            FwStatus::INVALID_PARAM,
        ),
        (
            "VMPL 1 with VMPCK1",
            &e,
            1,
            1,
            with(&|r| r.vmpl = 1),
            FwStatus::SUCCESS,
        ),
        (
            "GFS bit 7",
            &e,
            0,
            1,
            with(&|r| r.guest_field_select = 1 << 7),
            FwStatus::INVALID_PARAM,
        ),
        (
            "GFS bit 6 in v1",
            &e,
            0,
            1,
            with(&|r| r.guest_field_select = 1 << 6),
            FwStatus::INVALID_PARAM,
        ),
        (
            "GFS bit 6 in v2",
            &e,
            0,
            2,
            with(&|r| r.guest_field_select = 1 << 6),
            FwStatus::SUCCESS,
        ),
        (
            "TCB = committed",
            &e,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 5;
                r.tcb_version = tcb_raw(tcb())
            }),
            FwStatus::SUCCESS,
        ),
        (
            "TCB below committed",
            &e,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 5;
                r.tcb_version = tcb_raw(lower)
            }),
            FwStatus::SUCCESS,
        ),
        (
            "TCB above committed",
            &e,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 5;
                r.tcb_version = tcb_raw(higher)
            }),
            FwStatus::INVALID_PARAM,
        ),
        (
            "TCB reserved byte",
            &e,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 5;
                r.tcb_version = reserved_tcb
            }),
            FwStatus::INVALID_PARAM,
        ),
        (
            "TCB above committed, not selected",
            &e,
            0,
            1,
            with(&|r| r.tcb_version = tcb_raw(higher)),
            FwStatus::SUCCESS,
        ),
        (
            "SVN = ID block's",
            &svn5,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 4;
                r.guest_svn = 5
            }),
            FwStatus::SUCCESS,
        ),
        (
            "SVN above ID block's",
            &svn5,
            0,
            1,
            with(&|r| {
                r.guest_field_select = 1 << 4;
                r.guest_svn = 6
            }),
            FwStatus::INVALID_PARAM,
        ),
        (
            "SVN above, not selected",
            &svn5,
            0,
            1,
            with(&|r| r.guest_svn = 6),
            FwStatus::SUCCESS,
        ),
        (
            "mit vector within launch's",
            &svn5,
            0,
            2,
            with(&|r| {
                r.guest_field_select = 1 << 6;
                r.launch_mit_vector = 0b1000
            }),
            FwStatus::SUCCESS,
        ),
        (
            "mit vector beyond launch's",
            &svn5,
            0,
            2,
            with(&|r| {
                r.guest_field_select = 1 << 6;
                r.launch_mit_vector = 0b0100
            }),
            FwStatus::INVALID_PARAM,
        ),
    ];
    for (name, env, vmpck, version, req, want) in cases {
        let rsp = key_rsp(env, vmpck, version, &req);
        assert_eq!(FwStatus(rsp.status), want, "{name}");
        assert!(rsp._reserved_04.iter().all(|&b| b == 0), "{name}");
        if want == FwStatus::SUCCESS {
            assert_ne!(rsp.derived_key, [0; 32], "{name}");
        } else {
            assert_eq!(rsp.derived_key, [0; 32], "{name}: key on error");
        }
    }
}

#[test]
fn key_response_version_follows_the_request_and_keys_are_stable() {
    let e = env();
    for version in [1u8, 2] {
        let mut state = GuestMsgState::from_keys(&KEYS);
        let mut guest = GuestMsgClient::new(&KEYS[0], 0);
        let req = KeyReq {
            guest_field_select: 0x3F,
            tcb_version: tcb().encode(Product::Milan).unwrap(),
            ..KeyReq::default()
        };
        let msg = guest
            .request(MsgType::KEY_REQ, version, &key_payload(&req, version))
            .unwrap();
        let mut rsp = vec![0u8; PAGE_SIZE];
        handle_guest_request(&mut state, &e, &msg, &mut rsp).unwrap();
        let body = guest.response(&rsp).unwrap(); // checks MSG_VERSION == request's
        assert_eq!(body.len(), 0x40);
        let k1 = KeyRsp::read_from_bytes(&body).unwrap().derived_key;
        // Same request again, same key; v1 and v2 (mit vector 0, unselected) agree.
        let again = key_rsp(&e, 0, version, &req).derived_key;
        assert_eq!(k1, again);
        assert_eq!(k1, key_rsp(&e, 0, 1, &req).derived_key);
    }
}

#[test]
fn tsc_info() {
    let mut e = env();
    e.launch_mut().desired_tsc_freq_khz = 2_000_000;
    e.tsc_offset = 0x1234;
    let body = exchange(&e, 0, MsgType::TSC_INFO_REQ, 1, &[0u8; 0x80]);
    let rsp = TscInfoRsp::read_from_bytes(&body).unwrap();
    assert_eq!(rsp.status, 0);
    assert_eq!(rsp.guest_tsc_scale >> 32, 20);
    assert_eq!(rsp.guest_tsc_offset, 0x1234);
    assert_eq!(rsp.tsc_factor, 200);
    let mut bad = [0u8; 0x80];
    bad[0x7F] = 1;
    let body = exchange(&e, 0, MsgType::TSC_INFO_REQ, 1, &bad);
    let rsp = TscInfoRsp::read_from_bytes(&body).unwrap();
    assert_eq!(FwStatus(rsp.status), FwStatus::INVALID_PARAM);
    assert_eq!(rsp.guest_tsc_scale, 0);
}

/// MSG_CPUID_REQ: the functions QEMU would put in a CPUID page pass unchanged; a
/// function the platform does not allow is corrected and STATUS is INVALID_PARAM;
/// leaves outside the checked ranges are copied but not counted; reserved fields and
/// COUNT > 64 are refused; the response is as long as the request.
#[test]
fn cpuid_request_checks_functions_against_the_platform() {
    use softsev_abi::fw_buf::SnpCpuidFunction;
    use softsev_abi::guest_msg::{CpuidReq, CpuidRsp};
    use softsev_firmware::cpuid::check_cpuid_page;
    use softsev_vmm::cpuid::{qemu_cpuid_functions, qemu_cpuid_page};
    use zerocopy::FromZeros;

    let e = env();
    let funcs = qemu_cpuid_functions(Product::Milan, 4);
    let mut req = CpuidReq::new_zeroed();
    req.count = funcs.len() as u32;
    for (d, f) in req.functions.iter_mut().zip(&funcs) {
        *d = *f;
    }
    let cpuid = |req: &CpuidReq, len: usize| {
        let body = exchange(&e, 0, MsgType::CPUID_REQ, 1, &req.as_bytes()[..len]);
        assert_eq!(body.len(), len);
        let mut full = body.clone();
        full.resize(0xC10, 0);
        CpuidRsp::read_from_bytes(&full).unwrap()
    };
    let in_range = funcs
        .iter()
        .filter(|f| softsev_firmware::cpuid::leaf_is_checked(f.eax_in))
        .count();
    assert!(in_range > 40);
    let rsp = cpuid(&req, 0xC10);
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
    assert_eq!(rsp.count as usize, in_range);
    assert_eq!(rsp.functions, req.functions);

    // A hypervisor-bit lie in Fn0000_0001 ECX (or any disallowed value): corrected as
    // the LAUNCH_UPDATE check corrects the same page.
    let i = funcs.iter().position(|f| f.eax_in == 1).unwrap();
    let mut bad = req;
    bad.functions[i].ecx ^= 1 << 31;
    bad.functions[i].ebx ^= 0xFF;
    let rsp = cpuid(&bad, 0xC10);
    assert_eq!(FwStatus(rsp.status), FwStatus::INVALID_PARAM);
    let mut page = qemu_cpuid_page(Product::Milan, 4);
    page.functions[i] = bad.functions[i];
    let platform = softsev_firmware::cpuid::PlatformCpuid::for_product(Product::Milan);
    assert!(check_cpuid_page(&platform, &mut page).is_err());
    assert_eq!(rsp.functions[i], page.functions[i]);
    assert_ne!(rsp.functions[i], bad.functions[i]);

    // A hypervisor leaf (0x4000_0000) is copied but not counted or checked.
    let mut hv = req;
    let n = funcs.len();
    hv.functions[n] = SnpCpuidFunction {
        eax_in: 0x4000_0000,
        eax: 0x1234,
        ..hv.functions[n]
    };
    hv.count = n as u32 + 1;
    let rsp = cpuid(&hv, 0xC10);
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
    assert_eq!(rsp.count as usize, in_range);
    assert_eq!(rsp.functions[n].eax, 0x1234);

    // Reserved fields, COUNT above 64.
    let mut r = req;
    r._reserved_08 = 1;
    let rsp = cpuid(&r, 0xC10);
    assert_eq!(
        (FwStatus(rsp.status), rsp.count),
        (FwStatus::INVALID_PARAM, 0)
    );
    assert!(
        rsp.functions
            .iter()
            .all(|f| f.as_bytes().iter().all(|&b| b == 0))
    );
    let mut r = req;
    r.count = 65;
    let rsp = cpuid(&r, 0xC10);
    assert_eq!(
        (FwStatus(rsp.status), rsp.count),
        (FwStatus::INVALID_PARAM, 0)
    );
    let mut r = req;
    r.functions[0].reserved = 1;
    let rsp = cpuid(&r, 0xC10);
    assert_eq!(FwStatus(rsp.status), FwStatus::INVALID_PARAM);

    // A short request: the response is as short (only the first function fits).
    let mut one = req;
    one.count = 1;
    let rsp = cpuid(&one, 0x40);
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
    assert_eq!(rsp.functions[0], req.functions[0]);
}
