//! `vmm::run` end to end: platform, launch, guest boot with full memory acceptance,
//! attestation report and derived key, for 4 vCPUs / 4 GiB and 64 vCPUs / 64 GiB.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_vmm::run::{RunOptions, run};
use softsev_vmm::{Config, LaunchPlan};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("softsev_run");
    g.sample_size(10);
    for (name, vcpus, gib) in [("4vcpu_4g", 4u32, 4u64), ("64vcpu_64g", 64, 64)] {
        let mut cfg = Config::default_run();
        cfg.smp.cpus = vcpus;
        cfg.smp.maxcpus = vcpus.max(cfg.smp.maxcpus);
        cfg.memory.size = gib << 30;
        let plan = LaunchPlan::build(&cfg).expect("plan");
        let opts = RunOptions {
            seed: Some(b"bench".to_vec()),
            ..Default::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| run(&plan, &opts, &mut |_| {}).expect("run"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
