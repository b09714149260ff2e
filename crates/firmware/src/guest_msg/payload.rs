//! The payload handlers of SNP_GUEST_REQUEST: MSG_REPORT_REQ, MSG_KEY_REQ and
//! MSG_TSC_INFO_REQ (shared/spec/snp-attestation.md §1.6–1.8, §2.6, §4). Each takes
//! the decrypted request payload and returns the response payload; a problem with the
//! request is a STATUS in the response, as in AMD's firmware. Only failures of the
//! model itself are errors.

use super::{GuestMsgEnv, GuestMsgError};
use crate::identity::{DerivedKeyRequest, GuestFieldSelect, KeyRoot, LaunchKey, derive_key};
use softsev_abi::ecdsa::be48_to_le72;
use softsev_abi::guest_msg::{
    CpuidReq, CpuidRsp, KeyReq, KeyRsp, KeySel, ReportReq, ReportRsp, TscInfoReq, TscInfoRsp,
};
use softsev_abi::report::{AttestationReport, KeyInfo, REPORT_SIZE, SignatureAlgo, SigningKey};
use softsev_abi::{FwStatus, Product, TcbVersion};
use softsev_crypto::ecdsa::P384SigningKey;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// The attestation report version the firmware emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportVersion {
    /// Version 3 (CPUID fields; Milan/Genoa TCB layout).
    V3,
    /// Version 5 (ABI 1.58: adds the mitigation vectors).
    V5,
}

impl ReportVersion {
    /// The VERSION word.
    pub fn number(self) -> u32 {
        match self {
            Self::V3 => 3,
            Self::V5 => 5,
        }
    }

    /// v3 for Milan and Genoa, v5 for Turin (the shape verifiers expect of each).
    pub fn default_for(product: Product) -> Self {
        match product {
            Product::Turin => Self::V5,
            _ => Self::V3,
        }
    }
}

/// Read a request structure from a payload, zero-extended or truncated to its size.
fn read_zero_extended<T: FromBytes + FromZeros + IntoBytes>(payload: &[u8]) -> T {
    let mut v = T::new_zeroed();
    let dst = v.as_mut_bytes();
    let n = dst.len().min(payload.len());
    dst[..n].copy_from_slice(&payload[..n]);
    v
}

/// The endorsement key a KEY_SEL picks, or INVALID_KEY (AMD firmware's rules):
/// 3 is reserved; VLEK-only needs a loaded VLEK; VCEK-only needs the VCEK enabled
/// for the guest; "VLEK else VCEK" needs one of them.
enum Endorser {
    Vcek,
    Vlek,
}

fn select_endorser(env: &GuestMsgEnv<'_>, sel: KeySel) -> Result<Endorser, FwStatus> {
    let vlek = env.chip.vlek().is_some();
    match sel {
        KeySel::VLEK_OR_VCEK if vlek => Ok(Endorser::Vlek),
        KeySel::VLEK_OR_VCEK if !env.launch.vcek_disabled => Ok(Endorser::Vcek),
        KeySel::VCEK_ONLY if !env.launch.vcek_disabled => Ok(Endorser::Vcek),
        KeySel::VLEK_ONLY if vlek => Ok(Endorser::Vlek),
        _ => Err(FwStatus::INVALID_KEY),
    }
}

fn model(what: &str, e: impl std::fmt::Display) -> GuestMsgError {
    GuestMsgError::Model(format!("{what}: {e}"))
}

