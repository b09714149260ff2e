//! `/dev/sev-guest` with the semantics of Linux's sev-guest driver
//! (`drivers/virt/coco/sev-guest/sev-guest.c`: `snp_guest_ioctl`, `get_report`,
//! `get_derived_key`, `get_ext_report`; uAPI `include/uapi/linux/sev-guest.h`;
//! frontends.md §5.1). Every request goes to the [`GuestService`]'s guest, which issues
//! it through its message client, the GHCB, the host and the firmware.
//!
//! The order of checks is the driver's: copy the 32-byte `snp_guest_request_ioctl` in
//! (`EFAULT`), set `exitinfo2 = 0xff`, `msg_version == 0` → `EINVAL`, unknown command →
//! `ENOTTY`; per command null `req_data`/`resp_data` → `EINVAL`, copy the request in
//! (`EFAULT`), issue it, copy the response out (`EFAULT`). The structure is copied back
//! to the caller only when `exitinfo2` is non-zero — on success it is left untouched.

use softsev_vfs::{Caller, CallerMemory, Errno, IoctlReply, NodeKind, VirtualFs};
use softsev_vmm::service::{
    EXITINFO2_NO_FW_CALL, GuestRequest, GuestRequestError, GuestService, KEY_REQ_SIZE,
    REPORT_REQ_SIZE,
};
use std::sync::Arc;

/// Where a device model sends its events (one JSON object per request, the decoded
/// fields of what the caller asked and what it got), e.g. `softsev exec --log`.
pub type EventSink = Arc<dyn Fn(&serde_json::Value) + Send + Sync>;

/// `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)`.
pub const SNP_GET_REPORT: u32 = 0xC020_5300;
/// `SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, ...)`.
pub const SNP_GET_DERIVED_KEY: u32 = 0xC020_5301;
/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, ...)`.
pub const SNP_GET_EXT_REPORT: u32 = 0xC020_5302;
/// `sizeof(struct snp_guest_request_ioctl)`.
pub const IOCTL_STRUCT_SIZE: usize = 32;
/// `sizeof(struct snp_report_resp)`: the bytes copied to `resp_data` of a report.
pub const REPORT_RESP_SIZE: usize = 4000;
/// `sizeof(struct snp_derived_key_resp)`.
pub const KEY_RESP_SIZE: usize = 64;
/// `sizeof(struct snp_ext_report_req)`: `snp_report_req` (96), `u64 certs_address`,
/// `u32 certs_len`, padded to 8.
pub const EXT_REPORT_REQ_SIZE: usize = 112;
/// `SEV_FW_BLOB_MAX_SIZE` (include/linux/psp-sev.h): the largest certificate buffer.
pub const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;
/// `TASK_SIZE_MAX` on x86-64 with 4-level paging: what `access_ok` accepts.
pub const TASK_SIZE_MAX: u64 = 0x0000_7FFF_FFFF_F000;
const PAGE: u32 = 4096;

/// `struct snp_guest_request_ioctl` (LE): `u8 msg_version @0`, `u64 req_data @8`,
/// `u64 resp_data @16`, `u64 exitinfo2 @24` (`u32 fw_error`, `u32 vmm_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRequestIoctl {
    /// Bytes 0..8 as given (byte 0 is `msg_version`; 1..8 are padding, kept).
    pub head: [u8; 8],
    /// `req_data`.
    pub req_data: u64,
    /// `resp_data`.
    pub resp_data: u64,
    /// `exitinfo2`.
    pub exitinfo2: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

impl GuestRequestIoctl {
    /// Decode the 32 bytes.
    pub fn parse(b: &[u8; IOCTL_STRUCT_SIZE]) -> Self {
        let mut head = [0u8; 8];
        head.copy_from_slice(&b[..8]);
        GuestRequestIoctl {
            head,
            req_data: u64_at(b, 8),
            resp_data: u64_at(b, 16),
            exitinfo2: u64_at(b, 24),
        }
    }

    /// `msg_version`.
    pub fn msg_version(&self) -> u8 {
        self.head[0]
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; IOCTL_STRUCT_SIZE] {
        let mut b = [0u8; IOCTL_STRUCT_SIZE];
        b[..8].copy_from_slice(&self.head);
        b[8..16].copy_from_slice(&self.req_data.to_le_bytes());
        b[16..24].copy_from_slice(&self.resp_data.to_le_bytes());
        b[24..32].copy_from_slice(&self.exitinfo2.to_le_bytes());
        b
    }
}

/// What one ioctl carried and produced, beyond the 32-byte structure (for the event
/// log).
#[derive(Debug, Default)]
struct Trace {
    vmpl: Option<u32>,
    certs_address: Option<u64>,
    certs_len: Option<u32>,
    certs_len_out: Option<u32>,
    status: Option<u32>,
}

/// The `/dev/sev-guest` model, mounted directly on the device file.
#[derive(Clone)]
pub struct SevGuestDevice {
    svc: Arc<GuestService>,
    mode: u16,
    log: Option<EventSink>,
}

impl std::fmt::Debug for SevGuestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevGuestDevice")
            .field("svc", &self.svc)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("log", &self.log.is_some())
            .finish()
    }
}

