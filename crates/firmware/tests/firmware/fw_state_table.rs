//! Every (platform/guest state × command) with the status the firmware returns.
//!
//! Each cell builds its scenario on a fresh platform, issues one probe command and
//! compares the status. The table is the specification: it follows the check order of
//! AMD's SEV firmware (`sev_mcmd.c`): reserved fields, platform state, context page,
//! operand page states, guest state, activation, ownership, policy.
use crate::fwcommon::*;
use softsev_abi::fw_buf::*;
use softsev_abi::{FwCmd, FwStatus};

/// Pre-guest page (ASID 1) used by the probes.
const PRE: u64 = GUEST_BASE;
/// Firmware page for PAGE_RECLAIM.
const FWPAGE: u64 = 0x5000;
const POLICY: u64 = 0x30000;

#[derive(Clone, Copy, Debug)]
enum Sc {
    Uninit,
    InitDirty,
    Init,
    Gctx,
    LaunchInactive,
    Launch,
    Running,
    Decommissioned,
}

const SCENARIOS: [Sc; 8] = [
    Sc::Uninit,
    Sc::InitDirty,
    Sc::Init,
    Sc::Gctx,
    Sc::LaunchInactive,
    Sc::Launch,
    Sc::Running,
    Sc::Decommissioned,
];

fn build(sc: Sc) -> Host {
    let h = Host::new();
    if matches!(sc, Sc::Uninit) {
        return h;
    }
    h.cmd0(FwCmd::SNP_INIT).unwrap();
    for p in [OUT, GCTX, GCTX2, FWPAGE] {
        h.fw_page(p);
    }
    if !matches!(sc, Sc::InitDirty) {
        h.soc.wbinvd();
        h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    }
    let level = sc as u8;
    if level >= Sc::Gctx as u8 {
        h.gctx_create(GCTX).unwrap();
    }
    if level >= Sc::LaunchInactive as u8 {
        h.launch_start(GCTX, POLICY).unwrap();
    }
    if level >= Sc::Launch as u8 {
        h.activate(GCTX, ASID).unwrap();
    }
    if level >= Sc::Running as u8 {
        h.load_page(GCTX, GUEST_BASE + 0x10_0000, 0x2000, 1, &[3; 4096])
            .unwrap();
        h.launch_finish(GCTX, 0, [0; 32]).unwrap();
    }
    if level >= Sc::Decommissioned as u8 {
        h.cmd(FwCmd::SNP_DECOMMISSION, &SnpPaddr { paddr: GCTX })
            .unwrap();
    }
    // The probe page, pre-guest for ASID 1 (after activation, as KVM orders it).
    h.soc
        .host_write(softsev_abi::Spa(PRE), false, &[9; 4096])
        .unwrap();
    h.rmpupdate(PRE, true, ASID, 0x1000, true, false);
    h
}

type Probe = fn(&Host) -> FwResult;
use softsev_firmware::FwResult;

fn probes() -> Vec<(&'static str, Probe)> {
    vec![
        ("SNP_INIT", |h| h.cmd0(FwCmd::SNP_INIT)),
        ("SNP_SHUTDOWN", |h| h.cmd0(FwCmd::SNP_SHUTDOWN)),
        ("SNP_DF_FLUSH", |h| h.cmd0(FwCmd::SNP_DF_FLUSH)),
        ("SNP_PLATFORM_STATUS", |h| {
            h.cmd(FwCmd::SNP_PLATFORM_STATUS, &SnpPaddr { paddr: OUT })
        }),
        ("SNP_GCTX_CREATE", |h| h.gctx_create(GCTX2)),
        ("SNP_LAUNCH_START", |h| h.launch_start(GCTX, POLICY)),
        ("SNP_ACTIVATE", |h| h.activate(GCTX, 2)),
        ("SNP_LAUNCH_UPDATE", |h| {
            h.launch_update(GCTX, PRE, 1, false)
        }),
        ("SNP_LAUNCH_FINISH", |h| h.launch_finish(GCTX, 0, [0; 32])),
        ("SNP_GUEST_STATUS", |h| {
            h.cmd(
                FwCmd::SNP_GUEST_STATUS,
                &SnpGuestStatusCmd {
                    gctx_paddr: GCTX,
                    status_paddr: OUT,
                },
            )
        }),
        ("SNP_DECOMMISSION", |h| {
            h.cmd(FwCmd::SNP_DECOMMISSION, &SnpPaddr { paddr: GCTX })
        }),
        ("SNP_DBG_DECRYPT", |h| {
            h.cmd(
                FwCmd::SNP_DBG_DECRYPT,
                &SnpDbg {
                    gctx_paddr: GCTX,
                    src_paddr: PRE,
                    dst_paddr: OUT,
                },
            )
        }),
        ("SNP_GUEST_REQUEST", |h| {
            h.cmd(
                FwCmd::SNP_GUEST_REQUEST,
                &SnpGuestRequest {
                    gctx_paddr: GCTX,
                    request_paddr: 0x6000,
                    response_paddr: FWPAGE,
                },
            )
        }),
        ("SNP_PAGE_RECLAIM", |h| {
            h.cmd(FwCmd::SNP_PAGE_RECLAIM, &SnpPaddr { paddr: FWPAGE })
        }),
        ("SNP_PAGE_UNSMASH", |h| {
            h.cmd(FwCmd::SNP_PAGE_UNSMASH, &SnpPaddr { paddr: 0x80_0000 })
        }),
        ("SNP_CONFIG", |h| {
            h.cmd(
                FwCmd::SNP_CONFIG,
                &SnpConfig {
                    reported_tcb: 0,
                    flags: 0,
                    reserved: [0; 0x34],
                },
            )
        }),
        ("SNP_COMMIT", |h| {
            h.cmd(FwCmd::SNP_COMMIT, &SnpCommit { length: 4 })
        }),
        ("SNP_FEATURE_INFO", |h| {
            h.cmd(
                FwCmd::SNP_FEATURE_INFO,
                &SnpFeatureInfoCmd {
                    length: 16,
                    ecx_in: 0,
                    feature_info_paddr: OUT,
                },
            )
        }),
        ("legacy COPY (not modelled)", |h| h.cmd0(FwCmd::COPY)),
    ]
}

