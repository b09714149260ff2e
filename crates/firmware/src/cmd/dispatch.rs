//! The mailbox side of every command: the command id names the buffer type
//! ([`FwCommand`], declared once in abi beside each layout), the buffer is read from
//! SoC memory at the address the host gave (as the real ASP does), and the typed
//! [`Command`] goes to its handler.

use crate::error::{CmdResult, soc_error};
use crate::fw::Firmware;
use crate::state::State;
use softsev_abi::fw_buf::*;
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
}

impl Firmware {
    /// Read the buffer of `cmd` at `buf`. Legacy SEV API, migration (swap, page move,
    /// metadata) and firmware download by image are not modelled: INVALID_COMMAND.
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
            _ => return Err(FwStatus::INVALID_COMMAND.into()),
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
        }
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
