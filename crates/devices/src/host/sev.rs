//! `/dev/sev`: the ccp driver's one ioctl, `SEV_ISSUE_CMD = _IOWR('S', 0, struct
//! sev_issue_cmd)` = 0xC0105300 (frontends.md §5.3, sev-legacy.md §7.4; Linux
//! `drivers/crypto/ccp/sev-dev.c:sev_ioctl` and its `sev_ioctl_do_*` helpers,
//! `include/uapi/linux/psp-sev.h`).
//!
//! `sev_ioctl`: another ioctl is `-EINVAL`; `cmd > SEV_MAX` is `-EINVAL`; the commands
//! run under `sev_cmd_mutex`; an unknown command below SEV_MAX is `-EINVAL` without
//! the structure copied back; every known command copies the 16-byte structure back
//! with `error` = the status of the last firmware command issued (left as the caller
//! gave it when none was). Each helper's checks, in its order:
//!
//! | cmd | name | checks before the firmware |
//! |---|---|---|
//! | 0 | FACTORY_RESET | writable (`-EPERM`); PLATFORM_STATUS: WORKING → `-EBUSY`, INIT → SHUTDOWN |
//! | 1 | PLATFORM_STATUS | — (12 bytes to `data`) |
//! | 2, 4 | PEK_GEN, PDH_GEN | writable; INIT if the driver has not |
//! | 3 | PEK_CSR | writable; `{address, length}`; query if either is 0; length > 16 KiB → `-EFAULT`; INIT |
//! | 5 | PDH_CERT_EXPORT | not INIT: writable, then INIT; query if an address or `pdh_cert_len` is 0; a length > 16 KiB → `-EFAULT` |
//! | 6 | PEK_CERT_IMPORT | writable; each blob non-null, non-empty, ≤ 16 KiB (`-EINVAL`); INIT |
//! | 7 | GET_ID | — (128-byte kernel buffer, the bytes written copied to `data`) |
//! | 8 | GET_ID2 | `{address, length}`; query if either is 0; the length written back |
//! | 9 | SNP_PLATFORM_STATUS | SNP initialised and `data` ≠ 0 (`-EINVAL`) |
//! | 10 | SNP_COMMIT | SNP initialised (no writable check in `sev_ioctl_do_snp_commit`) |
//! | 11 | SNP_SET_CONFIG | SNP initialised and `data` ≠ 0; writable; 64 bytes |
//! | 12 | SNP_VLEK_LOAD | SNP initialised and `data` ≠ 0; writable; `len` = 16, version 0 (`-EINVAL`); the 432-byte hashstick |
//!
//! Firmware failures are `-EIO` (length queries included: INVALID_LENGTH with the
//! lengths written back). The blobs of PEK_CSR, PDH_CERT_EXPORT and GET_ID2 are copied
//! to the caller only when the firmware succeeded (the fixed driver: copying after a
//! failed command would read past a short kernel buffer).

use softsev_abi::FwStatus;
use softsev_abi::fw_buf::{SnpConfig, SnpVlekLoad, VlekWrapped};
use softsev_host::{
    KvmError, KvmResult, SevUserGetId2, SevUserPdhCertExport, SevUserPekCsr, SoftHost,
};
use softsev_vfs::{Caller, CallerMemory, Errno, IoctlReply, NodeKind, OpenFlags, VirtualFs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `SEV_ISSUE_CMD`: `_IOWR('S', 0x0, struct sev_issue_cmd)`.
pub const SEV_ISSUE_CMD: u32 = 0xC010_5300;
/// `SEV_MAX`: one past the last command (SNP_VLEK_LOAD = 12).
pub const SEV_MAX: u32 = 13;
/// `SEV_FW_BLOB_MAX_SIZE` (16 KiB).
const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;

softsev_abi::open_enum! {
    /// The `cmd` of `struct sev_issue_cmd` (psp-sev.h, the enum before `SEV_MAX`).
    pub struct SevIoctlCmd(u32) {
        /// Reset the platform's persistent state.
        SEV_FACTORY_RESET = 0,
        /// Legacy platform status.
        SEV_PLATFORM_STATUS = 1,
        /// New PEK (and OCA, PDH).
        SEV_PEK_GEN = 2,
        /// PEK certificate signing request.
        SEV_PEK_CSR = 3,
        /// New PDH.
        SEV_PDH_GEN = 4,
        /// PDH and its chain.
        SEV_PDH_CERT_EXPORT = 5,
        /// Import an owner-signed PEK and its OCA.
        SEV_PEK_CERT_IMPORT = 6,
        /// The chip id (deprecated form).
        SEV_GET_ID = 7,
        /// The chip id with a length query.
        SEV_GET_ID2 = 8,
        /// SNP platform status.
        SNP_PLATFORM_STATUS = 9,
        /// Commit the current TCB.
        SNP_COMMIT = 10,
        /// Set the reported TCB and the chip-id / chip-key masks.
        SNP_SET_CONFIG = 11,
        /// Load a wrapped VLEK.
        SNP_VLEK_LOAD = 12,
    }
}

/// `struct sev_issue_cmd` (16 bytes, `__packed`).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct SevIssueCmd {
    /// The command ([`SevIoctlCmd`]).
    pub cmd: u32,
    /// User address of the command's structure.
    pub data: u64,
    /// Out: the firmware status.
    pub error: u32,
}
softsev_abi::assert_layout!(SevIssueCmd, size = 16, cmd = 0, data = 4, error = 12);

