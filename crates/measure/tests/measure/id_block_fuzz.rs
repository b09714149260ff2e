//! Replays the `id_auth_parse` fuzz corpus (tests/corpus/id_auth_parse, generated with
//! fresh keys) plus seeded mutations through the fuzz entry point: no panics, and the
//! valid seeds pass while their mutations mostly fail.

use softsev_measure::id_block::fuzz_id_auth_parse;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/id_auth_parse");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: deterministic mutations.
struct Xs(u64);
impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn corpus_verdicts() {
    let c = corpus();
    assert!(c.len() >= 5);
    for (name, data) in &c {
        let ok = fuzz_id_auth_parse(data);
        assert_eq!(ok, name.starts_with("valid"), "corpus entry {name}");
    }
}

#[test]
fn mutated_and_random_inputs_do_not_panic() {
    let c = corpus();
    let mut rng = Xs(0x1d_b10c_5eed);
    let mut passed_mutants = 0;
    for i in 0..3000 {
        let (_, seed) = &c[i % c.len()];
        let mut d = seed.clone();
        match rng.next() % 4 {
            0 if !d.is_empty() => {
                let n = 1 + rng.next() % 4;
                for _ in 0..n {
                    let at = (rng.next() as usize) % d.len();
                    d[at] ^= 1 << (rng.next() % 8);
                }
            }
            1 => d.truncate((rng.next() as usize) % (d.len() + 1)),
            2 => {
                let extra = (rng.next() % 64) as usize;
                d.extend((0..extra).map(|_| rng.next() as u8));
            }
            _ => {
                let len = (rng.next() % 4300) as usize;
                d = (0..len).map(|_| rng.next() as u8).collect();
            }
        }
        if fuzz_id_auth_parse(&d) {
            passed_mutants += 1;
        }
    }
    // Some mutants keep a valid seed intact (e.g. extension, flips in reserved
    // bytes); most do not.
    assert!(passed_mutants < 3000);
}
