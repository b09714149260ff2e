//! Launch: LAUNCH_START policy checks, LAUNCH_UPDATE page types, RMP transitions and the
//! launch digest (equal to `softsev-measure`'s for the same pages), LAUNCH_FINISH with
//! ID blocks, activation and ASID recycling.
use crate::fwcommon::*;
use softsev_abi::fw_buf::*;
use softsev_abi::page_info::VMSA_GPA;
use softsev_abi::rmp::PageState;
use softsev_abi::{Asid, FwCmd, FwStatus, Gpa, GuestPolicy, Product, Spa};
use softsev_firmware::{AsidState, GuestState};
use softsev_measure::launch::{SnpParams, launch_vmsas, snp_launch_into};
use softsev_measure::qemu::vcpu_type_sig;
use softsev_measure::vmsa::{VmmType, page_bytes};
use softsev_measure::{Ovmf, SnpDigest};
use softsev_soc::{AccessKind, GuestAccess};
use zerocopy::{FromBytes, IntoBytes};

const POLICY: u64 = 0x30000;

fn guest_read(h: &Host, asid: u32, gpa: u64, spa: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    h.soc
        .guest_read(
            &GuestAccess::snp(Asid(asid), Gpa(gpa), Spa(spa), AccessKind::Read, true),
            &mut buf,
        )
        .unwrap();
    buf
}

#[test]
fn launch_digest_equals_measure_for_the_builtin_image() {
    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    let sig = vcpu_type_sig("EPYC-Milan").unwrap();
    let params = SnpParams {
        vcpus: 4,
        vcpu_sig: sig,
        guest_features: 1,
        vmm: VmmType::Qemu,
        kernel_hashes: None,
    };
    let mut d = SnpDigest::new().with_trace();
    snp_launch_into(&mut d, &ovmf, false, &params).unwrap();
    let expected = d.digest();
    let trace = d.take_trace();
    let vmsas = launch_vmsas(&ovmf, 4, 1, sig, VmmType::Qemu).unwrap();
    let base = ovmf.gpa().unwrap();

    let h = Host::new();
    h.started_guest(POLICY);
    assert_eq!(h.fw.launch_digest(Spa(GCTX)), Some([0; 48]));
    let mut vcpu = 0;
    let mut placed = Vec::new();
    for (i, t) in trace.iter().enumerate() {
        let spa = GUEST_BASE + i as u64 * 4096;
        let page: Vec<u8> = match t.page_type.0 {
            1 => {
                let off = (t.gpa.raw() - base) as usize;
                ovmf.data()[off..off + 4096].to_vec()
            }
            2 => {
                let v = vmsas.get(vcpu).unwrap();
                vcpu += 1;
                page_bytes(v).to_vec()
            }
            _ => vec![0xEE; 4096], // ZERO/SECRETS: the firmware replaces it; CPUID below
        };
        let page = if t.page_type.0 == 6 {
            vec![0; 4096]
        } else {
            page
        };
        h.load_page(GCTX, spa, t.gpa.raw(), t.page_type.0, &page)
            .unwrap_or_else(|s| panic!("update {i} ({:?} at {}): {s:?}", t.page_type, t.gpa));
        assert_eq!(h.fw.launch_digest(Spa(GCTX)).unwrap(), t.digest, "step {i}");
        placed.push((spa, t.gpa.raw(), t.page_type.0, page));
    }
    h.launch_finish(GCTX, 0, [7; 32]).unwrap();
    assert_eq!(h.fw.launch_digest(Spa(GCTX)).unwrap(), expected);
    assert_eq!(h.fw.guest_state(Spa(GCTX)), Some(GuestState::Running));
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::InUse));

    // Every page is now guest-valid, owned by the guest at its GPA, and holds what the
    // guest should see.
    for (spa, gpa, ty, page) in placed {
        let e = h.soc.fw_rmp_read(Spa(spa)).unwrap();
        assert_eq!(e.page_state(), PageState::GUEST_VALID, "{spa:#x}");
        assert_eq!((e.asid(), e.gpa()), (ASID, gpa));
        assert_eq!(e.vmsa(), ty == 2);
        if ty == 2 {
            assert_eq!(gpa, VMSA_GPA);
            continue;
        }
        let seen = guest_read(&h, ASID, gpa, spa);
        match ty {
            1 | 6 => assert_eq!(seen, page),
            3 => assert_eq!(seen, vec![0; 4096]),
            5 => {
                assert_eq!(&seen[..4], &3u32.to_le_bytes(), "secrets page version");
                assert_eq!(
                    &seen[8..12],
                    &Product::Milan.cpuid_signature().to_le_bytes()
                );
                assert!(seen[0x20..0xA0].iter().any(|&b| b != 0), "VMPCKs present");
                assert_eq!(&seen[0x160..0x164], &200u32.to_le_bytes());
            }
            _ => {}
        }
        // The host sees ciphertext only.
        let mut host = vec![0u8; 4096];
        h.soc.host_read(Spa(spa), false, &mut host).unwrap();
        assert_ne!(host, seen);
    }
}

