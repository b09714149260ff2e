//! `/dev/cpu/N/msr` (Linux `arch/x86/kernel/msr.c`): `pread(fd, buf, 8, offset = MSR
//! index)` returns the 8-byte little-endian value; a read that is not a multiple of 8
//! bytes is `EINVAL`; an MSR the CPU does not implement faults in `rdmsr_safe_on_cpu`,
//! which the driver returns as `EIO`. Writes need `CAP_SYS_RAWIO` and are refused here
//! with `EIO` for every MSR a source does not accept (softsev models no writable MSR
//! through this file). frontends.md §2–§3 (snpguest `ok` reads SEV_STATUS 0xC0010131;
//! snphost `ok` reads SYSCFG 0xC0010010 and RMP_BASE/RMP_END 0xC0010132/0xC0010133).

use softsev_vfs::{Caller, Errno, NodeKind, VirtualFs};
use std::sync::Arc;

/// One provider of MSR values (the guest's SEV_STATUS, the host's SYSCFG and RMP range).
pub trait MsrSource: Send + Sync + std::fmt::Debug {
    /// The value of MSR `index`, or `None` if this source does not implement it.
    fn rdmsr(&self, index: u32) -> Option<u64>;
}

/// The MSR device file of one CPU: the first source that implements an index answers.
#[derive(Debug, Clone, Default)]
pub struct MsrFile {
    sources: Vec<Arc<dyn MsrSource>>,
}

impl MsrFile {
    /// An MSR file answering from `sources` in order.
    pub fn new(sources: Vec<Arc<dyn MsrSource>>) -> Self {
        MsrFile { sources }
    }

    /// Add a source after the existing ones.
    pub fn push(&mut self, source: Arc<dyn MsrSource>) {
        self.sources.push(source);
    }

    /// `rdmsr` as the driver performs it: `EIO` for an unimplemented MSR.
    pub fn rdmsr(&self, index: u32) -> Result<u64, Errno> {
        self.sources
            .iter()
            .find_map(|s| s.rdmsr(index))
            .ok_or(Errno::EIO)
    }
}

impl VirtualFs for MsrFile {
    /// Mounted directly on the file: the root is the device (`crw-------` on Linux; a
    /// regular file of mode 0600 here, frontends.md §7.3).
    fn kind(&self, path: &str) -> Option<NodeKind> {
        path.is_empty().then_some(NodeKind::File {
            mode: 0o600,
            size: 0,
        })
    }

    fn readdir(&self, _path: &str) -> Result<Vec<String>, Errno> {
        Err(Errno::ENOTDIR)
    }

    /// `msr_read`: `count % 8 != 0` → `EINVAL`; reads `count / 8` times the same MSR
    /// (the offset does not advance per register), each a `rdmsr` of `offset`.
    fn read(
        &self,
        _path: &str,
        _fh: u64,
        offset: u64,
        size: u32,
        _caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        if !size.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        let index = u32::try_from(offset).map_err(|_| Errno::EIO)?;
        let v = self.rdmsr(index)?;
        Ok((0..size / 8).flat_map(|_| v.to_le_bytes()).collect())
    }

    /// `msr_write`: `count % 8 != 0` → `EINVAL`; otherwise the `wrmsr` faults (`EIO`).
    fn write(
        &self,
        _path: &str,
        _fh: u64,
        _offset: u64,
        data: &[u8],
        _caller: &Caller,
    ) -> Result<u32, Errno> {
        if !data.len().is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        Err(Errno::EIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct One(u32, u64);
    impl MsrSource for One {
        fn rdmsr(&self, index: u32) -> Option<u64> {
            (index == self.0).then_some(self.1)
        }
    }

    const ROOT: Caller = Caller {
        pid: 1,
        uid: 0,
        gid: 0,
    };

    #[test]
    fn reads_follow_the_msr_driver() {
        let f = MsrFile::new(vec![
            Arc::new(One(0xC001_0131, 7)),
            Arc::new(One(0xC001_0131, 9)),
            Arc::new(One(0xC001_0010, 1 << 23)),
        ]);
        assert_eq!(
            f.read("", 0, 0xC001_0131, 8, &ROOT).unwrap(),
            7u64.to_le_bytes()
        );
        assert_eq!(
            f.read("", 0, 0xC001_0010, 16, &ROOT).unwrap(),
            [(1u64 << 23).to_le_bytes(), (1u64 << 23).to_le_bytes()].concat()
        );
        assert_eq!(f.read("", 0, 0xC001_0131, 4, &ROOT), Err(Errno::EINVAL));
        assert_eq!(f.read("", 0, 0x10, 8, &ROOT), Err(Errno::EIO));
        assert_eq!(f.read("", 0, 1 << 33, 8, &ROOT), Err(Errno::EIO));
        assert_eq!(f.write("", 0, 0xC001_0131, &[0; 8], &ROOT), Err(Errno::EIO));
        assert_eq!(
            f.kind(""),
            Some(NodeKind::File {
                mode: 0o600,
                size: 0
            })
        );
        assert_eq!(f.kind("x"), None);
    }
}
