//! Page-state-change speed, end to end: the guest writes a PSC descriptor into its
//! GHCB and VMGEXITs; the host validates it and exits with MAP_GPA_RANGE; the VMM sets
//! the attributes, discards the old backing and pre-faults (RMPUPDATE); the host
//! completes the descriptor and resumes the guest, which signals with an OUT.
//!
//! - `psc_253x4k`: 253 4 KiB entries per PSC, alternating private / shared.
//! - `convert_64g_2m`: 64 GiB to private with 2 MiB entries (130 PSCs of ≤ 253 entries).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_abi::ghcb::*;
use softsev_abi::kvm::*;
use softsev_abi::{PAGE_SIZE_2M, PAGE_SIZE_4K, Product};
use softsev_firmware::FirmwareConfig;
use softsev_firmware::identity::Chip;
use softsev_host::*;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

const GHCB_GPA: u64 = 0x1000;

fn setup(mem: u64, soc_mem: u64) -> (SoftVm, SoftVcpu) {
    let chip = Arc::new(Chip::from_seed(Product::Milan, b"host bench").expect("chip"));
    let mut cfg = FirmwareConfig::for_product(Product::Milan);
    cfg.seed = Some(b"bench".to_vec());
    let platform = SoftPlatform::builder(Product::Milan)
        .mem(soc_mem)
        .chip(chip)
        .firmware_config(cfg)
        .module_params(ModuleParams {
            event_log_cap: 0,
            ..Default::default()
        })
        .build()
        .expect("platform");
    let h = platform.host().clone();
    let vm = h.create_vm(VmType::SNP).expect("vm");
    let user = h.user().clone();
    let stage = |id: SevCmdId, data: &[u8]| {
        let hva = user.mmap(data.len() as u64).expect("mmap");
        user.write(hva, data).expect("write");
        let mut cmd = KvmSevCmd {
            id: id.0,
            data: hva.0,
            ..Default::default()
        };
        vm.memory_encrypt_op(&mut cmd).expect("encrypt op");
    };
    stage(SevCmdId::INIT2, KvmSevInit::default().as_bytes());
    vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
        .expect("cap");
    let uaddr = user.mmap(mem).expect("mmap");
    let gmem = vm
        .create_guest_memfd(&KvmCreateGuestMemfd {
            size: mem,
            ..Default::default()
        })
        .expect("gmem");
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        memory_size: mem,
        userspace_addr: uaddr.0,
        guest_memfd: gmem,
        ..Default::default()
    })
    .expect("memslot");
    stage(
        SevCmdId::SNP_LAUNCH_START,
        KvmSevSnpLaunchStart {
            policy: SNP_POLICY_RSVD_MBO | (1 << 16),
            ..Default::default()
        }
        .as_bytes(),
    );
    let vcpu = vm.create_vcpu(0).expect("vcpu");
    stage(
        SevCmdId::SNP_LAUNCH_FINISH,
        KvmSevSnpLaunchFinish::default().as_bytes(),
    );
    (vm, vcpu)
}

/// Guest code: register the (shared) GHCB, then for each batch received run the PSCs
/// and signal completion with OUT 0x80.
fn guest(
    rx: Receiver<Vec<Vec<PscEntry>>>,
) -> impl FnOnce(&mut GuestCpu) -> Result<GuestEnd, GuestFault> {
    move |cpu| {
        cpu.msr_protocol(
            GhcbMsg::RegGpaReq {
                gfn: GHCB_GPA >> 12,
            }
            .encode(),
        )?;
        while let Ok(batches) = rx.recv() {
            for entries in batches {
                let mut d = PscDesc {
                    hdr: PscHdr {
                        cur_entry: 0,
                        end_entry: (entries.len() - 1) as u16,
                        reserved: 0,
                    },
                    ..Default::default()
                };
                d.entries[..entries.len()].copy_from_slice(&entries);
                let mut g = Ghcb::request(2, NaeExit::PSC, 0, 0);
                g.shared_buffer.copy_from_slice(d.as_bytes());
                g.set(
                    GhcbField::SwScratch,
                    GHCB_GPA + GHCB_SHARED_BUF_OFFSET as u64,
                );
                let out = cpu.ghcb_call(softsev_abi::Gpa(GHCB_GPA), &g)?;
                if out.sw_exit_info_2 != 0 {
                    return Ok(GuestEnd::Shutdown);
                }
            }
            let mut g = Ghcb::request(2, NaeExit::IOIO, (0x80 << 16) | (1 << 4), 0);
            g.set(GhcbField::Rax, 0);
            cpu.ghcb_call(softsev_abi::Gpa(GHCB_GPA), &g)?;
        }
        Ok(GuestEnd::Halt)
    }
}

/// Run until the guest's OUT, answering MAP_GPA_RANGE with pre-faulting conversions.
fn drive(vm: &SoftVm, vcpu: &mut SoftVcpu) {
    loop {
        let exit = vcpu.run().expect("KVM_RUN");
        match exit {
            VcpuExit::Hypercall { .. } => {
                vm.handle_map_gpa_range(exit, Prefault::Now);
            }
            VcpuExit::Io { .. } => return,
            other => panic!("unexpected exit {other:?}"),
        }
    }
}

fn bench_psc(c: &mut Criterion) {
    let (vm, mut vcpu) = setup(64 << 20, 256 << 20);
    // The GHCB page is shared (attribute clear); everything else starts shared too.
    let (tx, rx) = channel();
    vcpu.set_guest(guest(rx));
    let base = 0x400u64;
    let mk = |op| -> Vec<PscEntry> {
        (0..253)
            .map(|i| PscEntry::new(base + i, op, false))
            .collect()
    };
    let (private, shared) = (mk(PscOp::PRIVATE), mk(PscOp::SHARED));
    c.bench_function("psc_253x4k_end_to_end", |b| {
        let mut flip = false;
        b.iter(|| {
            flip = !flip;
            let e = if flip {
                private.clone()
            } else {
                shared.clone()
            };
            tx.send(vec![e]).expect("guest alive");
            drive(&vm, &mut vcpu);
        })
    });
}

fn bench_64g(c: &mut Criterion) {
    const MEM: u64 = 64 << 30;
    let (vm, mut vcpu) = setup(MEM, MEM + (256 << 20));
    let (tx, rx) = channel();
    vcpu.set_guest(guest(rx));
    // 2 MiB entries from 2 MiB upwards (the first 2 MiB hold the GHCB).
    let first = PAGE_SIZE_2M / PAGE_SIZE_4K;
    let gfns: Vec<u64> = (first..MEM / PAGE_SIZE_4K).step_by(512).collect();
    let batches = |op| -> Vec<Vec<PscEntry>> {
        gfns.chunks(253)
            .map(|ch| ch.iter().map(|g| PscEntry::new(*g, op, true)).collect())
            .collect()
    };
    let (to_private, to_shared) = (batches(PscOp::PRIVATE), batches(PscOp::SHARED));
    let mut g = c.benchmark_group("convert_64g");
    g.sample_size(10);
    g.bench_function("to_private_2m_entries", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                tx.send(to_private.clone()).expect("guest alive");
                drive(&vm, &mut vcpu);
                total += t.elapsed();
                assert!(vm.is_private(softsev_abi::Gfn(MEM / PAGE_SIZE_4K - 1)));
                tx.send(to_shared.clone()).expect("guest alive");
                drive(&vm, &mut vcpu);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench_psc, bench_64g);
criterion_main!(benches);
