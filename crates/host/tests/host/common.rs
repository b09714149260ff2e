//! Shared test setup: a Milan software platform (from `SoftPlatform::builder`), an SNP VM with one
//! guest_memfd memslot, launch helpers through KVM_MEMORY_ENCRYPT_OP, and a VMM loop
//! that answers MAP_GPA_RANGE and memory-fault exits the way QEMU does.

use softsev_abi::kvm::*;
use softsev_abi::{PAGE_SIZE_4K, Product};
use softsev_firmware::FirmwareConfig;
use softsev_firmware::identity::Chip;
use softsev_host::*;
use std::sync::{Arc, OnceLock};
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub(crate) const SNP_POLICY: u64 = (1 << 16) | (1 << 17);

pub(crate) fn chip() -> Arc<Chip> {
    static C: OnceLock<Arc<Chip>> = OnceLock::new();
    C.get_or_init(|| Arc::new(Chip::from_seed(Product::Milan, b"host-tests").unwrap()))
        .clone()
}

pub(crate) fn host_with(mem: u64, params: ModuleParams) -> Arc<SoftHost> {
    let mut cfg = FirmwareConfig::for_product(Product::Milan);
    cfg.seed = Some(b"host tests".to_vec());
    cfg.min_sev_asid = 16;
    SoftPlatform::builder(Product::Milan)
        .mem(mem)
        .chip(chip())
        .firmware_config(cfg)
        .module_params(params)
        .build()
        .unwrap()
        .host()
        .clone()
}

pub(crate) fn host() -> Arc<SoftHost> {
    host_with(1 << 30, ModuleParams::default())
}

/// Issue KVM_MEMORY_ENCRYPT_OP with `data` staged in VMM memory; `data` is updated
/// from what KVM copied back. Returns the result and `kvm_sev_cmd.error`.
pub(crate) fn sev_ioctl<T: IntoBytes + FromBytes + Immutable>(
    vm: &SoftVm,
    id: SevCmdId,
    data: &mut T,
) -> (KvmResult, u32) {
    let user = vm.host().user();
    let hva = user.mmap(std::mem::size_of::<T>().max(1) as u64).unwrap();
    user.write(hva, data.as_bytes()).unwrap();
    let mut cmd = KvmSevCmd {
        id: id.0,
        data: hva.0,
        sev_fd: 3,
        ..Default::default()
    };
    let r = vm.memory_encrypt_op(&mut cmd);
    user.read(hva, data.as_mut_bytes()).unwrap();
    user.munmap(hva).unwrap();
    (r, cmd.error)
}

pub(crate) fn init2(vm: &SoftVm, init: KvmSevInit) -> KvmResult {
    let mut i = init;
    sev_ioctl(vm, SevCmdId::INIT2, &mut i).0
}

/// Guest memory of a test VM: one slot at GPA 0 of `size` bytes, shared backing in
/// VMM memory, private backing in a guest_memfd.
pub(crate) struct TestVm {
    pub vm: SoftVm,
    pub vcpus: Vec<SoftVcpu>,
    pub uaddr: Hva,
}

pub(crate) fn add_memory(vm: &SoftVm, size: u64) -> (Hva, u32) {
    let uaddr = vm.host().user().mmap(size).unwrap();
    let gmem = vm
        .create_guest_memfd(&KvmCreateGuestMemfd {
            size,
            ..Default::default()
        })
        .unwrap();
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: 0,
        memory_size: size,
        userspace_addr: uaddr.0,
        guest_memfd_offset: 0,
        guest_memfd: gmem,
        ..Default::default()
    })
    .unwrap();
    (uaddr, gmem)
}

/// An SNP VM launched the way the KVM selftests' `vm_sev_launch` does: INIT2,
/// SNP_LAUNCH_START(policy), memory private, the first `image_pages` pages
/// LAUNCH_UPDATE'd as NORMAL from VMM memory, SNP_LAUNCH_FINISH.
pub(crate) fn launched_snp(
    h: &Arc<SoftHost>,
    size: u64,
    nvcpus: u32,
    image_pages: u64,
    policy: u64,
) -> TestVm {
    launched_snp_with(h, size, nvcpus, image_pages, policy, None, false)
}

