//! Throughput of the primitives softsev leans on.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_crypto::{aead::Aes256Gcm, ecdsa::P384SigningKey, hash, rng::Rng};

fn bench(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("hash_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256", |b| b.iter(|| hash::sha256(&data)));
    g.bench_function("sha384", |b| b.iter(|| hash::sha384(&data)));
    g.finish();

    let mut g = c.benchmark_group("aes256gcm_4KiB");
    g.throughput(Throughput::Bytes(4096));
    let k = Aes256Gcm::new(&[1u8; 32]);
    let mut buf = vec![0u8; 4096];
    g.bench_function("seal", |b| b.iter(|| k.seal(&[0u8; 12], b"", &mut buf).unwrap()));
    g.finish();

    let key = P384SigningKey::generate(&mut Rng::seeded(b"bench", "k"));
    let msg = [0u8; 0x2a0];
    let sig = key.sign(&msg).unwrap();
    let mut g = c.benchmark_group("p384");
    g.bench_function("sign_fast", |b| b.iter(|| key.sign(&msg).unwrap()));
    g.bench_function("sign_rfc6979", |b| b.iter(|| key.sign_deterministic(&msg)));
    g.bench_function("verify", |b| b.iter(|| key.public().verify(&msg, &sig).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
