//! Every return code of the RMP instructions, and their 4 KiB / 2 MiB behaviour.
use crate::common::*;
use softsev_abi::rmp::{PERM_ALL, PERM_READ, PERM_WRITE, PageState, RMPADJUST_VMSA_PAGE_BIT};
use softsev_abi::{Asid, Gpa, Spa, Vmpl};
use softsev_soc::*;

const M2: u64 = 0x20_0000;

fn upd(gpa: u64, assigned: u8, pagesize: u8, immutable: u8, asid: u32) -> RmpUpdateInput {
    RmpUpdateInput {
        gpa,
        assigned,
        pagesize,
        immutable,
        _reserved_0b: 0,
        asid,
    }
}

#[test]
fn rmpupdate_success_sets_fields_and_clears_validated() {
    let soc = soc();
    private_page(&soc, 0x1000, 0x7000);
    let e = soc.rmpread(Spa(0x1000)).unwrap();
    assert!(e.assigned() && e.validated() && !e.is_2m());
    assert_eq!((e.asid(), e.gpa()), (1, 0x7000));
    assert_eq!(e.vmpl_perms(0), Some(PERM_ALL));
    assert_eq!(e.vmpl_perms(1), Some(0));
    // Any host change (even to the same values) clears Validated.
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0x7000, 1, 0, 0, 1)),
        RmpStatus::SUCCESS
    );
    let e = soc.rmpread(Spa(0x1000)).unwrap();
    assert!(e.assigned() && !e.validated());
    assert_eq!(e.page_state(), PageState::GUEST_INVALID);
    assert_eq!(
        make_shared(&soc, 0x1000, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(soc.rmpread(Spa(0x1000)).unwrap(), RmpEntry::default());
}

#[test]
fn rmpupdate_fail_input() {
    let soc = soc();
    let ok = upd(0x2000, 1, 0, 0, 1);
    // Misaligned SPA.
    assert_eq!(soc.rmpupdate(Spa(0x1008), &ok), RmpStatus::FAIL_INPUT);
    // 2 MiB at a non-2M-aligned SPA / GPA.
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0, 1, 1, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    assert_eq!(
        soc.rmpupdate(Spa(M2), &upd(0x1000, 1, 1, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    // Reserved bits.
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0x2000, 1, 2, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    let mut r = ok;
    r._reserved_0b = 1;
    assert_eq!(soc.rmpupdate(Spa(0x1000), &r), RmpStatus::FAIL_INPUT);
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0x2000, 2, 0, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    // ASID out of range; unassigned with an ASID; GPA out of range / misaligned.
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0x2000, 1, 0, 0, 16)),
        RmpStatus::FAIL_INPUT
    );
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0, 0, 0, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(1 << 51, 1, 0, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    assert_eq!(
        soc.rmpupdate(Spa(0x1000), &upd(0x2010, 1, 0, 0, 1)),
        RmpStatus::FAIL_INPUT
    );
    // Beyond memory.
    assert_eq!(soc.rmpupdate(Spa(64 << 20), &ok), RmpStatus::FAIL_INPUT);
    // Nothing changed.
    assert_eq!(soc.rmpread(Spa(0x1000)).unwrap(), RmpEntry::default());
}

#[test]
fn rmpupdate_fail_input_beyond_rmp_coverage() {
    let soc = Soc::new(SocConfig {
        rmp_coverage: Some(4 << 20),
        seed: Some(b"t".to_vec()),
        ..SocConfig::new(8 << 20)
    });
    assert_eq!(
        soc.rmpupdate(Spa(4 << 20), &upd(0, 1, 0, 1, 0)),
        RmpStatus::FAIL_INPUT
    );
    assert_eq!(soc.rmpread(Spa(4 << 20)), Err(RmpStatus::FAIL_INPUT));
    assert_eq!(soc.psmash(Spa(4 << 20)), RmpStatus::FAIL_INPUT);
    // Uncovered pages are permanently hypervisor-owned: host writes never fault.
    soc.host_write(Spa(4 << 20), false, &[1; 64]).unwrap();
    assert!(matches!(
        soc.rmp_lookup(Spa(4 << 20)),
        Err(SocError::NotCovered(_))
    ));
}

#[test]
fn rmpupdate_fail_permission_on_immutable() {
    let soc = soc();
    // Firmware page: assigned, ASID 0, immutable.
    assert_eq!(
        soc.rmpupdate(Spa(0x3000), &upd(0, 1, 0, 1, 0)),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.rmpread(Spa(0x3000)).unwrap().page_state(),
        PageState::FIRMWARE
    );
    assert_eq!(
        make_shared(&soc, 0x3000, PageSize::Size4K),
        RmpStatus::FAIL_PERMISSION
    );
    // Pre-guest page (immutable, guest ASID) likewise.
    assert_eq!(
        soc.rmpupdate(Spa(0x4000), &upd(0x1000, 1, 0, 1, 1)),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.rmpread(Spa(0x4000)).unwrap().page_state(),
        PageState::PRE_GUEST
    );
    assert_eq!(
        assign(&soc, 0x4000, 0x1000, OTHER, PageSize::Size4K),
        RmpStatus::FAIL_PERMISSION
    );
    // Immutable 2 MiB page protects all its 4 KiB pages.
    assert_eq!(
        soc.rmpupdate(Spa(2 * M2), &upd(0, 1, 1, 1, 1)),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        make_shared(&soc, 2 * M2 + 0x5000, PageSize::Size4K),
        RmpStatus::FAIL_PERMISSION
    );
    // The firmware reclaims it (its own path), then the host may change it.
    soc.fw_rmp_modify(Spa(0x3000), |e| e.set_immutable(false))
        .unwrap();
    assert_eq!(
        soc.rmpread(Spa(0x3000)).unwrap().page_state(),
        PageState::RECLAIM
    );
    assert_eq!(
        make_shared(&soc, 0x3000, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
}

#[test]
fn rmpupdate_and_psmash_fail_inuse() {
    let soc = soc();
    soc.set_in_use(Spa(M2 + 0x3000), true).unwrap();
    assert_eq!(
        assign(&soc, M2 + 0x3000, 0, ASID, PageSize::Size4K),
        RmpStatus::FAIL_INUSE
    );
    assert_eq!(
        assign(&soc, M2, 0, ASID, PageSize::Size2M),
        RmpStatus::FAIL_INUSE
    );
    // Other 4 KiB pages of the region are not affected.
    assert_eq!(
        assign(&soc, M2 + 0x4000, 0x4000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    soc.set_in_use(Spa(M2 + 0x3000), false).unwrap();
    assert_eq!(
        assign(&soc, M2 + 0x3000, 0x3000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );

    assert_eq!(
        assign(&soc, 3 * M2, 0, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    soc.set_in_use(Spa(3 * M2 + 0x1000), true).unwrap();
    assert_eq!(soc.psmash(Spa(3 * M2)), RmpStatus::FAIL_INUSE);
}

#[test]
fn rmpupdate_fail_overlap() {
    let soc = soc();
    // A 4 KiB assigned page inside the region blocks a 2 MiB assignment.
    assert_eq!(
        assign(&soc, M2 + 0x5000, 0x5000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        assign(&soc, M2, 0, ASID, PageSize::Size2M),
        RmpStatus::FAIL_OVERLAP
    );
    assert_eq!(
        make_shared(&soc, M2 + 0x5000, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        assign(&soc, M2, 0, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    // A 4 KiB update inside an assigned 2 MiB page overlaps, head included.
    assert_eq!(
        assign(&soc, M2 + 0x5000, 0x5000, ASID, PageSize::Size4K),
        RmpStatus::FAIL_OVERLAP
    );
    assert_eq!(
        make_shared(&soc, M2, PageSize::Size4K),
        RmpStatus::FAIL_OVERLAP
    );
    // 2 MiB → shared works.
    assert_eq!(make_shared(&soc, M2, PageSize::Size2M), RmpStatus::SUCCESS);
    assert_eq!(
        assign(&soc, M2 + 0x5000, 0x5000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
}

#[test]
fn psmash_splits_and_keeps_attributes() {
    let soc = soc();
    assert_eq!(
        assign(&soc, M2, 0x40_0000, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x40_0000, M2, PageSize::Size2M, true)),
        Ok(RmpStatus::SUCCESS)
    );
    assert_eq!(
        soc.rmp_lookup(Spa(M2 + 0x7000)).unwrap().1,
        PageSize::Size2M
    );
    assert_eq!(soc.psmash(Spa(M2)), RmpStatus::SUCCESS);
    for i in [0u64, 1, 7, 511] {
        let (e, size) = soc.rmp_lookup(Spa(M2 + i * 0x1000)).unwrap();
        assert_eq!(size, PageSize::Size4K);
        assert!(e.assigned() && e.validated() && !e.is_2m());
        assert_eq!(e.gpa(), 0x40_0000 + i * 0x1000);
        assert_eq!(e.asid(), 1);
        assert_eq!(e.vmpl_perms(0), Some(PERM_ALL));
    }
    // Now 4 KiB updates work and a second PSMASH has nothing to expand.
    assert_eq!(soc.psmash(Spa(M2)), RmpStatus::FAIL_BADADDR);
    assert_eq!(
        make_shared(&soc, M2 + 0x3000, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
}

#[test]
fn psmash_fail_input_and_badaddr() {
    let soc = soc();
    assert_eq!(soc.psmash(Spa(M2 + 0x1000)), RmpStatus::FAIL_INPUT);
    assert_eq!(soc.psmash(Spa(64 << 20)), RmpStatus::FAIL_INPUT);
    assert_eq!(soc.psmash(Spa(M2)), RmpStatus::FAIL_BADADDR);
    assert_eq!(
        assign(&soc, M2, 0, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(soc.psmash(Spa(M2)), RmpStatus::FAIL_BADADDR);
}

#[test]
fn rmpread_fail_input() {
    let soc = soc();
    assert_eq!(soc.rmpread(Spa(0x1001)), Err(RmpStatus::FAIL_INPUT));
    assert_eq!(soc.rmpread(Spa(1 << 40)), Err(RmpStatus::FAIL_INPUT));
}

#[test]
fn pvalidate_codes_4k() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x5000, 0x9000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    let r = pv(ASID, 0x9000, 0x5000, PageSize::Size4K, true);
    // FAIL_INPUT: misaligned.
    assert_eq!(
        soc.pvalidate(&PvalidateReq {
            gpa: Gpa(0x9008),
            ..r
        }),
        Ok(RmpStatus::FAIL_INPUT)
    );
    // FAIL_PERMISSION: not VMPL0.
    assert_eq!(
        soc.pvalidate(&PvalidateReq { vmpl: Vmpl(1), ..r }),
        Ok(RmpStatus::FAIL_PERMISSION)
    );
    assert_eq!(soc.pvalidate(&r), Ok(RmpStatus::SUCCESS));
    assert_eq!(soc.pvalidate(&r), Ok(RmpStatus::FAIL_UNCHANGED));
    let rescind = PvalidateReq {
        validate: false,
        ..r
    };
    assert_eq!(soc.pvalidate(&rescind), Ok(RmpStatus::SUCCESS));
    assert_eq!(soc.pvalidate(&rescind), Ok(RmpStatus::FAIL_UNCHANGED));
}

fn npf_code(r: Result<RmpStatus, Fault>) -> u64 {
    match r {
        Err(Fault::Npf { error_code, .. }) => error_code,
        other => panic!("expected #NPF, got {other:?}"),
    }
}

#[test]
fn pvalidate_faults() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x5000, 0x9000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    // Wrong ASID, wrong GPA, unassigned page, immutable page: #NPF with the RMP bit.
    for r in [
        pv(OTHER, 0x9000, 0x5000, PageSize::Size4K, true),
        pv(ASID, 0xA000, 0x5000, PageSize::Size4K, true),
        pv(ASID, 0x9000, 0x6000, PageSize::Size4K, true),
    ] {
        let ec = npf_code(soc.pvalidate(&r));
        assert_ne!(ec & PF_RMP, 0);
        assert_eq!(ec & NPF_SIZEM, 0);
    }
    assert_eq!(
        soc.rmpupdate(Spa(0x7000), &upd(0xB000, 1, 0, 1, 1)),
        RmpStatus::SUCCESS
    );
    let ec = npf_code(soc.pvalidate(&pv(ASID, 0xB000, 0x7000, PageSize::Size4K, true)));
    assert_ne!(ec & PF_RMP, 0);
    // Beyond the RMP: #NPF.
    npf_code(soc.pvalidate(&pv(ASID, 0, 64 << 20, PageSize::Size4K, true)));
}

#[test]
fn pvalidate_2m_behaviour() {
    let soc = soc();
    // 2 MiB request on 4 KiB RMP entries: FAIL_SIZEMISMATCH.
    assert_eq!(
        assign(&soc, M2, 0x20_0000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x20_0000, M2, PageSize::Size2M, true)),
        Ok(RmpStatus::FAIL_SIZEMISMATCH)
    );
    // 2 MiB request misaligned: FAIL_INPUT.
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x20_1000, M2, PageSize::Size2M, true)),
        Ok(RmpStatus::FAIL_INPUT)
    );
    // 4 KiB request on a 2 MiB entry: #NPF with RMP | SIZEM.
    assert_eq!(
        assign(&soc, 2 * M2, 0x40_0000, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    let ec = npf_code(soc.pvalidate(&pv(
        ASID,
        0x40_3000,
        2 * M2 + 0x3000,
        PageSize::Size4K,
        true,
    )));
    assert_ne!(ec & PF_RMP, 0);
    assert_ne!(ec & NPF_SIZEM, 0);
    // 2 MiB on 2 MiB validates the whole page.
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x40_0000, 2 * M2, PageSize::Size2M, true)),
        Ok(RmpStatus::SUCCESS)
    );
    assert!(
        soc.rmp_lookup(Spa(2 * M2 + 0x1F_F000))
            .unwrap()
            .0
            .validated()
    );
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x40_0000, 2 * M2, PageSize::Size2M, true)),
        Ok(RmpStatus::FAIL_UNCHANGED)
    );
}

fn adj(vmpl: u8, target: u8, perms: u8, vmsa: bool) -> RmpAdjustReq {
    RmpAdjustReq {
        asid: ASID,
        vmpl: Vmpl(vmpl),
        gpa: Gpa(0x8000),
        spa: Spa(0x6000),
        size: PageSize::Size4K,
        attrs: u64::from(target)
            | (u64::from(perms) << 8)
            | if vmsa { RMPADJUST_VMSA_PAGE_BIT } else { 0 },
    }
}

#[test]
fn rmpadjust_codes() {
    let soc = soc();
    private_page(&soc, 0x6000, 0x8000);
    // VMPL0 grants VMPL1 read+write.
    assert_eq!(
        soc.rmpadjust(&adj(0, 1, PERM_READ | PERM_WRITE, false)),
        Ok(RmpStatus::SUCCESS)
    );
    assert_eq!(
        soc.rmpread(Spa(0x6000)).unwrap().vmpl_perms(1),
        Some(PERM_READ | PERM_WRITE)
    );
    // VMPL1 passes read on to VMPL2, but cannot grant execute it does not hold.
    assert_eq!(
        soc.rmpadjust(&adj(1, 2, PERM_READ, false)),
        Ok(RmpStatus::SUCCESS)
    );
    assert_eq!(
        soc.rmpadjust(&adj(1, 2, PERM_ALL, false)),
        Ok(RmpStatus::FAIL_PERMISSION)
    );
    // Target not above the caller.
    assert_eq!(
        soc.rmpadjust(&adj(1, 1, PERM_READ, false)),
        Ok(RmpStatus::FAIL_PERMISSION)
    );
    assert_eq!(
        soc.rmpadjust(&adj(2, 0, 0, false)),
        Ok(RmpStatus::FAIL_PERMISSION)
    );
    // VMSA bit only from VMPL0.
    assert_eq!(
        soc.rmpadjust(&adj(1, 2, 0, true)),
        Ok(RmpStatus::FAIL_PERMISSION)
    );
    assert_eq!(soc.rmpadjust(&adj(0, 1, 0, true)), Ok(RmpStatus::SUCCESS));
    assert!(soc.rmpread(Spa(0x6000)).unwrap().vmsa());
    // FAIL_INPUT: target > 3, write without read, undefined perm bits, reserved attrs.
    assert_eq!(
        soc.rmpadjust(&adj(0, 4, 0, false)),
        Ok(RmpStatus::FAIL_INPUT)
    );
    assert_eq!(
        soc.rmpadjust(&adj(0, 1, PERM_WRITE, false)),
        Ok(RmpStatus::FAIL_INPUT)
    );
    assert_eq!(
        soc.rmpadjust(&adj(0, 1, 0x20, false)),
        Ok(RmpStatus::FAIL_INPUT)
    );
    let mut r = adj(0, 1, 0, false);
    r.attrs |= 1 << 20;
    assert_eq!(soc.rmpadjust(&r), Ok(RmpStatus::FAIL_INPUT));
    let mut r = adj(0, 1, 0, false);
    r.gpa = Gpa(0x8010);
    assert_eq!(soc.rmpadjust(&r), Ok(RmpStatus::FAIL_INPUT));
    // Another guest's page: #NPF.
    let mut r = adj(0, 1, 0, false);
    r.asid = OTHER;
    assert!(matches!(soc.rmpadjust(&r), Err(Fault::Npf { .. })));
}

#[test]
fn rmpadjust_size_and_validation() {
    let soc = soc();
    // Unvalidated page: #VC 0x404.
    assert_eq!(
        assign(&soc, 0x6000, 0x8000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.rmpadjust(&adj(0, 1, PERM_READ, false)),
        Err(Fault::Vc {
            exit_code: VC_NOT_VALIDATED,
            gpa: Gpa(0x8000)
        })
    );
    // 2 MiB request on 4 KiB entries: FAIL_SIZEMISMATCH.
    assert_eq!(
        assign(&soc, M2, 0x20_0000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    let r = RmpAdjustReq {
        gpa: Gpa(0x20_0000),
        spa: Spa(M2),
        size: PageSize::Size2M,
        ..adj(0, 1, PERM_READ, false)
    };
    assert_eq!(soc.rmpadjust(&r), Ok(RmpStatus::FAIL_SIZEMISMATCH));
    // 4 KiB request on a 2 MiB entry: #NPF RMP|SIZEM.
    assert_eq!(
        assign(&soc, 2 * M2, 0x40_0000, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    let r = RmpAdjustReq {
        gpa: Gpa(0x40_1000),
        spa: Spa(2 * M2 + 0x1000),
        size: PageSize::Size4K,
        ..adj(0, 1, PERM_READ, false)
    };
    match soc.rmpadjust(&r) {
        Err(Fault::Npf { error_code, .. }) => assert_ne!(error_code & NPF_SIZEM, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rmpquery_codes() {
    let soc = soc();
    private_page(&soc, 0x6000, 0x8000);
    assert_eq!(
        soc.rmpadjust(&adj(0, 2, PERM_READ, false)),
        Ok(RmpStatus::SUCCESS)
    );
    let q = RmpQueryReq {
        asid: ASID,
        vmpl: Vmpl(1),
        gpa: Gpa(0x8000),
        spa: Spa(0x6000),
        target_vmpl: 2,
    };
    let (st, out) = soc.rmpquery(&q).unwrap();
    assert_eq!(st, RmpStatus::SUCCESS);
    assert_eq!(
        out,
        RmpQuery {
            perms: PERM_READ,
            vmsa: false,
            size: PageSize::Size4K
        }
    );
    assert_eq!(
        soc.rmpquery(&RmpQueryReq {
            target_vmpl: 0,
            ..q
        })
        .unwrap()
        .0,
        RmpStatus::FAIL_PERMISSION
    );
    assert_eq!(
        soc.rmpquery(&RmpQueryReq {
            target_vmpl: 4,
            ..q
        })
        .unwrap()
        .0,
        RmpStatus::FAIL_INPUT
    );
    assert!(soc.rmpquery(&RmpQueryReq { asid: Asid(2), ..q }).is_err());
}

#[test]
fn firmware_path_sets_states_directly() {
    let soc = soc();
    // Pre-guest page turned guest-valid by the firmware (SNP_LAUNCH_UPDATE).
    assert_eq!(
        soc.rmpupdate(Spa(0x9000), &upd(0x1000, 1, 0, 1, 1)),
        RmpStatus::SUCCESS
    );
    let e = soc
        .fw_rmp_modify(Spa(0x9000), |e| {
            e.set_immutable(false);
            e.set_validated(true);
        })
        .unwrap();
    assert_eq!(e.page_state(), PageState::GUEST_VALID);
    // Context page.
    let mut ctx = RmpEntry::default();
    ctx.set_assigned(true);
    ctx.set_immutable(true);
    ctx.set_vmsa(true);
    soc.fw_rmp_write(Spa(0xA000), ctx).unwrap();
    assert_eq!(
        soc.fw_rmp_read(Spa(0xA000)).unwrap().page_state(),
        PageState::CONTEXT
    );
    assert!(soc.fw_rmp_read(Spa(1 << 40)).is_err());
}
