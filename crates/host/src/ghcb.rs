//! VMGEXIT handling (host-interfaces.md §2): the GHCB MSR protocol and the full-GHCB
//! NAE events as KVM's `sev_handle_vmgexit` handles them — input validation with the
//! GHCB error codes, page state changes (MSR and 253-entry descriptor, batched into
//! MAP_GPA_RANGE exits, cur_entry/cur_page progress), AP creation, guest requests
//! through SNP_GUEST_REQUEST with the certificate exit, MMIO/IO exits, AP reset hold,
//! hypervisor features and termination. The GHCB is copied out of guest memory,
//! validated, handled, and written back (style rule 14).

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::Event;
use crate::vcpu::{ApState, VcpuExit, VcpuShared};
use crate::vm::VmInner;
use softsev_abi::fw_buf::SnpGuestRequest;
use softsev_abi::ghcb::*;
use softsev_abi::guest_msg::{MsgHeader, MsgType};
use softsev_abi::kvm::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED,
    KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_4K, SystemEventType,
};
use softsev_abi::{FwCmd, PAGE_SIZE_2M, PAGE_SIZE_4K};
use std::sync::atomic::{AtomicU64, Ordering};
use zerocopy::IntoBytes;

/// What the run loop does after a VMGEXIT or a completion.
pub(crate) enum Outcome {
    /// Resume the guest.
    Resume,
    /// Return this exit to the VMM; with `Some`, finish the event on the next run.
    Exit(VcpuExit, Option<Completion>),
}

/// A GHCB copied out of guest memory.
pub(crate) struct GhcbCtx {
    gpa: u64,
    g: Box<Ghcb>,
    code: u64,
}

/// An event waiting for the VMM's answer.
pub(crate) enum Completion {
    MsrPsc,
    MsrApHold,
    Psc(Box<PscCtx>),
    ReqCerts(Box<ReqCtx>),
    MmioRead(Box<GhcbCtx>, usize, usize),
    IoIn(Box<GhcbCtx>, u8),
    Write(Box<GhcbCtx>),
    ApHold(Box<GhcbCtx>),
}

pub(crate) struct PscCtx {
    c: GhcbCtx,
    off: usize,
    avail: usize,
    desc: Box<PscDesc>,
    idx: usize,
    inflight: usize,
}

pub(crate) struct ReqCtx {
    c: GhcbCtx,
    req: u64,
    resp: u64,
}

static TSC: AtomicU64 = AtomicU64::new(1 << 20);

fn features() -> u64 {
    GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION
}

/// Handle a VMGEXIT of `vcpu`.
pub(crate) fn handle_vmgexit(vm: &VmInner, vcpu: &VcpuShared) -> KvmResult<Outcome> {
    let msr = vcpu.st.lock().ghcb_msr;
    if msr & GHCB_MSR_INFO_MASK != 0 {
        return msr_protocol(vm, vcpu, msr);
    }
    full_ghcb(vm, vcpu, msr)
}

fn set_msr(vcpu: &VcpuShared, v: u64) {
    vcpu.st.lock().ghcb_msr = v;
}

