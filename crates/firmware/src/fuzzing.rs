//! Test and fuzz machinery of the firmware, not part of its API (rustls keeps the
//! same under `#[doc(hidden)] pub mod internal`): the fuzz entry points the
//! `fuzz/fuzz_targets/*` and the corpus-replay tests call, and the guest's side of
//! the message channel that tests, benches and tools drive the firmware with.
//!
//! * [`fuzz_commands`]: the command dispatcher (`fuzz/fuzz_targets/fw_commands.rs`);
//! * [`fuzz_sev_commands`]: the legacy SEV commands beside SNP (replayed from
//!   `tests/corpus/sev_commands` by `tests/firmware/sev_fuzz.rs`);
//! * [`fuzz_sev_receive`]: the migration target side, RECEIVE_START /
//!   RECEIVE_UPDATE_DATA / RECEIVE_UPDATE_VMSA / RECEIVE_FINISH with sealed and
//!   arbitrary packets (`fw_sev_receive.rs`, replayed from `tests/corpus/sev_receive`
//!   by `tests/firmware/sev_fuzz.rs`);
//! * [`fuzz_guest_request`]: the guest-message handler (`guest_msg.rs`);
//! * [`fuzz_cpuid_page`]: the CPUID page check (`cpuid_page.rs`);
//! * [`fuzz_cert_table`]: the GHCB certificate-table parser (`cert_table.rs`);
//! * [`GuestMsgClient`], [`seal_request`], [`open_response`]: seal requests and open
//!   responses as Linux's sev-guest driver does.
//!
//! [`fuzz_commands`]'s input drives a small platform through a sequence of host actions: firmware
//! commands with structured buffers whose addresses come from a handful of pages (so
//! they hit real states), raw buffers of arbitrary bytes, RMPUPDATEs, WBINVD. After
//! every step it checks invariants: a guest context exists only on a CONTEXT page, an
//! ASID the firmware calls clean has no live key, and no command panics.

pub use crate::cpuid::fuzz_cpuid_page;
pub use crate::guest_msg::client::{
    GuestClientError, GuestMsgClient, OpenedResponse, open_response, seal_request,
};
pub use crate::identity::table::fuzz_cert_table;

use crate::fw::Firmware;
use crate::guest_msg::{
    GuestMsgEnv, GuestMsgError, GuestMsgReply, GuestMsgState, ReportVersion, handle_guest_request,
};
use crate::identity::Chip;
use crate::state::{AsidState, GuestHandle};
use softsev_abi::fw_buf::*;
use softsev_abi::guest_msg::{HEADER_SIZE, MsgHeader, PAGE_SIZE, VMPCK_COUNT};
use softsev_abi::rmp::{PageState, RmpUpdateInput};
use softsev_abi::{FwCmd, Product, Spa, TcbVersion};
use softsev_crypto::guest_msg_aead;
use softsev_crypto::rng::Rng;
use softsev_soc::{KeySel, KeyState, Soc};
use std::sync::{Arc, OnceLock};
use zerocopy::{FromZeros, IntoBytes};

const CMD: u64 = 0x1000;
const PAGES: [u64; 8] = [
    0x2000, 0x3000, 0x10_0000, 0x10_1000, 0x40_0000, 0x40_1000, 0x60_0000, 0x80_0000,
];
const CMDS: [FwCmd; 22] = [
    FwCmd::SNP_INIT,
    FwCmd::SNP_INIT_EX,
    FwCmd::SNP_SHUTDOWN,
    FwCmd::SNP_SHUTDOWN_EX,
    FwCmd::SNP_PLATFORM_STATUS,
    FwCmd::SNP_DF_FLUSH,
    FwCmd::SNP_CONFIG,
    FwCmd::SNP_COMMIT,
    FwCmd::SNP_VLEK_LOAD,
    FwCmd::SNP_FEATURE_INFO,
    FwCmd::SNP_GCTX_CREATE,
    FwCmd::SNP_DECOMMISSION,
    FwCmd::SNP_ACTIVATE,
    FwCmd::SNP_GUEST_STATUS,
    FwCmd::SNP_LAUNCH_START,
    FwCmd::SNP_LAUNCH_UPDATE,
    FwCmd::SNP_LAUNCH_FINISH,
    FwCmd::SNP_DBG_DECRYPT,
    FwCmd::SNP_DBG_ENCRYPT,
    FwCmd::SNP_PAGE_RECLAIM,
    FwCmd::SNP_PAGE_UNSMASH,
    FwCmd::SNP_GUEST_REQUEST,
];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn page(&mut self) -> Option<u64> {
        let b = self.byte()?;
        let base = PAGES[(b & 7) as usize];
        // Occasionally misalign or flag the address.
        Some(match b >> 5 {
            7 => base | 8,
            6 => base | 1,
            _ => base,
        })
    }
    fn u64(&mut self) -> Option<u64> {
        let mut v = [0u8; 8];
        for x in v.iter_mut() {
            *x = self.byte()?;
        }
        Some(u64::from_le_bytes(v))
    }
}

