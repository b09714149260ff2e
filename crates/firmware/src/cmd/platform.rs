//! Platform commands: SNP_INIT(_EX), SNP_SHUTDOWN(_EX), SNP_PLATFORM_STATUS,
//! SNP_DF_FLUSH, SNP_CONFIG, SNP_COMMIT, SNP_VLEK_LOAD, SNP_FEATURE_INFO (SNP ABI
//! §8.2–8.9; AMD SEV firmware `snp_mcmd_init`, `snp_mcmd_platform_status`, ...).

use crate::error::{CmdResult, ModelFault};
use crate::fw::Firmware;
use crate::state::{PlatformState, SevPlatformState, State};
use softsev_abi::fw_buf::{
    SnpCommit, SnpConfig, SnpFeatureInfo, SnpFeatureInfoCmd, SnpInitEx, SnpPlatformStatus,
    SnpPlatformStatusCmd, SnpShutdownEx, SnpVlekLoad, VlekWrapped,
};
use softsev_abi::{FwStatus, Product, TcbVersion};
use zerocopy::{FromBytes, IntoBytes};

/// FEATURE_INFO sub-function 0, EAX: highest sub-function supported.
pub const FEATURE_INFO_0_EAX: u32 = 1;
/// FEATURE_INFO sub-function 0, EBX: bit 0 = legacy SEV commands supported (not
/// modelled, so 0).
pub const FEATURE_INFO_0_EBX: u32 = 0;
/// FEATURE_INFO sub-function 0, ECX: bit 4 VLEK supported (the model's only feature
/// flag that applies; X86_SNP_SHUTDOWN is not modelled).
pub const FEATURE_INFO_0_ECX: u32 = 1 << 4;
/// FEATURE_INFO sub-function 1, EAX: mask of supported guest message types.
pub const FEATURE_INFO_1_EAX: u32 = (1 << 3) | (1 << 5) | (1 << 17);

impl Firmware {
    pub(crate) fn snp_init(&self, st: &mut State, ex: Option<SnpInitEx>) -> CmdResult {
        let mut init_rmp = true;
        if let Some(ex) = &ex
            && (ex.flags & !(SnpInitEx::INIT_RMP | SnpInitEx::LIST_PADDR_EN) != 0
                || ex.reserved != 0
                || ex.reserved2.iter().any(|&b| b != 0))
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        // With the legacy platform initialised SNP_INIT is refused: legacy INIT must
        // come after SNP_INIT (host-interfaces.md §4.3), so its ASIDs and TMR are set
        // up under the RMP.
        if st.snp != PlatformState::Uninit || st.sev.platform != SevPlatformState::Uninit {
            return Err(FwStatus::INVALID_PLATFORM_STATE.into());
        }
        if let Some(ex) = &ex {
            if ex.flags & SnpInitEx::INIT_RMP == 0 {
                if st.rmp_initialized {
                    init_rmp = false;
                } else {
                    return Err(FwStatus::RMP_INIT_REQUIRED.into());
                }
            }
            if ex.flags & SnpInitEx::LIST_PADDR_EN != 0 {
                // Range lists are not modelled: the whole RMP is initialised.
                if !init_rmp {
                    return Err(FwStatus::INVALID_PARAM.into());
                }
            }
        }
        if init_rmp {
            self.soc.fw_rmp_reset();
            st.rmp_initialized = true;
        }
        // Every ASID starts dirty; the host must WBINVD and DF_FLUSH before the first
        // activation.
        st.asids.mark_all_dirty();
        self.soc.clear_wbinvd_done();
        st.snp = PlatformState::Init;
        tracing::info!(init_rmp, "SNP platform initialised");
        Ok(())
    }

    pub(crate) fn snp_shutdown(&self, st: &mut State, ex: Option<SnpShutdownEx>) -> CmdResult {
        if st.snp == PlatformState::Uninit {
            return Ok(());
        }
        // Every ASID must be clean: guests decommissioned, WBINVD + DF_FLUSH done.
        if !st.asids.all_clean() {
            return Err(FwStatus::DFFLUSH_REQUIRED.into());
        }
        let mut iommu_shutdown = false;
        if let Some(ex) = &ex {
            if ex.length as usize != SnpShutdownEx::LEN {
                return Err(FwStatus::INVALID_PARAM.into());
            }
            if ex.flags & !(SnpShutdownEx::IOMMU_SNP_SHUTDOWN | SnpShutdownEx::X86_SNP_SHUTDOWN)
                != 0
            {
                return Err(FwStatus::INVALID_PARAM.into());
            }
            // X86_SNP_SHUTDOWN needs IOMMU_SNP_SHUTDOWN and SMU support; the model's
            // SMU has none.
            if ex.flags & SnpShutdownEx::X86_SNP_SHUTDOWN != 0 {
                return Err(FwStatus::INVALID_PARAM.into());
            }
            iommu_shutdown = ex.flags & SnpShutdownEx::IOMMU_SNP_SHUTDOWN != 0;
        }
        if iommu_shutdown {
            st.rmp_initialized = false;
        }
        st.guests.clear();
        st.guest_count = 0;
        st.snp = PlatformState::Uninit;
        self.chip.unload_vlek();
        tracing::info!(iommu_shutdown, "SNP platform shut down");
        Ok(())
    }

