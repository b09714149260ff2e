//! Fuzz entry point `ghcb_vmgexit` (fuzz/fuzz_targets/ghcb_vmgexit.rs): a launched SNP
//! guest issues VMGEXITs built from the input — MSR-protocol values and full GHCBs with
//! arbitrary exit codes, infos, registers, valid bitmaps, usage and shared-buffer
//! contents (PSC descriptors included) — and a VMM answers the exits with values from
//! the input. Invariants checked after every input: the host did not panic, every
//! guest-owned page of the VM belongs to its ASID at its own GPA, and no GFN is both
//! shared (attribute) and backed by a guest-owned private page.

use crate::{
    GuestCpu, GuestEnd, GuestFault, MemAttr, ModuleParams, Prefault, RmpState, SoftHost,
    SoftPlatform, SoftVm, VcpuExit,
};
use softsev_abi::ghcb::{GHCB_SHARED_BUF_OFFSET, Ghcb, GhcbField, GhcbMsg, NaeExit};
use softsev_abi::kvm::*;
use softsev_abi::{AddrRange, Gfn, Gpa, PAGE_SIZE_4K, Product};
use softsev_firmware::FirmwareConfig;
use softsev_firmware::identity::Chip;
use std::sync::{Arc, OnceLock};
use zerocopy::IntoBytes;

const MEM: u64 = 8 << 20;
const GHCB_GPA: u64 = 0x1000;

struct Input<'a> {
    d: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.d.split_first() {
            Some((b, rest)) => {
                self.d = rest;
                *b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.byte();
        }
        u64::from_le_bytes(v)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.d.len());
        let (a, b) = self.d.split_at(n);
        self.d = b;
        a
    }
}

const CODES: [NaeExit; 16] = [
    NaeExit::PSC,
    NaeExit::PSC,
    NaeExit::PSC,
    NaeExit::CPUID,
    NaeExit::MSR,
    NaeExit::IOIO,
    NaeExit::MMIO_READ,
    NaeExit::MMIO_WRITE,
    NaeExit::GUEST_REQUEST,
    NaeExit::EXT_GUEST_REQUEST,
    NaeExit::AP_CREATION,
    NaeExit::AP_JUMP_TABLE,
    NaeExit::AP_HLT_LOOP,
    NaeExit::HV_FEATURES,
    NaeExit::VMMCALL,
    NaeExit::TERM_REQUEST,
];

/// One guest event decoded from the input.
enum Ev {
    Msr(u64),
    Full(Box<Ghcb>),
}

fn decode(data: &[u8]) -> (bool, Vec<Ev>, Vec<u8>) {
    let mut i = Input { d: data };
    let flags = i.byte();
    let register = flags & 1 == 0;
    let n = 1 + (flags >> 1) as usize % 4;
    let mut evs = Vec::new();
    for _ in 0..n {
        let sel = i.byte();
        if sel < 0x30 {
            let v = i.u64();
            // Bias towards real GHCBInfo codes.
            let v = if sel & 1 == 0 {
                (v & !0xFFF) | ((u64::from(sel & 0x1F) * 4) % 0x18 + 1)
            } else {
                v
            };
            evs.push(Ev::Msr(v));
            continue;
        }
        let code = if sel < 0xF0 {
            CODES[sel as usize % CODES.len()]
        } else {
            NaeExit(i.u64())
        };
        let (i1, i2) = (i.u64(), i.u64());
        let mut g = Ghcb::request(2, code, i1 % (MEM * 2), i2 % (MEM * 2));
        let b = i.byte();
        if b & 1 != 0 {
            g.set(GhcbField::Rax, i.u64());
        }
        if b & 2 != 0 {
            g.set(GhcbField::Rbx, i.u64() % 8);
        }
        if b & 4 != 0 {
            g.set(GhcbField::Rcx, i.u64());
        }
        if b & 8 != 0 {
            g.set(GhcbField::Rdx, i.u64());
        }
        if b & 16 != 0 {
            let off = u64::from(i.byte()) * 8;
            g.set(
                GhcbField::SwScratch,
                GHCB_GPA + GHCB_SHARED_BUF_OFFSET as u64 + off,
            );
        }
        if b & 32 != 0 {
            g.valid_bitmap = [0; 16];
            let v = i.take(16);
            g.valid_bitmap[..v.len()].copy_from_slice(v);
        }
        if b & 64 != 0 {
            g.ghcb_usage = u32::from(i.byte());
        }
        // PSC-ish shared buffer: header then entries whose GFNs stay near guest memory.
        let len = usize::from(i.byte()) * 8;
        let raw = i.take(len).to_vec();
        g.shared_buffer[..raw.len()].copy_from_slice(&raw);
        if code == NaeExit::PSC && b & 128 == 0 {
            for k in 0..raw.len().saturating_sub(8) / 8 {
                let o = 8 + k * 8;
                let mut e =
                    u64::from_le_bytes(g.shared_buffer[o..o + 8].try_into().unwrap_or([0; 8]));
                let gfn = ((e >> 12) & 0xFF_FFFF) % (MEM / PAGE_SIZE_4K + 600);
                e = (e & !(0xFF_FFFF_FFFF << 12)) | (gfn << 12);
                g.shared_buffer[o..o + 8].copy_from_slice(&e.to_le_bytes());
            }
        }
        evs.push(Ev::Full(Box::new(g)));
    }
    (register, evs, i.d.to_vec())
}

