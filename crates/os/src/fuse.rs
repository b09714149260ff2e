//! Serving a [`VirtualFs`] over FUSE (frontends.md §2.1, §3.3).
//!
//! `fuser` 0.18 without default features mounts with a direct `mount(2)` (no libfuse, no
//! fusermount; `AutoUnmount` would force fusermount, so it is never used). The mount
//! point may be a directory or a regular file: `fuser` takes `rootmode` from it, so a
//! file-rooted mount serves one device file (`/dev/sev-guest`, `/dev/cpu/0/msr`).
//!
//! Every mount is `allow_other` (non-root clients of the root server, §3.4) with
//! `default_permissions` (the kernel checks the mode bits the model reports), and every
//! file is opened with `FOPEN_DIRECT_IO`: attribute sizes are reported as the model says
//! (0 or 4096), so the page cache must not decide how much a read returns (§2.1).
//! Attributes and entries are never cached (TTL 0): configfs items appear and vanish.
//!
//! Ioctls arrive in FUSE's *restricted* form (`fs/fuse/ioctl.c`, `fuse_do_ioctl`): the
//! kernel copied `_IOC_SIZE(cmd)` bytes in and copies at most that many back whatever the
//! result. Pointers inside the structure are followed by the model through a
//! [`ProcessMemory`] on the caller's thread id from the request header. `fuser` does not
//! pass the raw `arg` of `fuse_ioctl_in` to the file system, so models receive 0 there
//! (none needs it: the structure itself is copied in).

use crate::memory::ProcessMemory;
use parking_lot::Mutex;
use softsev_vfs::{
    Caller, CallerMemory, Errno, Event, EventLog, FieldValue, NodeKind, OpenFlags, VirtualFs,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, IoctlFlags, LockOwner,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyWrite, Request, WriteFlags,
};

/// Decodes an ioctl's structure for the event log (e.g. the fields of
/// `snp_guest_request_ioctl` and the request it points to): `cmd`, the bytes the kernel
/// copied in, and the caller's memory for the embedded pointers. Called twice: before the
/// model answers with `reply = None` (request fields), and after with the bytes copied
/// back (reply fields; the caller's memory then holds what the model wrote).
pub type IoctlDecoder = fn(
    cmd: u32,
    input: &[u8],
    reply: Option<&[u8]>,
    mem: &dyn CallerMemory,
) -> Vec<(&'static str, FieldValue)>;

/// How one file system is served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The source name shown in `/proc/mounts` and in logged events (`softsev-<name>`).
    pub name: String,
    /// Where events go (`softsev exec --events`), if anywhere.
    pub log: Option<Arc<dyn EventLog>>,
    /// Decoder of ioctl structures for the log.
    pub decoder: Option<IoctlDecoder>,
    /// Serving threads (requests of different callers in parallel; the models serialise
    /// what the kernel serialises).
    pub threads: usize,
}

impl ServeOptions {
    /// Defaults: no log, no decoder, 4 threads.
    pub fn new(name: impl Into<String>) -> Self {
        ServeOptions {
            name: name.into(),
            log: None,
            decoder: None,
            threads: 4,
        }
    }
}

/// Errors of mounting a FUSE file system.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `/dev/fuse` could not be opened or `mount(2)` failed.
    #[error("mounting FUSE at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The model has no root node.
    #[error("the file system for {0} has no root (kind(\"\") is None)")]
    NoRoot(String),
    /// Unmounting failed.
    #[error("unmounting FUSE at {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// A mounted FUSE file system; unmounted (and its serving threads joined) by
