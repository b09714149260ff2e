//! A minimal host for driving the firmware model in tests: it owns SoC memory, writes
//! command buffers into a hypervisor page and moves pages between RMP states with
//! RMPUPDATE, as Linux's PSP driver and KVM do.

use softsev_abi::fw_buf::*;
use softsev_abi::rmp::RmpUpdateInput;
use softsev_abi::{FwCmd, FwStatus, Product, Spa};
use softsev_firmware::identity::Chip;
use softsev_firmware::{Firmware, FirmwareConfig, FwResult};
use softsev_soc::Soc;
use std::sync::{Arc, OnceLock};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Command buffer page (hypervisor-owned).
pub(crate) const CMD: u64 = 0x1000;
/// Scratch page for outputs (made a firmware page after INIT when needed).
pub(crate) const OUT: u64 = 0x2000;
/// Guest context page.
pub(crate) const GCTX: u64 = 0x10_0000;
/// A second context page.
pub(crate) const GCTX2: u64 = 0x10_1000;
/// First guest page (SPA); guest pages go upwards from here.
pub(crate) const GUEST_BASE: u64 = 0x40_0000;
/// The guest's ASID in tests.
pub(crate) const ASID: u32 = 1;

pub(crate) fn chip(product: Product) -> Arc<Chip> {
    static MILAN: OnceLock<Arc<Chip>> = OnceLock::new();
    static GENOA: OnceLock<Arc<Chip>> = OnceLock::new();
    static TURIN: OnceLock<Arc<Chip>> = OnceLock::new();
    let cell = match product {
        Product::Milan => &MILAN,
        Product::Genoa => &GENOA,
        Product::Turin => &TURIN,
    };
    cell.get_or_init(|| Arc::new(Chip::from_seed(product, b"fw-tests").unwrap()))
        .clone()
}

pub(crate) struct Host {
    pub soc: Arc<Soc>,
    pub fw: Arc<Firmware>,
}

impl Host {
    pub(crate) fn new() -> Host {
        Self::with(Product::Milan, |_| {})
    }

    /// A host whose chip is its own (tests that load a VLEK change the chip).
    pub(crate) fn with_own_chip(product: Product) -> Host {
        Self::build(
            product,
            Arc::new(Chip::from_seed(product, b"fw-tests own").unwrap()),
            |_| {},
        )
    }

    pub(crate) fn with(product: Product, f: impl FnOnce(&mut FirmwareConfig)) -> Host {
        Self::build(product, chip(product), f)
    }

    fn build(product: Product, chip: Arc<Chip>, f: impl FnOnce(&mut FirmwareConfig)) -> Host {
        Self::custom(product, chip, b"fw-tests", f)
    }

    /// A host on `chip` whose firmware RNG is seeded with `seed` (a second platform:
    /// its own OCA, PEK and PDH).
    pub(crate) fn custom(
        product: Product,
        chip: Arc<Chip>,
        seed: &[u8],
        f: impl FnOnce(&mut FirmwareConfig),
    ) -> Host {
        let fw = Firmware::builder(product)
            .seed(seed)
            .soc_bytes(64 << 20)
            .asid_count(16)
            .chip(chip)
            .configure(f)
            .build()
            .unwrap();
        Host {
            soc: fw.soc().clone(),
            fw,
        }
    }

    /// Issue `cmd` with `buf` written at [`CMD`]; returns the status and the buffer
    /// as the firmware left it.
    pub(crate) fn cmd<T: IntoBytes + FromBytes + Immutable + KnownLayout>(
        &self,
        cmd: FwCmd,
        buf: &T,
    ) -> FwResult {
        self.soc
            .host_write(Spa(CMD), false, buf.as_bytes())
            .unwrap();
        self.fw.command(cmd, Spa(CMD))
    }

    pub(crate) fn cmd0(&self, cmd: FwCmd) -> FwResult {
        self.fw.command(cmd, Spa(CMD))
    }

    pub(crate) fn rmpupdate(
        &self,
        spa: u64,
        assigned: bool,
        asid: u32,
        gpa: u64,
        immutable: bool,
        two_m: bool,
    ) {
        let st = self.soc.rmpupdate(
            Spa(spa),
            &RmpUpdateInput {
                gpa,
                assigned: u8::from(assigned),
                pagesize: u8::from(two_m),
                immutable: u8::from(immutable),
                asid,
                ..Default::default()
            },
        );
        assert!(st.is_success(), "RMPUPDATE {spa:#x}: {st:?}");
    }