/// Fill an attestation report from `env` for REPORT_DATA `report_data` at `vmpl`,
/// signed as KEY_SEL `sel` and the platform's MASK_CHIP_KEY decide. `Ok(Err(status))`
/// is a request the firmware refuses (INVALID_KEY); `Err` a model failure.
pub fn build_report(
    env: &GuestMsgEnv<'_>,
    report_data: &[u8; 64],
    vmpl: u32,
    sel: KeySel,
) -> Result<Result<AttestationReport, FwStatus>, GuestMsgError> {
    let endorser = match select_endorser(env, sel) {
        Ok(e) => e,
        Err(s) => return Ok(Err(s)),
    };
    let product = env.chip.product();
    let mut r = AttestationReport::new_zeroed();
    r.version = env.report_version.number();
    r.guest_svn = env.launch.guest_svn;
    r.policy = env.launch.policy;
    r.family_id = env.launch.family_id;
    r.image_id = env.launch.image_id;
    r.vmpl = vmpl;
    r.signature_algo = SignatureAlgo::ECDSA_P384_SHA384.0;
    r.platform_info = env.platform_info;
    r.report_data = *report_data;
    r.measurement = env.launch.measurement;
    r.host_data = env.launch.host_data;
    r.id_key_digest = env.launch.id_key_digest;
    r.author_key_digest = env.launch.author_key_digest;
    r.report_id = env.launch.report_id;
    r.report_id_ma = env.launch.report_id_ma;
    r.set_cpuid_for(product);
    if !env.mask_chip_id {
        r.chip_id = *env.chip.chip_id();
    }
    r.set_tcbs(
        product,
        &softsev_abi::report::ReportTcbs {
            current: env.current_tcb,
            reported: env.reported_tcb,
            committed: env.committed_tcb,
            launch: env.launch.launch_tcb,
        },
    )
    .map_err(|e| model("report TCB", e))?;
    r.set_current_version(env.current_version);
    r.set_committed_version(env.committed_version);
    if env.report_version == ReportVersion::V5 {
        r.launch_mit_vector = env.launch_mit_vector;
        r.current_mit_vector = env.current_mit_vector;
    }

    // Which key signs: the VLEK, the VCEK of REPORTED_TCB, or none when the VCEK is
    // masked (the report is still returned, SIGNING_KEY = NONE, signature zero).
    let signer: Option<(SigningKey, KeyHolder)> = match endorser {
        Endorser::Vlek => env
            .chip
            .vlek()
            .map(|v| (SigningKey::VLEK, KeyHolder::Vlek(v))),
        Endorser::Vcek if env.mask_chip_key => None,
        Endorser::Vcek => {
            let v = env
                .chip
                .vcek(&env.reported_tcb)
                .map_err(|e| model("VCEK of REPORTED_TCB", e))?;
            Some((SigningKey::VCEK, KeyHolder::Vcek(v)))
        }
    };
    let key_kind = signer.as_ref().map_or(SigningKey::NONE, |(k, _)| *k);
    r.key_info = KeyInfo::new(env.launch.author_key_en, env.mask_chip_key, key_kind);
    if let Some((_, holder)) = signer {
        let sig = holder
            .key()
            .sign_mode(r.signed_bytes(), env.deterministic_signatures)
            .map_err(|e| model("signing the report", e))?;
        r.signature.r = be48_to_le72(&sig.r);
        r.signature.s = be48_to_le72(&sig.s);
    }
    Ok(Ok(r))
}

enum KeyHolder {
    Vcek(std::sync::Arc<crate::identity::Vcek>),
    Vlek(std::sync::Arc<crate::identity::Vlek>),
}

impl KeyHolder {
    fn key(&self) -> &P384SigningKey {
        match self {
            Self::Vcek(v) => v.signing_key(),
            Self::Vlek(v) => v.signing_key(),
        }
    }
}

/// MSG_REPORT_REQ → MSG_REPORT_RSP. Checks, in AMD's order: reserved fields
/// (INVALID_PARAM), KEY_SEL (INVALID_KEY), VMPL ≥ MSG_VMPCK (INVALID_PARAM). REPORT_SIZE
/// is 0x4A0 even on error; the report is zero then.
pub fn handle_report_req(
    env: &GuestMsgEnv<'_>,
    payload: &[u8],
    msg_vmpck: u8,
) -> Result<ReportRsp, GuestMsgError> {
    let req: ReportReq = read_zero_extended(payload);
    let mut rsp = ReportRsp::new_zeroed();
    rsp.report_size = REPORT_SIZE as u32;
    let status = if req.reserved_nonzero() {
        FwStatus::INVALID_PARAM
    } else if let Err(s) = select_endorser(env, req.key_select()) {
        s
    } else if req.vmpl < u32::from(msg_vmpck) {
        FwStatus::INVALID_PARAM
    } else {
        match build_report(env, &req.report_data, req.vmpl, req.key_select())? {
            Ok(report) => {
                rsp.report = report;
                FwStatus::SUCCESS
            }
            Err(s) => s,
        }
    };
    rsp.status = status.0;
    Ok(rsp)
}

/// MSG_KEY_REQ → MSG_KEY_RSP. Checks, in AMD's order: reserved fields
/// (INVALID_PARAM); for the VCEK/VLEK root, MASK_CHIP_KEY and then KEY_SEL
/// (INVALID_KEY); VMPL ≥ MSG_VMPCK, GUEST_FIELD_SELECT bits known for the message
/// version, a selected TCB_VERSION well-formed and ≤ the committed TCB, a selected
/// GUEST_SVN ≤ the ID block's, a selected LAUNCH_MIT_VECTOR within the launch one
/// (all INVALID_PARAM). The key is zero unless STATUS is SUCCESS.
pub fn handle_key_req(
    env: &GuestMsgEnv<'_>,
    payload: &[u8],
    msg_version: u8,
    msg_vmpck: u8,
) -> Result<KeyRsp, GuestMsgError> {
    let mut req: KeyReq = read_zero_extended(payload);
    if msg_version < 2 {
        req.launch_mit_vector = 0;
    }
    let mut rsp = KeyRsp::new_zeroed();
    match key_request(env, &req, msg_version, msg_vmpck)? {
        Ok(key) => rsp.derived_key = *key,
        Err(s) => rsp.status = s.0,
    }
    Ok(rsp)
}

