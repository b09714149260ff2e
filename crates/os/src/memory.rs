//! The caller's address space over `process_vm_readv` / `process_vm_writev`
//! (frontends.md §3.3): the FUSE request header carries the calling thread's id, and a
//! root server may read and write that thread's memory while it sleeps in the ioctl —
//! `copy_from_user` / `copy_to_user`, including `EFAULT` for a bad pointer.

use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;
use softsev_vfs::{CallerMemory, Errno};
use std::io::{IoSlice, IoSliceMut};

/// The memory of one thread (its id as the FUSE header gives it).
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: u32,
}

impl ProcessMemory {
    /// The memory of thread `pid`.
    pub fn new(pid: u32) -> Self {
        ProcessMemory { pid }
    }

    fn target(&self, addr: u64, len: usize) -> Result<(Pid, RemoteIoVec), Errno> {
        // pid 0: the caller is not visible in our pid namespace (frontends.md §3.4).
        let pid = i32::try_from(self.pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(Errno::EFAULT)?;
        let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
        base.checked_add(len).ok_or(Errno::EFAULT)?;
        Ok((Pid::from_raw(pid), RemoteIoVec { base, len }))
    }
}

impl CallerMemory for ProcessMemory {
    /// A short or failed transfer is `EFAULT`, as `copy_from_user` reports a fault.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        let (pid, remote) = self.target(addr, buf.len())?;
        let want = buf.len();
        match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &[remote]) {
            Ok(n) if n == want => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// A short or failed transfer is `EFAULT`, as `copy_to_user` reports a fault.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let (pid, remote) = self.target(addr, data.len())?;
        match process_vm_writev(pid, &[IoSlice::new(data)], &[remote]) {
            Ok(n) if n == data.len() => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_round_trips_and_bad_pointers_fault() {
        // Our own process: root or not, a process may always access itself.
        let me = ProcessMemory::new(std::process::id());
        let src = [1u8, 2, 3, 4, 5];
        let mut dst = [0u8; 5];
        me.read(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        let mut target = vec![0u8; 8];
        me.write(target.as_mut_ptr() as u64 + 2, &[9, 9]).unwrap();
        assert_eq!(target, [0, 0, 9, 9, 0, 0, 0, 0]);
        assert_eq!(me.read(8, &mut dst), Err(Errno::EFAULT));
        assert_eq!(me.write(u64::MAX - 1, &[1, 2, 3]), Err(Errno::EFAULT));
        assert_eq!(
            ProcessMemory::new(0).read(src.as_ptr() as u64, &mut dst),
            Err(Errno::EFAULT)
        );
    }
}