fn msr_protocol(vm: &VmInner, vcpu: &VcpuShared, msr: u64) -> KvmResult<Outcome> {
    let info = (msr & GHCB_MSR_INFO_MASK) as u16;
    let snp = vm.snp();
    let log = |resp: Option<u64>| {
        vm.log.push(Event::MsrProtocol {
            vcpu: vcpu.id,
            info,
            request: msr,
            response: resp,
        })
    };
    let terminate = |data: u64| {
        Outcome::Exit(
            VcpuExit::SystemEvent {
                kind: SystemEventType::SEV_TERM,
                data: vec![data],
            },
            None,
        )
    };
    let resp = match GhcbMsg::decode(msr) {
        GhcbMsg::SevInfoReq => {
            let max = vm.sev.lock().ghcb_version;
            GhcbMsg::SevInfoResp {
                max,
                min: GHCB_VERSION_MIN,
                cbit: vm.host.params.cbit,
            }
            .encode()
        }
        GhcbMsg::CpuidReq { function, reg } => {
            let e = vcpu
                .st
                .lock()
                .cpuid
                .iter()
                .find(|e| e.function == function && e.index == 0)
                .copied()
                .unwrap_or_default();
            let value = match reg {
                CpuidReg::Eax => e.eax,
                CpuidReg::Ebx => e.ebx,
                CpuidReg::Ecx => e.ecx,
                CpuidReg::Edx => e.edx,
            };
            GhcbMsg::CpuidResp { reg, value }.encode()
        }
        GhcbMsg::ApResetHoldReq => {
            log(None);
            return Ok(Outcome::Exit(
                VcpuExit::ApResetHold,
                Some(Completion::MsrApHold),
            ));
        }
        GhcbMsg::PreferredGpaReq if snp => GhcbMsg::PreferredGpaResp {
            gfn: GHCB_MSR_GFN_NONE,
        }
        .encode(),
        GhcbMsg::RegGpaReq { gfn } if snp => {
            vcpu.st.lock().ghcb_registered = Some(gfn << 12);
            GhcbMsg::RegGpaResp { gfn }.encode()
        }
        GhcbMsg::PscReq { gfn, op } if snp => {
            let private = match op {
                PscOp::PRIVATE => true,
                PscOp::SHARED => false,
                _ => {
                    set_msr(vcpu, GHCB_MSR_PSC_RESP_ERROR);
                    log(Some(GHCB_MSR_PSC_RESP_ERROR));
                    return Ok(Outcome::Resume);
                }
            };
            if vm.exit_hypercall.load(Ordering::Relaxed) & (1 << KVM_HC_MAP_GPA_RANGE) == 0 {
                set_msr(vcpu, GHCB_MSR_PSC_RESP_ERROR);
                log(Some(GHCB_MSR_PSC_RESP_ERROR));
                return Ok(Outcome::Resume);
            }
            log(None);
            vm.log.push(Event::MapGpaRange {
                vcpu: vcpu.id,
                gpa: gfn << 12,
                npages: 1,
                private,
                msr: true,
            });
            let attrs = if private {
                KVM_MAP_GPA_RANGE_ENCRYPTED
            } else {
                KVM_MAP_GPA_RANGE_DECRYPTED
            } | KVM_MAP_GPA_RANGE_PAGE_SZ_4K;
            return Ok(Outcome::Exit(
                VcpuExit::Hypercall {
                    nr: KVM_HC_MAP_GPA_RANGE,
                    args: [gfn << 12, 1, attrs, 0, 0, 0],
                    ret: 0,
                },
                Some(Completion::MsrPsc),
            ));
        }
        GhcbMsg::PreferredGpaReq | GhcbMsg::RegGpaReq { .. } | GhcbMsg::PscReq { .. } => {
            // SNP-only requests from a guest that is not SNP: terminate.
            log(None);
            return Ok(terminate(msr));
        }
        GhcbMsg::HvFeaturesReq => GhcbMsg::HvFeaturesResp {
            features: features(),
        }
        .encode(),
        GhcbMsg::TermReq { set, code } => {
            tracing::info!(vcpu = vcpu.id, set, code, "guest requested termination");
            log(None);
            return Ok(terminate(msr));
        }
        // Unknown requests (and responses written by the guest): leave the MSR as is.
        _ => msr,
    };
    set_msr(vcpu, resp);
    log(Some(resp));
    Ok(Outcome::Resume)
}

fn write_back(vm: &VmInner, c: &GhcbCtx) -> KvmResult {
    vm.write_shared(c.gpa, c.g.as_bytes())
}

/// Finish an event: SW_EXITINFO1/2, the GPRs marked valid, GHCB written back.
fn finish(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: &mut GhcbCtx,
    info1: u64,
    info2: u64,
) -> KvmResult<Outcome> {
    c.g.set(GhcbField::SwExitInfo1, info1);
    c.g.set(GhcbField::SwExitInfo2, info2);
    for f in [
        GhcbField::Rax,
        GhcbField::Rbx,
        GhcbField::Rcx,
        GhcbField::Rdx,
    ] {
        let v = match f {
            GhcbField::Rax => c.g.rax,
            GhcbField::Rbx => c.g.rbx,
            GhcbField::Rcx => c.g.rcx,
            _ => c.g.rdx,
        };
        c.g.set(f, v);
    }
    write_back(vm, c)?;
    vm.log.push(Event::Nae {
        vcpu: vcpu.id,
        ghcb_gpa: c.gpa,
        exit_code: c.code,
        info1,
        info2,
    });
    Ok(Outcome::Resume)
}

fn bad_input(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: &mut GhcbCtx,
    err: GhcbError,
    reason: String,
) -> KvmResult<Outcome> {
    tracing::debug!(vcpu = vcpu.id, ?err, %reason, "GHCB rejected");
    vm.log.push(Event::GhcbError {
        vcpu: vcpu.id,
        ghcb_gpa: c.gpa,
        exit_code: c.code,
        error: err.0,
        reason,
    });
    c.g.set(GhcbField::SwExitInfo1, EXIT_INFO1_BAD_INPUT);
    c.g.set(GhcbField::SwExitInfo2, err.0);
    write_back(vm, c)?;
    Ok(Outcome::Resume)
}

/// A malformed request KVM answers by failing KVM_RUN with -EINVAL (unregistered
/// GHCB, bad AP creation). By default the guest gets the GHCB error the spec names;
/// with `ModuleParams::kvm_exact_errors` the host does what KVM does.
fn kvm_fatal(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: &mut GhcbCtx,
    err: GhcbError,
    reason: String,
) -> KvmResult<Outcome> {
    if vm.host.params.kvm_exact_errors {
        vm.log.push(Event::GhcbError {
            vcpu: vcpu.id,
            ghcb_gpa: c.gpa,
            exit_code: c.code,
            error: err.0,
            reason: reason.clone(),
        });
        return einval(reason);
    }
    bad_input(vm, vcpu, c, err, reason)
}

