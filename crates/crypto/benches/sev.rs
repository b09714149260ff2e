//! The SEV channel's bulk and per-launch primitives, to choose their backend:
//! AES-128-CTR on a 4 KiB page (LAUNCH_SECRET, SEND/RECEIVE_UPDATE_DATA) through
//! `softsev_crypto::sev::aes128_ctr` (aws-lc-rs) against RustCrypto `ctr` + `aes`, and
//! P-384 ECDH through `sev::EcdhP384` (aws-lc-rs) against the `p384` crate. Measured
//! twice under the dev profile on a loaded 2-core machine (`cargo bench --profile dev`;
//! RustCrypto's generic code runs at this crate's opt-level there): aws-lc-rs 2.6–3.4
//! GiB/s vs 6–8.5 MiB/s for CTR, 0.25–0.33 ms vs 5–6.6 ms for ECDH. A release build
//! narrows the gap (not measured here). No timing is asserted.
#![allow(missing_docs)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctr::cipher::{KeyIvInit, StreamCipher};
use softsev_crypto::{rng::Rng, sev};

fn bench(c: &mut Criterion) {
    let key = [7u8; 16];
    let iv = [0xffu8; 16];
    let mut page = vec![0x5au8; 4096];
    let mut g = c.benchmark_group("aes128_ctr_4KiB");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("sev_aes128_ctr_aws_lc_rs", |b| {
        b.iter(|| sev::aes128_ctr(&key, &iv, &mut page))
    });
    g.bench_function("rustcrypto_ctr128be", |b| {
        b.iter(|| {
            ctr::Ctr128BE::<aes::Aes128>::new(&key.into(), &iv.into()).apply_keystream(&mut page)
        })
    });
    g.finish();

    let mut rng = Rng::seeded(b"bench", "sev");
    let a = sev::EcdhP384::generate(&mut rng);
    let bk = sev::EcdhP384::generate(&mut rng);
    let (bx, by) = bk.public_xy_be();
    let mut g = c.benchmark_group("p384_ecdh");
    g.bench_function("sev_ecdh_aws_lc_rs", |b| {
        b.iter(|| a.shared_x_be(&bx, &by).unwrap())
    });
    let sk = p384::SecretKey::from_slice(&a.scalar_be()[..]).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&bx);
    sec1.extend_from_slice(&by);
    g.bench_function("p384_crate", |b| {
        b.iter(|| {
            let pk = p384::PublicKey::from_sec1_bytes(&sec1).unwrap();
            p384::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
