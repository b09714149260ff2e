//! The backend seam: a VMM written only against `Hypervisor` / `Vm` / `Vcpu` /
//! `VmmMemory` and the `SnpLauncher` typestate launches and boots the guest model on
//! platforms from `SoftPlatform::builder`, several of them at once; the simulator-only
//! calls go through `SoftPlatformExt`. Launch errors name the step and carry the
//! firmware status once.
use softsev_abi::kvm::*;
use softsev_abi::page_info::PageType;
use softsev_abi::report::AttestationReport;
use softsev_abi::{Gpa, PAGE_SIZE_4K, Product};
use softsev_guest::{BootConfig, MemRange};
use softsev_host::launch::{LaunchError, LaunchStep, SnpFinish, SnpLauncher, SnpUpdate};
use softsev_host::*;
use std::sync::Arc;
use std::sync::mpsc::channel;

const MEM: u64 = 16 << 20;
const IMAGE_PAGES: u64 = 8;
const SECRETS_GFN: u64 = 8;
/// SMT and the must-be-one bit 17.
const POLICY: u64 = (1 << 16) | (1 << 17);

fn bsp_vmsa() -> softsev_abi::vmsa::Vmsa {
    softsev_measure::vmsa::launch_vmsa(
        softsev_measure::vmsa::BSP_EIP,
        0,
        Product::Milan.cpuid_signature(),
        softsev_measure::vmsa::VmmType::Qemu,
    )
}

/// What one boot produced.
struct Booted {
    report: Vec<u8>,
    vcek: Vec<u8>,
}

/// A VMM over the traits: SNP VM, one guest_memfd memslot at GPA 0, the launch through
/// `SnpLauncher`, the guest model on vCPU 0 (installed through the extension), a run
/// loop answering page-state changes, memory faults and the certificate exit.
fn launch_and_boot(platform: &Arc<SoftPlatform>) -> Booted {
    let hv: &dyn Hypervisor = &**platform;
    assert_ne!(
        hv.check_extension(KvmCap::VM_TYPES) & (1 << VmType::SNP.0),
        0
    );
    let vm = hv.create_vm(VmType::SNP).unwrap();
    let mem = hv.vmm_memory();
    let mut l = SnpLauncher::new(vm.clone(), &KvmSevInit::default()).unwrap();
    l.enable_req_certs().unwrap();
    vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
        .unwrap();
    let uaddr = mem.mmap(MEM).unwrap();
    let gmem = vm
        .create_guest_memfd(&KvmCreateGuestMemfd {
            size: MEM,
            ..Default::default()
        })
        .unwrap();
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        guest_memfd: gmem,
        ..Default::default()
    })
    .unwrap();
    let mut l = l
        .start(&KvmSevSnpLaunchStart {
            policy: POLICY,
            ..Default::default()
        })
        .unwrap();
    l.create_vcpu(0, &bsp_vmsa()).unwrap();
    let image: Vec<u8> = (0..IMAGE_PAGES * PAGE_SIZE_4K)
        .map(|i| (i / PAGE_SIZE_4K + 1) as u8)
        .collect();
    l.update_data(SnpUpdate {
        gpa: Gpa(0),
        len: image.len() as u64,
        page_type: PageType::NORMAL,
        uaddr,
        data: &image,
    })
    .unwrap();
    assert!(
        vm.as_any()
            .downcast_ref::<SoftVm>()
            .unwrap()
            .is_private(softsev_abi::Gfn(IMAGE_PAGES - 1)),
        "update_data made the range private first"
    );
    l.update_data(SnpUpdate {
        gpa: Gpa(SECRETS_GFN * PAGE_SIZE_4K),
        len: PAGE_SIZE_4K,
        page_type: PageType::SECRETS,
        uaddr: Hva(uaddr.0 + SECRETS_GFN * PAGE_SIZE_4K),
        data: &[],
    })
    .unwrap();
    let finish = SnpFinish {
        host_data: [0x42; 32],
        ..Default::default()
    };
    let running = l.finish(&finish).unwrap().into_running();
    let (vm, mut vcpus) = running.into_parts();

    let mut cfg = BootConfig::new(
        Gpa(0xA000),
        Gpa(SECRETS_GFN << 12),
        vec![MemRange::new(0, MEM)],
        MemRange::new(0x10_0000, 24 * 4096),
        [7; 64],
    );
    cfg.prevalidated = vec![MemRange::new(0, (SECRETS_GFN + 1) << 12)];
    let (tx, rx) = channel();
    platform
        .set_guest(
            &mut *vcpus[0],
            Box::new(move |cpu: &mut GuestCpu| {
                let r = softsev_guest::boot(cpu, &cfg);
                let ok = r.is_ok();
                let _ = tx.send(r.map_err(|e| e.to_string()));
                Ok(if ok {
                    GuestEnd::Halt
                } else {
                    GuestEnd::Shutdown
                })
            }),
        )
        .unwrap();
    let tcb = platform.firmware().reported_tcb();
    let chain = platform.chip().vcek_chain(&tcb).unwrap();
    let certs = chain.cert_table().to_bytes().unwrap();
    loop {
        let exit = vcpus[0].run().unwrap();
        match exit {
            VcpuExit::Hypercall { nr, args, ret } if *nr == KVM_HC_MAP_GPA_RANGE => {
                let to = if args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED != 0 {
                    Conversion::ToPrivate { prefault: true }
                } else {
                    Conversion::ToShared
                };
                *ret = match vm.convert_memory(Gpa(args[0]), args[1] * PAGE_SIZE_4K, to) {
                    Ok(()) => 0,
                    Err(_) => Errno::EINVAL.0 as u64,
                };
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    Conversion::ToPrivate { prefault: false }
                } else {
                    Conversion::ToShared
                };
                vm.convert_memory(Gpa(*gpa), *size, to).unwrap();
            }
            VcpuExit::SnpReqCerts { gpa, npages, ret } => {
                let need = (certs.len() as u64).div_ceil(PAGE_SIZE_4K);
                if *npages < need {
                    *npages = need;
                    *ret = Errno::ENOSPC.0 as u64;
                } else {
                    mem.write(Hva(uaddr.0 + *gpa), &certs).unwrap();
                    *ret = 0;
                }
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?}; guest said {:?}", rx.try_recv()),
        }
    }
    let boot = rx
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("guest boot failed: {e}"));
    let report = AttestationReport::parse(&boot.report).unwrap();
    assert_eq!(report.report_data, [7; 64]);
    assert_eq!(report.host_data, [0x42; 32]);
    // The observer agrees with what the guest attests.
    assert_eq!(
        platform.launch_digest(&*vm).unwrap(),
        Some(report.measurement)
    );
    assert!(boot.certs.ends_with(&certs));
    Booted {
        report: boot.report,
        vcek: chain.vek,
    }
}

