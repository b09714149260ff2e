//! The GHCB MSR protocol (GHCB spec 56421 §2.3.1; Linux `sev_handle_vmgexit_msr_protocol`):
//! SEV information, CPUID, AP reset hold, preferred and registered GHCB GPA, the
//! single-page page state change, hypervisor features and termination, each a value
//! written to the GHCB MSR and answered in it.

use super::{Completion, Outcome, features};
use crate::error::KvmResult;
use crate::events::Event;
use crate::state::VcpuShared;
use crate::vcpu::VcpuExit;
use crate::vm::VmInner;
use softsev_abi::Gfn;
use softsev_abi::ghcb::*;
use softsev_abi::kvm::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED,
    KVM_MAP_GPA_RANGE_PAGE_SZ_4K, SystemEventType,
};

/// Handle the MSR-protocol request `msr`.
pub(super) fn protocol(vm: &VmInner, vcpu: &VcpuShared, msr: u64) -> KvmResult<Outcome> {
    let info = (msr & GHCB_MSR_INFO_MASK) as u16;
    let snp = vm.snp();
    let log = |resp: Option<u64>| {
        vm.log.push(Event::MsrProtocol {
            vcpu: vcpu.id(),
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
            let max = vm.sev.lock().ghcb_version();
            GhcbMsg::SevInfoResp {
                max,
                min: GHCB_VERSION_MIN,
                cbit: vm.host.params.cbit,
            }
            .encode()
        }
        GhcbMsg::CpuidReq { function, reg } => {
            let e = vcpu.state().cpuid(function, 0).unwrap_or_default();
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
            vcpu.state().register_ghcb(Gfn(gfn).gpa());
            GhcbMsg::RegGpaResp { gfn }.encode()
        }
        GhcbMsg::PscReq { gfn, op } if snp => {
            let private = match op {
                PscOp::PRIVATE => true,
                PscOp::SHARED => false,
                _ => {
                    vcpu.set_ghcb_msr(GHCB_MSR_PSC_RESP_ERROR);
                    log(Some(GHCB_MSR_PSC_RESP_ERROR));
                    return Ok(Outcome::Resume);
                }
            };
            if !vm.map_gpa_range_enabled() {
                vcpu.set_ghcb_msr(GHCB_MSR_PSC_RESP_ERROR);
                log(Some(GHCB_MSR_PSC_RESP_ERROR));
                return Ok(Outcome::Resume);
            }
            log(None);
            vm.log.push(Event::MapGpaRange {
                vcpu: vcpu.id(),
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
            tracing::info!(vcpu = vcpu.id(), set, code, "guest requested termination");
            log(None);
            return Ok(terminate(msr));
        }
        // Unknown requests (and responses written by the guest): leave the MSR as is.
        _ => msr,
    };
    vcpu.set_ghcb_msr(resp);
    log(Some(resp));
    Ok(Outcome::Resume)
}

/// The VMM answered the MAP_GPA_RANGE of an MSR page state change.
pub(super) fn complete_psc(vm: &VmInner, vcpu: &VcpuShared, exit: &VcpuExit) -> KvmResult<Outcome> {
    let ret = match exit {
        VcpuExit::Hypercall { ret, .. } => *ret,
        _ => 0,
    };
    super::psc::check_hypercall_ret(ret)?;
    let v = if ret == 0 {
        GhcbMsg::PscResp { error: 0 }.encode()
    } else {
        GHCB_MSR_PSC_RESP_ERROR
    };
    vcpu.set_ghcb_msr(v);
    vm.log.push(Event::PscDone {
        vcpu: vcpu.id(),
        result: v,
    });
    Ok(Outcome::Resume)
}

/// The SIPI ended an MSR-protocol AP reset hold.
pub(super) fn complete_ap_hold(vcpu: &VcpuShared) -> KvmResult<Outcome> {
    vcpu.set_ghcb_msr(GhcbMsg::ApResetHoldResp { value: 1 }.encode());
    Ok(Outcome::Resume)
}
