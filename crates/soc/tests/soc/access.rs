//! Every row of the access-check table (host-interfaces.md §3.4, APM Table 15-39),
//! the SEV C-bit rules, the fault error-code bits and the check priority.
use crate::common::*;
use softsev_abi::rmp::{PERM_EXEC_SUPERVISOR, PERM_EXEC_USER, PERM_READ, RMPADJUST_VMSA_PAGE_BIT};
use softsev_abi::{Gpa, Spa, Vmpl};
use softsev_soc::*;

const M2: u64 = 0x20_0000;

fn acc(gpa: u64, spa: u64, kind: AccessKind, c: bool) -> GuestAccess {
    GuestAccess::snp(ASID, Gpa(gpa), Spa(spa), kind, c)
}

fn npf(r: Result<(), Fault>) -> u64 {
    match r {
        Err(Fault::Npf { error_code, .. }) => error_code,
        other => panic!("expected #NPF, got {other:?}"),
    }
}

// ---- row: host data write / page-table access → hypervisor-owned, else #PF(RMP) ----

#[test]
fn host_write_to_guest_or_firmware_page_faults() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    let r = soc.host_write(Spa(0x5010), false, &[1, 2, 3]);
    assert_eq!(
        r,
        Err(SocError::Fault(Fault::PageFault {
            addr: Spa(0x5010),
            error_code: PF_PRESENT | PF_WRITE | PF_RMP
        }))
    );
    assert!(soc.host_write_check(Spa(0x5000)).is_err());
    // Firmware page.
    soc.rmpupdate(
        Spa(0x6000),
        &RmpUpdateInput {
            assigned: 1,
            immutable: 1,
            ..Default::default()
        },
    );
    assert!(matches!(
        soc.host_write(Spa(0x6000), true, &[0; 16])
            .unwrap_err()
            .fault(),
        Some(Fault::PageFault { .. })
    ));
    // Any 4 KiB page inside an assigned 2 MiB page.
    assert_eq!(
        assign(&soc, M2, 0, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    assert!(
        soc.host_write(Spa(M2 + 0x1234 * 16), false, &[0; 8])
            .is_err()
    );
    // A span crossing into a guest page faults at that page, after writing the first.
    let r = soc.host_write(Spa(0x4FF0), false, &[0xAB; 32]);
    assert_eq!(
        r.unwrap_err().fault(),
        Some(Fault::PageFault {
            addr: Spa(0x5000),
            error_code: PF_PRESENT | PF_WRITE | PF_RMP
        })
    );
    let mut b = [0u8; 16];
    soc.host_read(Spa(0x4FF0), false, &mut b).unwrap();
    assert_eq!(b, [0xAB; 16]);
}

#[test]
fn host_write_to_hypervisor_page_and_reads_of_anything_succeed() {
    let soc = soc();
    soc.host_write(Spa(0x7000), false, &[9; 4096]).unwrap();
    private_page(&soc, 0x5000, 0x1000);
    let mut b = [0u8; 4096];
    soc.host_read(Spa(0x5000), false, &mut b).unwrap();
    soc.host_read(Spa(0x5000), true, &mut b).unwrap();
}

#[test]
fn without_snp_nothing_is_rmp_checked() {
    let soc = Soc::new(SocConfig {
        snp_enabled: false,
        seed: Some(b"t".to_vec()),
        ..SocConfig::new(8 << 20)
    });
    soc.activate_key(ASID, &[1; 16]).unwrap();
    assert_eq!(
        assign(&soc, 0x5000, 0x1000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    soc.host_write(Spa(0x5000), false, &[1; 64]).unwrap();
    soc.device_write(Spa(0x5000), &[1; 64]).unwrap();
    soc.guest_check(&acc(0x1000, 0x5000, AccessKind::Read, true))
        .unwrap();
}

// ---- row: non-SNP guest data write / PT access → hypervisor-owned, else #NPF ----

#[test]
fn sev_and_es_guest_writes_need_hypervisor_owned_pages() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x5000, 0x1000, OTHER, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    for mode in [GuestMode::Sev, GuestMode::SevEs] {
        let mut a = acc(0x1000, 0x5000, AccessKind::Write, true);
        a.mode = mode;
        let ec = npf(soc.guest_check(&a));
        assert_eq!(
            ec & (PF_RMP | PF_WRITE | NPF_ENC | NPF_FINAL_GPA),
            PF_RMP | PF_WRITE | NPF_ENC | NPF_FINAL_GPA
        );
        a.kind = AccessKind::WalkWrite;
        let ec = npf(soc.guest_check(&a));
        assert_ne!(ec & NPF_PAGE_WALK, 0);
        // Reads are not checked; hypervisor-owned pages are writable.
        a.kind = AccessKind::Read;
        soc.guest_check(&a).unwrap();
        let mut a = acc(0x2000, 0x6000, AccessKind::Write, true);
        a.mode = mode;
        soc.guest_write(&a, &[5; 32]).unwrap();
        let mut back = [0u8; 32];
        soc.guest_read(
            &GuestAccess {
                kind: AccessKind::Read,
                ..a
            },
            &mut back,
        )
        .unwrap();
        assert_eq!(back, [5; 32]);
    }
}

// ---- rows: SNP guest fetch / PT access / C=1 data → covered, owned, reverse map,
//      mutable, page size → #NPF; validated → #VC; VMPL → #NPF ----

fn private_kinds() -> [(AccessKind, bool); 5] {
    [
        (AccessKind::Execute, false), // C forced to 1
        (AccessKind::WalkRead, false),
        (AccessKind::WalkWrite, false),
        (AccessKind::Read, true),
        (AccessKind::Write, true),
    ]
}

#[test]
fn snp_private_access_succeeds_on_own_validated_page() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    for (k, c) in private_kinds() {
        soc.guest_check(&acc(0x1000, 0x5000, k, c)).unwrap();
    }
}

#[test]
fn snp_private_access_not_covered() {
    let soc = Soc::new(SocConfig {
        rmp_coverage: Some(4 << 20),
        seed: Some(b"t".to_vec()),
        ..SocConfig::new(8 << 20)
    });
    soc.activate_key(ASID, &[1; 16]).unwrap();
    for (k, c) in private_kinds() {
        let ec = npf(soc.guest_check(&acc(0x1000, 5 << 20, k, c)));
        assert_ne!(ec & PF_RMP, 0);
        assert_ne!(ec & NPF_ENC, 0);
    }
}

#[test]
fn snp_private_access_not_guest_owned() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x6000, 0x1000, OTHER, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    for (k, c) in private_kinds() {
        // Unassigned page.
        npf(soc.guest_check(&acc(0x1000, 0x5000, k, c)));
        // Another guest's page.
        npf(soc.guest_check(&acc(0x1000, 0x6000, k, c)));
    }
}

