//! SNP_GUEST_REQUEST at the command level (AMD SEV firmware `snp_mcmd_guest_request`):
//! the page and state checks the hypervisor is answerable for, then the guest message
//! itself ([`crate::guest_msg::handle_guest_request`]) with everything a report or a
//! derived key takes from the guest context and the platform.

use crate::error::{CmdResult, FwError, ModelFault};
use crate::fw::{Firmware, misaligned};
use crate::guest_ctx::GuestContext;
use crate::guest_msg::{GuestMsgEnv, ReportVersion, handle_guest_request};
use crate::state::{GuestHandle, State};
use softsev_abi::fw_buf::SnpGuestRequest;
use softsev_abi::guest_msg::HEADER_SIZE;
use softsev_abi::report::PlatformInfo;
use softsev_abi::rmp::PageState;
use softsev_abi::{FwStatus, Spa};

const PAGE: u64 = 0x1000;

impl Firmware {
    pub(crate) fn snp_guest_request(&self, st: &mut State, cmd: SnpGuestRequest) -> CmdResult {
        if misaligned(cmd.gctx_paddr) {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        let (_, gctx_state) = self.page_state(cmd.gctx_paddr)?;
        let (req_entry, _) = self.page_state(cmd.request_paddr)?;
        let (rsp_entry, rsp_state) = self.page_state(cmd.response_paddr)?;
        if gctx_state != PageState::CONTEXT {
            return Err(FwStatus::INVALID_GUEST.into());
        }
        if rsp_state != PageState::FIRMWARE {
            return Err(FwStatus::INVALID_PAGE_STATE.into());
        }
        if req_entry.is_2m() || rsp_entry.is_2m() {
            return Err(FwStatus::INVALID_PAGE_SIZE.into());
        }
        self.check_context(st, cmd.gctx_paddr)?;
        let smt = self.config.smt_enabled;
        let report_version = if self.config.report_version == 5 {
            ReportVersion::V5
        } else {
            ReportVersion::V3
        };
        let (current, committed, reported) = (st.current, st.committed, st.reported_tcb);
        let (mask_chip_id, mask_chip_key) = (st.mask_chip_id, st.mask_chip_key);
        let g = st
            .guests
            .get_mut(GuestHandle::Snp(Spa(cmd.gctx_paddr)))
            .ok_or(FwStatus::INVALID_GUEST)?;
        let GuestContext::Running(g) = g else {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        };
        let req_off = cmd.request_paddr & (PAGE - 1);
        if req_off > PAGE - HEADER_SIZE as u64 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        // Copy the request (to the end of its page) once: the guest cannot change what
        // the firmware checks after the check.
        let mut request = vec![0u8; (PAGE - req_off) as usize];
        self.read_plain(cmd.request_paddr, &mut request)?;
        let rsp_off = cmd.response_paddr & (PAGE - 1);
        let mut response = vec![0u8; (PAGE - rsp_off) as usize];

        // The launch record and the VMRK are borrowed; the message state beside them
        // is the one the exchange advances.
        let mut env = GuestMsgEnv::for_launch(&self.chip, &g.vmrk, &g.record);
        env.report_version = report_version;
        env.deterministic_signatures = self.config.seed.is_some();
        env.current_tcb = current.tcb;
        env.reported_tcb = reported;
        env.committed_tcb = committed.tcb;
        env.current_version = current.version;
        env.committed_version = committed.version;
        env.mask_chip_id = mask_chip_id;
        env.mask_chip_key = mask_chip_key;
        env.platform_info = PlatformInfo(if smt { PlatformInfo::SMT_EN } else { 0 });
        let reply =
            handle_guest_request(&mut g.msg, &env, &request, &mut response).map_err(|e| match e
                .status()
            {
                Some(s) => FwError::Status(s),
                None => FwError::Model(ModelFault::GuestMsg(e.to_string())),
            })?;
        let out = response.get(..reply.response_len).unwrap_or(&response);
        self.write_plain(cmd.response_paddr, out)?;
        tracing::debug!(
            msg_type = ?reply.msg_type,
            payload_status = ?reply.payload_status,
            "guest request answered"
        );
        Ok(())
    }
}
