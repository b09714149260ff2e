//! Legacy SEV / SEV-ES on the host without the firmware's legacy launch: KVM's
//! dispatch rules (mirror, SNP, reserved ids, the non-SEV errnos), KVM's own argument
//! checks that come before any firmware call, and SEV / SEV-ES vCPUs — CPUID, SEV_STATUS,
//! #UD for the SNP instructions, the GHCB MSR protocol and NAE events an SEV-ES guest
//! gets from KVM (sev-legacy.md §6.2, §7.1–7.2; host-interfaces.md §2.3–2.5).

use crate::common::*;
use softsev_abi::ghcb::*;
use softsev_abi::kvm::*;
use softsev_abi::{CBit, Gpa, PAGE_SIZE_4K};
use softsev_guest::{GuestPlatform, PageSize, VC_CPUID};
use softsev_host::*;

const MEM: u64 = 4 << 20;
const GHCB: u64 = 0x10_0000;

/// An SEV or SEV-ES VM of `ty`, initialised by `id` (INIT, ES_INIT or INIT2), with
/// one ordinary memslot at GPA 0 and `vcpus` vCPUs.
fn sev_vm(h: &std::sync::Arc<SoftHost>, ty: VmType, id: SevCmdId, vcpus: u32) -> TestVm {
    let vm = h.create_vm(ty).unwrap();
    let (r, fw) = sev_ioctl(&vm, id, &mut KvmSevInit::default());
    r.unwrap_or_else(|e| panic!("{id:?}: {e} (error {fw:#x})"));
    let uaddr = h.user().mmap(MEM).unwrap();
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        ..Default::default()
    })
    .unwrap();
    let vcpus = (0..vcpus).map(|i| vm.create_vcpu(i).unwrap()).collect();
    TestVm { vm, vcpus, uaddr }
}

fn msr(cpu: &mut GuestCpu, m: GhcbMsg) -> Result<GhcbMsg, GuestFault> {
    Ok(GhcbMsg::decode(cpu.msr_protocol(m.encode())?))
}

fn nae(cpu: &mut GuestCpu, code: NaeExit, i1: u64, i2: u64) -> Result<Ghcb, GuestFault> {
    cpu.ghcb_call(Gpa(GHCB), &Ghcb::request(1, code, i1, i2))
}

type G = Result<GuestEnd, GuestFault>;

#[test]
fn dispatch_errnos_before_the_firmware() {
    let h = host();
    // Not an SEV guest: ENOTTY for the launch commands, EINVAL for RECEIVE_UPDATE_DATA
    // and for the ids KVM reserves but does not implement (10, 14, 19) or does not know.
    let vm = h.create_vm(VmType::DEFAULT).unwrap();
    for (id, want) in [
        (SevCmdId::LAUNCH_START, Errno::ENOTTY),
        (SevCmdId::LAUNCH_MEASURE, Errno::ENOTTY),
        (SevCmdId::GUEST_STATUS, Errno::ENOTTY),
        (SevCmdId::SEND_START, Errno::ENOTTY),
        (SevCmdId::RECEIVE_UPDATE_DATA, Errno::EINVAL),
        (SevCmdId::SEND_UPDATE_VMSA, Errno::EINVAL),
        (SevCmdId::RECEIVE_UPDATE_VMSA, Errno::EINVAL),
        (SevCmdId::CERT_EXPORT, Errno::EINVAL),
        (SevCmdId(23), Errno::EINVAL),
    ] {
        let (r, _) = sev_ioctl(&vm, id, &mut [0u8; 128]);
        assert_eq!(r.unwrap_err().errno, want, "{id:?}");
    }
    // INIT / ES_INIT only on DEFAULT VMs; INIT2 only on the SEV types.
    let vm = h.create_vm(VmType::SEV_ES).unwrap();
    for id in [SevCmdId::INIT, SevCmdId::ES_INIT] {
        let (r, _) = sev_ioctl(&vm, id, &mut [0u8; 8]);
        assert_eq!(r.unwrap_err().errno, Errno::EINVAL, "{id:?}");
    }
    let vm = h.create_vm(VmType::DEFAULT).unwrap();
    assert_eq!(
        init2(&vm, KvmSevInit::default()).unwrap_err().errno,
        Errno::EINVAL
    );
    // ES_INIT with sev_es off: ENOTTY, before the VM type is looked at.
    let h2 = host_with(
        1 << 30,
        ModuleParams {
            sev_es: false,
            ..Default::default()
        },
    );
    for ty in [VmType::DEFAULT, VmType::SEV] {
        let vm = h2.create_vm(ty).unwrap();
        let (r, _) = sev_ioctl(&vm, SevCmdId::ES_INIT, &mut [0u8; 8]);
        assert_eq!(r.unwrap_err().errno, Errno::ENOTTY, "{ty:?}");
    }
    // No SEV-ES ASIDs at all (min_sev_asid = 1): the empty range is ENOTTY.
    let h3 = host_with(
        1 << 30,
        ModuleParams {
            min_sev_asid: Some(1),
            ..Default::default()
        },
    );
    let vm = h3.create_vm(VmType::DEFAULT).unwrap();
    let (r, _) = sev_ioctl(&vm, SevCmdId::ES_INIT, &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::ENOTTY);
}

