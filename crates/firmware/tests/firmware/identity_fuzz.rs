//! Replays the committed certificate-table corpus and a few thousand pseudo-random and
//! mutated inputs through the `cert_table` fuzz entry point: no input may panic.

use rand_core::RngCore as _;
use softsev_crypto::rng::Rng;
use softsev_firmware::identity::table::fuzz_cert_table;
use softsev_firmware::identity::{CertTable, CertTableGuid};

#[test]
fn corpus_and_mutations_do_not_panic() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/identity_cert_table"
    );
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        fuzz_cert_table(&data);
        seeds.push(data);
    }
    assert!(seeds.len() >= 5);
    let mut t = CertTable::new();
    t.push(CertTableGuid::ARK, vec![0x30; 40]);
    t.push(CertTableGuid::ASK, vec![0x31; 7]);
    t.push(CertTableGuid::VCEK, vec![]);
    seeds.push(t.to_bytes().unwrap());
    let mut rng = Rng::seeded(b"fuzz", "cert_table");
    for i in 0..4000u32 {
        let mut data = if i % 4 == 0 {
            let len = (rng.next_u32() % 200) as usize;
            let mut v = vec![0u8; len];
            rng.fill(&mut v);
            v
        } else {
            seeds[(rng.next_u32() as usize) % seeds.len()].clone()
        };
        for _ in 0..(rng.next_u32() % 4) {
            if data.is_empty() {
                break;
            }
            let p = (rng.next_u32() as usize) % data.len();
            match rng.next_u32() % 3 {
                0 => data[p] ^= 1 << (rng.next_u32() % 8),
                1 => data.truncate(p),
                _ => data[p] = [0, 0xff, 0x18, 0x30][(rng.next_u32() % 4) as usize],
            }
        }
        fuzz_cert_table(&data);
    }
}
