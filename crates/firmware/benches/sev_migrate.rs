//! Benchmark of the legacy SEV migration data path through the mailbox, as KVM issues
//! it (shared/spec/sev-legacy.md §5.2, §5.3, §5.5): per 4 KiB page, SEND_UPDATE_DATA on
//! the source (read with the guest key, AES-128-CTR under the TEK, HMAC-SHA256 under the
//! TIK) and RECEIVE_UPDATE_DATA on the target (MAC check, decrypt, write with the
//! target guest's key), the packet copied between the two hosts' memories in between.
//! Issue 13's target: ≥ 1 GB/s per core. Run with `RAYON_NUM_THREADS=1`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::sev_buf::{
    SEV_CERT_LEN, SEV_PDH_CHAIN_LEN, SEV_SESSION_LEN, SevActivate, SevInit, SevLaunchFinish,
    SevLaunchMeasure, SevLaunchUpdateData, SevPdhCertExport, SevReceiveFinish, SevReceiveStart,
    SevReceiveUpdateData, SevSendStart, SevSendUpdateData,
};
use softsev_abi::{FwCmd, Product, Spa};
use softsev_firmware::Firmware;
use softsev_soc::Soc;
use std::sync::Arc;

const CMD: u64 = 0x1000;
const OUT: u64 = 0x2000;
const PEER_PDH: u64 = 0x3000;
const SESSION: u64 = 0x4000;
const CHAIN: u64 = 0x5000;
const HDR: u64 = 0x7000;
const TRANS: u64 = 0x8000;
const GMEM: u64 = 0x40_0000;
/// Plain SEV, debugging allowed, no chain checks (§5.1: only the PDH length).
const POLICY: u32 = 0;
const ASID: u32 = 9;
const PAGE: usize = 4096;

struct Platform {
    soc: Arc<Soc>,
    fw: Arc<Firmware>,
    pdh: Vec<u8>,
}

fn platform(seed: &[u8]) -> Platform {
    let fw = Firmware::builder(Product::Milan)
        .seed(seed)
        .soc_bytes(64 << 20)
        .asid_count(16)
        .configure(|c| c.min_sev_asid = 8)
        .build()
        .expect("platform");
    let soc = fw.soc().clone();
    fw.call(Spa(CMD), &mut SevInit::default()).expect("INIT");
    soc.wbinvd();
    fw.command(FwCmd::DF_FLUSH, Spa(CMD)).expect("DF_FLUSH");
    fw.call(
        Spa(CMD),
        &mut SevPdhCertExport {
            pdh_cert_address: OUT,
            pdh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            cert_chain_address: CHAIN,
            cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
        },
    )
    .expect("PDH_CERT_EXPORT");
    let mut pdh = vec![0u8; SEV_CERT_LEN];
    soc.host_read(Spa(OUT), false, &mut pdh).expect("PDH");
    Platform { soc, fw, pdh }
}

