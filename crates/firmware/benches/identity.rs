//! Benchmarks of the identity layer: VCEK derivation (cold and cached), VCEK
//! certificate issuance, the MSG_KEY_REQ KDF.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_abi::{Product, TcbVersion};
use softsev_firmware::identity::{Chip, DerivedKeyRequest, GuestFieldSelect, KeyRoot, derive_key};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let chip = Chip::from_seed(Product::Milan, b"bench").expect("chip");
    let tcb = TcbVersion {
        fmc: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
    };
    c.bench_function("vcek_derive_cold", |b| {
        b.iter(|| chip.derive_vcek_uncached(black_box(&tcb)).expect("vcek"))
    });
    chip.vcek(&tcb).expect("vcek");
    c.bench_function("vcek_cached", |b| {
        b.iter(|| chip.vcek(black_box(&tcb)).expect("vcek"))
    });
    let key = chip.vcek(&tcb).expect("vcek");
    c.bench_function("vcek_cert_issue", |b| {
        b.iter(|| {
            chip.root()
                .issue_vek(
                    &tcb,
                    &softsev_firmware::identity::VekKind::Vcek {
                        chip_id: *chip.chip_id(),
                    },
                    key.signing_key().public(),
                    1_735_689_600,
                )
                .expect("cert")
        })
    });
    let req = DerivedKeyRequest {
        guest_field_select: GuestFieldSelect(GuestFieldSelect::ALL),
        tcb,
        ..DerivedKeyRequest::default()
    };
    let root = KeyRoot::Vcek {
        chip: &chip,
        platform_tcb: tcb,
    };
    c.bench_function("msg_key_req_vcek_root_cached_tcb", |b| {
        b.iter(|| derive_key(&root, black_box(&req)).expect("key"))
    });
    let mut old_req = req.clone();
    old_req.tcb.snp -= 1;
    c.bench_function("msg_key_req_vcek_root_uncached_tcb", |b| {
        b.iter(|| derive_key(&root, black_box(&old_req)).expect("key"))
    });
    let vmrk = [7u8; 32];
    c.bench_function("msg_key_req_vmrk_root", |b| {
        b.iter(|| derive_key(&KeyRoot::Vmrk(&vmrk), black_box(&req)).expect("key"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
