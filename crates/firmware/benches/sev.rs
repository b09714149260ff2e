//! Benchmarks of the legacy SEV launch path through the mailbox, as a host issues it
//! (shared/spec/sev-legacy.md §3, §4): LAUNCH_UPDATE_DATA of a 2 MiB and a 64 MiB
//! region (read, SHA-256 launch digest, encrypt in place with the guest key),
//! LAUNCH_START with a session (ECDH P-384, KDF, unwrap of TEK/TIK, policy MAC),
//! LAUNCH_MEASURE, LAUNCH_SECRET of a 4 KiB packet and ATTESTATION.
//!
//! One core: the 0x5000-byte chunks of LAUNCH_UPDATE_DATA stay below the SoC's
//! parallel threshold; run with `RAYON_NUM_THREADS=1` to be sure.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softsev_abi::sev_buf::{
    SEV_CERT_LEN, SEV_PDH_CHAIN_LEN, SEV_SESSION_LEN, SEV_TMR_LEN, SevActivate, SevAttestation,
    SevDecommission, SevInit, SevLaunchMeasure, SevLaunchSecret, SevLaunchStart,
    SevLaunchUpdateData, SevPacketHeader, SevPdhCertExport, SevSession,
};
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevUsage};
use softsev_abi::{FwCmd, Product, Spa};
use softsev_crypto::rng::Rng;
use softsev_crypto::sev::{
    EcdhP384, aes128_ctr, derive_session_secrets, policy_mac, secret_packet_mac,
    wrap_transport_keys,
};
use softsev_firmware::Firmware;
use softsev_soc::Soc;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

const CMD: u64 = 0x1000;
const OUT: u64 = 0x2000;
const GODH: u64 = 0x3000;
const SESSION: u64 = 0x4000;
const CHAIN: u64 = 0x5000;
const HDR: u64 = 0x7000;
const TRANS: u64 = 0x8000;
const SECRET_AT: u64 = 0xA000;
const TMR: u64 = 0x200_0000;
/// Guest memory: the 64 MiB region, the 2 MiB one after it.
const GMEM: u64 = 0x400_0000;
const SMALL: u64 = GMEM + (64 << 20);
/// NOKS | ES, debugging allowed.
const POLICY: u32 = 0x6;
const ASID: u32 = 1;

struct Platform {
    soc: Arc<Soc>,
    fw: Arc<Firmware>,
    pdh: SevCert,
}

/// A seeded Milan platform, SEV-ES INIT done, the PDH exported.
fn platform() -> Platform {
    let fw = Firmware::builder(Product::Milan)
        .seed(b"bench sev")
        .soc_bytes(256 << 20)
        .asid_count(16)
        .configure(|c| c.min_sev_asid = 8)
        .build()
        .expect("platform");
    let soc = fw.soc().clone();
    fw.call(
        Spa(CMD),
        &mut SevInit {
            flags: 1,
            reserved: 0,
            tmr_address: TMR,
            tmr_len: SEV_TMR_LEN as u32,
        },
    )
    .expect("INIT");
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
    let mut pdh = [0u8; SEV_CERT_LEN];
    soc.host_read(Spa(OUT), false, &mut pdh).expect("PDH");
    let pdh = SevCert::read_from_bytes(&pdh).expect("PDH cert");
    Platform { soc, fw, pdh }
}

/// The guest owner's side (sevctl `session`, sev-legacy.md §3.2).
struct Owner {
    tek: [u8; 16],
    tik: [u8; 16],
}

