//! The secure processor as the host's PSP driver sees it: a command id plus a command
//! buffer at a physical address, read and written through the SoC, with the platform
//! and guest state machines behind it (AMD SEV firmware `sev_mcmd.c`, SNP ABI).

use crate::guest::GuestContext;
use crate::identity::Chip;
use parking_lot::Mutex;
use softsev_abi::fw_buf::ADDR_RESERVED_MASK;
use softsev_abi::rmp::{PageState, RmpEntry};
use softsev_abi::{FwCmd, FwStatus, Product, Spa, TcbVersion};
use softsev_crypto::rng::Rng;
use softsev_soc::{KeySel, Soc, SocError};
use std::collections::HashMap;
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Result of a firmware command: `Err` carries the status the firmware returns.
pub type FwResult<T = ()> = Result<T, FwStatus>;

/// A firmware version (API major.minor and build id), as PLATFORM_STATUS and the
/// attestation report carry it; ordered by (major, minor, build).
pub use softsev_abi::report::FirmwareVersion as FwVersion;

/// A firmware image as SNP_DOWNLOAD_FIRMWARE_EX would install it: its version and the
/// TCB it runs at (its SNP SVN; the other components come from the boot loader, the
/// TEE and the microcode, which [`Firmware::download_firmware`] takes from the image
/// too, so a whole "platform update" can be modelled in one step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareImage {
    /// The image's version.
    pub version: FwVersion,
    /// The TCB the platform runs at with this image.
    pub tcb: TcbVersion,
}

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

/// SNP platform state (`SNP_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PlatformState {
    /// Not initialised (after reset or SNP_SHUTDOWN).
    Uninit = 0,
    /// Initialised (after SNP_INIT / SNP_INIT_EX).
    Init = 1,
}

/// The firmware's bookkeeping of an ASID (per CCX on hardware; the model has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsidState {
    /// May hold stale cache lines: DF_FLUSH (after WBINVD) needed before reuse.
    Dirty,
    /// Free.
    Clean,
    /// Bound to a guest that has not run yet (activation pending).
    Allocated,
    /// Bound to a running guest.
    InUse,
}

pub(crate) struct State {
    pub snp: PlatformState,
    pub rmp_initialized: bool,
    pub current: FirmwareImage,
    pub committed: FirmwareImage,
    pub reported_tcb: TcbVersion,
    pub mask_chip_id: bool,
    pub mask_chip_key: bool,
    /// Index asid - 1.
    pub asids: Vec<AsidState>,
    pub guests: HashMap<u64, GuestContext>,
    pub guest_count: u32,
    pub rng: Rng,
}

