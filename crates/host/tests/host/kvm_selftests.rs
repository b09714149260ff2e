//! The KVM SEV/SNP selftests (tools/testing/selftests/kvm/x86/sev_init2_tests.c,
//! sev_smoke_test.c, sev_migrate_tests.c) re-expressed against the software host, with
//! the same expected errors, plus KVM's argument checks of the SNP launch commands.
use crate::common::*;
use softsev_abi::ghcb::{MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP};
use softsev_abi::kvm::*;
use softsev_abi::vmsa::SEV_FEATURE_DEBUG_SWAP;
use softsev_abi::{CBit, FwStatus, Gpa};
use softsev_guest::GuestPlatform;
use softsev_host::*;

const KNOWN_FEATURES: u64 = SEV_FEATURE_DEBUG_SWAP;

fn test_init2(h: &std::sync::Arc<SoftHost>, ty: VmType, init: KvmSevInit) {
    let vm = h.create_vm(ty).unwrap();
    let r = init2(&vm, init);
    assert!(r.is_ok(), "INIT2 on {ty:?} with {init:?}: {r:?}");
}

fn test_init2_invalid(h: &std::sync::Arc<SoftHost>, ty: VmType, init: KvmSevInit, msg: &str) {
    let vm = h.create_vm(ty).unwrap();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::INIT2, &mut init.clone());
    let e = r.expect_err(msg);
    assert_eq!(e.errno, Errno::EINVAL, "{msg}: {e}");
    assert_eq!(fw, 0, "{msg}: no firmware error");
}

#[test]
fn sev_init2_vm_types() {
    let h = host();
    let types = h.check_extension(KvmCap::VM_TYPES);
    assert_eq!(types, 0b11101, "DEFAULT, SEV, SEV-ES, SNP");
    test_init2(&h, VmType::SEV, KvmSevInit::default());
    test_init2(&h, VmType::SEV_ES, KvmSevInit::default());
    test_init2(&h, VmType::SNP, KvmSevInit::default());
    test_init2_invalid(
        &h,
        VmType::DEFAULT,
        KvmSevInit::default(),
        "VM type is KVM_X86_DEFAULT_VM",
    );
    // SW_PROTECTED is not offered (the selftest only checks it when advertised).
    assert_eq!(types & (1 << VmType::SW_PROTECTED.0), 0);
    assert_eq!(
        h.create_vm(VmType::SW_PROTECTED).unwrap_err().errno,
        Errno::EINVAL
    );
}

#[test]
fn sev_init2_flags() {
    let h = host();
    for ty in [VmType::SEV, VmType::SEV_ES, VmType::SNP] {
        for i in 0..32 {
            test_init2_invalid(
                &h,
                ty,
                KvmSevInit {
                    flags: 1 << i,
                    ..Default::default()
                },
                "invalid flag",
            );
        }
    }
}

#[test]
fn sev_init2_features() {
    let h = host();
    let supported = h
        .get_device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES)
        .unwrap();
    assert_eq!(supported, SEV_FEATURE_DEBUG_SWAP);
    for (ty, sup) in [
        (VmType::SEV, 0),
        (VmType::SEV_ES, supported),
        (VmType::SNP, supported),
    ] {
        for i in 0..64 {
            let init = KvmSevInit {
                vmsa_features: 1 << i,
                ..Default::default()
            };
            if sup & (1 << i) == 0 {
                test_init2_invalid(&h, ty, init, "unknown feature");
            } else if KNOWN_FEATURES & (1 << i) != 0 {
                test_init2(&h, ty, init);
            }
        }
    }
}