fn host() -> Arc<SoftHost> {
    static CHIP: OnceLock<Arc<Chip>> = OnceLock::new();
    let chip = CHIP
        .get_or_init(|| {
            Arc::new(
                Chip::from_seed(Product::Milan, b"ghcb fuzz")
                    .unwrap_or_else(|_| unreachable_chip()),
            )
        })
        .clone();
    let mut cfg = FirmwareConfig::for_product(Product::Milan);
    cfg.seed = Some(b"ghcb fuzz".to_vec());
    let platform = SoftPlatform::builder(Product::Milan)
        .mem(64 << 20)
        .chip(chip)
        .firmware_config(cfg)
        .module_params(ModuleParams {
            event_log_cap: 0,
            ..Default::default()
        })
        .build();
    match platform {
        Ok(p) => p.host().clone(),
        Err(e) => panic!("fuzz setup: {e}"),
    }
}

#[allow(clippy::panic)]
fn unreachable_chip() -> Chip {
    panic!("chip derivation from a fixed seed failed")
}

fn launch(h: &Arc<SoftHost>) -> Option<(SoftVm, crate::SoftVcpu)> {
    let vm = h.create_vm(VmType::SNP).ok()?;
    let user = h.user().clone();
    let op = |id: SevCmdId, data: &[u8]| -> Option<()> {
        let hva = user.mmap(data.len() as u64).ok()?;
        user.write(hva, data).ok()?;
        let mut cmd = KvmSevCmd {
            id: id.0,
            data: hva.0,
            ..Default::default()
        };
        vm.memory_encrypt_op(&mut cmd).ok()
    };
    op(SevCmdId::INIT2, KvmSevInit::default().as_bytes())?;
    vm.enable_cap(KvmCap::EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE)
        .ok()?;
    let uaddr = user.mmap(MEM).ok()?;
    let gmem = vm
        .create_guest_memfd(&KvmCreateGuestMemfd {
            size: MEM,
            ..Default::default()
        })
        .ok()?;
    vm.set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        memory_size: MEM,
        userspace_addr: uaddr.0,
        guest_memfd: gmem,
        ..Default::default()
    })
    .ok()?;
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0x20_0000,
        size: 0x20_0000,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .ok()?;
    op(
        SevCmdId::SNP_LAUNCH_START,
        KvmSevSnpLaunchStart {
            policy: 0x30000,
            ..Default::default()
        }
        .as_bytes(),
    )?;
    let v0 = vm.create_vcpu(0).ok()?;
    let _v1 = vm.create_vcpu(1).ok()?;
    op(
        SevCmdId::SNP_LAUNCH_FINISH,
        KvmSevSnpLaunchFinish::default().as_bytes(),
    )?;
    Some((vm, v0))
}