    pub(crate) fn snp_platform_status(
        &self,
        st: &mut State,
        cmd: SnpPlatformStatusCmd,
    ) -> CmdResult {
        self.check_output_page(st, cmd.status_paddr, SnpPlatformStatus::LEN)?;
        let product = self.chip.product();
        let mut flags = SnpPlatformStatus::FEATURE_INFO;
        if st.mask_chip_id {
            flags |= SnpPlatformStatus::MASK_CHIP_ID;
        }
        if st.mask_chip_key {
            flags |= SnpPlatformStatus::MASK_CHIP_KEY;
        }
        if self.chip.vlek().is_some() {
            flags |= SnpPlatformStatus::VLEK_EN;
        }
        // Byte 3 bit 1 ALIAS_CHECK_COMPLETE: the BadRAM alias check (CVE-2024-21944)
        // ran at SNP_INIT and found no aliasing addresses; firmware reports it from
        // Milan 1.55.22 and Genoa 1.55.38 (the `sev` crate's PlatformInit docs), and
        // every Turin release. softsev's memory never aliases, so the check passes
        // wherever the firmware performs it.
        let v = st.current.version;
        let alias_checked = st.rmp_initialized
            && match product {
                Product::Milan => (v.major, v.minor, v.build) >= (1, 55, 22),
                Product::Genoa => (v.major, v.minor, v.build) >= (1, 55, 38),
                Product::Turin => true,
            };
        let out = SnpPlatformStatus {
            api_major: st.current.version.major,
            api_minor: st.current.version.minor,
            state: st.snp as u8,
            is_rmp_init: u8::from(st.rmp_initialized)
                | (u8::from(alias_checked) << SnpPlatformStatus::ALIAS_CHECK_COMPLETE_BIT),
            build_id: u32::from(st.current.version.build),
            flags,
            guest_count: st.guest_count,
            current_tcb: encode_tcb(&st.current.tcb, product),
            reported_tcb: encode_tcb(&st.reported_tcb, product),
        };
        self.write_plain(cmd.status_paddr, out.as_bytes())
    }

    pub(crate) fn snp_df_flush(&self, st: &mut State) -> CmdResult {
        if !self.soc.wbinvd_done() {
            return Err(FwStatus::WBINVD_REQUIRED.into());
        }
        self.soc.df_flush().map_err(|_| FwStatus::WBINVD_REQUIRED)?;
        st.asids.flush();
        Ok(())
    }

    pub(crate) fn snp_config(&self, st: &mut State, cmd: SnpConfig) -> CmdResult {
        if cmd.flags & !(SnpConfig::MASK_CHIP_ID | SnpConfig::MASK_CHIP_KEY) != 0
            || cmd.reserved.iter().any(|&b| b != 0)
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let product = self.chip.product();
        let committed = st.committed.tcb;
        let requested = if cmd.reported_tcb == 0 {
            committed
        } else {
            let t = TcbVersion::decode(softsev_abi::RawTcb::from_u64(cmd.reported_tcb), product)
                .map_err(|_| FwStatus::INVALID_PARAM)?;
            if !committed.dominates(&t) {
                return Err(FwStatus::INVALID_PARAM.into());
            }
            t
        };
        // Derive (and cache) the VCEK the firmware will sign with.
        self.chip
            .vcek(&requested)
            .map_err(|e| ModelFault::Chip(format!("VCEK of TCB {requested}: {e}")))?;
        st.reported_tcb = requested;
        st.mask_chip_id = cmd.flags & SnpConfig::MASK_CHIP_ID != 0;
        st.mask_chip_key = cmd.flags & SnpConfig::MASK_CHIP_KEY != 0;
        Ok(())
    }

    pub(crate) fn snp_commit(&self, st: &mut State, cmd: SnpCommit) -> CmdResult {
        if cmd.length as usize != SnpCommit::LEN {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        st.committed = st.current;
        Ok(())
    }

    pub(crate) fn snp_vlek_load(&self, st: &mut State, cmd: SnpVlekLoad) -> CmdResult {
        if cmd.length as usize != SnpVlekLoad::LEN
            || cmd.vlek_wrapped_version != 0
            || cmd.reserved != [0; 3]
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let mut raw = [0u8; VlekWrapped::LEN];
        self.read_plain(cmd.vlek_wrapped_paddr, &mut raw)?;
        let blob = VlekWrapped::read_from_bytes(&raw).map_err(|_| FwStatus::INVALID_PARAM)?;
        let product = self.chip.product();
        if blob.tcb_version != encode_tcb(&st.reported_tcb, product) {
            return Err(FwStatus::BAD_SVN.into());
        }
        self.chip
            .load_vlek_blob(&blob, &st.reported_tcb)
            .map_err(|_| FwStatus::BAD_MEASUREMENT)?;
        Ok(())
    }

    pub(crate) fn snp_feature_info(&self, st: &mut State, cmd: SnpFeatureInfoCmd) -> CmdResult {
        if cmd.length as usize != SnpFeatureInfoCmd::LEN {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        let p = cmd.feature_info_paddr;
        if p & 3 != 0 || 0x1000 - (p & 0xFFF) < SnpFeatureInfo::LEN as u64 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        self.check_output_page(st, p, SnpFeatureInfo::LEN)?;
        let info = match cmd.ecx_in {
            0 => SnpFeatureInfo {
                eax: FEATURE_INFO_0_EAX,
                ebx: FEATURE_INFO_0_EBX,
                ecx: FEATURE_INFO_0_ECX,
                edx: 0,
            },
            1 => SnpFeatureInfo {
                eax: FEATURE_INFO_1_EAX,
                ebx: 0,
                ecx: 0,
                edx: 0,
            },
            _ => return Err(FwStatus::INVALID_PARAM.into()),
        };
        self.write_plain(p, info.as_bytes())
    }
}

/// The raw TCB_VERSION of `tcb` in `product`'s layout (0 if it cannot be encoded,
/// which the model never produces: its TCBs come from the product's own layout).
pub(crate) fn encode_tcb(tcb: &TcbVersion, product: softsev_abi::Product) -> u64 {
    tcb.encode(product).map(|r| r.to_u64()).unwrap_or(0)
}
