//! Throughput of the AES-128 XEX memory-encryption primitive on one 4 KiB page.
//! Compare with `openssl speed -evp aes-128-xts -bytes 4096` (figures in docs/soc.md).
#![allow(missing_docs)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_crypto::xex::XexKey;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let key = XexKey::new(&[0x42; 16]);
    let mut page = vec![0x5au8; 4096];
    let mut g = c.benchmark_group("xex_4KiB");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("encrypt", |b| {
        b.iter(|| {
            key.encrypt(black_box(0x1234_5000), black_box(&mut page))
                .unwrap()
        })
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| {
            key.decrypt(black_box(0x1234_5000), black_box(&mut page))
                .unwrap()
        })
    });
    let aes = <aes::Aes128 as aes::cipher::KeyInit>::new(&[1u8; 16].into());
    let mut blocks: Vec<aes::Block> = vec![[0u8; 16].into(); 256];
    // Reference: plain AES-128 over the same 256 blocks (no tweak work).
    g.bench_function("raw_aes_blocks", |b| {
        b.iter(|| aes::cipher::BlockEncrypt::encrypt_blocks(&aes, black_box(&mut blocks)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
