//! The secure processor as the host's PSP driver sees it: a command id plus a command
//! buffer at a physical address, read and written through the SoC, with the platform
//! and guest state machines behind it (AMD SEV firmware `sev_mcmd.c`, SNP ABI). The
//! command handlers are in [`crate::cmd`], the state they share in [`crate::state`].

use crate::error::{CmdResult, FwError, soc_error};
use crate::guest_ctx::{GuestContext, GuestInfo, GuestState, LaunchRecord};
use crate::identity::Chip;
use crate::state::{
    AsidState, FirmwareImage, FwVersion, GuestHandle, PlatformState, SevPlatformState, State,
};
use parking_lot::Mutex;
use softsev_abi::fw_buf::{ADDR_RESERVED_MASK, FwCommand};
use softsev_abi::rmp::{PageState, RmpEntry};
use softsev_abi::{FwCmd, FwStatus, Product, Spa, TcbVersion};
use softsev_crypto::rng::Rng;
use softsev_soc::{KeySel, Soc};
use std::sync::Arc;

/// Result of a firmware command: `Err` carries the status the firmware returns.
pub type FwResult<T = ()> = Result<T, FwStatus>;

/// How the modelled platform is built.
#[derive(Clone, Debug)]
pub struct FirmwareConfig {
    /// The running (and, at start, committed) firmware image.
    pub image: FirmwareImage,
    /// Whether SMT is enabled on the host (a guest policy without SMT then fails).
    pub smt_enabled: bool,
    /// Populated sockets (SINGLE_SOCKET guests need 1).
    pub sockets: u32,
    /// First ASID of plain SEV; SEV-ES and SNP guests use 1..min_sev_asid.
    pub min_sev_asid: u32,
    /// Seed for the firmware's random numbers (VEKs, VMPCKs, report ids): the same
    /// seed and inputs give the same bytes. `None` draws from the OS.
    pub seed: Option<Vec<u8>>,
    /// Attestation report version MSG_REPORT_REQ produces (3 or 5).
    pub report_version: u32,
    /// Ciphertext hiding can be enabled (guest policy bit 24 accepted).
    pub ciphertext_hiding: bool,
}

impl FirmwareConfig {
    /// A platform of `product` with representative firmware versions and TCBs (the
    /// values seen in public reports of each generation), SMT on, one socket, every
    /// ASID of the SoC usable by SNP, report version 3 (5 on Turin).
    pub fn for_product(product: Product) -> Self {
        let (version, tcb, report_version) = match product {
            Product::Milan => (
                FwVersion {
                    major: 1,
                    minor: 55,
                    build: 21,
                },
                TcbVersion {
                    fmc: 0,
                    bootloader: 3,
                    tee: 0,
                    snp: 20,
                    microcode: 209,
                },
                3,
            ),
            Product::Genoa => (
                FwVersion {
                    major: 1,
                    minor: 55,
                    build: 38,
                },
                TcbVersion {
                    fmc: 0,
                    bootloader: 7,
                    tee: 0,
                    snp: 15,
                    microcode: 72,
                },
                3,
            ),
            Product::Turin => (
                FwVersion {
                    major: 1,
                    minor: 58,
                    build: 3,
                },
                TcbVersion {
                    fmc: 1,
                    bootloader: 1,
                    tee: 1,
                    snp: 3,
                    microcode: 77,
                },
                5,
            ),
        };
        FirmwareConfig {
            image: FirmwareImage { version, tcb },
            smt_enabled: true,
            sockets: 1,
            min_sev_asid: u32::MAX,
            seed: None,
            report_version,
            ciphertext_hiding: false,
        }
    }
}

/// The AMD secure processor model.
///
/// Commands go through [`Firmware::command`] exactly as Linux's PSP driver issues them:
/// the command buffer sits in SoC memory (the firmware reads it without encryption and
/// writes outputs back), every page operand is checked against its RMP state, and the
/// result is the firmware status. Commands are serialised, as on the real mailbox.
/// [`Firmware::call`] is the typed form for in-process callers: the buffer's type
/// names its command ([`FwCommand`]). [`Firmware::builder`] assembles a SoC, a chip
/// and a firmware in one step.
pub struct Firmware {
    pub(crate) soc: Arc<Soc>,
    pub(crate) chip: Arc<Chip>,
    pub(crate) config: FirmwareConfig,
    pub(crate) cpuid: crate::cpuid::PlatformCpuid,
    pub(crate) state: Mutex<State>,
}

impl std::fmt::Debug for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Firmware")
            .field("product", &self.chip.product())
            .field("state", &st.snp)
            .field("guests", &st.guests.len())
            .finish()
    }
}

impl Firmware {
    /// A platform in the UNINIT state on `soc`, with identity `chip`.
    pub fn new(soc: Arc<Soc>, chip: Arc<Chip>, config: FirmwareConfig) -> Firmware {
        let rng = match &config.seed {
            Some(s) => Rng::seeded(s, "softsev firmware"),
            None => Rng::os(),
        };
        let max_asid = soc.asid_count().saturating_sub(1) as usize;
        let cpuid = crate::cpuid::PlatformCpuid::for_product(chip.product());
        Firmware {
            soc,
            chip,
            cpuid,
            state: Mutex::new(State::new(config.image, max_asid, rng)),
            config,
        }
    }