/// Source A with a running guest whose page at GMEM is sent, target B in RUPDATE.
fn pair() -> (Platform, u32, Platform, u32) {
    let (a, b) = (platform(b"bench migrate A"), platform(b"bench migrate B"));
    let mut s = softsev_abi::sev_buf::SevLaunchStart {
        policy: POLICY,
        ..Default::default()
    };
    a.fw.call(Spa(CMD), &mut s).expect("LAUNCH_START");
    let g = s.handle;
    a.fw.call(
        Spa(CMD),
        &mut SevActivate {
            handle: g,
            asid: ASID,
        },
    )
    .expect("ACTIVATE");
    a.soc
        .host_write(Spa(GMEM), false, &[0x5A; PAGE])
        .expect("page");
    a.fw.call(
        Spa(CMD),
        &mut SevLaunchUpdateData {
            handle: g,
            reserved: 0,
            address: GMEM,
            len: PAGE as u32,
        },
    )
    .expect("LAUNCH_UPDATE_DATA");
    a.fw.call(
        Spa(CMD),
        &mut SevLaunchMeasure {
            handle: g,
            reserved: 0,
            address: OUT,
            len: 48,
        },
    )
    .expect("LAUNCH_MEASURE");
    a.fw.call(Spa(CMD), &mut SevLaunchFinish { handle: g })
        .expect("LAUNCH_FINISH");
    a.soc.host_write(Spa(PEER_PDH), false, &b.pdh).expect("PDH");
    // No chain is checked for this policy, but the lengths are the real ones.
    let mut ss = SevSendStart {
        handle: g,
        pdh_cert_address: PEER_PDH,
        pdh_cert_len: SEV_CERT_LEN as u32,
        plat_certs_address: CHAIN,
        plat_certs_len: SEV_PDH_CHAIN_LEN as u32,
        amd_certs_address: CHAIN,
        amd_certs_len: 0,
        session_address: SESSION,
        session_len: SEV_SESSION_LEN as u32,
        ..Default::default()
    };
    a.fw.call(Spa(CMD), &mut ss).expect("SEND_START");
    let mut session = [0u8; SEV_SESSION_LEN];
    a.soc
        .host_read(Spa(SESSION), false, &mut session)
        .expect("session");
    b.soc
        .host_write(Spa(SESSION), false, &session)
        .expect("session");
    b.soc.host_write(Spa(PEER_PDH), false, &a.pdh).expect("PDH");
    let mut rs = SevReceiveStart {
        handle: 0,
        policy: ss.policy,
        pdh_cert_address: PEER_PDH,
        pdh_cert_len: SEV_CERT_LEN as u32,
        reserved1: 0,
        session_address: SESSION,
        session_len: SEV_SESSION_LEN as u32,
    };
    b.fw.call(Spa(CMD), &mut rs).expect("RECEIVE_START");
    let h = rs.handle;
    b.fw.call(
        Spa(CMD),
        &mut SevActivate {
            handle: h,
            asid: ASID,
        },
    )
    .expect("ACTIVATE");
    (a, g, b, h)
}

fn bench(c: &mut Criterion) {
    let (a, g, b, h) = pair();
    let mut grp = c.benchmark_group("sev_migrate");
    grp.throughput(Throughput::Bytes(PAGE as u64));
    let mut hdr = [0u8; 52];
    let mut trans = vec![0u8; PAGE];
    grp.bench_function("send+receive 4 KiB page", |bn| {
        bn.iter(|| {
            a.fw.call(
                Spa(CMD),
                &mut SevSendUpdateData {
                    handle: g,
                    hdr_address: HDR,
                    hdr_len: 52,
                    guest_address: GMEM,
                    guest_len: PAGE as u32,
                    trans_address: TRANS,
                    trans_len: PAGE as u32,
                    ..Default::default()
                },
            )
            .expect("SEND_UPDATE_DATA");
            a.soc.host_read(Spa(HDR), false, &mut hdr).expect("header");
            a.soc
                .host_read(Spa(TRANS), false, &mut trans)
                .expect("trans");
            b.soc.host_write(Spa(HDR), false, &hdr).expect("header");
            b.soc.host_write(Spa(TRANS), false, &trans).expect("trans");
            b.fw.call(
                Spa(CMD),
                &mut SevReceiveUpdateData {
                    handle: h,
                    hdr_address: HDR,
                    hdr_len: 52,
                    guest_address: GMEM,
                    guest_len: PAGE as u32,
                    trans_address: TRANS,
                    trans_len: PAGE as u32,
                    ..Default::default()
                },
            )
            .expect("RECEIVE_UPDATE_DATA");
        });
    });
    grp.finish();
    b.fw.call(Spa(CMD), &mut SevReceiveFinish { handle: h })
        .expect("RECEIVE_FINISH");
}

criterion_group!(benches, bench);
criterion_main!(benches);
