//! The migration stream end to end (docs/migration.md): SEND_UPDATE_DATA of every
//! touched page into softsev's stream and RECEIVE_UPDATE_DATA of it on another chip,
//! per byte of touched guest memory (the figure is "send+receive per GiB"). The
//! guest (plain SEV, the sevctl fixture OVMF, 1 GiB of RAM) runs its workload over
//! 64 MiB before each sample, so that much memory is resident; building the source
//! and target VMs is outside the timing. Skipped without the fixtures.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use softsev_vmm::config::LaunchBlobs;
use softsev_vmm::migration::sev::{
    SendOptions, default_workload, own_target_certs, receive, run_workload, send,
};
use softsev_vmm::qmp::QmpGuest;
use softsev_vmm::sev_plan::SevLaunchPlan;
use softsev_vmm::sev_run::SevVm;

const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";
const TOUCHED: u64 = 64 << 20;

fn bench(c: &mut Criterion) {
    let Some(dir) = softsev_testkit::fixture_dir("sev-legacy/sevctl") else {
        eprintln!("SKIP: the sev-legacy/sevctl fixtures are not installed");
        return;
    };
    let ovmf = softsev_measure::Ovmf::read(&dir.join(OVMF)).expect("OVMF fixture");
    let cfg = softsev_vmm::parse_args(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1 \
         -cpu EPYC-Milan -m 1G -smp 1"
            .split_whitespace(),
    )
    .expect("config");
    let plan = SevLaunchPlan::from_parts(&cfg, &ovmf, None, LaunchBlobs::default()).expect("plan");
    let mut g = c.benchmark_group("migration_stream");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(TOUCHED));
    g.bench_function("send_receive_64MiB_touched", |b| {
        b.iter_batched(
            || {
                let mut src = SevVm::launch(&plan, Some(b"bench A")).expect("launch");
                let w = default_workload(&src, b"bench", TOUCHED).expect("workload");
                src.set_workload(w, 0);
                src.start().expect("start");
                // 16 pages per batch: every page of the range written once.
                run_workload(&mut src, TOUCHED / (16 * 4096)).expect("workload batches");
                let mut dst = SevVm::incoming(&plan, Some(b"bench B")).expect("incoming");
                let certs = own_target_certs(&mut dst).expect("certs");
                (
                    src,
                    dst,
                    certs,
                    Vec::with_capacity((TOUCHED + (8 << 20)) as usize),
                )
            },
            |(mut src, mut dst, certs, mut stream)| {
                let opts = SendOptions {
                    target: Some(certs),
                    max_bandwidth: 0,
                    downtime_limit_ms: 0,
                    live: false,
                };
                send(&mut src, &mut stream, &opts, &mut |_| {}).expect("send");
                receive(&mut dst, &mut stream.as_slice(), &mut |_| {}).expect("receive");
                (src, dst)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
