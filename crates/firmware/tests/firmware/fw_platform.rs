//! Platform commands: INIT/SHUTDOWN, PLATFORM_STATUS, DF_FLUSH, CONFIG, COMMIT, TCB
//! updates, FEATURE_INFO.
use crate::fwcommon::*;
use softsev_abi::fw_buf::*;
use softsev_abi::{FwCmd, FwStatus, Product, RawTcb, Spa, TcbVersion};
use softsev_firmware::{AsidState, FirmwareImage, FwVersion, PlatformState};

#[test]
fn init_status_and_shutdown() {
    let h = Host::new();
    let s = h.platform_status();
    assert_eq!(s.state, 0);
    assert_eq!(s.is_rmp_init, 0);
    assert_eq!((s.api_major, s.api_minor, s.build_id), (1, 55, 21));
    h.cmd0(FwCmd::SNP_INIT).unwrap();
    assert_eq!(h.fw.platform_state(), PlatformState::Init);
    assert_eq!(
        status(h.cmd0(FwCmd::SNP_INIT)),
        FwStatus::INVALID_PLATFORM_STATE
    );
    // After INIT the status page must be a firmware page.
    assert_eq!(
        status(h.cmd(FwCmd::SNP_PLATFORM_STATUS, &SnpPaddr { paddr: OUT })),
        FwStatus::INVALID_PAGE_STATE
    );
    h.fw_page(OUT);
    let s = h.platform_status();
    assert_eq!((s.state, s.is_rmp_init), (1, 1));
    assert_eq!(
        s.flags & SnpPlatformStatus::FEATURE_INFO,
        SnpPlatformStatus::FEATURE_INFO
    );
    let tcb = TcbVersion::decode(RawTcb::from_u64(s.current_tcb), Product::Milan).unwrap();
    assert_eq!(tcb, h.fw.config().image.tcb);
    assert_eq!(s.reported_tcb, s.current_tcb);
    // Status crossing a page end.
    assert_eq!(
        status(h.cmd(FwCmd::SNP_PLATFORM_STATUS, &SnpPaddr { paddr: OUT + 0xFF0 })),
        FwStatus::INVALID_PARAM
    );
    // Every ASID is dirty after INIT: SHUTDOWN and ACTIVATE need a flush, which needs WBINVD.
    assert_eq!(h.fw.asid_state(1), Some(AsidState::Dirty));
    assert_eq!(
        status(h.cmd0(FwCmd::SNP_SHUTDOWN)),
        FwStatus::DFFLUSH_REQUIRED
    );
    assert_eq!(
        status(h.cmd0(FwCmd::SNP_DF_FLUSH)),
        FwStatus::WBINVD_REQUIRED
    );
    h.soc.wbinvd();
    h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    assert_eq!(h.fw.asid_state(1), Some(AsidState::Clean));
    h.cmd0(FwCmd::SNP_SHUTDOWN).unwrap();
    assert_eq!(h.fw.platform_state(), PlatformState::Uninit);
    // SHUTDOWN in UNINIT succeeds without doing anything.
    h.cmd0(FwCmd::SNP_SHUTDOWN).unwrap();
}