#[test]
fn same_seed_same_secrets_and_digest() {
    let run = || {
        let h = Host::new();
        h.started_guest(POLICY);
        h.load_page(GCTX, GUEST_BASE, 0x1000, 5, &[0; 4096])
            .unwrap();
        h.launch_finish(GCTX, 0, [0; 32]).unwrap();
        guest_read(&h, ASID, 0x1000, GUEST_BASE)
    };
    assert_eq!(run(), run());
}

#[test]
fn two_mib_page_is_measured_as_512_pages() {
    let h = Host::new();
    h.started_guest(POLICY);
    let spa = 0x80_0000;
    let gpa = 0x20_0000;
    let data: Vec<u8> = (0..0x20_0000u32).map(|i| (i / 4096) as u8).collect();
    h.soc.host_write(Spa(spa), false, &data).unwrap();
    h.rmpupdate(spa, true, ASID, gpa, true, true);
    assert_eq!(
        status(h.launch_update(GCTX, spa, 1, false)),
        FwStatus::INVALID_PAGE_SIZE
    );
    h.launch_update(GCTX, spa, 1, true).unwrap();
    let mut d = SnpDigest::new();
    d.update_normal_pages(Gpa(gpa), &data).unwrap();
    assert_eq!(h.fw.launch_digest(Spa(GCTX)).unwrap(), d.digest());
    assert_eq!(
        h.soc.fw_rmp_read(Spa(spa)).unwrap().page_state(),
        PageState::GUEST_VALID
    );
}

#[test]
fn launch_update_checks_in_firmware_order() {
    let h = Host::new();
    h.started_guest(POLICY);
    let spa = GUEST_BASE;
    let lu = |page_flags: u32, page: u64, perms: u32| SnpLaunchUpdate {
        gctx_paddr: GCTX,
        page_flags,
        reserved: 0,
        page_paddr: page,
        vmpl_perms: perms,
        reserved2: 0,
    };
    let run = |b: &SnpLaunchUpdate| status(h.cmd(FwCmd::SNP_LAUNCH_UPDATE, b));
    assert_eq!(run(&lu(2, spa + 8, 0)), FwStatus::INVALID_PARAM);
    assert_eq!(run(&lu(2 | 1 << 5, spa, 0)), FwStatus::INVALID_PARAM);
    assert_eq!(run(&lu(2, spa, 1)), FwStatus::INVALID_PARAM);
    // A hypervisor page is not pre-guest.
    assert_eq!(run(&lu(2, spa, 0)), FwStatus::INVALID_PAGE_STATE);
    h.rmpupdate(spa, true, ASID, 0, true, false);
    assert_eq!(run(&lu(0, spa, 0)), FwStatus::INVALID_PARAM);
    assert_eq!(run(&lu(7 << 1, spa, 0)), FwStatus::INVALID_PARAM);
    // Another ASID's page.
    h.rmpupdate(spa + 0x1000, true, 2, 0x1000, true, false);
    assert_eq!(run(&lu(2, spa + 0x1000, 0)), FwStatus::INVALID_PAGE_OWNER);
    // Context page that is not a context.
    let mut bad = lu(2, spa, 0);
    bad.gctx_paddr = GCTX2;
    assert_eq!(run(&bad), FwStatus::INVALID_GUEST);
    // VMPL permissions land in the RMP.
    h.cmd(
        FwCmd::SNP_LAUNCH_UPDATE,
        &lu(2, spa, SnpLaunchUpdate::perms(0x0F, 0x03, 0x01)),
    )
    .unwrap();
    let e = h.soc.fw_rmp_read(Spa(spa)).unwrap();
    assert_eq!(
        (e.vmpl_perms(1), e.vmpl_perms(2), e.vmpl_perms(3)),
        (Some(0x0F), Some(0x03), Some(0x01))
    );
    // Already guest-valid: not pre-guest any more.
    assert_eq!(run(&lu(2, spa, 0)), FwStatus::INVALID_PAGE_STATE);
    // After LAUNCH_FINISH the guest is RUNNING.
    h.launch_finish(GCTX, 0, [0; 32]).unwrap();
    h.rmpupdate(spa + 0x2000, true, ASID, 0x2000, true, false);
    assert_eq!(run(&lu(2, spa + 0x2000, 0)), FwStatus::INVALID_GUEST_STATE);
}

