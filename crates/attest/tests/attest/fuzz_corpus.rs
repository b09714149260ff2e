//! Replays the committed corpora (tests/corpus/<target>/) plus a few thousand
//! pseudo-random and mutated inputs through the fuzz entry points: nothing may panic.
//! Genuine fixtures, when present, join the seeds.

use softsev_attest::fuzz::{fuzz_cert, fuzz_cert_table, fuzz_report, fuzz_sev_certs};
use softsev_crypto::rng::Rng;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    assert!(v.len() >= 5, "{target}: corpus too small");
    v
}

fn fixture_files(rel: &[&str]) -> Vec<Vec<u8>> {
    let base = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ));
    rel.iter()
        .filter_map(|r| std::fs::read(base.join(r)).ok())
        .collect()
}

fn next(rng: &mut Rng) -> u32 {
    u32::from_le_bytes(rng.array::<4>())
}

/// Random inputs and seeds with 0..4 bit flips, truncations or special bytes.
fn mutate_and_run(seeds: &[Vec<u8>], label: &str, n: u32, max_len: u32, f: fn(&[u8])) {
    for s in seeds {
        f(s);
    }
    let mut rng = Rng::seeded(b"attest-fuzz", label);
    for i in 0..n {
        let mut data = if i % 5 == 0 {
            let mut v = vec![0u8; (next(&mut rng) % max_len) as usize];
            rng.fill(&mut v);
            v
        } else {
            seeds[(next(&mut rng) as usize) % seeds.len()].clone()
        };
        for _ in 0..(next(&mut rng) % 5) {
            if data.is_empty() {
                break;
            }
            let p = (next(&mut rng) as usize) % data.len();
            match next(&mut rng) % 4 {
                0 => data[p] ^= 1 << (next(&mut rng) % 8),
                1 => data.truncate(p),
                2 => data[p] = [0, 0xff, 0x30, 0x02, 0x80, 0x04][(next(&mut rng) % 6) as usize],
                _ => {
                    let q = (next(&mut rng) as usize) % data.len();
                    data.swap(p, q);
                }
            }
        }
        f(&data);
    }
}

#[test]
fn report_parse_corpus() {
    let mut seeds = corpus("report_parse");
    seeds.extend(fixture_files(&[
        "snp/milan-virtee-sev/report_milan.bin",
        "snp/turin-v5-yaxi/report.bin",
        "snp/genoa-v3-yaxi/report.bin",
    ]));
    mutate_and_run(&seeds, "report", 3000, 1300, fuzz_report);
}

#[test]
fn attest_cert_corpus() {
    let mut seeds = corpus("attest_cert");
    seeds.extend(fixture_files(&[
        "snp/milan-virtee-sev/vcek_milan.der",
        "snp/turin-virtee-sev/vcek_turin.der",
        "amd-roots/crl-cyntrisec/genoa_crl.der",
    ]));
    mutate_and_run(&seeds, "cert", 2000, 2000, fuzz_cert);
}

#[test]
fn attest_cert_table_corpus() {
    let seeds = corpus("attest_cert_table");
    mutate_and_run(&seeds, "table", 4000, 400, fuzz_cert_table);
}

#[test]
fn attest_sev_cert_corpus() {
    let mut seeds = corpus("sev_cert");
    let naples = fixture_files(&[
        "sev-legacy/virtee-sev-tests/naples/pdh.cert",
        "sev-legacy/virtee-sev-tests/naples/pek.cert",
        "sev-legacy/virtee-sev-tests/naples/oca.cert",
        "sev-legacy/virtee-sev-tests/naples/cek.cert",
    ]);
    if naples.len() == 4 {
        // The genuine chain whole (it verifies under the built-in Naples CA), so
        // mutations exercise every link check.
        let chain = naples.concat();
        let v = softsev_attest::sev::verify_sev_chain(&chain, &Default::default());
        assert!(v.verdict.passed(), "the genuine Naples chain must verify");
        seeds.push(chain);
    }
    seeds.extend(naples);
    mutate_and_run(&seeds, "sev-cert", 1500, 9000, fuzz_sev_certs);
}