#[test]
fn init_ex_rmp_rules() {
    let h = Host::new();
    let ex = |flags: u32| SnpInitEx {
        flags,
        reserved: 0,
        list_paddr: 0,
        reserved2: [0; 0x30],
    };
    // RMP never initialised: INIT_EX without INIT_RMP fails.
    assert_eq!(
        status(h.cmd(FwCmd::SNP_INIT_EX, &ex(0))),
        FwStatus::RMP_INIT_REQUIRED
    );
    let mut bad = ex(1);
    bad.reserved2[7] = 1;
    assert_eq!(
        status(h.cmd(FwCmd::SNP_INIT_EX, &bad)),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(h.cmd(FwCmd::SNP_INIT_EX, &ex(1 << 5))),
        FwStatus::INVALID_PARAM
    );
    h.cmd(FwCmd::SNP_INIT_EX, &ex(SnpInitEx::INIT_RMP)).unwrap();
    h.soc.wbinvd();
    h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    // A firmware page survives a shutdown that keeps the RMP...
    h.fw_page(OUT);
    let sd = |flags: u32| SnpShutdownEx { length: 8, flags };
    h.cmd(FwCmd::SNP_SHUTDOWN_EX, &sd(0)).unwrap();
    h.cmd(FwCmd::SNP_INIT_EX, &ex(0)).unwrap();
    assert!(h.soc.fw_rmp_read(Spa(OUT)).unwrap().assigned());
    h.soc.wbinvd();
    h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    // ...X86_SNP_SHUTDOWN is not available, bad lengths are refused...
    assert_eq!(
        status(h.cmd(FwCmd::SNP_SHUTDOWN_EX, &sd(3))),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(h.cmd(
            FwCmd::SNP_SHUTDOWN_EX,
            &SnpShutdownEx {
                length: 4,
                flags: 0
            }
        )),
        FwStatus::INVALID_PARAM
    );
    // ...and IOMMU_SNP_SHUTDOWN tears the RMP down: the next INIT must initialise it.
    h.cmd(
        FwCmd::SNP_SHUTDOWN_EX,
        &sd(SnpShutdownEx::IOMMU_SNP_SHUTDOWN),
    )
    .unwrap();
    assert_eq!(
        status(h.cmd(FwCmd::SNP_INIT_EX, &ex(0))),
        FwStatus::RMP_INIT_REQUIRED
    );
    h.cmd0(FwCmd::SNP_INIT).unwrap();
    assert!(!h.soc.fw_rmp_read(Spa(OUT)).unwrap().assigned());
}

fn cfg_cmd(tcb: u64, flags: u32) -> SnpConfig {
    SnpConfig {
        reported_tcb: tcb,
        flags,
        reserved: [0; 0x34],
    }
}

#[test]
fn config_reported_tcb_and_masks() {
    let h = Host::new();
    h.init();
    h.fw_page(OUT);
    let installed = h.fw.config().image.tcb;
    let lower = TcbVersion {
        snp: installed.snp - 2,
        microcode: installed.microcode - 9,
        ..installed
    };
    let raw = |t: &TcbVersion| t.encode(Product::Milan).unwrap().to_u64();
    h.cmd(
        FwCmd::SNP_CONFIG,
        &cfg_cmd(raw(&lower), SnpConfig::MASK_CHIP_ID),
    )
    .unwrap();
    assert_eq!(h.fw.reported_tcb(), lower);
    let s = h.platform_status();
    assert_eq!(s.reported_tcb, raw(&lower));
    assert_eq!(s.current_tcb, raw(&installed));
    assert_eq!(s.flags & 3, SnpPlatformStatus::MASK_CHIP_ID);
    // Above the committed TCB: refused.
    let higher = TcbVersion {
        snp: installed.snp + 1,
        ..installed
    };
    assert_eq!(
        status(h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(raw(&higher), 0))),
        FwStatus::INVALID_PARAM
    );
    // Reserved bits.
    assert_eq!(
        status(h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(0, 4))),
        FwStatus::INVALID_PARAM
    );
    let mut c = cfg_cmd(0, 0);
    c.reserved[3] = 1;
    assert_eq!(
        status(h.cmd(FwCmd::SNP_CONFIG, &c)),
        FwStatus::INVALID_PARAM
    );
    // Non-zero reserved TCB bytes.
    assert_eq!(
        status(h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(raw(&lower) | 1 << 20, 0))),
        FwStatus::INVALID_PARAM
    );
    // 0 = the committed TCB; masks follow the command.
    h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(0, SnpConfig::MASK_CHIP_KEY))
        .unwrap();
    assert_eq!(h.fw.reported_tcb(), installed);
    assert_eq!(
        h.platform_status().flags & 3,
        SnpPlatformStatus::MASK_CHIP_KEY
    );
}