#[test]
fn init2_ghcb_version_and_ordering() {
    let h = host();
    for (ty, v, ok) in [
        (VmType::SEV, 1, false),
        (VmType::SEV_ES, 1, true),
        (VmType::SEV_ES, 3, false),
        (VmType::SNP, 1, false),
        (VmType::SNP, 2, true),
        (VmType::SNP, 3, false),
    ] {
        let vm = h.create_vm(ty).unwrap();
        let r = init2(
            &vm,
            KvmSevInit {
                ghcb_version: v,
                ..Default::default()
            },
        );
        assert_eq!(r.is_ok(), ok, "{ty:?} ghcb_version {v}: {r:?}");
    }
    // SNP gets SNP_ACTIVE in its VMSA features and GHCB v2 by default. INIT2 again:
    // `sev_mem_enc_ioctl` refuses every id < 100 of an SNP guest with EPERM before it
    // looks at the command (sev-legacy.md §7.1); a second INIT2 of an SEV VM is EINVAL.
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    let st = vm.sev_state();
    assert_eq!((st.vmsa_features(), st.ghcb_version()), (1, 2));
    assert_eq!(
        init2(&vm, KvmSevInit::default()).unwrap_err().errno,
        Errno::EPERM
    );
    let vm = h.create_vm(VmType::SEV).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    assert_eq!(
        init2(&vm, KvmSevInit::default()).unwrap_err().errno,
        Errno::EINVAL
    );
    // vCPUs of SEV VM types cannot run before INIT2; INIT2 after a vCPU → EINVAL.
    let vm = h.create_vm(VmType::SNP).unwrap();
    let mut v = vm.create_vcpu(0).unwrap();
    v.set_guest(|_| Ok(GuestEnd::Halt));
    assert_eq!(v.run().unwrap_err().errno, Errno::EINVAL);
    assert_eq!(
        init2(&vm, KvmSevInit::default()).unwrap_err().errno,
        Errno::EINVAL
    );
    let vm = h.create_vm(VmType::DEFAULT).unwrap();
    let _v = vm.create_vcpu(0).unwrap();
    let (r, _) = sev_ioctl(&vm, SevCmdId::INIT, &mut [0u8; 8]);
    assert_eq!(
        r.unwrap_err().errno,
        Errno::EINVAL,
        "legacy INIT after a vCPU"
    );
    // Legacy INIT only on DEFAULT VMs.
    let vm = h.create_vm(VmType::SEV).unwrap();
    let (r, _) = sev_ioctl(&vm, SevCmdId::INIT, &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let vm = h.create_vm(VmType::DEFAULT).unwrap();
    let (r, _) = sev_ioctl(&vm, SevCmdId::ES_INIT, &mut [0u8; 8]);
    r.unwrap();
    assert_eq!(vm.sev_state().ghcb_version(), 1);
    // Commands before init: ENOTTY.
    let vm = h.create_vm(VmType::SNP).unwrap();
    let (r, _) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart::default(),
    );
    assert_eq!(r.unwrap_err().errno, Errno::ENOTTY);
}

fn guest_snp_code(cpu: &mut GuestCpu) -> Result<GuestEnd, GuestFault> {
    let s = cpu.rdmsr(MSR_SEV_STATUS)?;
    let want = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SNP;
    if s & want != want {
        // GUEST_ASSERT failure: report through a termination with set 1 code 0xff.
        cpu.msr_protocol(0x100 | (1 << 12) | (0xff << 16))?;
    }
    cpu.wrmsr(softsev_abi::ghcb::MSR_GHCB, 0x100)?;
    cpu.vmgexit()?;
    Ok(GuestEnd::Halt)
}

#[test]
fn sev_smoke_snp() {
    let h = host();
    for policy in [SNP_POLICY, SNP_POLICY | (1 << 19)] {
        let mut t = launched_snp(&h, 4 << 20, 1, 4, policy);
        t.vcpus[0].set_guest(guest_snp_code);
        let exit = t.vcpus[0].run().unwrap().clone();
        assert_eq!(exit.reason(), ExitReason::SYSTEM_EVENT);
        assert_eq!(
            exit,
            VcpuExit::SystemEvent {
                kind: SystemEventType::SEV_TERM,
                data: vec![0x100],
            }
        );
        // The vCPU is dead after termination.
        assert_eq!(t.vcpus[0].run().unwrap_err().errno, Errno::EINVAL);
    }
}