    /// Make `spa` a firmware page (Linux `rmp_mark_pages_firmware`).
    pub(crate) fn fw_page(&self, spa: u64) {
        self.rmpupdate(spa, true, 0, 0, true, false);
    }

    /// Return a reclaimed page to the hypervisor.
    pub(crate) fn hv_page(&self, spa: u64) {
        self.rmpupdate(spa, false, 0, 0, false, false);
    }

    /// INIT, WBINVD, DF_FLUSH.
    pub(crate) fn init(&self) {
        self.cmd0(FwCmd::SNP_INIT).unwrap();
        self.soc.wbinvd();
        self.cmd0(FwCmd::SNP_DF_FLUSH).unwrap();
    }

    pub(crate) fn gctx_create(&self, gctx: u64) -> FwResult {
        self.cmd(FwCmd::SNP_GCTX_CREATE, &SnpPaddr { paddr: gctx })
    }

    pub(crate) fn launch_start(&self, gctx: u64, policy: u64) -> FwResult {
        self.cmd(
            FwCmd::SNP_LAUNCH_START,
            &SnpLaunchStart {
                gctx_paddr: gctx,
                policy,
                ma_gctx_paddr: 0,
                flags: 0,
                desired_tsc_freq: 0,
                gosvw: [0; 16],
            },
        )
    }

    pub(crate) fn activate(&self, gctx: u64, asid: u32) -> FwResult {
        self.cmd(
            FwCmd::SNP_ACTIVATE,
            &SnpActivate {
                gctx_paddr: gctx,
                asid,
                pad: 0,
            },
        )
    }

    /// Put `data` (one page) at `spa`, assign it to the guest at `gpa` (pre-guest) and
    /// run LAUNCH_UPDATE with `page_type`.
    pub(crate) fn load_page(
        &self,
        gctx: u64,
        spa: u64,
        gpa: u64,
        page_type: u8,
        data: &[u8],
    ) -> FwResult {
        self.soc.host_write(Spa(spa), false, data).unwrap();
        self.rmpupdate(spa, true, ASID, gpa, true, false);
        self.launch_update(gctx, spa, page_type, false)
    }

    pub(crate) fn launch_update(
        &self,
        gctx: u64,
        spa: u64,
        page_type: u8,
        two_m: bool,
    ) -> FwResult {
        self.cmd(
            FwCmd::SNP_LAUNCH_UPDATE,
            &SnpLaunchUpdate {
                gctx_paddr: gctx,
                page_flags: SnpLaunchUpdate::flags(two_m, page_type, false),
                reserved: 0,
                page_paddr: spa,
                vmpl_perms: 0,
                reserved2: 0,
            },
        )
    }

    pub(crate) fn launch_finish(&self, gctx: u64, flags: u64, host_data: [u8; 32]) -> FwResult {
        self.cmd(
            FwCmd::SNP_LAUNCH_FINISH,
            &SnpLaunchFinish {
                gctx_paddr: gctx,
                id_block_paddr: 0,
                id_auth_paddr: 0,
                flags,
                host_data,
            },
        )
    }

    /// INIT, flush, context, LAUNCH_START with `policy`, ACTIVATE with [`ASID`].
    pub(crate) fn started_guest(&self, policy: u64) {
        self.init();
        self.fw_page(GCTX);
        self.gctx_create(GCTX).unwrap();
        self.launch_start(GCTX, policy).unwrap();
        self.activate(GCTX, ASID).unwrap();
    }

    pub(crate) fn platform_status(&self) -> SnpPlatformStatus {
        self.cmd(FwCmd::SNP_PLATFORM_STATUS, &SnpPaddr { paddr: OUT })
            .unwrap();
        let mut raw = [0u8; SnpPlatformStatus::LEN];
        self.soc.host_read(Spa(OUT), false, &mut raw).unwrap();
        SnpPlatformStatus::read_from_bytes(&raw).unwrap()
    }
}

pub(crate) fn status(r: FwResult) -> FwStatus {
    match r {
        Ok(()) => FwStatus::SUCCESS,
        Err(s) => s,
    }
}
