//! The full-GHCB protocol (GHCB spec 56421 §2.3.2, §4.1; Linux `sev_handle_vmgexit`,
//! `sev_es_validate_vmgexit`): the GHCB is read from shared memory and checked
//! (registered GPA, usage, SW_EXITCODE/INFO valid, SNP-only events), then the event is
//! dispatched to one function per NAE exit code.

use super::{Completion, GhcbCtx, Nae, Outcome, ScratchArea, ap, features, guest_req, need, psc};
use crate::error::KvmResult;
use crate::events::Event;
use crate::state::VcpuShared;
use crate::vcpu::VcpuExit;
use crate::vm::VmInner;
use softsev_abi::Gpa;
use softsev_abi::ghcb::*;
use softsev_abi::kvm::SystemEventType;
use zerocopy::IntoBytes;

/// Handle a VMGEXIT whose GHCB MSR holds the GHCB's GPA.
pub(super) fn full_ghcb(vm: &VmInner, vcpu: &VcpuShared, gpa: Gpa) -> KvmResult<Outcome> {
    let log_err = |reason: &str| {
        vm.log.push(Event::GhcbError {
            vcpu: vcpu.id(),
            ghcb_gpa: gpa.0,
            exit_code: 0,
            error: 0,
            reason: reason.into(),
        })
    };
    if gpa.0 == 0 {
        log_err("VMGEXIT without a GHCB GPA: resumed");
        return Ok(Outcome::Resume);
    }
    let mut g = Box::new(Ghcb::default());
    if vm.read_shared(gpa, g.as_mut_bytes()).is_err() {
        log_err("the GHCB GPA is not guest memory: resumed");
        return Ok(Outcome::Resume);
    }
    let code = g.sw_exit_code;
    let mut c = GhcbCtx { gpa, g, code };
    let snp = vm.snp();
    if snp {
        let reg = vcpu.state().ghcb_registered();
        if reg != Some(gpa) {
            return super::kvm_fatal(
                vm,
                vcpu,
                &mut c,
                GhcbError::NOT_REGISTERED,
                format!("GHCB at {:#x}, registered {:x?}", gpa.0, reg.map(|r| r.0)),
            );
        }
    }
    if c.g.ghcb_usage != GHCB_DEFAULT_USAGE {
        let u = c.g.ghcb_usage;
        return super::bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::INVALID_USAGE,
            format!("usage {u:#x}"),
        );
    }
    let input = c.g.clone();
    let (Some(code), Some(info1), Some(info2)) = (
        input.get(GhcbField::SwExitCode),
        input.get(GhcbField::SwExitInfo1),
        input.get(GhcbField::SwExitInfo2),
    ) else {
        return super::bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::MISSING_INPUT,
            "SW_EXITCODE / SW_EXITINFO1 / SW_EXITINFO2 not valid".into(),
        );
    };
    // The hypervisor consumes the inputs and clears the bitmap.
    c.g.clear_valid();
    let ev = NaeExit(code);
    let n = Nae {
        vm,
        vcpu,
        c,
        input,
        ev,
        info1,
        info2,
    };
    let snp_only = matches!(
        ev,
        NaeExit::PSC | NaeExit::GUEST_REQUEST | NaeExit::EXT_GUEST_REQUEST | NaeExit::AP_CREATION
    );
    if snp_only && !snp {
        // `sev_es_validate_vmgexit`: the SNP-only events of a non-SNP guest leave
        // through `vmgexit_err` with the reason still MISSING_INPUT (INVALID_EVENT is
        // only for codes KVM does not know).
        return n.bad_input(
            GhcbError::MISSING_INPUT,
            format!("{ev:?} from a non-SNP guest"),
        );
    }
    match ev {
        NaeExit::CPUID => cpuid(n),
        NaeExit::MSR => msr(n),
        NaeExit::IOIO => ioio(n),
        NaeExit::MMIO_READ | NaeExit::MMIO_WRITE => mmio(n),
        NaeExit::VMMCALL => vmmcall(n),
        NaeExit::RDTSC | NaeExit::RDTSCP => rdtsc(n),
        NaeExit::READ_DR7 => read_dr7(n),
        NaeExit::WRITE_DR7 => write_dr7(n),
        NaeExit::WBINVD
        | NaeExit::INVD
        | NaeExit::MONITOR
        | NaeExit::MWAIT
        | NaeExit::NMI_COMPLETE => n.finish(0, 0),
        NaeExit::AP_HLT_LOOP => n.exit(VcpuExit::ApResetHold, Completion::ApHold),
        NaeExit::AP_JUMP_TABLE => ap_jump_table(n),
        NaeExit::PSC => psc::start(n),
        NaeExit::GUEST_REQUEST | NaeExit::EXT_GUEST_REQUEST => guest_req::request(n),
        NaeExit::AP_CREATION => ap::creation(n),
        NaeExit::HV_FEATURES => n.finish(0, features()),
        NaeExit::TERM_REQUEST => term_request(n),
        NaeExit::UNSUPPORTED_EVENT => unsupported_event(n),
        _ => n.bad_input(GhcbError::INVALID_EVENT, format!("event {code:#x}")),
    }
}

