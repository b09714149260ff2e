//! The whole boot flow against the scripted fake host.

use crate::common::{Ev, FakeHost};
use softsev_abi::Gpa;
use softsev_abi::ghcb::{GHCB_HV_FT_SNP, GhcbMsg, PSC_ERROR_GENERIC, PscOp};
use softsev_abi::kernel_hashes::PaddedSevHashTable;
use softsev_crypto::hash::sha256;
use softsev_guest::boot::{AcceptMode, ApConfig, BootConfig, Guest, Phase, boot};
use softsev_guest::error::GuestError;
use softsev_guest::hashes::{DEFAULT_AREA_SIZE, KernelBlobs};
use softsev_guest::memory::MemRange;
use zerocopy::IntoBytes;

const SECRETS: u64 = 0x7000;
const GHCB: u64 = 0x8000;
const HASHES: u64 = 0xA000;
const RAM: u64 = 0x100_0000; // 16 MiB
const BOUNCE: u64 = 0x80_0000;
const VMSA_BASE: u64 = 0x40_0000;
const LOAD: u64 = 0xA0_0000;

fn nonce() -> [u8; 64] {
    let mut n = [0u8; 64];
    for (i, b) in n.iter_mut().enumerate() {
        *b = 0xC0 ^ i as u8;
    }
    n
}

fn blobs() -> KernelBlobs {
    KernelBlobs {
        table_gpa: Gpa(HASHES),
        area_size: DEFAULT_AREA_SIZE,
        kernel: vec![0xE8; 20_000],
        initrd: vec![0x1F; 3000],
        cmdline: b"console=ttyS0\0".to_vec(),
    }
}

/// A host as after launch: first 64 KiB validated, secrets and hashes table in place.
fn host(with_table: bool) -> FakeHost {
    let mut h = FakeHost::new();
    h.prevalidate(0, 0x1_0000);
    h.install_secrets(SECRETS);
    if with_table {
        let b = blobs();
        let t = PaddedSevHashTable::new(sha256(&b.cmdline), sha256(&b.initrd), sha256(&b.kernel));
        h.poke(HASHES, t.as_bytes());
    }
    h.k.certs = cert_table(3);
    h
}

fn cert_table(n: usize) -> Vec<u8> {
    let mut t = Vec::new();
    let table_len = 24 * (n + 1);
    for i in 0..n {
        let mut e = [0u8; 24];
        e[..16].fill(0x10 + i as u8);
        e[16..20].copy_from_slice(&((table_len + i * 1000) as u32).to_le_bytes());
        e[20..24].copy_from_slice(&1000u32.to_le_bytes());
        t.extend_from_slice(&e);
    }
    t.extend_from_slice(&[0; 24]);
    for i in 0..n {
        t.extend(std::iter::repeat_n(i as u8, 1000));
    }
    t
}

fn config() -> BootConfig {
    let mut c = BootConfig::new(
        Gpa(GHCB),
        Gpa(SECRETS),
        vec![MemRange::new(0, RAM)],
        MemRange::new(BOUNCE, 0x20_0000),
        nonce(),
    );
    c.prevalidated = vec![MemRange::new(0, 0x1_0000)];
    c.kernel = Some(blobs());
    c.kernel_load_gpa = Some(Gpa(LOAD));
    c.aps = Some(ApConfig {
        apic_ids: vec![1, 2, 3],
        vmsa_base: Gpa(VMSA_BASE),
        start_ip: 0x9_A000,
    });
    c
}