#[test]
fn sev_smoke_shutdown() {
    let h = host();
    let mut t = launched_snp(&h, 4 << 20, 1, 1, SNP_POLICY);
    // The guest clobbers its IDT and executes UD2: triple fault.
    t.vcpus[0].set_guest(|_| Ok(GuestEnd::Shutdown));
    assert_eq!(t.vcpus[0].run().unwrap().reason(), ExitReason::SHUTDOWN);
}

#[test]
fn snp_rejects_legacy_commands_with_eperm() {
    let h = host();
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    for id in [
        SevCmdId::LAUNCH_START,
        SevCmdId::LAUNCH_MEASURE,
        SevCmdId::GUEST_STATUS,
        SevCmdId::INIT2,
    ] {
        // INIT2 (22) too: every id below 100 is EPERM once the guest is SNP.
        let (r, _) = sev_ioctl(&vm, id, &mut [0u8; 64]);
        assert_eq!(r.unwrap_err().errno, Errno::EPERM, "{id:?}");
    }
    let (r, _) = sev_ioctl(&vm, SevCmdId(99), &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::EPERM);
    let (r, _) = sev_ioctl(&vm, SevCmdId(104), &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
}

#[test]
fn snp_launch_start_checks() {
    let h = host();
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    for (policy, flags, why) in [
        (1 << 16, 0, "bit 17 clear"),
        (SNP_POLICY | (1 << 18), 0, "MIGRATE_MA"),
        (SNP_POLICY | (1 << 26), 0, "reserved bit 26"),
        (SNP_POLICY | (1 << 24), 0, "ciphertext hiding not enabled"),
        (SNP_POLICY, 1, "flags"),
    ] {
        let (r, fw) = sev_ioctl(
            &vm,
            SevCmdId::SNP_LAUNCH_START,
            &mut KvmSevSnpLaunchStart {
                policy,
                flags,
                ..Default::default()
            },
        );
        assert_eq!((r.unwrap_err().errno, fw), (Errno::EINVAL, 0), "{why}");
    }
    // The firmware's own policy check comes back as -EIO + its status: ABI major 0xFF.
    let (r, fw) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart {
            policy: SNP_POLICY | 0xFF00,
            ..Default::default()
        },
    );
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::POLICY_FAILURE.0)
    );
    // After the failure the context was decommissioned: a good start works, a second fails.
    let (r, _) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart {
            policy: SNP_POLICY,
            ..Default::default()
        },
    );
    r.unwrap();
    let (r, _) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart {
            policy: SNP_POLICY,
            ..Default::default()
        },
    );
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
}

fn started_vm(h: &std::sync::Arc<SoftHost>, size: u64) -> (SoftVm, Hva, u32) {
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    let (uaddr, gmem) = add_memory(&vm, size);
    let (r, _) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_START,
        &mut KvmSevSnpLaunchStart {
            policy: SNP_POLICY,
            ..Default::default()
        },
    );
    r.unwrap();
    (vm, uaddr, gmem)
}