#[test]
fn snp_private_access_reverse_map_mismatch() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    for (k, c) in private_kinds() {
        npf(soc.guest_check(&acc(0x2000, 0x5000, k, c)));
    }
}

#[test]
fn snp_private_access_immutable() {
    let soc = soc();
    soc.rmpupdate(
        Spa(0x5000),
        &RmpUpdateInput {
            gpa: 0x1000,
            assigned: 1,
            immutable: 1,
            asid: ASID.0,
            ..Default::default()
        },
    );
    soc.fw_rmp_modify(Spa(0x5000), |e| e.set_validated(true))
        .unwrap();
    for (k, c) in private_kinds() {
        npf(soc.guest_check(&acc(0x1000, 0x5000, k, c)));
    }
}

#[test]
fn snp_private_access_page_size_mismatch_both_ways() {
    let soc = soc();
    // RMP 4 KiB, NPT 2 MiB.
    private_page(&soc, 0x5000, 0x1000);
    // RMP 2 MiB, NPT 4 KiB.
    assert_eq!(
        assign(&soc, M2, 0x40_0000, ASID, PageSize::Size2M),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.pvalidate(&pv(ASID, 0x40_0000, M2, PageSize::Size2M, true)),
        Ok(RmpStatus::SUCCESS)
    );
    for (k, c) in private_kinds() {
        let mut a = acc(0x1000, 0x5000, k, c);
        a.npt_size = PageSize::Size2M;
        npf(soc.guest_check(&a));
        let mut a = acc(0x40_3000, M2 + 0x3000, k, c);
        npf(soc.guest_check(&a));
        a.npt_size = PageSize::Size2M;
        soc.guest_check(&a).unwrap();
    }
}

