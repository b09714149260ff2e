//! SEV / SEV-ES migration through KVM between two software hosts with different chips
//! (sev-legacy.md §5, §7): the guest writes memory and registers on A, only resident
//! pages (mincore) and, for SEV-ES, the encrypted VMSA move, and the guest finds both
//! on B; refusals before any page moves; a tampered packet leaves B without a
//! runnable guest; SNP refuses SEND_START with -EPERM; dirty logging.

use crate::common::*;
use softsev_abi::kvm::*;
use softsev_abi::sev_buf::SevGuestState;
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{CBit, FwStatus, Gpa, PAGE_SIZE_4K, Product};
use softsev_firmware::FirmwareConfig;
use softsev_firmware::identity::Chip;
use softsev_guest::{Gpr, GuestPlatform};
use softsev_host::launch::{
    LaunchError, Running, SevInit, SevLauncher, SevReceiver, SevTargetCerts,
};
use softsev_host::*;
use softsev_measure::vmsa::{BSP_EIP, VmmType, launch_vmsa};
use std::sync::{Arc, Mutex};

const MEM: u64 = 1 << 20;
/// Guest pages the workload writes (GPA 0x10000 + i * 4K).
const DATA_GPA: u64 = 0x10000;
const DATA_PAGES: u64 = 4;

fn params() -> ModuleParams {
    ModuleParams {
        sev_es_migration: true,
        ..Default::default()
    }
}

/// Host B: another chip and another firmware seed (its own CEK, OCA, PEK, PDH).
fn host_b(product: Product) -> Arc<SoftHost> {
    let mut cfg = FirmwareConfig::for_product(product);
    cfg.seed = Some(b"host tests B".to_vec());
    cfg.min_sev_asid = 16;
    SoftPlatform::builder(product)
        .mem(1 << 30)
        .chip(Arc::new(Chip::from_seed(product, b"host-tests B").unwrap()))
        .firmware_config(cfg)
        .module_params(params())
        .build()
        .unwrap()
        .host()
        .clone()
}

fn host_a() -> Arc<SoftHost> {
    host_with(1 << 30, params())
}

/// A VM of `ty` with memslot 0 at GPA 0 logging dirty pages.
fn vm_with_memory(h: &Arc<SoftHost>, ty: VmType) -> (Arc<SoftVm>, Hva) {
    let vm = h.create_vm(ty).unwrap();
    let uaddr = h.user().mmap(MEM).unwrap();
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
        guest_phys_addr: 0,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        ..Default::default()
    })
    .unwrap();
    (Arc::new(vm), uaddr)
}

fn page_of(gpa: u64, i: u64) -> Vec<u8> {
    (0..PAGE_SIZE_4K)
        .map(|b| (b as u8) ^ (i as u8).wrapping_mul(31) ^ ((gpa >> 12) as u8))
        .collect()
}

fn soft(v: &mut Box<dyn Vcpu>) -> &mut SoftVcpu {
    v.as_any_mut().downcast_mut::<SoftVcpu>().unwrap()
}

/// Launch a guest of `policy` (ES if bit 2) on `h` and run code that writes the data
/// pages and sets RBX / R12, then halts.
fn launched(h: &Arc<SoftHost>, policy: u32) -> (SevLauncher<Running, SoftVm>, Hva) {
    let es = policy & 4 != 0;
    let (vm, uaddr) = vm_with_memory(h, if es { VmType::SEV_ES } else { VmType::SEV });
    let mut l = SevLauncher::new(vm, SevInit::Init2(KvmSevInit::default())).unwrap();
    let vmsa = launch_vmsa(BSP_EIP, 0, 0x00A0_0F11, VmmType::Qemu);
    l.create_vcpu(0, &vmsa).unwrap();
    let mut l = l.launch_start(policy, None).unwrap();
    l.update_data(softsev_host::launch::SevUpdate {
        gpa: Gpa(0),
        uaddr,
        data: &[0x90; 4096],
    })
    .unwrap();
    if es {
        l.update_vmsa().unwrap();
    }
    let mut l = l.measure().unwrap().finish().unwrap().into_running();
    let v = soft(&mut l.vcpus_mut()[0]);
    v.set_guest(|cpu: &mut GuestCpu| {
        for i in 0..DATA_PAGES {
            let gpa = DATA_GPA + i * PAGE_SIZE_4K;
            cpu.write(Gpa(gpa), CBit::Private, &page_of(gpa, i))?;
        }
        cpu.set_gpr(Gpr::Rbx, 0xB0B0_0001)?;
        cpu.set_gpr(Gpr::R12, DATA_GPA)?;
        Ok(GuestEnd::Halt)
    });
    assert_eq!(v.run().unwrap(), &VcpuExit::Hlt);
    (l, uaddr)
}

