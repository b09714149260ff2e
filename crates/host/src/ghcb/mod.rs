//! VMGEXIT handling (host-interfaces.md §2): the GHCB MSR protocol ([`msr`]) and the
//! full-GHCB NAE events ([`nae`]) as KVM's `sev_handle_vmgexit` handles them — input
//! validation with the GHCB error codes, page state changes ([`psc`]: MSR and
//! 253-entry descriptor, batched into MAP_GPA_RANGE exits, cur_entry/cur_page
//! progress), AP creation ([`ap`]), guest requests through SNP_GUEST_REQUEST with the
//! certificate exit ([`guest_req`]), MMIO/IO exits, AP reset hold, hypervisor features
//! and termination. The GHCB is copied out of guest memory, validated, handled, and
//! written back (style rule 14).
//!
//! An event either completes at once ([`Outcome::Resume`]) or becomes an exit to the
//! VMM with a [`Completion`] that finishes it when the VMM re-enters.

mod ap;
mod guest_req;
mod msr;
mod nae;
mod psc;

pub(crate) use ap::check_ap_vmsa;

use crate::error::{KvmResult, einval};
use crate::events::Event;
use crate::state::VcpuShared;
use crate::vcpu::VcpuExit;
use crate::vm::VmInner;
use softsev_abi::Gpa;
use softsev_abi::ghcb::*;
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
    gpa: Gpa,
    g: Box<Ghcb>,
    code: u64,
}

/// An event waiting for the VMM's answer.
pub(crate) enum Completion {
    /// An MSR-protocol page state change (the MAP_GPA_RANGE result).
    MsrPsc,
    /// An MSR-protocol AP reset hold (the SIPI).
    MsrApHold,
    /// A page state change descriptor, part done.
    Psc(Box<psc::PscCtx>),
    /// An extended guest request waiting for the certificates.
    ReqCerts(Box<guest_req::ReqCtx>),
    /// An MMIO read or string IN: the data goes to the scratch area at this offset
    /// and length.
    MmioRead(Box<GhcbCtx>, ScratchArea),
    /// An IN of this many bytes: the data goes to RAX.
    IoIn(Box<GhcbCtx>, u8),
    /// An MMIO write or OUT: nothing comes back.
    Write(Box<GhcbCtx>),
    /// An AP HLT loop (the SIPI).
    ApHold(Box<GhcbCtx>),
}

/// Where in the GHCB shared buffer an event's data is.
#[derive(Clone, Copy)]
pub(crate) struct ScratchArea {
    off: usize,
    len: usize,
}

/// The hypervisor features KVM reports (HV_FEATURES).
fn features() -> u64 {
    GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION
}

/// Handle a VMGEXIT of `vcpu`.
pub(crate) fn handle_vmgexit(vm: &VmInner, vcpu: &VcpuShared) -> KvmResult<Outcome> {
    let msr = vcpu.ghcb_msr();
    if msr & GHCB_MSR_INFO_MASK != 0 {
        return msr::protocol(vm, vcpu, msr);
    }
    nae::full_ghcb(vm, vcpu, Gpa(msr))
}

/// Finish an event after the VMM answered `exit`.
pub(crate) fn complete(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: Completion,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
    match c {
        Completion::MsrPsc => msr::complete_psc(vm, vcpu, exit),
        Completion::MsrApHold => msr::complete_ap_hold(vcpu),
        Completion::Psc(p) => psc::resume(vm, vcpu, p, exit),
        Completion::ReqCerts(r) => guest_req::complete_certs(vm, vcpu, *r, exit),
        Completion::MmioRead(g, area) => nae::complete_read(vm, vcpu, g, area, exit),
        Completion::IoIn(g, size) => nae::complete_io_in(vm, vcpu, g, size, exit),
        Completion::Write(mut g) => finish(vm, vcpu, &mut g, 0, 0),
        Completion::ApHold(mut g) => finish(vm, vcpu, &mut g, 0, 1),
    }
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
        vcpu: vcpu.id(),
        ghcb_gpa: c.gpa.0,
        exit_code: c.code,
        info1,
        info2,
    });
    Ok(Outcome::Resume)
}