#[test]
fn snp_launch_update_checks_and_progress() {
    let h = host_with(
        1 << 30,
        ModuleParams {
            launch_update_batch: Some(3),
            ..Default::default()
        },
    );
    let (vm, uaddr, _) = started_vm(&h, 1 << 20);
    let upd = |u: &mut KvmSevSnpLaunchUpdate| sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_UPDATE, u);
    let base = KvmSevSnpLaunchUpdate {
        gfn_start: 0,
        uaddr: uaddr.0,
        len: 8 * 4096,
        page_type: 1,
        ..Default::default()
    };
    for (m, why) in [
        (KvmSevSnpLaunchUpdate { len: 0, ..base }, "len 0"),
        (KvmSevSnpLaunchUpdate { len: 100, ..base }, "len unaligned"),
        (KvmSevSnpLaunchUpdate { flags: 1, ..base }, "flags"),
        (
            KvmSevSnpLaunchUpdate {
                page_type: 2,
                ..base
            },
            "VMSA from userspace",
        ),
        (
            KvmSevSnpLaunchUpdate {
                page_type: 7,
                ..base
            },
            "type 7",
        ),
        (
            KvmSevSnpLaunchUpdate {
                uaddr: uaddr.0 + 8,
                ..base
            },
            "uaddr unaligned",
        ),
        (
            KvmSevSnpLaunchUpdate {
                gfn_start: 1 << 20,
                ..base
            },
            "no memslot",
        ),
    ] {
        let mut m = m;
        let (r, fw) = upd(&mut m);
        assert_eq!((r.unwrap_err().errno, fw), (Errno::EINVAL, 0), "{why}");
    }
    // GFNs not private: -EIO with error 0 (a KVM-side check inside populate).
    let mut u = base;
    let (r, fw) = upd(&mut u);
    assert_eq!((r.unwrap_err().errno, fw), (Errno::EIO, 0));
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0,
        size: 6 * 4096,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    // Progress: 3 pages per call; the remainder is written back.
    let (r, _) = upd(&mut u);
    r.unwrap();
    assert_eq!(
        (u.gfn_start, u.len, u.uaddr),
        (3, 5 * 4096, uaddr.0 + 3 * 4096)
    );
    let (r, _) = upd(&mut u);
    r.unwrap();
    assert_eq!((u.gfn_start, u.len), (6, 2 * 4096));
    // GFN 6 is shared: this call fails on its first page.
    let (r, fw) = upd(&mut u);
    assert_eq!((r.unwrap_err().errno, fw), (Errno::EIO, 0));
    assert_eq!(u.gfn_start, 6, "no progress written on failure");
    // Populating an already populated page: -EIO, error 0.
    let mut again = KvmSevSnpLaunchUpdate { len: 4096, ..base };
    let (r, fw) = upd(&mut again);
    assert_eq!((r.unwrap_err().errno, fw), (Errno::EIO, 0));
    // ZERO pages ignore uaddr and do not advance it.
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 6 * 4096,
        size: 2 * 4096,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    let mut z = KvmSevSnpLaunchUpdate {
        gfn_start: 6,
        uaddr: 0,
        len: 2 * 4096,
        page_type: 3,
        ..Default::default()
    };
    let (r, _) = upd(&mut z);
    r.unwrap();
    assert_eq!((z.gfn_start, z.len, z.uaddr), (8, 0, 0));
    // Every launched page is guest-valid, owned by the guest at its GPA.
    let asid = vm.sev_state().asid();
    for g in 0..8u64 {
        let Some(Backing::Private(spa)) = vm.lookup(Gpa(g * 4096)) else {
            panic!("GFN {g} has no private backing");
        };
        let (e, _) = h.soc().rmp_lookup(spa).unwrap();
        assert!(e.assigned() && e.validated() && !e.immutable(), "GFN {g}");
        assert_eq!((e.asid(), e.gpa()), (asid, g * 4096));
    }
}

#[test]
fn snp_launch_update_cpuid_rejection_copies_the_corrected_page_back() {
    let h = host();
    let (vm, uaddr, _) = started_vm(&h, 1 << 20);
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0,
        size: 4096,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    // A CPUID page with one bogus leaf: Fn0000_0001 with EAX (family/model/stepping)
    // all ones, beyond the platform's.
    let mut page = [0u8; 4096];
    page[0] = 1;
    page[0x10..0x14].copy_from_slice(&1u32.to_le_bytes());
    page[0x28..0x2C].copy_from_slice(&u32::MAX.to_le_bytes());
    // and a non-zero reserved header field, which every firmware version rejects.
    page[4] = 1;
    h.user().write(uaddr, &page).unwrap();
    let mut u = KvmSevSnpLaunchUpdate {
        gfn_start: 0,
        uaddr: uaddr.0,
        len: 4096,
        page_type: 6,
        ..Default::default()
    };
    let (r, fw) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_UPDATE, &mut u);
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_PARAM.0)
    );
    let mut back = [0u8; 4096];
    h.user().read(uaddr, &mut back).unwrap();
    // What the firmware left in the page (for a bad header: the page as sent) is
    // copied back to the VMM's buffer.
    assert_eq!(&back[..0x30], &page[..0x30]);
    // The page went back to the hypervisor and can be populated again.
    let (Backing::Private(spa) | Backing::Shared(spa)) = vm.lookup(Gpa(0)).unwrap();
    assert!(!h.soc().rmp_lookup(spa).unwrap().0.assigned());
}