/// `struct sev_user_data_pek_csr` / `sev_user_data_get_id2` (12 bytes, `__packed`):
/// a buffer address and its in/out length.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct UserBuf {
    address: u64,
    length: u32,
}
softsev_abi::assert_layout!(UserBuf, size = 12, address = 0, length = 8);

/// `struct sev_user_data_pek_cert_import` (24 bytes, `__packed`).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct UserPekCertImport {
    pek_cert_address: u64,
    pek_cert_len: u32,
    oca_cert_address: u64,
    oca_cert_len: u32,
}
softsev_abi::assert_layout!(
    UserPekCertImport,
    size = 24,
    pek_cert_address = 0,
    pek_cert_len = 8,
    oca_cert_address = 12,
    oca_cert_len = 20
);

/// `struct sev_user_data_pdh_cert_export` (24 bytes, `__packed`).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct UserPdhCertExport {
    pdh_cert_address: u64,
    pdh_cert_len: u32,
    cert_chain_address: u64,
    cert_chain_len: u32,
}
softsev_abi::assert_layout!(
    UserPdhCertExport,
    size = 24,
    pdh_cert_address = 0,
    pdh_cert_len = 8,
    cert_chain_address = 12,
    cert_chain_len = 20
);

/// One `SEV_ISSUE_CMD` as the device answered it (for an event log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SevEvent {
    /// The caller's thread id.
    pub pid: u32,
    /// `cmd` (see [`SevIoctlCmd`]).
    pub cmd: u32,
    /// Its name, when it has one.
    pub name: Option<&'static str>,
    /// `data` (the user address of the command's structure).
    pub data: u64,
    /// Whether the file was opened for writing.
    pub writable: bool,
    /// The ioctl's return value (0 or −errno).
    pub result: i32,
    /// `error` as copied back (`None` when the structure was not copied back).
    pub error: Option<u32>,
}

/// Called after each `SEV_ISSUE_CMD`.
pub type SevObserver = Arc<dyn Fn(&SevEvent) + Send + Sync>;

/// `/dev/sev` over one host. Mounted directly on the file (the root is the device;
/// mode 0600 as devtmpfs creates the misc device). The open mode travels in the file
/// handle: bit 0 read, bit 1 write.
pub struct SevDevice {
    host: Arc<SoftHost>,
    /// `sev_cmd_mutex`: one command at a time.
    lock: parking_lot::Mutex<()>,
    next_fh: AtomicU64,
    observer: Option<SevObserver>,
}

impl std::fmt::Debug for SevDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevDevice")
            .field("host", &self.host)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

const FH_READ: u64 = 1;
const FH_WRITE: u64 = 2;

impl SevDevice {
    /// `/dev/sev` of `host` (share the `Arc` with the guest's platform so both see one
    /// chip and firmware).
    pub fn new(host: Arc<SoftHost>) -> Self {
        SevDevice {
            host,
            lock: parking_lot::Mutex::new(()),
            next_fh: AtomicU64::new(1),
            observer: None,
        }
    }

