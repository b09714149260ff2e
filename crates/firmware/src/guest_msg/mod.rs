//! SNP_GUEST_REQUEST: the firmware's guest-message handler (SNP ABI "Guest Messages";
//! shared/spec/snp-attestation.md §1.8, §2, §4; AMD firmware `snp_mcmd_guest_request`
//! is the authority for check order and statuses). docs/firmware-guest-msg.md has the
//! full picture.
//!
//! The command dispatcher checks the command itself (platform INIT, context page in
//! CONTEXT state, response page in FIRMWARE state, both 4 KiB, guest RUNNING), copies
//! the request out of guest memory, fills a [`GuestMsgEnv`] from the guest context and
//! the platform, and calls [`handle_guest_request`] with the guest's
//! [`GuestMsgState`]. That function then does what the firmware does:
//!
//! 1. header: HDR_VERSION 1, HDR_SIZE 0x60, ALGO AES-256-GCM, MSG_SIZE non-zero and a
//!    multiple of 16, header + payload inside the page, MSG_VMPCK 0..3 — else
//!    INVALID_PARAM;
//! 2. AES-256-GCM open with the selected VMPCK — a bad tag is BAD_MEASUREMENT;
//! 3. MSG_SEQNO must be the VMPCK's counter + 1, and the counter must not be
//!    2^64 − 2 — else AEAD_OFLOW;
//! 4. MSG_VERSION 1..=max for the type (KEY_REQ: 2, others: 1) — else INVALID_PARAM;
//! 5. dispatch on MSG_TYPE (REPORT_REQ, KEY_REQ, TSC_INFO_REQ, CPUID_REQ; an unknown
//!    type is INVALID_PARAM). Problems with the payload go into the response's STATUS
//!    word; the command still succeeds;
//! 6. the response must fit its page — else INVALID_PARAM;
//! 7. seal the response with the same VMPCK and MSG_SEQNO = request + 1, advance the
//!    counter by 2, and write header + payload to the response page.
//!
//! A command-level failure writes nothing and leaves the counter as it was.
//!
//! Request payloads shorter than their structure are read zero-extended and longer
//! ones truncated, as AMD's firmware reads them from a zeroed scratch buffer.

pub(crate) mod client;
mod payload;

pub use payload::{
    ReportVersion, TSC_REF_CLK_KHZ, build_report, calc_tsc_scale, handle_cpuid_req, handle_key_req,
    handle_report_req, handle_tsc_info_req,
};

use crate::guest_ctx::LaunchRecord;
use crate::identity::Chip;
use softsev_abi::guest_msg::{
    AeadAlgo, HDR_VERSION_1, HEADER_SIZE, MsgHeader, MsgType, PAGE_SIZE, VMPCK_COUNT,
};
use softsev_abi::report::{FirmwareVersion, PlatformInfo};
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{FwStatus, TcbVersion};
use softsev_crypto::aead::Aes256Gcm;
use softsev_crypto::guest_msg_aead;
use softsev_crypto::rng::Rng;
use std::borrow::Cow;
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

/// The per-guest state of the guest-message channel, as the guest context holds it:
/// VMPCK0..3 and one message counter per VMPCK.
///
/// Counters start at 0. A request must carry MSG_SEQNO = counter + 1; the response
/// carries counter + 2; a successful exchange advances the counter by 2 (so the guest
/// sends 1, 3, 5, … and the firmware answers 2, 4, 6, …). The keys are zeroized on
/// drop and never printed.
pub struct GuestMsgState {
    vmpck: Zeroizing<[[u8; 32]; 4]>,
    msg_count: [u64; 4],
}

impl std::fmt::Debug for GuestMsgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMsgState")
            .field("vmpck", &"<secret>")
            .field("msg_count", &self.msg_count)
            .finish()
    }
}

impl GuestMsgState {
    /// Fresh VMPCK0..3 from `rng` (the firmware's TRNG at LAUNCH_START), counters 0.
    pub fn new(rng: &mut Rng) -> Self {
        let mut keys = Zeroizing::new([[0u8; 32]; 4]);
        for k in keys.iter_mut() {
            rng.fill(k);
        }
        Self {
            vmpck: keys,
            msg_count: [0; 4],
        }
    }