#[test]
fn full_boot() {
    let mut h = host(true);
    let cfg = config();
    let r = boot(&mut h, &cfg).unwrap();
    // Attestation.
    assert_eq!(r.report.len(), 0x4A0);
    assert_eq!(&r.report[0x50..0x90], &nonce());
    assert_eq!(r.certs, cert_table(3));
    assert_eq!(r.cert_entries, 3);
    assert_eq!(r.cert_retries, 0);
    assert!(r.derived_key.is_some());
    assert!(r.hashes_verified);
    // Protocol.
    assert_eq!(r.ghcb_version, 2);
    assert_eq!(
        h.msr_events()[..4],
        [
            GhcbMsg::SevInfoReq,
            GhcbMsg::HvFeaturesReq,
            GhcbMsg::PscReq {
                gfn: GHCB >> 12,
                op: PscOp::SHARED
            },
            GhcbMsg::RegGpaReq { gfn: GHCB >> 12 },
        ]
    );
    // Memory: everything but the launch range accepted, then the bounce region shared.
    assert_eq!(r.accepted_bytes, RAM - 0x1_0000);
    assert!(r.unaccepted.is_empty());
    assert_eq!(r.shared_bytes, 0x20_0000 + 0x1000);
    assert!(r.mem.pvalidate_2m >= 7);
    assert!(!h.pg(BOUNCE >> 12).private);
    assert!(h.pg((RAM >> 12) - 1).validated);
    // The kernel was loaded into private memory.
    assert_eq!(h.peek(LOAD, 4), vec![0xE8; 4]);
    // APs: VMSA pages skip the 2 MiB-aligned one, carry the VMSA bit and SEV features.
    assert_eq!(r.aps_started, vec![1, 2, 3]);
    assert_eq!(
        h.aps,
        vec![
            (1, VMSA_BASE + 0x1000, 1),
            (2, VMSA_BASE + 0x2000, 1),
            (3, VMSA_BASE + 0x3000, 1)
        ]
    );
    assert!(h.pg((VMSA_BASE >> 12) + 1).vmsa);
    assert!(h.log.contains(&Ev::Rmpadjust {
        gpa: VMSA_BASE + 0x1000,
        attrs: (1 << 16) | 1
    }));
    // Messages: report (1), key (3); secrets page counter at 4.
    assert_eq!(r.msg_exchanges, 2);
    assert_eq!(h.peek(SECRETS + 0xA0, 4), vec![4, 0, 0, 0]);
    assert_eq!(r.phases.len(), 9);
    assert_eq!(r.phases[0].0, Phase::SevStatus);
    assert!(h.terminated.is_none());
    // The key never shows in Debug output.
    let dbg = format!("{r:?}");
    assert!(dbg.contains("<secret>"));
    let key = r.derived_key.as_ref().unwrap();
    assert!(!dbg.contains(&format!("{:?}", &key[..4])));
}

#[test]
fn derived_key_depends_on_what_the_firmware_mixes_in() {
    let k1 = boot(&mut host(true), &config())
        .unwrap()
        .derived_key
        .unwrap();
    let k2 = boot(&mut host(true), &config())
        .unwrap()
        .derived_key
        .unwrap();
    assert_eq!(*k1, *k2);
    let mut h = host(true);
    h.derived_key_salt = 9;
    let k3 = boot(&mut h, &config()).unwrap().derived_key.unwrap();
    assert_ne!(*k1, *k3);
}