#[test]
fn launch_update_before_activation_is_inactive() {
    let h = Host::new();
    h.init();
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    h.launch_start(GCTX, POLICY).unwrap();
    h.rmpupdate(GUEST_BASE, true, 3, 0, true, false);
    // Another ASID's page: the owner check comes after the activation check.
    assert_eq!(
        status(h.launch_update(GCTX, GUEST_BASE, 1, false)),
        FwStatus::INACTIVE
    );
    assert_eq!(
        status(h.launch_finish(GCTX, 0, [0; 32])),
        FwStatus::INACTIVE
    );
}

#[test]
fn launch_start_policy_checks() {
    let h = Host::new();
    h.init();
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    for (policy, why) in [
        (0x10000, "bit 17 (must be one) clear"),
        (0x20000, "SMT not allowed on an SMT host"),
        (0x30000 | 2 << 8, "ABI major 2 > 1"),
        (0x30000 | 1 << 8 | 56, "ABI minor 56 > 55"),
        (0x30000 | 1 << 26, "reserved bit 26"),
        (
            0x30000 | GuestPolicy::MEM_AES_256_XTS,
            "AES-256-XTS on Milan",
        ),
        (
            0x30000 | GuestPolicy::CIPHERTEXT_HIDING,
            "ciphertext hiding not enabled",
        ),
        (
            0x30000 | GuestPolicy::MIGRATE_MA,
            "MIGRATE_MA without... is allowed",
        ),
    ] {
        let r = status(h.launch_start(GCTX, policy));
        if why.ends_with("allowed") {
            assert_eq!(r, FwStatus::SUCCESS, "{why}");
        } else {
            assert_eq!(r, FwStatus::POLICY_FAILURE, "{why}");
        }
    }
    // Second LAUNCH_START: the guest is no longer in INIT.
    assert_eq!(
        status(h.launch_start(GCTX, POLICY)),
        FwStatus::INVALID_GUEST_STATE
    );
    // Flags reserved bits.
    assert_eq!(
        status(h.cmd(
            FwCmd::SNP_LAUNCH_START,
            &SnpLaunchStart {
                gctx_paddr: GCTX,
                policy: POLICY,
                ma_gctx_paddr: 0,
                flags: 4,
                desired_tsc_freq: 0,
                gosvw: [0; 16],
            }
        )),
        FwStatus::INVALID_PARAM
    );
    // SMT-free host accepts a no-SMT policy; ABI 1.55 exactly is fine.
    let h2 = Host::with(Product::Milan, |c| c.smt_enabled = false);
    h2.init();
    h2.fw_page(GCTX);
    h2.gctx_create(GCTX).unwrap();
    h2.launch_start(GCTX, 0x20000 | 1 << 8 | 55).unwrap();
}

