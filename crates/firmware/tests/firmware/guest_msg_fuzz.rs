//! Replays the committed guest-message corpus and a few thousand pseudo-random and
//! mutated inputs through the `guest_msg` fuzz entry point: no input may panic, the
//! firmware's responses always open, and the counter moves by exactly 2 on success
//! and not at all on failure (asserted inside the entry point).

use rand_core::RngCore as _;
use softsev_abi::FwStatus;
use softsev_abi::guest_msg::MsgType;
use softsev_crypto::rng::Rng;
use softsev_firmware::fuzzing::fuzz_guest_request;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/guest_msg");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The seeds reach what they are named after (so the corpus exercises the handlers,
/// not just the header checks).
#[test]
fn corpus_seeds_reach_their_handlers() {
    let seeds = corpus();
    assert!(seeds.len() >= 15);
    let sealed = |name: &str| {
        let data = &seeds.iter().find(|(n, _)| n == name).unwrap().1;
        let r = fuzz_guest_request(data);
        assert_eq!(r.len(), 2, "{name}");
        assert!(
            r[0].is_err(),
            "{name}: the raw (unsealed) input was accepted"
        );
        r[1].clone()
    };
    let ok = |name: &str, ty: MsgType, status: FwStatus| {
        let reply = sealed(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (reply.msg_type, reply.payload_status),
            (ty, status),
            "{name}"
        );
    };
    let fails = |name: &str, status: FwStatus| {
        let e = sealed(name).unwrap_err();
        assert_eq!(e.status(), Some(status), "{name}: {e}");
    };
    ok("report_v3_vmpck0", MsgType::REPORT_RSP, FwStatus::SUCCESS);
    ok("report_v5_masked", MsgType::REPORT_RSP, FwStatus::SUCCESS);
    ok(
        "report_vmpck2_vmpl1",
        MsgType::REPORT_RSP,
        FwStatus::INVALID_PARAM,
    );
    ok(
        "report_vlek_only",
        MsgType::REPORT_RSP,
        FwStatus::INVALID_KEY,
    );
    ok(
        "report_vcek_disabled",
        MsgType::REPORT_RSP,
        FwStatus::INVALID_KEY,
    );
    ok("report_short", MsgType::REPORT_RSP, FwStatus::SUCCESS);
    ok("key_v1_all_fields", MsgType::KEY_RSP, FwStatus::SUCCESS);
    ok("key_v1_vmrk", MsgType::KEY_RSP, FwStatus::SUCCESS);
    ok("key_v2_mit", MsgType::KEY_RSP, FwStatus::SUCCESS);
    ok("key_bad_tcb", MsgType::KEY_RSP, FwStatus::INVALID_PARAM);
    ok("tsc_info", MsgType::TSC_INFO_RSP, FwStatus::SUCCESS);
    ok("cpuid_req", MsgType::CPUID_RSP, FwStatus::SUCCESS);
    fails("bad_algo", FwStatus::INVALID_PARAM);
    fails("bad_hdr_size", FwStatus::INVALID_PARAM);
    fails("past_page", FwStatus::INVALID_PARAM);
    fails("version0", FwStatus::INVALID_PARAM);
    fails("unknown_type", FwStatus::INVALID_PARAM);
    // VMPCK 7 is folded to 3 for resealing, so the bad index only shows raw.
    let raw = fuzz_guest_request(&seeds.iter().find(|(n, _)| n == "bad_vmpck").unwrap().1);
    assert_eq!(
        raw[0].as_ref().unwrap_err().status(),
        Some(FwStatus::INVALID_PARAM)
    );
    // With the VLEK chip (flag bit 6), VLEK-only works.
    let mut vlek = seeds
        .iter()
        .find(|(n, _)| n == "report_vlek_only")
        .unwrap()
        .1
        .clone();
    vlek[0] |= 64;
    let r = fuzz_guest_request(&vlek);
    assert_eq!(r[1].as_ref().unwrap().payload_status, FwStatus::SUCCESS);
}

#[test]
fn corpus_and_mutations_do_not_panic() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, d)| d).collect();
    let mut rng = Rng::seeded(b"fuzz", "guest_msg");
    let mut reached_success = 0;
    for i in 0..3000u32 {
        let mut data = if i % 6 == 0 {
            let len = (rng.next_u32() % 300) as usize;
            let mut v = vec![0u8; len];
            rng.fill(&mut v);
            v
        } else {
            seeds[(rng.next_u32() as usize) % seeds.len()].clone()
        };
        for _ in 0..(1 + rng.next_u32() % 4) {
            if data.is_empty() {
                break;
            }
            let p = (rng.next_u32() as usize) % data.len();
            match rng.next_u32() % 5 {
                0 => data[p] ^= 1 << (rng.next_u32() % 8),
                1 => data.truncate(p.max(0x40)),
                2 => {
                    let q = (rng.next_u32() as usize) % data.len();
                    let chunk: Vec<u8> = data[q..].iter().take(8).copied().collect();
                    data.splice(p..p, chunk);
                }
                3 if data.len() > 0x3C => {
                    // Aim at the header fields the handler checks.
                    let field = [0x30usize, 0x31, 0x32, 0x34, 0x35, 0x36, 0x37, 0x3C];
                    let f = field[(rng.next_u32() as usize) % field.len()];
                    data[f] = (rng.next_u32() % 24) as u8;
                }
                _ => data[p] = (rng.next_u32() % 256) as u8,
            }
        }
        let results = fuzz_guest_request(&data);
        reached_success += results.iter().filter(|r| r.is_ok()).count();
    }
    // The mutations are not all rejected at the header.
    assert!(
        reached_success > 300,
        "only {reached_success} accepted requests"
    );
}
