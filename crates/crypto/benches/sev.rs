//! AES-128-CTR for the SEV channel (LAUNCH_SECRET, SEND/RECEIVE_UPDATE_DATA pages):
//! RustCrypto `ctr` + `aes` (what `softsev_crypto::sev::aes128_ctr` uses) against
//! aws-lc-rs, and P-384 ECDH (`p384`) against aws-lc-rs. No timing is asserted.
#![allow(missing_docs)]
use aws_lc_rs::cipher::{AES_128, EncryptionContext, UnboundCipherKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_crypto::{rng::Rng, sev};

fn bench(c: &mut Criterion) {
    let key = [7u8; 16];
    let iv = [0xffu8; 16];
    let mut page = vec![0x5au8; 4096];
    let mut g = c.benchmark_group("aes128_ctr_4KiB");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("rustcrypto_ctr", |b| {
        b.iter(|| sev::aes128_ctr(&key, &iv, &mut page))
    });
    g.bench_function("aws_lc_rs", |b| {
        b.iter(|| {
            let k = aws_lc_rs::cipher::EncryptingKey::ctr(
                UnboundCipherKey::new(&AES_128, &key).unwrap(),
            )
            .unwrap();
            k.less_safe_encrypt(&mut page, EncryptionContext::Iv128(iv.into()))
                .unwrap();
        })
    });
    g.finish();

    let mut rng = Rng::seeded(b"bench", "sev");
    let a = sev::EcdhP384::generate(&mut rng);
    let bk = sev::EcdhP384::generate(&mut rng);
    let (bx, by) = bk.public_xy_be();
    let mut g = c.benchmark_group("p384_ecdh");
    g.bench_function("p384", |b| b.iter(|| a.shared_x_be(&bx, &by).unwrap()));
    let aws_priv = aws_lc_rs::agreement::PrivateKey::from_private_key(
        &aws_lc_rs::agreement::ECDH_P384,
        &a.scalar_be()[..],
    )
    .unwrap();
    let mut peer = vec![4u8];
    peer.extend_from_slice(&bx);
    peer.extend_from_slice(&by);
    g.bench_function("aws_lc_rs", |b| {
        b.iter(|| {
            let pk = aws_lc_rs::agreement::UnparsedPublicKey::new(
                &aws_lc_rs::agreement::ECDH_P384,
                &peer,
            );
            aws_lc_rs::agreement::agree(&aws_priv, pk, (), |z| {
                let mut out = [0u8; 48];
                out.copy_from_slice(z);
                Ok(out)
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
