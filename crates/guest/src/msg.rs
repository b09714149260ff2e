//! The guest-message client (SNP ABI "Guest Messages"; snp-attestation.md §2–3; the
//! behaviour of Linux `drivers/virt/coco/sev-guest` and `arch/x86/coco/sev`):
//!
//! * requests are sealed with a VMPCK (AES-256-GCM, IV = MSG_SEQNO, AAD = header
//!   0x30..0x60) in private memory, then copied to a shared request page;
//! * the sequence number is kept per VMPCK — by default in the secrets page's guest-OS
//!   area (`msg_seqno_lo`, a u32, as Linux does), or in memory. A request uses
//!   last + 1, the firmware answers with request + 1, and the stored value advances by
//!   2 after every exchange that reached the hypervisor;
//! * the response is copied out of the shared page, then checked: sequence number =
//!   request + 1, type = request type + 1, same message version, size within the page,
//!   the same VMPCK, then authenticated and decrypted;
//! * any failure other than "certificate buffer too small" disables the VMPCK: the
//!   key is wiped (in memory and in the secrets page) so no IV is ever reused;
//! * an extended request whose certificate buffer is too small is re-issued as a plain
//!   request with the same message (so the sequence number still advances), and the
//!   caller retries with the number of pages the host asked for.

use crate::error::{GuestError, access_fault};
use crate::ghcb::{CertBuf, GhcbClient};
use crate::platform::{CBit, GuestPlatform};
use softsev_abi::ghcb::{CertTableEntry, CertTableError, CertTableHeader};
use softsev_abi::guest_msg::{
    HEADER_SIZE, KEY_REQ_V1_SIZE, KeyReq, KeyRsp, KeySel, MAX_PAYLOAD, MsgHeader, MsgType,
    ReportReq, ReportRsp,
};
use softsev_abi::report::AttestationReport;
use softsev_abi::secrets::{SecretsPage, VMPCK_LEN, VMPCK_OFFSET};
use softsev_abi::tcb::RawTcb;
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_4K};
use softsev_crypto::guest_msg_aead;
use zerocopy::{FromBytes, IntoBytes};
use zeroize::{Zeroize, Zeroizing};

/// Offset of the guest-OS area's `msg_seqno_lo[0]` in the secrets page.
pub const OS_AREA_SEQNO_LO_OFFSET: u64 = 0xA0;
/// Size of the attestation report carried in MSG_REPORT_RSP.
pub const REPORT_SIZE: usize = core::mem::size_of::<AttestationReport>();
/// Largest certificate buffer the guest will offer, in pages (Linux's
/// `SEV_FW_BLOB_MAX_SIZE` is 0x4000 = 4 pages; the host may ask for more, up to this).
pub const MAX_CERT_PAGES: u32 = 64;

/// Where the message sequence number of a VMPCK is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqnoStore {
    /// The secrets page's guest-OS area at this GPA (`msg_seqno_lo[vmpck]`, u32; the
    /// counter stops below `u32::MAX`, as in Linux).
    SecretsPage(Gpa),
    /// A 64-bit counter held by the client.
    Memory,
}

/// MSG_REPORT_REQ parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    /// REPORT_DATA (the caller's nonce).
    pub report_data: [u8; 64],
    /// VMPL the report is for.
    pub vmpl: u32,
    /// Which endorsement key signs the report.
    pub key_sel: KeySel,
}

/// MSG_KEY_REQ (version 1) parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// ROOT_KEY_SELECT: derive from the VM root key instead of the VCEK/VLEK.
    pub root_vmrk: bool,
    /// KEY_SEL.
    pub key_sel: KeySel,
    /// GUEST_FIELD_SELECT bits (0 policy, 1 image ID, 2 family ID, 3 measurement,
    /// 4 guest SVN, 5 TCB version).
    pub guest_field_select: u64,
    /// VMPL mixed in.
    pub vmpl: u32,
    /// GUEST_SVN mixed in when selected.
    pub guest_svn: u32,
    /// TCB_VERSION mixed in when selected.
    pub tcb_version: u64,
}