#[test]
fn firmware_updates_commit_and_rollback() {
    let h = Host::new();
    let v0 = h.fw.current_image();
    let newer = FirmwareImage {
        version: FwVersion {
            build: v0.version.build + 1,
            ..v0.version
        },
        tcb: TcbVersion {
            snp: v0.tcb.snp + 1,
            ..v0.tcb
        },
    };
    h.fw.download_firmware(newer, false).unwrap();
    assert_eq!(h.fw.current_image(), newer);
    assert_eq!(h.fw.committed_image(), v0);
    // Rolling back to the committed version is allowed while uncommitted.
    h.fw.download_firmware(v0, false).unwrap();
    h.fw.download_firmware(newer, false).unwrap();
    // CONFIG cannot report the new TCB until it is committed.
    h.init();
    let raw = |t: &TcbVersion| t.encode(Product::Milan).unwrap().to_u64();
    assert_eq!(
        status(h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(raw(&newer.tcb), 0))),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(h.cmd(FwCmd::SNP_COMMIT, &SnpCommit { length: 8 })),
        FwStatus::INVALID_PARAM
    );
    h.cmd(FwCmd::SNP_COMMIT, &SnpCommit { length: 4 }).unwrap();
    assert_eq!(h.fw.committed_image(), newer);
    h.cmd(FwCmd::SNP_CONFIG, &cfg_cmd(raw(&newer.tcb), 0))
        .unwrap();
    assert_eq!(h.fw.reported_tcb(), newer.tcb);
    // Now the old image is below the anti-rollback floor.
    assert_eq!(h.fw.download_firmware(v0, false), Err(FwStatus::BAD_SVN));
    // Microcode: up is fine, below the committed SVN is not.
    h.fw.load_microcode(newer.tcb.microcode + 3).unwrap();
    assert_eq!(h.fw.current_image().tcb.microcode, newer.tcb.microcode + 3);
    assert_eq!(
        h.fw.load_microcode(newer.tcb.microcode - 1),
        Err(FwStatus::BAD_SVN)
    );
}

#[test]
fn feature_info() {
    let h = Host::new();
    let fi = |ecx: u32, p: u64, len: u32| SnpFeatureInfoCmd {
        length: len,
        ecx_in: ecx,
        feature_info_paddr: p,
    };
    h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(0, OUT, 16)).unwrap();
    let mut raw = [0u8; 16];
    h.soc.host_read(Spa(OUT), false, &mut raw).unwrap();
    assert_eq!(&raw[..4], &1u32.to_le_bytes());
    assert_eq!(
        status(h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(2, OUT, 16))),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(0, OUT, 12))),
        FwStatus::INVALID_PARAM
    );
    assert_eq!(
        status(h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(0, OUT + 2, 16))),
        FwStatus::INVALID_ADDRESS
    );
    assert_eq!(
        status(h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(0, OUT + 0xFF8, 16))),
        FwStatus::INVALID_ADDRESS
    );
    h.init();
    assert_eq!(
        status(h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(1, OUT, 16))),
        FwStatus::INVALID_PAGE_STATE
    );
    h.fw_page(OUT);
    h.cmd(FwCmd::SNP_FEATURE_INFO, &fi(1, OUT, 16)).unwrap();
}

#[test]
fn vlek_load() {
    use softsev_crypto::rng::Rng;
    let h = Host::with_own_chip(Product::Milan);
    h.init();
    let tcb = h.fw.reported_tcb();
    let chip = h.fw.chip().clone();
    let (blob, cert) = chip
        .provision_vlek_blob(&mut Rng::seeded(b"vlek", "t"), &tcb, "softsev-csp")
        .unwrap();
    assert!(!cert.is_empty());
    let blob_spa = 0x3000;
    let load = |b: &VlekWrapped| {
        h.soc
            .host_write(Spa(blob_spa), false, zerocopy::IntoBytes::as_bytes(b))
            .unwrap();
        h.cmd(
            FwCmd::SNP_VLEK_LOAD,
            &SnpVlekLoad {
                length: 16,
                vlek_wrapped_version: 0,
                reserved: [0; 3],
                vlek_wrapped_paddr: blob_spa,
            },
        )
    };
    // Tampered payload: authentication fails.
    let mut bad = blob;
    bad.vlek_wrapped[5] ^= 1;
    assert_eq!(status(load(&bad)), FwStatus::BAD_MEASUREMENT);
    // Another TCB: BAD_SVN.
    let mut other = blob;
    other.tcb_version ^= 1 << 56;
    assert_eq!(status(load(&other)), FwStatus::BAD_SVN);
    load(&blob).unwrap();
    let v = chip.vlek().unwrap();
    assert_eq!(v.csp_id(), "softsev-csp");
    h.fw_page(OUT);
    assert_ne!(h.platform_status().flags & SnpPlatformStatus::VLEK_EN, 0);
    // A version or length the firmware does not know.
    assert_eq!(
        status(h.cmd(
            FwCmd::SNP_VLEK_LOAD,
            &SnpVlekLoad {
                length: 16,
                vlek_wrapped_version: 1,
                reserved: [0; 3],
                vlek_wrapped_paddr: blob_spa,
            },
        )),
        FwStatus::INVALID_PARAM
    );
    // SHUTDOWN wipes the VLEK.
    h.soc.wbinvd();
    h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    h.cmd0(FwCmd::SNP_SHUTDOWN).unwrap();
    assert!(chip.vlek().is_none());
}