    /// State with the given keys and counters 0 (e.g. keys the context already holds).
    pub fn from_keys(keys: &[[u8; 32]; 4]) -> Self {
        Self {
            vmpck: Zeroizing::new(*keys),
            msg_count: [0; 4],
        }
    }

    /// VMPCK `n` (0..=3).
    pub fn vmpck(&self, n: u8) -> Option<&[u8; 32]> {
        self.vmpck.get(usize::from(n))
    }

    /// The message counter of VMPCK `n` (0..=3).
    pub fn msg_count(&self, n: u8) -> Option<u64> {
        self.msg_count.get(usize::from(n)).copied()
    }

    /// All four counters (what SNP migration exports in the guest context).
    pub fn msg_counts(&self) -> [u64; 4] {
        self.msg_count
    }

    /// Set the four counters (what SNP migration imports).
    pub fn set_msg_counts(&mut self, counts: [u64; 4]) {
        self.msg_count = counts;
    }

    /// Copy VMPCK0..3 into a secrets page (LAUNCH_UPDATE of a SECRETS page).
    pub fn write_secrets(&self, page: &mut SecretsPage) {
        page.vmpck = *self.vmpck;
    }
}

/// Everything a report and a derived key take from the guest context and the
/// platform, borrowed for one request: the guest's [`LaunchRecord`] (borrowed from its
/// context by the dispatcher; owned by fixtures that vary it) and VMRK, and the
/// platform's TCBs, versions and flags, which the dispatcher fills in. Each field names
/// its source (shared/spec/snp-attestation.md §1.8).
#[derive(Clone)]
pub struct GuestMsgEnv<'a> {
    /// The chip: CHIP_ID, the VCEK of REPORTED_TCB (cached per TCB), the loaded VLEK and
    /// the key-derivation roots.
    pub chip: &'a Chip,
    /// Which report version to emit.
    pub report_version: ReportVersion,
    /// Sign reports with RFC 6979 (deterministic, slower) instead of a random nonce.
    pub deterministic_signatures: bool,

    /// What the guest's launch established (policy, ID-block fields and digests, host
    /// data, report ids, VCEK_DIS, LAUNCH_TCB, measurement, desired TSC frequency).
    pub launch: Cow<'a, LaunchRecord>,
    /// The guest's VM root key (ROOT_KEY_SELECT = 1 of MSG_KEY_REQ).
    pub vmrk: &'a [u8; 32],
    /// LAUNCH_MIT_VECTOR (ABI 1.58): mitigations in force at launch.
    pub launch_mit_vector: u64,
    /// The guest's TSC offset as the firmware tracks it (0 unless migrated).
    pub tsc_offset: u64,

    /// CURRENT_TCB: the running firmware and microcode.
    pub current_tcb: TcbVersion,
    /// REPORTED_TCB: SNP_CONFIG's value, else the committed TCB. Its VCEK signs.
    pub reported_tcb: TcbVersion,
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// Running firmware version.
    pub current_version: FirmwareVersion,
    /// Committed firmware version.
    pub committed_version: FirmwareVersion,
    /// SNP_CONFIG MASK_CHIP_ID: CHIP_ID reads as zero.
    pub mask_chip_id: bool,
    /// SNP_CONFIG MASK_CHIP_KEY: the VCEK neither signs nor roots derived keys.
    pub mask_chip_key: bool,
    /// PLATFORM_INFO bits (SMT_EN, TSME_EN, ECC_EN, RAPL_DIS, CIPHERTEXT_HIDING_EN,
    /// ALIAS_CHECK_COMPLETE, TIO_EN).
    pub platform_info: PlatformInfo,
    /// CURRENT_MIT_VECTOR (ABI 1.58).
    pub current_mit_vector: u64,
    /// TSC_FACTOR the platform reports (also in the secrets page).
    pub tsc_factor: u32,
    /// The platform's CPUID policy for MSG_CPUID_REQ (`None`: the product's default,
    /// [`crate::cpuid::PlatformCpuid::for_product`]).
    pub cpuid: Option<&'a crate::cpuid::PlatformCpuid>,
}

