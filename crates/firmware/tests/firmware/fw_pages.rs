//! PAGE_RECLAIM, PAGE_UNSMASH, DBG_DECRYPT / DBG_ENCRYPT.
use crate::fwcommon::*;
use softsev_abi::fw_buf::*;
use softsev_abi::rmp::PageState;
use softsev_abi::{FwCmd, FwStatus, GuestPolicy, Spa};

const POLICY: u64 = 0x30000;
const DEBUG: u64 = POLICY | GuestPolicy::DEBUG;

fn reclaim(h: &Host, paddr: u64) -> FwStatus {
    status(h.cmd(FwCmd::SNP_PAGE_RECLAIM, &SnpPaddr { paddr }))
}

fn state(h: &Host, spa: u64) -> PageState {
    h.soc.fw_rmp_read(Spa(spa)).unwrap().page_state()
}

#[test]
fn reclaim_moves_firmware_and_pre_guest_pages_to_mutable_states() {
    let h = Host::new();
    h.init();
    // Firmware → reclaim → hypervisor.
    h.fw_page(OUT);
    assert_eq!(reclaim(&h, OUT), FwStatus::SUCCESS);
    assert_eq!(state(&h, OUT), PageState::RECLAIM);
    h.hv_page(OUT);
    assert_eq!(state(&h, OUT), PageState::HYPERVISOR);
    // Already mutable: success, nothing changes.
    assert_eq!(reclaim(&h, OUT), FwStatus::SUCCESS);
    assert_eq!(state(&h, OUT), PageState::HYPERVISOR);
    // Pre-guest → guest-invalid (what KVM does after a failed LAUNCH_UPDATE).
    h.rmpupdate(GUEST_BASE, true, 3, 0x1000, true, false);
    assert_eq!(reclaim(&h, GUEST_BASE), FwStatus::SUCCESS);
    assert_eq!(state(&h, GUEST_BASE), PageState::GUEST_INVALID);
    // Context pages cannot be reclaimed while they are contexts.
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    assert_eq!(reclaim(&h, GCTX), FwStatus::INVALID_PAGE_STATE);
    // Size and reserved bits.
    h.rmpupdate(0x80_0000, true, 0, 0, true, true);
    assert_eq!(reclaim(&h, 0x80_0000), FwStatus::INVALID_PAGE_SIZE);
    assert_eq!(reclaim(&h, 0x80_0000 | 2), FwStatus::INVALID_PARAM);
    assert_eq!(reclaim(&h, 0x80_1000 | 1), FwStatus::INVALID_PAGE_SIZE);
    assert_eq!(reclaim(&h, 0x80_0000 | 1), FwStatus::SUCCESS);
    assert_eq!(state(&h, 0x80_0000), PageState::RECLAIM);
    assert_eq!(reclaim(&h, 1 << 40), FwStatus::INVALID_ADDRESS);
}

#[test]
fn reclaim_needs_init() {
    let h = Host::new();
    assert_eq!(reclaim(&h, OUT), FwStatus::INVALID_PLATFORM_STATE);
}

#[test]
fn unsmash_joins_512_identical_pre_guest_pages() {
    let h = Host::new();
    h.init();
    let base = 0x80_0000u64;
    for i in 0..512u64 {
        // Page 5 out of line.
        let gpa = if i == 5 {
            0x30_0000
        } else {
            0x20_0000 + i * 0x1000
        };
        h.rmpupdate(base + i * 0x1000, true, 3, gpa, true, false);
    }
    let unsmash = |p: u64| status(h.cmd(FwCmd::SNP_PAGE_UNSMASH, &SnpPaddr { paddr: p }));
    assert_eq!(unsmash(base + 0x1000), FwStatus::INVALID_PARAM);
    assert_eq!(unsmash(base), FwStatus::INVALID_PAGE_STATE);
    // Reclaim it (pre-guest → guest-invalid), then put it in line.
    assert_eq!(reclaim(&h, base + 0x5000), FwStatus::SUCCESS);
    h.rmpupdate(base + 0x5000, true, 3, 0x20_5000, true, false);
    assert_eq!(unsmash(base), FwStatus::SUCCESS);
    let head = h.soc.fw_rmp_read(Spa(base)).unwrap();
    assert!(head.is_2m());
    assert_eq!((head.asid(), head.gpa()), (3, 0x20_0000));
    assert!(!h.soc.fw_rmp_read(Spa(base + 0x1000)).unwrap().assigned());
    // Mutable pages (guest-valid) cannot be unsmashed.
    let b2 = 0xA0_0000u64;
    for i in 0..512u64 {
        h.rmpupdate(
            b2 + i * 0x1000,
            true,
            3,
            0x40_0000 + i * 0x1000,
            false,
            false,
        );
    }
    assert_eq!(unsmash(b2), FwStatus::INVALID_PAGE_STATE);
}