fn chip() -> Arc<Chip> {
    static C: OnceLock<Arc<Chip>> = OnceLock::new();
    C.get_or_init(|| {
        Arc::new(Chip::from_seed(Product::Milan, b"fuzz").unwrap_or_else(|e| panic!("{e}")))
    })
    .clone()
}

/// Run one fuzz input; returns the commands that succeeded, in order. Panics only on an
/// invariant violation (a bug).
pub fn fuzz_commands(data: &[u8]) -> Vec<FwCmd> {
    let Ok(fw) = Firmware::builder(Product::Milan)
        .seed(b"fuzz")
        .soc_bytes(16 << 20)
        .asid_count(8)
        .chip(chip())
        .build()
    else {
        return Vec::new();
    };
    let soc = fw.soc().clone();
    let mut inp = Input(data);
    let mut ok = Vec::new();
    while let Some(op) = inp.byte() {
        let step = match op % 8 {
            0..=3 => structured(&fw, &mut inp, op / 8).map(|r| {
                if let Some(c) = r {
                    ok.push(c);
                }
            }),
            4 => raw(&fw, &soc, &mut inp),
            5 | 6 => rmpupdate(&soc, &mut inp),
            _ => {
                soc.wbinvd();
                Some(())
            }
        };
        if step.is_none() {
            break;
        }
        check_invariants(&fw, &soc);
    }
    ok
}

