//! configfs-tsm, `/sys/kernel/config/tsm/report/$name/` (frontends.md §5.2; Linux
//! `drivers/virt/coco/guest/report.c`, `Documentation/ABI/testing/configfs-tsm-report`,
//! the sev-guest provider `sev_report_new` in `drivers/virt/coco/sev-guest/sev-guest.c`,
//! and configfs's own file rules in `fs/configfs/file.c`).
//!
//! The tree is mounted at `/sys/kernel/config/tsm`: its root is the `tsm` directory,
//! holding the default group `report`. `mkdir report/NAME` creates an item whose
//! attributes are those the sev_guest provider makes visible; `rmdir` removes it whatever
//! it holds. Text attributes are stored on every `write(2)` and shown once per open file;
//! binary attributes are buffered per open file — `inblob` is committed on the last
//! close, `outblob` / `auxblob` / `manifestblob` are produced at the first read and kept
//! for that open file. Every committed write advances the item's write generation; the
//! report is regenerated when the read generation lags, through the same extended
//! report request the `/dev/sev-guest` ioctl issues (16 KiB certificate buffer,
//! `privlevel` as VMPL, message version 1), so both paths give the same report for the
//! same nonce.

use super::sev_guest::EventSink;
use softsev_vfs::{Caller, Errno, NodeKind, OpenFlags, VirtualFs};
use softsev_vmm::service::{GuestRequest, GuestRequestError, GuestService};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the tree is mounted.
pub const MOUNT_POINT: &str = "/sys/kernel/config/tsm";
/// `TSM_REPORT_INBLOB_MAX`.
pub const INBLOB_MAX: usize = 64;
/// `TSM_REPORT_OUTBLOB_MAX` (the `cb_max_size` of outblob, auxblob, manifestblob).
pub const OUTBLOB_MAX: usize = 32 * 1024;
/// `TSM_REPORT_PRIVLEVEL_MAX`.
pub const PRIVLEVEL_MAX: u32 = 3;
/// configfs's `SIMPLE_ATTR_SIZE`: a text store sees at most this minus one bytes.
const SIMPLE_ATTR_SIZE: usize = 4096;
/// The sev_guest provider's name (`KBUILD_MODNAME`).
pub const PROVIDER: &str = "sev_guest";
/// `SEV_RET_INVALID_PARAM`, `SEV_RET_INVALID_KEY` (include/uapi/linux/psp-sev.h).
const SEV_RET_INVALID_PARAM: u32 = 0x16;
const SEV_RET_INVALID_KEY: u32 = 0x27;
/// `sev_report_new`'s buffers: 4 KiB for the response, `SEV_FW_BLOB_MAX_SIZE` for
/// certificates.
const REPORT_BUF: usize = 4096;
const CERTS_BUF_PAGES: u32 = 4;
const CERT_ENTRY: usize = 24;
/// `ERANGE`: what kstrtouint returns on overflow.
const ERANGE: Errno = Errno(34);
/// `ETXTBSY`: configfs refuses to mix reading and writing a binary attribute.
const ETXTBSY: Errno = Errno(26);
/// `EBADF`: an operation on a file handle this tree did not hand out.
const EBADF: Errno = Errno(9);

/// Attributes of a report item (report.c `tsm_report_attrs`, `tsm_report_bin_attrs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Attr {
    Generation,
    Provider,
    Privlevel,
    PrivlevelFloor,
    ServiceProvider,
    ServiceGuid,
    ServiceManifestVersion,
    Inblob,
    Outblob,
    Auxblob,
    Manifestblob,
}

impl Attr {
    const ALL: [Attr; 11] = [
        Attr::Generation,
        Attr::Provider,
        Attr::Privlevel,
        Attr::PrivlevelFloor,
        Attr::ServiceProvider,
        Attr::ServiceGuid,
        Attr::ServiceManifestVersion,
        Attr::Inblob,
        Attr::Outblob,
        Attr::Auxblob,
        Attr::Manifestblob,
    ];