impl std::fmt::Debug for GuestMsgEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMsgEnv")
            .field("chip", self.chip)
            .field("report_version", &self.report_version)
            .field("policy", &format_args!("{:#x}", self.launch.policy))
            .field("reported_tcb", &self.reported_tcb)
            .field("vmrk", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl<'a> GuestMsgEnv<'a> {
    /// An environment for a freshly launched guest on `chip` ([`LaunchRecord::default`]:
    /// no ID block, policy 0x30000), zero TCBs, version 1.55.0, no masking, the
    /// product's default report version. Callers overwrite what they know.
    pub fn new(chip: &'a Chip, vmrk: &'a [u8; 32]) -> Self {
        Self::with_record(chip, vmrk, Cow::Owned(LaunchRecord::default()))
    }

    /// Like [`GuestMsgEnv::new`], for the guest whose launch is `record`.
    pub fn for_launch(chip: &'a Chip, vmrk: &'a [u8; 32], record: &'a LaunchRecord) -> Self {
        Self::with_record(chip, vmrk, Cow::Borrowed(record))
    }

    fn with_record(chip: &'a Chip, vmrk: &'a [u8; 32], launch: Cow<'a, LaunchRecord>) -> Self {
        let version = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 0,
        };
        Self {
            chip,
            report_version: ReportVersion::default_for(chip.product()),
            deterministic_signatures: false,
            launch,
            vmrk,
            launch_mit_vector: 0,
            tsc_offset: 0,
            current_tcb: TcbVersion::default(),
            reported_tcb: TcbVersion::default(),
            committed_tcb: TcbVersion::default(),
            current_version: version,
            committed_version: version,
            mask_chip_id: false,
            mask_chip_key: false,
            platform_info: PlatformInfo(0),
            current_mit_vector: 0,
            tsc_factor: crate::TSC_FACTOR,
            cpuid: None,
        }
    }

    /// The launch record, to change for a fixture (copied first if borrowed).
    pub fn launch_mut(&mut self) -> &mut LaunchRecord {
        self.launch.to_mut()
    }
}

/// Why SNP_GUEST_REQUEST failed as a command (nothing written, counter unchanged).
/// [`GuestMsgError::status`] is the status the firmware returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestMsgError {
    /// The request page is too short to hold the header where it starts.
    #[error("request: {got} bytes before the page end, the header needs 0x60")]
    RequestTooShort {
        /// Bytes from the request address to the end of its page.
        got: usize,
    },
    /// A header field has a value the firmware rejects.
    #[error("request header {field} = {value:#x} is not accepted")]
    BadHeader {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Header + payload would cross the request's page.
    #[error("request MSG_SIZE {msg_size:#x} runs past the page ({room:#x} bytes after the header)")]
    RequestPastPage {
        /// MSG_SIZE.
        msg_size: u16,
        /// Payload room left in the page.
        room: usize,
    },
    /// The AES-256-GCM tag did not verify with the selected VMPCK.
    #[error("request with VMPCK{vmpck}, MSG_SEQNO {seqno}: authentication tag does not verify")]
    Auth {
        /// MSG_VMPCK.
        vmpck: u8,
        /// MSG_SEQNO.
        seqno: u64,
    },
    /// MSG_SEQNO is not the VMPCK's counter + 1 (replay, skip or reuse).
    #[error("VMPCK{vmpck}: MSG_SEQNO {got} where {expected} was expected")]
    SeqNo {
        /// MSG_VMPCK.
        vmpck: u8,
        /// MSG_SEQNO received.
        got: u64,
        /// counter + 1.
        expected: u64,
    },
    /// The VMPCK's counter is exhausted (2^64 − 2).
    #[error("VMPCK{vmpck}: message counter exhausted")]
    CounterExhausted {
        /// MSG_VMPCK.
        vmpck: u8,
    },
    /// MSG_VERSION 0 or above what the firmware supports for the type.
    #[error("{msg_type:?}: MSG_VERSION {version} not supported")]
    BadMsgVersion {
        /// MSG_TYPE.
        msg_type: MsgType,
        /// MSG_VERSION.
        version: u8,
    },
    /// MSG_TYPE is not a request type.
    #[error("MSG_TYPE {0:?} is not a request the firmware handles")]
    UnknownType(MsgType),
    /// A request type the ABI defines but this model does not implement (the
    /// migration-agent messages).
    #[error("{0:?} is not implemented by the softsev firmware model")]
    Unsupported(MsgType),
    /// The response would run past the response page.
    #[error("response of {len:#x} bytes does not fit the {room:#x} bytes left in its page")]
    ResponsePastPage {
        /// Header + payload length.
        len: usize,
        /// Bytes from the response address to the end of its page.
        room: usize,
    },
    /// The model itself failed (key derivation or signing for a TCB the chip cannot
    /// have, a crypto backend error). Not a status real firmware returns.
    #[error("firmware model failure: {0}")]
    Model(String),
}