/// [`Served::unmount`] or on drop.
#[derive(Debug)]
pub struct Served {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl Served {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmount and wait for the serving threads.
    pub fn unmount(mut self) -> Result<(), ServeError> {
        match self.session.take() {
            Some(s) => s.umount_and_join().map_err(|source| ServeError::Unmount {
                path: self.mountpoint.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && let Err(e) = s.umount_and_join()
        {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "unmounting: {e}");
        }
    }
}

/// Mount `fs` at `mountpoint` (an existing directory or regular file) and serve it on
/// background threads until the returned [`Served`] is dropped.
pub fn serve(
    fs: Arc<dyn VirtualFs>,
    mountpoint: &Path,
    opts: ServeOptions,
) -> Result<Served, ServeError> {
    let root = fs
        .kind("")
        .ok_or_else(|| ServeError::NoRoot(mountpoint.display().to_string()))?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("softsev-{}", opts.name)),
        fuser::MountOption::Subtype("softsev".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoSuid,
        fuser::MountOption::RW,
    ];
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(opts.threads.max(1));
    let adapter = Adapter {
        fs,
        source: mountpoint.display().to_string(),
        opts,
        nodes: Mutex::new(Nodes::new(root)),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    };
    let session =
        fuser::spawn_mount(adapter, mountpoint, &config).map_err(|source| ServeError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    Ok(Served {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// The inode table: paths by inode number and back. Inode 1 is the root (`""`).
#[derive(Debug)]
struct Nodes {
    by_ino: HashMap<u64, String>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Nodes {
    fn new(_root: NodeKind) -> Self {
        let mut n = Nodes {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: 2,
        };
        n.by_ino.insert(1, String::new());
        n.by_path.insert(String::new(), 1);
        n
    }

    fn path(&self, ino: INodeNo) -> Option<String> {
        self.by_ino.get(&ino.0).cloned()
    }

    fn ino(&mut self, path: &str) -> u64 {
        if let Some(i) = self.by_path.get(path) {
            return *i;
        }
        let i = self.next;
        self.next += 1;
        self.by_ino.insert(i, path.to_string());
        self.by_path.insert(path.to_string(), i);
        i
    }

    /// Forget `path` and everything below it (after rmdir), so a new item of the same
    /// name gets a fresh inode.
    fn forget_tree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let gone: Vec<String> = self
            .by_path
            .keys()
            .filter(|p| *p == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in gone {
            if let Some(i) = self.by_path.remove(&p) {
                self.by_ino.remove(&i);
            }
        }
    }
}

fn join(parent: &str, name: &OsStr) -> Result<String, Errno> {
    let name = name.to_str().ok_or(Errno::ENOENT)?;
    if name.is_empty() || name.contains('/') {
        return Err(Errno::ENOENT);
    }
    Ok(if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    })
}

fn ferr(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

const TTL: Duration = Duration::ZERO;

struct Adapter {
    fs: Arc<dyn VirtualFs>,
    source: String,
    opts: ServeOptions,
    nodes: Mutex<Nodes>,
    uid: u32,
    gid: u32,
}

impl Adapter {
    fn attr(&self, ino: u64, kind: NodeKind) -> FileAttr {
        let (ft, perm, size, nlink) = match kind {
            NodeKind::Dir { mode } => (FileType::Directory, mode, 0, 2),
            NodeKind::File { mode, size } => (FileType::RegularFile, mode, size, 1),
        };
        let t = SystemTime::UNIX_EPOCH;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: ft,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn path_of(&self, ino: INodeNo) -> Result<String, Errno> {
        self.nodes.lock().path(ino).ok_or(Errno::ENOENT)
    }

    fn log(
        &self,
        op: &'static str,
        path: &str,
        caller: Caller,
        fields: Vec<(&'static str, FieldValue)>,
        result: i64,
    ) {
        if let Some(log) = &self.opts.log {
            log.record(Event {
                source: self.source.clone(),
                op,
                path: path.to_string(),
                caller,
                fields,
                result,
            });
        }
    }

    fn entry(&self, path: &str, reply: ReplyEntry) {
        match self.fs.kind(path) {
            Some(k) => {
                let ino = self.nodes.lock().ino(path);
                reply.entry(&TTL, &self.attr(ino, k), Generation(0));
            }
            None => reply.error(fuser::Errno::ENOENT),
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        pid: req.pid(),
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn res<T>(r: &Result<T, Errno>, ok: impl Fn(&T) -> i64) -> i64 {
    match r {
        Ok(v) => ok(v),
        Err(e) => i64::from(e.negated()),
    }
}

impl fuser::Filesystem for Adapter {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = match self.path_of(parent).and_then(|p| join(&p, name)) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        self.entry(&path, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.path_of(ino).map(|p| self.fs.kind(&p)) {
            Ok(Some(k)) => reply.attr(&TTL, &self.attr(ino.0, k)),
            Ok(None) | Err(_) => reply.error(fuser::Errno::ENOENT),
        }
    }

    /// `O_TRUNC` and `truncate(2)` arrive here: sysfs, configfs and device files ignore
    /// a size change (nothing is stored), so the attributes are returned unchanged; mode
    /// and owner changes are refused as on those file systems.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(fuser::Errno::EPERM);
        }
        match self.path_of(ino).map(|p| self.fs.kind(&p)) {
            Ok(Some(k)) => reply.attr(&TTL, &self.attr(ino.0, k)),
            Ok(None) | Err(_) => reply.error(fuser::Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // `vfs_create` / `vfs_mknod` without a create operation: EACCES (sysfs, configfs).
        reply.error(fuser::Errno::EACCES);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(fuser::Errno::EACCES);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        // configfs attributes cannot be removed: `rm outblob` → EPERM (frontends.md §2.2).
        reply.error(fuser::Errno::EPERM);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let path = match self.path_of(parent).and_then(|p| join(&p, name)) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let r = self.fs.mkdir(&path, &caller(req));
        self.log("mkdir", &path, caller(req), vec![], res(&r, |_| 0));
        match r {
            Ok(()) => self.entry(&path, reply),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.path_of(parent).and_then(|p| join(&p, name)) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let r = self.fs.rmdir(&path, &caller(req));
        self.log("rmdir", &path, caller(req), vec![], res(&r, |_| 0));
        match r {
            Ok(()) => {
                self.nodes.lock().forget_tree(&path);
                reply.ok()
            }
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let of = match flags.acc_mode() {
            fuser::OpenAccMode::O_RDONLY => OpenFlags {
                read: true,
                write: false,
            },
            fuser::OpenAccMode::O_WRONLY => OpenFlags {
                read: false,
                write: true,
            },
            fuser::OpenAccMode::O_RDWR => OpenFlags {
                read: true,
                write: true,
            },
        };
        let r = self.fs.open(&path, of, &caller(req));
        self.log(
            "open",
            &path,
            caller(req),
            vec![
                ("read", FieldValue::U64(u64::from(of.read))),
                ("write", FieldValue::U64(u64::from(of.write))),
            ],
            res(&r, |_| 0),
        );
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let r = self.fs.read(&path, fh.0, offset, size, &caller(req));
        self.log(
            "read",
            &path,
            caller(req),
            vec![
                ("offset", FieldValue::U64(offset)),
                ("size", FieldValue::U64(u64::from(size))),
            ],
            res(&r, |d| d.len() as i64),
        );
        match r {
            Ok(mut d) => {
                d.truncate(size as usize);
                reply.data(&d)
            }
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let r = self.fs.write(&path, fh.0, offset, data, &caller(req));
        self.log(
            "write",
            &path,
            caller(req),
            vec![
                ("offset", FieldValue::U64(offset)),
                ("size", FieldValue::U64(data.len() as u64)),
            ],
            res(&r, |n| i64::from(*n)),
        );
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let r = self.fs.release(&path, fh.0, &caller(req));
        self.log("release", &path, caller(req), vec![], res(&r, |_| 0));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        let names = match self.fs.readdir(&path) {
            Ok(n) => n,
            Err(e) => return reply.error(ferr(e)),
        };
        let mut entries: Vec<(u64, FileType, String)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for n in names {
            let Ok(child) = join(&path, OsStr::new(&n)) else {
                continue;
            };
            let Some(k) = self.fs.kind(&child) else {
                continue;
            };
            let ft = match k {
                NodeKind::Dir { .. } => FileType::Directory,
                NodeKind::File { .. } => FileType::RegularFile,
            };
            let i = self.nodes.lock().ino(&child);
            entries.push((i, ft, n));
        }
        for (idx, (i, ft, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (idx + 1) as u64, ft, name) {
                break;
            }
        }
        reply.ok();
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        let path = match self.path_of(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(ferr(e)),
        };
        // Only restricted ioctls exist on regular files (fuse_file_ioctl passes flags 0);
        // an unrestricted one (CUSE) is not something this adapter can be asked.
        if flags.contains(IoctlFlags::FUSE_IOCTL_UNRESTRICTED) {
            return reply.error(fuser::Errno::ENOTTY);
        }
        let who = caller(req);
        let mem = ProcessMemory::new(who.pid);
        let mut fields = vec![
            ("cmd", FieldValue::Str(format!("{cmd:#x}"))),
            ("in", FieldValue::U64(in_data.len() as u64)),
            ("out_size", FieldValue::U64(u64::from(out_size))),
        ];
        if self.opts.log.is_some()
            && let Some(d) = self.opts.decoder
        {
            fields.extend(d(cmd, in_data, None, &mem));
        }
        let r = self
            .fs
            .ioctl(&path, fh.0, cmd, 0, in_data, out_size, &who, &mem);
        let mut out = r.out;
        out.truncate(out_size as usize);
        if self.opts.log.is_some() {
            fields.push(("out", FieldValue::Hex(out.clone())));
            if let Some(d) = self.opts.decoder {
                fields.extend(d(cmd, in_data, Some(&out), &mem));
            }
        }
        self.log("ioctl", &path, who, fields, i64::from(r.result));
        reply.ioctl(r.result, &out);
    }
}