#[test]
fn snp_private_access_not_validated_is_vc_404() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x5000, 0x1000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    for (k, c) in private_kinds() {
        assert_eq!(
            soc.guest_check(&acc(0x1234 & !0xF | 0x1000, 0x5230, k, c)),
            Err(Fault::Vc {
                exit_code: 0x404,
                gpa: Gpa(0x1230)
            })
        );
    }
}

#[test]
fn priority_size_mismatch_before_validated_vmpl_last() {
    let soc = soc();
    assert_eq!(
        assign(&soc, 0x5000, 0x1000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    // Not validated and size mismatch: #NPF, not #VC.
    let mut a = acc(0x1000, 0x5000, AccessKind::Read, true);
    a.npt_size = PageSize::Size2M;
    npf(soc.guest_check(&a));
    // Not validated and no VMPL1 permission: #VC (VMPL is checked last).
    let mut a = acc(0x1000, 0x5000, AccessKind::Read, true);
    a.vmpl = Vmpl(1);
    assert!(matches!(soc.guest_check(&a), Err(Fault::Vc { .. })));
}

#[test]
fn snp_vmpl_permissions() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    let grant = |perms: u8| {
        soc.rmpadjust(&RmpAdjustReq {
            asid: ASID,
            vmpl: Vmpl(0),
            gpa: Gpa(0x1000),
            spa: Spa(0x5000),
            size: PageSize::Size4K,
            attrs: 1 | (u64::from(perms) << 8),
        })
    };
    let at1 = |kind, user| {
        let mut a = acc(0x1000, 0x5000, kind, true);
        a.vmpl = Vmpl(1);
        a.user = user;
        a
    };
    // VMPL1 has nothing yet.
    let ec = npf(soc.guest_check(&at1(AccessKind::Read, false)));
    assert_eq!(ec & (PF_RMP | NPF_VMPL), PF_RMP | NPF_VMPL);
    assert_eq!(grant(PERM_READ | PERM_EXEC_USER), Ok(RmpStatus::SUCCESS));
    soc.guest_check(&at1(AccessKind::Read, false)).unwrap();
    soc.guest_check(&at1(AccessKind::WalkRead, false)).unwrap();
    soc.guest_check(&at1(AccessKind::Execute, true)).unwrap();
    let ec = npf(soc.guest_check(&at1(AccessKind::Execute, false)));
    assert_ne!(ec & PF_FETCH, 0);
    assert_ne!(ec & NPF_VMPL, 0);
    let ec = npf(soc.guest_check(&at1(AccessKind::Write, true)));
    assert_eq!(
        ec & (PF_WRITE | PF_USER | NPF_VMPL),
        PF_WRITE | PF_USER | NPF_VMPL
    );
    assert_eq!(
        grant(PERM_READ | PERM_EXEC_SUPERVISOR),
        Ok(RmpStatus::SUCCESS)
    );
    soc.guest_check(&at1(AccessKind::Execute, false)).unwrap();
    // VMPL0 keeps everything.
    soc.guest_check(&acc(0x1000, 0x5000, AccessKind::Write, true))
        .unwrap();
}

// ---- row: SNP guest data write with C=0 → hypervisor-owned, else #NPF ----

#[test]
fn snp_shared_write_to_private_page_faults_read_gets_ciphertext() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    soc.guest_write(
        &acc(0x1000, 0x5000, AccessKind::Write, true),
        b"private data....",
    )
    .unwrap();
    let ec = npf(soc.guest_check(&acc(0x1000, 0x5000, AccessKind::Write, false)));
    assert_eq!(ec & (PF_RMP | PF_WRITE | NPF_ENC), PF_RMP | PF_WRITE);
    let mut b = [0u8; 16];
    soc.guest_read(&acc(0x1000, 0x5000, AccessKind::Read, false), &mut b)
        .unwrap();
    assert_ne!(&b, b"private data....");
    // Shared page: reads and writes in the clear.
    soc.guest_write(&acc(0x2000, 0x6000, AccessKind::Write, false), b"shared")
        .unwrap();
    let mut h = [0u8; 6];
    soc.host_read(Spa(0x6000), false, &mut h).unwrap();
    assert_eq!(&h, b"shared");
}

