//! GHCB client and memory acceptance against the scripted fake host.

use crate::common::{Ev, FakeHost};
use softsev_abi::Gpa;
use softsev_abi::ghcb::*;
use softsev_abi::rmp::RmpStatus;
use softsev_guest::error::GuestError;
use softsev_guest::ghcb::{CertBuf, GhcbClient};
use softsev_guest::memory::{MemRange, Validated};

const GHCB: u64 = 0x8000;

/// Negotiate, query features, share and register the GHCB page.
fn setup(h: &mut FakeHost) -> (GhcbClient, Validated) {
    let mut c = GhcbClient::new();
    let mut v = Validated::new();
    h.prevalidate(GHCB, 0x1000);
    v.mark_validated(MemRange::new(GHCB, 0x1000));
    c.negotiate(h).unwrap();
    c.query_hv_features(h).unwrap();
    v.make_shared_msr(h, &mut c, Gpa(GHCB)).unwrap();
    c.register(h, Gpa(GHCB)).unwrap();
    (c, v)
}

#[test]
fn msr_protocol_sequence() {
    let mut h = FakeHost::new();
    let (c, v) = setup(&mut h);
    assert_eq!(c.version(), 2);
    assert_eq!(c.cbit_pos(), 51);
    assert_eq!(c.hv_features(), GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION);
    assert_eq!(
        h.msr_events(),
        vec![
            GhcbMsg::SevInfoReq,
            GhcbMsg::HvFeaturesReq,
            GhcbMsg::PscReq {
                gfn: GHCB >> 12,
                op: PscOp::SHARED
            },
            GhcbMsg::RegGpaReq { gfn: GHCB >> 12 },
        ]
    );
    // The GHCB page was rescinded before it was made shared.
    assert!(h.log.contains(&Ev::Pvalidate {
        gpa: GHCB,
        huge: false,
        validate: false,
        status: 0
    }));
    assert!(!h.pg(GHCB >> 12).private);
    assert!(!v.is_validated(Gpa(GHCB)));
    // After registration the MSR holds the GHCB GPA.
    assert_eq!(h.msr, GHCB);
    assert_eq!(c.ghcb_gpa(), Some(Gpa(GHCB)));
}

#[test]
fn version_and_feature_and_registration_failures() {
    let mut h = FakeHost::new();
    h.k.max_ver = 1;
    let e = GhcbClient::new().negotiate(&mut h).unwrap_err();
    assert!(
        matches!(e, GuestError::UnsupportedGhcbVersion { min: 1, max: 1 }),
        "{e}"
    );
    assert_eq!(e.termination_reason(), Some((0, 1)));

    let mut h = FakeHost::new();
    h.k.min_ver = 3;
    h.k.max_ver = 4;
    assert!(GhcbClient::new().negotiate(&mut h).is_err());

    let mut h = FakeHost::new();
    h.k.hv_features = GHCB_HV_FT_SNP_AP_CREATION;
    let e = GhcbClient::new().query_hv_features(&mut h).unwrap_err();
    assert!(matches!(e, GuestError::HvFeatureMissing { .. }), "{e}");
    assert_eq!(e.termination_reason(), Some((0, 2)));

    let mut h = FakeHost::new();
    h.k.reg_fail = true;
    let mut c = GhcbClient::new();
    c.negotiate(&mut h).unwrap();
    let e = c.register(&mut h, Gpa(GHCB)).unwrap_err();
    assert!(
        matches!(e, GuestError::GhcbRegistration { gfn: 8, .. }),
        "{e}"
    );
    assert_eq!(e.termination_reason(), Some((1, 0)));
    assert_eq!(c.ghcb_gpa(), None);

    // A response of the wrong kind.
    let mut h = FakeHost::new();
    let mut c = GhcbClient::new();
    h.k.hv_features = 1;
    // Make the host ignore the request: an unknown request leaves the MSR unchanged.
    let v = c.msr_call(&mut h, GhcbMsg::Unknown(0x3FF)).unwrap();
    assert_eq!(v, 0x3FF);
}

#[test]
fn psc_by_msr_error() {
    let mut h = FakeHost::new();
    h.k.psc_msr_error = 7;
    let mut c = GhcbClient::new();
    let e = c.psc_msr(&mut h, Gpa(0x5000), PscOp::SHARED).unwrap_err();
    assert!(matches!(e, GuestError::Psc { .. }), "{e}");
    assert_eq!(e.termination_reason(), Some((1, 1)));
}

