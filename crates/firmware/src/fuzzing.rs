//! Test and fuzz machinery of the firmware, not part of its API (rustls keeps the
//! same under `#[doc(hidden)] pub mod internal`): the fuzz entry points the
//! `fuzz/fuzz_targets/*` and the corpus-replay tests call, and the guest's side of
//! the message channel that tests, benches and tools drive the firmware with.
//!
//! * [`fuzz_commands`]: the command dispatcher (`fuzz/fuzz_targets/fw_commands.rs`);
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
use zerocopy::IntoBytes;

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