/// CPUID: RAX (and RCX) in, the leaf the VMM set (KVM_SET_CPUID2) out.
fn cpuid(mut n: Nae) -> KvmResult<Outcome> {
    // `sev_es_validate_vmgexit`: CPUID needs RAX and RCX (and XCR0 for leaf 0xD).
    need!(n, GhcbField::Rax, GhcbField::Rcx);
    if n.input.rax == 0xD {
        need!(n, GhcbField::Xcr0);
    }
    let leaf = n.input.rax as u32;
    let sub = n.input.rcx as u32;
    let e = {
        let st = n.vcpu.state();
        st.cpuid(leaf, sub)
            .or_else(|| st.cpuid(leaf, 0))
            .unwrap_or_default()
    };
    n.c.g.rax = u64::from(e.eax);
    n.c.g.rbx = u64::from(e.ebx);
    n.c.g.rcx = u64::from(e.ecx);
    n.c.g.rdx = u64::from(e.edx);
    n.finish(0, 0)
}

/// RDMSR / WRMSR (SW_EXITINFO1 0 / 1) of the MSR in RCX.
fn msr(mut n: Nae) -> KvmResult<Outcome> {
    need!(n, GhcbField::Rcx);
    let msr = n.input.rcx as u32;
    match n.info1 {
        0 => {
            let v = n.vcpu.state().msr(msr);
            n.c.g.rax = v & 0xFFFF_FFFF;
            n.c.g.rdx = v >> 32;
            n.finish(0, 0)
        }
        1 => {
            need!(n, GhcbField::Rax, GhcbField::Rdx);
            let v = (n.input.rdx << 32) | (n.input.rax & 0xFFFF_FFFF);
            n.vcpu.state().set_msr(msr, v);
            n.finish(0, 0)
        }
        t => n.bad_input(GhcbError::INVALID_INPUT, format!("MSR access type {t}")),
    }
}