#[test]
fn snp_shared_write_through_2m_npt_needs_all_512_pages_shared() {
    let soc = soc();
    let mut a = acc(0x40_0000, M2 + 0x8000, AccessKind::Write, false);
    a.npt_size = PageSize::Size2M;
    soc.guest_check(&a).unwrap();
    assert_eq!(
        assign(&soc, M2 + 0x1F_F000, 0x1000, OTHER, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    npf(soc.guest_check(&a));
}

// ---- SEV rules: forced C-bit ----

#[test]
fn fetch_and_page_walks_are_always_private() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    soc.guest_write(&acc(0x1000, 0x5000, AccessKind::Write, true), &[0x90; 16])
        .unwrap();
    let mut b = [0u8; 16];
    // Fetch and walk with the PTE's C-bit clear still decrypt with the guest key.
    for k in [AccessKind::Execute, AccessKind::WalkRead] {
        let a = acc(0x1000, 0x5000, k, false);
        assert!(a.effective_c_bit());
        soc.guest_read(&a, &mut b).unwrap();
        assert_eq!(b, [0x90; 16]);
    }
}

#[test]
fn non_pae_modes_force_c_bit() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    let mut a = acc(0x1000, 0x5000, AccessKind::Write, false);
    a.paging = Paging::NoPae;
    assert!(a.effective_c_bit());
    soc.guest_write(&a, b"real mode").unwrap();
    let mut b = [0u8; 9];
    soc.guest_read(&acc(0x1000, 0x5000, AccessKind::Read, true), &mut b)
        .unwrap();
    assert_eq!(&b, b"real mode");
}

// ---- DMA ----

#[test]
fn dma_reaches_only_shared_pages() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    assert_eq!(
        soc.device_write(Spa(0x5008), &[1; 8]).unwrap_err().fault(),
        Some(Fault::Iommu {
            spa: Spa(0x5008),
            write: true
        })
    );
    let mut b = [0u8; 8];
    assert_eq!(
        soc.device_read(Spa(0x5000), &mut b).unwrap_err().fault(),
        Some(Fault::Iommu {
            spa: Spa(0x5000),
            write: false
        })
    );
    soc.device_write(Spa(0x6000), b"dma!dma!").unwrap();
    soc.device_read(Spa(0x6000), &mut b).unwrap();
    assert_eq!(&b, b"dma!dma!");
}

// ---- SNP remap attack, bad requests ----

#[test]
fn remap_attack_is_detected() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    // Host remaps the page to another GPA: the old GPA faults.
    assert_eq!(
        assign(&soc, 0x5000, 0x2000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    npf(soc.guest_check(&acc(0x1000, 0x5000, AccessKind::Read, true)));
    // Even mapped back to the same GPA, the page is no longer validated.
    assert_eq!(
        assign(&soc, 0x5000, 0x1000, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert!(matches!(
        soc.guest_check(&acc(0x1000, 0x5000, AccessKind::Read, true)),
        Err(Fault::Vc {
            exit_code: VC_NOT_VALIDATED,
            ..
        })
    ));
}

#[test]
fn vmsa_page_marked_from_vmpl0() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    let r = RmpAdjustReq {
        asid: ASID,
        vmpl: Vmpl(0),
        gpa: Gpa(0x1000),
        spa: Spa(0x5000),
        size: PageSize::Size4K,
        attrs: 1 | RMPADJUST_VMSA_PAGE_BIT,
    };
    assert_eq!(soc.rmpadjust(&r), Ok(RmpStatus::SUCCESS));
    assert!(soc.rmp_lookup(Spa(0x5000)).unwrap().0.vmsa());
}

#[test]
fn malformed_guest_requests_are_errors_not_panics() {
    let soc = soc();
    private_page(&soc, 0x5000, 0x1000);
    let mut b = [0u8; 32];
    assert!(matches!(
        soc.guest_read(&acc(0x1FF0, 0x5FF0, AccessKind::Read, true), &mut b),
        Err(SocError::CrossesPage { .. })
    ));
    assert!(matches!(
        soc.guest_read(&acc(0x1000, 0x5008, AccessKind::Read, true), &mut b),
        Err(SocError::OffsetMismatch { .. })
    ));
    let mut a = acc(0x1000, 0x5000, AccessKind::Read, true);
    a.asid = softsev_abi::Asid(7);
    assert_eq!(soc.guest_read(&a, &mut b), Err(SocError::NoKey(7)));
    assert!(matches!(
        soc.guest_read(&acc(0x1000, 1 << 40, AccessKind::Read, false), &mut b),
        Err(SocError::OutOfRange { .. })
    ));
}
