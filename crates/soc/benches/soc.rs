//! Speed of the SoC model: encrypted page I/O, bulk parallel I/O, RMP checks and
//! instructions. Figures are recorded in docs/soc.md.
#![allow(missing_docs)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::{Asid, Gpa, Spa, Vmpl};
use softsev_soc::{
    AccessKind, GuestAccess, KeySel, PageSize, PvalidateReq, RmpUpdateInput, Soc, SocConfig,
};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let soc = Soc::new(SocConfig {
        seed: Some(b"bench".to_vec()),
        ..SocConfig::new(1 << 30)
    });
    let asid = Asid(1);
    soc.activate_key(asid, &[7u8; 16]).unwrap();

    // A validated private page for the guest-path benchmarks.
    let spa = Spa(0x20_0000);
    let gpa = Gpa(0x1000);
    let upd = RmpUpdateInput {
        gpa: gpa.0,
        assigned: 1,
        asid: asid.0,
        ..Default::default()
    };
    assert!(soc.rmpupdate(spa, &upd).is_success());
    let pv = PvalidateReq {
        asid,
        vmpl: Vmpl(0),
        gpa,
        spa,
        size: PageSize::Size4K,
        validate: true,
    };
    assert!(soc.pvalidate(&pv).unwrap().is_success());
    let wr = GuestAccess::snp(asid, gpa, spa, AccessKind::Write, true);
    let rd = GuestAccess::snp(asid, gpa, spa, AccessKind::Read, true);

    let page = vec![0x5au8; 4096];
    let mut out = vec![0u8; 4096];
    let mut g = c.benchmark_group("page_4KiB");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("guest_private_write", |b| {
        b.iter(|| soc.guest_write(&wr, black_box(&page)).unwrap())
    });
    g.bench_function("guest_private_read", |b| {
        b.iter(|| soc.guest_read(&rd, black_box(&mut out)).unwrap())
    });
    g.bench_function("fw_encrypted_write", |b| {
        b.iter(|| {
            soc.fw_write(Spa(0x10_0000), KeySel::Guest(asid), black_box(&page))
                .unwrap()
        })
    });
    g.bench_function("fw_encrypted_read", |b| {
        b.iter(|| {
            soc.fw_read(Spa(0x10_0000), KeySel::Guest(asid), black_box(&mut out))
                .unwrap()
        })
    });
    g.bench_function("host_plain_write", |b| {
        b.iter(|| {
            soc.host_write(Spa(0x10_0000), false, black_box(&page))
                .unwrap()
        })
    });
    g.finish();

    let big = vec![0x33u8; 16 << 20];
    let mut big_out = vec![0u8; 16 << 20];
    let mut g = c.benchmark_group("bulk_16MiB");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.sample_size(10);
    g.bench_function("fw_encrypted_write_parallel", |b| {
        b.iter(|| {
            soc.fw_write(Spa(0x400_0000), KeySel::Guest(asid), &big)
                .unwrap()
        })
    });
    g.bench_function("fw_encrypted_read_parallel", |b| {
        b.iter(|| {
            soc.fw_read(Spa(0x400_0000), KeySel::Guest(asid), &mut big_out)
                .unwrap()
        })
    });
    g.bench_function("fw_encrypt_in_place_parallel", |b| {
        b.iter(|| {
            soc.fw_encrypt_in_place(Spa(0x400_0000), 16 << 20, asid)
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("rmp");
    g.bench_function("guest_check", |b| {
        b.iter(|| soc.guest_check(black_box(&rd)).unwrap())
    });
    g.bench_function("host_write_check", |b| {
        b.iter(|| soc.host_write_check(black_box(Spa(0x30_0000))))
    });
    let mut flip = false;
    g.bench_function("rmpupdate", |b| {
        b.iter(|| {
            flip = !flip;
            let u = RmpUpdateInput {
                gpa: 0x5000,
                assigned: u8::from(flip),
                asid: if flip { 1 } else { 0 },
                ..Default::default()
            };
            soc.rmpupdate(black_box(Spa(0x40_0000)), &u)
        })
    });
    let mut v = false;
    g.bench_function("pvalidate", |b| {
        b.iter(|| {
            v = !v;
            soc.pvalidate(&PvalidateReq { validate: v, ..pv }).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