#[test]
fn id_block_checks_at_launch_finish() {
    use softsev_crypto::ecdsa::P384SigningKey;
    use softsev_measure::id_block::{IdBlockParams, SignMode, sign_id_auth};
    let setup = || {
        let h = Host::new();
        h.started_guest(POLICY);
        h.load_page(GCTX, GUEST_BASE, 0, 1, &[1; 4096]).unwrap();
        h
    };
    let id_key = P384SigningKey::from_seed_material(&[3; 64]);
    let author = P384SigningKey::from_seed_material(&[4; 64]);
    let finish = |h: &Host,
                  block: &softsev_abi::id_block::IdBlock,
                  auth: &softsev_abi::id_block::IdAuth,
                  flags: u64| {
        h.soc
            .host_write(Spa(0x3000), false, block.as_bytes())
            .unwrap();
        h.soc
            .host_write(Spa(0x4000), false, auth.as_bytes())
            .unwrap();
        status(h.cmd(
            FwCmd::SNP_LAUNCH_FINISH,
            &SnpLaunchFinish {
                gctx_paddr: GCTX,
                id_block_paddr: 0x3000,
                id_auth_paddr: 0x4000,
                flags,
                host_data: [9; 32],
            },
        ))
    };
    let en = SnpLaunchFinish::ID_BLOCK_EN | SnpLaunchFinish::AUTH_KEY_EN;
    // Good block: passes, and the guest runs.
    let h = setup();
    let ld = h.fw.launch_digest(Spa(GCTX)).unwrap();
    let block = IdBlockParams {
        ld,
        family_id: [1; 16],
        image_id: [2; 16],
        guest_svn: 7,
        ..Default::default()
    }
    .to_id_block();
    let auth = sign_id_auth(&block, &id_key, Some(&author), SignMode::Deterministic).unwrap();
    assert_eq!(finish(&h, &block, &auth, en), FwStatus::SUCCESS);
    assert_eq!(h.fw.guest_state(Spa(GCTX)), Some(GuestState::Running));
    // Wrong LD.
    let h = setup();
    let mut b2 = block;
    b2.ld[0] ^= 1;
    let a2 = sign_id_auth(&b2, &id_key, Some(&author), SignMode::Deterministic).unwrap();
    assert_eq!(finish(&h, &b2, &a2, en), FwStatus::BAD_MEASUREMENT);
    // Wrong policy.
    let mut b3 = block;
    b3.policy = 0x70000;
    let a3 = sign_id_auth(&b3, &id_key, Some(&author), SignMode::Deterministic).unwrap();
    assert_eq!(finish(&h, &b3, &a3, en), FwStatus::POLICY_FAILURE);
    // Signature over another block.
    let mut a4 = auth;
    a4.id_block_sig.r[3] ^= 1;
    assert_eq!(finish(&h, &block, &a4, en), FwStatus::BAD_SIGNATURE);
    // Author key signature broken, but the author key is not enabled: fine.
    let mut a5 = auth;
    a5.id_key_sig.s[3] ^= 1;
    assert_eq!(finish(&h, &block, &a5, en), FwStatus::BAD_SIGNATURE);
    assert_eq!(
        finish(&h, &block, &a5, SnpLaunchFinish::ID_BLOCK_EN),
        FwStatus::SUCCESS
    );
    // Reserved flag bits.
    let h = setup();
    assert_eq!(finish(&h, &block, &auth, 1 << 3), FwStatus::INVALID_PARAM);
}

fn guest_status(h: &Host, gctx: u64) -> (FwStatus, SnpGuestStatus) {
    let r = status(h.cmd(
        FwCmd::SNP_GUEST_STATUS,
        &SnpGuestStatusCmd {
            gctx_paddr: gctx,
            status_paddr: OUT,
        },
    ));
    let mut raw = [0u8; SnpGuestStatus::LEN];
    h.soc.host_read(Spa(OUT), false, &mut raw).unwrap();
    (r, SnpGuestStatus::read_from_bytes(&raw).unwrap())
}

#[test]
fn activation_rules_and_asid_recycling() {
    let h = Host::new();
    h.init();
    h.fw_page(OUT);
    h.fw_page(GCTX);
    h.fw_page(GCTX2);
    h.gctx_create(GCTX).unwrap();
    h.gctx_create(GCTX2).unwrap();
    // Not launched yet.
    assert_eq!(
        status(h.activate(GCTX, ASID)),
        FwStatus::INVALID_GUEST_STATE
    );
    h.launch_start(GCTX, POLICY).unwrap();
    h.launch_start(GCTX2, POLICY).unwrap();
    assert_eq!(status(h.activate(GCTX, 0)), FwStatus::INVALID_ASID);
    assert_eq!(status(h.activate(GCTX, 16)), FwStatus::INVALID_ASID);
    // An ASID that still owns RMP entries.
    h.rmpupdate(0x30_0000, true, 5, 0, false, false);
    assert_eq!(status(h.activate(GCTX, 5)), FwStatus::INVALID_CONFIG);
    h.activate(GCTX, ASID).unwrap();
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::Allocated));
    assert_eq!(status(h.activate(GCTX2, ASID)), FwStatus::ASID_OWNED);
    assert_eq!(status(h.activate(GCTX, 2)), FwStatus::ACTIVE);
    let (r, s) = guest_status(&h, GCTX);
    assert_eq!(r, FwStatus::SUCCESS);
    assert_eq!((s.policy, s.asid, s.state), (POLICY, ASID, 1));
    // Decommissioning a guest that never ran frees its ASID at once.
    h.cmd(FwCmd::SNP_DECOMMISSION, &SnpPaddr { paddr: GCTX })
        .unwrap();
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::Clean));
    assert_eq!(
        h.soc.fw_rmp_read(Spa(GCTX)).unwrap().page_state(),
        PageState::FIRMWARE
    );
    assert_eq!(guest_status(&h, GCTX).0, FwStatus::INVALID_GUEST);
    h.activate(GCTX2, ASID).unwrap();
    h.launch_finish(GCTX2, 0, [0; 32]).unwrap();
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::InUse));
    // A guest that ran leaves its ASID dirty.
    h.cmd(FwCmd::SNP_DECOMMISSION, &SnpPaddr { paddr: GCTX2 })
        .unwrap();
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::Dirty));
    h.gctx_create(GCTX).unwrap();
    h.launch_start(GCTX, POLICY).unwrap();
    assert_eq!(status(h.activate(GCTX, ASID)), FwStatus::DFFLUSH_REQUIRED);
    assert_eq!(
        status(h.cmd0(FwCmd::SNP_DF_FLUSH)),
        FwStatus::WBINVD_REQUIRED
    );
    h.soc.wbinvd();
    h.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    h.activate(GCTX, ASID).unwrap();
    // ASIDs at or above min_sev_asid are plain-SEV ASIDs.
    let h3 = Host::with(Product::Milan, |c| c.min_sev_asid = 4);
    h3.init();
    h3.fw_page(GCTX);
    h3.gctx_create(GCTX).unwrap();
    h3.launch_start(GCTX, POLICY).unwrap();
    assert_eq!(status(h3.activate(GCTX, 4)), FwStatus::INVALID_ASID);
    h3.activate(GCTX, 3).unwrap();
}