/// As [`launched_snp`], with a SECRETS page at `secrets_gfn` and optionally the
/// certificate exit enabled.
pub(crate) fn launched_snp_with(
    h: &Arc<SoftHost>,
    size: u64,
    nvcpus: u32,
    image_pages: u64,
    policy: u64,
    secrets_gfn: Option<u64>,
    req_certs: bool,
) -> TestVm {
    let vm = h.create_vm(VmType::SNP).unwrap();
    init2(&vm, KvmSevInit::default()).unwrap();
    if req_certs {
        sev_ioctl(&vm, SevCmdId::SNP_ENABLE_REQ_CERTS, &mut [0u8; 8])
            .0
            .unwrap();
    }
    vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
        .unwrap();
    let (uaddr, _gmem) = add_memory(&vm, size);
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0,
        size,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    let mut start = KvmSevSnpLaunchStart {
        policy,
        ..Default::default()
    };
    let (r, e) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_START, &mut start);
    r.unwrap_or_else(|err| panic!("launch start: {err} (fw {e:#x})"));
    let vcpus = (0..nvcpus).map(|i| vm.create_vcpu(i).unwrap()).collect();
    if image_pages > 0 {
        // A recognisable image: page i filled with byte i+1.
        for i in 0..image_pages {
            h.user()
                .write(
                    Hva(uaddr.0 + i * PAGE_SIZE_4K),
                    &[(i + 1) as u8; PAGE_SIZE_4K as usize],
                )
                .unwrap();
        }
        let mut u = KvmSevSnpLaunchUpdate {
            gfn_start: 0,
            uaddr: uaddr.0,
            len: image_pages * PAGE_SIZE_4K,
            page_type: 1,
            ..Default::default()
        };
        while u.len > 0 {
            let (r, e) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_UPDATE, &mut u);
            r.unwrap_or_else(|err| panic!("launch update: {err} (fw {e:#x})"));
        }
    }
    if let Some(g) = secrets_gfn {
        let mut u = KvmSevSnpLaunchUpdate {
            gfn_start: g,
            uaddr: uaddr.0 + g * PAGE_SIZE_4K,
            len: PAGE_SIZE_4K,
            page_type: 5,
            ..Default::default()
        };
        let (r, e) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_UPDATE, &mut u);
        r.unwrap_or_else(|err| panic!("secrets page: {err} (fw {e:#x})"));
    }
    let mut f = KvmSevSnpLaunchFinish {
        host_data: [0x42; 32],
        ..Default::default()
    };
    let (r, e) = sev_ioctl(&vm, SevCmdId::SNP_LAUNCH_FINISH, &mut f);
    r.unwrap_or_else(|err| panic!("launch finish: {err} (fw {e:#x})"));
    TestVm { vm, vcpus, uaddr }
}

/// Run a vCPU, answering MAP_GPA_RANGE hypercalls and memory faults like QEMU
/// (`prefault`: prepare private pages at conversion); returns the first other exit.
pub(crate) fn run_vmm(vm: &SoftVm, vcpu: &mut SoftVcpu, prefault: bool) -> VcpuExit {
    loop {
        let exit = vcpu.run().unwrap_or_else(|e| panic!("KVM_RUN failed: {e}"));
        match exit {
            VcpuExit::Hypercall { .. } => {
                let when = if prefault {
                    Prefault::Now
                } else {
                    Prefault::OnAccess
                };
                assert!(vm.handle_map_gpa_range(exit, when));
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    MemAttr::Private
                } else {
                    MemAttr::Shared
                };
                vm.convert_memory(softsev_abi::Gpa(*gpa), *size, to, Prefault::OnAccess)
                    .unwrap();
            }
            other => return other.clone(),
        }
    }
}