fn full_ghcb(vm: &VmInner, vcpu: &VcpuShared, gpa: u64) -> KvmResult<Outcome> {
    let log_err = |reason: &str| {
        vm.log.push(Event::GhcbError {
            vcpu: vcpu.id,
            ghcb_gpa: gpa,
            exit_code: 0,
            error: 0,
            reason: reason.into(),
        })
    };
    if gpa == 0 {
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
        let reg = vcpu.st.lock().ghcb_registered;
        if reg != Some(gpa) {
            return kvm_fatal(
                vm,
                vcpu,
                &mut c,
                GhcbError::NOT_REGISTERED,
                format!("GHCB at {gpa:#x}, registered {reg:x?}"),
            );
        }
    }
    if c.g.ghcb_usage != GHCB_DEFAULT_USAGE {
        let u = c.g.ghcb_usage;
        return bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::INVALID_USAGE,
            format!("usage {u:#x}"),
        );
    }
    let input = *c.g;
    let (Some(code), Some(info1), Some(info2)) = (
        input.get(GhcbField::SwExitCode),
        input.get(GhcbField::SwExitInfo1),
        input.get(GhcbField::SwExitInfo2),
    ) else {
        return bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::MISSING_INPUT,
            "SW_EXITCODE / SW_EXITINFO1 / SW_EXITINFO2 not valid".into(),
        );
    };
    // The hypervisor consumes the inputs and clears the bitmap.
    c.g.clear_valid();
    let missing = |f: &[GhcbField]| f.iter().find(|x| !input.is_valid(**x)).copied();
    macro_rules! need {
        ($($f:expr),*) => {
            if let Some(m) = missing(&[$($f),*]) {
                return bad_input(vm, vcpu, &mut c, GhcbError::MISSING_INPUT, format!("{:?} needs {m:?}", NaeExit(code)));
            }
        };
    }
    let ev = NaeExit(code);
    let snp_only = matches!(
        ev,
        NaeExit::PSC | NaeExit::GUEST_REQUEST | NaeExit::EXT_GUEST_REQUEST | NaeExit::AP_CREATION
    );
    if snp_only && !snp {
        return bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::INVALID_EVENT,
            format!("{ev:?} from a non-SNP guest"),
        );
    }
    match ev {
        NaeExit::CPUID => {
            need!(GhcbField::Rax);
            if input.rax == 0xD {
                need!(GhcbField::Xcr0);
            }
            let leaf = input.rax as u32;
            let sub = if input.is_valid(GhcbField::Rcx) {
                input.rcx as u32
            } else {
                0
            };
            let e = {
                let st = vcpu.st.lock();
                st.cpuid
                    .iter()
                    .find(|e| e.function == leaf && e.index == sub)
                    .or_else(|| st.cpuid.iter().find(|e| e.function == leaf && e.index == 0))
                    .copied()
                    .unwrap_or_default()
            };
            c.g.rax = u64::from(e.eax);
            c.g.rbx = u64::from(e.ebx);
            c.g.rcx = u64::from(e.ecx);
            c.g.rdx = u64::from(e.edx);
            finish(vm, vcpu, &mut c, 0, 0)
        }
        NaeExit::MSR => {
            need!(GhcbField::Rcx);
            let msr = input.rcx as u32;
            match info1 {
                0 => {
                    let v = vcpu.st.lock().msrs.get(&msr).copied().unwrap_or(0);
                    c.g.rax = v & 0xFFFF_FFFF;
                    c.g.rdx = v >> 32;
                    finish(vm, vcpu, &mut c, 0, 0)
                }
                1 => {
                    need!(GhcbField::Rax, GhcbField::Rdx);
                    let v = (input.rdx << 32) | (input.rax & 0xFFFF_FFFF);
                    vcpu.st.lock().msrs.insert(msr, v);
                    finish(vm, vcpu, &mut c, 0, 0)
                }
                _ => bad_input(
                    vm,
                    vcpu,
                    &mut c,
                    GhcbError::INVALID_INPUT,
                    format!("MSR access type {info1}"),
                ),
            }
        }
        NaeExit::IOIO => {
            let is_in = info1 & 1 != 0;
            let size: u8 = match (info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                4 => 4,
                s => {
                    return bad_input(
                        vm,
                        vcpu,
                        &mut c,
                        GhcbError::INVALID_INPUT,
                        format!("I/O size field {s}"),
                    );
                }
            };
            let port = (info1 >> 16) as u16;
            let mask = if size == 4 {
                0xFFFF_FFFF
            } else {
                (1u64 << (size * 8)) - 1
            };
            if info1 & (1 << 2) != 0 {
                // String I/O: SW_EXITINFO2 elements in the scratch area.
                need!(GhcbField::SwScratch);
                let count = info2;
                let bytes = count.checked_mul(u64::from(size)).filter(|b| *b > 0);
                let Some(off) =
                    bytes.and_then(|b| scratch_offset(gpa, input.sw_scratch, b as usize))
                else {
                    let s = input.sw_scratch;
                    return bad_input(
                        vm,
                        vcpu,
                        &mut c,
                        GhcbError::INVALID_SCRATCH_AREA,
                        format!(
                            "{count} × {size} bytes of string I/O at {s:#x} outside the shared buffer"
                        ),
                    );
                };
                let len = (count * u64::from(size)) as usize;
                return if is_in {
                    Ok(Outcome::Exit(
                        VcpuExit::IoString {
                            port,
                            size,
                            write: false,
                            count: count as u32,
                            data: vec![0; len],
                        },
                        Some(Completion::MmioRead(Box::new(c), off, len)),
                    ))
                } else {
                    let data = input.shared_buffer[off..off + len].to_vec();
                    Ok(Outcome::Exit(
                        VcpuExit::IoString {
                            port,
                            size,
                            write: true,
                            count: count as u32,
                            data,
                        },
                        Some(Completion::Write(Box::new(c))),
                    ))
                };
            }
            if is_in {
                Ok(Outcome::Exit(
                    VcpuExit::Io {
                        port,
                        size,
                        write: false,
                        data: 0,
                    },
                    Some(Completion::IoIn(Box::new(c), size)),
                ))
            } else {
                need!(GhcbField::Rax);
                Ok(Outcome::Exit(
                    VcpuExit::Io {
                        port,
                        size,
                        write: true,
                        data: (input.rax & mask) as u32,
                    },
                    Some(Completion::Write(Box::new(c))),
                ))
            }
        }
        NaeExit::MMIO_READ | NaeExit::MMIO_WRITE => {
            need!(GhcbField::SwScratch);
            let len = info2;
            if len == 0 || len > 8 {
                return bad_input(
                    vm,
                    vcpu,
                    &mut c,
                    GhcbError::INVALID_INPUT,
                    format!("MMIO length {len}"),
                );
            }
            let Some(off) = scratch_offset(gpa, input.sw_scratch, len as usize) else {
                let s = input.sw_scratch;
                return bad_input(
                    vm,
                    vcpu,
                    &mut c,
                    GhcbError::INVALID_SCRATCH_AREA,
                    format!("scratch {s:#x}+{len} outside the shared buffer"),
                );
            };
            if ev == NaeExit::MMIO_WRITE {
                let mut data = [0u8; 8];
                data[..len as usize].copy_from_slice(&input.shared_buffer[off..off + len as usize]);
                Ok(Outcome::Exit(
                    VcpuExit::Mmio {
                        gpa: info1,
                        len: len as u8,
                        write: true,
                        data,
                    },
                    Some(Completion::Write(Box::new(c))),
                ))
            } else {
                Ok(Outcome::Exit(
                    VcpuExit::Mmio {
                        gpa: info1,
                        len: len as u8,
                        write: false,
                        data: [0; 8],
                    },
                    Some(Completion::MmioRead(Box::new(c), off, len as usize)),
                ))
            }
        }
        NaeExit::VMMCALL => {
            need!(GhcbField::Rax, GhcbField::Cpl);
            c.g.rax = (-1000i64) as u64; // -KVM_ENOSYS: no KVM hypercall is offered.
            finish(vm, vcpu, &mut c, 0, 0)
        }
        NaeExit::RDTSC | NaeExit::RDTSCP => {
            let t = TSC.fetch_add(1000, Ordering::Relaxed);
            c.g.rax = t & 0xFFFF_FFFF;
            c.g.rdx = t >> 32;
            if ev == NaeExit::RDTSCP {
                c.g.rcx = u64::from(vcpu.id);
            }
            finish(vm, vcpu, &mut c, 0, 0)
        }
        NaeExit::READ_DR7 => {
            c.g.rax = 0x400;
            finish(vm, vcpu, &mut c, 0, 0)
        }
        NaeExit::WRITE_DR7 => {
            need!(GhcbField::Rax);
            finish(vm, vcpu, &mut c, 0, 0)
        }
        NaeExit::WBINVD
        | NaeExit::INVD
        | NaeExit::MONITOR
        | NaeExit::MWAIT
        | NaeExit::NMI_COMPLETE => finish(vm, vcpu, &mut c, 0, 0),
        NaeExit::AP_HLT_LOOP => Ok(Outcome::Exit(
            VcpuExit::ApResetHold,
            Some(Completion::ApHold(Box::new(c))),
        )),
        NaeExit::AP_JUMP_TABLE => match info1 {
            0 => {
                vcpu.st.lock().ap_jump_table = info2;
                finish(vm, vcpu, &mut c, 0, 0)
            }
            1 => {
                let t = vcpu.st.lock().ap_jump_table;
                finish(vm, vcpu, &mut c, 0, t)
            }
            _ => bad_input(
                vm,
                vcpu,
                &mut c,
                GhcbError::INVALID_INPUT,
                format!("AP jump table op {info1}"),
            ),
        },
        NaeExit::PSC => {
            need!(GhcbField::SwScratch);
            let Some(off) = scratch_offset(gpa, input.sw_scratch, core::mem::size_of::<PscHdr>())
            else {
                let s = input.sw_scratch;
                return bad_input(
                    vm,
                    vcpu,
                    &mut c,
                    GhcbError::INVALID_SCRATCH_AREA,
                    format!("PSC descriptor at {s:#x} outside the shared buffer"),
                );
            };
            if vm.exit_hypercall.load(Ordering::Relaxed) & (1 << KVM_HC_MAP_GPA_RANGE) == 0 {
                vm.log.push(Event::PscDone {
                    vcpu: vcpu.id,
                    result: PSC_ERROR_GENERIC,
                });
                return finish(vm, vcpu, &mut c, 0, PSC_ERROR_GENERIC);
            }
            let avail = GHCB_SHARED_BUF_SIZE - off;
            let mut desc = Box::new(PscDesc::default());
            desc.as_mut_bytes()[..avail].copy_from_slice(&c.g.shared_buffer[off..]);
            let mut p = Box::new(PscCtx {
                c,
                off,
                avail,
                desc,
                idx: 0,
                inflight: 0,
            });
            psc_step(vm, vcpu, &mut p)?.map_or(Ok(Outcome::Resume), |e| {
                Ok(Outcome::Exit(e, Some(Completion::Psc(p))))
            })
        }
        NaeExit::GUEST_REQUEST | NaeExit::EXT_GUEST_REQUEST => {
            if !info1.is_multiple_of(PAGE_SIZE_4K)
                || !info2.is_multiple_of(PAGE_SIZE_4K)
                || info1 == info2
            {
                return bad_input(
                    vm,
                    vcpu,
                    &mut c,
                    GhcbError::INVALID_INPUT,
                    format!("request {info1:#x} / response {info2:#x} pages"),
                );
            }
            if ev == NaeExit::EXT_GUEST_REQUEST {
                return ext_guest_request(vm, vcpu, c, &input, info1, info2);
            }
            let info2 = guest_request(vm, vcpu, info1, info2, false)?;
            finish(vm, vcpu, &mut c, 0, info2)
        }
        NaeExit::AP_CREATION => ap_creation(vm, vcpu, &mut c, &input, info1, info2),
        NaeExit::HV_FEATURES => finish(vm, vcpu, &mut c, 0, features()),
        NaeExit::TERM_REQUEST => {
            tracing::info!(
                vcpu = vcpu.id,
                set = info1 & 0xF,
                code = (info1 >> 4) & 0xFF,
                "guest requested termination"
            );
            vm.log.push(Event::Nae {
                vcpu: vcpu.id,
                ghcb_gpa: gpa,
                exit_code: code,
                info1,
                info2,
            });
            Ok(Outcome::Exit(
                VcpuExit::SystemEvent {
                    kind: SystemEventType::SEV_TERM,
                    data: vec![gpa],
                },
                None,
            ))
        }
        NaeExit::UNSUPPORTED_EVENT => Ok(Outcome::Exit(
            VcpuExit::InternalError {
                detail: format!(
                    "guest reported an unsupported #VC: info1 {info1:#x} info2 {info2:#x}"
                ),
            },
            None,
        )),
        _ => bad_input(
            vm,
            vcpu,
            &mut c,
            GhcbError::INVALID_EVENT,
            format!("event {code:#x}"),
        ),
    }
}