impl SevGuestDevice {
    /// The device of `svc`'s guest, mode 0600 (a misc device without a mode of its own,
    /// as devtmpfs creates it).
    pub fn new(svc: Arc<GuestService>) -> Self {
        SevGuestDevice {
            svc,
            mode: 0o600,
            log: None,
        }
    }

    /// Send an event for every ioctl to `sink`: `{"dev": "sev-guest", "op": "ioctl",
    /// "pid", "cmd", "name", "msg_version", "req_data", "resp_data", "result",
    /// "exitinfo2"}` plus `vmpl`, `certs_address`, `certs_len` (in), `certs_len_out`
    /// (written back) and the response `status` when the command got that far.
    pub fn with_log(mut self, sink: EventSink) -> Self {
        self.log = Some(sink);
        self
    }

    /// The same with other permission bits (e.g. 0o666 to let non-root tools in).
    pub fn with_mode(mut self, mode: u16) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// The guest service behind the device.
    pub fn service(&self) -> &Arc<GuestService> {
        &self.svc
    }

    /// `snp_guest_ioctl` on the already copied-in structure: the return value, and
    /// the structure as the driver leaves it.
    pub fn guest_ioctl(
        &self,
        cmd: u32,
        io: &mut GuestRequestIoctl,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        self.guest_ioctl_traced(cmd, io, mem, &mut Trace::default())
    }

    fn guest_ioctl_traced(
        &self,
        cmd: u32,
        io: &mut GuestRequestIoctl,
        mem: &dyn CallerMemory,
        t: &mut Trace,
    ) -> Result<(), Errno> {
        io.exitinfo2 = EXITINFO2_NO_FW_CALL;
        if io.msg_version() == 0 {
            return Err(Errno::EINVAL);
        }
        match cmd {
            SNP_GET_REPORT => self.get_report(io, mem, t),
            SNP_GET_DERIVED_KEY => self.get_derived_key(io, mem, t),
            SNP_GET_EXT_REPORT => self.get_ext_report(io, mem, t),
            _ => Err(Errno::ENOTTY),
        }
    }