/// The AMD secure processor model.
///
/// Commands go through [`Firmware::command`] exactly as Linux's PSP driver issues them:
/// the command buffer sits in SoC memory (the firmware reads it without encryption and
/// writes outputs back), every page operand is checked against its RMP state, and the
/// result is the firmware status. Commands are serialised, as on the real mailbox.
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
        let image = config.image;
        let cpuid = crate::cpuid::PlatformCpuid::for_product(chip.product());
        Firmware {
            soc,
            chip,
            cpuid,
            state: Mutex::new(State {
                snp: PlatformState::Uninit,
                rmp_initialized: false,
                current: image,
                committed: image,
                reported_tcb: image.tcb,
                mask_chip_id: false,
                mask_chip_key: false,
                asids: vec![AsidState::Dirty; max_asid],
                guests: HashMap::new(),
                guest_count: 0,
                rng,
            }),
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
    pub fn command(&self, cmd: FwCmd, buf: Spa) -> FwResult {
        let mut st = self.state.lock();
        let r = self.dispatch(&mut st, cmd, buf);
        match &r {
            Ok(()) => tracing::debug!(?cmd, buf = %buf, "firmware command succeeded"),
            Err(s) => tracing::debug!(?cmd, buf = %buf, status = ?s, "firmware command failed"),
        }
        r
    }

    /// Write `data` as the command buffer at `buf`, run `cmd`, and read the buffer back
    /// into `data` (commands that return values in their buffer). A convenience for
    /// in-process callers and tests; the host passes buffers in memory it owns.
    pub fn call<T>(&self, cmd: FwCmd, buf: Spa, data: &mut T) -> FwResult
    where
        T: IntoBytes + FromBytes + Immutable + KnownLayout,
    {
        self.soc
            .fw_write(buf, KeySel::Plain, data.as_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        let r = self.command(cmd, buf);
        self.soc
            .fw_read(buf, KeySel::Plain, data.as_mut_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        r
    }

    fn dispatch(&self, st: &mut State, cmd: FwCmd, buf: Spa) -> FwResult {
        match cmd {
            FwCmd::SNP_INIT => self.snp_init(st, None),
            FwCmd::SNP_INIT_EX => {
                let b = self.read_cmd(buf)?;
                self.snp_init(st, Some(b))
            }
            FwCmd::SNP_SHUTDOWN => self.snp_shutdown(st, None),
            FwCmd::SNP_SHUTDOWN_EX => {
                let b = self.read_cmd(buf)?;
                self.snp_shutdown(st, Some(b))
            }
            FwCmd::SNP_PLATFORM_STATUS => self.snp_platform_status(st, self.read_cmd(buf)?),
            FwCmd::SNP_DF_FLUSH => self.snp_df_flush(st),
            FwCmd::SNP_CONFIG => self.snp_config(st, self.read_cmd(buf)?),
            FwCmd::SNP_COMMIT => self.snp_commit(st, self.read_cmd(buf)?),
            FwCmd::SNP_VLEK_LOAD => self.snp_vlek_load(st, self.read_cmd(buf)?),
            FwCmd::SNP_FEATURE_INFO => self.snp_feature_info(st, self.read_cmd(buf)?),
            FwCmd::SNP_GCTX_CREATE => self.snp_gctx_create(st, self.read_cmd(buf)?),
            FwCmd::SNP_DECOMMISSION => self.snp_decommission(st, self.read_cmd(buf)?),
            FwCmd::SNP_ACTIVATE => self.snp_activate(st, self.read_cmd(buf)?),
            FwCmd::SNP_ACTIVATE_EX => self.snp_activate_ex(st, self.read_cmd(buf)?),
            FwCmd::SNP_GUEST_STATUS => self.snp_guest_status(st, self.read_cmd(buf)?),
            FwCmd::SNP_LAUNCH_START => self.snp_launch_start(st, self.read_cmd(buf)?),
            FwCmd::SNP_LAUNCH_UPDATE => self.snp_launch_update(st, self.read_cmd(buf)?),
            FwCmd::SNP_LAUNCH_FINISH => self.snp_launch_finish(st, self.read_cmd(buf)?),
            FwCmd::SNP_DBG_DECRYPT => self.snp_dbg(st, self.read_cmd(buf)?, false),
            FwCmd::SNP_DBG_ENCRYPT => self.snp_dbg(st, self.read_cmd(buf)?, true),
            FwCmd::SNP_PAGE_RECLAIM => self.snp_page_reclaim(st, self.read_cmd(buf)?),
            FwCmd::SNP_PAGE_UNSMASH => self.snp_page_unsmash(st, self.read_cmd(buf)?),
            FwCmd::SNP_GUEST_REQUEST => self.snp_guest_request(st, self.read_cmd(buf)?),
            // Legacy SEV API, migration (swap, page move, metadata) and firmware
            // download by image are not modelled.
            _ => Err(FwStatus::INVALID_COMMAND),
        }
    }

    /// Read a command buffer of type `T` at `buf` (plaintext).
    pub(crate) fn read_cmd<T: FromBytes + IntoBytes + Immutable + KnownLayout>(
        &self,
        buf: Spa,
    ) -> FwResult<T> {
        let mut v = T::new_zeroed();
        self.soc
            .fw_read(buf, KeySel::Plain, v.as_mut_bytes())
            .map_err(|_| FwStatus::INVALID_ADDRESS)?;
        Ok(v)
    }

    /// Read `buf.len()` plaintext bytes at `spa`.
    pub(crate) fn read_plain(&self, spa: u64, buf: &mut [u8]) -> FwResult {
        self.soc
            .fw_read(Spa(spa), KeySel::Plain, buf)
            .map_err(soc_status)
    }

    /// Write plaintext bytes at `spa`.
    pub(crate) fn write_plain(&self, spa: u64, data: &[u8]) -> FwResult {
        self.soc
            .fw_write(Spa(spa), KeySel::Plain, data)
            .map_err(soc_status)
    }

    /// The RMP entry of the 4 KiB page holding `spa` and its firmware state
    /// (`rmp_get_addr_entry_state`): DEFAULT for memory the RMP does not cover,
    /// INVALID_ADDRESS beyond memory.
    pub(crate) fn page_state(&self, spa: u64) -> FwResult<(RmpEntry, PageState)> {
        if spa >= self.soc.mem_size() {
            return Err(FwStatus::INVALID_ADDRESS);
        }
        if !self.soc.rmp_covered(Spa(spa)) {
            return Ok((RmpEntry::default(), PageState::DEFAULT));
        }
        let e = self.soc.fw_rmp_read(Spa(spa)).map_err(soc_status)?;
        Ok((e, e.page_state()))
    }

    /// Rewrite the RMP entry of the page at `spa`.
    pub(crate) fn rmp_write(&self, spa: u64, e: RmpEntry) -> FwResult {
        self.soc.fw_rmp_write(Spa(spa), e).map_err(soc_status)
    }

    /// Check that the output area `[spa, spa + len)` stays in one page and that the
    /// page may receive firmware output (FIRMWARE, or any page while SNP is not
    /// initialised, or a page the RMP does not cover).
    pub(crate) fn check_output_page(&self, st: &State, spa: u64, len: usize) -> FwResult {
        if (spa & 0xFFF) as usize + len > 0x1000 {
            return Err(FwStatus::INVALID_PARAM);
        }
        if st.snp != PlatformState::Uninit {
            let (_, s) = self.page_state(spa)?;
            if s != PageState::FIRMWARE && s != PageState::DEFAULT {
                return Err(FwStatus::INVALID_PAGE_STATE);
            }
        }
        Ok(())
    }

    /// Common prologue: platform INIT and the context page in CONTEXT state; returns
    /// the page address.
    pub(crate) fn require_init(&self, st: &State) -> FwResult {
        if st.snp != PlatformState::Init {
            return Err(FwStatus::INVALID_PLATFORM_STATE);
        }
        Ok(())
    }

    /// The guest context at `gctx` (page in CONTEXT state, else INVALID_GUEST).
    pub(crate) fn context_mut<'a>(
        &self,
        st: &'a mut State,
        gctx: u64,
    ) -> FwResult<&'a mut GuestContext> {
        let (_, s) = self.page_state(gctx)?;
        if s != PageState::CONTEXT {
            return Err(FwStatus::INVALID_GUEST);
        }
        st.guests.get_mut(&gctx).ok_or(FwStatus::INVALID_GUEST)
    }

    /// Verify a CONTEXT page without borrowing the context.
    pub(crate) fn check_context(&self, st: &State, gctx: u64) -> FwResult {
        let (_, s) = self.page_state(gctx)?;
        if s != PageState::CONTEXT || !st.guests.contains_key(&gctx) {
            return Err(FwStatus::INVALID_GUEST);
        }
        Ok(())
    }

    // ---- observers (not firmware commands; for hosts, tools and tests) ----

    /// The SNP platform state.
    pub fn platform_state(&self) -> PlatformState {
        self.state.lock().snp
    }

    /// The firmware's state of `asid`, `None` if out of range.
    pub fn asid_state(&self, asid: u32) -> Option<AsidState> {
        let st = self.state.lock();
        st.asids.get(asid.checked_sub(1)? as usize).copied()
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
        self.state.lock().guests.get(&gctx.0).map(|g| g.ld.digest())
    }

    /// The guest state of the context at `gctx`, if it exists.
    pub fn guest_state(&self, gctx: Spa) -> Option<crate::guest::GuestState> {
        self.state.lock().guests.get(&gctx.0).map(|g| g.state)
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

/// Status for a SoC error on a firmware memory access.
pub(crate) fn soc_status(e: SocError) -> FwStatus {
    match e {
        SocError::Key(_) => FwStatus::INACTIVE,
        _ => FwStatus::INVALID_ADDRESS,
    }
}

/// True when the page-address operand has reserved bits 11:0 set.
pub(crate) fn misaligned(paddr: u64) -> bool {
    paddr & ADDR_RESERVED_MASK != 0
}