/// Offset of `[scratch, scratch+len)` in the shared buffer of the GHCB at `ghcb`.
fn scratch_offset(ghcb: u64, scratch: u64, len: usize) -> Option<usize> {
    let beg = ghcb.checked_add(GHCB_SHARED_BUF_OFFSET as u64)?;
    let end = beg + GHCB_SHARED_BUF_SIZE as u64;
    let s_end = scratch.checked_add(len as u64)?;
    (scratch >= beg && s_end <= end).then(|| (scratch - beg) as usize)
}

/// Advance a PSC: returns the next MAP_GPA_RANGE exit, or `None` when the event is
/// complete (the GHCB has been written back).
fn psc_step(vm: &VmInner, vcpu: &VcpuShared, p: &mut PscCtx) -> KvmResult<Option<VcpuExit>> {
    let max_avail = (p.avail - core::mem::size_of::<PscHdr>()) / 8;
    loop {
        let end = usize::from(p.desc.hdr.end_entry);
        if end >= PSC_MAX_ENTRIES || end >= max_avail {
            return psc_complete(vm, vcpu, p, PSC_ERROR_INVALID_HDR).map(|_| None);
        }
        let mut idx = usize::from(p.desc.hdr.cur_entry);
        let mut first = None;
        while idx <= end {
            let e = p.desc.entries[idx];
            let n = e.npages();
            if u64::from(e.cur_page()) > n || !e.gfn().is_multiple_of(n) {
                return psc_complete(vm, vcpu, p, PSC_ERROR_INVALID_ENTRY).map(|_| None);
            }
            let left = n - u64::from(e.cur_page());
            if left > 0 {
                // A partly done 2 MiB entry continues as 4 KiB pages.
                first = Some((
                    e,
                    e.gfn() + u64::from(e.cur_page()),
                    left,
                    e.huge() && e.cur_page() == 0,
                ));
                break;
            }
            idx += 1;
            p.desc.hdr.cur_entry = p.desc.hdr.cur_entry.saturating_add(1);
        }
        let Some((e0, gfn, mut npages, huge)) = first else {
            return psc_complete(vm, vcpu, p, 0).map(|_| None);
        };
        let mut count = 1;
        while idx + count <= end {
            let e = p.desc.entries[idx + count];
            if e.op() != e0.op() || e.gfn() != gfn + npages || e.cur_page() != 0 || e.huge() != huge
            {
                break;
            }
            npages += e.npages();
            count += 1;
        }
        p.idx = idx;
        p.inflight = count;
        match e0.op() {
            PscOp::PRIVATE | PscOp::SHARED => {
                let private = e0.op() == PscOp::PRIVATE;
                vm.log.push(Event::MapGpaRange {
                    vcpu: vcpu.id,
                    gpa: gfn << 12,
                    npages,
                    private,
                    msr: false,
                });
                let attrs = if private {
                    KVM_MAP_GPA_RANGE_ENCRYPTED
                } else {
                    KVM_MAP_GPA_RANGE_DECRYPTED
                } | if e0.huge() {
                    KVM_MAP_GPA_RANGE_PAGE_SZ_2M
                } else {
                    KVM_MAP_GPA_RANGE_PAGE_SZ_4K
                };
                return Ok(Some(VcpuExit::Hypercall {
                    nr: KVM_HC_MAP_GPA_RANGE,
                    args: [gfn << 12, npages, attrs, 0, 0, 0],
                    ret: 0,
                }));
            }
            // PSMASH / UNSMASH hints and unknown operations: done without action.
            _ => psc_mark_done(p),
        }
    }
}