impl GuestMsgError {
    /// The SNP_GUEST_REQUEST status for this failure; `None` for [`Self::Model`].
    pub fn status(&self) -> Option<FwStatus> {
        Some(match self {
            Self::RequestTooShort { .. }
            | Self::BadHeader { .. }
            | Self::RequestPastPage { .. }
            | Self::BadMsgVersion { .. }
            | Self::UnknownType(_)
            | Self::ResponsePastPage { .. } => FwStatus::INVALID_PARAM,
            Self::Auth { .. } => FwStatus::BAD_MEASUREMENT,
            Self::SeqNo { .. } | Self::CounterExhausted { .. } => FwStatus::AEAD_OFLOW,
            Self::Unsupported(_) => FwStatus::UNSUPPORTED,
            Self::Model(_) => return None,
        })
    }
}

/// The outcome of a successful SNP_GUEST_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMsgReply {
    /// Bytes written at the start of the response page (header + payload).
    pub response_len: usize,
    /// MSG_TYPE of the response.
    pub msg_type: MsgType,
    /// The STATUS word inside the (encrypted) response payload.
    pub payload_status: FwStatus,
}

/// Highest MSG_VERSION the firmware accepts for a request type (ABI 1.58: KEY_REQ 2).
pub fn max_msg_version(t: MsgType) -> u8 {
    match t {
        MsgType::KEY_REQ => 2,
        _ => 1,
    }
}

fn bad(field: &'static str, value: impl Into<u64>) -> GuestMsgError {
    GuestMsgError::BadHeader {
        field,
        value: value.into(),
    }
}

