//! Benchmarks: building/signing an ID auth structure (randomized and RFC 6979 nonces)
//! and the LAUNCH_FINISH ID check (two ECDSA P-384 verifications with author key).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::rng::Rng;
use softsev_measure::id_block::{
    DEFAULT_POLICY, IdBlockParams, SignMode, check_id_block, sign_id_auth,
};
use std::hint::black_box;

fn id_block(c: &mut Criterion) {
    let mut rng = Rng::seeded(b"bench-id-block", "keys");
    let idk = P384SigningKey::generate(&mut rng);
    let ak = P384SigningKey::generate(&mut rng);
    let block = IdBlockParams {
        ld: [0x5a; 48],
        ..Default::default()
    }
    .to_id_block();
    let mut g = c.benchmark_group("id_block");
    g.bench_function("sign_randomized_with_author", |b| {
        b.iter(|| sign_id_auth(black_box(&block), &idk, Some(&ak), SignMode::Randomized).unwrap())
    });
    g.bench_function("sign_deterministic_with_author", |b| {
        b.iter(|| {
            sign_id_auth(black_box(&block), &idk, Some(&ak), SignMode::Deterministic).unwrap()
        })
    });
    let auth = sign_id_auth(&block, &idk, Some(&ak), SignMode::Randomized).unwrap();
    g.bench_function("check_with_author", |b| {
        b.iter(|| {
            check_id_block(
                black_box(&block),
                black_box(&auth),
                &[0x5a; 48],
                DEFAULT_POLICY,
                true,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, id_block);
criterion_main!(benches);
