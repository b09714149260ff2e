//! Replays the committed corpus of the `ghcb_vmgexit` fuzz target and a few thousand
//! pseudo-random and mutated inputs through `softsev_host::fuzz::fuzz_ghcb` (which
//! panics if the host panics or an ownership invariant breaks).
use softsev_host::fuzz::fuzz_ghcb;

fn corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/ghcb_vmgexit");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    v.sort();
    v
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/ghcb_vmgexit");
    let c = corpus();
    assert!(c.len() >= 8, "corpus has {} seeds", c.len());
    for s in &c {
        fuzz_ghcb(s);
    }
    // Seeds reach their handlers: PSC seeds exit with MAP_GPA_RANGE (3) then HLT (5);
    // the termination seed ends with SYSTEM_EVENT (24) after the AP HLT loop (32).
    let run = |n: &str| fuzz_ghcb(&std::fs::read(format!("{dir}/{n}")).expect("seed")).0;
    assert_eq!(run("psc_private_4k"), vec![3, 5]);
    assert_eq!(run("psc_private_2m_prefault"), vec![3, 3, 5]);
    assert_eq!(run("psc_bad_header"), vec![5]);
    assert_eq!(run("mmio"), vec![6, 6, 5]);
    assert_eq!(run("term"), vec![32, 24]);
    assert_eq!(run("cpuid_msr_io"), vec![2, 5]);
    assert_eq!(run("msr_mix"), vec![3, 24]);
}

#[test]
fn random_and_mutated_inputs() {
    let seeds = corpus();
    let mut r = XorShift(0x5EED_2026);
    let n: usize = std::env::var("SOFTSEV_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for i in 0..n {
        let input: Vec<u8> = if i % 2 == 0 && !seeds.is_empty() {
            let mut s = seeds[(r.next() as usize) % seeds.len()].clone();
            for _ in 0..1 + r.next() % 8 {
                if s.is_empty() {
                    break;
                }
                let at = (r.next() as usize) % s.len();
                s[at] ^= (r.next() & 0xFF) as u8;
            }
            s
        } else {
            let len = (r.next() % 600) as usize;
            (0..len).map(|_| (r.next() & 0xFF) as u8).collect()
        };
        let _ = fuzz_ghcb(&input);
    }
}