#[test]
fn state_by_command_table() {
    use FwStatus as S;
    const OK: S = S::SUCCESS;
    const IPS: S = S::INVALID_PLATFORM_STATE;
    const IG: S = S::INVALID_GUEST;
    const IGS: S = S::INVALID_GUEST_STATE;
    const DFR: S = S::DFFLUSH_REQUIRED;
    const WBR: S = S::WBINVD_REQUIRED;
    const IPST: S = S::INVALID_PAGE_STATE;
    // Columns: Uninit, InitDirty, Init, Gctx, LaunchInactive, Launch, Running, Decommissioned.
    let expected: Vec<(&str, [S; 8])> = vec![
        ("SNP_INIT", [OK, IPS, IPS, IPS, IPS, IPS, IPS, IPS]),
        ("SNP_SHUTDOWN", [OK, DFR, OK, OK, OK, DFR, DFR, DFR]),
        ("SNP_DF_FLUSH", [OK, WBR, OK, OK, OK, OK, OK, WBR]),
        ("SNP_PLATFORM_STATUS", [OK; 8]),
        ("SNP_GCTX_CREATE", [IPS, OK, OK, OK, OK, OK, OK, OK]),
        ("SNP_LAUNCH_START", [IPS, IG, IG, OK, IGS, IGS, IGS, IG]),
        (
            "SNP_ACTIVATE",
            [IPS, IG, IG, IGS, OK, S::ACTIVE, S::ACTIVE, IG],
        ),
        (
            "SNP_LAUNCH_UPDATE",
            [IPS, IG, IG, IGS, S::INACTIVE, OK, IGS, IG],
        ),
        (
            "SNP_LAUNCH_FINISH",
            [IPS, IG, IG, IGS, S::INACTIVE, OK, IGS, IG],
        ),
        ("SNP_GUEST_STATUS", [IPS, IG, IG, OK, OK, OK, OK, IG]),
        ("SNP_DECOMMISSION", [IPS, IG, IG, OK, OK, OK, OK, IG]),
        (
            "SNP_DBG_DECRYPT",
            [
                IPS,
                IG,
                IG,
                S::INVALID_PAGE_OWNER,
                S::INVALID_PAGE_OWNER,
                S::POLICY_FAILURE,
                S::POLICY_FAILURE,
                IG,
            ],
        ),
        // The request page holds zeros: a bad header once the guest runs.
        (
            "SNP_GUEST_REQUEST",
            [IPS, IG, IG, IGS, IGS, IGS, S::INVALID_PARAM, IG],
        ),
        ("SNP_PAGE_RECLAIM", [IPS, OK, OK, OK, OK, OK, OK, OK]),
        (
            "SNP_PAGE_UNSMASH",
            [IPS, IPST, IPST, IPST, IPST, IPST, IPST, IPST],
        ),
        ("SNP_CONFIG", [OK; 8]),
        ("SNP_COMMIT", [OK; 8]),
        ("SNP_FEATURE_INFO", [OK; 8]),
        ("legacy COPY (not modelled)", [S::INVALID_COMMAND; 8]),
    ];
    let probes = probes();
    assert_eq!(probes.len(), expected.len());
    let mut mismatches = Vec::new();
    for ((name, probe), (ename, row)) in probes.iter().zip(&expected) {
        assert_eq!(name, ename);
        for (sc, want) in SCENARIOS.iter().zip(row) {
            let h = build(*sc);
            let got = status(probe(&h));
            if got != *want {
                mismatches.push(format!("{name} in {sc:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