    fn name(self) -> &'static str {
        match self {
            Attr::Generation => "generation",
            Attr::Provider => "provider",
            Attr::Privlevel => "privlevel",
            Attr::PrivlevelFloor => "privlevel_floor",
            Attr::ServiceProvider => "service_provider",
            Attr::ServiceGuid => "service_guid",
            Attr::ServiceManifestVersion => "service_manifest_version",
            Attr::Inblob => "inblob",
            Attr::Outblob => "outblob",
            Attr::Auxblob => "auxblob",
            Attr::Manifestblob => "manifestblob",
        }
    }

    fn from_name(s: &str) -> Option<Attr> {
        Attr::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Write-only (CONFIGFS_ATTR_WO / CONFIGFS_BIN_ATTR_WO): 0200; else 0444.
    fn writable(self) -> bool {
        matches!(
            self,
            Attr::Privlevel
                | Attr::ServiceProvider
                | Attr::ServiceGuid
                | Attr::ServiceManifestVersion
                | Attr::Inblob
        )
    }

    fn binary(self) -> bool {
        matches!(
            self,
            Attr::Inblob | Attr::Outblob | Attr::Auxblob | Attr::Manifestblob
        )
    }

    /// The sev_guest provider's `report_attr_visible` / `report_bin_attr_visible`:
    /// the SVSM attributes only when the guest runs above VMPL0 (`snp_vmpl`).
    fn visible(self, svsm: bool) -> bool {
        match self {
            Attr::ServiceProvider
            | Attr::ServiceGuid
            | Attr::ServiceManifestVersion
            | Attr::Manifestblob => svsm,
            _ => true,
        }
    }
}

/// `try_advance_write_generation`: refuse the write when it would make the write
/// generation equal the read generation by wrapping (`EBUSY`).
pub fn advance_generation(write: u64, read: u64) -> Result<u64, Errno> {
    if write == read.wrapping_sub(1) {
        return Err(Errno::EBUSY);
    }
    Ok(write.wrapping_add(1))
}

/// `kstrtouint(s, 0, &v)` (lib/kstrtox.c): optional `+`, base from the prefix (`0x`
/// hex, `0` octal, else decimal), digits, one optional trailing newline; `EINVAL`
/// for anything else, `ERANGE` beyond `u32`.
pub fn kstrtouint(s: &[u8]) -> Result<u32, Errno> {
    // configfs passes a NUL-terminated page: the string ends at the first NUL.
    let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    let (base, digits) = match s {
        [b'0', x, d, ..] if (*x | 0x20) == b'x' && d.is_ascii_hexdigit() => (16, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let mut v: u64 = 0;
    let mut n = 0;
    let mut overflow = false;
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'f' => u64::from(c - b'a' + 10),
            b'A'..=b'F' => u64::from(c - b'A' + 10),
            _ => break,
        };
        if d >= base {
            break;
        }
        v = v * base + d;
        if v > u64::from(u32::MAX) {
            overflow = true;
            v = u64::from(u32::MAX) + 1;
        }
        n += 1;
    }
    if n == 0 {
        return Err(Errno::EINVAL);
    }
    let rest = &digits[n..];
    let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    if !rest.is_empty() {
        return Err(Errno::EINVAL);
    }
    if overflow {
        return Err(ERANGE);
    }
    Ok(v as u32)
}

/// `guid_parse` (lib/uuid.c): 36 characters `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
/// (hyphens at 8, 13, 18, 23; what follows is not looked at), in guid_t byte order.
pub fn guid_parse(s: &[u8]) -> Result<[u8; 16], Errno> {
    const GUID_INDEX: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    const SI: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    if s.len() < 36 {
        return Err(Errno::EINVAL);
    }
    for (i, &c) in s[..36].iter().enumerate() {
        let ok = if [8, 13, 18, 23].contains(&i) {
            c == b'-'
        } else {
            c.is_ascii_hexdigit()
        };
        if !ok {
            return Err(Errno::EINVAL);
        }
    }
    let hex = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => (c | 0x20) - b'a' + 10,
    };
    let mut g = [0u8; 16];
    for (i, &at) in SI.iter().enumerate() {
        g[GUID_INDEX[i]] = (hex(s[at]) << 4) | hex(s[at + 1]);
    }
    Ok(g)
}

/// `struct tsm_report_state` of one item.
#[derive(Debug, Default)]
struct Item {
    inblob: Option<Vec<u8>>,
    privlevel: u32,
    service_provider: Option<String>,
    service_guid: [u8; 16],
    service_manifest_version: u32,
    write_generation: u64,
    read_generation: u64,
    outblob: Option<Vec<u8>>,
    auxblob: Vec<u8>,
    manifestblob: Vec<u8>,
    removed: bool,
}

type ItemRef = Arc<parking_lot::Mutex<Item>>;