#[test]
fn single_socket_policy_needs_one_socket() {
    let h = Host::with(Product::Milan, |c| c.sockets = 2);
    h.init();
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    h.launch_start(GCTX, POLICY | GuestPolicy::SINGLE_SOCKET)
        .unwrap();
    assert_eq!(status(h.activate(GCTX, ASID)), FwStatus::POLICY_FAILURE);
}

#[test]
fn gctx_create_page_rules() {
    let h = Host::new();
    assert_eq!(
        status(h.gctx_create(GCTX)),
        FwStatus::INVALID_PLATFORM_STATE
    );
    h.init();
    assert_eq!(status(h.gctx_create(GCTX + 8)), FwStatus::INVALID_PARAM);
    assert_eq!(status(h.gctx_create(GCTX)), FwStatus::INVALID_PAGE_STATE);
    h.rmpupdate(0x60_0000, true, 0, 0, true, true);
    assert_eq!(
        status(h.gctx_create(0x60_0000)),
        FwStatus::INVALID_PAGE_SIZE
    );
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    assert_eq!(
        h.soc.fw_rmp_read(Spa(GCTX)).unwrap().page_state(),
        PageState::CONTEXT
    );
    // A context page is immutable: the host cannot take it back.
    let st = h
        .soc
        .rmpupdate(Spa(GCTX), &softsev_abi::rmp::RmpUpdateInput::default());
    assert!(!st.is_success());
    assert_eq!(status(h.gctx_create(GCTX)), FwStatus::INVALID_PAGE_STATE);
    assert_eq!(h.fw.context_count(), 1);
}

#[test]
fn activate_ex_checks_its_apic_id_list() {
    let h = Host::new();
    h.init();
    h.fw_page(GCTX);
    h.gctx_create(GCTX).unwrap();
    h.launch_start(GCTX, POLICY).unwrap();
    let ids = 0x3000u64;
    h.soc
        .host_write(
            Spa(ids),
            false,
            &[0u32, 1, 2, 3].map(u32::to_le_bytes).concat(),
        )
        .unwrap();
    let ex = |len: u32, numids: u32| SnpActivateEx {
        ex_len: len,
        reserved: 0,
        gctx_paddr: GCTX,
        asid: ASID,
        numids,
        ids_paddr: ids,
    };
    let run = |b: &SnpActivateEx| status(h.cmd(FwCmd::SNP_ACTIVATE_EX, b));
    assert_eq!(run(&ex(0x18, 4)), FwStatus::INVALID_PARAM);
    assert_eq!(run(&ex(0x20, 0)), FwStatus::INVALID_PARAM);
    h.soc
        .host_write(Spa(ids + 16), false, &5000u32.to_le_bytes())
        .unwrap();
    assert_eq!(run(&ex(0x20, 5)), FwStatus::INVALID_PARAM);
    assert_eq!(run(&ex(0x20, 4)), FwStatus::SUCCESS);
    assert_eq!(h.fw.asid_state(ASID), Some(AsidState::Allocated));
    assert_eq!(run(&ex(0x20, 4)), FwStatus::ASID_OWNED);
}
