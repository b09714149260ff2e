//! Verification speed: one report against a cached (already verified) chain, a full
//! verification (chain + report), chain building alone, and a batch across all cores.
//! Reports come from softsev's own firmware identity (always available) and, when the
//! fixtures are present, the genuine Turin report.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::ecdsa::EcdsaSignature;
use softsev_abi::report::{AttestationReport, KeyInfo, ReportTcbs, SigningKey};
use softsev_abi::{Product, TcbVersion};
use softsev_attest::{
    AmdCert, CertSet, Policy, TrustStore, VerifiedChain, VerifyOptions, time::parse_rfc3339,
    verify, verify_batch_with,
};
use softsev_firmware::identity::Chip;
use std::hint::black_box;

fn own() -> (Vec<u8>, CertSet, TrustStore) {
    let product = Product::Milan;
    let chip = Chip::from_seed(product, b"bench").unwrap();
    let t = TcbVersion {
        fmc: 0,
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 0xdb,
    };
    let chain = chip.vcek_chain(&t).unwrap();
    let mut r = AttestationReport {
        version: 3,
        policy: 0x30000,
        signature_algo: 1,
        key_info: KeyInfo::new(false, false, SigningKey::VCEK),
        chip_id: *chip.chip_id(),
        report_id_ma: [0xFF; 32],
        ..Default::default()
    };
    r.set_cpuid_for(product);
    r.set_tcbs(
        product,
        &ReportTcbs {
            current: t,
            reported: t,
            committed: t,
            launch: t,
        },
    )
    .unwrap();
    let sig = chip
        .vcek(&t)
        .unwrap()
        .signing_key()
        .sign_deterministic(r.signed_bytes());
    r.signature = EcdsaSignature::from_be(&sig.r, &sig.s);
    let mut certs = CertSet::default();
    for d in [&chain.ark, &chain.ask, &chain.vek] {
        certs
            .insert(AmdCert::from_der("own", d).unwrap(), None)
            .unwrap();
    }
    let trust =
        TrustStore::custom(vec![AmdCert::from_der("ark", &chain.ark).unwrap()], None).unwrap();
    (zerocopy::IntoBytes::as_bytes(&r).to_vec(), certs, trust)
}

fn bench(c: &mut Criterion) {
    let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let (report, certs, trust) = own();
    let opts = VerifyOptions {
        trust: &trust,
        at,
        ..VerifyOptions::new()
    };
    let chain = VerifiedChain::build(&certs, Product::Milan, SigningKey::VCEK, &opts);
    assert!(chain.verify_report(&report, &Policy::default()).passed());
    let mut g = c.benchmark_group("attest");
    g.throughput(Throughput::Elements(1));
    // Baseline: the bare ECDSA P-384 verification every report needs.
    let parsed = AttestationReport::parse(&report).unwrap();
    let (rr, ss) = parsed.signature.to_be().unwrap();
    let sig = softsev_crypto::ecdsa::P384Signature { r: rr, s: ss };
    let key = chain.vek().unwrap().p384_verifier().unwrap();
    g.bench_function("baseline_p384_verify_only", |b| {
        b.iter(|| black_box(key.verify(black_box(parsed.signed_bytes()), &sig)))
    });
    g.bench_function("verify_report_cached_chain", |b| {
        b.iter(|| black_box(chain.verify_report(black_box(&report), &opts.policy)))
    });
    g.bench_function("verify_full_chain_and_report", |b| {
        b.iter(|| black_box(verify(black_box(&report), &certs, &opts)))
    });
    let ark = &trust.sets()[0].ark;
    g.bench_function("baseline_rsa_pss_4096_verify_ark_self_signature", |b| {
        b.iter(|| black_box(ark.verify_signed_by(black_box(ark))))
    });
    g.bench_function("build_chain", |b| {
        b.iter(|| {
            black_box(VerifiedChain::build(
                &certs,
                Product::Milan,
                SigningKey::VCEK,
                &opts,
            ))
        })
    });
    let fx = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/snp/turin-v5-yaxi"
    ));
    if let (Ok(rep), Ok(_)) = (
        std::fs::read(fx.join("report.bin")),
        std::fs::read(fx.join("vcek.der")),
    ) {
        let mut gc = CertSet::default();
        gc.add_file(&fx.join("vcek-chain-turin.pem")).unwrap();
        let o = VerifyOptions {
            at,
            ..VerifyOptions::new()
        };
        let chain = VerifiedChain::build(&gc, Product::Turin, SigningKey::VCEK, &o);
        assert!(chain.verify_report(&rep, &Policy::default()).passed());
        let pr = AttestationReport::parse(&rep).unwrap();
        let (rr, ss) = pr.signature.to_be().unwrap();
        let gsig = softsev_crypto::ecdsa::P384Signature { r: rr, s: ss };
        let gkey = chain.vek().unwrap().p384_verifier().unwrap();
        g.bench_function("baseline_p384_verify_genuine_turin", |b| {
            b.iter(|| black_box(gkey.verify(black_box(pr.signed_bytes()), &gsig)))
        });
        g.bench_function("verify_genuine_turin_cached_chain", |b| {
            b.iter(|| black_box(chain.verify_report(black_box(&rep), &o.policy)))
        });
    }
    let batch = vec![report.clone(); 1024];
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(10);
    g.bench_function("batch_1024_all_cores", |b| {
        b.iter(|| black_box(verify_batch_with(&chain, black_box(&batch), &opts.policy)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