/// `None` when the input ran out; `Some(Some(cmd))` when `cmd` succeeded.
fn structured(fw: &Firmware, inp: &mut Input<'_>, sel: u8) -> Option<Option<FwCmd>> {
    let cmd = CMDS[(sel as usize) % CMDS.len()];
    let a = inp.page()?;
    let b = inp.page()?;
    let c = inp.page()?;
    let x = inp.byte()?;
    let buf: Vec<u8> = match cmd {
        FwCmd::SNP_INIT_EX => SnpInitEx {
            flags: u32::from(x & 3),
            reserved: 0,
            list_paddr: 0,
            reserved2: [0; 0x30],
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_SHUTDOWN_EX => SnpShutdownEx {
            length: 8,
            flags: u32::from(x & 3),
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_ACTIVATE => SnpActivate {
            gctx_paddr: a,
            asid: u32::from(x & 7),
            pad: 0,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_GUEST_STATUS => SnpGuestStatusCmd {
            gctx_paddr: a,
            status_paddr: b,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_LAUNCH_START => SnpLaunchStart {
            gctx_paddr: a,
            policy: 0x30000 | (u64::from(x & 0xF) << 16),
            ma_gctx_paddr: b,
            flags: u32::from(x >> 6),
            desired_tsc_freq: 0,
            gosvw: [x; 16],
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_LAUNCH_UPDATE => SnpLaunchUpdate {
            gctx_paddr: a,
            page_flags: u32::from(x & 0x1F),
            reserved: 0,
            page_paddr: b,
            vmpl_perms: u32::from(x) << 8,
            reserved2: 0,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_LAUNCH_FINISH => SnpLaunchFinish {
            gctx_paddr: a,
            id_block_paddr: b,
            id_auth_paddr: c,
            flags: u64::from(x & 7),
            host_data: [x; 32],
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_DBG_DECRYPT | FwCmd::SNP_DBG_ENCRYPT | FwCmd::SNP_GUEST_REQUEST => SnpDbg {
            gctx_paddr: a,
            src_paddr: b,
            dst_paddr: c,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_CONFIG => {
            let mut v = vec![0u8; SnpConfig::LEN];
            v[8] = x & 3;
            v
        }
        FwCmd::SNP_COMMIT => 4u32.to_le_bytes().to_vec(),
        FwCmd::SNP_FEATURE_INFO => SnpFeatureInfoCmd {
            length: 16,
            ecx_in: u32::from(x & 3),
            feature_info_paddr: a,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SNP_VLEK_LOAD => SnpVlekLoad {
            length: 16,
            vlek_wrapped_version: 0,
            reserved: [0; 3],
            vlek_wrapped_paddr: a,
        }
        .as_bytes()
        .to_vec(),
        _ => SnpPaddr { paddr: a }.as_bytes().to_vec(),
    };
    fw.soc().fw_write(Spa(CMD), KeySel::Plain, &buf).ok()?;
    Some(fw.command(cmd, Spa(CMD)).is_ok().then_some(cmd))
}

fn raw(fw: &Firmware, soc: &Soc, inp: &mut Input<'_>) -> Option<()> {
    let cmd = FwCmd(u32::from(inp.byte()?) | 0x80);
    let mut buf = [0u8; 0x40];
    for b in buf.iter_mut() {
        *b = inp.byte()?;
    }
    soc.fw_write(Spa(CMD), KeySel::Plain, &buf).ok()?;
    let _ = fw.command(cmd, Spa(CMD));
    // An arbitrary buffer address, too.
    let _ = fw.command(cmd, Spa(inp.u64()?));
    Some(())
}

fn rmpupdate(soc: &Soc, inp: &mut Input<'_>) -> Option<()> {
    let spa = inp.page()? & !0xFFF;
    let x = inp.byte()?;
    let _ = soc.rmpupdate(
        Spa(spa),
        &RmpUpdateInput {
            gpa: u64::from(x & 0x30) << 8,
            assigned: x & 1,
            pagesize: (x >> 6) & 1,
            immutable: (x >> 1) & 1,
            asid: u32::from((x >> 2) & 3) * u32::from(x & 1),
            ..Default::default()
        },
    );
    Some(())
}

fn check_invariants(fw: &Firmware, soc: &Soc) {
    let st = fw.state.lock();
    for h in st.guests.handles() {
        let GuestHandle::Snp(Spa(gctx)) = h else {
            continue;
        };
        let e = soc
            .fw_rmp_read(Spa(gctx))
            .unwrap_or_else(|e| panic!("context page {gctx:#x} unreadable: {e}"));
        assert_eq!(
            e.page_state(),
            PageState::CONTEXT,
            "guest context at {gctx:#x} but its page is not a CONTEXT page"
        );
    }
    for (asid, a) in st.asids.iter() {
        let asid = softsev_abi::Asid(asid);
        if a == AsidState::Clean {
            assert_ne!(
                soc.key_state(asid),
                Some(KeyState::Active),
                "ASID {} is clean for the firmware but has a live key",
                asid.0
            );
        }
    }
}

/// The legacy commands [`fuzz_sev_commands`] builds buffers for (index = op / 8).
const SEV_CMDS: [FwCmd; 32] = [
    FwCmd::INIT,
    FwCmd::INIT_EX,
    FwCmd::SHUTDOWN,
    FwCmd::PLATFORM_RESET,
    FwCmd::PLATFORM_STATUS,
    FwCmd::PEK_GEN,
    FwCmd::PEK_CSR,
    FwCmd::PEK_CERT_IMPORT,
    FwCmd::PDH_GEN,
    FwCmd::PDH_CERT_EXPORT,
    FwCmd::DF_FLUSH,
    FwCmd::GET_ID,
    FwCmd::NOP,
    FwCmd::DECOMMISSION,
    FwCmd::ACTIVATE,
    FwCmd::DEACTIVATE,
    FwCmd::GUEST_STATUS,
    FwCmd::LAUNCH_START,
    FwCmd::LAUNCH_UPDATE_DATA,
    FwCmd::LAUNCH_UPDATE_VMSA,
    FwCmd::LAUNCH_MEASURE,
    FwCmd::LAUNCH_UPDATE_SECRET,
    FwCmd::LAUNCH_FINISH,
    FwCmd::ATTESTATION,
    FwCmd::DBG_DECRYPT,
    FwCmd::DBG_ENCRYPT,
    FwCmd::SEND_START,
    FwCmd::SEND_UPDATE_DATA,
    FwCmd::SEND_FINISH,
    FwCmd::RECEIVE_START,
    FwCmd::RECEIVE_UPDATE_DATA,
    FwCmd::SWAP_OUT,
];
/// Lengths the legacy buffers draw from (the boundaries of sev-legacy.md §1–§6).
const SEV_LENS: [u32; 16] = [
    0, 16, 48, 52, 64, 0xD0, 0x824, 0x186C, 0x1000, 0x8000, 0x10_0000, 0x20_0000, 0x80, 0x3000,
    0x5000, 0x5010,
];
/// Policies LAUNCH_START draws from: none, NODBG, NOKS, ES, ES|NODBG, ES|NOKS, a reserved
/// bit, a newer API.
const SEV_POLICIES: [u32; 8] = [0, 1, 2, 4, 5, 6, 0x40, 0x00FF_0000];
/// The TMR and INIT_EX NV buffer the legacy fuzzer's INIT uses.
const SEV_TMR: u64 = 0xC0_0000;
const SEV_NV: u64 = 0xE0_0000;
/// The SWAP_OUT metadata entry of the legacy fuzzer (apart from [`PAGES`]).
const SEV_SWAP_MD: u64 = 0xA0_0000;

/// The platform both legacy fuzzers drive: a Milan with 8 ASIDs, 1..4 for SEV-ES/SNP
/// and 4..8 for plain SEV, 16 MiB of memory, the firmware RNG seeded with `seed`.
fn legacy_platform(seed: &[u8]) -> Option<Arc<Firmware>> {
    Firmware::builder(Product::Milan)
        .seed(seed)
        .soc_bytes(16 << 20)
        .asid_count(8)
        .chip(chip())
        .configure(|c| c.min_sev_asid = 4)
        .build()
        .ok()
}

/// Fuzz entry point for the legacy SEV API: the input drives a platform (ASIDs 1..4
/// ES/SNP, 4..8 plain SEV) through legacy commands with structured buffers (op % 8 in
/// 0..=4, command = op / 8), legacy command ids with raw buffers (5), WBINVD (6), and
/// SNP_INIT / SNP_SHUTDOWN / RMPUPDATE (7). After every step the invariants hold: the
/// platform is WORKING exactly when a legacy guest exists, a legacy guest's ASID is
/// Allocated while pending and InUse once active, no two guests share an ASID, a clean
/// ASID has no live key. Returns the commands that succeeded, in order.
pub fn fuzz_sev_commands(data: &[u8]) -> Vec<FwCmd> {
    let Some(fw) = legacy_platform(b"fuzz sev") else {
        return Vec::new();
    };
    let soc = fw.soc().clone();
    let mut inp = Input(data);
    let mut ok = Vec::new();
    while let Some(op) = inp.byte() {
        let step = match op % 8 {
            0..=4 => sev_structured(&fw, &mut inp, op / 8).map(|r| ok.extend(r)),
            5 => sev_raw(&fw, &soc, &mut inp),
            6 => {
                soc.wbinvd();
                Some(())
            }
            _ => inp.byte().and_then(|y| match y % 4 {
                0 => {
                    if fw.command(FwCmd::SNP_INIT, Spa(0)).is_ok() {
                        ok.push(FwCmd::SNP_INIT);
                    }
                    Some(())
                }
                1 => {
                    if fw.command(FwCmd::SNP_SHUTDOWN, Spa(0)).is_ok() {
                        ok.push(FwCmd::SNP_SHUTDOWN);
                    }
                    Some(())
                }
                _ => rmpupdate(&soc, &mut inp),
            }),
        };
        if step.is_none() {
            break;
        }
        check_invariants(&fw, &soc);
        check_sev_invariants(&fw);
    }
    ok
}

/// `None` when the input ran out; `Some(Some(cmd))` when `cmd` succeeded.
fn sev_structured(fw: &Firmware, inp: &mut Input<'_>, sel: u8) -> Option<Option<FwCmd>> {
    use softsev_abi::sev_buf::*;
    let cmd = SEV_CMDS[(sel as usize) % SEV_CMDS.len()];
    let a = inp.page()?;
    let b = inp.page()?;
    let handle = u32::from(inp.byte()? % 4);
    let x = inp.byte()?;
    let len = SEV_LENS[(inp.byte()? & 15) as usize];
    let buf: Vec<u8> = match cmd {
        FwCmd::INIT => SevInit {
            flags: u32::from(x & 3),
            reserved: 0,
            tmr_address: if x & 4 != 0 { a } else { SEV_TMR },
            tmr_len: len,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::INIT_EX => SevInitEx {
            length: if x & 8 != 0 { len } else { 0x24 },
            flags: u32::from(x & 1),
            tmr_address: SEV_TMR,
            tmr_len: 0x10_0000,
            reserved: 0,
            nv_address: if x & 2 != 0 { a } else { SEV_NV },
            nv_len: 0x8000,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::PEK_CSR | FwCmd::GET_ID => SevGetId { address: a, len }.as_bytes().to_vec(),
        FwCmd::PEK_CERT_IMPORT => SevPekCertImport {
            pek_cert_address: a,
            pek_cert_len: len,
            reserved: 0,
            oca_cert_address: b,
            oca_cert_len: 0x824,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::PDH_CERT_EXPORT => SevPdhCertExport {
            pdh_cert_address: a,
            pdh_cert_len: if x & 1 != 0 { len } else { 0x824 },
            reserved: 0,
            cert_chain_address: b,
            cert_chain_len: if x & 2 != 0 { len } else { 0x186C },
        }
        .as_bytes()
        .to_vec(),
        FwCmd::ACTIVATE => SevActivate {
            handle,
            asid: u32::from(x % 8),
        }
        .as_bytes()
        .to_vec(),
        FwCmd::LAUNCH_START => {
            let session = x & 0x80 != 0;
            SevLaunchStart {
                handle: u32::from((x >> 4) % 4),
                policy: SEV_POLICIES[(x & 7) as usize],
                dh_cert_address: if session { a } else { 0 },
                dh_cert_len: 0x824,
                reserved: 0,
                session_address: b,
                session_len: 128,
            }
            .as_bytes()
            .to_vec()
        }
        FwCmd::LAUNCH_UPDATE_DATA | FwCmd::LAUNCH_UPDATE_VMSA | FwCmd::LAUNCH_MEASURE => {
            SevLaunchMeasure {
                handle,
                reserved: 0,
                address: a,
                len,
            }
            .as_bytes()
            .to_vec()
        }
        FwCmd::LAUNCH_UPDATE_SECRET => SevLaunchSecret {
            handle,
            hdr_address: a,
            hdr_len: 52,
            guest_address: b,
            guest_len: len,
            trans_address: a + 0x100,
            trans_len: len,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
        FwCmd::ATTESTATION => SevAttestation {
            handle,
            reserved: 0,
            address: a,
            mnonce: [x; 16],
            len,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::DBG_DECRYPT | FwCmd::DBG_ENCRYPT => SevDbgDecrypt {
            handle,
            reserved: 0,
            src_addr: a,
            dst_addr: b,
            len,
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SEND_UPDATE_DATA | FwCmd::RECEIVE_UPDATE_DATA => SevSendUpdateData {
            handle,
            hdr_address: a,
            hdr_len: if x & 1 != 0 { len } else { 52 },
            guest_address: b,
            guest_len: len,
            trans_address: a + 0x100,
            trans_len: len,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
        FwCmd::RECEIVE_START => SevReceiveStart {
            handle: u32::from((x >> 4) % 4),
            policy: SEV_POLICIES[(x & 7) as usize],
            pdh_cert_address: a,
            pdh_cert_len: 0x824,
            reserved1: 0,
            session_address: b,
            session_len: if x & 8 != 0 { len } else { 128 },
        }
        .as_bytes()
        .to_vec(),
        FwCmd::SWAP_OUT => SevSwapOut {
            handle,
            flags: u32::from(x & 0xF),
            src_paddr: a,
            dst_paddr: b,
            mdata_paddr: SEV_SWAP_MD,
            software_data: u64::from(x),
        }
        .as_bytes()
        .to_vec(),
        // PLATFORM_STATUS's buffer is output only; the handle-only commands and
        // SEND_START (whose zero session length is its length query) get a handle.
        _ => SevGuestStatus {
            handle,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
    };
    fw.soc().fw_write(Spa(CMD), KeySel::Plain, &buf).ok()?;
    Some(fw.command(cmd, Spa(CMD)).is_ok().then_some(cmd))
}

/// A legacy command id (0x00..0x7F) with an arbitrary 0x40-byte buffer.
fn sev_raw(fw: &Firmware, soc: &Soc, inp: &mut Input<'_>) -> Option<()> {
    let cmd = FwCmd(u32::from(inp.byte()? & 0x7F));
    let mut buf = [0u8; 0x40];
    for b in buf.iter_mut() {
        *b = inp.byte()?;
    }
    soc.fw_write(Spa(CMD), KeySel::Plain, &buf).ok()?;
    let _ = fw.command(cmd, Spa(CMD));
    Some(())
}

fn check_sev_invariants(fw: &Firmware) {
    use crate::sev_ctx::SevBinding;
    use crate::state::SevPlatformState;
    let st = fw.state.lock();
    let sev = &st.sev;
    match sev.platform {
        SevPlatformState::Uninit => assert!(sev.guests.is_empty(), "guests in UNINIT"),
        SevPlatformState::Init => assert!(sev.guests.is_empty(), "guests in INIT"),
        SevPlatformState::Working => assert!(!sev.guests.is_empty(), "WORKING without guests"),
    }
    assert_eq!(
        sev.identity.is_some(),
        sev.platform != SevPlatformState::Uninit
    );
    let mut seen = std::collections::BTreeSet::new();
    for (h, g) in &sev.guests {
        assert!(sev.handles.is_allocated(*h), "guest {h:?} has no handle");
        let (asid, want) = match g.binding {
            SevBinding::None => continue,
            SevBinding::Pending(a) => (a, AsidState::Allocated),
            SevBinding::Active(a) => (a, AsidState::InUse),
        };
        assert_eq!(st.asids.get(asid), Some(want), "ASID {asid} of {h:?}");
        assert!(seen.insert(asid), "ASID {asid} bound twice");
    }
}

/// The transport keys the receive fuzzer's stand-in source puts into its sessions.
const RX_TEK: [u8; 16] = [0x11; 16];
const RX_TIK: [u8; 16] = [0x22; 16];
/// Policies RECEIVE_START draws from: none, ES, NOKS, ES|NOKS, NOSEND, a reserved bit,
/// a newer API, DOMAIN|SEV.
const RX_POLICIES: [u32; 8] = [0, 4, 2, 6, 8, 0x40, 0x00FF_0000, 0x30];
/// Packet lengths: the §5.5 boundaries.
const RX_LENS: [u32; 8] = [0, 16, 32, 0x1000, 0x1010, 0x5000, 0x5010, 24];
/// Where the receive fuzzer's buffers live: header, transport, session, source PDH.
const RX_HDR: u64 = 0x2000;
const RX_TRANS: u64 = 0x10_0000;
const RX_SESSION: u64 = 0x3000;
const RX_PDH: u64 = 0x10_8000;

/// Fuzz entry point for the migration target (sev-legacy.md §5.5): an ES-initialised
/// platform receives from a stand-in source whose sessions carry known TEK/TIK, so
/// the input reaches every check of RECEIVE_UPDATE_* — through correctly sealed
/// packets (plaintext, length and an optional bit flip from the input), arbitrary
/// headers and lengths, RECEIVE_START with valid or damaged sessions and key sharing,
/// ACTIVATE / DEACTIVATE / DECOMMISSION / RECEIVE_FINISH, and raw buffers for
/// 0x50..0x53. The legacy invariants are checked after every step (as
/// [`fuzz_sev_commands`]). Returns the commands that succeeded, in order.
pub fn fuzz_sev_receive(data: &[u8]) -> Vec<FwCmd> {
    use softsev_abi::sev_buf::*;
    let Some(fw) = legacy_platform(b"fuzz sev receive") else {
        return Vec::new();
    };
    let soc = fw.soc().clone();
    let call = |cmd: FwCmd, buf: &[u8]| -> bool {
        soc.fw_write(Spa(CMD), KeySel::Plain, buf).is_ok() && fw.command(cmd, Spa(CMD)).is_ok()
    };
    let init = SevInit {
        flags: 1,
        reserved: 0,
        tmr_address: SEV_TMR,
        tmr_len: 0x10_0000,
    };
    if !call(FwCmd::INIT, init.as_bytes()) {
        return Vec::new();
    }
    soc.wbinvd();
    let _ = fw.command(FwCmd::DF_FLUSH, Spa(CMD));
    let export = SevPdhCertExport {
        pdh_cert_address: 0x4000,
        pdh_cert_len: 0x824,
        reserved: 0,
        cert_chain_address: 0x10_2000,
        cert_chain_len: 0x186C,
    };
    if !call(FwCmd::PDH_CERT_EXPORT, export.as_bytes()) {
        return Vec::new();
    }
    let mut pdh = softsev_abi::sev_cert::SevCert::new_zeroed();
    if soc
        .fw_read(Spa(0x4000), KeySel::Plain, pdh.as_mut_bytes())
        .is_err()
    {
        return Vec::new();
    }
    // The stand-in source: a fixed P-384 key and sessions to this platform's PDH.
    let Ok(src) = softsev_crypto::sev::EcdhP384::from_scalar_be(&[0x5A; 48]) else {
        return Vec::new();
    };
    let (x, y) = src.public_xy_be();
    let src_pdh = softsev_abi::sev_cert::SevCert::new_ecc(
        softsev_abi::sev_cert::SevUsage::PDH,
        softsev_abi::sev_cert::SevAlgo::ECDH_SHA256,
        0,
        0,
        &x,
        &y,
    );
    let Some(p) = pdh.ecc_pubkey() else {
        return Vec::new();
    };
    let Ok(z) = src.shared_x_be(&p.x, &p.y) else {
        return Vec::new();
    };
    let session_for = |policy: u32, nonce: u8| {
        let nonce = [nonce; 16];
        let wrap_iv = [0x33; 16];
        let s = softsev_crypto::sev::derive_session_secrets(&z, &nonce);
        let (wrap_tk, wrap_mac) =
            softsev_crypto::sev::wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &RX_TEK, &RX_TIK);
        SevSession {
            nonce,
            wrap_tk,
            wrap_iv,
            wrap_mac,
            policy_mac: softsev_crypto::sev::policy_mac(&RX_TIK, policy),
        }
    };
    let mut inp = Input(data);
    let mut ok = Vec::new();
    let issue = |cmd: FwCmd, buf: &[u8], ok: &mut Vec<FwCmd>| {
        if call(cmd, buf) {
            ok.push(cmd);
        }
    };
    while let Some(op) = inp.byte() {
        let Some(x) = inp.byte() else { break };
        let handle = u32::from(x & 3);
        let step: Option<()> = (|| {
            match op % 6 {
                0 => {
                    let policy = RX_POLICIES[(x >> 2 & 7) as usize];
                    let mut session = session_for(policy, inp.byte()?);
                    let damage = inp.byte()?;
                    if damage & 0x80 != 0 {
                        session.as_mut_bytes()[(damage & 0x7F) as usize] ^= 1;
                    }
                    // Occasionally the caller names another policy than the MAC's.
                    let given = if x & 0x20 != 0 { policy ^ 1 } else { policy };
                    soc.fw_write(Spa(RX_SESSION), KeySel::Plain, session.as_bytes())
                        .ok()?;
                    soc.fw_write(Spa(RX_PDH), KeySel::Plain, src_pdh.as_bytes())
                        .ok()?;
                    let b = SevReceiveStart {
                        handle: u32::from(x >> 6),
                        policy: given,
                        pdh_cert_address: RX_PDH,
                        pdh_cert_len: if damage & 0x40 != 0 { 0x800 } else { 0x824 },
                        reserved1: 0,
                        session_address: RX_SESSION,
                        session_len: 128,
                    };
                    issue(FwCmd::RECEIVE_START, b.as_bytes(), &mut ok);
                }
                1 => {
                    let b = SevActivate {
                        handle,
                        asid: u32::from(x >> 2) % 8,
                    };
                    issue(FwCmd::ACTIVATE, b.as_bytes(), &mut ok);
                }
                2 | 3 => {
                    let vmsa = x & 4 != 0;
                    let len = if vmsa && op % 6 == 2 {
                        0x1000
                    } else {
                        RX_LENS[(x >> 3 & 7) as usize]
                    };
                    let fill = inp.byte()?;
                    let flip = inp.byte()?;
                    let mut plain: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                    let iv = [fill; 16];
                    let mut hdr = SevPacketHeader {
                        flags: 0,
                        iv,
                        mac: [0; 32],
                    };
                    if op % 6 == 2 {
                        softsev_crypto::sev::aes128_ctr(&RX_TEK, &iv, &mut plain);
                        hdr.mac = softsev_crypto::sev::transport_packet_mac(
                            &RX_TIK, 0, &iv, len, len, &plain,
                        );
                        if flip & 0x80 != 0 && !plain.is_empty() {
                            let i = usize::from(flip & 0x7F) % plain.len();
                            plain[i] ^= 1;
                        }
                    } else {
                        hdr.flags = u32::from(flip & 1);
                        for m in hdr.mac.iter_mut() {
                            *m = inp.byte()?;
                        }
                    }
                    soc.fw_write(Spa(RX_HDR), KeySel::Plain, hdr.as_bytes())
                        .ok()?;
                    soc.fw_write(Spa(RX_TRANS), KeySel::Plain, &plain).ok()?;
                    let dst = inp.page()?;
                    let b = SevReceiveUpdateData {
                        handle,
                        reserved1: 0,
                        hdr_address: RX_HDR,
                        hdr_len: if flip & 0x40 != 0 { 16 } else { 52 },
                        reserved2: 0,
                        guest_address: dst | (u64::from(flip & 0x20) << 46),
                        guest_len: len,
                        reserved3: 0,
                        trans_address: RX_TRANS,
                        trans_len: if flip & 0x10 != 0 { len + 16 } else { len },
                    };
                    let cmd = if vmsa {
                        FwCmd::RECEIVE_UPDATE_VMSA
                    } else {
                        FwCmd::RECEIVE_UPDATE_DATA
                    };
                    issue(cmd, b.as_bytes(), &mut ok);
                }
                4 => {
                    let cmd = [
                        FwCmd::RECEIVE_FINISH,
                        FwCmd::DEACTIVATE,
                        FwCmd::DECOMMISSION,
                        FwCmd::GUEST_STATUS,
                    ][(x >> 2 & 3) as usize];
                    let b = SevGuestStatus {
                        handle,
                        ..Default::default()
                    };
                    issue(cmd, b.as_bytes(), &mut ok);
                }
                _ => {
                    let cmd = FwCmd(0x50 + u32::from(x & 3));
                    let mut buf = [0u8; 0x40];
                    for b in buf.iter_mut() {
                        *b = inp.byte()?;
                    }
                    issue(cmd, &buf, &mut ok);
                }
            }
            Some(())
        })();
        if step.is_none() {
            break;
        }
        check_invariants(&fw, &soc);
        check_sev_invariants(&fw);
    }
    ok
}

/// Fuzz entry point: run arbitrary bytes through the handler as a request page, then
/// seal the input's payload properly with the VMPCK its header names so the fuzzer
/// reaches the payload handlers. Byte 0 (inside AUTHTAG) also selects environment
/// flags: masks, VCEK disabled, launch keys, report v5, a chip with a VLEK loaded.
/// Returns the result of each attempt. Never panics (that is the property checked).
pub fn fuzz_guest_request(data: &[u8]) -> Vec<Result<GuestMsgReply, GuestMsgError>> {
    use std::sync::OnceLock;
    static CHIPS: OnceLock<Option<(Chip, Chip)>> = OnceLock::new();
    let tcb = TcbVersion {
        fmc: 0,
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 0xdb,
    };
    let Some((plain_chip, vlek_chip)) = CHIPS
        .get_or_init(|| {
            let product = softsev_abi::Product::Milan;
            let a = Chip::from_seed(product, b"fuzz guest_msg").ok()?;
            let b = Chip::from_seed(product, b"fuzz guest_msg vlek").ok()?;
            let mut rng = Rng::seeded(b"fuzz", "vlek");
            let w = b.provision_vlek(&mut rng, &tcb, "fuzz-csp").ok()?;
            b.load_vlek(&w).ok()?;
            Some((a, b))
        })
        .as_ref()
    else {
        return Vec::new();
    };
    let flags = data.first().copied().unwrap_or(0);
    let chip = if flags & 64 != 0 {
        vlek_chip
    } else {
        plain_chip
    };
    let vmrk = [9u8; 32];
    let mut env = GuestMsgEnv::new(chip, &vmrk);
    env.current_tcb = tcb;
    env.reported_tcb = tcb;
    env.committed_tcb = tcb;
    env.launch_mit_vector = 0x3f;
    env.mask_chip_id = flags & 1 != 0;
    env.mask_chip_key = flags & 2 != 0;
    let launch = env.launch_mut();
    launch.launch_tcb = tcb;
    launch.guest_svn = 3;
    launch.desired_tsc_freq_khz = 2_000_000;
    launch.vcek_disabled = flags & 4 != 0;
    launch.author_key_en = flags & 8 != 0;
    launch.id_block_en = flags & 16 != 0;
    if flags & 32 != 0 {
        env.report_version = ReportVersion::V5;
    }
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]];
    let mut state = GuestMsgState::from_keys(&keys);
    let mut page = vec![0u8; PAGE_SIZE];
    let n = data.len().min(PAGE_SIZE);
    page[..n].copy_from_slice(&data[..n]);
    let mut rsp = vec![0u8; PAGE_SIZE];
    let mut results = Vec::with_capacity(2);
    // Raw: whatever the bytes are (also a short request, as given).
    results.push(handle_guest_request(
        &mut state,
        &env,
        data.get(..n).unwrap_or(&[]),
        &mut rsp,
    ));
    // Sealed: type, version, VMPCK and payload from the input, a valid tag and seqno.
    let Some(hdr) = MsgHeader::read(&page) else {
        return results;
    };
    let vmpck = hdr.msg_vmpck % VMPCK_COUNT;
    let payload_len = usize::from(hdr.msg_size).min(PAGE_SIZE - HEADER_SIZE);
    let payload = page
        .get(HEADER_SIZE..HEADER_SIZE + payload_len)
        .unwrap_or(&[]);
    let seqno = state.msg_count(vmpck).unwrap_or(0).saturating_add(1);
    let Some(key) = keys.get(usize::from(vmpck)) else {
        return results;
    };
    // Keep the input's header oddities (sizes, versions, algorithm) but make the
    // sequence number and VMPCK index valid, then seal.
    let mut h = hdr;
    h.msg_seqno = seqno;
    h.msg_vmpck = vmpck;
    let mut sealed = Vec::with_capacity(HEADER_SIZE + payload.len());
    sealed.extend_from_slice(h.as_bytes());
    sealed.extend_from_slice(payload);
    if guest_msg_aead::seal(key, &mut sealed).is_err() {
        return results;
    }
    let before = state.msg_count(vmpck);
    let r = handle_guest_request(&mut state, &env, &sealed, &mut rsp);
    match &r {
        Ok(reply) => {
            let opened = open_response(key, &rsp);
            assert!(opened.is_ok(), "the firmware's response does not open");
            if let Ok(o) = opened {
                assert_eq!(reply.response_len, HEADER_SIZE + o.payload.len());
                assert_eq!(o.header.msg_seqno, seqno + 1);
            }
            assert_eq!(state.msg_count(vmpck), before.map(|c| c + 2));
        }
        Err(_) => assert_eq!(state.msg_count(vmpck), before, "counter moved on failure"),
    }
    results.push(r);
    results
}