/// What an open file carries (configfs's `struct configfs_buffer`).
#[derive(Debug)]
struct OpenFile {
    item: ItemRef,
    attr: Attr,
    /// Bytes written to a binary attribute, committed on release.
    write_buf: Option<Vec<u8>>,
    /// What a read produced (filled on the first read).
    read_buf: Option<Arc<Vec<u8>>>,
}

/// The configfs-tsm tree of one guest (see the module documentation).
pub struct TsmReports {
    svc: Arc<GuestService>,
    items: parking_lot::Mutex<BTreeMap<String, ItemRef>>,
    open: parking_lot::Mutex<HashMap<u64, OpenFile>>,
    next_fh: AtomicU64,
    log: Option<EventSink>,
}

impl std::fmt::Debug for TsmReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsmReports")
            .field("svc", &self.svc)
            .field("items", &self.items.lock().keys().collect::<Vec<_>>())
            .field("log", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

/// A path split into the levels of the tree.
enum Node<'a> {
    Root,
    Report,
    Item(&'a str),
    Attr(&'a str, Attr),
}

fn parse(path: &str) -> Option<Node<'_>> {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (None, ..) => Some(Node::Root),
        (Some("report"), None, ..) => Some(Node::Report),
        (Some("report"), Some(name), None, _) => Some(Node::Item(name)),
        (Some("report"), Some(name), Some(a), None) => {
            Attr::from_name(a).map(|a| Node::Attr(name, a))
        }
        _ => None,
    }
}

impl TsmReports {
    /// The tree of `svc`'s guest, with no report items.
    pub fn new(svc: Arc<GuestService>) -> Self {
        TsmReports {
            svc,
            items: parking_lot::Mutex::new(BTreeMap::new()),
            open: parking_lot::Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            log: None,
        }
    }

    /// Send an event to `sink` for every `mkdir`, `rmdir`, attribute write, binary
    /// commit and first read of an open attribute: `{"dev": "tsm", "op", "path",
    /// "pid", "len", "result"}` (`result` 0 or a negated errno).
    pub fn with_log(mut self, sink: EventSink) -> Self {
        self.log = Some(sink);
        self
    }

    fn event(
        &self,
        op: &str,
        path: &str,
        caller: Option<&Caller>,
        len: usize,
        r: Result<(), Errno>,
    ) {
        tracing::debug!(
            op,
            path,
            len,
            result = r.err().map_or(0, Errno::negated),
            "configfs-tsm"
        );
        if let Some(sink) = &self.log {
            sink(&serde_json::json!({
                "dev": "tsm",
                "op": op,
                "path": path,
                "pid": caller.map(|c| c.pid),
                "len": len,
                "result": r.err().map_or(0, Errno::negated),
            }));
        }
    }

    /// Whether the guest runs under an SVSM (above VMPL0): the SVSM attributes show.
    fn svsm(&self) -> bool {
        self.svc.vmpck_id() != 0
    }

    fn item(&self, name: &str) -> Option<ItemRef> {
        self.items.lock().get(name).cloned()
    }

    /// The visible attribute `a` of item `name`.
    fn attr(&self, name: &str, a: Attr) -> Option<ItemRef> {
        if !a.visible(self.svsm()) {
            return None;
        }
        self.item(name)
    }

    /// `show` of a text attribute.
    fn show(&self, it: &Item, a: Attr) -> Result<Vec<u8>, Errno> {
        Ok(match a {
            Attr::Generation => format!("{}\n", it.write_generation),
            Attr::Provider => format!("{PROVIDER}\n"),
            Attr::PrivlevelFloor => format!("{}\n", self.svc.vmpck_id()),
            _ => return Err(Errno::EACCES),
        }
        .into_bytes())
    }

    /// `store` of a text attribute (the whole write, at most 4095 bytes).
    fn store(&self, it: &mut Item, a: Attr, buf: &[u8]) -> Result<(), Errno> {
        match a {
            Attr::Privlevel => {
                let v = kstrtouint(buf)?;
                if u32::from(self.svc.vmpck_id()) > v || v > PRIVLEVEL_MAX {
                    return Err(Errno::EINVAL);
                }
                it.write_generation = advance_generation(it.write_generation, it.read_generation)?;
                it.privlevel = v;
            }
            Attr::ServiceProvider => {
                it.write_generation = advance_generation(it.write_generation, it.read_generation)?;
                let b = buf.strip_suffix(b"\n").unwrap_or(buf);
                let b = b.split(|&c| c == 0).next().unwrap_or(&[]);
                it.service_provider = Some(String::from_utf8_lossy(b).into_owned());
            }
            Attr::ServiceGuid => {
                it.write_generation = advance_generation(it.write_generation, it.read_generation)?;
                it.service_guid = [0; 16];
                it.service_guid = guid_parse(buf)?;
            }
            Attr::ServiceManifestVersion => {
                let v = kstrtouint(buf)?;
                it.write_generation = advance_generation(it.write_generation, it.read_generation)?;
                it.service_manifest_version = v;
            }
            _ => return Err(Errno::EACCES),
        }
        Ok(())
    }

