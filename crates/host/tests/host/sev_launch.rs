//! The legacy SEV / SEV-ES launch end to end through KVM_MEMORY_ENCRYPT_OP on a
//! software platform with the firmware's legacy API (sev-legacy.md §3, §4, §6.2,
//! §7.2–7.3, §8.1): the length-query protocol, ES_INIT vs INIT2 launch digests, the
//! protected register state, host writes turning into garbage for the guest, DBG with
//! unaligned offsets, and NODBG.

use crate::common::*;
use softsev_abi::kvm::*;
use softsev_abi::sev_buf::{SEV_MEASURE_LEN, SEV_REPORT_LEN, SevAttestationReport, SevGuestState};
use softsev_abi::{CBit, FwStatus, Gpa};
use softsev_guest::GuestPlatform;
use softsev_host::launch::{SevInit, SevLauncher, SevUpdate};
use softsev_host::*;
use softsev_measure::SevDigest;
use softsev_measure::vmsa::{BSP_EIP, VmmType, launch_vmsa};
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

const MEM: u64 = 4 << 20;

/// A VM of `ty` with one ordinary memslot at GPA 0 (behind the Vm trait too).
fn vm_with_memory(h: &Arc<SoftHost>, ty: VmType) -> (SoftVm, Hva) {
    let vm = h.create_vm(ty).unwrap();
    let uaddr = h.user().mmap(MEM).unwrap();
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        ..Default::default()
    })
    .unwrap();
    (vm, uaddr)
}

/// The launch digest the firmware reports (ATTESTATION, bytes 0x10..0x30).
fn report_digest(report: &[u8]) -> [u8; 32] {
    assert_eq!(report.len(), SEV_REPORT_LEN);
    SevAttestationReport::read_from_bytes(report)
        .unwrap()
        .launch_digest
}

#[test]
fn length_queries_return_eio_invalid_length_and_the_length() {
    let h = host();
    let (vm, uaddr) = vm_with_memory(&h, VmType::SEV);
    init2(&vm, KvmSevInit::default()).unwrap();
    let mut s = KvmSevLaunchStart::default();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::LAUNCH_START, &mut s);
    r.unwrap_or_else(|e| panic!("LAUNCH_START: {e} ({fw:#x})"));
    assert_ne!(s.handle, 0);
    let mut u = KvmSevLaunchUpdateData {
        uaddr: uaddr.0,
        len: 0x2000,
        ..Default::default()
    };
    assert_eq!(
        sev_ioctl(&vm, SevCmdId::LAUNCH_UPDATE_DATA, &mut u).0,
        Ok(())
    );
    // Attestation before LAUNCH_MEASURE: the firmware's guest state check.
    let mut a = KvmSevAttestationReport::default();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::GET_ATTESTATION_REPORT, &mut a);
    assert_eq!(r.unwrap_err().errno, Errno::EIO);
    assert_eq!(fw, FwStatus::INVALID_GUEST_STATE.0);
    // LAUNCH_MEASURE with len 0: -EIO, error INVALID_LENGTH (4), len = 48.
    let mut m = KvmSevLaunchMeasure::default();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::LAUNCH_MEASURE, &mut m);
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_LENGTH.0)
    );
    assert_eq!(m.len, SEV_MEASURE_LEN as u32);
    // Too small but non-zero: -EIO/4 and KVM leaves `len` as given.
    let buf = h.user().mmap(0x1000).unwrap();
    let mut m = KvmSevLaunchMeasure {
        uaddr: buf.0,
        len: 16,
        ..Default::default()
    };
    let (r, fw) = sev_ioctl(&vm, SevCmdId::LAUNCH_MEASURE, &mut m);
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_LENGTH.0)
    );
    assert_eq!(m.len, 16);
    let mut m = KvmSevLaunchMeasure {
        uaddr: buf.0,
        len: 48,
        ..Default::default()
    };
    assert_eq!(sev_ioctl(&vm, SevCmdId::LAUNCH_MEASURE, &mut m).0, Ok(()));
    // The report: query → -EIO/4/0xD0, then the report.
    let mut a = KvmSevAttestationReport::default();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::GET_ATTESTATION_REPORT, &mut a);
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_LENGTH.0)
    );
    assert_eq!(a.len, SEV_REPORT_LEN as u32);
    let mut st = KvmSevGuestStatus::default();
    assert_eq!(sev_ioctl(&vm, SevCmdId::GUEST_STATUS, &mut st).0, Ok(()));
    assert_eq!(
        (st.handle, st.state),
        (s.handle, u32::from(SevGuestState::LSECRET.0))
    );
    // SEND_START's session-length query: -EIO/4/128 (checked before the guest
    // state, sev-legacy.md §5.1).
    let mut ss = KvmSevSendStart::default();
    let (r, fw) = sev_ioctl(&vm, SevCmdId::SEND_START, &mut ss);
    assert_eq!(
        (r.unwrap_err().errno, fw),
        (Errno::EIO, FwStatus::INVALID_LENGTH.0)
    );
    assert_eq!(ss.session_len, 128);
    assert_eq!(
        sev_ioctl(&vm, SevCmdId::LAUNCH_FINISH, &mut [0u8; 8]).0,
        Ok(())
    );
    let mut st = KvmSevGuestStatus::default();
    sev_ioctl(&vm, SevCmdId::GUEST_STATUS, &mut st).0.unwrap();
    assert_eq!(st.state, u32::from(SevGuestState::RUNNING.0));
    assert!(h.sev_platform_initialised());
    assert!(h.sev_tmr().is_some());
    // Teardown: DEACTIVATE + DECOMMISSION, the ASID to the reclaim set.
    let before = h.asid_counts();
    drop(vm);
    let after = h.asid_counts();
    assert_eq!(after.in_use + 1, before.in_use);
    assert_eq!(after.awaiting_flush, before.awaiting_flush + 1);
}

