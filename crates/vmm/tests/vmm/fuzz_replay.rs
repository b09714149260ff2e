//! Replays the `vmm_config` fuzz corpus (tests/corpus/vmm_config) and a few thousand
//! deterministic mutations of it through `softsev_vmm::fuzz::fuzz_config`: no input
//! may panic the parsers or the planner. Likewise the `qmp_parser` corpus
//! (tests/corpus/qmp) through `softsev_vmm::fuzz::fuzz_qmp`.

use softsev_vmm::fuzz::{fuzz_config, fuzz_qmp};
use std::path::PathBuf;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    ",",
    "=",
    ",,",
    "\n",
    "0x",
    "G",
    "E",
    "on",
    "off",
    "-",
    "--",
    "1.5",
    "99999999999999999999",
    "sev-snp-guest",
    "memory-backend-file",
    "cbitpos=51",
    "policy=0x30000",
    "-smp",
    "maxcpus=",
    "sockets=4294967295",
    "threads=4294967295",
    "-m",
    "-kernel",
    "kernel-hashes=on",
    "id-block=",
    "id-auth=",
    "=====",
    "[[object]]",
    "qom-type",
    "\u{00e9}",
    "\0",
    "-cpu",
    "EPYC-Milan-v",
    "max-ram-below-4g=1",
    "memory-backend=",
    "4096E",
    "{",
    "}",
    "[",
    "]",
    "\"execute\": ",
    "\"arguments\": {",
    "\"id\": ",
    "\"qmp_capabilities\"",
    "\"cont\"",
    "\"quit\"",
    "\\u0000",
    "'",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if d.is_empty() {
            0
        } else {
            rng.below(d.len() + 1)
        };
        match rng.below(4) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(d.len());
                d.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                d.splice(at..at, t.iter().copied());
            }
            _ => {
                let b = (rng.next() & 0xFF) as u8;
                d.insert(at, b);
            }
        }
    }
    d
}

#[test]
fn corpus_and_mutations_do_not_panic() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/vmm_config"
    ));
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 4, "corpus missing in {}", dir.display());
    seeds.sort();
    for s in &seeds {
        fuzz_config(s);
    }
    // The seeds that should parse do (the corpus exercises the planner).
    let ok = seeds
        .iter()
        .filter(|s| {
            let t = String::from_utf8_lossy(s);
            match t.strip_prefix("toml\n") {
                Some(t) => softsev_vmm::from_toml(t).is_ok(),
                None => softsev_vmm::parse_args(t.split('\n')).is_ok(),
            }
        })
        .count();
    assert!(ok >= 3, "only {ok} corpus seeds parse");
    let mut rng = Rng(0x5EED_0006);
    for _ in 0..3000 {
        let s = &seeds[rng.below(seeds.len())];
        fuzz_config(&mutate(&mut rng, s));
    }
    // Pure noise too.
    for _ in 0..500 {
        let n = rng.below(300);
        let d: Vec<u8> = (0..n).map(|_| (rng.next() & 0xFF) as u8).collect();
        fuzz_config(&d);
    }
}

#[test]
fn qmp_corpus_and_mutations_do_not_panic() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/qmp"));
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 4, "corpus missing in {}", dir.display());
    seeds.sort();
    for s in &seeds {
        fuzz_qmp(s);
    }
    let mut rng = Rng(0x5EED_0007);
    for _ in 0..1500 {
        let s = &seeds[rng.below(seeds.len())];
        fuzz_qmp(&mutate(&mut rng, s));
    }
    for _ in 0..300 {
        let n = rng.below(400);
        let d: Vec<u8> = (0..n).map(|_| (rng.next() & 0xFF) as u8).collect();
        fuzz_qmp(&d);
    }
}

/// The `vmm_migration_stream` corpus (tests/corpus/vmm_migration_stream) and mutations
/// of it through `softsev_vmm::migration::fuzz_stream`: the checking reader never
/// panics, the well-formed seeds are accepted, and a single flipped bit in an accepted
/// stream is refused (the END record's SHA-256 covers every byte before it).
#[test]
fn migration_stream_corpus_and_mutations_do_not_panic() {
    use softsev_vmm::migration::fuzz_stream;
    use softsev_vmm::migration::stream::{Item, StreamReader};
    let accepts = |d: &[u8]| {
        let mut r = StreamReader::new(d);
        loop {
            match r.next_item() {
                Ok(Item::End(_)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/vmm_migration_stream"
    ));
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    assert!(seeds.len() >= 4, "corpus missing in {}", dir.display());
    seeds.sort();
    for (name, s) in &seeds {
        fuzz_stream(s);
        let want = !(name.starts_with("truncated") || name.starts_with("header_only"));
        assert_eq!(accepts(s), want, "{name}");
    }
    let mut rng = Rng(0x5EED_0013);
    for _ in 0..600 {
        let (_, s) = &seeds[rng.below(seeds.len())];
        fuzz_stream(&mutate(&mut rng, s));
        if accepts(s) {
            let mut t = s.clone();
            let i = rng.below(t.len());
            t[i] ^= 1 << rng.below(8);
            assert!(!accepts(&t), "bit flip at {i} accepted");
        }
    }
}
