//! Benchmarks: the SNP PAGE_INFO chain (NORMAL pages of a 4 MiB image, unmeasured
//! ranges, VMSA pages) and the kernel-hashes path (streaming SHA-256 of files).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::Gpa;
use softsev_abi::page_info::PageType;
use softsev_measure::launch::{SnpParams, snp_launch_digest};
use softsev_measure::{KernelHashes, Ovmf, SnpDigest, VmmType};
use std::hint::black_box;

fn chain(c: &mut Criterion) {
    let img: Vec<u8> = (0..4usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("snp_chain");
    g.throughput(Throughput::Bytes(img.len() as u64));
    g.bench_function("normal_pages_4MiB", |b| {
        b.iter(|| {
            let mut d = SnpDigest::new();
            d.update_normal_pages(Gpa(0xFFC0_0000), black_box(&img))
                .unwrap();
            d.digest()
        })
    });
    g.throughput(Throughput::Elements(1024));
    g.bench_function("zero_pages_1024", |b| {
        b.iter(|| {
            let mut d = SnpDigest::new();
            d.update_unmeasured_range(PageType::ZERO, Gpa(0x80_0000), 1024 * 4096)
                .unwrap();
            d.digest()
        })
    });
    g.finish();

    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    let mut g = c.benchmark_group("snp_launch_builtin");
    for vcpus in [1u32, 256] {
        let p = SnpParams {
            vcpus,
            vcpu_sig: 0xA0_0F11,
            guest_features: 1,
            vmm: VmmType::Qemu,
            kernel_hashes: None,
        };
        g.bench_function(format!("vcpus_{vcpus}"), |b| {
            b.iter(|| snp_launch_digest(&ovmf, None, black_box(&p)).unwrap())
        });
    }
    g.finish();
}

fn kernel_hashes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd");
    std::fs::write(&k, vec![0x5Au8; 16 << 20]).unwrap();
    std::fs::write(&i, vec![0xA5u8; 16 << 20]).unwrap();
    let mut g = c.benchmark_group("kernel_hashes");
    g.throughput(Throughput::Bytes(32 << 20));
    g.sample_size(10);
    g.bench_function("files_16MiB_kernel_16MiB_initrd", |b| {
        b.iter(|| KernelHashes::from_files(&k, Some(&i), Some("console=ttyS0")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, chain, kernel_hashes);
criterion_main!(benches);