#[test]
fn snp_launch_finish_and_run_ordering() {
    let h = host();
    let (vm, _, _) = started_vm(&h, 1 << 20);
    let mut v = vm.create_vcpu(0).unwrap();
    v.set_guest(|_| Ok(GuestEnd::Halt));
    assert_eq!(
        v.run().unwrap_err().errno,
        Errno::EINVAL,
        "run before finish"
    );
    let (r, fw) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_FINISH,
        &mut KvmSevSnpLaunchFinish {
            flags: 1,
            ..Default::default()
        },
    );
    assert_eq!((r.unwrap_err().errno, fw), (Errno::EINVAL, 0));
    let mut f = KvmSevSnpLaunchFinish::default();
    f.host_data[0] = 0x5A;
    let (r, _) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_FINISH, &mut f);
    r.unwrap();
    // The VMSA was measured at INITIAL_VMSA_GPA and is guest-owned now.
    let (e, _) = h.soc().rmp_lookup(v.vmsa_spa()).unwrap();
    assert!(e.assigned() && e.vmsa() && e.validated());
    assert_eq!(e.gpa(), softsev_abi::page_info::VMSA_GPA);
    assert_eq!(
        v.set_vmsa_state(&v.vmsa_state()).unwrap_err().errno,
        Errno::EINVAL
    );
    assert_eq!(v.run().unwrap().reason(), ExitReason::HLT);
    // The firmware sees a running guest with our host data.
    let gctx = vm.sev_state().snp_context().unwrap();
    let info = h.firmware().launch_record(gctx).unwrap();
    assert_eq!(info.host_data[0], 0x5A);
    // Finish again: the firmware refuses (guest not in LAUNCH).
    let (r, fw) = sev_ioctl(
        &vm,
        SevCmdId::SNP_LAUNCH_FINISH,
        &mut KvmSevSnpLaunchFinish::default(),
    );
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_GUEST_STATE.0)
    );
    // ENABLE_REQ_CERTS after vCPUs exist → EINVAL.
    let (r, _) = sev_ioctl(&vm, SevCmdId::SNP_ENABLE_REQ_CERTS, &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
}

#[test]
fn asid_exhaustion_and_recycling() {
    let h = host_with(
        1 << 30,
        ModuleParams {
            min_sev_asid: Some(3),
            ..Default::default()
        },
    );
    assert_eq!(
        h.asid_range(AsidClass::Snp),
        AsidRange { first: 1, last: 2 }
    );
    let a = launched_snp(&h, 1 << 20, 1, 1, SNP_POLICY);
    let b = launched_snp(&h, 1 << 20, 1, 1, SNP_POLICY);
    let c = h.create_vm(VmType::SNP).unwrap();
    assert_eq!(
        init2(&c, KvmSevInit::default()).unwrap_err().errno,
        Errno::EBUSY
    );
    // SEV uses its own range.
    let s = h.create_vm(VmType::SEV).unwrap();
    init2(&s, KvmSevInit::default()).unwrap();
    assert!(s.sev_state().asid() >= 3);
    let asid_a = a.vm.sev_state().asid();
    let in_use = h.phys().in_use();
    drop(a);
    assert!(h.phys().in_use() < in_use, "teardown returns pages");
    assert_eq!(h.phys().leaked(), 0);
    // The freed ASID ran (ACTIVATE): reusing it needs WBINVD + SNP_DF_FLUSH.
    let d = launched_snp(&h, 1 << 20, 1, 1, SNP_POLICY);
    assert_eq!(d.vm.sev_state().asid(), asid_a);
    assert!(
        h.events()
            .snapshot()
            .iter()
            .any(|e| matches!(e, Event::DfFlush { recycled: 1 }))
    );
    drop(b);
}

