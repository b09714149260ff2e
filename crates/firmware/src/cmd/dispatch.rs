//! The mailbox side of every command: the command id names the buffer type
//! ([`FwCommand`], declared once in abi beside each layout), the buffer is read from
//! SoC memory at the address the host gave (as the real ASP does), and the typed
//! [`Command`] goes to its handler.
//!
//! Legacy SEV commands copy their buffer back by class (shared/spec/sev-legacy.md
//! §1.1, ASPFW `sev_dispatch_master`): input-only buffers never, PLATFORM_STATUS /
//! GUEST_STATUS / LAUNCH_START on success, the length-query commands (PEK_CSR,
//! PDH_CERT_EXPORT, GET_ID, LAUNCH_MEASURE, ATTESTATION, SEND_START, SEND_UPDATE_*)
//! and SWAP_OUT on success and on INVALID_LENGTH; RECEIVE_START on success. With SNP initialised the page of a buffer that is written back must
//! be a Firmware page (INVALID_PAGE_STATE otherwise).

use crate::cmd::sev_migrate::Payload;
use crate::error::{CmdResult, soc_error};
use crate::fw::Firmware;
use crate::state::State;
use softsev_abi::fw_buf::*;
use softsev_abi::sev_buf::*;
use softsev_abi::{FwCmd, FwStatus, Spa};
use softsev_soc::KeySel;

/// A firmware command with its buffer, as read from memory.
#[derive(Debug)]
pub(crate) enum Command {
    /// SNP_INIT (no buffer).
    Init,
    /// SNP_INIT_EX.
    InitEx(SnpInitEx),
    /// SNP_SHUTDOWN (no buffer).
    Shutdown,
    /// SNP_SHUTDOWN_EX.
    ShutdownEx(SnpShutdownEx),
    /// SNP_PLATFORM_STATUS.
    PlatformStatus(SnpPlatformStatusCmd),
    /// SNP_DF_FLUSH (no buffer).
    DfFlush,
    /// SNP_CONFIG.
    Config(SnpConfig),
    /// SNP_COMMIT.
    Commit(SnpCommit),
    /// SNP_VLEK_LOAD.
    VlekLoad(SnpVlekLoad),
    /// SNP_FEATURE_INFO.
    FeatureInfo(SnpFeatureInfoCmd),
    /// SNP_GCTX_CREATE.
    GctxCreate(SnpGctxCreate),
    /// SNP_DECOMMISSION.
    Decommission(SnpDecommission),
    /// SNP_ACTIVATE.
    Activate(SnpActivate),
    /// SNP_ACTIVATE_EX.
    ActivateEx(SnpActivateEx),
    /// SNP_GUEST_STATUS.
    GuestStatus(SnpGuestStatusCmd),
    /// SNP_LAUNCH_START.
    LaunchStart(SnpLaunchStart),
    /// SNP_LAUNCH_UPDATE.
    LaunchUpdate(SnpLaunchUpdate),
    /// SNP_LAUNCH_FINISH.
    LaunchFinish(SnpLaunchFinish),
    /// SNP_DBG_DECRYPT.
    DbgDecrypt(SnpDbgDecrypt),
    /// SNP_DBG_ENCRYPT.
    DbgEncrypt(SnpDbgEncrypt),
    /// SNP_PAGE_RECLAIM.
    PageReclaim(SnpPageReclaim),
    /// SNP_PAGE_UNSMASH.
    PageUnsmash(SnpPageUnsmash),
    /// SNP_GUEST_REQUEST.
    GuestRequest(SnpGuestRequest),
    /// A legacy SEV command.
    Sev(SevCommand),
}