/// An SEV-ES launch of `image` and one vCPU with `vmsa` through the trait-level
/// launcher; returns the launch digest from the attestation report and whether the
/// vCPU's registers could still be read after LAUNCH_UPDATE_VMSA.
fn es_launch(
    init: SevInit,
    ty: VmType,
    image: &[u8],
    vmsa: &softsev_abi::vmsa::Vmsa,
) -> ([u8; 32], bool) {
    let h = host();
    let (vm, uaddr) = vm_with_memory(&h, ty);
    let vm: Arc<dyn Vm> = Arc::new(vm);
    let mut l = SevLauncher::new(vm, init).unwrap();
    l.create_vcpu(0, vmsa).unwrap();
    let mut l = l.launch_start(0x4, None).unwrap();
    l.update_data(SevUpdate {
        gpa: Gpa(0),
        uaddr,
        data: image,
    })
    .unwrap();
    l.update_vmsa().unwrap();
    let readable = l.vcpus()[0].vmsa_state().is_ok();
    let l = l.measure().unwrap();
    let report = l.attestation_report([7; 16]).unwrap();
    assert_eq!(&report[..16], &[7; 16]);
    let st = l.guest_status().unwrap();
    assert_eq!(st.policy, 0x4);
    let l = l.finish().unwrap().into_running();
    assert_eq!(
        l.guest_status().unwrap().state,
        u32::from(SevGuestState::RUNNING.0)
    );
    (report_digest(&report), readable)
}

#[test]
fn es_init_and_init2_digests_differ_exactly_in_the_fpu_fields() {
    let image: Vec<u8> = (0..0x3000u32).map(|i| (i * 7) as u8).collect();
    // softsev_measure's SEV-ES VMSA (QEMU, INIT2 model): BSP at the reset vector.
    let vmsa = launch_vmsa(BSP_EIP, 0, 0x00A0_0F11, VmmType::Qemu);
    let (init2, init2_readable) = es_launch(
        SevInit::Init2(KvmSevInit::default()),
        VmType::SEV_ES,
        &image,
        &vmsa,
    );
    let (es_init, es_init_readable) = es_launch(SevInit::EsInit, VmType::DEFAULT, &image, &vmsa);
    let digest = |v: &softsev_abi::vmsa::Vmsa| {
        let mut d = SevDigest::new();
        d.update(&image);
        d.update(v.as_bytes());
        d.finish()
    };
    // INIT2 measures the VMSA softsev_measure models; ES_INIT the same with MXCSR and
    // FCW left zero (sev-legacy.md §8.1; what sevctl models).
    assert_eq!(init2, digest(&vmsa));
    let mut legacy = vmsa.clone();
    legacy.mxcsr = 0;
    legacy.x87_fcw = 0;
    assert_eq!(es_init, digest(&legacy));
    assert_ne!(init2, es_init);
    // Protected state: refused on the SEV-ES VM type, KVM's stale copy on DEFAULT.
    assert!(!init2_readable);
    assert!(es_init_readable);
}