    fn event(&self, caller: &Caller, cmd: u32, io: &GuestRequestIoctl, result: i32, t: &Trace) {
        tracing::debug!(
            pid = caller.pid,
            cmd = format_args!("{cmd:#x}"),
            msg_version = io.msg_version(),
            req_data = format_args!("{:#x}", io.req_data),
            resp_data = format_args!("{:#x}", io.resp_data),
            exitinfo2 = format_args!("{:#x}", io.exitinfo2),
            result,
            "sev-guest ioctl"
        );
        let Some(sink) = &self.log else {
            return;
        };
        let name = match cmd {
            SNP_GET_REPORT => "SNP_GET_REPORT",
            SNP_GET_DERIVED_KEY => "SNP_GET_DERIVED_KEY",
            SNP_GET_EXT_REPORT => "SNP_GET_EXT_REPORT",
            _ => "unknown",
        };
        let mut e = serde_json::json!({
            "dev": "sev-guest",
            "op": "ioctl",
            "pid": caller.pid,
            "uid": caller.uid,
            "cmd": format!("{cmd:#x}"),
            "name": name,
            "msg_version": io.msg_version(),
            "req_data": format!("{:#x}", io.req_data),
            "resp_data": format!("{:#x}", io.resp_data),
            "result": result,
            "exitinfo2": format!("{:#x}", io.exitinfo2),
        });
        let fields = [
            ("vmpl", t.vmpl.map(u64::from)),
            ("certs_len", t.certs_len.map(u64::from)),
            ("certs_len_out", t.certs_len_out.map(u64::from)),
            ("status", t.status.map(u64::from)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                e[k] = v.into();
            }
        }
        if let Some(a) = t.certs_address {
            e["certs_address"] = format!("{a:#x}").into();
        }
        sink(&e);
    }

    /// Issue `req`; on failure record exitinfo2 and return the errno.
    fn issue(
        &self,
        io: &mut GuestRequestIoctl,
        req: GuestRequest,
    ) -> Result<softsev_vmm::service::GuestResponse, (Errno, GuestRequestError)> {
        match self.svc.request(req) {
            Ok(r) => {
                io.exitinfo2 = 0;
                Ok(r)
            }
            Err(e) => {
                io.exitinfo2 = e.exitinfo2();
                if !matches!(e, GuestRequestError::CertsTooSmall { .. }) {
                    tracing::warn!(error = %e, "sev-guest: guest request failed");
                }
                Err((Errno(e.errno()), e))
            }
        }
    }

    fn get_report(
        &self,
        io: &mut GuestRequestIoctl,
        mem: &dyn CallerMemory,
        t: &mut Trace,
    ) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(Errno::EINVAL);
        }
        let mut req = [0u8; REPORT_REQ_SIZE];
        mem.read(io.req_data, &mut req)?;
        t.vmpl = Some(u32_at(&req, 64));
        let msg_version = io.msg_version();
        let r = self
            .issue(io, GuestRequest::Report { msg_version, req })
            .map_err(|(e, _)| e)?;
        t.status = Some(r.status());
        mem.write(io.resp_data, &padded(&r.payload, REPORT_RESP_SIZE))
    }

    fn get_derived_key(
        &self,
        io: &mut GuestRequestIoctl,
        mem: &dyn CallerMemory,
        t: &mut Trace,
    ) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(Errno::EINVAL);
        }
        // Only sizeof(struct snp_derived_key_req) is copied, whatever the caller has
        // after it (the sev crate sends 40 bytes).
        let mut req = [0u8; KEY_REQ_SIZE];
        mem.read(io.req_data, &mut req)?;
        t.vmpl = Some(u32_at(&req, 16));
        let msg_version = io.msg_version();
        let r = self
            .issue(io, GuestRequest::DerivedKey { msg_version, req })
            .map_err(|(e, _)| e)?;
        t.status = Some(r.status());
        let out = zeroize::Zeroizing::new(padded(&r.payload, KEY_RESP_SIZE));
        mem.write(io.resp_data, &out)
    }

    fn get_ext_report(
        &self,
        io: &mut GuestRequestIoctl,
        mem: &dyn CallerMemory,
        t: &mut Trace,
    ) -> Result<(), Errno> {
        if io.req_data == 0 || io.resp_data == 0 {
            return Err(Errno::EINVAL);
        }
        let mut ext = [0u8; EXT_REPORT_REQ_SIZE];
        mem.read(io.req_data, &mut ext)?;
        let certs_address = u64_at(&ext, 96);
        let certs_len = u32_at(&ext, 104);
        t.vmpl = Some(u32_at(&ext, 64));
        t.certs_address = Some(certs_address);
        t.certs_len = Some(certs_len);
        let mut npages = 0;
        // certs_len == 0 or a null address: the caller does not want certificates.
        if certs_len != 0 && certs_address != 0 {
            if certs_len > SEV_FW_BLOB_MAX_SIZE || !certs_len.is_multiple_of(PAGE) {
                return Err(Errno::EINVAL);
            }
            // access_ok: only the range is checked here; a hole faults at the copy.
            match certs_address.checked_add(u64::from(certs_len)) {
                Some(end) if end <= TASK_SIZE_MAX => {}
                _ => return Err(Errno::EFAULT),
            }
            npages = certs_len / PAGE;
        }
        let mut req = [0u8; REPORT_REQ_SIZE];
        req.copy_from_slice(&ext[..REPORT_REQ_SIZE]);
        let msg_version = io.msg_version();
        let r = self.issue(
            io,
            GuestRequest::ExtReport {
                msg_version,
                req,
                certs_pages: npages,
            },
        );
        let r = match r {
            Ok(r) => r,
            Err((errno, GuestRequestError::CertsTooSmall { needed, .. })) => {
                // vmm_error == INVALID_LEN: the length needed goes back into the
                // request structure.
                let len = (needed as u32).wrapping_shl(12);
                ext[104..108].copy_from_slice(&len.to_le_bytes());
                t.certs_len_out = Some(len);
                mem.write(io.req_data, &ext)?;
                return Err(errno);
            }
            Err((errno, _)) => return Err(errno),
        };
        t.status = Some(r.status());
        if npages > 0 {
            mem.write(certs_address, &padded(&r.certs, certs_len as usize))?;
        }
        mem.write(io.resp_data, &padded(&r.payload, REPORT_RESP_SIZE))
    }
}

