//! Every (legacy platform state × command) over sev-legacy.md §1.3 and every (legacy
//! guest state × command) over §3.7, each cell on a fresh platform, as
//! `fw_state_table.rs` does for SNP, SEND_* and RECEIVE_* included (§5; the guest table
//! covers SUPDATE, RUPDATE and SENT) and SWAP_OUT / SWAP_IN; COPY is not modelled:
//! INVALID_COMMAND in every state.

use crate::sevcommon::*;
use softsev_abi::sev_buf::*;
use softsev_abi::{FwCmd, FwStatus, Spa};
use softsev_firmware::FwResult;

type Probe = fn(&Host) -> FwResult;

const G: u32 = 1;

fn dbg_decrypt(h: &Host) -> FwResult {
    h.sev(&mut SevDbgDecrypt {
        handle: G,
        reserved: 0,
        src_addr: GMEM,
        dst_addr: OUT,
        len: 16,
    })
}

fn dbg_encrypt(h: &Host) -> FwResult {
    h.sev(&mut SevDbgEncrypt {
        handle: G,
        reserved: 0,
        src_addr: OUT,
        dst_addr: GMEM,
        len: 16,
    })
}

fn vmsa(h: &Host) -> FwResult {
    h.sev(&mut SevLaunchUpdateVmsa {
        handle: G,
        reserved: 0,
        address: GMEM + 0x1000,
        len: 4096,
    })
}

fn secret(h: &Host) -> FwResult {
    h.sev(&mut SevLaunchSecret {
        handle: G,
        hdr_address: HDR,
        hdr_len: 52,
        guest_address: GMEM,
        guest_len: 16,
        trans_address: TRANS,
        trans_len: 16,
        ..Default::default()
    })
}

fn attestation(h: &Host) -> FwResult {
    h.sev(&mut SevAttestation {
        handle: G,
        reserved: 0,
        address: OUT,
        mnonce: [0; 16],
        len: 0xD0,
    })
}

/// This platform's own certificates as a migration target (PDH_CERT_EXPORT; zero
/// certificates when the platform cannot export them, e.g. UNINIT).
fn own_target(h: &Host) -> TargetCerts {
    let mut b = SevPdhCertExport {
        pdh_cert_address: OUT,
        pdh_cert_len: SEV_CERT_LEN as u32,
        reserved: 0,
        cert_chain_address: CHAIN,
        cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
    };
    if h.sev(&mut b).is_ok() {
        h.target_certs()
    } else {
        TargetCerts {
            pdh: <softsev_abi::sev_cert::SevCert as zerocopy::FromZeros>::new_zeroed(),
            plat: vec![0; SEV_PDH_CHAIN_LEN],
            amd: vec![0; 0x680],
        }
    }
}

fn send_start(h: &Host) -> FwResult {
    let t = own_target(h);
    h.sev_send_start(G, &t).map(|_| ())
}

/// RECEIVE_START of a new ES guest with a session to this platform's own PDH.
fn receive_start(h: &Host) -> FwResult {
    let pdh = own_target(h).pdh;
    if pdh.ecc_pubkey().is_none() {
        return h
            .sev_receive_start(
                0x4,
                &pdh,
                &<SevSession as zerocopy::FromZeros>::new_zeroed(),
            )
            .map(|_| ());
    }
    let key = softsev_crypto::sev::EcdhP384::from_scalar_be(&[7; 48]).unwrap();
    let o = owner_session(key, &pdh, [1; 16], [2; 16], [3; 16], [4; 16], 0x4);
    h.sev_receive_start(0x4, &o.godh, &o.session).map(|_| ())
}