#[test]
fn accept_uses_2m_and_honours_partial_progress() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    h.k.psc_per_call = 1; // the host handles one entry per call
    // 4 KiB head, two 2 MiB pages, 4 KiB tail.
    let r = MemRange::new(0x1F_F000, 0x40_2000);
    v.make_private(&mut h, &mut c, r).unwrap();
    for gfn in (0x1F_F000u64 >> 12)..(0x60_1000 >> 12) {
        let pg = h.pg(gfn);
        assert!(pg.private && pg.validated, "gfn {gfn:#x}");
    }
    assert_eq!(c.stats.psc_calls, 4);
    assert_eq!(c.stats.psc_entries, 4);
    assert_eq!(v.stats.pvalidate_2m, 2);
    assert_eq!(v.stats.pvalidate_4k, 2 + 1); // + the GHCB rescind
    assert_eq!(v.stats.accepted_bytes, 0x40_2000);
    // PSC precedes PVALIDATE of the same entry.
    let psc = h
        .log
        .iter()
        .position(|e| {
            matches!(
                e,
                Ev::PscDone {
                    gfn: 0x200,
                    huge: true,
                    ..
                }
            )
        })
        .unwrap();
    let pv = h
        .log
        .iter()
        .position(|e| {
            matches!(
                e,
                Ev::Pvalidate {
                    gpa: 0x20_0000,
                    huge: true,
                    validate: true,
                    ..
                }
            )
        })
        .unwrap();
    assert!(psc < pv);
    // Accepting again does nothing (already validated).
    let calls = c.stats.psc_calls;
    v.make_private(&mut h, &mut c, r).unwrap();
    assert_eq!(c.stats.psc_calls, calls);
}

#[test]
fn more_than_253_entries_take_several_descriptors() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    // 300 × 4 KiB starting off a 2 MiB boundary: all 4 KiB entries.
    let r = MemRange::new(0x10_1000, 300 * 0x1000);
    v.make_private(&mut h, &mut c, r).unwrap();
    assert_eq!(c.stats.psc_calls, 2);
    assert_eq!(c.stats.psc_entries, 300);
}

#[test]
fn size_mismatch_falls_back_to_4k() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    h.k.rmp_4k_only = true;
    v.make_private(&mut h, &mut c, MemRange::new(0x20_0000, 0x20_0000))
        .unwrap();
    assert_eq!(v.stats.size_mismatch_fallbacks, 1);
    assert_eq!(v.stats.pvalidate_2m, 0);
    assert_eq!(v.stats.pvalidate_4k, 512 + 1);
    assert!(h.pg(0x3FF).validated);
}

#[test]
fn make_shared_rescinds_first() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    let r = MemRange::new(0x40_0000, 0x20_0000);
    v.make_private(&mut h, &mut c, r).unwrap();
    h.log.clear();
    v.make_shared(&mut h, &mut c, r).unwrap();
    assert_eq!(
        h.log[0],
        Ev::Pvalidate {
            gpa: 0x40_0000,
            huge: true,
            validate: false,
            status: 0
        }
    );
    assert!(h.log.iter().any(|e| matches!(
        e,
        Ev::PscDone {
            gfn: 0x400,
            op: 2,
            huge: true
        }
    )));
    assert!(!h.pg(0x400).private && !h.pg(0x5FF).private);
    assert!(!v.is_validated(Gpa(0x40_0000)));
    assert_eq!(v.stats.rescind_2m, 1);
    // Shared → private again works.
    v.make_private(&mut h, &mut c, r).unwrap();
    assert!(h.pg(0x400).validated);
}

#[test]
fn psc_errors() {
    for (knob, want) in [
        ("error", "hypervisor error"),
        ("tamper", "altered"),
        ("stall", "no progress"),
    ] {
        let mut h = FakeHost::new();
        let (mut c, mut v) = setup(&mut h);
        match knob {
            "error" => h.k.psc_error = PSC_ERROR_GENERIC,
            "tamper" => h.k.psc_tamper_entry = true,
            _ => h.k.psc_stall = true,
        }
        let e = v
            .make_private(&mut h, &mut c, MemRange::new(0x10_0000, 0x3000))
            .unwrap_err();
        assert!(matches!(e, GuestError::Psc { .. }), "{knob}: {e}");
        assert!(e.to_string().contains(want), "{knob}: {e}");
        assert_eq!(e.termination_reason(), Some((1, 1)));
        // Nothing was validated.
        assert!(!v.is_validated(Gpa(0x10_0000)));
    }
}

#[test]
fn double_validation_is_refused() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    // The page is already validated though the guest never validated it.
    h.prevalidate(0x30_0000, 0x1000);
    let e = v
        .make_private(&mut h, &mut c, MemRange::new(0x30_0000, 0x1000))
        .unwrap_err();
    match e {
        GuestError::Pvalidate {
            gpa,
            validate: true,
            status,
            ..
        } => {
            assert_eq!(gpa, Gpa(0x30_0000));
            assert_eq!(status, RmpStatus::FAIL_UNCHANGED);
        }
        e => panic!("{e}"),
    }
}