fn psc_mark_done(p: &mut PscCtx) {
    for i in p.idx..p.idx + p.inflight {
        if let Some(e) = p.desc.entries.get_mut(i) {
            let n = e.npages() as u16;
            e.set_cur_page(n);
        }
    }
    p.desc.hdr.cur_entry = (p.idx + p.inflight) as u16;
    p.inflight = 0;
}

fn psc_complete(vm: &VmInner, vcpu: &VcpuShared, p: &mut PscCtx, ret: u64) -> KvmResult<Outcome> {
    let bytes = p.desc.as_bytes();
    p.c.g.shared_buffer[p.off..].copy_from_slice(&bytes[..p.avail]);
    vm.log.push(Event::PscDone {
        vcpu: vcpu.id,
        result: ret,
    });
    finish(vm, vcpu, &mut p.c, 0, ret)
}

/// KVM accepts 0, EINVAL and EAGAIN as a MAP_GPA_RANGE result.
fn check_hypercall_ret(ret: u64) -> KvmResult {
    if ret == 0 || ret == Errno::EINVAL.0 as u64 || ret == Errno::EAGAIN.0 as u64 {
        Ok(())
    } else {
        einval(format!("hypercall.ret {ret:#x} is not 0, EINVAL or EAGAIN"))
    }
}