impl Platform {
    /// Place a GODH certificate and a session for [`POLICY`] in host memory.
    fn place_session(&self) -> Owner {
        let mut rng = Rng::seeded(b"bench sev", "godh");
        let key = EcdhP384::generate(&mut rng);
        let (x, y) = key.public_xy_be();
        let godh = SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA256, 0, 0, &x, &y);
        let p = self.pdh.ecc_pubkey().expect("PDH point");
        let z = key.shared_x_be(&p.x, &p.y).expect("ECDH");
        let (nonce, wrap_iv, tek, tik) = ([7; 16], [8; 16], [0xA1; 16], [0xB2; 16]);
        let s = derive_session_secrets(&z, &nonce);
        let (wrap_tk, wrap_mac) = wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &tek, &tik);
        let session = SevSession {
            nonce,
            wrap_tk,
            wrap_iv,
            wrap_mac,
            policy_mac: policy_mac(&tik, POLICY),
        };
        self.soc
            .host_write(Spa(GODH), false, godh.as_bytes())
            .expect("GODH");
        self.soc
            .host_write(Spa(SESSION), false, session.as_bytes())
            .expect("session");
        Owner { tek, tik }
    }

    /// LAUNCH_START with the placed session; the handle.
    fn start_session(&self) -> u32 {
        let mut b = SevLaunchStart {
            handle: 0,
            policy: POLICY,
            dh_cert_address: GODH,
            dh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            session_address: SESSION,
            session_len: SEV_SESSION_LEN as u32,
        };
        self.fw.call(Spa(CMD), &mut b).expect("LAUNCH_START");
        b.handle
    }

    /// LAUNCH_START without a session; the handle.
    fn start_plain(&self) -> u32 {
        let mut b = SevLaunchStart {
            policy: POLICY,
            ..Default::default()
        };
        self.fw.call(Spa(CMD), &mut b).expect("LAUNCH_START");
        b.handle
    }

    fn decommission(&self, handle: u32) {
        self.fw
            .call(Spa(CMD), &mut SevDecommission { handle })
            .expect("DECOMMISSION");
    }

    fn measure(&self, handle: u32) -> [u8; 48] {
        self.fw
            .call(
                Spa(CMD),
                &mut SevLaunchMeasure {
                    handle,
                    reserved: 0,
                    address: OUT,
                    len: 48,
                },
            )
            .expect("LAUNCH_MEASURE");
        let mut m = [0u8; 48];
        self.soc
            .host_read(Spa(OUT), false, &mut m)
            .expect("measure");
        m
    }
}

fn bench(c: &mut Criterion) {
    let p = platform();
    let owner = p.place_session();

    // LAUNCH_UPDATE_DATA: one guest in LUPDATE, the same regions re-measured (the
    // digest keeps growing; the bytes taken as plaintext are the last round's
    // ciphertext, which costs the same).
    let handle = p.start_session();
    p.fw.call(Spa(CMD), &mut SevActivate { handle, asid: ASID })
        .expect("ACTIVATE");
    let fill: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i * 7 + (i >> 12)) as u8)
        .collect();
    p.soc.host_write(Spa(GMEM), false, &fill).expect("fill");
    p.soc
        .host_write(Spa(SMALL), false, &fill[..2 << 20])
        .expect("fill");
    let mut g = c.benchmark_group("sev_launch_update_data");
    for (name, address, len) in [("2m", SMALL, 2u32 << 20), ("64m", GMEM, 64 << 20)] {
        g.throughput(Throughput::Bytes(u64::from(len)));
        if len > 8 << 20 {
            g.sample_size(10);
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                p.fw.call(
                    Spa(CMD),
                    &mut SevLaunchUpdateData {
                        handle,
                        reserved: 0,
                        address,
                        len,
                    },
                )
                .expect("LAUNCH_UPDATE_DATA")
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sev_launch");
    // LAUNCH_START with a session: ECDH, KDF, unwrap, policy MAC, a new context
    // (decommissioned outside the clock).
    g.bench_function("start_session", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let h = black_box(p.start_session());
                total += t.elapsed();
                p.decommission(h);
            }
            total
        })
    });
    // LAUNCH_MEASURE: finalise the digest, draw the mnonce, HMAC; a fresh guest each
    // time (measure moves it to LSECRET).
    g.bench_function("measure", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let h = p.start_plain();
                let t = Instant::now();
                black_box(p.measure(h));
                total += t.elapsed();
                p.decommission(h);
            }
            total
        })
    });

    // LAUNCH_SECRET of a 4 KiB packet and ATTESTATION, on `handle` moved to LSECRET.
    let m = p.measure(handle);
    let measure: [u8; 32] = m[..32].try_into().expect("32 bytes");
    let secret: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
    let iv = [0x5A; 16];
    let mut ct = secret.clone();
    aes128_ctr(&owner.tek, &iv, &mut ct);
    let mac = secret_packet_mac(&owner.tik, 0, &iv, 4096, 4096, &ct, &measure);
    let hdr = SevPacketHeader { flags: 0, iv, mac };
    p.soc
        .host_write(Spa(HDR), false, hdr.as_bytes())
        .expect("header");
    p.soc.host_write(Spa(TRANS), false, &ct).expect("packet");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("secret_4k", |b| {
        b.iter(|| {
            p.fw.call(
                Spa(CMD),
                &mut SevLaunchSecret {
                    handle,
                    hdr_address: HDR,
                    hdr_len: 52,
                    guest_address: SECRET_AT,
                    guest_len: 4096,
                    trans_address: TRANS,
                    trans_len: 4096,
                    ..Default::default()
                },
            )
            .expect("LAUNCH_SECRET")
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("attestation", |b| {
        b.iter(|| {
            p.fw.call(
                Spa(CMD),
                &mut SevAttestation {
                    handle,
                    reserved: 0,
                    address: OUT,
                    mnonce: [0x11; 16],
                    len: 0xD0,
                },
            )
            .expect("ATTESTATION")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
