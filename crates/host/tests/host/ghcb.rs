//! GHCB scenarios: guest code on a vCPU drives every MSR-protocol request and NAE event
//! through the real protocol (GHCB in shared guest memory, VMGEXIT), including
//! malformed GHCBs; the host answers with the spec's values and errors, never panics,
//! and no page changes owner unless a page-state change asked for it.
use crate::common::*;
use softsev_abi::ghcb::*;
use softsev_abi::guest_msg::{MsgType, ReportReq, ReportRsp};
use softsev_abi::kvm::*;
use softsev_abi::rmp::RMPADJUST_VMSA_PAGE_BIT;
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{AddrRange, CBit, FwStatus, Gfn, Gpa, PAGE_SIZE_4K};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_guest::GuestPlatform;
use softsev_host::*;
use softsev_soc::PageSize;
use zerocopy::{FromBytes, IntoBytes};

const MEM: u64 = 32 << 20;
const GHCB_GPA: u64 = 0x10_0000;
const REQ: u64 = 0x10_1000;
const RESP: u64 = 0x10_2000;
const CERTS: u64 = 0x10_4000;
const SECRETS_GFN: u64 = 8;

fn gfn_range(start: u64, end: u64) -> AddrRange<Gfn> {
    AddrRange {
        start: Gfn(start),
        end: Gfn(end),
    }
}

type G = Result<GuestEnd, GuestFault>;

fn msr(cpu: &mut GuestCpu, m: GhcbMsg) -> Result<GhcbMsg, GuestFault> {
    Ok(GhcbMsg::decode(cpu.msr_protocol(m.encode())?))
}

/// Make the GHCB page shared by MSR PSC and register it.
fn setup_ghcb(cpu: &mut GuestCpu) -> Result<(), GuestFault> {
    let gfn = GHCB_GPA >> 12;
    assert_eq!(
        msr(
            cpu,
            GhcbMsg::PscReq {
                gfn,
                op: PscOp::SHARED
            }
        )?,
        GhcbMsg::PscResp { error: 0 }
    );
    assert_eq!(
        msr(cpu, GhcbMsg::RegGpaReq { gfn })?,
        GhcbMsg::RegGpaResp { gfn }
    );
    Ok(())
}

fn nae(
    cpu: &mut GuestCpu,
    code: NaeExit,
    i1: u64,
    i2: u64,
    f: impl FnOnce(&mut Ghcb),
) -> Result<Ghcb, GuestFault> {
    let mut g = Ghcb::request(2, code, i1, i2);
    f(&mut g);
    cpu.ghcb_call(Gpa(GHCB_GPA), &g)
}

fn bad(g: &Ghcb) -> Option<GhcbError> {
    (g.sw_exit_info_1 == EXIT_INFO1_BAD_INPUT).then_some(GhcbError(g.sw_exit_info_2))
}

/// A PSC descriptor in the shared buffer.
fn psc(
    cpu: &mut GuestCpu,
    hdr: PscHdr,
    entries: &[PscEntry],
) -> Result<(Ghcb, PscDesc), GuestFault> {
    let mut d = PscDesc {
        hdr,
        ..Default::default()
    };
    d.entries[..entries.len()].copy_from_slice(entries);
    let g = nae(cpu, NaeExit::PSC, 0, 0, |g| {
        g.shared_buffer.copy_from_slice(d.as_bytes());
        g.set(
            GhcbField::SwScratch,
            GHCB_GPA + GHCB_SHARED_BUF_OFFSET as u64,
        );
    })?;
    let out = PscDesc::read_from_bytes(&g.shared_buffer[..]).unwrap();
    Ok((g, out))
}

fn hdr(cur: u16, end: u16) -> PscHdr {
    PscHdr {
        cur_entry: cur,
        end_entry: end,
        reserved: 0,
    }
}

fn vm_with(vcpus: u32, certs: bool) -> TestVm {
    launched_snp_with(
        &host_with(1 << 30, ModuleParams::default()),
        MEM,
        vcpus,
        8,
        SNP_POLICY,
        Some(SECRETS_GFN),
        certs,
    )
}

#[test]
fn msr_protocol_requests() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_cpuid(&[CpuidEntry {
        function: 0x8000_001F,
        index: 0,
        eax: 0x1_B00F,
        ebx: 0x0000_0173,
        ecx: 1006,
        edx: 16,
    }]);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        // At RESET the MSR holds the SEV-info response.
        let info = GhcbMsg::SevInfoResp {
            max: 2,
            min: 1,
            cbit: 51,
        };
        assert_eq!(GhcbMsg::decode(cpu.ghcb_msr()), info);
        assert_eq!(msr(cpu, GhcbMsg::SevInfoReq)?, info);
        assert_eq!(
            msr(
                cpu,
                GhcbMsg::CpuidReq {
                    function: 0x8000_001F,
                    reg: CpuidReg::Ebx
                }
            )?,
            GhcbMsg::CpuidResp {
                reg: CpuidReg::Ebx,
                value: 0x173
            }
        );
        assert_eq!(
            msr(
                cpu,
                GhcbMsg::CpuidReq {
                    function: 0x8000_001F,
                    reg: CpuidReg::Edx
                }
            )?,
            GhcbMsg::CpuidResp {
                reg: CpuidReg::Edx,
                value: 16
            }
        );
        assert_eq!(
            msr(cpu, GhcbMsg::HvFeaturesReq)?,
            GhcbMsg::HvFeaturesResp {
                features: GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION
            }
        );
        assert_eq!(
            msr(cpu, GhcbMsg::PreferredGpaReq)?,
            GhcbMsg::PreferredGpaResp {
                gfn: GHCB_MSR_GFN_NONE
            }
        );
        // Unknown requests and run-at-VMPL (not supported by KVM): MSR unchanged.
        assert_eq!(cpu.msr_protocol(0x3FF)?, 0x3FF);
        let v = GhcbMsg::VmplReq { vmpl: 1 }.encode();
        assert_eq!(cpu.msr_protocol(v)?, v);
        // PSC by MSR with an operation that is neither private nor shared.
        assert_eq!(
            cpu.msr_protocol(
                GhcbMsg::PscReq {
                    gfn: 0x300,
                    op: PscOp::PSMASH
                }
                .encode()
            )?,
            GHCB_MSR_PSC_RESP_ERROR
        );
        setup_ghcb(cpu)?;
        // AP reset hold: exits to the VMM, answered non-zero on re-entry.
        assert_eq!(
            msr(cpu, GhcbMsg::ApResetHoldReq)?,
            GhcbMsg::ApResetHoldResp { value: 1 }
        );
        // Termination with reason set 1, code 4.
        cpu.msr_protocol(GhcbMsg::TermReq { set: 1, code: 4 }.encode())?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(
        run_vmm(&t.vm, &mut t.vcpus[0], false),
        VcpuExit::ApResetHold
    );
    let exit = run_vmm(&t.vm, &mut t.vcpus[0], false);
    assert_eq!(
        exit,
        VcpuExit::SystemEvent {
            kind: SystemEventType::SEV_TERM,
            data: vec![GhcbMsg::TermReq { set: 1, code: 4 }.encode()],
        }
    );
    // The GHCB page went shared: attribute clear, its private page given back.
    let snap =
        t.vm.rmp_snapshot(gfn_range(GHCB_GPA >> 12, (GHCB_GPA >> 12) + 1));
    assert!(!snap[0].private);
    assert!(snap[0].rmp.is_none_or(|r| !r.entry.assigned()));
    let ev = t.vm.events().snapshot();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::MapGpaRange {
            msr: true,
            npages: 1,
            private: false,
            ..
        }
    )));
}

