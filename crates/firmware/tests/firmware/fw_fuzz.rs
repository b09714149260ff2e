//! Replays the committed dispatcher corpus and a few thousand pseudo-random and mutated
//! inputs through the `fw_commands` fuzz entry point: no input may panic or break an
//! invariant (contexts only on CONTEXT pages, clean ASIDs without live keys).

use rand_core::RngCore as _;
use softsev_abi::FwCmd;
use softsev_crypto::rng::Rng;
use softsev_firmware::fuzzing::fuzz_commands;

#[test]
fn corpus_and_mutations_do_not_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/fw_commands");
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzz_commands(&data);
        seeds.push(data);
    }
    assert!(seeds.len() >= 5);
    // The launch seed really launches a guest (the corpus reaches deep states).
    let launch = std::fs::read(format!("{dir}/launch")).unwrap();
    assert_eq!(
        fuzz_commands(&launch),
        [
            FwCmd::SNP_INIT,
            FwCmd::SNP_DF_FLUSH,
            FwCmd::SNP_GCTX_CREATE,
            FwCmd::SNP_LAUNCH_START,
            FwCmd::SNP_ACTIVATE,
            FwCmd::SNP_LAUNCH_UPDATE,
            FwCmd::SNP_LAUNCH_FINISH,
            FwCmd::SNP_DECOMMISSION,
            FwCmd::SNP_DF_FLUSH,
            FwCmd::SNP_SHUTDOWN,
        ]
    );
    let mut rng = Rng::seeded(b"fuzz", "fw_commands");
    for i in 0..1500u32 {
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
                    let chunk: Vec<u8> = data[q..].iter().take(5).copied().collect();
                    data.splice(p..p, chunk);
                }
                _ => data[p] = (rng.next_u32() % 256) as u8,
            }
        }
        fuzz_commands(&data);
    }
}