impl Default for KeyRequest {
    fn default() -> Self {
        KeyRequest {
            root_vmrk: false,
            key_sel: KeySel::VLEK_OR_VCEK,
            guest_field_select: 1 << 3,
            vmpl: 0,
            guest_svn: 0,
            tcb_version: 0,
        }
    }
}

/// An extended report: the report and the certificate table the host supplied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtReport {
    /// The 0x4A0-byte attestation report.
    pub report: Vec<u8>,
    /// The certificate table trimmed to its last blob (empty table: 24 zero bytes).
    pub certs: Vec<u8>,
    /// The parsed entries.
    pub entries: Vec<CertTableEntry>,
    /// Pages of certificate buffer used by the successful request.
    pub cert_pages: u32,
    /// How many times the buffer was too small.
    pub too_small_retries: u32,
}

/// Guest-message state for one VMPCK.
pub struct MsgClient {
    vmpck_id: u8,
    key: Zeroizing<[u8; 32]>,
    disabled: bool,
    store: SeqnoStore,
    mem_last: u64,
    secrets_gpa: Option<Gpa>,
    req_page: Gpa,
    resp_page: Gpa,
    /// Round trips that reached the hypervisor.
    pub exchanges: u64,
}

impl core::fmt::Debug for MsgClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MsgClient")
            .field("vmpck_id", &self.vmpck_id)
            .field("key", &"<secret>")
            .field("disabled", &self.disabled)
            .field("store", &self.store)
            .field("req_page", &self.req_page)
            .field("resp_page", &self.resp_page)
            .finish_non_exhaustive()
    }
}

fn ensure_page(gpa: Gpa, what: &str) -> Result<(), GuestError> {
    if gpa.is_aligned(PAGE_SIZE_4K) {
        Ok(())
    } else {
        Err(GuestError::Config(format!(
            "{what} page {gpa} is not page aligned"
        )))
    }
}

impl MsgClient {
    /// A client for VMPCK `vmpck_id` taken from the secrets page at `secrets_gpa`,
    /// using the shared `req_page` / `resp_page`. The key must not be all zero.
    pub fn from_secrets(
        secrets: &SecretsPage,
        secrets_gpa: Gpa,
        vmpck_id: u8,
        store: SeqnoStore,
        req_page: Gpa,
        resp_page: Gpa,
    ) -> Result<Self, GuestError> {
        let key = secrets
            .vmpck(usize::from(vmpck_id))
            .ok_or(GuestError::VmpckAbsent { vmpck: vmpck_id })?;
        let mut c = Self::new(vmpck_id, key, store, req_page, resp_page)?;
        c.secrets_gpa = Some(secrets_gpa);
        Ok(c)
    }

    /// A client with an explicit key.
    pub fn new(
        vmpck_id: u8,
        key: &[u8; VMPCK_LEN],
        store: SeqnoStore,
        req_page: Gpa,
        resp_page: Gpa,
    ) -> Result<Self, GuestError> {
        if key.iter().all(|&b| b == 0) || vmpck_id >= 4 {
            return Err(GuestError::VmpckAbsent { vmpck: vmpck_id });
        }
        ensure_page(req_page, "request")?;
        ensure_page(resp_page, "response")?;
        if req_page == resp_page {
            return Err(GuestError::Config(
                "request and response pages must differ".into(),
            ));
        }
        Ok(MsgClient {
            vmpck_id,
            key: Zeroizing::new(*key),
            disabled: false,
            store,
            mem_last: 0,
            secrets_gpa: None,
            req_page,
            resp_page,
            exchanges: 0,
        })
    }

    /// The VMPCK index.
    pub fn vmpck_id(&self) -> u8 {
        self.vmpck_id
    }