    /// `tsm_report_read`: the cached blob, or a new report first when the write
    /// generation moved.
    fn blob(&self, it: &mut Item, a: Attr) -> Result<Vec<u8>, Errno> {
        let Some(inblob) = it.inblob.clone().filter(|b| !b.is_empty()) else {
            return Err(Errno::EINVAL);
        };
        if it.outblob.is_none() || it.read_generation != it.write_generation {
            it.outblob = None;
            it.auxblob.clear();
            it.manifestblob.clear();
            let (out, aux) = self.report_new(it, &inblob)?;
            it.outblob = Some(out);
            it.auxblob = aux;
            it.read_generation = it.write_generation;
        }
        Ok(match a {
            Attr::Outblob => it.outblob.clone().unwrap_or_default(),
            Attr::Auxblob => it.auxblob.clone(),
            _ => it.manifestblob.clone(),
        })
    }

    /// The sev_guest provider's `sev_report_new`.
    fn report_new(&self, it: &Item, inblob: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Errno> {
        let user_data: [u8; 64] = inblob.try_into().map_err(|_| Errno::EINVAL)?;
        if let Some(sp) = &it.service_provider {
            if sp != "svsm" {
                return Err(Errno::EINVAL);
            }
            // softsev models no SVSM: its attestation call fails, which
            // sev_svsm_report_new reports as EINVAL.
            tracing::warn!("configfs-tsm: service_provider svsm, but softsev models no SVSM");
            return Err(Errno::EINVAL);
        }
        let req = GuestRequest::ext_report(&user_data, it.privlevel, CERTS_BUF_PAGES);
        let r = self.svc.request(req).map_err(|e: GuestRequestError| {
            tracing::warn!(error = %e, "configfs-tsm: report request failed");
            Errno(e.errno())
        })?;
        let status = r.status();
        match status {
            0 => {}
            SEV_RET_INVALID_PARAM | SEV_RET_INVALID_KEY => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENXIO),
        }
        let size = r.payload.get(4..8).map_or(0, |b| {
            u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize
        });
        if size + 32 > REPORT_BUF {
            return Err(Errno::ENOMEM);
        }
        let mut out = vec![0u8; size];
        let have = r.payload.len().saturating_sub(32).min(size);
        out[..have].copy_from_slice(&r.payload[32..32 + have]);
        // The certificate table, up to its terminator; the blob ends at the furthest
        // offset + length, at most the buffer.
        let certs = &r.certs;
        let mut certs_size = 0usize;
        for e in certs.chunks_exact(CERT_ENTRY) {
            if e.iter().all(|&b| b == 0) {
                break;
            }
            let off = u32::from_le_bytes(e[16..20].try_into().unwrap_or([0; 4])) as usize;
            let len = u32::from_le_bytes(e[20..24].try_into().unwrap_or([0; 4])) as usize;
            certs_size = certs_size.max(off.saturating_add(len));
        }
        let aux = certs[..certs_size.min(certs.len())].to_vec();
        Ok((out, aux))
    }

    fn alloc_fh(&self, f: OpenFile) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(fh, f);
        fh
    }
}

const DIR: NodeKind = NodeKind::Dir { mode: 0o755 };

