//! SNP_GUEST_REQUEST end to end: the guest seals a request, the firmware model opens
//! it, checks it, builds and signs a report (VCEK of REPORTED_TCB, cached) or derives
//! a key, and seals the response; the guest opens it. Figures: docs/firmware-guest-msg.md.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::guest_msg::{KeyReq, MsgType, PAGE_SIZE, ReportReq};
use softsev_abi::{Product, TcbVersion};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_firmware::guest_msg::{
    GuestMsgEnv, GuestMsgState, ReportVersion, handle_guest_request,
};
use softsev_firmware::identity::Chip;
use zerocopy::IntoBytes;

fn bench(c: &mut Criterion) {
    let chip = Chip::from_seed(Product::Genoa, b"bench guest_msg").expect("chip");
    let vmrk = [7u8; 32];
    let tcb = TcbVersion {
        fmc: 0,
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 0xdb,
    };
    let mut env = GuestMsgEnv::new(&chip, &vmrk);
    env.current_tcb = tcb;
    env.reported_tcb = tcb;
    env.committed_tcb = tcb;
    env.launch_mut().launch_tcb = tcb;
    env.report_version = ReportVersion::V3;
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]];
    let mut rsp = vec![0u8; PAGE_SIZE];

    let mut g = c.benchmark_group("guest_request");
    g.throughput(Throughput::Elements(1));
    for (name, deterministic) in [("report_v3_randomized", false), ("report_v3_rfc6979", true)] {
        env.deterministic_signatures = deterministic;
        let mut state = GuestMsgState::from_keys(&keys);
        let mut guest = GuestMsgClient::new(&keys[0], 0);
        let req = ReportReq {
            report_data: [0x5A; 64],
            ..ReportReq::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let msg = guest
                    .request(MsgType::REPORT_REQ, 1, req.as_bytes())
                    .expect("seal");
                handle_guest_request(&mut state, &env, &msg, &mut rsp).expect("firmware");
                guest.response(&rsp).expect("open")
            })
        });
    }
    env.deterministic_signatures = false;
    let mut state = GuestMsgState::from_keys(&keys);
    let mut guest = GuestMsgClient::new(&keys[0], 0);
    let req = KeyReq {
        guest_field_select: 0x3f,
        tcb_version: tcb.encode(Product::Genoa).expect("tcb"),
        ..KeyReq::default()
    };
    g.bench_function("derived_key_all_fields", |b| {
        b.iter(|| {
            let msg = guest
                .request(MsgType::KEY_REQ, 1, &req.as_bytes()[..0x20])
                .expect("seal");
            handle_guest_request(&mut state, &env, &msg, &mut rsp).expect("firmware");
            guest.response(&rsp).expect("open")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