/// A legacy SEV command with its buffer (sev-legacy.md §1–§6).
#[derive(Debug)]
pub(crate) enum SevCommand {
    /// INIT.
    Init(SevInit),
    /// INIT_EX.
    InitEx(SevInitEx),
    /// SHUTDOWN (no buffer).
    Shutdown,
    /// PLATFORM_RESET (no buffer).
    PlatformReset,
    /// PLATFORM_STATUS (output in the buffer).
    PlatformStatus(SevPlatformStatus),
    /// PEK_GEN (no buffer).
    PekGen,
    /// PEK_CSR.
    PekCsr(SevPekCsr),
    /// PEK_CERT_IMPORT.
    PekCertImport(SevPekCertImport),
    /// PDH_GEN (no buffer).
    PdhGen,
    /// PDH_CERT_EXPORT.
    PdhCertExport(SevPdhCertExport),
    /// GET_ID.
    GetId(SevGetId),
    /// DF_FLUSH (no buffer).
    DfFlush,
    /// NOP (no buffer).
    Nop,
    /// ACTIVATE.
    Activate(SevActivate),
    /// DEACTIVATE.
    Deactivate(SevDeactivate),
    /// DECOMMISSION.
    Decommission(SevDecommission),
    /// GUEST_STATUS.
    GuestStatus(SevGuestStatus),
    /// LAUNCH_START.
    LaunchStart(SevLaunchStart),
    /// LAUNCH_UPDATE_DATA.
    LaunchUpdateData(SevLaunchUpdateData),
    /// LAUNCH_UPDATE_VMSA.
    LaunchUpdateVmsa(SevLaunchUpdateVmsa),
    /// LAUNCH_MEASURE.
    LaunchMeasure(SevLaunchMeasure),
    /// LAUNCH_UPDATE_SECRET.
    LaunchSecret(SevLaunchSecret),
    /// LAUNCH_FINISH.
    LaunchFinish(SevLaunchFinish),
    /// ATTESTATION.
    Attestation(SevAttestation),
    /// DBG_DECRYPT.
    DbgDecrypt(SevDbgDecrypt),
    /// DBG_ENCRYPT.
    DbgEncrypt(SevDbgEncrypt),
    /// SEND_START.
    SendStart(SevSendStart),
    /// SEND_UPDATE_DATA.
    SendUpdateData(SevSendUpdateData),
    /// SEND_UPDATE_VMSA.
    SendUpdateVmsa(SevSendUpdateVmsa),
    /// SEND_FINISH.
    SendFinish(SevSendFinish),
    /// SEND_CANCEL.
    SendCancel(SevSendCancel),
    /// RECEIVE_START.
    ReceiveStart(SevReceiveStart),
    /// RECEIVE_UPDATE_DATA.
    ReceiveUpdateData(SevReceiveUpdateData),
    /// RECEIVE_UPDATE_VMSA.
    ReceiveUpdateVmsa(SevReceiveUpdateVmsa),
    /// RECEIVE_FINISH.
    ReceiveFinish(SevReceiveFinish),
    /// SWAP_OUT.
    SwapOut(SevSwapOut),
    /// SWAP_IN.
    SwapIn(SevSwapIn),
}

/// When a legacy command's buffer is copied back (§1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CopyBack {
    /// On success.
    OnSuccess,
    /// On success and on INVALID_LENGTH (the length query).
    OnSuccessOrLength,
}