/// What the guest on B found: pages intact, RBX, R12.
type Found = Arc<Mutex<Option<(bool, u64, u64)>>>;

fn check_on(vcpu: &mut SoftVcpu) -> (bool, u64, u64) {
    let found: Found = Arc::new(Mutex::new(None));
    let f = found.clone();
    vcpu.set_guest(move |cpu: &mut GuestCpu| {
        let mut ok = true;
        for i in 0..DATA_PAGES {
            let gpa = DATA_GPA + i * PAGE_SIZE_4K;
            let mut got = vec![0u8; PAGE_SIZE_4K as usize];
            cpu.read(Gpa(gpa), CBit::Private, &mut got)?;
            ok &= got == page_of(gpa, i);
        }
        let (rbx, r12) = (cpu.gpr(Gpr::Rbx)?, cpu.gpr(Gpr::R12)?);
        *f.lock().unwrap() = Some((ok, rbx, r12));
        Ok(GuestEnd::Halt)
    });
    assert_eq!(vcpu.run().unwrap(), &VcpuExit::Hlt);
    found.lock().unwrap().take().unwrap()
}

/// Send every resident page of A's slot and (ES) the VMSA to a receiver on B.
fn migrate(
    a: &mut SevLauncher<Running, SoftVm>,
    a_uaddr: Hva,
    b: &Arc<SoftHost>,
    target: &SevTargetCerts,
    source_pdh: &softsev_abi::sev_cert::SevCert,
    es: bool,
) -> Result<(SevReceiver<SoftVm>, Hva, u64), LaunchError> {
    let out = a.send_start(target)?;
    let (vm, b_uaddr) = vm_with_memory(b, if es { VmType::SEV_ES } else { VmType::SEV });
    let mut r = SevReceiver::new(vm, SevInit::Init2(KvmSevInit::default()))?;
    // SEV: the registers in the clear (KVM_GET_REGS), as QEMU migrates them.
    let regs = if es {
        Vmsa::zeroed()
    } else {
        a.vcpus()[0].vmsa_state().unwrap()
    };
    r.create_vcpu(0, &regs)?;
    r.receive_start(out.policy, source_pdh, &out.session)?;
    let resident = a.vm().host().user().mincore(a_uaddr, MEM).unwrap();
    let mut sent = 0;
    for (i, _) in resident.iter().enumerate().filter(|(_, r)| **r) {
        let off = i as u64 * PAGE_SIZE_4K;
        let p = a.send_update_data(Hva(a_uaddr.0 + off), PAGE_SIZE_4K as u32)?;
        r.receive_update_data(Hva(b_uaddr.0 + off), &p)?;
        sent += 1;
    }
    if es {
        let p = a.send_update_vmsa(0)?;
        assert_eq!(p.data.len(), 4096);
        r.receive_update_vmsa(0, &p)?;
    }
    Ok((r, b_uaddr, sent))
}

fn source_pdh(h: &SoftHost) -> softsev_abi::sev_cert::SevCert {
    h.sev_target_certs().unwrap().pdh
}

