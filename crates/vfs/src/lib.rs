//! The seam between softsev's OS adapter and its device models.
//!
//! A front end (`/dev/sev-guest`, configfs-tsm, `/dev/sev`, MSR files, sysfs attributes)
//! is a [`VirtualFs`]: a small tree of directories and files addressed by paths relative
//! to where it is mounted. The OS adapter (softsev-os) serves it over FUSE; tests drive it
//! directly. The operations carry exactly what a FUSE server learns from the kernel
//! (frontends.md §3.3): the caller's thread id and credentials, the open flags, and for an
//! ioctl on a regular file the *restricted* form — the command, its argument, the
//! `_IOC_SIZE` bytes the kernel copied in, and how many bytes it will copy back. Memory
//! behind pointers embedded in an ioctl structure is reached through [`CallerMemory`]
//! (process_vm_readv/writev in the adapter, a buffer in tests), so `copy_from_user` /
//! `copy_to_user` and their `EFAULT` are reproduced by the device model itself.
//!
//! Errors are Linux errno values ([`Errno`]); a device model returns what the kernel
//! driver it imitates would return.

use std::fmt;

/// A Linux errno value (positive, as in `<errno.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// I/O error.
    pub const EIO: Errno = Errno(5);
    /// No such device or address.
    pub const ENXIO: Errno = Errno(6);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Permission denied.
    pub const EACCES: Errno = Errno(13);
    /// Bad address.
    pub const EFAULT: Errno = Errno(14);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// File exists.
    pub const EEXIST: Errno = Errno(17);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(20);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(21);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// File too large.
    pub const EFBIG: Errno = Errno(27);
    /// Inappropriate ioctl for device.
    pub const ENOTTY: Errno = Errno(25);
    /// Read-only file system.
    pub const EROFS: Errno = Errno(30);
    /// Function not implemented.
    pub const ENOSYS: Errno = Errno(38);
    /// Directory not empty.
    pub const ENOTEMPTY: Errno = Errno(39);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(95);
    /// Connection timed out (the sev-guest driver's give-up after busy retries).
    pub const ETIMEDOUT: Errno = Errno(110);

    /// The negative return value a system call reports for this errno.
    pub fn negated(self) -> i32 {
        -self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errno {}", self.0)
    }
}

impl std::error::Error for Errno {}

/// Who performs an operation: from the FUSE request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The calling thread's id in the server's pid namespace (what process_vm_* take).
    pub pid: u32,
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
}

/// How a file was opened (what `O_ACCMODE` allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing (`/dev/sev` requires it for state-changing commands).
    pub write: bool,
}

/// The caller's address space, for the pointers inside an ioctl structure.
pub trait CallerMemory {
    /// `copy_from_user`: `EFAULT` if any byte is unreadable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// `copy_to_user`: `EFAULT` if any byte is unwritable.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno>;
}

/// The reply to a restricted ioctl: FUSE copies `out` (at most the `_IOC_SIZE` of the
/// command) back into the caller's structure whatever `result` is, and the ioctl returns
/// `result` (`-errno` for a failure), frontends.md §3.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlReply {
    /// The system call's return value: 0 or positive, or a negated errno.
    pub result: i32,
    /// Bytes copied back into the ioctl structure (empty: the structure is untouched).
    pub out: Vec<u8>,
}

impl IoctlReply {
    /// Success without copying anything back.
    pub fn ok() -> Self {
        IoctlReply {
            result: 0,
            out: Vec::new(),
        }
    }

    /// Failure with `errno`, copying nothing back.
    pub fn err(errno: Errno) -> Self {
        IoctlReply {
            result: errno.negated(),
            out: Vec::new(),
        }
    }

    /// Return `result` (0 or `-errno`) and copy `out` back.
    pub fn with_out(result: i32, out: Vec<u8>) -> Self {
        IoctlReply { result, out }
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir {
        /// Permission bits (e.g. 0o755).
        mode: u16,
    },
    /// A regular file (device nodes are regular files here: CUSE is absent, frontends.md §7.3).
    File {
        /// Permission bits (e.g. 0o666 for `/dev/sev-guest`, 0o200 for a write-only attribute).
        mode: u16,
        /// The size `stat` reports (sysfs and configfs report 4096 for text attributes, 0 for devices).
        size: u64,
    },
}

/// A tree of directories and files served at one mount point. Paths are relative to the
/// mount root, `/`-separated, without a leading slash; `""` is the root itself.
///
/// Every method has the kernel's answer for a file that does not support the operation
/// as its default, so a model implements only what its files do.
pub trait VirtualFs: Send + Sync + 'static {
    /// What `path` is, or `None` if it does not exist (`ENOENT`).
    fn kind(&self, path: &str) -> Option<NodeKind>;

    /// The names in directory `path` (without `.` and `..`).
    fn readdir(&self, path: &str) -> Result<Vec<String>, Errno>;

    /// `open(2)`: a file handle passed to the later calls on this open file.
    fn open(&self, path: &str, flags: OpenFlags, caller: &Caller) -> Result<u64, Errno> {
        let _ = (path, flags, caller);
        Ok(0)
    }

    /// The last close of an open file (configfs commits a binary attribute here).
    fn release(&self, path: &str, fh: u64, caller: &Caller) -> Result<(), Errno> {
        let _ = (path, fh, caller);
        Ok(())
    }

    /// `pread(2)` of up to `size` bytes at `offset`.
    fn read(
        &self,
        path: &str,
        fh: u64,
        offset: u64,
        size: u32,
        caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        let _ = (path, fh, offset, size, caller);
        Err(Errno::EINVAL)
    }

