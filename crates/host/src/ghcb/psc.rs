//! Page state changes through the GHCB (GHCB spec 56421 §4.1.6; Linux
//! `snp_begin_psc`, `snp_complete_psc`): the descriptor in the scratch area is walked
//! from `cur_entry`, runs of entries with the same operation and page size over
//! consecutive GFNs become one KVM_HC_MAP_GPA_RANGE exit to the VMM, and `cur_page` /
//! `cur_entry` record the progress the guest sees if it is interrupted.

use super::{Nae, Outcome, need};
use crate::error::{Errno, KvmResult, einval};
use crate::events::Event;
use crate::state::VcpuShared;
use crate::vcpu::VcpuExit;
use crate::vm::VmInner;
use softsev_abi::ghcb::*;
use softsev_abi::kvm::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED,
    KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
};
use zerocopy::IntoBytes;

/// A page state change in progress.
pub(crate) struct PscCtx {
    c: super::GhcbCtx,
    off: usize,
    avail: usize,
    desc: Box<PscDesc>,
    idx: usize,
    inflight: usize,
}

/// NAE PSC: copy the descriptor out of the scratch area and start on it.
pub(super) fn start(n: Nae) -> KvmResult<Outcome> {
    need!(n, GhcbField::SwScratch);
    let Some(area) = n.scratch(core::mem::size_of::<PscHdr>()) else {
        let s = n.input.sw_scratch;
        return n.bad_input(
            GhcbError::INVALID_SCRATCH_AREA,
            format!("PSC descriptor at {s:#x} outside the shared buffer"),
        );
    };
    let (vm, vcpu) = (n.vm, n.vcpu);
    if !vm.map_gpa_range_enabled() {
        vm.log.push(Event::PscDone {
            vcpu: vcpu.id(),
            result: PSC_ERROR_GENERIC,
        });
        return n.finish(0, PSC_ERROR_GENERIC);
    }
    let off = area.off;
    let avail = GHCB_SHARED_BUF_SIZE - off;
    let mut desc = Box::new(PscDesc::default());
    desc.as_mut_bytes()[..avail].copy_from_slice(&n.c.g.shared_buffer[off..]);
    let mut p = Box::new(PscCtx {
        c: n.c,
        off,
        avail,
        desc,
        idx: 0,
        inflight: 0,
    });
    step(vm, vcpu, &mut p)?.map_or(Ok(Outcome::Resume), |e| {
        Ok(Outcome::Exit(e, Some(super::Completion::Psc(p))))
    })
}

/// The VMM answered a MAP_GPA_RANGE exit of `p`: mark the entries done and go on.
pub(super) fn resume(
    vm: &VmInner,
    vcpu: &VcpuShared,
    mut p: Box<PscCtx>,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
    let ret = match exit {
        VcpuExit::Hypercall { ret, .. } => *ret,
        _ => 0,
    };
    check_hypercall_ret(ret)?;
    if ret != 0 {
        complete(vm, vcpu, &mut p, PSC_ERROR_GENERIC)?;
        return Ok(Outcome::Resume);
    }
    mark_done(&mut p);
    match step(vm, vcpu, &mut p)? {
        Some(e) => Ok(Outcome::Exit(e, Some(super::Completion::Psc(p)))),
        None => Ok(Outcome::Resume),
    }
}

/// Advance a PSC: returns the next MAP_GPA_RANGE exit, or `None` when the event is
/// complete (the GHCB has been written back).
fn step(vm: &VmInner, vcpu: &VcpuShared, p: &mut PscCtx) -> KvmResult<Option<VcpuExit>> {
    let max_avail = (p.avail - core::mem::size_of::<PscHdr>()) / 8;
    loop {
        let end = usize::from(p.desc.hdr.end_entry);
        if end >= PSC_MAX_ENTRIES || end >= max_avail {
            return complete(vm, vcpu, p, PSC_ERROR_INVALID_HDR).map(|_| None);
        }
        let mut idx = usize::from(p.desc.hdr.cur_entry);
        let mut first = None;
        while idx <= end {
            let e = p.desc.entries[idx];
            let n = e.npages();
            if u64::from(e.cur_page()) > n || !e.gfn().is_multiple_of(n) {
                return complete(vm, vcpu, p, PSC_ERROR_INVALID_ENTRY).map(|_| None);
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
            return complete(vm, vcpu, p, 0).map(|_| None);
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
                    vcpu: vcpu.id(),
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
            _ => mark_done(p),
        }
    }
}

fn mark_done(p: &mut PscCtx) {
    for i in p.idx..p.idx + p.inflight {
        if let Some(e) = p.desc.entries.get_mut(i) {
            let n = e.npages() as u16;
            e.set_cur_page(n);
        }
    }
    p.desc.hdr.cur_entry = (p.idx + p.inflight) as u16;
    p.inflight = 0;
}

fn complete(vm: &VmInner, vcpu: &VcpuShared, p: &mut PscCtx, ret: u64) -> KvmResult<Outcome> {
    let bytes = p.desc.as_bytes();
    p.c.g.shared_buffer[p.off..].copy_from_slice(&bytes[..p.avail]);
    vm.log.push(Event::PscDone {
        vcpu: vcpu.id(),
        result: ret,
    });
    super::finish(vm, vcpu, &mut p.c, 0, ret)
}

/// KVM accepts 0, EINVAL and EAGAIN as a MAP_GPA_RANGE result.
pub(super) fn check_hypercall_ret(ret: u64) -> KvmResult {
    if ret == 0 || ret == Errno::EINVAL.0 as u64 || ret == Errno::EAGAIN.0 as u64 {
        Ok(())
    } else {
        einval(format!("hypercall.ret {ret:#x} is not 0, EINVAL or EAGAIN"))
    }
}