fn dbg(h: &Host, encrypt: bool, src: u64, dst: u64) -> FwStatus {
    let cmd = if encrypt {
        FwCmd::SNP_DBG_ENCRYPT
    } else {
        FwCmd::SNP_DBG_DECRYPT
    };
    status(h.cmd(
        cmd,
        &SnpDbg {
            gctx_paddr: GCTX,
            src_paddr: src,
            dst_paddr: dst,
        },
    ))
}

#[test]
fn debug_decrypt_only_with_debug_policy() {
    for (policy, expect) in [
        (POLICY, FwStatus::POLICY_FAILURE),
        (DEBUG, FwStatus::SUCCESS),
    ] {
        let h = Host::new();
        h.started_guest(policy);
        let secret: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        h.load_page(GCTX, GUEST_BASE, 0, 1, &secret).unwrap();
        h.launch_finish(GCTX, 0, [0; 32]).unwrap();
        h.fw_page(OUT);
        assert_eq!(dbg(&h, false, GUEST_BASE, OUT), expect);
        if expect == FwStatus::SUCCESS {
            let mut out = vec![0u8; 4096];
            h.soc.host_read(Spa(OUT), false, &mut out).unwrap();
            assert_eq!(out, secret);
        }
    }
}

#[test]
fn debug_state_checks() {
    let h = Host::new();
    h.started_guest(DEBUG);
    h.load_page(GCTX, GUEST_BASE, 0, 1, &[1; 4096]).unwrap();
    // Destination must be a firmware page.
    assert_eq!(
        dbg(&h, false, GUEST_BASE, OUT),
        FwStatus::INVALID_PAGE_STATE
    );
    h.fw_page(OUT);
    // Source must be a guest page.
    assert_eq!(dbg(&h, false, OUT, OUT), FwStatus::INVALID_PAGE_STATE);
    // Another guest's page.
    h.rmpupdate(GUEST_BASE + 0x1000, true, 3, 0x1000, false, false);
    assert_eq!(
        dbg(&h, false, GUEST_BASE + 0x1000, OUT),
        FwStatus::INVALID_PAGE_OWNER
    );
    assert_eq!(dbg(&h, false, GUEST_BASE + 8, OUT), FwStatus::INVALID_PARAM);
    // Encrypt goes into pre-guest pages only.
    assert_eq!(dbg(&h, true, OUT, GUEST_BASE), FwStatus::INVALID_PAGE_STATE);
    let staging = GUEST_BASE + 0x2000;
    h.rmpupdate(staging, true, ASID, 0x2000, true, false);
    h.soc
        .host_write(Spa(OUT), false, &[0x77; 4096])
        .unwrap_err(); // a firmware page
    let src = 0x3000;
    h.soc.host_write(Spa(src), false, &[0x77; 4096]).unwrap();
    assert_eq!(dbg(&h, true, src, staging), FwStatus::SUCCESS);
    assert_eq!(dbg(&h, false, staging, OUT), FwStatus::SUCCESS);
    let mut out = vec![0u8; 4096];
    h.soc.host_read(Spa(OUT), false, &mut out).unwrap();
    assert_eq!(out, vec![0x77; 4096]);
}