    /// The SoC the firmware runs on.
    pub fn soc(&self) -> &Arc<Soc> {
        &self.soc
    }

    /// The chip identity (keys and certificates).
    pub fn chip(&self) -> &Arc<Chip> {
        &self.chip
    }

    /// The configuration the platform was built with.
    pub fn config(&self) -> &FirmwareConfig {
        &self.config
    }

    /// Run firmware command `cmd` with its command buffer at `buf` (ignored by commands
    /// without one: SNP_INIT, SNP_SHUTDOWN, SNP_DF_FLUSH). Returns the firmware status.
    ///
    /// This is the mailbox: the only place where a fault of the model becomes a
    /// status, logged (the crate docs, "Errors", have the rule).
    pub fn command(&self, cmd: FwCmd, buf: Spa) -> FwResult {
        let mut st = self.state.lock();
        match self.dispatch(&mut st, cmd, buf) {
            Ok(()) => {
                tracing::debug!(?cmd, buf = %buf, "firmware command succeeded");
                Ok(())
            }
            Err(FwError::Status(s)) => {
                tracing::debug!(?cmd, buf = %buf, status = ?s, "firmware command failed");
                Err(s)
            }
            Err(e @ FwError::Model(_)) => {
                let s = e.status();
                tracing::error!(?cmd, buf = %buf, status = ?s, fault = %e, "firmware model fault");
                Err(s)
            }
        }
    }