/// Handle one SNP_GUEST_REQUEST message.
///
/// `request` holds the bytes from the request address to the end of its 4 KiB page
/// (a copy: the firmware never reads guest-shared memory twice); `response` the bytes
/// from the response address to the end of its page. On success the first
/// [`GuestMsgReply::response_len`] bytes of `response` hold the sealed response and
/// the VMPCK's counter has advanced by 2; the rest of `response` is untouched. On
/// failure `response` and `state` are untouched.
pub fn handle_guest_request(
    state: &mut GuestMsgState,
    env: &GuestMsgEnv<'_>,
    request: &[u8],
    response: &mut [u8],
) -> Result<GuestMsgReply, GuestMsgError> {
    let request = request.get(..PAGE_SIZE).unwrap_or(request);
    let hdr =
        MsgHeader::read(request).ok_or(GuestMsgError::RequestTooShort { got: request.len() })?;
    if hdr.hdr_version != HDR_VERSION_1 {
        return Err(bad("HDR_VERSION", hdr.hdr_version));
    }
    if usize::from(hdr.hdr_size) != HEADER_SIZE {
        return Err(bad("HDR_SIZE", hdr.hdr_size));
    }
    if hdr.aead_algo() != AeadAlgo::AES_256_GCM {
        return Err(bad("ALGO", hdr.algo));
    }
    if hdr.msg_size == 0 || hdr.msg_size % 16 != 0 {
        return Err(bad("MSG_SIZE", hdr.msg_size));
    }
    let room = request.len() - HEADER_SIZE;
    let msg_len = HEADER_SIZE + usize::from(hdr.msg_size);
    let Some(sealed) = request.get(..msg_len) else {
        return Err(GuestMsgError::RequestPastPage {
            msg_size: hdr.msg_size,
            room,
        });
    };
    if hdr.msg_vmpck >= VMPCK_COUNT {
        return Err(bad("MSG_VMPCK", hdr.msg_vmpck));
    }
    let idx = usize::from(hdr.msg_vmpck);
    let (Some(key), Some(&count)) = (state.vmpck.get(idx), state.msg_count.get(idx)) else {
        return Err(bad("MSG_VMPCK", hdr.msg_vmpck));
    };
    let cipher = Aes256Gcm::new(key);

    // Decrypt a private copy.
    let mut plain = Zeroizing::new(sealed.to_vec());
    guest_msg_aead::open_with(&cipher, &mut plain).map_err(|_| GuestMsgError::Auth {
        vmpck: hdr.msg_vmpck,
        seqno: hdr.msg_seqno,
    })?;

    // Sequence number: exactly counter + 1, and room for the response's number.
    if count >= u64::MAX - 1 {
        return Err(GuestMsgError::CounterExhausted {
            vmpck: hdr.msg_vmpck,
        });
    }
    if hdr.msg_seqno != count + 1 {
        return Err(GuestMsgError::SeqNo {
            vmpck: hdr.msg_vmpck,
            got: hdr.msg_seqno,
            expected: count + 1,
        });
    }

    let msg_type = hdr.message_type();
    if hdr.msg_version == 0 || hdr.msg_version > max_msg_version(msg_type) {
        return Err(GuestMsgError::BadMsgVersion {
            msg_type,
            version: hdr.msg_version,
        });
    }
    let payload = plain.get(HEADER_SIZE..).unwrap_or(&[]);

    // Dispatch: payload problems become the response STATUS.
    let (rsp_type, rsp_version, rsp_payload, payload_status): (
        MsgType,
        u8,
        Zeroizing<Vec<u8>>,
        FwStatus,
    ) = match msg_type {
        MsgType::REPORT_REQ => {
            let rsp = handle_report_req(env, payload, hdr.msg_vmpck)?;
            let st = FwStatus(rsp.status);
            (
                MsgType::REPORT_RSP,
                1,
                Zeroizing::new(rsp.as_bytes().to_vec()),
                st,
            )
        }
        MsgType::KEY_REQ => {
            let rsp = handle_key_req(env, payload, hdr.msg_version, hdr.msg_vmpck)?;
            let st = FwStatus(rsp.status);
            (
                MsgType::KEY_RSP,
                hdr.msg_version,
                Zeroizing::new(rsp.as_bytes().to_vec()),
                st,
            )
        }
        MsgType::TSC_INFO_REQ => {
            let rsp = handle_tsc_info_req(env, payload);
            let st = FwStatus(rsp.status);
            (
                MsgType::TSC_INFO_RSP,
                1,
                Zeroizing::new(rsp.as_bytes().to_vec()),
                st,
            )
        }
        MsgType::CPUID_REQ => {
            let body = handle_cpuid_req(env, payload, usize::from(hdr.msg_size));
            let st = body
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map_or(FwStatus::SUCCESS, |b| FwStatus(u32::from_le_bytes(b)));
            (MsgType::CPUID_RSP, 1, Zeroizing::new(body), st)
        }
        MsgType::EXPORT_REQ
        | MsgType::IMPORT_REQ
        | MsgType::ABSORB_REQ
        | MsgType::VMRK_REQ
        | MsgType::ABSORB_NOMA_REQ => return Err(GuestMsgError::Unsupported(msg_type)),
        other => return Err(GuestMsgError::UnknownType(other)),
    };

    let rsp_len = HEADER_SIZE + rsp_payload.len();
    let room = response.len().min(PAGE_SIZE);
    if rsp_len > room {
        return Err(GuestMsgError::ResponsePastPage { len: rsp_len, room });
    }
    let msg_size = u16::try_from(rsp_payload.len())
        .map_err(|_| GuestMsgError::Model("response payload over 64 KiB".into()))?;
    let rsp_hdr = MsgHeader::new(
        rsp_type,
        rsp_version,
        msg_size,
        hdr.msg_vmpck,
        hdr.msg_seqno + 1,
    );
    let mut out = Zeroizing::new(Vec::with_capacity(rsp_len));
    out.extend_from_slice(rsp_hdr.as_bytes());
    out.extend_from_slice(&rsp_payload);
    guest_msg_aead::seal_with(&cipher, &mut out)
        .map_err(|e| GuestMsgError::Model(format!("sealing the response: {e}")))?;
    let dst = response
        .get_mut(..rsp_len)
        .ok_or(GuestMsgError::ResponsePastPage { len: rsp_len, room })?;
    dst.copy_from_slice(&out);
    if let Some(c) = state.msg_count.get_mut(idx) {
        *c = count + 2;
    }
    Ok(GuestMsgReply {
        response_len: rsp_len,
        msg_type: rsp_type,
        payload_status,
    })
}
