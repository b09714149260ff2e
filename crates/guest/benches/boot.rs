//! Guest-side cost of a full boot (GHCB setup, full memory acceptance in 2 MiB PVALIDATEs
//! with 253-entry PSC descriptors, AP creation, extended report and derived key)
//! against a null host that answers everything at once, so the figures are the
//! guest model's own overhead.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_abi::Gpa;
use softsev_guest::fuzz::HostilePlatform;
use softsev_guest::{ApConfig, BootConfig, MemRange, boot};

const GIB: u64 = 1 << 30;

fn config(ram: u64, vcpus: u32) -> BootConfig {
    let mut c = BootConfig::new(
        Gpa(0x8000),
        Gpa(0x7000),
        vec![MemRange::new(0, ram)],
        MemRange::new(0x4000_0000, 0x400_0000),
        [0x22; 64],
    );
    c.prevalidated = vec![MemRange::new(0, 0x1_0000)];
    c.aps = Some(ApConfig {
        apic_ids: (1..vcpus).collect(),
        vmsa_base: Gpa(0x20_0000),
        start_ip: 0x9_A000,
    });
    c
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("guest_boot");
    g.sample_size(10);
    for (ram, vcpus, name) in [(4 * GIB, 4, "4GiB_4vcpu"), (64 * GIB, 64, "64GiB_64vcpu")] {
        let cfg = config(ram, vcpus);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut p = HostilePlatform::cooperative();
                let r = boot(&mut p, &cfg).expect("boot");
                assert_eq!(r.aps_started.len() as u32, vcpus - 1);
                r
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