/// Bytes of an I/O access of `size`, as a mask.
fn io_mask(size: u8) -> u64 {
    if size == 4 {
        0xFFFF_FFFF
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// IOIO: IN / OUT to the VMM, string I/O through the scratch area.
fn ioio(n: Nae) -> KvmResult<Outcome> {
    let info1 = n.info1;
    let is_in = info1 & 1 != 0;
    let size: u8 = match (info1 >> 4) & 7 {
        1 => 1,
        2 => 2,
        4 => 4,
        s => return n.bad_input(GhcbError::INVALID_INPUT, format!("I/O size field {s}")),
    };
    let port = (info1 >> 16) as u16;
    if info1 & (1 << 2) != 0 {
        return string_io(n, port, size, is_in);
    }
    if is_in {
        n.exit(
            VcpuExit::Io {
                port,
                size,
                write: false,
                data: 0,
            },
            |c| Completion::IoIn(c, size),
        )
    } else {
        need!(n, GhcbField::Rax);
        let data = (n.input.rax & io_mask(size)) as u32;
        n.exit(
            VcpuExit::Io {
                port,
                size,
                write: true,
                data,
            },
            Completion::Write,
        )
    }
}

/// INS / OUTS: SW_EXITINFO2 elements of `size` bytes in the scratch area.
fn string_io(n: Nae, port: u16, size: u8, is_in: bool) -> KvmResult<Outcome> {
    need!(n, GhcbField::SwScratch);
    let count = n.info2;
    let bytes = count.checked_mul(u64::from(size)).filter(|b| *b > 0);
    let Some(area) = bytes.and_then(|b| n.scratch(b as usize)) else {
        let s = n.input.sw_scratch;
        return n.bad_input(
            GhcbError::INVALID_SCRATCH_AREA,
            format!("{count} × {size} bytes of string I/O at {s:#x} outside the shared buffer"),
        );
    };
    if is_in {
        n.exit(
            VcpuExit::IoString {
                port,
                size,
                write: false,
                count: count as u32,
                data: vec![0; area.len],
            },
            |c| Completion::MmioRead(c, area),
        )
    } else {
        let data = n.input.shared_buffer[area.off..area.off + area.len].to_vec();
        n.exit(
            VcpuExit::IoString {
                port,
                size,
                write: true,
                count: count as u32,
                data,
            },
            Completion::Write,
        )
    }
}

/// MMIO read / write of SW_EXITINFO2 (1..=8) bytes at SW_EXITINFO1, data in the
/// scratch area.
fn mmio(n: Nae) -> KvmResult<Outcome> {
    need!(n, GhcbField::SwScratch);
    let len = n.info2;
    if len == 0 || len > 8 {
        return n.bad_input(GhcbError::INVALID_INPUT, format!("MMIO length {len}"));
    }
    let Some(area) = n.scratch(len as usize) else {
        let s = n.input.sw_scratch;
        return n.bad_input(
            GhcbError::INVALID_SCRATCH_AREA,
            format!("scratch {s:#x}+{len} outside the shared buffer"),
        );
    };
    let gpa = n.info1;
    if n.ev == NaeExit::MMIO_WRITE {
        let mut data = [0u8; 8];
        data[..area.len].copy_from_slice(&n.input.shared_buffer[area.off..area.off + area.len]);
        n.exit(
            VcpuExit::Mmio {
                gpa,
                len: len as u8,
                write: true,
                data,
            },
            Completion::Write,
        )
    } else {
        n.exit(
            VcpuExit::Mmio {
                gpa,
                len: len as u8,
                write: false,
                data: [0; 8],
            },
            |c| Completion::MmioRead(c, area),
        )
    }
}

/// VMMCALL: no KVM hypercall is offered (-KVM_ENOSYS).
fn vmmcall(mut n: Nae) -> KvmResult<Outcome> {
    need!(n, GhcbField::Rax, GhcbField::Cpl);
    n.c.g.rax = (-1000i64) as u64;
    n.finish(0, 0)
}

/// RDTSC / RDTSCP: the VM's TSC (RDTSCP also gives TSC_AUX = the vCPU id in RCX).
fn rdtsc(mut n: Nae) -> KvmResult<Outcome> {
    let t = n.vm.read_tsc();
    n.c.g.rax = t & 0xFFFF_FFFF;
    n.c.g.rdx = t >> 32;
    if n.ev == NaeExit::RDTSCP {
        n.c.g.rcx = u64::from(n.vcpu.id());
    }
    n.finish(0, 0)
}

/// DR7 read: the reset value.
fn read_dr7(mut n: Nae) -> KvmResult<Outcome> {
    n.c.g.rax = 0x400;
    n.finish(0, 0)
}

/// DR7 write: accepted and ignored.
fn write_dr7(n: Nae) -> KvmResult<Outcome> {
    need!(n, GhcbField::Rax);
    n.finish(0, 0)
}

/// AP jump table: set (SW_EXITINFO1 0) or get (1) the SEV-ES AP jump table address.
/// It is one value per VM (`kvm_sev_info.ap_jump_table`): the BSP sets it, the APs
/// woken from reset hold get it.
fn ap_jump_table(n: Nae) -> KvmResult<Outcome> {
    use std::sync::atomic::Ordering;
    match n.info1 {
        0 => {
            n.vm.ap_jump_table.store(n.info2, Ordering::Relaxed);
            n.finish(0, 0)
        }
        1 => {
            let t = n.vm.ap_jump_table.load(Ordering::Relaxed);
            n.finish(0, t)
        }
        op => n.bad_input(GhcbError::INVALID_INPUT, format!("AP jump table op {op}")),
    }
}

/// Termination request: a SEV_TERM system event to the VMM.
fn term_request(n: Nae) -> KvmResult<Outcome> {
    let (info1, info2) = (n.info1, n.info2);
    tracing::info!(
        vcpu = n.vcpu.id(),
        set = info1 & 0xF,
        code = (info1 >> 4) & 0xFF,
        "guest requested termination"
    );
    n.vm.log.push(Event::Nae {
        vcpu: n.vcpu.id(),
        ghcb_gpa: n.c.gpa.0,
        exit_code: n.c.code,
        info1,
        info2,
    });
    Ok(Outcome::Exit(
        VcpuExit::SystemEvent {
            kind: SystemEventType::SEV_TERM,
            data: vec![n.c.gpa.0],
        },
        None,
    ))
}

/// The guest reports a #VC it cannot handle: KVM_EXIT_INTERNAL_ERROR.
fn unsupported_event(n: Nae) -> KvmResult<Outcome> {
    Ok(Outcome::Exit(
        VcpuExit::InternalError {
            detail: format!(
                "guest reported an unsupported #VC: info1 {:#x} info2 {:#x}",
                n.info1, n.info2
            ),
        },
        None,
    ))
}

/// The VMM answered an MMIO read or string IN: copy its data to the scratch area.
pub(super) fn complete_read(
    vm: &VmInner,
    vcpu: &VcpuShared,
    mut g: Box<GhcbCtx>,
    area: ScratchArea,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
    let src: &[u8] = match exit {
        VcpuExit::Mmio { data, .. } => data,
        VcpuExit::IoString { data, .. } => data,
        _ => &[],
    };
    let n = area.len.min(src.len());
    g.g.shared_buffer[area.off..area.off + n].copy_from_slice(&src[..n]);
    super::finish(vm, vcpu, &mut g, 0, 0)
}

/// The VMM answered an IN of `size` bytes: merge its data into RAX.
pub(super) fn complete_io_in(
    vm: &VmInner,
    vcpu: &VcpuShared,
    mut g: Box<GhcbCtx>,
    size: u8,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
    if let VcpuExit::Io { data, .. } = exit {
        let mask = io_mask(size);
        g.g.rax = (g.g.rax & !mask) | (u64::from(*data) & mask);
    }
    super::finish(vm, vcpu, &mut g, 0, 0)
}
