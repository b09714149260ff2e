//! Replays the committed legacy-SEV corpus and mutations of it through the
//! `fuzz_sev_commands` entry point: no input may panic or break an invariant (WORKING
//! exactly with guests, pending ASIDs Allocated and active ones InUse, no ASID bound
//! twice, clean ASIDs without live keys).

use rand_core::RngCore as _;
use softsev_abi::FwCmd;
use softsev_crypto::rng::Rng;
use softsev_firmware::fuzzing::fuzz_sev_commands;

#[test]
fn sev_corpus_and_mutations_do_not_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/sev_commands");
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzz_sev_commands(&data);
        seeds.push(data);
    }
    assert!(seeds.len() >= 5);
    // The launch seed goes all the way through an ES launch and teardown.
    let launch = std::fs::read(format!("{dir}/launch")).unwrap();
    assert_eq!(
        fuzz_sev_commands(&launch),
        [
            FwCmd::INIT,
            FwCmd::DF_FLUSH,
            FwCmd::LAUNCH_START,
            FwCmd::ACTIVATE,
            FwCmd::LAUNCH_UPDATE_DATA,
            FwCmd::LAUNCH_UPDATE_VMSA,
            FwCmd::LAUNCH_MEASURE,
            FwCmd::LAUNCH_FINISH,
            FwCmd::ATTESTATION,
            FwCmd::DEACTIVATE,
            FwCmd::DECOMMISSION,
            FwCmd::SHUTDOWN,
        ]
    );
    // Key sharing: two guests, the second named after the first; the NOKS guest
    // refuses to share.
    let share = std::fs::read(format!("{dir}/share")).unwrap();
    assert_eq!(
        fuzz_sev_commands(&share),
        [
            FwCmd::INIT,
            FwCmd::DF_FLUSH,
            FwCmd::LAUNCH_START,
            FwCmd::LAUNCH_START,
            FwCmd::ACTIVATE,
            FwCmd::ACTIVATE,
            FwCmd::LAUNCH_UPDATE_DATA,
            FwCmd::DBG_DECRYPT,
            FwCmd::LAUNCH_START,
            FwCmd::GUEST_STATUS,
        ]
    );
    // A running guest is swapped out; SEND/RECEIVE without a session fail.
    let migrate = std::fs::read(format!("{dir}/migrate")).unwrap();
    assert_eq!(
        fuzz_sev_commands(&migrate),
        [
            FwCmd::INIT,
            FwCmd::DF_FLUSH,
            FwCmd::LAUNCH_START,
            FwCmd::ACTIVATE,
            FwCmd::LAUNCH_MEASURE,
            FwCmd::LAUNCH_FINISH,
            FwCmd::SWAP_OUT,
        ]
    );
    let mut rng = Rng::seeded(b"fuzz", "sev_commands");
    for i in 0..600u32 {
        let mut data = if i % 5 == 0 {
            let len = (rng.next_u32() % 160) as usize;
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
            match rng.next_u32() % 4 {
                0 => data[p] ^= 1 << (rng.next_u32() % 8),
                1 => data.truncate(p),
                2 => {
                    let q = (rng.next_u32() as usize) % data.len();
                    let chunk: Vec<u8> = data[q..].iter().take(6).copied().collect();
                    data.splice(p..p, chunk);
                }
                _ => data[p] = (rng.next_u32() % 256) as u8,
            }
        }
        fuzz_sev_commands(&data);
    }
}

/// The receive-side corpus (`fuzz/fuzz_targets/fw_sev_receive.rs`) and mutations of
/// it: no panic, no broken invariant; the `receive` seed takes a guest through
/// RECEIVE_START, ACTIVATE, a sealed data packet, a sealed VMSA and RECEIVE_FINISH, and
/// its tampered twin's data packet is refused at the MAC.
#[test]
fn sev_receive_corpus_and_mutations_do_not_panic() {
    use softsev_firmware::fuzzing::fuzz_sev_receive;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/sev_receive");
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzz_sev_receive(&data);
        seeds.push(data);
    }
    assert!(seeds.len() >= 3);
    let receive = std::fs::read(format!("{dir}/receive")).unwrap();
    assert_eq!(
        fuzz_sev_receive(&receive),
        [
            FwCmd::RECEIVE_START,
            FwCmd::ACTIVATE,
            FwCmd::RECEIVE_UPDATE_DATA,
            FwCmd::RECEIVE_UPDATE_VMSA,
            FwCmd::RECEIVE_FINISH,
        ]
    );
    let tampered = std::fs::read(format!("{dir}/tampered")).unwrap();
    assert_eq!(
        fuzz_sev_receive(&tampered),
        [FwCmd::RECEIVE_START, FwCmd::ACTIVATE]
    );
    let mut rng = Rng::seeded(b"fuzz", "sev_receive");
    for _ in 0..300u32 {
        let mut data = seeds[(rng.next_u32() as usize) % seeds.len()].clone();
        for _ in 0..1 + rng.next_u32() % 6 {
            if data.is_empty() {
                break;
            }
            let i = (rng.next_u32() as usize) % data.len();
            data[i] = rng.next_u32() as u8;
        }
        fuzz_sev_receive(&data);
    }
}