impl Firmware {
    /// Read the buffer of `cmd` at `buf`. Not modelled, so INVALID_COMMAND: legacy
    /// COPY, ACTIVATE_EX and RING_BUFFER, SNP migration
    /// (swap, page move, metadata), firmware download by image, HV_REPORT_REQ.
    fn read_command(&self, cmd: FwCmd, buf: Spa) -> CmdResult<Command> {
        use Command as C;
        Ok(match cmd {
            FwCmd::SNP_INIT => C::Init,
            FwCmd::SNP_SHUTDOWN => C::Shutdown,
            FwCmd::SNP_DF_FLUSH => C::DfFlush,
            SnpInitEx::ID => C::InitEx(self.read_cmd(buf)?),
            SnpShutdownEx::ID => C::ShutdownEx(self.read_cmd(buf)?),
            SnpPlatformStatusCmd::ID => C::PlatformStatus(self.read_cmd(buf)?),
            SnpConfig::ID => C::Config(self.read_cmd(buf)?),
            SnpCommit::ID => C::Commit(self.read_cmd(buf)?),
            SnpVlekLoad::ID => C::VlekLoad(self.read_cmd(buf)?),
            SnpFeatureInfoCmd::ID => C::FeatureInfo(self.read_cmd(buf)?),
            SnpGctxCreate::ID => C::GctxCreate(self.read_cmd(buf)?),
            SnpDecommission::ID => C::Decommission(self.read_cmd(buf)?),
            SnpActivate::ID => C::Activate(self.read_cmd(buf)?),
            SnpActivateEx::ID => C::ActivateEx(self.read_cmd(buf)?),
            SnpGuestStatusCmd::ID => C::GuestStatus(self.read_cmd(buf)?),
            SnpLaunchStart::ID => C::LaunchStart(self.read_cmd(buf)?),
            SnpLaunchUpdate::ID => C::LaunchUpdate(self.read_cmd(buf)?),
            SnpLaunchFinish::ID => C::LaunchFinish(self.read_cmd(buf)?),
            SnpDbgDecrypt::ID => C::DbgDecrypt(self.read_cmd(buf)?),
            SnpDbgEncrypt::ID => C::DbgEncrypt(self.read_cmd(buf)?),
            SnpPageReclaim::ID => C::PageReclaim(self.read_cmd(buf)?),
            SnpPageUnsmash::ID => C::PageUnsmash(self.read_cmd(buf)?),
            SnpGuestRequest::ID => C::GuestRequest(self.read_cmd(buf)?),
            _ => C::Sev(self.read_sev_command(cmd, buf)?),
        })
    }

    /// Run `cmd` with its buffer at `buf`.
    pub(crate) fn dispatch(&self, st: &mut State, cmd: FwCmd, buf: Spa) -> CmdResult {
        use Command as C;
        match self.read_command(cmd, buf)? {
            C::Init => self.snp_init(st, None),
            C::InitEx(b) => self.snp_init(st, Some(b)),
            C::Shutdown => self.snp_shutdown(st, None),
            C::ShutdownEx(b) => self.snp_shutdown(st, Some(b)),
            C::PlatformStatus(b) => self.snp_platform_status(st, b),
            C::DfFlush => self.snp_df_flush(st),
            C::Config(b) => self.snp_config(st, b),
            C::Commit(b) => self.snp_commit(st, b),
            C::VlekLoad(b) => self.snp_vlek_load(st, b),
            C::FeatureInfo(b) => self.snp_feature_info(st, b),
            C::GctxCreate(b) => self.snp_gctx_create(st, b),
            C::Decommission(b) => self.snp_decommission(st, b),
            C::Activate(b) => self.snp_activate(st, b),
            C::ActivateEx(b) => self.snp_activate_ex(st, b),
            C::GuestStatus(b) => self.snp_guest_status(st, b),
            C::LaunchStart(b) => self.snp_launch_start(st, b),
            C::LaunchUpdate(b) => self.snp_launch_update(st, b),
            C::LaunchFinish(b) => self.snp_launch_finish(st, b),
            C::DbgDecrypt(b) => self.snp_dbg_decrypt(st, b),
            C::DbgEncrypt(b) => self.snp_dbg_encrypt(st, b),
            C::PageReclaim(b) => self.snp_page_reclaim(st, b),
            C::PageUnsmash(b) => self.snp_page_unsmash(st, b),
            C::GuestRequest(b) => self.snp_guest_request(st, b),
            C::Sev(c) => self.dispatch_sev(st, c, buf),
        }
    }