fn key_request(
    env: &GuestMsgEnv<'_>,
    req: &KeyReq,
    msg_version: u8,
    msg_vmpck: u8,
) -> Result<Result<zeroize::Zeroizing<[u8; 32]>, FwStatus>, GuestMsgError> {
    let product = env.chip.product();
    if req.key_select & KeyReq::RESERVED_MASK != 0 || req._reserved_04 != 0 {
        return Ok(Err(FwStatus::INVALID_PARAM));
    }
    let vmrk = req.root_is_vmrk();
    let endorser = if vmrk {
        None
    } else {
        if env.mask_chip_key {
            return Ok(Err(FwStatus::INVALID_KEY));
        }
        match select_endorser(env, req.key_sel()) {
            Ok(e) => Some(e),
            Err(s) => return Ok(Err(s)),
        }
    };
    if req.vmpl < u32::from(msg_vmpck) {
        return Ok(Err(FwStatus::INVALID_PARAM));
    }
    let allowed = if msg_version >= 2 {
        GuestFieldSelect::ALL
    } else {
        GuestFieldSelect::ALL & !GuestFieldSelect::LAUNCH_MIT_VECTOR
    };
    let gfs = GuestFieldSelect(req.guest_field_select);
    if gfs.0 & !allowed != 0 {
        return Ok(Err(FwStatus::INVALID_PARAM));
    }
    let mut tcb = TcbVersion::default();
    if gfs.0 & GuestFieldSelect::TCB_VERSION != 0 {
        match TcbVersion::decode(req.tcb_version, product) {
            Ok(t) if env.committed_tcb.dominates(&t) => tcb = t,
            _ => return Ok(Err(FwStatus::INVALID_PARAM)),
        }
    }
    if gfs.0 & GuestFieldSelect::GUEST_SVN != 0 && req.guest_svn > env.launch.guest_svn {
        return Ok(Err(FwStatus::INVALID_PARAM));
    }
    if gfs.0 & GuestFieldSelect::LAUNCH_MIT_VECTOR != 0
        && req.launch_mit_vector & !env.launch_mit_vector != 0
    {
        return Ok(Err(FwStatus::INVALID_PARAM));
    }
    let launch_key = if env.launch.author_key_en {
        LaunchKey::AuthorKey(env.launch.author_key_digest)
    } else if env.launch.id_block_en {
        LaunchKey::IdKey(env.launch.id_key_digest)
    } else {
        LaunchKey::None
    };
    let dkr = DerivedKeyRequest {
        guest_field_select: gfs,
        vmpl: req.vmpl,
        guest_svn: req.guest_svn,
        tcb,
        launch_mit_vector: req.launch_mit_vector,
        policy: env.launch.policy,
        image_id: env.launch.image_id,
        family_id: env.launch.family_id,
        measurement: env.launch.measurement,
        host_data: env.launch.host_data,
        launch_key,
    };
    let vlek = env.chip.vlek();
    let root = match (endorser, &vlek) {
        (None, _) => KeyRoot::Vmrk(env.vmrk),
        (Some(Endorser::Vlek), Some(v)) => KeyRoot::Vlek(v),
        (Some(Endorser::Vlek), None) => return Ok(Err(FwStatus::INVALID_KEY)),
        (Some(Endorser::Vcek), _) => KeyRoot::Vcek {
            chip: env.chip,
            platform_tcb: env.reported_tcb,
        },
    };
    let key = derive_key(&root, &dkr).map_err(|e| model("derived key", e))?;
    Ok(Ok(key))
}

/// The PSP reference clock AMD's firmware divides DESIRED_TSC_FREQ by, kHz
/// (100 MHz less the 0.2 % spread-spectrum average).
pub const TSC_REF_CLK_KHZ: u32 = 99_800;

/// GUEST_TSC_SCALE: `desired_khz / ref_khz` as an 8.32 fixed-point number (the TSC
/// ratio MSR format), the fraction rounded up, the integer part truncated to 8 bits.
pub fn calc_tsc_scale(desired_khz: u32, ref_khz: u32) -> u64 {
    if ref_khz == 0 {
        return 0;
    }
    let (d, r) = (u64::from(desired_khz), u64::from(ref_khz));
    let int = d / r;
    let rem = d - int * r;
    let frac = (rem << 32).div_ceil(r);
    ((int & 0xFF) << 32) | (frac & 0xFFFF_FFFF)
}