/// Answer the guest with a GHCB error (SW_EXITINFO1 = 1, SW_EXITINFO2 = `err`).
fn bad_input(
    vm: &VmInner,
    vcpu: &VcpuShared,
    c: &mut GhcbCtx,
    err: GhcbError,
    reason: String,
) -> KvmResult<Outcome> {
    tracing::debug!(vcpu = vcpu.id(), ?err, %reason, "GHCB rejected");
    vm.log.push(Event::GhcbError {
        vcpu: vcpu.id(),
        ghcb_gpa: c.gpa.0,
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
            vcpu: vcpu.id(),
            ghcb_gpa: c.gpa.0,
            exit_code: c.code,
            error: err.0,
            reason: reason.clone(),
        });
        return einval(reason);
    }
    bad_input(vm, vcpu, c, err, reason)
}

/// One full-GHCB event being handled: the GHCB (to answer in), the inputs as the guest
/// wrote them (valid bitmap intact), and the exit information.
struct Nae<'a> {
    vm: &'a VmInner,
    vcpu: &'a VcpuShared,
    c: GhcbCtx,
    input: Box<Ghcb>,
    ev: NaeExit,
    info1: u64,
    info2: u64,
}

impl Nae<'_> {
    /// Complete the event with SW_EXITINFO1/2.
    fn finish(mut self, info1: u64, info2: u64) -> KvmResult<Outcome> {
        finish(self.vm, self.vcpu, &mut self.c, info1, info2)
    }

    /// Answer with a GHCB error.
    fn bad_input(mut self, err: GhcbError, reason: String) -> KvmResult<Outcome> {
        bad_input(self.vm, self.vcpu, &mut self.c, err, reason)
    }

    /// Answer with a GHCB error, or fail KVM_RUN as KVM does ([`kvm_fatal`]).
    fn kvm_fatal(mut self, err: GhcbError, reason: String) -> KvmResult<Outcome> {
        kvm_fatal(self.vm, self.vcpu, &mut self.c, err, reason)
    }

    /// The first of `fields` the guest did not mark valid.
    fn missing(&self, fields: &[GhcbField]) -> Option<GhcbField> {
        fields.iter().find(|f| !self.input.is_valid(**f)).copied()
    }

    /// Exit to the VMM; `then` finishes the event when the VMM re-enters.
    fn exit(
        self,
        exit: VcpuExit,
        then: impl FnOnce(Box<GhcbCtx>) -> Completion,
    ) -> KvmResult<Outcome> {
        Ok(Outcome::Exit(exit, Some(then(Box::new(self.c)))))
    }

    /// `[scratch, scratch+len)` in the shared buffer of this GHCB.
    fn scratch(&self, len: usize) -> Option<ScratchArea> {
        scratch_offset(self.c.gpa, self.input.sw_scratch, len).map(|off| ScratchArea { off, len })
    }
}

/// Answer with MISSING_INPUT unless the guest marked all the named fields valid.
macro_rules! need {
    ($n:ident, $($f:expr),+) => {
        if let Some(m) = $n.missing(&[$($f),+]) {
            let reason = format!("{:?} needs {m:?}", $n.ev);
            return $n.bad_input(GhcbError::MISSING_INPUT, reason);
        }
    };
}
use need;

/// Offset of `[scratch, scratch+len)` in the shared buffer of the GHCB at `ghcb`.
fn scratch_offset(ghcb: Gpa, scratch: u64, len: usize) -> Option<usize> {
    let beg = ghcb.0.checked_add(GHCB_SHARED_BUF_OFFSET as u64)?;
    let end = beg + GHCB_SHARED_BUF_SIZE as u64;
    let s_end = scratch.checked_add(len as u64)?;
    (scratch >= beg && s_end <= end).then(|| (scratch - beg) as usize)
}