#[test]
fn asid_split_sev_es_below_min_sev_asid() {
    let h = host();
    let min = h.asid_range(AsidClass::Sev).first;
    assert!(min > 1);
    let es = sev_vm(&h, VmType::DEFAULT, SevCmdId::ES_INIT, 0);
    let sev = sev_vm(&h, VmType::DEFAULT, SevCmdId::INIT, 0);
    let es2 = sev_vm(&h, VmType::SEV_ES, SevCmdId::INIT2, 0);
    let a = es.vm.sev_state().asid();
    assert!((1..min).contains(&a), "SEV-ES ASID {a}");
    assert!((1..min).contains(&es2.vm.sev_state().asid()));
    assert!(sev.vm.sev_state().asid() >= min);
    // ES_INIT is SEV-ES with GHCB version 1, INIT2 defaults to 2; SEV has none.
    assert_eq!(es.vm.sev_state().ghcb_version(), 1);
    assert_eq!(es2.vm.sev_state().ghcb_version(), 2);
    assert_eq!(sev.vm.sev_state().ghcb_version(), 0);
    assert_eq!(*sev.vm.sev_state().mode(), SevMode::Sev);
    assert_eq!(*es.vm.sev_state().mode(), SevMode::SevEs);
}

#[test]
fn kvm_argument_checks_come_before_the_firmware() {
    let h = host();
    let t = sev_vm(&h, VmType::SEV, SevCmdId::INIT2, 0);
    let blob = h.user().mmap(0x8000).unwrap();
    // LAUNCH_START: a blob address with length 0, or above 16 KiB.
    for (dh_len, session_len) in [(0, 0), (0x4001, 0)] {
        let mut s = KvmSevLaunchStart {
            dh_uaddr: blob.0,
            dh_len,
            session_uaddr: if session_len > 0 { blob.0 } else { 0 },
            session_len,
            ..Default::default()
        };
        let (r, fw) = sev_ioctl(&t.vm, SevCmdId::LAUNCH_START, &mut s);
        assert_eq!(
            (r.unwrap_err().errno, fw),
            (Errno::EINVAL, 0),
            "dh_len {dh_len:#x}"
        );
    }
    // LAUNCH_UPDATE_DATA: length 0, a wrapping range, unmapped memory (pin fails).
    for (uaddr, len, want) in [
        (t.uaddr.0, 0, Errno::EINVAL),
        (u64::MAX - 0xF, 0x20, Errno::EINVAL),
        (0x1000, 0x1000, Errno::ENOMEM),
    ] {
        let mut u = KvmSevLaunchUpdateData {
            uaddr,
            len,
            ..Default::default()
        };
        let (r, _) = sev_ioctl(&t.vm, SevCmdId::LAUNCH_UPDATE_DATA, &mut u);
        assert_eq!(r.unwrap_err().errno, want, "{uaddr:#x}+{len:#x}");
    }
    // LAUNCH_MEASURE / ATTESTATION: a buffer above SEV_FW_BLOB_MAX_SIZE.
    let mut m = KvmSevLaunchMeasure {
        uaddr: blob.0,
        len: 0x4001,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::LAUNCH_MEASURE, &mut m);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let mut a = KvmSevAttestationReport {
        uaddr: blob.0,
        len: 0x4001,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::GET_ATTESTATION_REPORT, &mut a);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    // DBG: length 0, source wrap-around, no destination.
    for d in [
        KvmSevDbg {
            src_uaddr: t.uaddr.0,
            dst_uaddr: blob.0,
            len: 0,
            ..Default::default()
        },
        KvmSevDbg {
            src_uaddr: u64::MAX - 7,
            dst_uaddr: blob.0,
            len: 16,
            ..Default::default()
        },
        KvmSevDbg {
            src_uaddr: t.uaddr.0,
            dst_uaddr: 0,
            len: 16,
            ..Default::default()
        },
    ] {
        for id in [SevCmdId::DBG_DECRYPT, SevCmdId::DBG_ENCRYPT] {
            let mut d = d;
            let (r, _) = sev_ioctl(&t.vm, id, &mut d);
            assert_eq!(r.unwrap_err().errno, Errno::EINVAL, "{id:?} {d:?}");
        }
    }
    // LAUNCH_SECRET: header or transport missing; SEND_START without a PDH;
    // RECEIVE_START without a session; SEND/RECEIVE_UPDATE_DATA across a page.
    let mut s = KvmSevLaunchSecret {
        guest_uaddr: t.uaddr.0,
        guest_len: 16,
        trans_uaddr: blob.0,
        trans_len: 16,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::LAUNCH_SECRET, &mut s);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let mut ss = KvmSevSendStart {
        session_uaddr: blob.0,
        session_len: 128,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::SEND_START, &mut ss);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let mut rs = KvmSevReceiveStart {
        pdh_uaddr: blob.0,
        pdh_len: 0x824,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::RECEIVE_START, &mut rs);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let mut su = KvmSevSendUpdateData {
        hdr_uaddr: blob.0,
        hdr_len: 52,
        guest_uaddr: t.uaddr.0 + 0xFF0,
        guest_len: 0x20,
        trans_uaddr: blob.0 + 0x100,
        trans_len: 0x20,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::SEND_UPDATE_DATA, &mut su);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    let mut ru = KvmSevReceiveUpdateData {
        hdr_uaddr: blob.0,
        hdr_len: 52,
        guest_uaddr: t.uaddr.0 + 0xFF0,
        guest_len: 0x20,
        trans_uaddr: blob.0 + 0x100,
        trans_len: 0x20,
        ..Default::default()
    };
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::RECEIVE_UPDATE_DATA, &mut ru);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL);
    // LAUNCH_UPDATE_VMSA of a plain SEV guest: ENOTTY.
    let (r, _) = sev_ioctl(&t.vm, SevCmdId::LAUNCH_UPDATE_VMSA, &mut [0u8; 8]);
    assert_eq!(r.unwrap_err().errno, Errno::ENOTTY);
}