    /// Read the buffer of legacy command `cmd` at `buf`.
    fn read_sev_command(&self, cmd: FwCmd, buf: Spa) -> CmdResult<SevCommand> {
        use SevCommand as S;
        Ok(match cmd {
            FwCmd::SHUTDOWN => S::Shutdown,
            FwCmd::PLATFORM_RESET => S::PlatformReset,
            FwCmd::PEK_GEN => S::PekGen,
            FwCmd::PDH_GEN => S::PdhGen,
            FwCmd::DF_FLUSH => S::DfFlush,
            FwCmd::NOP => S::Nop,
            SevInit::ID => S::Init(self.read_cmd(buf)?),
            SevInitEx::ID => S::InitEx(self.read_cmd(buf)?),
            SevPlatformStatus::ID => S::PlatformStatus(self.read_cmd(buf)?),
            SevPekCsr::ID => S::PekCsr(self.read_cmd(buf)?),
            SevPekCertImport::ID => S::PekCertImport(self.read_cmd(buf)?),
            SevPdhCertExport::ID => S::PdhCertExport(self.read_cmd(buf)?),
            SevGetId::ID => S::GetId(self.read_cmd(buf)?),
            SevActivate::ID => S::Activate(self.read_cmd(buf)?),
            SevDeactivate::ID => S::Deactivate(self.read_cmd(buf)?),
            SevDecommission::ID => S::Decommission(self.read_cmd(buf)?),
            SevGuestStatus::ID => S::GuestStatus(self.read_cmd(buf)?),
            SevLaunchStart::ID => S::LaunchStart(self.read_cmd(buf)?),
            SevLaunchUpdateData::ID => S::LaunchUpdateData(self.read_cmd(buf)?),
            SevLaunchUpdateVmsa::ID => S::LaunchUpdateVmsa(self.read_cmd(buf)?),
            SevLaunchMeasure::ID => S::LaunchMeasure(self.read_cmd(buf)?),
            SevLaunchSecret::ID => S::LaunchSecret(self.read_cmd(buf)?),
            SevLaunchFinish::ID => S::LaunchFinish(self.read_cmd(buf)?),
            SevAttestation::ID => S::Attestation(self.read_cmd(buf)?),
            SevDbgDecrypt::ID => S::DbgDecrypt(self.read_cmd(buf)?),
            SevDbgEncrypt::ID => S::DbgEncrypt(self.read_cmd(buf)?),
            SevSendStart::ID => S::SendStart(self.read_cmd(buf)?),
            SevSendUpdateData::ID => S::SendUpdateData(self.read_cmd(buf)?),
            SevSendUpdateVmsa::ID => S::SendUpdateVmsa(self.read_cmd(buf)?),
            SevSendFinish::ID => S::SendFinish(self.read_cmd(buf)?),
            SevSendCancel::ID => S::SendCancel(self.read_cmd(buf)?),
            SevReceiveStart::ID => S::ReceiveStart(self.read_cmd(buf)?),
            SevReceiveUpdateData::ID => S::ReceiveUpdateData(self.read_cmd(buf)?),
            SevReceiveUpdateVmsa::ID => S::ReceiveUpdateVmsa(self.read_cmd(buf)?),
            SevReceiveFinish::ID => S::ReceiveFinish(self.read_cmd(buf)?),
            SevSwapOut::ID => S::SwapOut(self.read_cmd(buf)?),
            SevSwapIn::ID => S::SwapIn(self.read_cmd(buf)?),
            _ => return Err(FwStatus::INVALID_COMMAND.into()),
        })
    }