#[test]
fn host_writes_to_sev_memory_are_garbage_to_the_guest_and_dbg_round_trips() {
    let h = host();
    let (vm, uaddr) = vm_with_memory(&h, VmType::SEV);
    let vm = Arc::new(vm);
    let dynvm: Arc<dyn Vm> = vm.clone();
    let l = SevLauncher::new(dynvm, SevInit::Init2(KvmSevInit::default())).unwrap();
    let mut l = l.launch_start(0, None).unwrap();
    let secret: Vec<u8> = (0..64u8).collect();
    l.update_data(SevUpdate {
        gpa: Gpa(0x1000),
        uaddr: Hva(uaddr.0 + 0x1000),
        data: &secret,
    })
    .unwrap();
    // The firmware encrypted in place: the VMM sees ciphertext.
    let mut raw = vec![0u8; 64];
    h.user().read(Hva(uaddr.0 + 0x1000), &mut raw).unwrap();
    assert_ne!(raw, secret);
    // DBG_DECRYPT with unaligned offsets and length (KVM's bounce page).
    assert_eq!(l.dbg_decrypt(Hva(uaddr.0 + 0x1000), 64).unwrap(), secret);
    assert_eq!(
        l.dbg_decrypt(Hva(uaddr.0 + 0x1003), 21).unwrap(),
        &secret[3..24]
    );
    // DBG_ENCRYPT of 16 aligned bytes: straight to the firmware.
    l.dbg_encrypt(Hva(uaddr.0 + 0x1010), &[0xAA; 16]).unwrap();
    let mut want = secret.clone();
    want[0x10..0x20].fill(0xAA);
    assert_eq!(l.dbg_decrypt(Hva(uaddr.0 + 0x1000), 64).unwrap(), want);
    // Unaligned size: RMW of the rounded block.
    l.dbg_encrypt(Hva(uaddr.0 + 0x1020), &[0xBB; 5]).unwrap();
    want[0x20..0x25].fill(0xBB);
    assert_eq!(l.dbg_decrypt(Hva(uaddr.0 + 0x1000), 64).unwrap(), want);
    let l = l.measure().unwrap().finish().unwrap().into_running();
    assert!(l.vcpus().is_empty());
    let mut vcpu = vm.create_vcpu(0).unwrap();
    // The host overwrites the guest's private page.
    h.user().write(Hva(uaddr.0 + 0x1000), &[0x55; 64]).unwrap();
    let expect = want.clone();
    vcpu.set_guest(move |cpu: &mut GuestCpu| {
        let mut got = vec![0u8; 64];
        cpu.read(Gpa(0x1000), CBit::Private, &mut got)?;
        // Read through the guest key: neither the host's bytes nor the old plaintext.
        assert_ne!(got, vec![0x55; 64]);
        assert_ne!(got, expect);
        Ok(GuestEnd::Halt)
    });
    assert_eq!(vcpu.run().unwrap(), &VcpuExit::Hlt);
}

#[test]
fn nodbg_policy_refuses_dbg_with_policy_failure() {
    let h = host();
    let (vm, uaddr) = vm_with_memory(&h, VmType::SEV);
    init2(&vm, KvmSevInit::default()).unwrap();
    let mut s = KvmSevLaunchStart {
        policy: 1,
        ..Default::default()
    };
    sev_ioctl(&vm, SevCmdId::LAUNCH_START, &mut s).0.unwrap();
    let dst = h.user().mmap(0x1000).unwrap();
    for id in [SevCmdId::DBG_DECRYPT, SevCmdId::DBG_ENCRYPT] {
        let mut d = KvmSevDbg {
            src_uaddr: uaddr.0,
            dst_uaddr: dst.0,
            len: 32,
            ..Default::default()
        };
        if id == SevCmdId::DBG_ENCRYPT {
            (d.src_uaddr, d.dst_uaddr) = (dst.0, uaddr.0);
        }
        let (r, fw) = sev_ioctl(&vm, id, &mut d);
        assert_eq!(
            (r.unwrap_err().errno, fw),
            (Errno::EIO, FwStatus::POLICY_FAILURE.0),
            "{id:?}"
        );
    }
}