/// MSG_TSC_INFO_REQ → MSG_TSC_INFO_RSP: reserved bytes must be zero (INVALID_PARAM);
/// then GUEST_TSC_SCALE from DESIRED_TSC_FREQ, the guest's TSC offset and TSC_FACTOR.
pub fn handle_tsc_info_req(env: &GuestMsgEnv<'_>, payload: &[u8]) -> TscInfoRsp {
    let req: TscInfoReq = read_zero_extended(payload);
    let mut rsp = TscInfoRsp::new_zeroed();
    if req._reserved_00.iter().any(|&b| b != 0) {
        rsp.status = FwStatus::INVALID_PARAM.0;
        return rsp;
    }
    rsp.guest_tsc_scale = calc_tsc_scale(env.launch.desired_tsc_freq_khz, TSC_REF_CLK_KHZ);
    rsp.guest_tsc_offset = env.tsc_offset;
    rsp.tsc_factor = env.tsc_factor;
    rsp
}

/// MSG_CPUID_REQ → MSG_CPUID_RSP (AMD `sanitize_cpuid_list`): reserved fields or a
/// COUNT above 64 → INVALID_PARAM with COUNT 0 and no functions; otherwise the
/// functions are copied, each one in the standard or extended range is checked
/// against the platform's CPUID policy and corrected in place (a non-zero reserved
/// field, or any correction, makes STATUS INVALID_PARAM), and COUNT is the number of
/// functions in those ranges. The response is as long as the request (`msg_size`),
/// truncated or zero-extended.
pub fn handle_cpuid_req(env: &GuestMsgEnv<'_>, payload: &[u8], msg_size: usize) -> Vec<u8> {
    let req: CpuidReq = read_zero_extended(payload);
    let mut rsp = CpuidRsp::new_zeroed();
    let count = usize::try_from(req.count).unwrap_or(usize::MAX);
    let status = if req._reserved_04 != 0 || req._reserved_08 != 0 || count > req.functions.len() {
        FwStatus::INVALID_PARAM
    } else {
        let owned;
        let platform = match env.cpuid {
            Some(p) => p,
            None => {
                owned = crate::cpuid::PlatformCpuid::for_product(env.chip.product());
                &owned
            }
        };
        let mut ok = true;
        let mut checked = 0u32;
        for (dst, src) in rsp
            .functions
            .iter_mut()
            .zip(req.functions.iter())
            .take(count)
        {
            *dst = *src;
            if crate::cpuid::leaf_is_checked(dst.eax_in) {
                // AMD checks the reserved field and corrects the outputs independently.
                let reserved = dst.reserved;
                dst.reserved = 0;
                ok &= platform.check_function(dst).is_ok();
                dst.reserved = reserved;
                ok &= reserved == 0;
                checked += 1;
            }
        }
        rsp.count = checked;
        if ok {
            FwStatus::SUCCESS
        } else {
            FwStatus::INVALID_PARAM
        }
    };
    rsp.status = status.0;
    let mut out = rsp.as_bytes().to_vec();
    out.resize(msg_size, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_scale_fixed_point() {
        assert_eq!(calc_tsc_scale(99_800, 99_800), 1 << 32);
        assert_eq!(calc_tsc_scale(199_600, 99_800), 2 << 32);
        assert_eq!(calc_tsc_scale(49_900, 99_800), 1 << 31);
        // 2 GHz: 20.04008... → int 20, fraction rounded up.
        let s = calc_tsc_scale(2_000_000, 99_800);
        assert_eq!(s >> 32, 20);
        let frac = s & 0xFFFF_FFFF;
        let exact = (2_000_000f64 / 99_800f64).fract() * 2f64.powi(32);
        assert!((frac as f64 - exact).abs() <= 1.0, "{frac} vs {exact}");
        assert_eq!(calc_tsc_scale(1, 0), 0);
        // Integer part truncated to 8 bits.
        assert_eq!(calc_tsc_scale(99_800 * 257, 99_800) >> 32, 1);
    }

    #[test]
    fn zero_extension_and_truncation() {
        let r: KeyReq = read_zero_extended(&[0xFF; 4]);
        assert_eq!(r.key_select, u32::MAX);
        assert_eq!(r.guest_field_select, 0);
        let r: KeyReq = read_zero_extended(&[0x01; 0x40]);
        assert_eq!(r.launch_mit_vector, 0x0101_0101_0101_0101);
    }
}