fn moves(policy: u32) {
    let (a, b) = (host_a(), host_b(Product::Milan));
    let es = policy & 4 != 0;
    let (mut l, a_uaddr) = launched(&a, policy);
    // The guest's writes are in the dirty log (and LAUNCH_UPDATE_DATA's page).
    let bitmap = a.user().mmap(4096).unwrap();
    l.vm()
        .get_dirty_log(&KvmDirtyLog {
            slot: 0,
            pad: 0,
            dirty_bitmap: bitmap.0,
        })
        .unwrap();
    let mut w = [0u8; 8];
    a.user().read(bitmap, &mut w).unwrap();
    let bits = u64::from_le_bytes(w);
    assert_eq!(bits, 1 | (0xF << (DATA_GPA / PAGE_SIZE_4K)), "{bits:#x}");
    let target = b.sev_target_certs().unwrap();
    let (r, b_uaddr, sent) = migrate(&mut l, a_uaddr, &b, &target, &source_pdh(&a), es).unwrap();
    // Untouched memory costs nothing: page 0 and the four data pages only.
    assert_eq!(sent, 1 + DATA_PAGES);
    l.send_finish().unwrap();
    assert_eq!(
        l.guest_status().unwrap().state,
        u32::from(SevGuestState::SENT.0)
    );
    // B's memory is ciphertext under B's key.
    let mut raw = vec![0u8; 4096];
    b.user().read(Hva(b_uaddr.0 + DATA_GPA), &mut raw).unwrap();
    assert_ne!(raw, page_of(DATA_GPA, 0));
    // RECEIVE_UPDATE_DATA marked the target pages dirty (KVM wrote them).
    let mut running = {
        let bm = b.user().mmap(4096).unwrap();
        r.vm()
            .get_dirty_log(&KvmDirtyLog {
                slot: 0,
                pad: 0,
                dirty_bitmap: bm.0,
            })
            .unwrap();
        let mut w = [0u8; 8];
        b.user().read(bm, &mut w).unwrap();
        assert_eq!(u64::from_le_bytes(w), bits);
        r.receive_finish().unwrap()
    };
    assert_eq!(
        running.guest_status().unwrap().state,
        u32::from(SevGuestState::RUNNING.0)
    );
    let (ok, rbx, r12) = check_on(soft(&mut running.vcpus_mut()[0]));
    assert!(ok, "the guest's pages arrived intact");
    assert_eq!((rbx, r12), (0xB0B0_0001, DATA_GPA), "registers continued");
    // The source VM goes away with its halted vCPU.
    drop(l);
}

#[test]
fn an_sev_guest_moves_to_another_chip() {
    moves(0);
}

#[test]
fn an_sev_es_guest_moves_with_its_encrypted_vmsa() {
    moves(0x4);
}

