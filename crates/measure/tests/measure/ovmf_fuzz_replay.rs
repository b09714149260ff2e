//! Replays the committed `ovmf_parse` fuzz corpus plus a few thousand mutated images
//! through `softsev_measure::ovmf::fuzz_parse` and the SNP/SEV measurement paths; none may
//! panic, and malformed images must come back as errors.

use softsev_measure::launch::{
    SnpParams, sev_launch_digest, seves_launch_digest, snp_launch_digest,
};
use softsev_measure::ovmf::fuzz_parse;
use softsev_measure::{KernelHashes, Ovmf, VmmType};

fn exercise(data: &[u8]) {
    fuzz_parse(data);
    if let Ok(o) = Ovmf::parse(data.to_vec()) {
        // Huge (valid) sections only cost time: measure them in the fuzzer, not here.
        let pages: u64 = o.metadata().iter().map(|d| u64::from(d.size) / 4096).sum();
        if pages > 4096 {
            return;
        }
        let kh = KernelHashes::from_bytes(b"k", None, Some("x"));
        for vmm in [VmmType::Qemu, VmmType::Ec2, VmmType::Gce] {
            let p = SnpParams {
                vcpus: 3,
                vcpu_sig: 0x800F12,
                guest_features: 1,
                vmm,
                kernel_hashes: Some(kh),
            };
            let _ = snp_launch_digest(&o, None, &p);
            let p = SnpParams {
                kernel_hashes: None,
                ..p
            };
            let _ = snp_launch_digest(&o, Some([0; 48]), &p);
        }
        let _ = sev_launch_digest(&o, Some(&kh));
        let _ = seves_launch_digest(&o, None, 2, 0, VmmType::Qemu);
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/ovmf_parse");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_replays_without_panic() {
    let c = corpus();
    assert!(c.len() >= 5);
    for (name, data) in &c {
        exercise(data);
        let r = Ovmf::parse(data.clone());
        match name.as_str() {
            "builtin_tail_4k" => assert!(r.is_ok()),
            "no_footer_guid" => assert!(r.unwrap().footer_entries().is_empty()),
            "footer_len_ffff" | "metadata_items_huge" | "metadata_bad_sig" | "entry_len_17" => {
                assert!(r.is_err(), "{name} parsed")
            }
            _ => {}
        }
    }
}

#[test]
fn mutated_images_never_panic() {
    let base = corpus()
        .into_iter()
        .find(|(n, _)| n == "builtin_tail_4k")
        .unwrap()
        .1;
    let mut s: u64 = 0xF00D;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = base.len();
    let mut errors = 0;
    for i in 0..4000 {
        let mut m = base.clone();
        match i % 5 {
            // flips in the footer table / metadata region
            0 | 1 => {
                for _ in 0..(1 + next() % 4) {
                    let at = if next() % 2 == 0 {
                        n - 0x100 + (next() % 0x100) as usize
                    } else {
                        (next() % 0x80) as usize
                    };
                    m[at] ^= 1 << (next() % 8);
                }
            }
            // random u16/u32 in length-ish fields
            2 => {
                let at = n - 0x20 - 2 - (next() % 0x60) as usize;
                let v = next() as u16;
                m[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
            3 => {
                let at = (next() % 0x70) as usize & !3;
                m[at..at + 4].copy_from_slice(&(next() as u32).to_le_bytes());
            }
            // truncation from the front (keeps the footer) or the back
            _ => {
                let cut = (next() % n as u64) as usize;
                m = if next() % 2 == 0 {
                    m[cut..].to_vec()
                } else {
                    m[..cut].to_vec()
                };
            }
        }
        if Ovmf::parse(m.clone()).is_err() {
            errors += 1;
        }
        exercise(&m);
    }
    // Random bytes too.
    for len in [0usize, 1, 17, 49, 50, 51, 4096, 8192] {
        let r: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        exercise(&r);
    }
    assert!(
        errors > 100,
        "mutations produced only {errors} parse errors"
    );
}