/// Finish an event after the VMM answered `exit`.
pub(crate) fn complete(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: Completion,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
    match c {
        Completion::MsrPsc => {
            let ret = match exit {
                VcpuExit::Hypercall { ret, .. } => *ret,
                _ => 0,
            };
            check_hypercall_ret(ret)?;
            let v = if ret == 0 {
                GhcbMsg::PscResp { error: 0 }.encode()
            } else {
                GHCB_MSR_PSC_RESP_ERROR
            };
            set_msr(vcpu, v);
            vm.log.push(Event::PscDone {
                vcpu: vcpu.id,
                result: v,
            });
            Ok(Outcome::Resume)
        }
        Completion::MsrApHold => {
            set_msr(vcpu, GhcbMsg::ApResetHoldResp { value: 1 }.encode());
            Ok(Outcome::Resume)
        }
        Completion::Psc(mut p) => {
            let ret = match exit {
                VcpuExit::Hypercall { ret, .. } => *ret,
                _ => 0,
            };
            check_hypercall_ret(ret)?;
            if ret != 0 {
                psc_complete(vm, vcpu, &mut p, PSC_ERROR_GENERIC)?;
                return Ok(Outcome::Resume);
            }
            psc_mark_done(&mut p);
            match psc_step(vm, vcpu, &mut p)? {
                Some(e) => Ok(Outcome::Exit(e, Some(Completion::Psc(p)))),
                None => Ok(Outcome::Resume),
            }
        }
        Completion::ReqCerts(mut r) => {
            let (ret, npages) = match exit {
                VcpuExit::SnpReqCerts { ret, npages, .. } => (*ret, *npages),
                _ => (0, 0),
            };
            let vmm_err = match ret {
                0 => None,
                x if x == Errno::ENOSPC.0 as u64 => {
                    r.c.g.rbx = npages;
                    Some(GuestReqVmmError::INVALID_LEN)
                }
                x if x == Errno::EAGAIN.0 as u64 => Some(GuestReqVmmError::BUSY),
                x if x == Errno::EIO.0 as u64 => Some(GuestReqVmmError::GENERIC),
                x => return einval(format!("snp_req_certs.ret {x:#x}")),
            };
            let info2 = match vmm_err {
                None => guest_request(vm, vcpu, r.req, r.resp, true)?,
                Some(e) => {
                    let v = guest_req_info2(e, 0);
                    vm.log.push(Event::GuestRequest {
                        vcpu: vcpu.id,
                        extended: true,
                        info2: v,
                    });
                    v
                }
            };
            finish(vm, vcpu, &mut r.c, 0, info2)
        }
        Completion::MmioRead(mut g, off, len) => {
            let src: &[u8] = match exit {
                VcpuExit::Mmio { data, .. } => data,
                VcpuExit::IoString { data, .. } => data,
                _ => &[],
            };
            let n = len.min(src.len());
            g.g.shared_buffer[off..off + n].copy_from_slice(&src[..n]);
            finish(vm, vcpu, &mut g, 0, 0)
        }
        Completion::IoIn(mut g, size) => {
            if let VcpuExit::Io { data, .. } = exit {
                let mask = if size == 4 {
                    0xFFFF_FFFF
                } else {
                    (1u64 << (size * 8)) - 1
                };
                g.g.rax = (g.g.rax & !mask) | (u64::from(*data) & mask);
            }
            finish(vm, vcpu, &mut g, 0, 0)
        }
        Completion::Write(mut g) => finish(vm, vcpu, &mut g, 0, 0),
        Completion::ApHold(mut g) => finish(vm, vcpu, &mut g, 0, 1),
    }
}

