//! SNP AP creation (GHCB spec 56421 §4.1.9; Linux `sev_snp_ap_creation`): CREATE,
//! CREATE_ON_INIT and DESTROY of another vCPU's VMSA, and the VMRUN checks of a
//! created VMSA before the AP first runs from it.

use super::{Nae, Outcome};
use crate::error::KvmResult;
use crate::events::Event;
use crate::state::{ApState, VcpuShared};
use crate::vm::VmInner;
use softsev_abi::ghcb::*;
use softsev_abi::{Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize};

/// NAE AP_CREATION: SW_EXITINFO1 = APIC id << 32 | request, SW_EXITINFO2 = VMSA GPA,
/// RAX = SEV_FEATURES.
pub(super) fn creation(n: Nae) -> KvmResult<Outcome> {
    let (vm, vcpu, info1, info2) = (n.vm, n.vcpu, n.info1, n.info2);
    let op = ApCreateOp(info1 as u32);
    let apic = (info1 >> 32) as u32;
    vm.log.push(Event::ApCreation {
        vcpu: vcpu.id(),
        apic_id: apic,
        op: op.0,
        vmsa_gpa: info2,
    });
    let target = vm.vcpus.lock().iter().find(|v| v.id() == apic).cloned();
    let Some(target) = target else {
        return n.kvm_fatal(
            GhcbError::INVALID_INPUT,
            format!("no vCPU with APIC id {apic}"),
        );
    };
    match op {
        ApCreateOp::CREATE | ApCreateOp::CREATE_ON_INIT => {
            let Some(rax) = n.input.get(GhcbField::Rax) else {
                return n.bad_input(GhcbError::MISSING_INPUT, "AP creation needs RAX".into());
            };
            let features = vm.sev.lock().vmsa_features();
            if rax != features {
                return n.kvm_fatal(
                    GhcbError::INVALID_INPUT,
                    format!("SEV_FEATURES {rax:#x} differ from the VM's {features:#x}"),
                );
            }
            if info2 == 0 || !info2.is_multiple_of(PAGE_SIZE_4K) || info2 >= 1 << 52 {
                return n.kvm_fatal(GhcbError::INVALID_INPUT, format!("VMSA GPA {info2:#x}"));
            }
            if info2.is_multiple_of(PAGE_SIZE_2M) {
                return n.kvm_fatal(
                    GhcbError::INVALID_INPUT,
                    format!("VMSA GPA {info2:#x} is 2 MiB aligned (erratum)"),
                );
            }
            let mut t = target.state();
            if op == ApCreateOp::CREATE {
                t.ap_create(Gpa(info2));
            } else {
                t.ap_create_on_init(Gpa(info2));
            }
        }
        ApCreateOp::DESTROY => target.state().ap_destroy(),
        _ => {
            return n.kvm_fatal(
                GhcbError::INVALID_INPUT,
                format!("AP creation request {}", op.0),
            );
        }
    }
    n.finish(0, 0)
}

/// Before an AP created by AP creation first runs: its VMSA must be a validated,
/// VMSA-marked private 4 KiB page of this guest at that GPA (VMRUN checks), else the
/// entry fails with the reason returned.
pub(crate) fn check_ap_vmsa(vm: &VmInner, vcpu: &VcpuShared) -> Option<String> {
    let ApState::Created(gpa) = vcpu.state().ap() else {
        return None;
    };
    let gpa = gpa.0;
    let asid = vm.sev.lock().asid();
    let gfn = gpa / PAGE_SIZE_4K;
    let mut m = vm.mem.lock();
    if !m.private.contains(softsev_abi::Gfn(gfn)) {
        return Some(format!("VMSA GPA {gpa:#x} is not private"));
    }
    let spa = match m.gmem_spa(&vm.host, gfn) {
        Ok(spa) => spa,
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
                && size == PageSize::Size4K =>
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
