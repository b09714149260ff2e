//! The guest's side of the message channel, for tests, fuzzing and tools that drive
//! the firmware model directly: seal a request with a VMPCK and sequence number, open
//! and check a response the way Linux's sev-guest driver does (response MSG_SEQNO =
//! request + 1, MSG_TYPE = request + 1, same VMPCK, payload inside the page).
//! The framing is `softsev_crypto::guest_msg_aead`, shared with the firmware.

use softsev_abi::guest_msg::{HEADER_SIZE, MAX_PAYLOAD, MsgHeader, MsgType, PAGE_SIZE};
use softsev_crypto::guest_msg_aead;
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

/// Why the guest side could not build or accept a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestClientError {
    /// The payload does not fit a page after the header.
    #[error("payload of {0} bytes does not fit a page after the 0x60-byte header")]
    PayloadTooLarge(usize),
    /// The response is not a well-formed message.
    #[error("response malformed: {0}")]
    Malformed(&'static str),
    /// The response tag does not verify.
    #[error("response authentication tag does not verify")]
    Auth,
    /// The response does not answer the request that was sent.
    #[error("response {field} = {got} where {expected} was expected")]
    Mismatch {
        /// Which header field.
        field: &'static str,
        /// Value received.
        got: u64,
        /// Value expected.
        expected: u64,
    },
    /// The sequence numbers are exhausted.
    #[error("message sequence numbers exhausted")]
    SeqnoExhausted,
}

/// Seal a request: header (version 1, AES-256-GCM, the given type, version, VMPCK
/// index and MSG_SEQNO) followed by `payload` encrypted with `vmpck`. The result is
/// `0x60 + payload.len()` bytes; MSG_SIZE is `payload.len()` (pad the payload to a
/// multiple of 16 yourself: the firmware requires it).
pub fn seal_request(
    vmpck: &[u8; 32],
    vmpck_index: u8,
    seqno: u64,
    msg_type: MsgType,
    msg_version: u8,
    payload: &[u8],
) -> Result<Vec<u8>, GuestClientError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(GuestClientError::PayloadTooLarge(payload.len()));
    }
    let size = u16::try_from(payload.len())
        .map_err(|_| GuestClientError::PayloadTooLarge(payload.len()))?;
    let hdr = MsgHeader::new(msg_type, msg_version, size, vmpck_index, seqno);
    let mut msg = Vec::with_capacity(HEADER_SIZE + payload.len());
    msg.extend_from_slice(hdr.as_bytes());
    msg.extend_from_slice(payload);
    guest_msg_aead::seal(vmpck, &mut msg).map_err(|_| GuestClientError::Auth)?;
    Ok(msg)
}

/// A decrypted response.
pub struct OpenedResponse {
    /// The response header as received.
    pub header: MsgHeader,
    /// The decrypted payload (MSG_SIZE bytes).
    pub payload: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedResponse")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Open a response page with `vmpck`: the header must be version 1 / 0x60 bytes, the
/// payload must fit the page, and the tag must verify.
pub fn open_response(vmpck: &[u8; 32], page: &[u8]) -> Result<OpenedResponse, GuestClientError> {
    let page = page.get(..PAGE_SIZE).unwrap_or(page);
    let header = MsgHeader::read(page).ok_or(GuestClientError::Malformed("shorter than header"))?;
    if header.hdr_version != 1 || usize::from(header.hdr_size) != HEADER_SIZE || header.algo != 1 {
        return Err(GuestClientError::Malformed(
            "header version, size or algorithm",
        ));
    }
    let len = HEADER_SIZE + usize::from(header.msg_size);
    let msg = page
        .get(..len)
        .ok_or(GuestClientError::Malformed("MSG_SIZE runs past the page"))?;
    let mut buf = Zeroizing::new(msg.to_vec());
    guest_msg_aead::open(vmpck, &mut buf).map_err(|_| GuestClientError::Auth)?;
    let payload = Zeroizing::new(buf.get(HEADER_SIZE..).unwrap_or(&[]).to_vec());
    Ok(OpenedResponse { header, payload })
}

/// A guest's channel on one VMPCK, keeping the sequence number as Linux does (the
/// last number used; requests use +1, a good response moves it by 2).
pub struct GuestMsgClient {
    vmpck: Zeroizing<[u8; 32]>,
    index: u8,
    last_seqno: u64,
    pending: Option<(u64, MsgType, u8)>,
}

impl std::fmt::Debug for GuestMsgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMsgClient")
            .field("index", &self.index)
            .field("last_seqno", &self.last_seqno)
            .finish_non_exhaustive()
    }
}

impl GuestMsgClient {
    /// A channel on VMPCK `index` with key `vmpck`, nothing sent yet.
    pub fn new(vmpck: &[u8; 32], index: u8) -> Self {
        Self {
            vmpck: Zeroizing::new(*vmpck),
            index,
            last_seqno: 0,
            pending: None,
        }
    }

    /// The last sequence number used (0 before the first exchange).
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    /// Seal the next request (MSG_SEQNO = last + 1).
    pub fn request(
        &mut self,
        msg_type: MsgType,
        msg_version: u8,
        payload: &[u8],
    ) -> Result<Vec<u8>, GuestClientError> {
        let seqno = self
            .last_seqno
            .checked_add(1)
            .filter(|s| *s < u64::MAX)
            .ok_or(GuestClientError::SeqnoExhausted)?;
        let msg = seal_request(
            &self.vmpck,
            self.index,
            seqno,
            msg_type,
            msg_version,
            payload,
        )?;
        self.pending = Some((seqno, msg_type, msg_version));
        Ok(msg)
    }

    /// Open and check the response to the last request; on success the sequence
    /// number advances by 2 and the payload is returned.
    pub fn response(&mut self, page: &[u8]) -> Result<Zeroizing<Vec<u8>>, GuestClientError> {
        let (seqno, ty, version) = self
            .pending
            .ok_or(GuestClientError::Malformed("no request outstanding"))?;
        let r = open_response(&self.vmpck, page)?;
        let check = |field, got: u64, expected: u64| {
            if got == expected {
                Ok(())
            } else {
                Err(GuestClientError::Mismatch {
                    field,
                    got,
                    expected,
                })
            }
        };
        check("MSG_SEQNO", r.header.msg_seqno, seqno + 1)?;
        check(
            "MSG_TYPE",
            u64::from(r.header.msg_type),
            u64::from(ty.0) + 1,
        )?;
        check(
            "MSG_VERSION",
            u64::from(r.header.msg_version),
            u64::from(version),
        )?;
        check(
            "MSG_VMPCK",
            u64::from(r.header.msg_vmpck),
            u64::from(self.index),
        )?;
        self.last_seqno = seqno + 1;
        self.pending = None;
        Ok(r.payload)
    }
}