#[test]
fn mirror_vm_may_only_status_debug_and_update_vmsa() {
    let h = host();
    let owner = sev_vm(&h, VmType::SEV_ES, SevCmdId::INIT2, 0);
    let mirror = h.create_vm(VmType::SEV_ES).unwrap();
    mirror.copy_enc_context_from(&owner.vm).unwrap();
    for id in [
        SevCmdId::LAUNCH_START,
        SevCmdId::LAUNCH_UPDATE_DATA,
        SevCmdId::LAUNCH_MEASURE,
        SevCmdId::LAUNCH_FINISH,
        SevCmdId::GET_ATTESTATION_REPORT,
        SevCmdId::INIT2,
        SevCmdId::SEND_START,
    ] {
        let (r, _) = sev_ioctl(&mirror, id, &mut [0u8; 128]);
        assert_eq!(r.unwrap_err().errno, Errno::EINVAL, "{id:?}");
    }
    // Allowed ids pass the mirror check (and reach KVM's own checks).
    let mut d = KvmSevDbg::default();
    let (r, _) = sev_ioctl(&mirror, SevCmdId::DBG_DECRYPT, &mut d);
    assert_eq!(r.unwrap_err().errno, Errno::EINVAL, "len 0");
    assert_eq!(mirror.sev_state().asid(), owner.vm.sev_state().asid());
}