fn commands() -> Vec<(&'static str, Probe)> {
    vec![
        ("INIT", |h| h.sev_init_only(false)),
        ("INIT_EX", |h| {
            h.sev(&mut SevInitEx {
                length: 0x24,
                nv_address: NV,
                nv_len: 0x8000,
                ..Default::default()
            })
        }),
        ("SHUTDOWN", |h| h.cmd0(FwCmd::SHUTDOWN)),
        ("PLATFORM_RESET", |h| h.cmd0(FwCmd::PLATFORM_RESET)),
        ("PLATFORM_STATUS", |h| {
            h.sev(&mut SevPlatformStatus::default())
        }),
        ("GET_ID", |h| {
            h.sev(&mut SevGetId {
                address: OUT,
                len: 64,
            })
        }),
        ("DF_FLUSH", |h| h.cmd0(FwCmd::DF_FLUSH)),
        ("NOP", |h| h.cmd0(FwCmd::NOP)),
        ("PEK_GEN", |h| h.cmd0(FwCmd::PEK_GEN)),
        ("PEK_CERT_IMPORT", |h| {
            h.sev(&mut SevPekCertImport::default())
        }),
        ("PEK_CSR", |h| {
            h.sev(&mut SevPekCsr {
                address: OUT,
                len: 0x824,
            })
        }),
        ("PDH_GEN", |h| h.cmd0(FwCmd::PDH_GEN)),
        ("PDH_CERT_EXPORT", |h| {
            h.sev(&mut SevPdhCertExport {
                pdh_cert_address: OUT,
                pdh_cert_len: 0x824,
                reserved: 0,
                cert_chain_address: CHAIN,
                cert_chain_len: 0x186C,
            })
        }),
        ("LAUNCH_START", |h| h.sev_start(0, 0).map(|_| ())),
        ("GUEST_STATUS", |h| {
            h.sev(&mut SevGuestStatus {
                handle: G,
                ..Default::default()
            })
        }),
        ("ACTIVATE", |h| h.sev_activate(G, 2)),
        ("DEACTIVATE", |h| h.sev(&mut SevDeactivate { handle: G })),
        ("DECOMMISSION", |h| {
            h.sev(&mut SevDecommission { handle: G })
        }),
        ("LAUNCH_UPDATE_DATA", |h| h.sev_update(G, GMEM, 4096)),
        ("LAUNCH_UPDATE_VMSA", vmsa),
        ("LAUNCH_MEASURE", |h| h.sev_measure(G).map(|_| ())),
        ("LAUNCH_SECRET", secret),
        ("LAUNCH_FINISH", |h| h.sev_finish(G)),
        ("ATTESTATION", attestation),
        ("DBG_DECRYPT", dbg_decrypt),
        ("DBG_ENCRYPT", dbg_encrypt),
        ("SEND_START", send_start),
        ("SEND_UPDATE_DATA", |h| {
            h.sev_send_packet(G, GMEM, 4096, false).map(|_| ())
        }),
        ("SEND_UPDATE_VMSA", |h| {
            h.sev_send_packet(G, GMEM + 0x1000, 4096, true).map(|_| ())
        }),
        ("SEND_FINISH", |h| h.sev(&mut SevSendFinish { handle: G })),
        ("SEND_CANCEL", |h| h.sev(&mut SevSendCancel { handle: G })),
        ("RECEIVE_START", receive_start),
        // A zero header: its MAC fails once the state, ASID and lengths are right.
        ("RECEIVE_UPDATE_DATA", |h| {
            h.sev_receive_packet(
                G,
                GMEM,
                &<SevPacketHeader as zerocopy::FromZeros>::new_zeroed(),
                &[0; 4096],
                false,
            )
        }),
        ("RECEIVE_UPDATE_VMSA", |h| {
            h.sev_receive_packet(
                G,
                GMEM + 0x1000,
                &<SevPacketHeader as zerocopy::FromZeros>::new_zeroed(),
                &[0; 4096],
                true,
            )
        }),
        ("RECEIVE_FINISH", |h| {
            h.sev(&mut SevReceiveFinish { handle: G })
        }),
        ("SWAP_OUT", |h| {
            h.sev(&mut SevSwapOut {
                handle: G,
                flags: 0,
                src_paddr: GMEM,
                dst_paddr: OUT2,
                mdata_paddr: HDR,
                software_data: 7,
            })
        }),
        // Nothing was swapped out under this guest's OEK: the tag fails.
        ("SWAP_IN", |h| {
            h.sev(&mut SevSwapIn {
                handle: G,
                flags: 0,
                src_paddr: OUT2,
                dst_paddr: GMEM,
                mdata_paddr: HDR,
            })
        }),
        ("COPY (not modelled)", |h| h.cmd0(FwCmd::COPY)),
    ]
}