    /// Write `data` as the command buffer at `buf`, run its command ([`FwCommand::ID`]),
    /// and read the buffer back into `data` (commands that return values in their
    /// buffer). For in-process callers and tests; the host passes buffers in memory it
    /// owns and issues them with [`Firmware::command`].
    pub fn call<T: FwCommand>(&self, buf: Spa, data: &mut T) -> FwResult {
        self.soc
            .fw_write(buf, KeySel::Plain, data.as_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        let r = self.command(T::ID, buf);
        self.soc
            .fw_read(buf, KeySel::Plain, data.as_mut_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        r
    }

    /// Read `buf.len()` plaintext bytes at `spa`.
    pub(crate) fn read_plain(&self, spa: u64, buf: &mut [u8]) -> CmdResult {
        self.soc
            .fw_read(Spa(spa), KeySel::Plain, buf)
            .map_err(|e| soc_error(Spa(spa), e))
    }

    /// Write plaintext bytes at `spa`.
    pub(crate) fn write_plain(&self, spa: u64, data: &[u8]) -> CmdResult {
        self.soc
            .fw_write(Spa(spa), KeySel::Plain, data)
            .map_err(|e| soc_error(Spa(spa), e))
    }

    /// Read bytes at `spa` through key `sel`.
    pub(crate) fn read_with(&self, spa: u64, sel: KeySel, buf: &mut [u8]) -> CmdResult {
        self.soc
            .fw_read(Spa(spa), sel, buf)
            .map_err(|e| soc_error(Spa(spa), e))
    }

    /// Write bytes at `spa` through key `sel`.
    pub(crate) fn write_with(&self, spa: u64, sel: KeySel, data: &[u8]) -> CmdResult {
        self.soc
            .fw_write(Spa(spa), sel, data)
            .map_err(|e| soc_error(Spa(spa), e))
    }

    /// The RMP entry of the 4 KiB page holding `spa` and its firmware state
    /// (`rmp_get_addr_entry_state`): DEFAULT for memory the RMP does not cover,
    /// INVALID_ADDRESS beyond memory.
    pub(crate) fn page_state(&self, spa: u64) -> CmdResult<(RmpEntry, PageState)> {
        if spa >= self.soc.mem_size() {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        if !self.soc.rmp_covered(Spa(spa)) {
            return Ok((RmpEntry::default(), PageState::DEFAULT));
        }
        let e = self
            .soc
            .fw_rmp_read(Spa(spa))
            .map_err(|e| soc_error(Spa(spa), e))?;
        Ok((e, e.page_state()))
    }

    /// Rewrite the RMP entry of the page at `spa`.
    pub(crate) fn rmp_write(&self, spa: u64, e: RmpEntry) -> CmdResult {
        self.soc
            .fw_rmp_write(Spa(spa), e)
            .map_err(|e| soc_error(Spa(spa), e))
    }

    /// Check that the output area `[spa, spa + len)` stays in one page and that the
    /// page may receive firmware output (FIRMWARE, or any page while SNP is not
    /// initialised, or a page the RMP does not cover).
    pub(crate) fn check_output_page(&self, st: &State, spa: u64, len: usize) -> CmdResult {
        if (spa & 0xFFF) as usize + len > 0x1000 {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        if st.snp != PlatformState::Uninit {
            let (_, s) = self.page_state(spa)?;
            if s != PageState::FIRMWARE && s != PageState::DEFAULT {
                return Err(FwStatus::INVALID_PAGE_STATE.into());
            }
        }
        Ok(())
    }

    /// Common prologue: the SNP platform in INIT.
    pub(crate) fn require_init(&self, st: &State) -> CmdResult {
        if st.snp != PlatformState::Init {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        Ok(())
    }

    /// The guest context at `gctx` (page in CONTEXT state, else INVALID_GUEST).
    pub(crate) fn context_mut<'a>(
        &self,
        st: &'a mut State,
        gctx: u64,
    ) -> CmdResult<&'a mut GuestContext> {
        let (_, s) = self.page_state(gctx)?;
        if s != PageState::CONTEXT {
            return Err(FwStatus::INVALID_GUEST.into());
        }
        Ok(st
            .guests
            .get_mut(GuestHandle::Snp(Spa(gctx)))
            .ok_or(FwStatus::INVALID_GUEST)?)
    }

    /// Verify a CONTEXT page without borrowing the context.
    pub(crate) fn check_context(&self, st: &State, gctx: u64) -> CmdResult {
        let (_, s) = self.page_state(gctx)?;
        if s != PageState::CONTEXT || !st.guests.contains(GuestHandle::Snp(Spa(gctx))) {
            return Err(FwStatus::INVALID_GUEST.into());
        }
        Ok(())
    }

    // ---- observers (not firmware commands; for hosts, tools and tests) ----

    /// The SNP platform state.
    pub fn platform_state(&self) -> PlatformState {
        self.state.lock().snp
    }

    /// The legacy SEV platform state (UNINIT / INIT / WORKING).
    pub fn sev_platform_state(&self) -> SevPlatformState {
        self.state.lock().sev.platform
    }

    /// The firmware's state of `asid`, `None` if out of range.
    pub fn asid_state(&self, asid: u32) -> Option<AsidState> {
        self.state.lock().asids.get(asid)
    }

    /// The running firmware image.
    pub fn current_image(&self) -> FirmwareImage {
        self.state.lock().current
    }

    /// The committed firmware image (the anti-rollback floor).
    pub fn committed_image(&self) -> FirmwareImage {
        self.state.lock().committed
    }

    /// The REPORTED_TCB (SNP_CONFIG; the committed TCB by default).
    pub fn reported_tcb(&self) -> TcbVersion {
        self.state.lock().reported_tcb
    }

    /// Number of live guest contexts.
    pub fn context_count(&self) -> usize {
        self.state.lock().guests.len()
    }

    /// The current launch digest of the guest at `gctx`, if it exists.
    pub fn launch_digest(&self, gctx: Spa) -> Option<[u8; 48]> {
        self.inspect_guest(gctx, |g| g.measurement())
    }

    /// The guest state of the context at `gctx`, if it exists.
    pub fn guest_state(&self, gctx: Spa) -> Option<GuestState> {
        self.inspect_guest(gctx, |g| g.state())
    }

    /// Run `f` on a view of the context at `gctx`, if it exists. The firmware is locked
    /// while `f` runs: `f` must not call the firmware.
    pub fn inspect_guest<R>(&self, gctx: Spa, f: impl FnOnce(GuestInfo<'_>) -> R) -> Option<R> {
        let st = self.state.lock();
        st.guests.get(GuestHandle::Snp(gctx)).map(|g| f(g.info()))
    }

    /// A copy of the launch record of the guest at `gctx`, once SNP_LAUNCH_FINISH
    /// wrote it.
    pub fn launch_record(&self, gctx: Spa) -> Option<LaunchRecord> {
        self.inspect_guest(gctx, |g| g.launch().cloned()).flatten()
    }

    // ---- platform updates (not mailbox commands) ----

    /// Install a new firmware image (SNP_DOWNLOAD_FIRMWARE_EX): the running version
    /// and TCB become the image's; `commit` also commits it (as SNP_COMMIT would).
    /// Installing an image older than the committed one is refused with BAD_SVN
    /// (anti-rollback); an older image that is still at or above the committed floor
    /// is accepted (rollback to an uncommitted version is allowed, as on hardware).
    pub fn download_firmware(&self, image: FirmwareImage, commit: bool) -> FwResult {
        let mut st = self.state.lock();
        let floor = st.committed;
        if !image.tcb.dominates(&floor.tcb) || image.version < floor.version {
            return Err(FwStatus::BAD_SVN);
        }
        st.current = image;
        if commit {
            st.committed = image;
        }
        tracing::info!(version = %image.version, tcb = %image.tcb, commit, "firmware image installed");
        Ok(())
    }

    /// A microcode update on all cores: the running TCB's microcode SVN becomes `svn`.
    /// Loading microcode below the committed SVN is refused with BAD_SVN.
    pub fn load_microcode(&self, svn: u8) -> FwResult {
        let mut st = self.state.lock();
        if svn < st.committed.tcb.microcode {
            return Err(FwStatus::BAD_SVN);
        }
        st.current.tcb.microcode = svn;
        Ok(())
    }
}

/// True when the page-address operand has reserved bits 11:0 set.
pub(crate) fn misaligned(paddr: u64) -> bool {
    paddr & ADDR_RESERVED_MASK != 0
}