#[test]
fn plain_sev_vcpu_cpuid_msrs_and_snp_instructions() {
    let h = host();
    let mut t = sev_vm(&h, VmType::SEV, SevCmdId::INIT2, 1);
    t.vcpus[0].set_cpuid(&[CpuidEntry {
        function: 0x8000_001F,
        index: 0,
        eax: 0x1_000F,
        ebx: 0x0000_0173,
        ecx: 509,
        edx: 16,
    }]);
    // The host still owns the registers of a plain SEV guest.
    let mut regs = t.vcpus[0].get_vmsa_state().unwrap();
    regs.rax = 0x1234;
    t.vcpus[0].set_vmsa_state(&regs).unwrap();
    assert_eq!(t.vcpus[0].get_vmsa_state().unwrap().rax, 0x1234);
    t.vcpus[0].set_guest(|cpu: &mut GuestCpu| -> G {
        // CPUID is intercepted and answered by KVM from the VMM's table.
        assert_eq!(cpu.cpuid(0x8000_001F, 0)?, [0x1_000F, 0x173, 509, 16]);
        assert_eq!(cpu.cpuid(0x4000_0000, 0)?, [0; 4]);
        assert_eq!(cpu.rdmsr(MSR_SEV_STATUS)?, 1);
        // No GHCB MSR, no SNP instructions.
        assert_eq!(cpu.rdmsr(MSR_GHCB), Err(GuestFault::Gp));
        assert_eq!(cpu.wrmsr(MSR_GHCB, 2), Err(GuestFault::Gp));
        assert_eq!(
            cpu.pvalidate(Gpa(0x2000), PageSize::Size4K, true),
            Err(GuestFault::Ud)
        );
        assert_eq!(
            cpu.rmpadjust(Gpa(0x2000), PageSize::Size4K, 0),
            Err(GuestFault::Ud)
        );
        // VMGEXIT is a plain VMMCALL: back at once.
        cpu.vmgexit()?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(t.vcpus[0].run().unwrap(), &VcpuExit::Hlt);
    assert!(t.vm.events().snapshot().iter().any(|e| matches!(
        e,
        Event::Cpuid {
            leaf: 0x8000_001F,
            ..
        }
    )));
}

#[test]
fn sev_es_vcpu_ghcb_msr_protocol_and_nae_events() {
    let h = host();
    for (ty, id, max) in [
        (VmType::SEV_ES, SevCmdId::INIT2, 2),
        (VmType::DEFAULT, SevCmdId::ES_INIT, 1),
    ] {
        let mut t = sev_vm(&h, ty, id, 2);
        for v in &t.vcpus {
            v.set_cpuid(&[CpuidEntry {
                function: 0x8000_001F,
                index: 0,
                eax: 0xF,
                ebx: 0x173,
                ecx: 509,
                edx: 16,
            }]);
        }
        t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| -> G {
            let info = GhcbMsg::SevInfoResp {
                max,
                min: 1,
                cbit: 51,
            };
            assert_eq!(GhcbMsg::decode(cpu.ghcb_msr()), info);
            assert_eq!(msr(cpu, GhcbMsg::SevInfoReq)?, info);
            assert_eq!(cpu.rdmsr(MSR_SEV_STATUS)?, 0b11);
            // CPUID raises #VC; the guest asks through the MSR protocol.
            assert_eq!(
                cpu.cpuid(0x8000_001F, 0),
                Err(GuestFault::Vc {
                    code: VC_CPUID,
                    gpa: Gpa(0)
                })
            );
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
            // KVM answers HV_FEATURES the same to every guest.
            assert_eq!(
                msr(cpu, GhcbMsg::HvFeaturesReq)?,
                GhcbMsg::HvFeaturesResp {
                    features: GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION
                }
            );
            assert_eq!(
                cpu.pvalidate(Gpa(0x2000), PageSize::Size4K, true),
                Err(GuestFault::Ud)
            );
            // A full GHCB, unregistered (ES has no registration), in shared memory.
            cpu.write(Gpa(GHCB), CBit::Shared, &[0u8; PAGE_SIZE_4K as usize])?;
            let mut g = Ghcb::request(1, NaeExit::CPUID, 0, 0);
            g.set(GhcbField::Rax, 0x8000_001F);
            g.set(GhcbField::Rcx, 0);
            let g = cpu.ghcb_call(Gpa(GHCB), &g)?;
            assert_eq!((g.sw_exit_info_1, g.rbx, g.rcx), (0, 0x173, 509));
            // SNP-only events: MISSING_INPUT, as `sev_es_validate_vmgexit` leaves them.
            for ev in [
                NaeExit::PSC,
                NaeExit::AP_CREATION,
                NaeExit::GUEST_REQUEST,
                NaeExit::EXT_GUEST_REQUEST,
            ] {
                let g = nae(cpu, ev, 0x3000, 0x4000)?;
                assert_eq!(
                    (g.sw_exit_info_1, g.sw_exit_info_2),
                    (EXIT_INFO1_BAD_INPUT, GhcbError::MISSING_INPUT.0),
                    "{ev:?}"
                );
            }
            // An event code KVM does not know: INVALID_EVENT.
            let g = nae(cpu, NaeExit(0x8000_0099), 0, 0)?;
            assert_eq!(g.sw_exit_info_2, GhcbError::INVALID_EVENT.0);
            // The AP jump table is the VM's: set here, read by the AP below.
            let g = nae(cpu, NaeExit::AP_JUMP_TABLE, 0, 0x9_F000)?;
            assert_eq!(g.sw_exit_info_1, 0);
            // SNP-only MSR requests terminate a non-SNP guest.
            msr(
                cpu,
                GhcbMsg::PscReq {
                    gfn: 3,
                    op: PscOp::SHARED,
                },
            )?;
            Ok(GuestEnd::Halt)
        });
        match t.vcpus[0].run().unwrap() {
            VcpuExit::SystemEvent { kind, .. } => assert_eq!(*kind, SystemEventType::SEV_TERM),
            e => panic!("{ty:?}: {e:?}"),
        }
        t.vcpus[1].set_guest(|cpu: &mut GuestCpu| -> G {
            let g = nae(cpu, NaeExit::AP_JUMP_TABLE, 1, 0)?;
            assert_eq!(g.sw_exit_info_2, 0x9_F000);
            Ok(GuestEnd::Halt)
        });
        assert_eq!(t.vcpus[1].run().unwrap(), &VcpuExit::Hlt);
    }
}