#[test]
fn sev_migrate_and_mirror_rules() {
    let h = host();
    // sev_migrate_tests: moving an SEV context to a fresh VM with the same vCPU count.
    let src = h.create_vm(VmType::SEV).unwrap();
    init2(&src, KvmSevInit::default()).unwrap();
    let _sv = src.create_vcpu(0).unwrap();
    let dst = h.create_vm(VmType::SEV).unwrap();
    assert_eq!(
        dst.move_enc_context_from(&src).unwrap_err().errno,
        Errno::EINVAL,
        "vCPU count differs"
    );
    let _dv = dst.create_vcpu(0).unwrap();
    let asid = src.sev_state().asid();
    dst.move_enc_context_from(&src).unwrap();
    assert_eq!(dst.sev_state().asid(), asid);
    // The source is no longer an SEV guest.
    let (r, _) = sev_ioctl(
        &src,
        SevCmdId::LAUNCH_START,
        &mut KvmSevLaunchStart::default(),
    );
    assert_eq!(r.unwrap_err().errno, Errno::ENOTTY);
    assert_eq!(
        dst.move_enc_context_from(&src).unwrap_err().errno,
        Errno::EINVAL,
        "source moved away"
    );
    let plain = h.create_vm(VmType::SEV).unwrap();
    let other = h.create_vm(VmType::SEV).unwrap();
    assert_eq!(
        other.move_enc_context_from(&plain).unwrap_err().errno,
        Errno::EINVAL,
        "source not SEV"
    );
    assert_eq!(
        dst.move_enc_context_from(&dst).unwrap_err().errno,
        Errno::EINVAL,
        "same VM"
    );
    // Mirrors.
    let m = h.create_vm(VmType::SEV).unwrap();
    m.copy_enc_context_from(&dst).unwrap();
    assert_eq!(m.sev_state().asid(), asid);
    assert_eq!(
        m.copy_enc_context_from(&dst).unwrap_err().errno,
        Errno::EINVAL,
        "already SEV"
    );
    // SNP guests cannot be moved or mirrored.
    let snp = h.create_vm(VmType::SNP).unwrap();
    init2(&snp, KvmSevInit::default()).unwrap();
    let d2 = h.create_vm(VmType::SEV).unwrap();
    assert_eq!(
        d2.move_enc_context_from(&snp).unwrap_err().errno,
        Errno::EINVAL
    );
    assert_eq!(
        d2.copy_enc_context_from(&snp).unwrap_err().errno,
        Errno::EINVAL
    );
    drop(m);
    drop(_dv);
    drop(dst);
    assert!(
        h.asid_counts().awaiting_flush >= 1,
        "the moved ASID waits for a flush"
    );
}

#[test]
fn device_attributes_and_capabilities() {
    let h = host();
    assert_eq!(
        h.get_device_attr(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)
            .unwrap()
            & (1 << 18),
        0,
        "MIGRATE_MA is not accepted"
    );
    assert_eq!(
        h.get_device_attr(KVM_X86_GRP_SEV, 77).unwrap_err().errno,
        Errno::ENXIO
    );
    assert_eq!(h.get_device_attr(7, 0).unwrap_err().errno, Errno::ENXIO);
    let no_swap = host_with(
        1 << 30,
        ModuleParams {
            debug_swap: false,
            sev_snp: false,
            ..Default::default()
        },
    );
    assert_eq!(no_swap.supported_vmsa_features(), 0);
    assert_eq!(no_swap.check_extension(KvmCap::VM_TYPES) & (1 << 4), 0);
    let vm = h.create_vm(VmType::SNP).unwrap();
    assert_eq!(
        vm.check_extension(KvmCap::MEMORY_ATTRIBUTES),
        KVM_MEMORY_ATTRIBUTE_PRIVATE
    );
    assert_eq!(
        vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << 3)
            .unwrap_err()
            .errno,
        Errno::EINVAL
    );
}