#[test]
fn kernel_hash_mismatch_terminates() {
    let mut h = host(true);
    let mut cfg = config();
    if let Some(k) = cfg.kernel.as_mut() {
        k.cmdline = b"console=ttyS0 init=/bin/sh\0".to_vec();
    }
    let e = boot(&mut h, &cfg).unwrap_err();
    match &e {
        GuestError::Terminated {
            set: 0,
            code: 0,
            cause,
        } => {
            assert!(
                matches!(
                    **cause,
                    GuestError::KernelHashes {
                        gpa: Gpa(HASHES),
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains("cmdline"), "{e}");
        }
        e => panic!("{e}"),
    }
    assert_eq!(h.terminated, Some((0, 0)));
    // Nothing after the check happened: no AP, no guest request.
    assert!(h.aps.is_empty());
    assert!(!h.log.iter().any(|e| matches!(e, Ev::FwRequest { .. })));
}

#[test]
fn missing_hash_table_terminates() {
    let mut h = host(false);
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(matches!(e.root(), GuestError::KernelHashes { .. }), "{e}");
    assert_eq!(h.terminated, Some((0, 0)));
}

#[test]
fn not_snp() {
    let mut h = host(true);
    h.sev_status = 0b011;
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(matches!(e, GuestError::NotSnp { sev_status: 3 }), "{e}");
    assert!(h.msr_events().is_empty());
}

#[test]
fn protocol_failures_terminate_with_their_reasons() {
    let mut h = host(true);
    h.k.max_ver = 1;
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Terminated {
                set: 0,
                code: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(h.terminated, Some((0, 1)));

    let mut h = host(true);
    h.k.hv_features = 0;
    boot(&mut h, &config()).unwrap_err();
    assert_eq!(h.terminated, Some((0, 2)));

    let mut h = host(true);
    h.k.reg_fail = true;
    boot(&mut h, &config()).unwrap_err();
    assert_eq!(h.terminated, Some((1, 0)));

    let mut h = host(true);
    h.k.psc_error = PSC_ERROR_GENERIC;
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(matches!(e.root(), GuestError::Psc { .. }), "{e}");
    assert_eq!(h.terminated, Some((1, 1)));

    // AP creation not offered: the boot stops with a clear error, no termination.
    let mut h = host(true);
    h.k.hv_features = GHCB_HV_FT_SNP;
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(matches!(e, GuestError::ApCreationUnsupported { .. }), "{e}");
    assert!(h.terminated.is_none());
}

#[test]
fn tampered_vmsa_page_is_noticed() {
    let mut h = host(true);
    // The host RMPUPDATEs the second AP's VMSA page right after it is validated.
    let target = VMSA_BASE + 0x2000;
    // Lazy acceptance so the VMSA pages are validated one by one, on demand.
    let mut cfg = config();
    cfg.accept = AcceptMode::Lazy { eager_bytes: 0 };
    h.k.tamper_after_validate = Some(target >> 12);
    let e = boot(&mut h, &cfg).unwrap_err();
    match e.root() {
        GuestError::Tampered { gpa, op } => {
            assert_eq!(*gpa, Gpa(target));
            assert_eq!(*op, "AP VMSA write");
        }
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("0x402000"), "{e}");
    assert_eq!(h.terminated, Some((0, 0)));
    assert_eq!(h.aps.len(), 1);
}

#[test]
fn tampered_launch_page_is_noticed() {
    let mut h = host(true);
    h.tamper(SECRETS); // after launch, before the guest reads it
    let mut cfg = config();
    cfg.kernel = None;
    let e = boot(&mut h, &cfg).unwrap_err();
    assert!(
        matches!(
            e.root(),
            GuestError::Tampered {
                gpa: Gpa(SECRETS),
                ..
            }
        ),
        "{e}"
    );
    // Tampering with the hashes table page is noticed before any blob is trusted.
    let mut h = host(true);
    h.tamper(HASHES);
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(
        matches!(
            e.root(),
            GuestError::Tampered {
                gpa: Gpa(HASHES),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn lazy_acceptance() {
    let mut h = host(true);
    let mut cfg = config();
    cfg.accept = AcceptMode::Lazy {
        eager_bytes: 0x20_0000,
    };
    let (mut g, r) = Guest::boot(&mut h, &cfg).unwrap();
    assert!(!r.unaccepted.is_empty());
    assert!(r.accepted_bytes < RAM / 2, "{}", r.accepted_bytes);
    let before: u64 = r.unaccepted.iter().map(MemRange::len).sum();
    // A read in unaccepted RAM accepts its 2 MiB unit first.
    let at = Gpa(0xE0_0000);
    assert!(!h.pg(at.0 >> 12).validated);
    let mut b = [0u8; 16];
    g.read_private(&mut h, at, &mut b).unwrap();
    assert!(h.pg(at.0 >> 12).validated);
    let after = g.unaccepted.total();
    assert_eq!(before - after, 0x20_0000);
    // More reports can follow.
    let x = g.extended_report(&mut h, &cfg.report, 4).unwrap();
    assert_eq!(x.report.len(), 0x4A0);
}

#[test]
fn small_rmp_and_partial_psc_and_cert_retry() {
    let mut h = host(true);
    h.k.rmp_4k_only = true;
    h.k.psc_per_call = 7;
    h.k.certs = cert_table(19); // 19000 + 480 bytes: 5 pages
    let r = boot(&mut h, &config()).unwrap();
    assert!(r.mem.size_mismatch_fallbacks >= 7);
    assert_eq!(r.mem.pvalidate_2m, 0);
    assert_eq!(r.cert_retries, 1);
    assert_eq!(r.cert_pages, 5);
    assert_eq!(r.cert_entries, 19);
    assert!(r.ghcb.psc_calls > 2);
}

#[test]
fn guest_request_failure_is_reported_without_termination() {
    let mut h = host(true);
    h.k.resp_seqno_delta = 2;
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::MsgResponse {
                what: "MSG_SEQNO",
                ..
            }
        ),
        "{e}"
    );
    assert!(h.terminated.is_none());
    // VMPCK0 wiped in the secrets page.
    assert_eq!(h.peek(SECRETS + 0x20, 32), vec![0; 32]);
}

#[test]
fn bad_configurations_fail_before_any_exit() {
    let mut h = host(true);
    let mut cfg = config();
    cfg.bounce = MemRange::new(BOUNCE, 0x3000);
    assert!(matches!(boot(&mut h, &cfg), Err(GuestError::Config(_))));
    let mut cfg = config();
    cfg.ram = vec![MemRange::new(0x800, 0x1000)];
    assert!(matches!(boot(&mut h, &cfg), Err(GuestError::Config(_))));
    let mut cfg = config();
    cfg.cert_pages = 0;
    assert!(matches!(boot(&mut h, &cfg), Err(GuestError::Config(_))));
    assert!(h.log.is_empty());
}

#[test]
fn cpuid_page_checked_first() {
    const CPUID: u64 = 0x6000;
    let mut h = host(true);
    let mut page = vec![0u8; 0x1000];
    page[0] = 5;
    h.poke(CPUID, &page);
    let mut cfg = config();
    cfg.cpuid_gpa = Some(Gpa(CPUID));
    let r = boot(&mut h, &cfg).unwrap();
    assert_eq!(r.cpuid_functions, 5);
    for bad in [0u8, 65] {
        let mut h = host(true);
        page[0] = bad;
        h.poke(CPUID, &page);
        let e = boot(&mut h, &cfg).unwrap_err();
        assert!(matches!(e.root(), GuestError::CpuidPage { .. }), "{e}");
        assert_eq!(h.terminated, Some((1, 4)));
        assert!(
            h.msr_events().len() == 1,
            "only the termination request was sent"
        );
    }
}

#[test]
fn a_stopped_vcpu_is_not_asked_to_terminate() {
    let mut h = host(true);
    h.terminated = Some((9, 9)); // the host has already stopped the vCPU
    let e = boot(&mut h, &config()).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Fault {
                fault: softsev_guest::GuestFault::Stopped,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(h.terminated, Some((9, 9)));
}

#[test]
fn aps_register_their_own_ghcbs() {
    const AP_GHCBS: u64 = 0x60_0000;
    let mut h = host(true);
    let mut cfg = config();
    cfg.ap_ghcb_base = Some(Gpa(AP_GHCBS));
    let r = boot(&mut h, &cfg).unwrap();
    assert_eq!(
        r.ap_ghcbs,
        vec![
            Gpa(AP_GHCBS),
            Gpa(AP_GHCBS + 0x1000),
            Gpa(AP_GHCBS + 0x2000)
        ]
    );
    // Shared (and rescinded first: full acceptance had validated them).
    assert!(!h.pg(AP_GHCBS >> 12).private);
    // The AP side, on (this fake's only) vCPU: its own GHCB registered and used.
    let a = softsev_guest::ap_entry(&mut h, Gpa(AP_GHCBS + 0x1000)).unwrap();
    assert_eq!(a.ghcb_version, 2);
    assert_eq!(h.registered, Some((AP_GHCBS + 0x1000) >> 12));
    assert_eq!(h.ghcb_exits().last(), Some(&0x8000_FFFD));
    // An AP pointed at a private page cannot use it as a GHCB: it terminates.
    let e = softsev_guest::ap_entry(&mut h, Gpa(0x70_0000)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Terminated {
                set: 0,
                code: 0,
                ..
            }
        ),
        "{e}"
    );
}
