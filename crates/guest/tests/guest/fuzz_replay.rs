//! Replays the committed fuzz corpus and a few thousand pseudo-random and mutated
//! inputs through the fuzz entry points; none may panic.

use softsev_guest::fuzz::{fuzz_boot, fuzz_cert_table, fuzz_hash_table, fuzz_secret_table};
use std::path::Path;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {name}");
    out
}

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    let n = 1 + rng.next() % 8;
    for _ in 0..n {
        match rng.next() % 4 {
            0 if !v.is_empty() => {
                let i = (rng.next() as usize) % v.len();
                v[i] ^= 1 << (rng.next() % 8);
            }
            1 if !v.is_empty() => {
                let i = (rng.next() as usize) % v.len();
                v[i] = rng.next() as u8;
            }
            2 => v.push(rng.next() as u8),
            _ => {
                let len = v.len();
                v.truncate(len.saturating_sub(1 + rng.next() as usize % 4));
            }
        }
    }
    v
}

#[test]
fn guest_boot_corpus_and_noise() {
    let seeds = corpus("guest_boot");
    for s in &seeds {
        fuzz_boot(s);
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for i in 0..1500 {
        let input = if i % 2 == 0 {
            let n = (rng.next() % 600) as usize;
            rng.bytes(n)
        } else {
            let s = &seeds[i % seeds.len()];
            mutate(&mut rng, s)
        };
        fuzz_boot(&input);
    }
}

#[test]
fn cert_table_corpus_and_noise() {
    let seeds = corpus("guest_cert_table");
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for s in &seeds {
        fuzz_cert_table(s);
    }
    for i in 0..4000 {
        let input = if i % 4 == 0 {
            let n = (rng.next() % 300) as usize;
            rng.bytes(n)
        } else {
            mutate(&mut rng, &seeds[i % seeds.len()])
        };
        fuzz_cert_table(&input);
    }
}

#[test]
fn secret_table_corpus_and_noise() {
    let seeds = corpus("guest_secret_table");
    let mut rng = XorShift(0x6A09_E667_F3BC_C908);
    for s in &seeds {
        fuzz_secret_table(s);
    }
    for i in 0..4000 {
        let input = if i % 4 == 0 {
            let n = (rng.next() % 300) as usize;
            rng.bytes(n)
        } else {
            mutate(&mut rng, &seeds[i % seeds.len()])
        };
        fuzz_secret_table(&input);
    }
}

#[test]
fn hash_table_noise() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    // A QEMU-shaped table as the mutation seed.
    let mut seed = Vec::new();
    seed.extend_from_slice(&softsev_abi::kernel_hashes::SEV_HASH_TABLE_GUID.0);
    seed.extend_from_slice(&0xA8u16.to_le_bytes());
    for g in [
        softsev_abi::kernel_hashes::SEV_CMDLINE_ENTRY_GUID,
        softsev_abi::kernel_hashes::SEV_INITRD_ENTRY_GUID,
        softsev_abi::kernel_hashes::SEV_KERNEL_ENTRY_GUID,
    ] {
        seed.extend_from_slice(&g.0);
        seed.extend_from_slice(&50u16.to_le_bytes());
        seed.extend_from_slice(&[0xAB; 32]);
    }
    for i in 0..4000 {
        let input = if i % 4 == 0 {
            let n = (rng.next() % 400) as usize;
            rng.bytes(n)
        } else {
            mutate(&mut rng, &seed)
        };
        fuzz_hash_table(&input);
    }
}

#[test]
fn hostile_host_that_cooperates_lets_the_guest_boot() {
    use softsev_abi::Gpa;
    use softsev_guest::fuzz::HostilePlatform;
    use softsev_guest::{ApConfig, BootConfig, MemRange, boot};
    let mut cfg = BootConfig::new(
        Gpa(0x8000),
        Gpa(0x7000),
        vec![MemRange::new(0, 0x60_0000)],
        MemRange::new(0x40_0000, 0x20_0000),
        [0x11; 64],
    );
    cfg.prevalidated = vec![MemRange::new(0, 0x1_0000)];
    cfg.aps = Some(ApConfig {
        apic_ids: vec![1, 2],
        vmsa_base: Gpa(0x20_0000),
        start_ip: 0x9_A000,
    });
    // All-zero input: every answer is the plausible one.
    let r = boot(&mut HostilePlatform::new(&[]), &cfg).unwrap();
    assert_eq!(&r.report[0x50..0x90], &[0x11; 64]);
    assert_eq!(r.aps_started, vec![1, 2]);
}

#[test]
fn workload_noise_and_a_cooperative_host() {
    use softsev_guest::fuzz::{HostilePlatform, fuzz_workload, fuzz_workload_config};
    use softsev_guest::{verify_after_move, workload_init, workload_step};
    let seed = 0x3C6E_F372_FE94_F82B;
    eprintln!("workload noise seed {seed:#x}");
    let mut rng = XorShift(seed);
    for i in 0..1500u64 {
        let n = (rng.next() % 200) as usize;
        let mut input = rng.bytes(n);
        // Every mode byte, and long stretches of plausible answers (zeros).
        if let Some(b) = input.first_mut() {
            *b = i as u8;
        }
        if i % 3 == 0 {
            input.extend(std::iter::repeat_n(0, (rng.next() % 600) as usize));
        }
        fuzz_workload(&input);
    }
    // With no input every answer is the plausible one: the workload runs and checks
    // out intact, on plain SEV (direct OUT) and SEV-ES (GHCB IOIO).
    for (es, status) in [(false, 1), (true, 3)] {
        let mut p = HostilePlatform::cooperative().with_sev_status(status);
        let cfg = fuzz_workload_config(es, 3);
        workload_init(&mut p, &cfg).unwrap();
        for b in 1..=5 {
            assert_eq!(workload_step(&mut p, &cfg).unwrap().batch, b);
        }
        let m = verify_after_move(&mut p, &cfg, None).unwrap();
        assert!(m.intact(), "es {es}: {m:?}");
        assert_eq!((m.pages_checked, m.batches_before_move), (4, 5));
        assert_eq!(m.vmsa_continued, es.then_some(true));
    }
}