    /// Whether the VMPCK was disabled by a failure.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    fn seqno_gpa(&self, secrets: Gpa) -> Gpa {
        Gpa(secrets.0 + OS_AREA_SEQNO_LO_OFFSET + 4 * u64::from(self.vmpck_id))
    }

    /// The last sequence number used with this VMPCK.
    pub fn last_seqno<P: GuestPlatform + ?Sized>(&self, p: &mut P) -> Result<u64, GuestError> {
        match self.store {
            SeqnoStore::Memory => Ok(self.mem_last),
            SeqnoStore::SecretsPage(s) => {
                let at = self.seqno_gpa(s);
                let mut b = [0u8; 4];
                p.read(at, CBit::Private, &mut b)
                    .map_err(|f| access_fault("secrets page sequence number read", at, f))?;
                Ok(u64::from(u32::from_le_bytes(b)))
            }
        }
    }

    fn next_seqno<P: GuestPlatform + ?Sized>(&self, p: &mut P) -> Result<u64, GuestError> {
        let last = self.last_seqno(p)?;
        let limit = match self.store {
            SeqnoStore::SecretsPage(_) => u64::from(u32::MAX),
            SeqnoStore::Memory => u64::MAX - 2,
        };
        match last.checked_add(1) {
            Some(n) if n < limit => Ok(n),
            _ => Err(GuestError::SeqnoExhausted {
                vmpck: self.vmpck_id,
                last,
            }),
        }
    }

    fn advance_seqno<P: GuestPlatform + ?Sized>(&mut self, p: &mut P) -> Result<(), GuestError> {
        match self.store {
            SeqnoStore::Memory => {
                self.mem_last = self.mem_last.saturating_add(2);
                Ok(())
            }
            SeqnoStore::SecretsPage(s) => {
                let last = self.last_seqno(p)?;
                let next = (last as u32).wrapping_add(2);
                let at = self.seqno_gpa(s);
                p.write(at, CBit::Private, &next.to_le_bytes())
                    .map_err(|f| access_fault("secrets page sequence number write", at, f))
            }
        }
    }

    /// Disable the VMPCK: wipe the key here and in the secrets page (as Linux's
    /// `snp_disable_vmpck` does), so no further request can reuse an IV.
    pub fn disable<P: GuestPlatform + ?Sized>(&mut self, p: &mut P) {
        self.disabled = true;
        self.key.zeroize();
        if let Some(s) = self.secrets_gpa {
            let at = Gpa(s.0 + VMPCK_OFFSET as u64 + VMPCK_LEN as u64 * u64::from(self.vmpck_id));
            // Best effort: the key in memory is already gone; a fault here changes nothing.
            let _ = p.write(at, CBit::Private, &[0u8; VMPCK_LEN]);
        }
    }

    fn fail<P: GuestPlatform + ?Sized>(&mut self, p: &mut P, e: GuestError) -> GuestError {
        self.disable(p);
        e
    }

    /// Send one message of `msg_type` / `msg_version` with `payload` and return the
    /// decrypted response payload. `certs` makes it an extended request.
    pub fn send<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        msg_type: MsgType,
        msg_version: u8,
        payload: &[u8],
        certs: Option<CertBuf>,
    ) -> Result<Zeroizing<Vec<u8>>, GuestError> {
        if self.disabled {
            return Err(GuestError::VmpckDisabled {
                vmpck: self.vmpck_id,
            });
        }
        let Some(resp_type) = msg_type.response() else {
            return Err(GuestError::Config(format!(
                "{msg_type:?} is not a request type"
            )));
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(GuestError::Config(format!(
                "guest message payload of {} bytes exceeds {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        let seqno = self.next_seqno(p)?;
        let hdr = MsgHeader::new(
            msg_type,
            msg_version,
            payload.len() as u16,
            self.vmpck_id,
            seqno,
        );
        // Seal in private memory, then copy to the shared request page.
        let mut msg = Zeroizing::new(Vec::with_capacity(HEADER_SIZE + payload.len()));
        msg.extend_from_slice(hdr.as_bytes());
        msg.extend_from_slice(payload);
        guest_msg_aead::seal(&self.key, &mut msg)?;
        p.write(self.req_page, CBit::Shared, &msg)
            .map_err(|f| access_fault("guest request page write", self.req_page, f))?;

        let issued = ghcb.guest_request(p, self.req_page, self.resp_page, certs);
        let too_small = match issued {
            Ok(_) => None,
            Err(GuestError::CertBufferTooSmall { given, needed }) => {
                // Same message as a plain request, so the firmware consumes the
                // sequence number and the IV is never used for another message.
                match ghcb.guest_request(p, self.req_page, self.resp_page, None) {
                    Ok(_) => Some(GuestError::CertBufferTooSmall { given, needed }),
                    Err(e) => {
                        self.exchanges += 1;
                        let _ = self.advance_seqno(p);
                        return Err(self.fail(p, e));
                    }
                }
            }
            Err(e) => {
                self.exchanges += 1;
                let _ = self.advance_seqno(p);
                return Err(self.fail(p, e));
            }
        };
        self.exchanges += 1;
        self.advance_seqno(p)?;
        if let Some(e) = too_small {
            return Err(e);
        }

        // Copy the response out of shared memory, then check the copy.
        let mut resp = Zeroizing::new(vec![0u8; PAGE_SIZE_4K as usize]);
        p.read(self.resp_page, CBit::Shared, &mut resp)
            .map_err(|f| access_fault("guest response page read", self.resp_page, f))?;
        match self.verify_response(&mut resp, seqno, resp_type, msg_version) {
            Ok(len) => {
                let mut out = Zeroizing::new(Vec::with_capacity(len));
                out.extend_from_slice(resp.get(HEADER_SIZE..HEADER_SIZE + len).unwrap_or(&[]));
                Ok(out)
            }
            Err(e) => Err(self.fail(p, e)),
        }
    }

    /// Check and decrypt a response page in place; returns the payload length.
    fn verify_response(
        &self,
        resp: &mut [u8],
        seqno: u64,
        resp_type: MsgType,
        msg_version: u8,
    ) -> Result<usize, GuestError> {
        let vmpck = self.vmpck_id;
        let bad = |what, expected: u64, got: u64| GuestError::MsgResponse {
            vmpck,
            what,
            expected,
            got,
        };
        let hdr = MsgHeader::read(resp).ok_or(bad("header size", HEADER_SIZE as u64, 0))?;
        if hdr.msg_seqno != seqno + 1 {
            return Err(bad("MSG_SEQNO", seqno + 1, hdr.msg_seqno));
        }
        if hdr.msg_type != resp_type.0 {
            return Err(bad(
                "MSG_TYPE",
                u64::from(resp_type.0),
                u64::from(hdr.msg_type),
            ));
        }
        if hdr.msg_version != msg_version {
            return Err(bad(
                "MSG_VERSION",
                u64::from(msg_version),
                u64::from(hdr.msg_version),
            ));
        }
        if hdr.msg_vmpck != vmpck {
            return Err(bad("MSG_VMPCK", u64::from(vmpck), u64::from(hdr.msg_vmpck)));
        }
        let len = usize::from(hdr.msg_size);
        if len == 0 || len > MAX_PAYLOAD {
            return Err(bad("MSG_SIZE", MAX_PAYLOAD as u64, len as u64));
        }
        let msg = resp.get_mut(..HEADER_SIZE + len).ok_or(bad(
            "MSG_SIZE",
            MAX_PAYLOAD as u64,
            len as u64,
        ))?;
        guest_msg_aead::open(&self.key, msg).map_err(|_| GuestError::MsgAuth {
            vmpck,
            seqno: hdr.msg_seqno,
        })?;
        Ok(len)
    }

    /// MSG_REPORT_REQ: the 0x4A0-byte report whose REPORT_DATA and VMPL are checked
    /// against the request. `certs` makes it an extended request.
    pub fn report<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        req: &ReportRequest,
        certs: Option<CertBuf>,
    ) -> Result<Vec<u8>, GuestError> {
        let r = ReportReq {
            report_data: req.report_data,
            vmpl: req.vmpl,
            key_sel: u32::from(req.key_sel.0) & ReportReq::KEY_SEL_MASK,
            ..ReportReq::default()
        };
        let out = self.send(p, ghcb, MsgType::REPORT_REQ, 1, r.as_bytes(), certs)?;
        let (rsp, _) =
            ReportRsp::read_from_prefix(&out).map_err(|_| GuestError::ReportMismatch {
                what: "MSG_REPORT_RSP shorter than 0x4C0 bytes",
            })?;
        if rsp.status != 0 {
            return Err(GuestError::MsgStatus {
                request: "MSG_REPORT_REQ",
                status: FwStatus(rsp.status),
            });
        }
        if rsp.report_size as usize != REPORT_SIZE {
            return Err(GuestError::ReportMismatch {
                what: "REPORT_SIZE is not 0x4A0",
            });
        }
        if !softsev_crypto::ct::ct_eq(&rsp.report.report_data, &req.report_data) {
            return Err(GuestError::ReportMismatch {
                what: "REPORT_DATA differs from the nonce sent",
            });
        }
        if rsp.report.vmpl != req.vmpl {
            return Err(GuestError::ReportMismatch {
                what: "VMPL differs from the one requested",
            });
        }
        Ok(rsp.report.as_bytes().to_vec())
    }

    /// Extended report with the certificate-buffer protocol: start with `pages` pages
    /// at `certs_gpa` (shared), and when the host answers that it needs more, retry
    /// with what it asked for, up to `max_pages`.
    pub fn extended_report<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        req: &ReportRequest,
        certs_gpa: Gpa,
        pages: u32,
        max_pages: u32,
    ) -> Result<ExtReport, GuestError> {
        ensure_page(certs_gpa, "certificate buffer")?;
        let mut pages = pages;
        let mut retries = 0;
        loop {
            let buf = CertBuf {
                gpa: certs_gpa,
                pages,
            };
            // Clear the buffer so a host that writes nothing leaves an empty table.
            let zero = vec![0u8; pages as usize * PAGE_SIZE_4K as usize];
            p.write(certs_gpa, CBit::Shared, &zero)
                .map_err(|f| access_fault("certificate buffer write", certs_gpa, f))?;
            match self.report(p, ghcb, req, Some(buf)) {
                Ok(report) => {
                    let mut raw = vec![0u8; pages as usize * PAGE_SIZE_4K as usize];
                    p.read(certs_gpa, CBit::Shared, &mut raw)
                        .map_err(|f| access_fault("certificate buffer read", certs_gpa, f))?;
                    let (entries, used) = parse_cert_table(&raw)?;
                    raw.truncate(used);
                    return Ok(ExtReport {
                        report,
                        certs: raw,
                        entries,
                        cert_pages: pages,
                        too_small_retries: retries,
                    });
                }
                Err(GuestError::CertBufferTooSmall { needed, .. })
                    if needed <= u64::from(max_pages.min(MAX_CERT_PAGES)) && retries < 2 =>
                {
                    retries += 1;
                    pages = needed as u32;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// MSG_KEY_REQ (version 1): a 32-byte derived key.
    pub fn derived_key<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        ghcb: &mut GhcbClient,
        req: &KeyRequest,
    ) -> Result<Zeroizing<[u8; 32]>, GuestError> {
        let k = KeyReq {
            key_select: KeyReq::key_select_word(req.root_vmrk, req.key_sel),
            guest_field_select: req.guest_field_select,
            vmpl: req.vmpl,
            guest_svn: req.guest_svn,
            tcb_version: RawTcb(req.tcb_version.to_le_bytes()),
            ..KeyReq::default()
        };
        let payload = k.as_bytes().get(..KEY_REQ_V1_SIZE).unwrap_or(&[]);
        let out = self.send(p, ghcb, MsgType::KEY_REQ, 1, payload, None)?;
        let (rsp, _) = KeyRsp::read_from_prefix(&out).map_err(|_| GuestError::MsgStatus {
            request: "MSG_KEY_REQ (response shorter than 0x40 bytes)",
            status: FwStatus::INVALID_LENGTH,
        })?;
        if rsp.status != 0 {
            return Err(GuestError::MsgStatus {
                request: "MSG_KEY_REQ",
                status: FwStatus(rsp.status),
            });
        }
        let key = Zeroizing::new(rsp.derived_key);
        let mut rsp = rsp;
        rsp.derived_key.zeroize();
        Ok(key)
    }
}

/// Parse an extended-request certificate table with the layout's rules
/// (`softsev_abi::ghcb::CertTableHeader`): 24-byte entries (GUID, offset, length) up
/// to an all-zero entry, blobs after it. Returns the entries and the bytes used (the
/// end of the last blob, at least the table itself). Offsets must point past the
/// table, every blob must fit in `buf` and no entry but the terminator may have the
/// null GUID.
pub fn parse_cert_table(buf: &[u8]) -> Result<(Vec<CertTableEntry>, usize), GuestError> {
    let header = CertTableHeader::decode(buf).and_then(|h| {
        let used = h.validate(buf.len())?;
        Ok((h, used))
    });
    match header {
        Ok((h, used)) => Ok((h.entries, used)),
        Err(e) => Err(cert_table_error(e)),
    }
}

/// The guest's report of a malformed certificate table.
fn cert_table_error(e: CertTableError) -> GuestError {
    let (what, index, value) = match e {
        CertTableError::NoTerminator { entries, len } => {
            ("no terminating all-zero entry", entries, len as u64)
        }
        CertTableError::BlobInHeader { index, offset, .. } => (
            "blob offset points into the table",
            index,
            u64::from(offset),
        ),
        CertTableError::BlobPastEnd {
            index,
            offset,
            length,
            ..
        } => (
            "blob extends past the buffer",
            index,
            u64::from(offset) + u64::from(length),
        ),
        CertTableError::NullGuid { index, offset, .. } => (
            "null GUID with a non-zero offset or length",
            index,
            u64::from(offset),
        ),
        CertTableError::TooLarge(len) => ("table too large", 0, len as u64),
    };
    GuestError::CertTable { what, index, value }
}

/// Fuzz entry point: certificate-table parsing must never panic, and what it accepts
/// must be self-consistent.
pub fn fuzz_cert_table(data: &[u8]) {
    if let Ok((entries, used)) = parse_cert_table(data) {
        assert!(used <= data.len());
        for e in entries {
            assert!(e.offset as usize + e.length as usize <= used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], u32, u32)], total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        for (i, (g, o, l)) in entries.iter().enumerate() {
            let e = CertTableEntry {
                guid: *g,
                offset: *o,
                length: *l,
            };
            b[i * 24..i * 24 + 24].copy_from_slice(e.as_bytes());
        }
        b
    }

    #[test]
    fn cert_table_rules() {
        let ok = table(&[([1; 16], 72, 10), ([2; 16], 82, 5)], 4096);
        let (e, used) = parse_cert_table(&ok).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(used, 87);
        // Empty table.
        let (e, used) = parse_cert_table(&[0u8; 4096]).unwrap();
        assert!(e.is_empty());
        assert_eq!(used, 24);
        // Offset inside the table.
        assert!(parse_cert_table(&table(&[([1; 16], 24, 10)], 4096)).is_err());
        // Past the buffer.
        assert!(parse_cert_table(&table(&[([1; 16], 48, 5000)], 4096)).is_err());
        // No terminator.
        assert!(parse_cert_table(&[1u8; 40]).is_err());
        assert!(parse_cert_table(&[]).is_err());
    }
}