    /// Run a legacy command and copy its buffer back by class (§1.1).
    fn dispatch_sev(&self, st: &mut State, c: SevCommand, buf: Spa) -> CmdResult {
        use CopyBack::{OnSuccess, OnSuccessOrLength};
        use SevCommand as S;
        match c {
            S::Init(b) => self.sev_init(st, b, None),
            S::InitEx(b) => {
                let init = SevInit {
                    flags: b.flags,
                    reserved: 0,
                    tmr_address: b.tmr_address,
                    tmr_len: b.tmr_len,
                };
                self.sev_init(st, init, Some(b))
            }
            S::Shutdown => self.sev_shutdown(st),
            S::PlatformReset => self.sev_platform_reset(st),
            S::PekGen => self.sev_pek_gen(st),
            S::PdhGen => self.sev_pdh_gen(st),
            // Legacy DF_FLUSH has no platform-state check (`mcmd_df_flush_common`) and
            // the SNP semantics (WBINVD_REQUIRED, Dirty → Clean).
            S::DfFlush => self.snp_df_flush(st),
            S::Nop => Ok(()),
            S::PekCertImport(b) => self.sev_pek_cert_import(st, b),
            S::Activate(b) => self.sev_activate(st, b),
            S::Deactivate(b) => self.sev_deactivate(st, b),
            S::Decommission(b) => self.sev_decommission(st, b),
            S::LaunchUpdateData(b) => self.sev_launch_update_data(st, b),
            S::LaunchUpdateVmsa(b) => self.sev_launch_update_vmsa(st, b),
            S::LaunchSecret(b) => self.sev_launch_secret(st, b),
            S::LaunchFinish(b) => self.sev_launch_finish(st, b),
            S::DbgDecrypt(b) => self.sev_dbg_decrypt(st, b),
            S::DbgEncrypt(b) => self.sev_dbg_encrypt(st, b),
            S::SendFinish(b) => self.sev_send_finish(st, b),
            S::SendCancel(b) => self.sev_send_cancel(st, b),
            S::ReceiveFinish(b) => self.sev_receive_finish(st, b),
            S::SwapIn(b) => self.sev_swap_in(st, b),
            S::SwapOut(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_swap_out(st, b)
                })
            }
            S::ReceiveUpdateData(b) => self.sev_receive_update(st, (&b).into(), Payload::Data),
            S::ReceiveUpdateVmsa(b) => self.sev_receive_update(st, (&b).into(), Payload::Vmsa),
            S::ReceiveStart(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccess, |f, st, b| {
                    f.sev_receive_start(st, b)
                })
            }
            S::SendStart(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_send_start(st, b)
                })
            }
            S::SendUpdateData(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    let r = f.sev_send_update(st, (&*b).into(), Payload::Data);
                    b.hdr_len = SEV_PACKET_HEADER_LEN as u32;
                    r.map(|_| ())
                })
            }
            S::SendUpdateVmsa(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    let r = f.sev_send_update(st, (&*b).into(), Payload::Vmsa);
                    b.hdr_len = SEV_PACKET_HEADER_LEN as u32;
                    r.map(|_| ())
                })
            }
            S::PlatformStatus(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccess, |f, st, b| {
                    f.sev_platform_status(st, b)
                })
            }
            S::GuestStatus(mut b) => self.with_copy_back(st, buf, &mut b, OnSuccess, |f, st, b| {
                f.sev_guest_status(st, b)
            }),
            S::LaunchStart(mut b) => self.with_copy_back(st, buf, &mut b, OnSuccess, |f, st, b| {
                f.sev_launch_start(st, b)
            }),
            S::PekCsr(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_pek_csr(st, b)
                })
            }
            S::PdhCertExport(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_pdh_cert_export(st, b)
                })
            }
            S::GetId(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_get_id(st, b)
                })
            }
            S::LaunchMeasure(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_launch_measure(st, b)
                })
            }
            S::Attestation(mut b) => {
                self.with_copy_back(st, buf, &mut b, OnSuccessOrLength, |f, st, b| {
                    f.sev_attestation(st, b)
                })
            }
        }
    }

    /// Run `handler` on the buffer `b` read from `buf`, then copy it back per `class`.
    /// The buffer's page must be firmware-writable first (SNP initialised, §1.1).
    fn with_copy_back<T: FwCommand>(
        &self,
        st: &mut State,
        buf: Spa,
        b: &mut T,
        class: CopyBack,
        handler: impl FnOnce(&Self, &mut State, &mut T) -> CmdResult,
    ) -> CmdResult {
        self.sev_writable(st, buf.0, b.as_bytes().len() as u64)?;
        let r = handler(self, st, b);
        let copy = match &r {
            Ok(()) => true,
            Err(e) => {
                class == CopyBack::OnSuccessOrLength && e.status() == FwStatus::INVALID_LENGTH
            }
        };
        if copy {
            self.write_plain(buf.0, b.as_bytes())?;
        }
        r
    }

    /// Read a command buffer of type `T` at `buf` (plaintext).
    fn read_cmd<T: FwCommand>(&self, buf: Spa) -> CmdResult<T> {
        let mut v = T::new_zeroed();
        self.soc
            .fw_read(buf, KeySel::Plain, v.as_mut_bytes())
            .map_err(|e| soc_error(buf, e))?;
        Ok(v)
    }
}