    /// Report every `SEV_ISSUE_CMD` to `observer` (after it is answered).
    pub fn with_observer(mut self, observer: SevObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The host behind the device.
    pub fn host(&self) -> &Arc<SoftHost> {
        &self.host
    }

    /// `SEV_ISSUE_CMD` as `sev_ioctl` handles it: the structure `input` the kernel
    /// copied in, the open mode, the caller's memory. The reply copies the structure
    /// back (with `error`) for every known command.
    pub fn issue(&self, input: &[u8], writable: bool, mem: &dyn CallerMemory) -> IoctlReply {
        let Ok((mut c, _)) = SevIssueCmd::read_from_prefix(input) else {
            return IoctlReply::err(Errno::EFAULT);
        };
        let (cmd, data, error_in) = (c.cmd, c.data, c.error);
        if cmd > SEV_MAX {
            tracing::debug!(cmd, "SEV_ISSUE_CMD: command above SEV_MAX");
            return IoctlReply::err(Errno::EINVAL);
        }
        let _serialise = self.lock.lock();
        let Some(r) = self.dispatch(SevIoctlCmd(cmd), &mut c, writable, mem) else {
            tracing::debug!(cmd, "SEV_ISSUE_CMD: unknown command");
            return IoctlReply::err(Errno::EINVAL);
        };
        let result = r.map_or_else(|e| e.negated(), |()| 0);
        let error = c.error;
        tracing::debug!(
            cmd = ?SevIoctlCmd(cmd),
            data = format_args!("{data:#x}"),
            writable,
            error_in,
            error,
            result,
            "SEV_ISSUE_CMD"
        );
        IoctlReply::with_out(result, c.as_bytes().to_vec())
    }

    /// One command; `None` for a number without a helper (the driver's `default:`).
    fn dispatch(
        &self,
        cmd: SevIoctlCmd,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Option<Result<(), Errno>> {
        let h = &*self.host;
        Some(match cmd {
            SevIoctlCmd::SEV_FACTORY_RESET => {
                if writable {
                    fw(c, h.sev_factory_reset())
                } else {
                    Err(Errno::EPERM)
                }
            }
            SevIoctlCmd::SEV_PLATFORM_STATUS => {
                fw(c, h.sev_platform_status()).and_then(|st| mem.write(c.data, st.as_bytes()))
            }
            SevIoctlCmd::SEV_PEK_GEN => gen_cmd(c, writable, || h.sev_pek_gen()),
            SevIoctlCmd::SEV_PDH_GEN => gen_cmd(c, writable, || h.sev_pdh_gen()),
            SevIoctlCmd::SEV_PEK_CSR => self.pek_csr(c, writable, mem),
            SevIoctlCmd::SEV_PDH_CERT_EXPORT => self.pdh_export(c, writable, mem),
            SevIoctlCmd::SEV_PEK_CERT_IMPORT => self.pek_import(c, writable, mem),
            SevIoctlCmd::SEV_GET_ID => fw(c, h.sev_get_id()).and_then(|id| mem.write(c.data, &id)),
            SevIoctlCmd::SEV_GET_ID2 => self.get_id2(c, mem),
            SevIoctlCmd::SNP_PLATFORM_STATUS => {
                if !h.snp_platform_initialised() || c.data == 0 {
                    Err(Errno::EINVAL)
                } else {
                    fw(c, h.snp_platform_status()).and_then(|st| mem.write(c.data, st.as_bytes()))
                }
            }
            SevIoctlCmd::SNP_COMMIT => {
                if h.snp_platform_initialised() {
                    fw(c, h.snp_commit())
                } else {
                    Err(Errno::EINVAL)
                }
            }
            SevIoctlCmd::SNP_SET_CONFIG => self.snp_set_config(c, writable, mem),
            SevIoctlCmd::SNP_VLEK_LOAD => self.snp_vlek_load(c, writable, mem),
            _ => return None,
        })
    }

    /// `sev_ioctl_do_pek_csr`.
    fn pek_csr(
        &self,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        if !writable {
            return Err(Errno::EPERM);
        }
        let input: UserBuf = read_struct(mem, c.data)?;
        let (address, length) = (input.address, input.length);
        let query = address == 0 || length == 0;
        if !query && length > SEV_FW_BLOB_MAX_SIZE {
            return Err(Errno::EFAULT);
        }
        self.init_platform(c)?;
        let mut arg = SevUserPekCsr {
            data: (!query).then(Vec::new),
            length: if query { 0 } else { length },
        };
        let r = fw(c, self.host.sev_pek_csr(&mut arg));
        let back = UserBuf {
            address,
            length: arg.length,
        };
        mem.write(c.data, back.as_bytes())?;
        r?;
        if let Some(blob) = arg.data {
            mem.write(address, &blob)?;
        }
        Ok(())
    }

    /// `sev_ioctl_do_pdh_export`.
    fn pdh_export(
        &self,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        if !self.host.sev_platform_initialised() {
            if !writable {
                return Err(Errno::EPERM);
            }
            self.init_platform(c)?;
        }
        let input: UserPdhCertExport = read_struct(mem, c.data)?;
        let (pdh_addr, pdh_len) = (input.pdh_cert_address, input.pdh_cert_len);
        let (chain_addr, chain_len) = (input.cert_chain_address, input.cert_chain_len);
        let query = pdh_addr == 0 || pdh_len == 0 || chain_addr == 0;
        if !query && (pdh_len > SEV_FW_BLOB_MAX_SIZE || chain_len > SEV_FW_BLOB_MAX_SIZE) {
            return Err(Errno::EFAULT);
        }
        let mut arg = SevUserPdhCertExport {
            pdh_cert: (!query).then(Vec::new),
            pdh_cert_len: if query { 0 } else { pdh_len },
            cert_chain: (!query).then(Vec::new),
            cert_chain_len: if query { 0 } else { chain_len },
        };
        let r = fw(c, self.host.sev_pdh_cert_export(&mut arg));
        let back = UserPdhCertExport {
            pdh_cert_address: pdh_addr,
            pdh_cert_len: arg.pdh_cert_len,
            cert_chain_address: chain_addr,
            cert_chain_len: arg.cert_chain_len,
        };
        mem.write(c.data, back.as_bytes())?;
        r?;
        if !query {
            if let Some(p) = &arg.pdh_cert {
                mem.write(pdh_addr, p)?;
            }
            if let Some(ch) = &arg.cert_chain {
                mem.write(chain_addr, ch)?;
            }
        }
        Ok(())
    }

    /// `sev_ioctl_do_pek_import`.
    fn pek_import(
        &self,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        if !writable {
            return Err(Errno::EPERM);
        }
        let input: UserPekCertImport = read_struct(mem, c.data)?;
        let pek = copy_user_blob(mem, input.pek_cert_address, input.pek_cert_len)?;
        let oca = copy_user_blob(mem, input.oca_cert_address, input.oca_cert_len)?;
        fw(c, self.host.sev_pek_cert_import(&pek, &oca))
    }

    /// `sev_ioctl_do_get_id2`.
    fn get_id2(&self, c: &mut SevIssueCmd, mem: &dyn CallerMemory) -> Result<(), Errno> {
        let input: UserBuf = read_struct(mem, c.data)?;
        let (address, length) = (input.address, input.length);
        let query = address == 0 || length == 0;
        // The driver's limit on the kernel buffer, before the firmware is asked
        // (nothing is copied back then).
        if !query && length > SEV_FW_BLOB_MAX_SIZE {
            return Err(Errno::EFAULT);
        }
        let mut arg = SevUserGetId2 {
            data: (!query).then(Vec::new),
            length: if query { 0 } else { length },
        };
        let r = fw(c, self.host.sev_get_id2_any_state(&mut arg));
        let back = UserBuf {
            address,
            length: arg.length,
        };
        mem.write(c.data, back.as_bytes())?;
        r?;
        if let Some(id) = arg.data {
            mem.write(address, &id)?;
        }
        Ok(())
    }

    /// `sev_ioctl_do_snp_set_config`.
    fn snp_set_config(
        &self,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        if !self.host.snp_platform_initialised() || c.data == 0 {
            return Err(Errno::EINVAL);
        }
        if !writable {
            return Err(Errno::EPERM);
        }
        let config: SnpConfig = read_struct(mem, c.data)?;
        fw(c, self.host.snp_set_config(&config))
    }

    /// `sev_ioctl_do_snp_vlek_load`.
    fn snp_vlek_load(
        &self,
        c: &mut SevIssueCmd,
        writable: bool,
        mem: &dyn CallerMemory,
    ) -> Result<(), Errno> {
        if !self.host.snp_platform_initialised() || c.data == 0 {
            return Err(Errno::EINVAL);
        }
        if !writable {
            return Err(Errno::EPERM);
        }
        let input: SnpVlekLoad = read_struct(mem, c.data)?;
        if input.length as usize != SnpVlekLoad::LEN || input.vlek_wrapped_version != 0 {
            return Err(Errno::EINVAL);
        }
        let raw = copy_user_blob(mem, input.vlek_wrapped_paddr, VlekWrapped::LEN as u32)?;
        let mut blob = [0u8; VlekWrapped::LEN];
        blob.copy_from_slice(&raw);
        fw(c, self.host.snp_vlek_load(&input, &blob))
    }

    /// `__sev_platform_init_locked(&argp->error)` if the driver has not initialised
    /// the legacy platform.
    fn init_platform(&self, c: &mut SevIssueCmd) -> Result<(), Errno> {
        if self.host.sev_platform_initialised() {
            return Ok(());
        }
        fw(c, self.host.sev_platform_init())
    }
}

/// `sev_ioctl_do_pek_pdh_gen`: writable, then the host's INIT-if-needed + command.
fn gen_cmd(
    c: &mut SevIssueCmd,
    writable: bool,
    f: impl FnOnce() -> KvmResult,
) -> Result<(), Errno> {
    if !writable {
        return Err(Errno::EPERM);
    }
    fw(c, f())
}

/// A host result as the driver returns it: the errno, and `error` = the firmware
/// status of the last command (0 after a success; unchanged when the failure came
/// before any command).
fn fw<T>(c: &mut SevIssueCmd, r: KvmResult<T>) -> Result<T, Errno> {
    match r {
        Ok(v) => {
            c.error = FwStatus::SUCCESS.0;
            Ok(v)
        }
        Err(KvmError { errno, fw, reason }) => {
            if let Some(s) = fw {
                c.error = s.0;
            }
            tracing::debug!(errno = errno.0, %reason, "/dev/sev command failed");
            Err(Errno(errno.0))
        }
    }
}

/// `copy_from_user` of a whole structure.
fn read_struct<T: FromBytes + IntoBytes>(mem: &dyn CallerMemory, addr: u64) -> Result<T, Errno> {
    let mut v = T::new_zeroed();
    mem.read(addr, v.as_mut_bytes())?;
    Ok(v)
}

/// `psp_copy_user_blob`: a null address, a zero or an over-16 KiB length is `-EINVAL`;
/// then `memdup_user` (`-EFAULT`).
fn copy_user_blob(mem: &dyn CallerMemory, addr: u64, len: u32) -> Result<Vec<u8>, Errno> {
    if addr == 0 || len == 0 || len > SEV_FW_BLOB_MAX_SIZE {
        return Err(Errno::EINVAL);
    }
    let mut v = vec![0u8; len as usize];
    mem.read(addr, &mut v)?;
    Ok(v)
}

impl VirtualFs for SevDevice {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        path.is_empty().then_some(NodeKind::File {
            mode: 0o600,
            size: 0,
        })
    }

    fn readdir(&self, _path: &str) -> Result<Vec<String>, Errno> {
        Err(Errno::ENOTDIR)
    }

    fn open(&self, path: &str, flags: OpenFlags, _caller: &Caller) -> Result<u64, Errno> {
        if !path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let n = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut fh = n << 2;
        if flags.read {
            fh |= FH_READ;
        }
        if flags.write {
            fh |= FH_WRITE;
        }
        Ok(fh)
    }

    /// `sev_fops` has only `unlocked_ioctl`: `read(2)` and `write(2)` are `-EINVAL`
    /// (the VFS default), as the trait's defaults already answer.
    fn ioctl(
        &self,
        path: &str,
        fh: u64,
        cmd: u32,
        _arg: u64,
        input: &[u8],
        _out_size: u32,
        caller: &Caller,
        mem: &dyn CallerMemory,
    ) -> IoctlReply {
        if !path.is_empty() {
            return IoctlReply::err(Errno::ENOENT);
        }
        if cmd != SEV_ISSUE_CMD {
            return IoctlReply::err(Errno::EINVAL);
        }
        let writable = fh & FH_WRITE != 0;
        let reply = self.issue(input, writable, mem);
        if let Some(o) = &self.observer {
            let c = SevIssueCmd::read_from_prefix(input)
                .map(|(c, _)| c)
                .unwrap_or_default();
            let back = SevIssueCmd::read_from_bytes(&reply.out).ok();
            o(&SevEvent {
                pid: caller.pid,
                cmd: c.cmd,
                name: SevIoctlCmd(c.cmd).name(),
                data: c.data,
                writable,
                result: reply.result,
                error: back.map(|b| b.error),
            });
        }
        reply
    }
}