/// Check the ownership invariants of `vm`; returns a description of the first breach.
pub fn check_invariants(vm: &SoftVm) -> Option<String> {
    let asid = vm.sev_state().asid();
    let snap: Vec<_> = vm
        .memslots()
        .iter()
        .flat_map(|s| vm.rmp_snapshot(AddrRange::<Gfn>::new(s.base_gfn, s.npages)))
        .collect();
    for st in snap {
        let (gfn, private) = (st.gfn.0, st.private);
        let Some(RmpState { entry: e, size }) = st.rmp else {
            continue;
        };
        if !e.assigned() {
            continue;
        }
        let expect = match size {
            softsev_soc::PageSize::Size2M => (gfn & !511) << 12,
            softsev_soc::PageSize::Size4K => gfn << 12,
        };
        if e.asid() != asid || e.gpa() != expect {
            return Some(format!(
                "GFN {gfn:#x}: page owned by ASID {} at {:#x}",
                e.asid(),
                e.gpa()
            ));
        }
        if !private {
            return Some(format!(
                "GFN {gfn:#x} is shared but its private page is guest-owned"
            ));
        }
    }
    None
}

/// Fuzz the VMGEXIT handling with `data`; panics only on a broken invariant.
/// Returns the exits seen by the VMM and the events the VM logged (for corpus checks).
#[allow(clippy::panic)]
pub fn fuzz_ghcb(data: &[u8]) -> (Vec<u32>, u64) {
    let (register, evs, answers) = decode(data);
    let h = host();
    let Some((vm, mut vcpu)) = launch(&h) else {
        panic!("fuzz setup: launch failed");
    };
    vcpu.set_guest(move |cpu: &mut GuestCpu| -> Result<GuestEnd, GuestFault> {
        let gfn = GHCB_GPA >> 12;
        if register {
            cpu.msr_protocol(GhcbMsg::RegGpaReq { gfn }.encode())?;
        }
        for ev in evs {
            match ev {
                Ev::Msr(v) => {
                    cpu.msr_protocol(v)?;
                }
                Ev::Full(g) => {
                    cpu.ghcb_call(Gpa(GHCB_GPA), &g)?;
                }
            }
        }
        Ok(GuestEnd::Halt)
    });
    let mut a = Input { d: &answers };
    let mut exits = Vec::new();
    for _ in 0..64 {
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(_) => break,
        };
        exits.push(exit.reason().0);
        match exit {
            VcpuExit::Hypercall { ret, .. } => {
                let sel = a.byte();
                if sel < 200 {
                    let prefault = if sel & 1 == 0 {
                        Prefault::Now
                    } else {
                        Prefault::OnAccess
                    };
                    vm.handle_map_gpa_range(exit, prefault);
                } else {
                    *ret = u64::from(sel) % 16;
                }
            }
            VcpuExit::SnpReqCerts { ret, npages, .. } => {
                *ret = [0, 28, 11, 5, 99][a.byte() as usize % 5];
                *npages = u64::from(a.byte() % 8);
            }
            VcpuExit::Mmio { data, .. } => *data = a.u64().to_le_bytes(),
            VcpuExit::Io { data, .. } => *data = a.u64() as u32,
            VcpuExit::IoString { data, .. } => {
                for b in data.iter_mut() {
                    *b = a.byte();
                }
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    MemAttr::Private
                } else {
                    MemAttr::Shared
                };
                let (g, s) = (*gpa, *size);
                let _ = vm.convert_memory(Gpa(g), s, to, Prefault::OnAccess);
            }
            VcpuExit::ApResetHold => {}
            _ => break,
        }
        if let Some(b) = check_invariants(&vm) {
            panic!("invariant broken: {b}");
        }
    }
    if let Some(b) = check_invariants(&vm) {
        panic!("invariant broken: {b}");
    }
    (exits, vm.events().total())
}