    /// `pwrite(2)` of `data` at `offset`: the number of bytes taken.
    fn write(
        &self,
        path: &str,
        fh: u64,
        offset: u64,
        data: &[u8],
        caller: &Caller,
    ) -> Result<u32, Errno> {
        let _ = (path, fh, offset, data, caller);
        Err(Errno::EINVAL)
    }

    /// `mkdir(2)` of `path` (its parent exists).
    fn mkdir(&self, path: &str, caller: &Caller) -> Result<(), Errno> {
        let _ = (path, caller);
        Err(Errno::EPERM)
    }

    /// `rmdir(2)` of `path`.
    fn rmdir(&self, path: &str, caller: &Caller) -> Result<(), Errno> {
        let _ = (path, caller);
        Err(Errno::EPERM)
    }

    /// A restricted ioctl on the open file `fh`: `input` holds the `_IOC_SIZE(cmd)` bytes
    /// the kernel copied in (empty for `_IOC_NONE`/`_IOC_READ`), `out_size` how many it
    /// will copy back at most.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        path: &str,
        fh: u64,
        cmd: u32,
        arg: u64,
        input: &[u8],
        out_size: u32,
        caller: &Caller,
        mem: &dyn CallerMemory,
    ) -> IoctlReply {
        let _ = (path, fh, cmd, arg, input, out_size, caller, mem);
        IoctlReply::err(Errno::ENOTTY)
    }
}

/// A decoded value in a logged [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// An unsigned number (lengths, addresses, statuses).
    U64(u64),
    /// A signed number (system-call results).
    I64(i64),
    /// Text (a path, a command name).
    Str(String),
    /// Bytes, logged as lowercase hex.
    Hex(Vec<u8>),
}

/// One operation on a served file, as `softsev exec --log` records it (one JSON line
/// each): which mount, which operation, on what path, by whom, the decoded fields and
/// the result the caller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Where the file system is served (e.g. `/dev/sev-guest`, `kds`).
    pub source: String,
    /// The operation: `open`, `release`, `read`, `write`, `ioctl`, `mkdir`, `rmdir`,
    /// or a service's own verb (`GET` for the KDS).
    pub op: &'static str,
    /// The path relative to the mount root (`""` for the root).
    pub path: String,
    /// Who asked.
    pub caller: Caller,
    /// Decoded request and reply fields, in order.
    pub fields: Vec<(&'static str, FieldValue)>,
    /// What the caller got: bytes transferred, 0, or a negated errno.
    pub result: i64,
}

/// A sink for [`Event`]s (the `--log` file; a vector in tests). Must not block for long:
/// it is called on the serving threads.
pub trait EventLog: Send + Sync + fmt::Debug {
    /// Record one event.
    fn record(&self, event: Event);
}

/// An [`EventLog`] keeping every event in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryLog {
    events: std::sync::Mutex<Vec<Event>>,
}

impl MemoryLog {
    /// A copy of the events recorded so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventLog for MemoryLog {
    fn record(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }
}

/// A [`CallerMemory`] over one flat buffer at a base address, for tests and in-process
/// callers: any access outside `[base, base + len)` is `EFAULT`.
#[derive(Debug)]
pub struct BufferMemory {
    base: u64,
    bytes: std::sync::Mutex<Vec<u8>>,
}

impl BufferMemory {
    /// `len` zero bytes at `base`.
    pub fn new(base: u64, len: usize) -> Self {
        BufferMemory {
            base,
            bytes: std::sync::Mutex::new(vec![0; len]),
        }
    }

    /// A copy of the whole buffer.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means a panicking test thread; the bytes are still valid.
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn range(&self, addr: u64, len: usize, have: usize) -> Result<std::ops::Range<usize>, Errno> {
        let off = addr.checked_sub(self.base).ok_or(Errno::EFAULT)?;
        let off = usize::try_from(off).map_err(|_| Errno::EFAULT)?;
        let end = off.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > have {
            return Err(Errno::EFAULT);
        }
        Ok(off..end)
    }
}

impl CallerMemory for BufferMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let b = self.lock();
        let r = self.range(addr, buf.len(), b.len())?;
        buf.copy_from_slice(&b[r]);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let mut b = self.lock();
        let r = self.range(addr, data.len(), b.len())?;
        b[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_memory_faults_outside_its_range() {
        let m = BufferMemory::new(0x1000, 16);
        m.write(0x1004, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 3];
        m.read(0x1004, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(m.read(0xfff, &mut b), Err(Errno::EFAULT));
        assert_eq!(m.write(0x100e, &[0; 3]), Err(Errno::EFAULT));
        assert_eq!(m.read(u64::MAX, &mut b), Err(Errno::EFAULT));
    }

    #[test]
    fn errno_values_are_linux_x86_64() {
        assert_eq!(Errno::ENOTTY.negated(), -25);
        assert_eq!(Errno::EIO.0, 5);
        assert_eq!(IoctlReply::err(Errno::EINVAL).result, -22);
    }

    #[test]
    fn memory_log_keeps_events_in_order() {
        let log = MemoryLog::default();
        let caller = Caller {
            pid: 7,
            uid: 0,
            gid: 0,
        };
        for (op, r) in [("open", 0), ("ioctl", -5)] {
            log.record(Event {
                source: "/dev/sev-guest".into(),
                op,
                path: String::new(),
                caller,
                fields: vec![("cmd", FieldValue::U64(0xc020_5302))],
                result: r,
            });
        }
        let ev = log.events();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].op, ev[1].op, ev[1].result), ("open", "ioctl", -5));
    }
}