#[test]
fn refusals_come_before_any_page_and_the_source_keeps_running() {
    let (a, b) = (host_a(), host_b(Product::Milan));
    let tb = b.sev_target_certs().unwrap();
    let fw = |e: LaunchError| (e.kvm().map(|k| k.errno), e.fw_status());
    let eio = Some(Errno::EIO);
    // (policy, target, expected firmware status)
    let genoa = host_b(Product::Genoa).sev_target_certs().unwrap();
    let non_amd = SevTargetCerts {
        amd_certs: genoa.amd_certs.clone(),
        ..tb.clone()
    };
    let wrong_pdh = SevTargetCerts {
        pdh: source_pdh(&a),
        ..tb.clone()
    };
    for (policy, t, want) in [
        (0x8, &tb, FwStatus::POLICY_FAILURE),
        (0x10, &tb, FwStatus::POLICY_FAILURE),
        (0x20, &non_amd, FwStatus::INVALID_CERTIFICATE),
        (0x20, &wrong_pdh, FwStatus::BAD_SIGNATURE),
    ] {
        let (mut l, a_uaddr) = launched(&a, policy);
        let e = l.send_start(t).unwrap_err();
        assert_eq!(fw(e), (eio, Some(want)), "policy {policy:#x}");
        assert_eq!(
            l.guest_status().unwrap().state,
            u32::from(SevGuestState::RUNNING.0)
        );
        // No page can be sent.
        let e = l
            .send_update_data(Hva(a_uaddr.0 + DATA_GPA), 4096)
            .unwrap_err();
        assert_eq!(e.fw_status(), Some(FwStatus::INVALID_GUEST_STATE));
    }
    // A wrong target PDH without DOMAIN/SEV: SEND_START succeeds (no chain check,
    // §5.1) but B cannot open the session; A cancels and keeps running.
    let (mut l, a_uaddr) = launched(&a, 0);
    let e = migrate(&mut l, a_uaddr, &b, &wrong_pdh, &source_pdh(&a), false).unwrap_err();
    assert_eq!(e.fw_status(), Some(FwStatus::BAD_MEASUREMENT));
    l.send_cancel().unwrap();
    assert_eq!(
        l.guest_status().unwrap().state,
        u32::from(SevGuestState::RUNNING.0)
    );
    let (ok, rbx, _) = check_on(soft(&mut l.vcpus_mut()[0]));
    assert!(ok && rbx == 0xB0B0_0001);
    // Across products, the SEV bit holds when the target is an AMD part of its own
    // product's chain: Milan → Genoa is refused (the Genoa ARK is not Milan's fused
    // root), plain policy 0 is allowed.
    let (mut l, _) = launched(&a, 0x20);
    assert_eq!(
        l.send_start(&genoa).unwrap_err().fw_status(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    let (mut l, _) = launched(&a, 0);
    l.send_start(&genoa).unwrap();
    l.send_cancel().unwrap();
}

#[test]
fn a_tampered_packet_is_bad_measurement_and_leaves_no_runnable_guest() {
    let (a, b) = (host_a(), host_b(Product::Milan));
    let (mut l, a_uaddr) = launched(&a, 0);
    let out = l.send_start(&b.sev_target_certs().unwrap()).unwrap();
    let (vm, b_uaddr) = vm_with_memory(&b, VmType::SEV);
    let mut r = SevReceiver::new(vm.clone(), SevInit::Init2(KvmSevInit::default())).unwrap();
    r.create_vcpu(0, &Vmsa::zeroed()).unwrap();
    r.receive_start(out.policy, &source_pdh(&a), &out.session)
        .unwrap();
    let mut p = l.send_update_data(Hva(a_uaddr.0 + DATA_GPA), 4096).unwrap();
    p.data[17] ^= 0x40;
    let e = r
        .receive_update_data(Hva(b_uaddr.0 + DATA_GPA), &p)
        .unwrap_err();
    assert_eq!(e.fw_status(), Some(FwStatus::BAD_MEASUREMENT), "{e}");
    assert_eq!(
        r.guest_status().unwrap().state,
        u32::from(SevGuestState::RUPDATE.0)
    );
    // The VMM decommissions instead of RECEIVE_FINISH: dropping the receiver and VM
    // tears the context down; the source cancels and runs on.
    drop(r);
    drop(vm);
    l.send_cancel().unwrap();
    let (ok, ..) = check_on(soft(&mut l.vcpus_mut()[0]));
    assert!(ok);
}

#[test]
fn snp_send_start_is_eperm_and_vmsa_ids_need_the_extension() {
    let h = host();
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    let mut s = KvmSevSendStart::default();
    let (r, _) = sev_ioctl(&vm, SevCmdId::SEND_START, &mut s);
    assert_eq!(r.unwrap_err().errno, Errno::EPERM);
    // Upstream KVM (sev_es_migration off): ids 10 and 14 are -EINVAL.
    let vm = h.create_vm(VmType::SEV_ES).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    for id in [SevCmdId::SEND_UPDATE_VMSA, SevCmdId::RECEIVE_UPDATE_VMSA] {
        let mut v = KvmSevSendUpdateVmsa::default();
        assert_eq!(
            sev_ioctl(&vm, id, &mut v).0.unwrap_err().errno,
            Errno::EINVAL
        );
    }
    // With the extension, a plain SEV VM is -ENOTTY (Hygon `csv_send_update_vmsa`).
    let a = host_a();
    let vm = a.create_vm(VmType::SEV).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    let mut v = KvmSevSendUpdateVmsa::default();
    assert_eq!(
        sev_ioctl(&vm, SevCmdId::SEND_UPDATE_VMSA, &mut v)
            .0
            .unwrap_err()
            .errno,
        Errno::ENOTTY
    );
}

#[test]
fn dirty_log_and_mincore_follow_kvm() {
    let h = host();
    let vm = h.create_vm(VmType::SEV).unwrap();
    let uaddr = h.user().mmap(MEM).unwrap();
    let region = |flags: u32, gpa: u64| KvmUserspaceMemoryRegion2 {
        slot: 1,
        flags,
        guest_phys_addr: gpa,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        ..Default::default()
    };
    vm.set_user_memory_region2(&region(0, 0)).unwrap();
    let bm = h.user().mmap(4096).unwrap();
    let log = |slot: u32| {
        vm.get_dirty_log(&KvmDirtyLog {
            slot,
            pad: 0,
            dirty_bitmap: bm.0,
        })
    };
    // A slot without dirty logging: -ENOENT; no slot: -ENOENT; a bad id: -EINVAL.
    assert_eq!(log(1).unwrap_err().errno, Errno::ENOENT);
    assert_eq!(log(2).unwrap_err().errno, Errno::ENOENT);
    assert_eq!(log(40000).unwrap_err().errno, Errno::EINVAL);
    assert_eq!(log(2 << 16).unwrap_err().errno, Errno::EINVAL);
    // Turning the flag on is a flags-only change; moving is still refused.
    vm.set_user_memory_region2(&region(KVM_MEM_LOG_DIRTY_PAGES, 0))
        .unwrap();
    assert_eq!(
        vm.set_user_memory_region2(&region(KVM_MEM_LOG_DIRTY_PAGES, 0x10_0000))
            .unwrap_err()
            .errno,
        Errno::EINVAL
    );
    init2(&vm, KvmSevInit::default()).unwrap();
    let mut s = KvmSevLaunchStart::default();
    sev_ioctl(&vm, SevCmdId::LAUNCH_START, &mut s).0.unwrap();
    // VMM writes are not KVM's to track.
    h.user().write(Hva(uaddr.0 + 0x3000), &[1; 8]).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_guest(|cpu: &mut GuestCpu| {
        cpu.write(Gpa(0x5000), CBit::Private, &[2; 8])?;
        cpu.write(Gpa(0x41_000), CBit::Shared, &[3; 8])?;
        let mut b = [0u8; 8];
        cpu.read(Gpa(0x7000), CBit::Private, &mut b)?;
        Ok(GuestEnd::Halt)
    });
    let mut m = KvmSevLaunchMeasure::default();
    let buf = h.user().mmap(4096).unwrap();
    m.uaddr = buf.0;
    m.len = 48;
    sev_ioctl(&vm, SevCmdId::LAUNCH_MEASURE, &mut m).0.unwrap();
    sev_ioctl(&vm, SevCmdId::LAUNCH_FINISH, &mut [0u8; 8])
        .0
        .unwrap();
    assert_eq!(vcpu.run().unwrap(), &VcpuExit::Hlt);
    log(1).unwrap();
    let mut words = vec![0u8; 32];
    h.user().read(bm, &mut words).unwrap();
    let w0 = u64::from_le_bytes(words[..8].try_into().unwrap());
    let w1 = u64::from_le_bytes(words[8..16].try_into().unwrap());
    assert_eq!((w0, w1), (1 << 5, 1 << 1), "pages 5 and 0x41 only");
    // Read and cleared.
    log(1).unwrap();
    h.user().read(bm, &mut words).unwrap();
    assert!(words.iter().all(|b| *b == 0));
    // Dirty logging of a guest_memfd slot is refused (`check_memory_region_flags`).
    let snp = h.create_vm(VmType::SNP).unwrap();
    let fd = snp
        .create_guest_memfd(&KvmCreateGuestMemfd {
            size: MEM,
            ..Default::default()
        })
        .unwrap();
    let mut r = region(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD, 0);
    r.guest_memfd = fd;
    assert_eq!(
        snp.set_user_memory_region2(&r).unwrap_err().errno,
        Errno::EINVAL
    );
    // mincore: the touched pages of the mapping.
    let res = h.user().mincore(uaddr, MEM).unwrap();
    let touched: Vec<usize> = res
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(touched, vec![3, 5, 7, 0x41]);
    assert_eq!(
        h.user().mincore(Hva(uaddr.0 + 1), 4096).unwrap_err().errno,
        Errno::EINVAL
    );
    assert_eq!(
        h.user().mincore(uaddr, MEM + 4096).unwrap_err().errno,
        Errno::ENOMEM
    );
}

#[test]
fn a_vcpu_blocked_in_an_exit_can_be_dropped_with_its_vm() {
    let h = host_a();
    let (mut l, _) = launched(&h, 0);
    let handle = l.handle();
    let v = soft(&mut l.vcpus_mut()[0]);
    v.set_guest(|cpu: &mut GuestCpu| {
        cpu.io_out(0x80, 1, 0x42)?;
        // Only reached if the VMM ran the vCPU again.
        cpu.io_out(0x80, 1, 0x43)?;
        Ok(GuestEnd::Halt)
    });
    assert!(matches!(
        v.run().unwrap(),
        VcpuExit::Io {
            port: 0x80,
            data: 0x42,
            ..
        }
    ));
    // Tear the source down with its vCPU in the exit: the guest thread sees the vCPU
    // gone (GuestFault::Stopped) and ends, releasing the VM, whose teardown
    // decommissions the firmware context. (A bounded wait for that, not a timing
    // assertion: the thread ends on its own schedule.)
    let fw = h.firmware().clone();
    drop(l);
    let gone = (0..2000).any(|_| {
        let g = fw.sev_guest_state(handle).is_none();
        if !g {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        g
    });
    assert!(
        gone,
        "the context of handle {handle} was never decommissioned"
    );
}