/// Two platforms built side by side are independent (migration between two needs it),
/// and a typed buffer runs the command its type names.
#[test]
fn built_platforms_are_independent_and_typed_calls_name_their_command() {
    use softsev_firmware::{Firmware, GuestState, SevPlatformState};
    let build = || {
        Firmware::builder(Product::Milan)
            .seed(b"fw-tests")
            .soc_bytes(16 << 20)
            .asid_count(4)
            .chip(chip(Product::Milan))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    assert!(!std::sync::Arc::ptr_eq(a.soc(), b.soc()));
    assert_eq!(a.soc().mem_size(), 16 << 20);
    a.command(FwCmd::SNP_INIT, Spa(CMD)).unwrap();
    assert_eq!(a.platform_state(), PlatformState::Init);
    assert_eq!(b.platform_state(), PlatformState::Uninit);
    assert_eq!(a.sev_platform_state(), SevPlatformState::Uninit);

    // SNP_GCTX_CREATE through `call`: no command id at the call site.
    let fw_page = softsev_abi::rmp::RmpUpdateInput {
        assigned: 1,
        immutable: 1,
        ..Default::default()
    };
    assert!(a.soc().rmpupdate(Spa(GCTX), &fw_page).is_success());
    a.call(Spa(CMD), &mut SnpGctxCreate { gctx_paddr: GCTX })
        .unwrap();
    assert_eq!(a.guest_state(Spa(GCTX)), Some(GuestState::Init));
    assert_eq!(a.context_count(), 1);
    assert_eq!(b.context_count(), 0);
    assert_eq!(
        a.inspect_guest(Spa(GCTX), |g| (g.policy(), g.asid(), g.launch().is_none())),
        Some((0, 0, true))
    );
    assert_eq!(a.launch_record(Spa(GCTX)), None);
    // The same buffer on the other platform (UNINIT) fails there, not here.
    assert_eq!(
        b.call(Spa(CMD), &mut SnpGctxCreate { gctx_paddr: GCTX }),
        Err(FwStatus::INVALID_PLATFORM_STATE)
    );
}

/// SNP_PLATFORM_STATUS byte 3 bit 1 (ALIAS_CHECK_COMPLETE, CVE-2024-21944): reported
/// after SNP_INIT by firmware that performs the check — Milan from 1.55.22, Genoa from
/// 1.55.38, every Turin release — and never before INIT.
#[test]
fn alias_check_complete_follows_the_firmware_version() {
    let bit = 1u8 << SnpPlatformStatus::ALIAS_CHECK_COMPLETE_BIT;
    let after_init = |product: Product, build: Option<u8>| {
        let h = Host::with(product, |c| {
            if let Some(b) = build {
                c.image.version.build = b;
            }
        });
        assert_eq!(
            h.platform_status().is_rmp_init & bit,
            0,
            "{product:?} before INIT"
        );
        h.cmd0(FwCmd::SNP_INIT).unwrap();
        h.fw_page(OUT);
        h.platform_status().is_rmp_init
    };
    assert_eq!(after_init(Product::Milan, None), 1, "Milan 1.55.21");
    assert_eq!(
        after_init(Product::Milan, Some(22)),
        1 | bit,
        "Milan 1.55.22"
    );
    assert_eq!(after_init(Product::Genoa, Some(37)), 1, "Genoa 1.55.37");
    assert_eq!(after_init(Product::Genoa, None), 1 | bit, "Genoa 1.55.38");
    assert_eq!(after_init(Product::Turin, None), 1 | bit, "Turin");
}