fn run_table<S: Copy + std::fmt::Debug, const N: usize>(
    scenarios: [S; N],
    build: impl Fn(S) -> Host,
    probes: &[(&'static str, Probe)],
    expected: &[(&str, [FwStatus; N])],
) {
    assert_eq!(probes.len(), expected.len());
    let mut mismatches = Vec::new();
    for ((name, probe), (ename, row)) in probes.iter().zip(expected) {
        assert_eq!(name, ename);
        for (sc, want) in scenarios.iter().zip(row) {
            let h = build(*sc);
            let got = status(probe(&h));
            if got != *want {
                mismatches.push(format!("{name} in {sc:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[derive(Clone, Copy, Debug)]
enum Plat {
    Uninit,
    Init,
    Working,
}

fn build_platform(p: Plat) -> Host {
    let h = sev_host();
    h.soc.host_write(Spa(GMEM), false, &[1; 0x2000]).unwrap();
    if matches!(p, Plat::Init | Plat::Working) {
        h.sev_init(false);
    }
    if matches!(p, Plat::Working) {
        assert_eq!(h.sev_start(0, 0), Ok(G));
        h.sev_activate(G, SEV_ASID).unwrap();
    }
    h
}

#[test]
fn platform_state_by_command_table() {
    use FwStatus as S;
    const OK: S = S::SUCCESS;
    const IPS: S = S::INVALID_PLATFORM_STATE;
    const IGS: S = S::INVALID_GUEST_STATE;
    const IC: S = S::INVALID_COMMAND;
    // Columns: UNINIT, INIT, WORKING (guest 1 in LUPDATE, active, policy 0).
    let expected: Vec<(&str, [S; 3])> = vec![
        ("INIT", [OK, IPS, IPS]),
        ("INIT_EX", [OK, IPS, IPS]),
        ("SHUTDOWN", [OK, OK, OK]),
        ("PLATFORM_RESET", [OK, IPS, IPS]),
        ("PLATFORM_STATUS", [OK; 3]),
        ("GET_ID", [OK; 3]),
        ("DF_FLUSH", [OK; 3]),
        ("NOP", [OK; 3]),
        ("PEK_GEN", [IPS, OK, IPS]),
        // Zero lengths reach the length check only in INIT.
        ("PEK_CERT_IMPORT", [IPS, S::INVALID_LENGTH, IPS]),
        ("PEK_CSR", [IPS, OK, OK]),
        ("PDH_GEN", [IPS, OK, OK]),
        ("PDH_CERT_EXPORT", [IPS, OK, OK]),
        ("LAUNCH_START", [IPS, OK, OK]),
        // An unknown handle is SUCCESS with state 0 (§0.2-10).
        ("GUEST_STATUS", [IPS, OK, OK]),
        ("ACTIVATE", [IPS, IPS, S::ACTIVE]),
        ("DEACTIVATE", [IPS, IPS, OK]),
        ("DECOMMISSION", [IPS, IPS, S::ACTIVE]),
        ("LAUNCH_UPDATE_DATA", [IPS, IPS, OK]),
        ("LAUNCH_UPDATE_VMSA", [IPS, IPS, S::UNSUPPORTED]),
        ("LAUNCH_MEASURE", [IPS, IPS, OK]),
        ("LAUNCH_SECRET", [IPS, IPS, IGS]),
        ("LAUNCH_FINISH", [IPS, IPS, IGS]),
        ("ATTESTATION", [IPS, IPS, IGS]),
        ("DBG_DECRYPT", [IPS, IPS, OK]),
        ("DBG_ENCRYPT", [IPS, IPS, OK]),
        ("SEND_START", [IPS, IPS, IGS]),
        ("SEND_UPDATE_DATA", [IPS, IPS, IGS]),
        ("SEND_UPDATE_VMSA", [IPS, IPS, IGS]),
        ("SEND_FINISH", [IPS, IPS, IGS]),
        ("SEND_CANCEL", [IPS, IPS, IGS]),
        // The probe's guest is SEV-ES; this platform was INIT without ES (§3.1 step 4).
        ("RECEIVE_START", [IPS, S::UNSUPPORTED, S::UNSUPPORTED]),
        ("RECEIVE_UPDATE_DATA", [IPS, IPS, IGS]),
        ("RECEIVE_UPDATE_VMSA", [IPS, IPS, IGS]),
        ("RECEIVE_FINISH", [IPS, IPS, IGS]),
        ("SWAP_OUT", [IPS, IPS, OK]),
        ("SWAP_IN", [IPS, IPS, S::BAD_MEASUREMENT]),
        ("COPY (not modelled)", [IC; 3]),
    ];
    run_table(
        [Plat::Uninit, Plat::Init, Plat::Working],
        build_platform,
        &commands(),
        &expected,
    );
}

#[derive(Clone, Copy, Debug)]
enum Guest {
    /// LUPDATE, no ASID.
    LupdateInactive,
    /// LUPDATE, ASID pending.
    Lupdate,
    /// After LAUNCH_MEASURE.
    Lsecret,
    /// After LAUNCH_FINISH.
    Running,
    /// After SEND_START (to this platform's own PDH).
    Supdate,
    /// Made by RECEIVE_START, ASID pending.
    Rupdate,
    /// After SEND_FINISH.
    Sent,
    /// Decommissioned (another guest keeps the platform WORKING).
    Gone,
}

fn build_guest(g: Guest) -> Host {
    let h = sev_host();
    h.sev_init(true);
    h.soc.host_write(Spa(GMEM), false, &[1; 0x2000]).unwrap();
    if matches!(g, Guest::Rupdate) {
        receive_start(&h).unwrap();
        h.sev_activate(G, ES_ASID).unwrap();
        return h;
    }
    // ES guest 1 (debugging allowed).
    assert_eq!(h.sev_start(0x4, 0), Ok(G));
    match g {
        Guest::LupdateInactive => {}
        Guest::Gone => {
            h.sev_start(0x4, 0).unwrap();
            h.sev(&mut SevDecommission { handle: G }).unwrap();
        }
        _ => {
            h.sev_activate(G, ES_ASID).unwrap();
            if !matches!(g, Guest::Lupdate) {
                h.sev_measure(G).unwrap();
            }
            if !matches!(g, Guest::Lupdate | Guest::Lsecret) {
                h.sev_finish(G).unwrap();
            }
            if matches!(g, Guest::Supdate | Guest::Sent) {
                send_start(&h).unwrap();
            }
            if matches!(g, Guest::Sent) {
                h.sev(&mut SevSendFinish { handle: G }).unwrap();
            }
        }
    }
    h
}

#[test]
fn guest_state_by_command_table() {
    use FwStatus as S;
    const OK: S = S::SUCCESS;
    const IG: S = S::INVALID_GUEST;
    const IGS: S = S::INVALID_GUEST_STATE;
    const INA: S = S::INACTIVE;
    const ACT: S = S::ACTIVE;
    let guest_cmds = [
        "LAUNCH_UPDATE_DATA",
        "LAUNCH_UPDATE_VMSA",
        "LAUNCH_MEASURE",
        "LAUNCH_SECRET",
        "LAUNCH_FINISH",
        "ATTESTATION",
        "ACTIVATE",
        "DEACTIVATE",
        "DECOMMISSION",
        "GUEST_STATUS",
        "DBG_DECRYPT",
        "DBG_ENCRYPT",
        "SEND_START",
        "SEND_UPDATE_DATA",
        "SEND_UPDATE_VMSA",
        "SEND_FINISH",
        "SEND_CANCEL",
        "RECEIVE_UPDATE_DATA",
        "RECEIVE_UPDATE_VMSA",
        "RECEIVE_FINISH",
        "SWAP_OUT",
        "SWAP_IN",
    ];
    let probes: Vec<_> = commands()
        .into_iter()
        .filter(|(n, _)| guest_cmds.contains(n))
        .collect();
    // Columns: LUPDATE inactive, LUPDATE, LSECRET, RUNNING, SUPDATE, RUPDATE, SENT,
    // decommissioned.
    let expected: Vec<(&str, [S; 8])> = vec![
        ("GUEST_STATUS", [OK; 8]),
        ("ACTIVATE", [OK, ACT, ACT, ACT, ACT, ACT, ACT, IG]),
        ("DEACTIVATE", [INA, OK, OK, OK, OK, OK, OK, IG]),
        ("DECOMMISSION", [OK, ACT, ACT, ACT, ACT, ACT, ACT, IG]),
        ("LAUNCH_UPDATE_DATA", [INA, OK, IGS, IGS, IGS, IGS, IGS, IG]),
        ("LAUNCH_UPDATE_VMSA", [INA, OK, IGS, IGS, IGS, IGS, IGS, IG]),
        // No ASID needed (§3.4).
        ("LAUNCH_MEASURE", [OK, OK, IGS, IGS, IGS, IGS, IGS, IG]),
        // The zero header fails its MAC once the state and ASID are right.
        (
            "LAUNCH_SECRET",
            [IGS, IGS, S::BAD_MEASUREMENT, IGS, IGS, IGS, IGS, IG],
        ),
        ("LAUNCH_FINISH", [IGS, IGS, OK, IGS, IGS, IGS, IGS, IG]),
        // LSECRET, RUNNING, SUPDATE, SENT (§0.2-10).
        ("ATTESTATION", [IGS, IGS, OK, OK, OK, IGS, OK, IG]),
        ("DBG_DECRYPT", [INA, OK, OK, OK, OK, OK, OK, IG]),
        ("DBG_ENCRYPT", [INA, OK, OK, OK, OK, OK, OK, IG]),
        ("SEND_START", [IGS, IGS, IGS, OK, IGS, IGS, IGS, IG]),
        ("SEND_UPDATE_DATA", [IGS, IGS, IGS, IGS, OK, IGS, IGS, IG]),
        // The page at GMEM + 4K is no VMSA of the guest: its integrity check fails.
        (
            "SEND_UPDATE_VMSA",
            [IGS, IGS, IGS, IGS, S::INVALID_PARAM, IGS, IGS, IG],
        ),
        ("SEND_FINISH", [IGS, IGS, IGS, IGS, OK, IGS, IGS, IG]),
        ("SEND_CANCEL", [IGS, IGS, IGS, IGS, OK, IGS, IGS, IG]),
        (
            "RECEIVE_UPDATE_DATA",
            [IGS, IGS, IGS, IGS, IGS, S::BAD_MEASUREMENT, IGS, IG],
        ),
        (
            "RECEIVE_UPDATE_VMSA",
            [IGS, IGS, IGS, IGS, IGS, S::BAD_MEASUREMENT, IGS, IG],
        ),
        ("RECEIVE_FINISH", [IGS, IGS, IGS, IGS, IGS, OK, IGS, IG]),
        // Any state with a bound ASID (§3.7).
        ("SWAP_OUT", [INA, OK, OK, OK, OK, OK, OK, IG]),
        (
            "SWAP_IN",
            [
                INA,
                S::BAD_MEASUREMENT,
                S::BAD_MEASUREMENT,
                S::BAD_MEASUREMENT,
                S::BAD_MEASUREMENT,
                S::BAD_MEASUREMENT,
                S::BAD_MEASUREMENT,
                IG,
            ],
        ),
    ];
    run_table(
        [
            Guest::LupdateInactive,
            Guest::Lupdate,
            Guest::Lsecret,
            Guest::Running,
            Guest::Supdate,
            Guest::Rupdate,
            Guest::Sent,
            Guest::Gone,
        ],
        build_guest,
        &probes,
        &expected,
    );
    // GUEST_STATUS reports each state's number (§3.7).
    for (g, state) in [
        (Guest::LupdateInactive, SevGuestState::LUPDATE),
        (Guest::Lupdate, SevGuestState::LUPDATE),
        (Guest::Lsecret, SevGuestState::LSECRET),
        (Guest::Running, SevGuestState::RUNNING),
        (Guest::Supdate, SevGuestState::SUPDATE),
        (Guest::Rupdate, SevGuestState::RUPDATE),
        (Guest::Sent, SevGuestState::SENT),
        (Guest::Gone, SevGuestState::INVALID),
    ] {
        assert_eq!(
            build_guest(g).sev_guest_status(G).state_id(),
            state,
            "{g:?}"
        );
    }
}
