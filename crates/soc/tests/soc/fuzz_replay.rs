//! Replays the committed `soc_ops` corpus and a few thousand pseudo-random and mutated
//! inputs through the fuzz entry point: no panic, invariants hold.
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use softsev_soc::fuzz::fuzz_soc_ops;

fn corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/soc_ops");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        out.push(std::fs::read(&path).expect("corpus file"));
    }
    assert!(out.len() >= 5, "corpus has {} files", out.len());
    out
}

#[test]
fn corpus_replays() {
    for input in corpus() {
        fuzz_soc_ops(&input);
    }
}

#[test]
fn random_and_mutated_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x50c_0b5);
    let seeds = corpus();
    for i in 0..3000 {
        let mut input = if i % 2 == 0 {
            let mut v = vec![0u8; (rng.next_u32() % 600) as usize];
            rng.fill_bytes(&mut v);
            v
        } else {
            let mut v = seeds[(rng.next_u32() as usize) % seeds.len()].clone();
            for _ in 0..1 + rng.next_u32() % 8 {
                if v.is_empty() {
                    break;
                }
                let at = (rng.next_u32() as usize) % v.len();
                v[at] ^= 1 << (rng.next_u32() % 8);
            }
            let mut tail = vec![0u8; (rng.next_u32() % 64) as usize];
            rng.fill_bytes(&mut tail);
            v.extend(tail);
            v
        };
        if i % 7 == 0 {
            input.truncate(input.len() / 2);
        }
        fuzz_soc_ops(&input);
    }
}