#[test]
fn msr_psc_without_exit_hypercall_fails() {
    let h = host();
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    let (_uaddr, _gmem) = add_memory(&vm, 4 << 20);
    let (r, _) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart {
            policy: SNP_POLICY,
            ..Default::default()
        },
    );
    r.unwrap();
    let mut v = vm.create_vcpu(0).unwrap();
    sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_FINISH,
        &mut KvmSevSnpLaunchFinish::default(),
    )
    .0
    .unwrap();
    v.set_guest(|cpu: &mut GuestCpu| -> G {
        let r = cpu.msr_protocol(
            GhcbMsg::PscReq {
                gfn: 5,
                op: PscOp::PRIVATE,
            }
            .encode(),
        )?;
        assert_eq!(r, GHCB_MSR_PSC_RESP_ERROR);
        Ok(GuestEnd::Halt)
    });
    assert_eq!(v.run().unwrap().clone(), VcpuExit::Hlt);
    assert!(!vm.is_private(Gfn(5)));
}

#[test]
fn malformed_ghcbs_get_the_spec_errors_and_change_nothing() {
    let mut t = vm_with(1, false);
    let gfns = 0..(MEM >> 12);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        // Make the GHCB shared but do not register it yet.
        let gfn = GHCB_GPA >> 12;
        assert_eq!(
            msr(
                cpu,
                GhcbMsg::PscReq {
                    gfn,
                    op: PscOp::SHARED
                }
            )?,
            GhcbMsg::PscResp { error: 0 }
        );
        let g = nae(cpu, NaeExit::HV_FEATURES, 0, 0, |_| {})?;
        assert_eq!(
            bad(&g),
            Some(GhcbError::NOT_REGISTERED),
            "unregistered GHCB GPA"
        );
        // Registered elsewhere: still not registered for this GPA.
        msr(cpu, GhcbMsg::RegGpaReq { gfn: gfn + 1 })?;
        let g = nae(cpu, NaeExit::HV_FEATURES, 0, 0, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::NOT_REGISTERED));
        msr(cpu, GhcbMsg::RegGpaReq { gfn })?;
        let g = nae(cpu, NaeExit::HV_FEATURES, 0, 0, |_| {})?;
        assert_eq!(
            (g.sw_exit_info_1, g.sw_exit_info_2),
            (0, GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION)
        );
        // Bad usage.
        let g = nae(cpu, NaeExit::HV_FEATURES, 0, 0, |g| g.ghcb_usage = 1)?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_USAGE));
        // Exit code / infos not marked valid.
        let g = nae(cpu, NaeExit::HV_FEATURES, 0, 0, |g| {
            g.valid_bitmap = [0; 16]
        })?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        // CPUID without RAX; leaf 0xD without XCR0.
        let g = nae(cpu, NaeExit::CPUID, 0, 0, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        let g = nae(cpu, NaeExit::CPUID, 0, 0, |g| g.set(GhcbField::Rax, 0xD))?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        // MSR write without RAX/RDX; bad access type.
        let g = nae(cpu, NaeExit::MSR, 1, 0, |g| g.set(GhcbField::Rcx, 0x10))?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        let g = nae(cpu, NaeExit::MSR, 2, 0, |g| g.set(GhcbField::Rcx, 0x10))?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        // Unknown event.
        let g = nae(cpu, NaeExit(0x8000_0099), 0, 0, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_EVENT));
        // Scratch outside the shared buffer (MMIO, PSC); scratch missing.
        let g = nae(cpu, NaeExit::MMIO_READ, 0xFEE0_0000, 4, |g| {
            g.set(GhcbField::SwScratch, GHCB_GPA + 0x100)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_SCRATCH_AREA));
        let g = nae(cpu, NaeExit::MMIO_READ, 0xFEE0_0000, 4, |g| {
            g.set(GhcbField::SwScratch, GHCB_GPA + 0xFEE)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_SCRATCH_AREA));
        let g = nae(cpu, NaeExit::MMIO_READ, 0xFEE0_0000, 9, |g| {
            g.set(GhcbField::SwScratch, GHCB_GPA + 0x800)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        let g = nae(cpu, NaeExit::PSC, 0, 0, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        let g = nae(cpu, NaeExit::PSC, 0, 0, |g| {
            g.set(GhcbField::SwScratch, REQ)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_SCRATCH_AREA));
        // Guest requests: misaligned or equal pages.
        let g = nae(cpu, NaeExit::GUEST_REQUEST, REQ + 8, RESP, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        let g = nae(cpu, NaeExit::GUEST_REQUEST, REQ, REQ, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        // AP creation with junk.
        let g = nae(
            cpu,
            NaeExit::AP_CREATION,
            ap_creation_info1(ApCreateOp(9), 0),
            0x20_1000,
            |_| {},
        )?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        let g = nae(
            cpu,
            NaeExit::AP_CREATION,
            ap_creation_info1(ApCreateOp::CREATE, 77),
            0x20_1000,
            |_| {},
        )?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT), "no such APIC id");
        // Full GHCB at GPA 0: resumed untouched.
        cpu.set_ghcb_msr(0);
        cpu.vmgexit()?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    // Only the GHCB page changed state (the one PSC the guest asked for).
    let snap = t.vm.rmp_snapshot(gfn_range(gfns.start, gfns.end));
    for GfnState {
        gfn: Gfn(g),
        private,
        rmp,
    } in snap
    {
        if g == GHCB_GPA >> 12 {
            assert!(!private);
            continue;
        }
        assert!(private, "GFN {g:#x} still private");
        if let Some(RmpState { entry: e, .. }) = rmp {
            // Launched pages stay guest-valid; nothing else was prepared.
            assert_eq!(e.assigned(), g <= SECRETS_GFN, "GFN {g:#x}");
        }
    }
    let errors =
        t.vm.events()
            .snapshot()
            .into_iter()
            .filter(|e| matches!(e, Event::GhcbError { .. }))
            .count();
    assert!(errors >= 18, "every rejection is logged ({errors})");
}

#[test]
fn psc_253_entries_progress_and_errors() {
    let mut t = vm_with(1, false);
    let base: u64 = 0x400; // GFN of 4 MiB
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        // 253 4 KiB pages to shared: one batch, every entry completed.
        let shared: Vec<PscEntry> = (0..253)
            .map(|i| PscEntry::new(base + i, PscOp::SHARED, false))
            .collect();
        let (g, d) = psc(cpu, hdr(0, 252), &shared)?;
        assert_eq!((g.sw_exit_info_1, g.sw_exit_info_2), (0, 0));
        assert_eq!(d.hdr.cur_entry, 253);
        assert!(d.entries.iter().all(|e| e.cur_page() == 1));
        // And back to private; validate and use them.
        let private: Vec<PscEntry> = (0..253)
            .map(|i| PscEntry::new(base + i, PscOp::PRIVATE, false))
            .collect();
        let (g, _) = psc(cpu, hdr(0, 252), &private)?;
        assert_eq!(g.sw_exit_info_2, 0);
        for i in 0..253 {
            let gpa = (base + i) << 12;
            assert_eq!(
                cpu.pvalidate(Gpa(gpa), PageSize::Size4K, true)?,
                softsev_abi::rmp::RmpStatus::SUCCESS
            );
        }
        cpu.write(Gpa((base << 12) + 16), CBit::Private, b"private data")?;
        let mut buf = [0u8; 12];
        cpu.read(Gpa((base << 12) + 16), CBit::Private, &mut buf)?;
        assert_eq!(&buf, b"private data");
        // Reading a private page not yet validated: #VC 0x404.
        let r = cpu.read(Gpa((base + 300) << 12), CBit::Private, &mut buf);
        assert!(
            matches!(r, Err(GuestFault::Vc { code: 0x404, .. })),
            "{r:?}"
        );
        // Header errors: end_entry ≥ 253.
        let (g, d) = psc(cpu, hdr(0, 253), &shared)?;
        assert_eq!(g.sw_exit_info_2, PSC_ERROR_INVALID_HDR);
        assert_eq!(d.hdr.cur_entry, 0);
        // cur > end: nothing to do, success.
        let (g, _) = psc(cpu, hdr(5, 2), &shared)?;
        assert_eq!(g.sw_exit_info_2, 0);
        // Entry errors: cur_page beyond the page count; a misaligned 2 MiB GFN.
        let mut e = PscEntry::new(base + 3, PscOp::SHARED, false);
        e.set_cur_page(2);
        let (g, d) = psc(
            cpu,
            hdr(0, 1),
            &[PscEntry::new(base + 2, PscOp::SHARED, false), e],
        )?;
        assert_eq!(g.sw_exit_info_2, PSC_ERROR_INVALID_ENTRY);
        assert_eq!(
            d.hdr.cur_entry, 1,
            "the first entry was done before the bad one"
        );
        let (g, _) = psc(
            cpu,
            hdr(0, 0),
            &[PscEntry::new(base + 1, PscOp::PRIVATE, true)],
        )?;
        assert_eq!(g.sw_exit_info_2, PSC_ERROR_INVALID_ENTRY);
        // A GFN outside guest memory: the VMM fails the conversion → generic error.
        let (g, _) = psc(
            cpu,
            hdr(0, 0),
            &[PscEntry::new(0x10_0000, PscOp::SHARED, false)],
        )?;
        assert_eq!(g.sw_exit_info_2, PSC_ERROR_GENERIC);
        // PSMASH/UNSMASH hints complete without action.
        let (g, d) = psc(cpu, hdr(0, 0), &[PscEntry::new(base, PscOp::PSMASH, false)])?;
        assert_eq!(
            (g.sw_exit_info_2, d.hdr.cur_entry, d.entries[0].cur_page()),
            (0, 1, 1)
        );
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    let snap = t.vm.rmp_snapshot(gfn_range(base, base + 512));
    let asid = t.vm.sev_state().asid();
    for GfnState {
        gfn: Gfn(g),
        private,
        rmp,
    } in snap
    {
        if g < base + 253 {
            let shared_now = g == base + 2;
            assert_eq!(private, !shared_now, "GFN {g:#x}");
            if !shared_now {
                let RmpState { entry: e, size } = rmp.unwrap();
                assert!(e.assigned() && e.validated() && e.asid() == asid && e.gpa() == g << 12);
                assert_eq!(size, PageSize::Size4K);
            }
        } else {
            // Never converted, never used except the faulting read at +300 (prepared, not validated).
            assert!(private);
            if let Some(RmpState { entry: e, .. }) = rmp {
                assert!(!e.validated());
            }
        }
    }
    // The host reads ciphertext of the private page.
    let Some(Backing::Private(spa)) = t.vm.lookup(Gpa(base << 12)) else {
        panic!("GFN {base:#x} has no private backing");
    };
    let mut raw = [0u8; 12];
    t.vm.host()
        .soc()
        .host_read(softsev_abi::Spa(spa.0 + 16), false, &mut raw)
        .unwrap();
    assert_ne!(&raw, b"private data");
    // One MAP_GPA_RANGE exit per 253-entry batch.
    let maps: Vec<_> =
        t.vm.events()
            .snapshot()
            .into_iter()
            .filter_map(|e| match e {
                Event::MapGpaRange {
                    npages, msr: false, ..
                } => Some(npages),
                _ => None,
            })
            .collect();
    assert_eq!(&maps[..2], &[253, 253]);
}

#[test]
fn psc_2m_entries_partial_progress_and_psmash() {
    let mut t = vm_with(1, false);
    let a: u64 = 0x600; // 6 MiB
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        let two = [
            PscEntry::new(a, PscOp::SHARED, true),
            PscEntry::new(a + 512, PscOp::SHARED, true),
        ];
        let (g, d) = psc(cpu, hdr(0, 1), &two)?;
        assert_eq!(g.sw_exit_info_2, 0);
        assert_eq!(
            (d.entries[0].cur_page(), d.entries[1].cur_page()),
            (512, 512)
        );
        let two = [
            PscEntry::new(a, PscOp::PRIVATE, true),
            PscEntry::new(a + 512, PscOp::PRIVATE, true),
        ];
        let (g, _) = psc(cpu, hdr(0, 1), &two)?;
        assert_eq!(g.sw_exit_info_2, 0);
        assert_eq!(
            cpu.pvalidate(Gpa(a << 12), PageSize::Size2M, true)?,
            softsev_abi::rmp::RmpStatus::SUCCESS
        );
        // A 2 MiB entry already half done continues as 4 KiB pages.
        let mut half = PscEntry::new(a + 512, PscOp::SHARED, true);
        half.set_cur_page(256);
        let (g, d) = psc(cpu, hdr(0, 0), &[half])?;
        assert_eq!((g.sw_exit_info_2, d.entries[0].cur_page()), (0, 512));
        // One 4 KiB page out of the validated 2 MiB page: the host PSMASHes.
        let (g, _) = psc(
            cpu,
            hdr(0, 0),
            &[PscEntry::new(a + 1, PscOp::SHARED, false)],
        )?;
        assert_eq!(g.sw_exit_info_2, 0);
        // The rest of the 2 MiB page is still validated and usable as 4 KiB pages.
        cpu.write(Gpa((a + 2) << 12), CBit::Private, b"still here")?;
        Ok(GuestEnd::Halt)
    });
    // Prefault on conversion: private 2 MiB ranges become 2 MiB RMP entries at once.
    loop {
        let exit = t.vcpus[0].run().unwrap();
        match exit {
            VcpuExit::Hypercall { args, .. } => {
                if args[0] == (a + 768) << 12 {
                    assert_eq!(args[1], 256, "the rest of a half-done 2 MiB entry");
                    assert_eq!(args[2] & 0xF, KVM_MAP_GPA_RANGE_PAGE_SZ_2M);
                }
                assert!(t.vm.handle_map_gpa_range(exit, Prefault::Now));
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let snap = t.vm.rmp_snapshot(gfn_range(a, a + 1024));
    let RmpState {
        entry: e0,
        size: s0,
    } = snap[0].rmp.unwrap();
    assert_eq!(s0, PageSize::Size4K, "smashed");
    assert!(e0.assigned() && e0.validated());
    assert!(snap[1].rmp.is_none_or(|r| !r.entry.assigned()));
    let e2 = snap[2].rmp.unwrap().entry;
    assert!(e2.validated() && e2.gpa() == (a + 2) << 12);
    // The second 2 MiB range: first half private (2 MiB entry smashed by the partial
    // conversion), second half shared.
    assert!(snap[512 + 255].private && !snap[512 + 256].private);
    // RMP work done by the gmem hooks is in the VM's log.
    assert!(
        t.vm.events()
            .snapshot()
            .iter()
            .any(|e| matches!(e, Event::Psmash { status: 0, .. }))
    );
}

#[test]
fn implicit_conversion_through_memory_fault() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        // A shared access to a private GFN: KVM_EXIT_MEMORY_FAULT, the VMM converts.
        cpu.write(Gpa(0x30_0000), CBit::Shared, b"hello host")?;
        Ok(GuestEnd::Halt)
    });
    let exit = t.vcpus[0].run().unwrap().clone();
    assert_eq!(
        exit,
        VcpuExit::MemoryFault {
            flags: 0,
            gpa: 0x30_0000,
            size: PAGE_SIZE_4K
        }
    );
    assert_eq!(exit.errno(), Some(Errno::EFAULT));
    t.vm.convert_memory(
        Gpa(0x30_0000),
        PAGE_SIZE_4K,
        MemAttr::Shared,
        Prefault::OnAccess,
    )
    .unwrap();
    assert_eq!(t.vcpus[0].run().unwrap().clone(), VcpuExit::Hlt);
    let mut b = [0u8; 10];
    t.vm.host()
        .user()
        .read(Hva(t.uaddr.0 + 0x30_0000), &mut b)
        .unwrap();
    assert_eq!(&b, b"hello host");
}