/// `b` zero-extended (or cut) to `len` bytes.
fn padded(b: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let n = b.len().min(len);
    v[..n].copy_from_slice(&b[..n]);
    v
}

impl VirtualFs for SevGuestDevice {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        path.is_empty().then_some(NodeKind::File {
            mode: self.mode,
            size: 0,
        })
    }

    fn readdir(&self, _path: &str) -> Result<Vec<String>, Errno> {
        Err(Errno::ENOTDIR)
    }

    /// The driver has no `read`: the misc device's file operations lack it, so
    /// `read(2)` fails with `EINVAL`.
    fn read(
        &self,
        _path: &str,
        _fh: u64,
        _offset: u64,
        _size: u32,
        _caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        Err(Errno::EINVAL)
    }

    /// The same for `write(2)`.
    fn write(
        &self,
        _path: &str,
        _fh: u64,
        _offset: u64,
        _data: &[u8],
        _caller: &Caller,
    ) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    fn ioctl(
        &self,
        _path: &str,
        _fh: u64,
        cmd: u32,
        arg: u64,
        input: &[u8],
        out_size: u32,
        caller: &Caller,
        mem: &dyn CallerMemory,
    ) -> IoctlReply {
        // copy_from_user of the 32-byte structure: the bytes FUSE copied in for the
        // SNP commands, the caller's memory for anything else.
        let mut raw = [0u8; IOCTL_STRUCT_SIZE];
        if input.len() == IOCTL_STRUCT_SIZE {
            raw.copy_from_slice(input);
        } else if let Err(e) = mem.read(arg, &mut raw) {
            return IoctlReply::err(e);
        }
        let mut io = GuestRequestIoctl::parse(&raw);
        let mut t = Trace::default();
        let result = match self.guest_ioctl_traced(cmd, &mut io, mem, &mut t) {
            Ok(()) => 0,
            Err(e) => e.negated(),
        };
        self.event(caller, cmd, &io, result, &t);
        if io.exitinfo2 == 0 {
            return IoctlReply::with_out(result, Vec::new());
        }
        // copy_to_user of the structure: through FUSE's copy-back when the command
        // lets it copy 32 bytes out, else directly.
        let back = io.to_bytes().to_vec();
        if out_size as usize >= IOCTL_STRUCT_SIZE {
            IoctlReply::with_out(result, back)
        } else {
            match mem.write(arg, &back) {
                Ok(()) => IoctlReply::with_out(result, Vec::new()),
                Err(e) => IoctlReply::err(e),
            }
        }
    }
}