fn ext_guest_request(
    vm: &VmInner,
    vcpu: &VcpuShared,
    mut c: GhcbCtx,
    input: &Ghcb,
    req: u64,
    resp: u64,
) -> KvmResult<Outcome> {
    let mut ty = [0u8; 1];
    vm.read_shared(
        req + core::mem::offset_of!(MsgHeader, msg_type) as u64,
        &mut ty,
    )
    .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    if MsgType(ty[0]) == MsgType::REPORT_REQ {
        if !input.is_valid(GhcbField::Rax) || !input.is_valid(GhcbField::Rbx) {
            return bad_input(
                vm,
                vcpu,
                &mut c,
                GhcbError::INVALID_INPUT,
                "extended request without RAX/RBX".into(),
            );
        }
        let (data_gpa, npages) = (input.rax, input.rbx);
        if !data_gpa.is_multiple_of(PAGE_SIZE_4K) {
            return bad_input(
                vm,
                vcpu,
                &mut c,
                GhcbError::INVALID_INPUT,
                format!("certificate buffer {data_gpa:#x} not page aligned"),
            );
        }
        if vm.sev.lock().req_certs {
            return Ok(Outcome::Exit(
                VcpuExit::SnpReqCerts {
                    gpa: data_gpa,
                    npages,
                    ret: 0,
                },
                Some(Completion::ReqCerts(Box::new(ReqCtx { c, req, resp }))),
            ));
        }
        if npages > 0 {
            vm.write_shared(data_gpa, &[0u8; core::mem::size_of::<CertTableEntry>()])
                .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
        }
    }
    let info2 = guest_request(vm, vcpu, req, resp, true)?;
    finish(vm, vcpu, &mut c, 0, info2)
}

/// SNP_GUEST_REQUEST through the bounce pages; returns SW_EXITINFO2.
fn guest_request(
    vm: &VmInner,
    vcpu: &VcpuShared,
    req: u64,
    resp: u64,
    extended: bool,
) -> KvmResult<u64> {
    let _serial = vm.guest_req.lock();
    let (gctx, req_buf, resp_buf) = {
        let s = vm.sev.lock();
        match (s.snp_context, s.req_buf, s.resp_buf) {
            (Some(g), Some(a), Some(b)) => (g, a, b),
            _ => return einval("guest request before SNP_LAUNCH_START"),
        }
    };
    let h = &vm.host;
    let mut page = vec![0u8; PAGE_SIZE_4K as usize];
    vm.read_shared(req, &mut page)
        .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    h.soc
        .host_write(req_buf, false, &page)
        .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
    let mut cmd = SnpGuestRequest {
        gctx_paddr: gctx.0,
        request_paddr: req_buf.0,
        response_paddr: resp_buf.0,
    };
    let status = match h.psp(FwCmd::SNP_GUEST_REQUEST, &mut cmd) {
        Ok(()) => 0,
        Err(s) => s.0,
    };
    h.soc
        .host_read(resp_buf, false, &mut page)
        .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
    vm.write_shared(resp, &page)
        .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    let info2 = guest_req_info2(GuestReqVmmError::NONE, status);
    vm.log.push(Event::GuestRequest {
        vcpu: vcpu.id,
        extended,
        info2,
    });
    Ok(info2)
}

