//! Throughput of the primitives softsev leans on.
#![allow(missing_docs)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_crypto::{aead::Aes256Gcm, ecdsa::P384SigningKey, hash, rng::Rng};

fn bench(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("hash_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256", |b| b.iter(|| hash::sha256(&data)));
    g.bench_function("sha384", |b| b.iter(|| hash::sha384(&data)));
    g.bench_function("sha256_awslc", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data))
    });
    g.bench_function("sha384_awslc", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &data))
    });
    g.bench_function("sha256_ring", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, &data))
    });
    g.finish();

    let mut g = c.benchmark_group("aes256gcm_4KiB");
    g.throughput(Throughput::Bytes(4096));
    let k = Aes256Gcm::new(&[1u8; 32]);
    let mut buf = vec![0u8; 4096];
    g.bench_function("seal", |b| {
        b.iter(|| k.seal(&[0u8; 12], b"", &mut buf).unwrap())
    });
    g.finish();

    let key = P384SigningKey::generate(&mut Rng::seeded(b"bench", "k"));
    let msg = [0u8; 0x2a0];
    let sig = key.sign(&msg).unwrap();
    let mut g = c.benchmark_group("p384");
    g.bench_function("sign_fast", |b| b.iter(|| key.sign(&msg).unwrap()));
    g.bench_function("sign_rfc6979", |b| b.iter(|| key.sign_deterministic(&msg)));
    g.bench_function("verify", |b| {
        b.iter(|| key.public().verify(&msg, &sig).unwrap())
    });
    let v = key.public().verifier().unwrap();
    g.bench_function("verify_parsed", |b| {
        b.iter(|| v.verify(&msg, &sig).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
