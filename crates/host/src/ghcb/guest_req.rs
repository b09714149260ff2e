//! SNP guest requests (GHCB spec 56421 §4.1.7–4.1.8; Linux `snp_handle_guest_req`,
//! `snp_handle_ext_guest_req`): the request page is bounced through hypervisor pages
//! to SNP_GUEST_REQUEST, the response copied back; an extended report request first
//! asks the VMM for the certificates (KVM_EXIT_SNP_REQ_CERTS) when it opted in.

use super::{Completion, GhcbCtx, Nae, Outcome};
use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::Event;
use crate::state::VcpuShared;
use crate::vcpu::VcpuExit;
use crate::vm::VmInner;
use softsev_abi::fw_buf::SnpGuestRequest;
use softsev_abi::ghcb::*;
use softsev_abi::guest_msg::{MsgHeader, MsgType};
use softsev_abi::{FwCmd, Gpa, PAGE_SIZE_4K};

/// An extended guest request waiting for the VMM's certificates.
pub(crate) struct ReqCtx {
    c: GhcbCtx,
    req: Gpa,
    resp: Gpa,
}

/// NAE GUEST_REQUEST / EXT_GUEST_REQUEST: SW_EXITINFO1 request page, SW_EXITINFO2
/// response page.
pub(super) fn request(n: Nae) -> KvmResult<Outcome> {
    let (info1, info2) = (n.info1, n.info2);
    if !info1.is_multiple_of(PAGE_SIZE_4K) || !info2.is_multiple_of(PAGE_SIZE_4K) || info1 == info2
    {
        return n.bad_input(
            GhcbError::INVALID_INPUT,
            format!("request {info1:#x} / response {info2:#x} pages"),
        );
    }
    let (req, resp) = (Gpa(info1), Gpa(info2));
    if n.ev == NaeExit::EXT_GUEST_REQUEST {
        return ext_request(n, req, resp);
    }
    let info2 = guest_request(n.vm, n.vcpu, req, resp, false)?;
    n.finish(0, info2)
}

/// An extended request: the certificates of a report request (RAX buffer, RBX pages)
/// come from the VMM if it enabled the exit, else the buffer gets an empty table.
fn ext_request(n: Nae, req: Gpa, resp: Gpa) -> KvmResult<Outcome> {
    let (vm, vcpu) = (n.vm, n.vcpu);
    let mut ty = [0u8; 1];
    vm.read_shared(
        Gpa(req.0 + core::mem::offset_of!(MsgHeader, msg_type) as u64),
        &mut ty,
    )
    .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    if MsgType(ty[0]) == MsgType::REPORT_REQ {
        if !n.input.is_valid(GhcbField::Rax) || !n.input.is_valid(GhcbField::Rbx) {
            return n.bad_input(
                GhcbError::INVALID_INPUT,
                "extended request without RAX/RBX".into(),
            );
        }
        let (data_gpa, npages) = (n.input.rax, n.input.rbx);
        if !data_gpa.is_multiple_of(PAGE_SIZE_4K) {
            return n.bad_input(
                GhcbError::INVALID_INPUT,
                format!("certificate buffer {data_gpa:#x} not page aligned"),
            );
        }
        let req_certs = vm.sev.lock().snp().is_some_and(|s| s.req_certs());
        if req_certs {
            return Ok(Outcome::Exit(
                VcpuExit::SnpReqCerts {
                    gpa: data_gpa,
                    npages,
                    ret: 0,
                },
                Some(Completion::ReqCerts(Box::new(ReqCtx { c: n.c, req, resp }))),
            ));
        }
        if npages > 0 {
            vm.write_shared(
                Gpa(data_gpa),
                &[0u8; core::mem::size_of::<CertTableEntry>()],
            )
            .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
        }
    }
    let info2 = guest_request(vm, vcpu, req, resp, true)?;
    n.finish(0, info2)
}

/// The VMM answered KVM_EXIT_SNP_REQ_CERTS: issue the request, or report its error
/// (ENOSPC: RBX = pages needed; EAGAIN: busy; EIO: generic).
pub(super) fn complete_certs(
    vm: &VmInner,
    vcpu: &VcpuShared,
    mut r: ReqCtx,
    exit: &VcpuExit,
) -> KvmResult<Outcome> {
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
                vcpu: vcpu.id(),
                extended: true,
                info2: v,
            });
            v
        }
    };
    super::finish(vm, vcpu, &mut r.c, 0, info2)
}

/// SNP_GUEST_REQUEST through the bounce pages; returns SW_EXITINFO2.
fn guest_request(
    vm: &VmInner,
    vcpu: &VcpuShared,
    req: Gpa,
    resp: Gpa,
    extended: bool,
) -> KvmResult<u64> {
    let _serial = vm.guest_req.lock();
    let (gctx, pages) = {
        let s = vm.sev.lock();
        match s
            .snp()
            .and_then(|s| Some((s.context()?, s.guest_request_pages())))
        {
            Some(x) => x,
            None => return einval("guest request before SNP_LAUNCH_START"),
        }
    };
    let h = &vm.host;
    let mut page = vec![0u8; PAGE_SIZE_4K as usize];
    vm.read_shared(req, &mut page)
        .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    h.soc
        .host_write(pages.request, false, &page)
        .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
    let mut cmd = SnpGuestRequest {
        gctx_paddr: gctx.0,
        request_paddr: pages.request.0,
        response_paddr: pages.response.0,
    };
    let status = match h.psp.issue(FwCmd::SNP_GUEST_REQUEST, &mut cmd) {
        Ok(()) => 0,
        Err(s) => s.0,
    };
    h.soc
        .host_read(pages.response, false, &mut page)
        .map_err(|e| KvmError::new(Errno::EIO, e.to_string()))?;
    vm.write_shared(resp, &page)
        .map_err(|e| KvmError::new(Errno::EIO, e.reason))?;
    let info2 = guest_req_info2(GuestReqVmmError::NONE, status);
    vm.log.push(Event::GuestRequest {
        vcpu: vcpu.id(),
        extended,
        info2,
    });
    Ok(info2)
}