/// A VMM written only against the traits (as it would be against /dev/kvm).
fn generic_vmm(h: &dyn Hypervisor) -> Result<ExitReason, KvmError> {
    let types = h.check_extension(KvmCap::VM_TYPES);
    assert_ne!(types & (1 << VmType::SNP.0), 0);
    let vm = h.create_vm(VmType::DEFAULT)?;
    vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)?;
    let mut cmd = KvmSevCmd {
        id: SevCmdId::SNP_LAUNCH_START.0,
        ..Default::default()
    };
    let e = vm.memory_encrypt_op(&mut cmd).unwrap_err();
    assert_eq!(e.errno, Errno::ENOTTY);
    let mut v = vm.create_vcpu(0)?;
    v.run().map(|e| e.reason())
}

#[test]
fn traits_drive_the_soft_backend() {
    let h = host();
    // A DEFAULT VM's vCPU without guest code cannot run.
    assert_eq!(generic_vmm(&h).unwrap_err().errno, Errno::EINVAL);
}

#[test]
fn teardown_returns_every_page_and_the_asid() {
    let h = host();
    let base = h.phys().in_use();
    {
        let mut t = launched_snp(&h, 8 << 20, 2, 16, SNP_POLICY);
        t.vcpus[0].set_guest(|cpu: &mut GuestCpu| {
            // Touch private memory (prepared on first use) and shared memory.
            cpu.write(Gpa(0x20_0000), CBit::Shared, b"x")?;
            let _ = cpu.read(Gpa(0x30_0000), CBit::Private, &mut [0u8; 4]);
            Ok(GuestEnd::Halt)
        });
        assert_eq!(run_vmm(&t.vm, &mut t.vcpus[0], true), VcpuExit::Hlt);
        assert!(h.phys().in_use() > base);
        assert_eq!(h.asid_counts().in_use, 1);
    }
    // VMM memory stays mapped (it belongs to the VMM); everything else came back.
    let user_pages = (8 << 20) / 4096 + 1;
    assert!(
        h.phys().in_use() <= base + user_pages * 4096,
        "{} > {}",
        h.phys().in_use(),
        base
    );
    assert_eq!(h.phys().leaked(), 0);
    assert_eq!(
        h.asid_counts(),
        AsidCounts {
            in_use: 0,
            awaiting_flush: 1
        }
    );
    // No page of the SoC is still owned by the old ASID.
    assert_eq!(h.soc().fw_rmp_count_asid(1), 0);
}

#[test]
fn ciphertext_hiding_splits_the_asid_ranges() {
    let h = host_with(
        1 << 30,
        ModuleParams {
            ciphertext_hiding_asids: 5,
            ..Default::default()
        },
    );
    assert_eq!(
        h.asid_range(AsidClass::Snp),
        AsidRange { first: 1, last: 5 }
    );
    assert_eq!(
        h.asid_range(AsidClass::SevEs),
        AsidRange { first: 6, last: 15 }
    );
    assert_eq!(
        h.asid_range(AsidClass::Sev),
        AsidRange {
            first: 16,
            last: 1006
        }
    );
    let es = h.create_vm(VmType::SEV_ES).unwrap();
    init2(&es, KvmSevInit::default()).unwrap();
    assert_eq!(es.sev_state().asid(), 6);
    let snp = h.create_vm(VmType::SNP).unwrap();
    init2(&snp, KvmSevInit::default()).unwrap();
    assert_eq!(snp.sev_state().asid(), 1);
}