#[test]
fn mmio_io_cpuid_msr_and_misc_events() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_cpuid(&[CpuidEntry {
        function: 1,
        index: 0,
        eax: 0xA00F11,
        ebx: 2,
        ecx: 3,
        edx: 4,
    }]);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        // KVM's `sev_es_validate_vmgexit` wants RAX and RCX for CPUID.
        let g = nae(cpu, NaeExit::CPUID, 0, 0, |g| g.set(GhcbField::Rax, 1))?;
        assert_eq!(
            (g.sw_exit_info_1, g.sw_exit_info_2),
            (EXIT_INFO1_BAD_INPUT, GhcbError::MISSING_INPUT.0)
        );
        let g = nae(cpu, NaeExit::CPUID, 0, 0, |g| {
            g.set(GhcbField::Rax, 1);
            g.set(GhcbField::Rcx, 0);
        })?;
        assert_eq!((g.rax, g.rbx, g.rcx, g.rdx), (0xA00F11, 2, 3, 4));
        assert!(g.is_valid(GhcbField::Rax) && g.is_valid(GhcbField::Rdx));
        let g = nae(cpu, NaeExit::MSR, 1, 0, |g| {
            g.set(GhcbField::Rcx, 0xC001_0010);
            g.set(GhcbField::Rax, 0x1234);
            g.set(GhcbField::Rdx, 0x5);
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        let g = nae(cpu, NaeExit::MSR, 0, 0, |g| {
            g.set(GhcbField::Rcx, 0xC001_0010)
        })?;
        assert_eq!((g.rax, g.rdx), (0x1234, 5));
        // MMIO write then read (data through the scratch area).
        let sb = GHCB_GPA + GHCB_SHARED_BUF_OFFSET as u64;
        let g = nae(cpu, NaeExit::MMIO_WRITE, 0xFED0_0000, 4, |g| {
            g.set(GhcbField::SwScratch, sb + 16);
            g.shared_buffer[16..20].copy_from_slice(&0xCAFE_F00Du32.to_le_bytes());
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        let g = nae(cpu, NaeExit::MMIO_READ, 0xFED0_0004, 8, |g| {
            g.set(GhcbField::SwScratch, sb)
        })?;
        assert_eq!(
            &g.shared_buffer[..8],
            &0x1122_3344_5566_7788u64.to_le_bytes()
        );
        // Port I/O: OUT 0x3F8 byte, IN 0x71 word.
        let g = nae(cpu, NaeExit::IOIO, (0x3F8 << 16) | (1 << 4), 0, |g| {
            g.set(GhcbField::Rax, 0x41)
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        let g = nae(cpu, NaeExit::IOIO, (0x71 << 16) | (1 << 5) | 1, 0, |g| {
            g.set(GhcbField::Rax, 0xFFFF_0000)
        })?;
        assert_eq!(g.rax, 0xFFFF_BEEF);
        // AP jump table set/get, AP HLT loop, NMI complete, termination.
        nae(cpu, NaeExit::AP_JUMP_TABLE, 0, 0x9000, |_| {})?;
        let g = nae(cpu, NaeExit::AP_JUMP_TABLE, 1, 0, |_| {})?;
        assert_eq!(g.sw_exit_info_2, 0x9000);
        let g = nae(cpu, NaeExit::AP_HLT_LOOP, 0, 0, |_| {})?;
        assert_eq!(g.sw_exit_info_2, 1);
        let g = nae(cpu, NaeExit::NMI_COMPLETE, 0, 0, |_| {})?;
        assert_eq!(g.sw_exit_info_1, 0);
        nae(cpu, NaeExit::TERM_REQUEST, 0x41, 0, |_| {})?;
        Ok(GuestEnd::Halt)
    });
    let v = &mut t.vcpus[0];
    let exit = run_vmm(&t.vm, v, false);
    assert_eq!(
        exit,
        VcpuExit::Mmio {
            gpa: 0xFED0_0000,
            len: 4,
            write: true,
            data: [0x0D, 0xF0, 0xFE, 0xCA, 0, 0, 0, 0]
        }
    );
    let exit = run_vmm(&t.vm, v, false);
    assert!(matches!(
        exit,
        VcpuExit::Mmio {
            gpa: 0xFED0_0004,
            len: 8,
            write: false,
            ..
        }
    ));
    if let VcpuExit::Mmio { data, .. } = v.exit_mut() {
        *data = 0x1122_3344_5566_7788u64.to_le_bytes();
    }
    let exit = run_vmm(&t.vm, v, false);
    assert_eq!(
        exit,
        VcpuExit::Io {
            port: 0x3F8,
            size: 1,
            write: true,
            data: 0x41
        }
    );
    let exit = run_vmm(&t.vm, v, false);
    assert_eq!(
        exit,
        VcpuExit::Io {
            port: 0x71,
            size: 2,
            write: false,
            data: 0
        }
    );
    if let VcpuExit::Io { data, .. } = v.exit_mut() {
        *data = 0xBEEF;
    }
    assert_eq!(run_vmm(&t.vm, v, false), VcpuExit::ApResetHold);
    let exit = run_vmm(&t.vm, v, false);
    assert_eq!(
        exit,
        VcpuExit::SystemEvent {
            kind: SystemEventType::SEV_TERM,
            data: vec![GHCB_GPA]
        }
    );
}

#[test]
fn ap_creation_create_destroy_and_vmsa_checks() {
    let mut t = vm_with(3, false);
    let vmsa: u64 = 0x20_1000;
    let features = t.vm.sev_state().vmsa_features();
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        // A VMSA page: private, validated, VMSA bit set by RMPADJUST (target VMPL1).
        assert_eq!(
            cpu.pvalidate(Gpa(vmsa), PageSize::Size4K, true)?,
            softsev_abi::rmp::RmpStatus::SUCCESS
        );
        let st = cpu.rmpadjust(Gpa(vmsa), PageSize::Size4K, 1 | RMPADJUST_VMSA_PAGE_BIT)?;
        assert_eq!(st, softsev_abi::rmp::RmpStatus::SUCCESS);
        let create = |apic| ap_creation_info1(ApCreateOp::CREATE, apic);
        // Checks: RAX missing / wrong features, 2 MiB-aligned or unaligned VMSA GPA.
        let g = nae(cpu, NaeExit::AP_CREATION, create(1), vmsa, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        let g = nae(cpu, NaeExit::AP_CREATION, create(1), vmsa, |g| {
            g.set(GhcbField::Rax, features ^ 0x20)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        let g = nae(cpu, NaeExit::AP_CREATION, create(1), 0x20_0000, |g| {
            g.set(GhcbField::Rax, features)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        let g = nae(cpu, NaeExit::AP_CREATION, create(1), vmsa + 8, |g| {
            g.set(GhcbField::Rax, features)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        // Good: vCPU 1 gets the VMSA; vCPU 2 gets a page that is not a VMSA.
        let g = nae(cpu, NaeExit::AP_CREATION, create(1), vmsa, |g| {
            g.set(GhcbField::Rax, features)
        })?;
        assert_eq!((g.sw_exit_info_1, g.sw_exit_info_2), (0, 0));
        let g = nae(cpu, NaeExit::AP_CREATION, create(2), vmsa + 0x1000, |g| {
            g.set(GhcbField::Rax, features)
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    assert_eq!(t.vcpus[1].ap_state(), ApState::Created(Gpa(vmsa)));
    t.vcpus[1].set_guest(move |cpu: &mut GuestCpu| -> G {
        assert_eq!(cpu.vmsa_gpa(), Some(Gpa(vmsa)));
        Ok(GuestEnd::Halt)
    });
    assert_eq!(t.vcpus[1].run().unwrap().clone(), VcpuExit::Hlt);
    t.vcpus[2].set_guest(|_| Ok(GuestEnd::Halt));
    assert!(
        matches!(t.vcpus[2].run().unwrap(), VcpuExit::FailEntry { .. }),
        "VMRUN refuses a non-VMSA page"
    );
    // DESTROY parks the AP: KVM_RUN fails with EINVAL.
    let mut t2 = vm_with(2, false);
    t2.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        let g = nae(
            cpu,
            NaeExit::AP_CREATION,
            ap_creation_info1(ApCreateOp::DESTROY, 1),
            0,
            |_| {},
        )?;
        assert_eq!(g.sw_exit_info_1, 0);
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t2.vm, &mut t2.vcpus[0], false), VcpuExit::Hlt);
    t2.vcpus[1].set_guest(|_| Ok(GuestEnd::Halt));
    assert_eq!(t2.vcpus[1].run().unwrap_err().errno, Errno::EINVAL);
}

/// The guest side of an attestation request: VMPCK0 from the secrets page, a sealed
/// MSG_REPORT_REQ in the shared request page, the NAE event, the response opened.
fn client(cpu: &mut GuestCpu) -> Result<GuestMsgClient, GuestFault> {
    let mut sp = vec![0u8; 4096];
    cpu.read(Gpa(SECRETS_GFN << 12), CBit::Private, &mut sp)?;
    let secrets = SecretsPage::parse(&sp).expect("secrets page");
    Ok(GuestMsgClient::new(secrets.vmpck(0).unwrap(), 0))
}

fn report_guest(
    cpu: &mut GuestCpu,
    client: &mut GuestMsgClient,
    ext: Option<(u64, u64)>,
) -> Result<(Ghcb, Option<ReportRsp>), GuestFault> {
    let req = ReportReq {
        report_data: [0x77; 64],
        ..Default::default()
    };
    let msg = client
        .request(MsgType::REPORT_REQ, 1, req.as_bytes())
        .unwrap();
    let mut page = vec![0u8; 4096];
    page[..msg.len()].copy_from_slice(&msg);
    cpu.write(Gpa(REQ), CBit::Shared, &page)?;
    let g = match ext {
        None => nae(cpu, NaeExit::GUEST_REQUEST, REQ, RESP, |_| {})?,
        Some((gpa, n)) => nae(cpu, NaeExit::EXT_GUEST_REQUEST, REQ, RESP, |g| {
            g.set(GhcbField::Rax, gpa);
            g.set(GhcbField::Rbx, n);
        })?,
    };
    if g.sw_exit_info_2 != 0 {
        return Ok((g, None));
    }
    cpu.read(Gpa(RESP), CBit::Shared, &mut page)?;
    let payload = client.response(&page).expect("response opens with VMPCK0");
    Ok((g, Some(ReportRsp::read_from_prefix(&payload).unwrap().0)))
}

fn share_pages(cpu: &mut GuestCpu, gpas: &[u64]) -> Result<(), GuestFault> {
    let e: Vec<PscEntry> = gpas
        .iter()
        .map(|g| PscEntry::new(g >> 12, PscOp::SHARED, false))
        .collect();
    let (g, _) = psc(cpu, hdr(0, (e.len() - 1) as u16), &e)?;
    assert_eq!(g.sw_exit_info_2, 0);
    Ok(())
}

#[test]
fn guest_request_reaches_the_firmware_and_back() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        share_pages(cpu, &[REQ, RESP, CERTS])?;
        let mut c = client(cpu)?;
        let (g, rsp) = report_guest(cpu, &mut c, None)?;
        assert_eq!((g.sw_exit_info_1, g.sw_exit_info_2), (0, 0));
        let rsp = rsp.unwrap();
        assert_eq!(rsp.status, 0);
        assert_eq!(rsp.report.report_data, [0x77; 64]);
        assert_eq!(rsp.report.host_data, [0x42; 32]);
        // Without the certificate exit, an extended request gets an empty table.
        cpu.write(Gpa(CERTS), CBit::Shared, &[0xAA; 64])?;
        let (g, rsp) = report_guest(cpu, &mut c, Some((CERTS, 1)))?;
        assert_eq!(g.sw_exit_info_2, 0);
        assert!(rsp.is_some());
        let mut tbl = [0u8; 32];
        cpu.read(Gpa(CERTS), CBit::Shared, &mut tbl)?;
        assert_eq!(&tbl[..24], &[0; 24]);
        assert_eq!(tbl[24], 0xAA);
        // A request the firmware rejects (garbage header): its status in SW_EXITINFO2[31:0].
        cpu.write(Gpa(REQ), CBit::Shared, &[0x5Au8; 4096])?;
        let g = nae(cpu, NaeExit::GUEST_REQUEST, REQ, RESP, |_| {})?;
        assert_eq!(g.sw_exit_info_1, 0);
        assert_eq!(g.sw_exit_info_2 >> 32, 0);
        assert_ne!(g.sw_exit_info_2, 0);
        assert!(FwStatus(g.sw_exit_info_2 as u32).name().is_some());
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
}

#[test]
fn extended_request_certificate_exit_and_buffer_too_small() {
    let mut t = vm_with(1, true);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        share_pages(cpu, &[REQ, RESP, CERTS, CERTS + 0x1000])?;
        let mut c = client(cpu)?;
        // Too small: the VMM needs 4 pages; RBX says how many.
        let (g, rsp) = report_guest(cpu, &mut c, Some((CERTS, 1)))?;
        assert_eq!(
            g.sw_exit_info_2,
            guest_req_info2(GuestReqVmmError::INVALID_LEN, 0)
        );
        assert_eq!(g.rbx, 4);
        assert!(rsp.is_none());
        // Busy.
        let (g, _) = report_guest(cpu, &mut c, Some((CERTS, 4)))?;
        assert_eq!(g.sw_exit_info_2, guest_req_info2(GuestReqVmmError::BUSY, 0));
        // Enough room: the VMM writes the table, the report comes back.
        let (g, rsp) = report_guest(cpu, &mut c, Some((CERTS, 4)))?;
        assert_eq!(g.sw_exit_info_2, 0);
        assert!(rsp.is_some());
        let mut e = CertTableEntry::default();
        cpu.read(Gpa(CERTS), CBit::Shared, e.as_mut_bytes())?;
        assert_eq!((e.offset, e.length), (48, 3));
        // Unaligned certificate buffer.
        let g = nae(cpu, NaeExit::EXT_GUEST_REQUEST, REQ, RESP, |g| {
            g.set(GhcbField::Rax, CERTS + 1);
            g.set(GhcbField::Rbx, 1);
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_INPUT));
        Ok(GuestEnd::Halt)
    });
    let mut step = 0;
    loop {
        let exit = run_vmm(&t.vm, &mut t.vcpus[0], false);
        match exit {
            VcpuExit::SnpReqCerts { gpa, npages, .. } => {
                assert_eq!(gpa, CERTS);
                let (ret, np) = match step {
                    0 => (Errno::ENOSPC.0 as u64, 4),
                    1 => (Errno::EAGAIN.0 as u64, npages),
                    _ => {
                        let e = CertTableEntry {
                            guid: [1; 16],
                            offset: 48,
                            length: 3,
                        };
                        let mut tbl = e.as_bytes().to_vec();
                        tbl.extend_from_slice(&[0; 24]);
                        tbl.extend_from_slice(b"ABC");
                        let hva = Hva(t.uaddr.0 + gpa);
                        t.vm.host().user().write(hva, &tbl).unwrap();
                        (0, npages)
                    }
                };
                step += 1;
                if let VcpuExit::SnpReqCerts {
                    ret: r, npages: n, ..
                } = t.vcpus[0].exit_mut()
                {
                    *r = ret;
                    *n = np;
                }
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(step, 3);
}

#[test]
fn events_serialise_to_json() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    let j = t.vm.events().to_json_lines();
    assert!(j.lines().count() >= 4);
    assert!(j.contains(r#""kind":"map_gpa_range""#), "{j}");
    for l in j.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
}

#[test]
fn a_running_vmsa_is_in_use() {
    let mut t = vm_with(2, false);
    let vmsa: u64 = 0x20_1000;
    let flag: u64 = 0x30_0000;
    let features = t.vm.sev_state().vmsa_features();
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        cpu.pvalidate(Gpa(vmsa), PageSize::Size4K, true)?;
        cpu.rmpadjust(Gpa(vmsa), PageSize::Size4K, 1 | RMPADJUST_VMSA_PAGE_BIT)?;
        let g = nae(
            cpu,
            NaeExit::AP_CREATION,
            ap_creation_info1(ApCreateOp::CREATE, 1),
            vmsa,
            |g| g.set(GhcbField::Rax, features),
        )?;
        assert_eq!(g.sw_exit_info_1, 0);
        share_pages(cpu, &[flag])?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    // The AP spins on a shared flag; while it runs its VMSA page cannot change owner.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut ap = t.vcpus.pop().unwrap();
    ap.set_guest(move |cpu: &mut GuestCpu| -> G {
        let _ = started_tx.send(());
        let mut b = [0u8; 1];
        loop {
            cpu.read(Gpa(flag), CBit::Shared, &mut b)?;
            if b[0] == 1 {
                return Ok(GuestEnd::Halt);
            }
            std::thread::yield_now();
        }
    });
    let runner = std::thread::spawn(move || ap.run().map(|e| e.clone()));
    started_rx.recv().unwrap();
    let e =
        t.vm.convert_memory(Gpa(vmsa), PAGE_SIZE_4K, MemAttr::Shared, Prefault::OnAccess)
            .unwrap_err();
    assert_eq!(e.errno, Errno::EIO, "{e}");
    assert!(e.reason.contains("FAIL_INUSE"), "{e}");
    let rmp = t.vm.rmp_snapshot(gfn_range(vmsa >> 12, (vmsa >> 12) + 1))[0].rmp;
    let entry = rmp.unwrap().entry;
    assert!(entry.assigned() && entry.vmsa() && entry.validated());
    t.vm.host()
        .user()
        .write(Hva(t.uaddr.0 + flag), &[1])
        .unwrap();
    assert_eq!(runner.join().unwrap().unwrap(), VcpuExit::Hlt);
}

#[test]
fn ap_create_on_init_waits_for_init() {
    let mut t = vm_with(2, false);
    let vmsa: u64 = 0x20_3000;
    let features = t.vm.sev_state().vmsa_features();
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        cpu.pvalidate(Gpa(vmsa), PageSize::Size4K, true)?;
        cpu.rmpadjust(Gpa(vmsa), PageSize::Size4K, 1 | RMPADJUST_VMSA_PAGE_BIT)?;
        let info1 = ap_creation_info1(ApCreateOp::CREATE_ON_INIT, 1);
        let g = nae(cpu, NaeExit::AP_CREATION, info1, vmsa, |g| {
            g.set(GhcbField::Rax, features)
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        Ok(GuestEnd::Halt)
    });
    assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], false), VcpuExit::Hlt);
    assert_eq!(t.vcpus[1].ap_state(), ApState::PendingInit(Gpa(vmsa)));
    t.vcpus[1].send_init();
    assert_eq!(t.vcpus[1].ap_state(), ApState::Created(Gpa(vmsa)));
    t.vcpus[1].set_guest(move |cpu: &mut GuestCpu| -> G {
        assert_eq!(cpu.vmsa_gpa(), Some(Gpa(vmsa)));
        Ok(GuestEnd::Halt)
    });
    assert_eq!(t.vcpus[1].run().unwrap().clone(), VcpuExit::Hlt);
}

#[test]
fn four_vcpus_convert_memory_concurrently() {
    let t = vm_with(4, false);
    let vm = t.vm.clone();
    let mut handles = Vec::new();
    for (i, mut v) in t.vcpus.into_iter().enumerate() {
        let vm = vm.clone();
        let i = i as u64;
        v.set_guest(move |cpu: &mut GuestCpu| -> G {
            // Each vCPU has its own GHCB and its own 64-page range.
            let ghcb = 0x50_0000 + i * 0x1000;
            let gfn = ghcb >> 12;
            assert_eq!(
                msr(
                    cpu,
                    GhcbMsg::PscReq {
                        gfn,
                        op: PscOp::SHARED
                    }
                )?,
                GhcbMsg::PscResp { error: 0 }
            );
            assert_eq!(
                msr(cpu, GhcbMsg::RegGpaReq { gfn })?,
                GhcbMsg::RegGpaResp { gfn }
            );
            let base = 0x800 + i * 0x100;
            for round in 0..20u8 {
                for op in [PscOp::SHARED, PscOp::PRIVATE] {
                    let e: Vec<PscEntry> = (0..64)
                        .map(|k| PscEntry::new(base + k, op, false))
                        .collect();
                    let mut d = PscDesc {
                        hdr: hdr(0, 63),
                        ..Default::default()
                    };
                    d.entries[..64].copy_from_slice(&e);
                    let mut g = Ghcb::request(2, NaeExit::PSC, 0, 0);
                    g.shared_buffer.copy_from_slice(d.as_bytes());
                    g.set(GhcbField::SwScratch, ghcb + GHCB_SHARED_BUF_OFFSET as u64);
                    let out = cpu.ghcb_call(Gpa(ghcb), &g)?;
                    assert_eq!(out.sw_exit_info_2, 0);
                }
                let gpa = (base + u64::from(round)) << 12;
                cpu.pvalidate(Gpa(gpa), PageSize::Size4K, true)?;
                cpu.write(Gpa(gpa), CBit::Private, &[round; 8])?;
            }
            Ok(GuestEnd::Halt)
        });
        handles.push(std::thread::spawn(move || {
            run_vmm(&vm, &mut v, i.is_multiple_of(2))
        }));
    }
    for h in handles {
        assert_eq!(h.join().unwrap(), VcpuExit::Hlt);
    }
    assert_eq!(softsev_host::fuzz::check_invariants(&vm), None);
    for i in 0..4u64 {
        let base = 0x800 + i * 0x100;
        for GfnState {
            gfn: Gfn(g),
            private,
            rmp,
        } in vm.rmp_snapshot(gfn_range(base, base + 64))
        {
            assert!(private);
            let validated = rmp.is_some_and(|r| r.entry.validated());
            assert_eq!(
                validated,
                g == base + 19,
                "GFN {g:#x}: only the last round's page is validated"
            );
        }
    }
}

#[test]
fn string_io_through_the_scratch_area() {
    let mut t = vm_with(1, false);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        setup_ghcb(cpu)?;
        let sb = GHCB_GPA + GHCB_SHARED_BUF_OFFSET as u64;
        // OUTS: 3 bytes to 0x3F8 (STR bit 2, REP bit 3, SZ8).
        let outs = (0x3F8 << 16) | (1 << 4) | (1 << 3) | (1 << 2);
        let g = nae(cpu, NaeExit::IOIO, outs, 3, |g| {
            g.set(GhcbField::SwScratch, sb + 32);
            g.shared_buffer[32..35].copy_from_slice(b"abc");
        })?;
        assert_eq!(g.sw_exit_info_1, 0);
        // INS: 2 words from 0x60.
        let ins = (0x60 << 16) | (1 << 5) | (1 << 3) | (1 << 2) | 1;
        let g = nae(cpu, NaeExit::IOIO, ins, 2, |g| {
            g.set(GhcbField::SwScratch, sb)
        })?;
        assert_eq!(&g.shared_buffer[..4], &[1, 2, 3, 4]);
        // Scratch missing, or the elements running past the shared buffer.
        let g = nae(cpu, NaeExit::IOIO, ins, 2, |_| {})?;
        assert_eq!(bad(&g), Some(GhcbError::MISSING_INPUT));
        let g = nae(cpu, NaeExit::IOIO, ins, 2000, |g| {
            g.set(GhcbField::SwScratch, sb)
        })?;
        assert_eq!(bad(&g), Some(GhcbError::INVALID_SCRATCH_AREA));
        Ok(GuestEnd::Halt)
    });
    let v = &mut t.vcpus[0];
    let exit = run_vmm(&t.vm, v, false);
    assert_eq!(
        exit,
        VcpuExit::IoString {
            port: 0x3F8,
            size: 1,
            write: true,
            count: 3,
            data: b"abc".to_vec()
        }
    );
    let exit = run_vmm(&t.vm, v, false);
    assert!(matches!(
        exit,
        VcpuExit::IoString {
            port: 0x60,
            size: 2,
            write: false,
            count: 2,
            ..
        }
    ));
    if let VcpuExit::IoString { data, .. } = v.exit_mut() {
        data.copy_from_slice(&[1, 2, 3, 4]);
    }
    assert_eq!(run_vmm(&t.vm, v, false), VcpuExit::Hlt);
}

#[test]
fn kvm_exact_errors_fail_kvm_run() {
    let h = host_with(
        1 << 30,
        ModuleParams {
            kvm_exact_errors: true,
            ..Default::default()
        },
    );
    let mut t = launched_snp_with(&h, MEM, 1, 8, SNP_POLICY, None, false);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        let gfn = GHCB_GPA >> 12;
        msr(
            cpu,
            GhcbMsg::PscReq {
                gfn,
                op: PscOp::SHARED,
            },
        )?;
        // Not registered: KVM fails KVM_RUN; the guest never resumes.
        nae(cpu, NaeExit::HV_FEATURES, 0, 0, |_| {})?;
        Ok(GuestEnd::Halt)
    });
    let v = &mut t.vcpus[0];
    assert!(matches!(v.run().unwrap(), VcpuExit::Hypercall { .. }));
    assert!(t.vm.handle_map_gpa_range(v.exit_mut(), Prefault::OnAccess));
    let e = v.run().unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert!(e.reason.contains("registered"), "{e}");
    assert_eq!(
        v.run().unwrap_err().errno,
        Errno::EINVAL,
        "the vCPU stays unrunnable"
    );
}