impl VirtualFs for TsmReports {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        match parse(path)? {
            Node::Root | Node::Report => Some(DIR),
            Node::Item(name) => self.item(name).map(|_| DIR),
            Node::Attr(name, a) => self.attr(name, a).map(|_| NodeKind::File {
                mode: if a.writable() { 0o200 } else { 0o444 },
                size: 4096,
            }),
        }
    }

    fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        match parse(path).ok_or(Errno::ENOENT)? {
            Node::Root => Ok(vec!["report".into()]),
            Node::Report => Ok(self.items.lock().keys().cloned().collect()),
            Node::Item(name) => {
                self.item(name).ok_or(Errno::ENOENT)?;
                let svsm = self.svsm();
                Ok(Attr::ALL
                    .into_iter()
                    .filter(|a| a.visible(svsm))
                    .map(|a| a.name().to_string())
                    .collect())
            }
            Node::Attr(name, a) => {
                self.attr(name, a).ok_or(Errno::ENOENT)?;
                Err(Errno::ENOTDIR)
            }
        }
    }

    /// `configfs_open_file` / `configfs_open_bin_file`: reading a write-only attribute
    /// or writing a read-only one is `EACCES`, even for root.
    fn open(&self, path: &str, flags: OpenFlags, _caller: &Caller) -> Result<u64, Errno> {
        let Some(Node::Attr(name, a)) = parse(path) else {
            return match self.kind(path) {
                Some(_) => Ok(0),
                None => Err(Errno::ENOENT),
            };
        };
        let item = self.attr(name, a).ok_or(Errno::ENOENT)?;
        if (flags.write && !a.writable()) || (flags.read && a.writable()) {
            return Err(Errno::EACCES);
        }
        Ok(self.alloc_fh(OpenFile {
            item,
            attr: a,
            write_buf: None,
            read_buf: None,
        }))
    }

    /// `configfs_release_bin_file`: a binary attribute written through this file is
    /// stored now (its result is ignored, as configfs ignores it).
    fn release(&self, path: &str, fh: u64, caller: &Caller) -> Result<(), Errno> {
        let Some(f) = self.open.lock().remove(&fh) else {
            return Ok(());
        };
        if let (Some(buf), Attr::Inblob) = (f.write_buf, f.attr) {
            let len = buf.len();
            let r = {
                let mut it = f.item.lock();
                if it.removed {
                    Err(Errno::ENOENT)
                } else {
                    advance_generation(it.write_generation, it.read_generation).map(|g| {
                        it.write_generation = g;
                        it.inblob = Some(buf);
                    })
                }
            };
            self.event("commit", path, Some(caller), len, r);
        }
        Ok(())
    }

    fn read(
        &self,
        path: &str,
        fh: u64,
        offset: u64,
        size: u32,
        caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        let (item, attr, cached) = {
            let open = self.open.lock();
            let Some(f) = open.get(&fh) else {
                return match parse(path) {
                    Some(Node::Attr(..)) => Err(EBADF),
                    _ => Err(Errno::EISDIR),
                };
            };
            if f.write_buf.is_some() {
                return Err(ETXTBSY);
            }
            (f.item.clone(), f.attr, f.read_buf.clone())
        };
        let data = match cached {
            Some(d) => d,
            None => {
                // Produced without holding the open-file table: a report request
                // takes a while and other files stay usable meanwhile.
                let filled = {
                    let mut it = item.lock();
                    if it.removed {
                        Err(Errno::ENOENT)
                    } else if attr.binary() {
                        self.blob(&mut it, attr).and_then(|b| {
                            if b.len() > OUTBLOB_MAX {
                                Err(Errno::EFBIG)
                            } else {
                                Ok(b)
                            }
                        })
                    } else {
                        self.show(&it, attr)
                    }
                };
                let len = filled.as_ref().map_or(0, Vec::len);
                self.event(
                    "read",
                    path,
                    Some(caller),
                    len,
                    filled.as_ref().map(|_| ()).map_err(|e| *e),
                );
                let data = filled?;
                let data = Arc::new(data);
                if let Some(f) = self.open.lock().get_mut(&fh) {
                    f.read_buf = Some(data.clone());
                }
                data
            }
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn write(
        &self,
        path: &str,
        fh: u64,
        offset: u64,
        data: &[u8],
        caller: &Caller,
    ) -> Result<u32, Errno> {
        let r = self.write_inner(fh, offset, data);
        self.event("write", path, Some(caller), data.len(), r.map(|_| ()));
        r
    }

    /// `tsm_report_make_item` under `report/`; anywhere else configfs has no group
    /// operations (`EPERM`).
    fn mkdir(&self, path: &str, caller: &Caller) -> Result<(), Errno> {
        let r = self.mkdir_inner(path);
        self.event("mkdir", path, Some(caller), 0, r);
        r
    }

    /// `tsm_report_drop_item`: an item goes whatever it holds; the default group and
    /// the subsystem cannot be removed (`EPERM`), attributes are not directories.
    fn rmdir(&self, path: &str, caller: &Caller) -> Result<(), Errno> {
        let r = self.rmdir_inner(path);
        self.event("rmdir", path, Some(caller), 0, r);
        r
    }
}

impl TsmReports {
    fn write_inner(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut open = self.open.lock();
        let f = open.get_mut(&fh).ok_or(EBADF)?;
        if f.item.lock().removed {
            return Err(Errno::ENOENT);
        }
        if f.attr.binary() {
            // configfs_bin_write_iter: grow the buffer to offset + count, at most
            // cb_max_size (EFBIG).
            if f.read_buf.is_some() {
                return Err(ETXTBSY);
            }
            let off = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
            let end = off.checked_add(data.len()).ok_or(Errno::EFBIG)?;
            if end > INBLOB_MAX {
                return Err(Errno::EFBIG);
            }
            let buf = f.write_buf.get_or_insert_with(Vec::new);
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[off..end].copy_from_slice(data);
            return Ok(data.len() as u32);
        }
        // configfs_write_iter: every write is one store of up to 4095 bytes.
        let n = data.len().min(SIMPLE_ATTR_SIZE - 1);
        let mut it = f.item.lock();
        self.store(&mut it, f.attr, &data[..n])?;
        Ok(n as u32)
    }

    fn mkdir_inner(&self, path: &str) -> Result<(), Errno> {
        match parse(path) {
            Some(Node::Item(name)) => {
                let mut items = self.items.lock();
                if items.contains_key(name) {
                    return Err(Errno::EEXIST);
                }
                items.insert(name.to_string(), Arc::default());
                Ok(())
            }
            Some(Node::Root | Node::Report) => Err(Errno::EEXIST),
            Some(Node::Attr(name, a)) if self.attr(name, a).is_some() => Err(Errno::EEXIST),
            _ => Err(Errno::EPERM),
        }
    }

    fn rmdir_inner(&self, path: &str) -> Result<(), Errno> {
        match parse(path) {
            Some(Node::Item(name)) => {
                let it = self.items.lock().remove(name).ok_or(Errno::ENOENT)?;
                it.lock().removed = true;
                Ok(())
            }
            Some(Node::Root | Node::Report) => Err(Errno::EPERM),
            Some(Node::Attr(name, a)) if self.attr(name, a).is_some() => Err(Errno::ENOTDIR),
            _ => Err(Errno::ENOENT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_refuses_to_wrap_onto_the_read_generation() {
        assert_eq!(advance_generation(0, 0), Ok(1));
        assert_eq!(advance_generation(u64::MAX, 0), Err(Errno::EBUSY));
        assert_eq!(
            advance_generation(u64::MAX - 1, u64::MAX),
            Err(Errno::EBUSY)
        );
        assert_eq!(advance_generation(u64::MAX, 5), Ok(0));
        assert_eq!(advance_generation(3, 5), Ok(4));
        assert_eq!(advance_generation(4, 5), Err(Errno::EBUSY));
    }

    #[test]
    fn kstrtouint_follows_the_kernel() {
        assert_eq!(kstrtouint(b"2\n"), Ok(2));
        assert_eq!(kstrtouint(b"+3"), Ok(3));
        assert_eq!(kstrtouint(b"0x3"), Ok(3));
        assert_eq!(kstrtouint(b"010"), Ok(8));
        assert_eq!(kstrtouint(b"0"), Ok(0));
        assert_eq!(kstrtouint(b"4294967295"), Ok(u32::MAX));
        assert_eq!(kstrtouint(b"4294967296"), Err(ERANGE));
        for bad in [
            &b""[..],
            b"\n",
            b"-1",
            b"1 ",
            b"1\n\n",
            b"\x00",
            b"\x01",
            b"08",
            b"x",
        ] {
            assert_eq!(kstrtouint(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(kstrtouint(b"1\0garbage"), Ok(1));
    }

    #[test]
    fn guid_parse_follows_the_kernel() {
        let g = guid_parse(b"c0b406a4-a803-4952-9743-3fb6014cd0ae\n").unwrap();
        assert_eq!(
            g,
            [
                0xa4, 0x06, 0xb4, 0xc0, 0x03, 0xa8, 0x52, 0x49, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c,
                0xd0, 0xae
            ]
        );
        assert!(guid_parse(b"c0b406a4a803-4952-9743-3fb6014cd0ae").is_err());
        assert!(guid_parse(b"c0b406a4-a803-4952-9743-3fb6014cd0a").is_err());
        assert!(guid_parse(b"g0b406a4-a803-4952-9743-3fb6014cd0ae").is_err());
    }
}
