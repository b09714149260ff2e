//! Benchmarks of the launch path: SNP_LAUNCH_UPDATE of one 4 KiB page and of one 2 MiB
//! page (read, SHA-384 measure, PAGE_INFO chain, encrypt with the guest key, RMP
//! transition), through the mailbox as a host issues it.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::fw_buf::{SnpActivate, SnpGctxCreate, SnpLaunchStart, SnpLaunchUpdate};
use softsev_abi::rmp::RmpUpdateInput;
use softsev_abi::{FwCmd, Product, Spa};
use softsev_firmware::Firmware;
use softsev_soc::{KeySel, Soc};
use std::sync::Arc;
use zerocopy::IntoBytes;

const CMD: u64 = 0x1000;
const GCTX: u64 = 0x10_0000;

fn setup() -> (Arc<Soc>, Arc<Firmware>) {
    // A seeded SoC and chip; the firmware's own randomness from the OS.
    let fw = Firmware::builder(Product::Milan)
        .seed(b"bench")
        .soc_bytes(1 << 30)
        .configure(|c| c.seed = None)
        .build()
        .expect("platform");
    let soc = fw.soc().clone();
    fw.command(FwCmd::SNP_INIT, Spa(CMD)).expect("SNP_INIT");
    soc.wbinvd();
    fw.command(FwCmd::SNP_DF_FLUSH, Spa(CMD))
        .expect("SNP_DF_FLUSH");
    let fwpage = RmpUpdateInput {
        assigned: 1,
        immutable: 1,
        ..Default::default()
    };
    assert!(soc.rmpupdate(Spa(GCTX), &fwpage).is_success());
    fw.call(Spa(CMD), &mut SnpGctxCreate { gctx_paddr: GCTX })
        .expect("SNP_GCTX_CREATE");
    fw.call(
        Spa(CMD),
        &mut SnpLaunchStart {
            gctx_paddr: GCTX,
            policy: 0x30000,
            ma_gctx_paddr: 0,
            flags: 0,
            desired_tsc_freq: 0,
            gosvw: [0; 16],
        },
    )
    .expect("SNP_LAUNCH_START");
    fw.call(
        Spa(CMD),
        &mut SnpActivate {
            gctx_paddr: GCTX,
            asid: 1,
            pad: 0,
        },
    )
    .expect("SNP_ACTIVATE");
    (soc, fw)
}

fn bench(c: &mut Criterion) {
    let (soc, fw) = setup();
    let mut group = c.benchmark_group("launch_update");
    // 4 KiB pages in [2 MiB, 512 MiB), 2 MiB pages in [512 MiB, 1 GiB); reused round robin.
    for (name, two_m, lo, hi) in [
        ("4k", false, 0x20_0000u64, 0x2000_0000u64),
        ("2m", true, 0x2000_0000, 0x4000_0000),
    ] {
        let size = if two_m { 0x20_0000 } else { 0x1000 };
        let mut next = lo;
        group.throughput(Throughput::Bytes(size));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    if next + size > hi {
                        next = lo;
                    }
                    let spa = next;
                    next += size;
                    // The previous occupant (if any) goes back to the hypervisor first.
                    let _ = soc.rmpupdate(
                        Spa(spa),
                        &RmpUpdateInput {
                            pagesize: u8::from(two_m),
                            ..Default::default()
                        },
                    );
                    let st = soc.rmpupdate(
                        Spa(spa),
                        &RmpUpdateInput {
                            gpa: spa,
                            assigned: 1,
                            pagesize: u8::from(two_m),
                            immutable: 1,
                            asid: 1,
                            ..Default::default()
                        },
                    );
                    assert!(st.is_success(), "{st:?}");
                    SnpLaunchUpdate {
                        gctx_paddr: GCTX,
                        page_flags: SnpLaunchUpdate::flags(two_m, 1, false),
                        reserved: 0,
                        page_paddr: spa,
                        vmpl_perms: 0,
                        reserved2: 0,
                    }
                },
                |cmd| {
                    soc.fw_write(Spa(CMD), KeySel::Plain, cmd.as_bytes())
                        .expect("write");
                    if let Err(s) = fw.command(FwCmd::SNP_LAUNCH_UPDATE, Spa(CMD)) {
                        panic!("LAUNCH_UPDATE: {s:?}")
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