fn platform(seed: &[u8]) -> Arc<SoftPlatform> {
    Arc::new(
        SoftPlatform::builder(Product::Milan)
            .seed(seed)
            .mem(256 << 20)
            .build()
            .unwrap(),
    )
}

#[test]
fn two_platforms_launch_and_boot_side_by_side() {
    let seeds: [&[u8]; 3] = [b"platform a", b"platform b", b"platform a"];
    let platforms: Vec<_> = seeds.iter().map(|s| platform(s)).collect();
    let booted: Vec<Booted> = std::thread::scope(|scope| {
        let runs: Vec<_> = platforms
            .iter()
            .map(|p| scope.spawn(|| launch_and_boot(p)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let reports: Vec<AttestationReport> = booted
        .iter()
        .map(|b| AttestationReport::parse(&b.report).unwrap())
        .collect();
    // One image, one digest, on every platform.
    assert_eq!(reports[0].measurement, reports[1].measurement);
    // Each platform has its own chip: another VCEK, another chip id, another signature.
    assert_ne!(booted[0].vcek, booted[1].vcek);
    assert_ne!(reports[0].chip_id, reports[1].chip_id);
    assert_ne!(reports[0].signature, reports[1].signature);
    // The same seed gives the same chip and the same report, byte for byte.
    assert_eq!(booted[0].vcek, booted[2].vcek);
    assert_eq!(booted[0].report, booted[2].report);
}

#[test]
fn the_factory_makes_a_soft_hypervisor_with_its_extension() {
    let hv = hypervisor(HypervisorKind::Soft(
        SoftPlatform::builder(Product::Genoa)
            .seed(b"factory".as_slice())
            .mem(64 << 20),
    ))
    .unwrap();
    assert_ne!(
        hv.check_extension(KvmCap::VM_TYPES) & (1 << VmType::SNP.0),
        0
    );
    assert_eq!(
        hv.get_device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS),
        Ok(1)
    );
    let soft = SoftPlatform::from_hypervisor(&*hv).expect("a software platform");
    assert_eq!(soft.product(), Product::Genoa);
    // Staging through the VMM memory trait round-trips.
    let mem = hv.vmm_memory();
    let at = mem.mmap(100).unwrap();
    mem.write(at, b"staged").unwrap();
    let mut back = [0u8; 6];
    mem.read(at, &mut back).unwrap();
    assert_eq!(&back, b"staged");
    mem.munmap(at).unwrap();
    assert_eq!(mem.read(at, &mut back).unwrap_err().errno, Errno::EFAULT);
}

#[test]
fn a_failed_launch_step_names_the_step_and_the_firmware_status_once() {
    // SMT is on, so a policy without the SMT bit fails in the firmware.
    let p = platform(b"launch errors");
    let vm = Hypervisor::create_vm(&*p, VmType::SNP).unwrap();
    let l = SnpLauncher::new(vm, &KvmSevInit::default()).unwrap();
    let err = l
        .start(&KvmSevSnpLaunchStart {
            policy: 1 << 17,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.step(), &LaunchStep::SnpLaunchStart);
    let kvm = err.kvm().expect("a KVM error");
    assert_eq!(kvm.errno, Errno::EIO);
    assert!(err.fw_status().is_some(), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("KVM_SEV_SNP_LAUNCH_START: "), "{msg}");
    assert_eq!(msg.matches("firmware status").count(), 1, "{msg}");

    // A range outside every memslot fails in KVM, under the update step.
    let vm = Hypervisor::create_vm(&*p, VmType::SNP).unwrap();
    let l = SnpLauncher::new(vm, &KvmSevInit::default()).unwrap();
    let mut l = l
        .start(&KvmSevSnpLaunchStart {
            policy: POLICY,
            ..Default::default()
        })
        .unwrap();
    let err = l
        .update_data(SnpUpdate {
            gpa: Gpa(0),
            len: PAGE_SIZE_4K,
            page_type: PageType::NORMAL,
            uaddr: Hva(USER_BASE),
            data: &[],
        })
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LaunchError::Kvm {
                step: LaunchStep::SnpLaunchUpdate { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().matches("firmware status").count() <= 1,
        "{err}"
    );
}

#[test]
fn soft_only_calls_refuse_objects_of_another_backend() {
    /// A vCPU of some other backend.
    #[derive(Debug)]
    struct Foreign;
    impl Vcpu for Foreign {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
        fn id(&self) -> u32 {
            0
        }
        fn set_cpuid(&self, _: &[CpuidEntry]) -> KvmResult {
            Ok(())
        }
        fn set_vmsa_state(&self, _: &softsev_abi::vmsa::Vmsa) -> KvmResult {
            Ok(())
        }
        fn vmsa_state(&self) -> KvmResult<softsev_abi::vmsa::Vmsa> {
            Ok(bsp_vmsa())
        }
        fn run(&mut self) -> KvmResult<&mut VcpuExit> {
            Err(KvmError::new(Errno::EINVAL, "not runnable"))
        }
    }
    let p = platform(b"foreign");
    let e = p
        .set_guest(
            &mut Foreign,
            Box::new(|_: &mut GuestCpu| Ok(GuestEnd::Halt)),
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
}

#[test]
fn context_moves_go_through_the_trait_to_the_backend() {
    let p = platform(b"moves");
    let hv: &dyn Hypervisor = &*p;
    let (a, b) = (
        hv.create_vm(VmType::DEFAULT).unwrap(),
        hv.create_vm(VmType::DEFAULT).unwrap(),
    );
    let (sa, sb) = (
        a.as_any().downcast_ref::<SoftVm>().unwrap(),
        b.as_any().downcast_ref::<SoftVm>().unwrap(),
    );
    // Neither VM has an encryption context: the trait answers as the backend does.
    assert_eq!(
        a.copy_enc_context_from(&*b).unwrap_err().errno,
        sa.copy_enc_context_from(sb).unwrap_err().errno
    );
    assert_eq!(
        a.move_enc_context_from(&*b).unwrap_err().errno,
        sa.move_enc_context_from(sb).unwrap_err().errno
    );
}