fn ap_creation(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: &mut GhcbCtx,
    input: &Ghcb,
    info1: u64,
    info2: u64,
) -> KvmResult<Outcome> {
    let op = ApCreateOp(info1 as u32);
    let apic = (info1 >> 32) as u32;
    vm.log.push(Event::ApCreation {
        vcpu: vcpu.id,
        apic_id: apic,
        op: op.0,
        vmsa_gpa: info2,
    });
    let target = vm.vcpus.lock().iter().find(|v| v.id == apic).cloned();
    let Some(target) = target else {
        return kvm_fatal(
            vm,
            vcpu,
            c,
            GhcbError::INVALID_INPUT,
            format!("no vCPU with APIC id {apic}"),
        );
    };
    match op {
        ApCreateOp::CREATE | ApCreateOp::CREATE_ON_INIT => {
            let Some(rax) = input.get(GhcbField::Rax) else {
                return bad_input(
                    vm,
                    vcpu,
                    c,
                    GhcbError::MISSING_INPUT,
                    "AP creation needs RAX".into(),
                );
            };
            let features = vm.sev.lock().vmsa_features;
            if rax != features {
                return kvm_fatal(
                    vm,
                    vcpu,
                    c,
                    GhcbError::INVALID_INPUT,
                    format!("SEV_FEATURES {rax:#x} differ from the VM's {features:#x}"),
                );
            }
            if info2 == 0 || !info2.is_multiple_of(PAGE_SIZE_4K) || info2 >= 1 << 52 {
                return kvm_fatal(
                    vm,
                    vcpu,
                    c,
                    GhcbError::INVALID_INPUT,
                    format!("VMSA GPA {info2:#x}"),
                );
            }
            if info2.is_multiple_of(PAGE_SIZE_2M) {
                return kvm_fatal(
                    vm,
                    vcpu,
                    c,
                    GhcbError::INVALID_INPUT,
                    format!("VMSA GPA {info2:#x} is 2 MiB aligned (erratum)"),
                );
            }
            let mut t = target.st.lock();
            if op == ApCreateOp::CREATE {
                t.ap = ApState::Created(info2);
                t.ap_vmsa_gpa = Some(info2);
            } else {
                t.ap = ApState::PendingInit(info2);
            }
        }
        ApCreateOp::DESTROY => {
            let mut t = target.st.lock();
            t.ap = ApState::Destroyed;
            t.ap_vmsa_gpa = None;
        }
        _ => {
            return kvm_fatal(
                vm,
                vcpu,
                c,
                GhcbError::INVALID_INPUT,
                format!("AP creation request {}", op.0),
            );
        }
    }
    finish(vm, vcpu, c, 0, 0)
}

/// Before an AP created by AP creation first runs: its VMSA must be a validated,
/// VMSA-marked private 4 KiB page of this guest at that GPA (VMRUN checks), else the
/// entry fails.
pub(crate) fn check_ap_vmsa(vm: &VmInner, vcpu: &VcpuShared) -> Option<String> {
    let ApState::Created(gpa) = vcpu.st.lock().ap else {
        return None;
    };
    let asid = vm.sev.lock().asid;
    let gfn = gpa / PAGE_SIZE_4K;
    let mut m = vm.mem.lock();
    if !m.private.contains(gfn) {
        return Some(format!("VMSA GPA {gpa:#x} is not private"));
    }
    let spa = match m.gmem_spa(&vm.host, gfn) {
        Ok((spa, _, _)) => spa,
        Err(e) => return Some(e.reason),
    };
    drop(m);
    match vm.host.soc.rmp_lookup(spa) {
        Ok((e, size))
            if e.assigned()
                && e.asid() == asid
                && e.gpa() == gpa
                && e.validated()
                && e.vmsa()
                && size == softsev_soc::PageSize::Size4K =>
        {
            None
        }
        Ok((e, size)) => Some(format!(
            "VMSA page {spa} for GPA {gpa:#x} is not a VMSA of ASID {asid} (assigned {}, ASID {}, GPA {:#x}, validated {}, VMSA {}, {size:?})",
            e.assigned(),
            e.asid(),
            e.gpa(),
            e.validated(),
            e.vmsa()
        )),
        Err(e) => Some(e.to_string()),
    }
}