#[test]
fn bad_ghcb_responses() {
    type Case = (fn(&mut FakeHost), &'static str);
    let cases: [Case; 3] = [
        (
            |h| h.k.ghcb_bad_input = Some(GhcbError::INVALID_INPUT.0),
            "malformed input",
        ),
        (|h| h.k.ghcb_info1 = Some(1), "injects exception"),
        (|h| h.k.ghcb_info1 = Some(5), "SW_EXITINFO1"),
    ];
    for (set, want) in cases {
        let mut h = FakeHost::new();
        let (mut c, _) = setup(&mut h);
        set(&mut h);
        let e = c
            .ap_create(&mut h, ApCreateOp::CREATE, 1, Gpa(0x9000), 1)
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(e.termination_reason(), Some((0, 0)));
    }
    // Host-side NOT_REGISTERED: the guest points the MSR at a GHCB the host does not know.
    let mut h = FakeHost::new();
    let (mut c, _) = setup(&mut h);
    h.registered = Some(0x1234);
    let e = c
        .guest_request(&mut h, Gpa(0xA000), Gpa(0xB000), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::GhcbBadInput {
                error: GhcbError::NOT_REGISTERED,
                ..
            }
        ),
        "{e}"
    );
    // No GHCB at all.
    let mut h = FakeHost::new();
    let mut c = GhcbClient::new();
    let e = c
        .psc(&mut h, &[PscEntry::new(1, PscOp::PRIVATE, false)])
        .unwrap_err();
    assert!(matches!(e, GuestError::NoGhcb { .. }), "{e}");
}

#[test]
fn guest_request_transport() {
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    v.make_shared(&mut h, &mut c, MemRange::new(0x10_0000, 0x4000))
        .unwrap();
    // Busy twice, then a firmware error.
    h.k.busy = 2;
    h.k.fw_error = 0x16;
    let e = c
        .guest_request(&mut h, Gpa(0x10_0000), Gpa(0x10_1000), None)
        .unwrap_err();
    assert!(matches!(e, GuestError::GuestRequest { .. }), "{e}");
    assert_eq!(c.stats.guest_requests, 3);
    // Buffer too small on an extended request carries RBX.
    h.k.fw_error = 0;
    h.k.certs = vec![1; 0x2800];
    let certs = CertBuf {
        gpa: Gpa(0x10_2000),
        pages: 1,
    };
    // The fake only asks for certs on a report request; write a report header.
    let hdr = softsev_abi::guest_msg::MsgHeader::new(
        softsev_abi::guest_msg::MsgType::REPORT_REQ,
        1,
        0x60,
        0,
        1,
    );
    h.poke(0x10_0000, zerocopy::IntoBytes::as_bytes(&hdr));
    let e = c
        .guest_request(&mut h, Gpa(0x10_0000), Gpa(0x10_1000), Some(certs))
        .unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::CertBufferTooSmall {
                given: 1,
                needed: 3
            }
        ),
        "{e}"
    );
    // Without RBX marked valid the answer is a protocol violation.
    h.k.invalid_len_no_rbx = true;
    let e = c
        .guest_request(&mut h, Gpa(0x10_0000), Gpa(0x10_1000), Some(certs))
        .unwrap_err();
    assert!(matches!(e, GuestError::GhcbBadResponse { .. }), "{e}");
    assert_eq!(h.ghcb_exits().last(), Some(&NaeExit::EXT_GUEST_REQUEST.0));
}

#[test]
fn terminate_stops_the_vcpu() {
    let mut h = FakeHost::new();
    let mut c = GhcbClient::new();
    c.terminate(&mut h, 1, 2).unwrap();
    assert_eq!(h.terminated, Some((1, 2)));
    // Anything after that fails: the vCPU is gone.
    assert!(c.negotiate(&mut h).is_err());
}

#[test]
fn ap_creation_and_destroy_and_reset_hold() {
    use softsev_guest::ap::start_ap;
    let mut h = FakeHost::new();
    let (mut c, mut v) = setup(&mut h);
    // The VMSA page is accepted on the way (4 KiB), written, made a VMSA, then created.
    start_ap(&mut h, &mut c, &mut v, 5, Gpa(0x30_1000), 0x9_A000, 1).unwrap();
    assert_eq!(h.aps, vec![(5, 0x30_1000, 1)]);
    assert!(h.pg(0x301).vmsa && h.pg(0x301).validated);
    let vmsa = h.peek(0x30_1000, 0x1000);
    // SEV_FEATURES at 0x3B0, RIP at 0x178.
    assert_eq!(&vmsa[0x3B0..0x3B8], &1u64.to_le_bytes());
    assert_eq!(&vmsa[0x178..0x180], &0u64.to_le_bytes());
    assert_eq!(&vmsa[0x18..0x20], &0x9_A000u64.to_le_bytes()); // CS.base
    // A 2 MiB-aligned VMSA page is refused before anything is sent.
    let exits = h.ghcb_exits().len();
    assert!(start_ap(&mut h, &mut c, &mut v, 6, Gpa(0x40_0000), 0, 1).is_err());
    assert_eq!(h.ghcb_exits().len(), exits);
    // Wrong SEV features: the host refuses and the VMSA bit is cleared again.
    let e = start_ap(&mut h, &mut c, &mut v, 7, Gpa(0x30_2000), 0x9_A000, 3).unwrap_err();
    assert!(matches!(e, GuestError::GhcbBadInput { .. }), "{e}");
    assert!(!h.pg(0x302).vmsa);
    c.ap_destroy(&mut h, 5, 1).unwrap();
    assert!(h.aps.is_empty());
    assert_eq!(c.ap_reset_hold(&mut h).unwrap(), 1);
    // The GHCB MSR was restored after the MSR-protocol call.
    assert_eq!(h.msr, GHCB);
}
