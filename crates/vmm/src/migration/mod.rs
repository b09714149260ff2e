//! Snapshot and migration of SEV / SEV-ES guests, QEMU-shaped (shared/spec/sev-legacy.md
//! §5, §5.7, §7.2; QEMU `migration/migration.c`, `qapi/migration.json`, and the SEV
//! live-migration series of Brijesh Singh and Ashish Kalra, which named the target's
//! certificates `sev-pdh`, `sev-plat-cert` and `sev-amd-cert`).
//!
//! * [`stream`]: "softsev migration stream v1", its writer and its checking reader.
//! * [`MigrationUri`]: `file:PATH`, `unix:PATH`, `exec:CMD` as `migrate` and
//!   `-incoming` take them (QEMU `migrate_uri_parse`), and the byte channels they open.
//! * [`MigrationParameters`]: what `migrate-set-parameters` sets and
//!   `query-migrate-parameters` shows.
//! * [`MigrationStatus`], [`MigrationInfo`]: `query-migrate` and the `MIGRATION` event.
//! * [`sev`]: the SEV / SEV-ES engine over the host's SEND_* / RECEIVE_* API — live
//!   pre-copy with dirty logging, stop-and-copy, snapshot to a file and restore.
//!
//! Upstream QEMU blocks migration of every SEV guest ("SEV: Migration is not
//! implemented", `target/i386/sev.c:sev_launch_finish`); softsev implements it as the
//! firmware API intends and keeps QEMU's block for SEV-SNP guests
//! ([`SNP_MIGRATION_BLOCKER`]).

pub mod sev;
pub mod stream;

use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// QEMU's migration blocker for SEV-SNP guests (`target/i386/sev.c:
/// sev_snp_launch_finish`), which `migrate` reports (`migration_is_blocked` copies the
/// first blocker's error).
pub const SNP_MIGRATION_BLOCKER: &str = "SEV-SNP: Migration is not implemented";

/// QEMU's default `max-bandwidth`, bytes per second (`migration/options.c`
/// `MAX_THROTTLE`, 128 MiB/s).
pub const DEFAULT_MAX_BANDWIDTH: u64 = 128 << 20;
/// QEMU's default `downtime-limit`, milliseconds (`DEFAULT_MIGRATE_SET_DOWNTIME`).
pub const DEFAULT_DOWNTIME_LIMIT_MS: u64 = 300;
/// QEMU's largest `downtime-limit`, milliseconds (`MAX_MIGRATE_DOWNTIME`, 2000 s).
pub const MAX_DOWNTIME_LIMIT_MS: u64 = 2_000_000;

/// Where a stream goes (`migrate`) or comes from (`-incoming`, `migrate-incoming`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MigrationUri {
    /// `file:PATH[,offset=N]`.
    File {
        /// The file.
        path: PathBuf,
        /// Byte offset of the stream in the file.
        offset: u64,
    },
    /// `unix:PATH`: the source connects, the target listens.
    Unix(PathBuf),
    /// `exec:CMD`: `/bin/sh -c CMD`, the stream on its stdin (source) or stdout (target).
    Exec(String),
}

impl MigrationUri {
    /// Parse a URI as QEMU's `migrate_uri_parse` does for the transports softsev has
    /// (`tcp:`, `rdma:`, `vsock:` and `fd:` are refused with a reason).
    pub fn parse(uri: &str) -> Result<MigrationUri, String> {
        if let Some(rest) = uri.strip_prefix("file:") {
            // QEMU file_parse_offset: ",offset=" then a size.
            let (path, offset) = match rest.rsplit_once(",offset=") {
                Some((p, o)) => {
                    let off =
                        parse_size(o).ok_or_else(|| format!("file URI has bad offset {o}"))?;
                    (p, off)
                }
                None => (rest, 0),
            };
            if path.is_empty() {
                return Err(format!("unknown migration protocol: {uri}"));
            }
            return Ok(MigrationUri::File {
                path: PathBuf::from(path),
                offset,
            });
        }
        if let Some(p) = uri.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("unknown migration protocol: {uri}"));
            }
            return Ok(MigrationUri::Unix(PathBuf::from(p)));
        }
        if let Some(c) = uri.strip_prefix("exec:") {
            return Ok(MigrationUri::Exec(c.to_string()));
        }
        for (scheme, what) in [
            ("tcp:", "TCP sockets"),
            ("rdma:", "RDMA"),
            ("vsock:", "vsock"),
            ("fd:", "file descriptors passed over the monitor"),
        ] {
            if uri.starts_with(scheme) {
                return Err(format!(
                    "unknown migration protocol: {uri} (softsev migrates over file:, unix: \
                     and exec:, not {what})"
                ));
            }
        }
        Err(format!("unknown migration protocol: {uri}"))
    }

    /// The URI as text.
    pub fn to_uri(&self) -> String {
        match self {
            MigrationUri::File { path, offset: 0 } => format!("file:{}", path.display()),
            MigrationUri::File { path, offset } => {
                format!("file:{},offset={offset}", path.display())
            }
            MigrationUri::Unix(p) => format!("unix:{}", p.display()),
            MigrationUri::Exec(c) => format!("exec:{c}"),
        }
    }

    /// Open the outgoing channel. A `file:` target is written to `PATH.tmp` and renamed
    /// when complete ([`Outgoing::commit`]); an existing file is never overwritten.
    pub fn open_outgoing(&self) -> io::Result<Outgoing> {
        match self {
            MigrationUri::File { path, offset } => {
                if *offset != 0 {
                    return Err(io::Error::other(
                        "softsev writes a stream at offset 0 of a new file",
                    ));
                }
                if path.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists; softsev never overwrites a file", path.display()),
                    ));
                }
                let tmp = tmp_path(path);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("creating {}: {e}", tmp.display()))
                    })?;
                Ok(Outgoing::File {
                    out: io::BufWriter::with_capacity(1 << 20, f),
                    tmp,
                    path: path.clone(),
                })
            }
            MigrationUri::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p).map_err(|e| {
                    io::Error::new(e.kind(), format!("connecting to {}: {e}", p.display()))
                })?;
                Ok(Outgoing::Stream(Box::new(io::BufWriter::with_capacity(
                    1 << 20,
                    s,
                ))))
            }
            MigrationUri::Exec(cmd) => {
                let mut child = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::piped())
                    .spawn()?;
                let stdin = child
                    .stdin
                    .take()
                    .ok_or_else(|| io::Error::other("exec: no stdin pipe"))?;
                Ok(Outgoing::Exec {
                    child,
                    stdin: Some(io::BufWriter::with_capacity(1 << 20, stdin)),
                })
            }
        }
    }

    /// Open the incoming channel: the file (from its offset), a listening socket's
    /// first connection, or the command's stdout.
    pub fn open_incoming(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            MigrationUri::File { path, offset } => {
                let mut f = std::fs::File::open(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                })?;
                if *offset != 0 {
                    io::Seek::seek(&mut f, io::SeekFrom::Start(*offset))?;
                }
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
            }
            MigrationUri::Unix(p) => {
                if std::fs::symlink_metadata(p).is_ok() {
                    std::fs::remove_file(p)?;
                }
                let l = std::os::unix::net::UnixListener::bind(p)?;
                let (s, _) = l.accept()?;
                let _ = std::fs::remove_file(p);
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, s)))
            }
            MigrationUri::Exec(cmd) => {
                let mut child = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdout(Stdio::piped())
                    .spawn()?;
                let out = child
                    .stdout
                    .take()
                    .ok_or_else(|| io::Error::other("exec: no stdout pipe"))?;
                Ok(Box::new(ExecReader { child, out }))
            }
        }
    }
}

/// `PATH.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// A size as QEMU's `qemu_strtosz` reads a plain number (decimal or 0x hex).
fn parse_size(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

struct ExecReader {
    child: Child,
    out: std::process::ChildStdout,
}

impl Read for ExecReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 {
            // Reap the command at EOF.
            let _ = self.child.wait();
        }
        Ok(n)
    }
}

/// An open outgoing channel.
#[derive(Debug)]
pub enum Outgoing {
    /// A new file being written as `tmp`, renamed to `path` by [`Outgoing::commit`].
    File {
        /// The writer.
        out: io::BufWriter<std::fs::File>,
        /// `PATH.tmp`.
        tmp: PathBuf,
        /// The final name.
        path: PathBuf,
    },
    /// A connected socket.
    Stream(Box<io::BufWriter<std::os::unix::net::UnixStream>>),
    /// A command reading the stream on its stdin.
    Exec {
        /// The command.
        child: Child,
        /// Its stdin (taken when the stream is complete).
        stdin: Option<io::BufWriter<std::process::ChildStdin>>,
    },
}

impl Write for Outgoing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Outgoing::File { out, .. } => out.write(buf),
            Outgoing::Stream(s) => s.write(buf),
            Outgoing::Exec { stdin, .. } => match stdin {
                Some(s) => s.write(buf),
                None => Err(io::Error::other("exec: stdin already closed")),
            },
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Outgoing::File { out, .. } => out.flush(),
            Outgoing::Stream(s) => s.flush(),
            Outgoing::Exec { stdin, .. } => stdin.as_mut().map_or(Ok(()), |s| s.flush()),
        }
    }
}

impl Outgoing {
    /// The stream is complete: sync and rename the file into place, close the socket,
    /// or close the command's stdin and wait for it (a failing command fails the
    /// migration, as QEMU's exec transport does).
    pub fn commit(self) -> io::Result<()> {
        match self {
            Outgoing::File { out, tmp, path } => {
                let f = out.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                drop(f);
                if path.exists() {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} appeared meanwhile; not overwritten", path.display()),
                    ));
                }
                std::fs::rename(&tmp, &path)
            }
            Outgoing::Stream(mut s) => {
                s.flush()?;
                let _ = s.get_ref().shutdown(std::net::Shutdown::Write);
                Ok(())
            }
            Outgoing::Exec { mut child, stdin } => {
                if let Some(mut s) = stdin {
                    s.flush()?;
                }
                let st = child.wait()?;
                if st.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "exec: the command ended with {st}"
                    )))
                }
            }
        }
    }

    /// The migration failed: remove the partial file, close the channel.
    pub fn abort(self) {
        match self {
            Outgoing::File { out, tmp, .. } => {
                drop(out);
                let _ = std::fs::remove_file(tmp);
            }
            Outgoing::Stream(s) => {
                let _ = s.get_ref().shutdown(std::net::Shutdown::Both);
            }
            Outgoing::Exec { mut child, stdin } => {
                drop(stdin);
                let _ = child.wait();
            }
        }
    }
}

/// `-incoming`: `defer` (wait for `migrate-incoming`) or a URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Incoming {
    /// `-incoming defer`.
    Defer,
    /// `-incoming URI`.
    Uri(MigrationUri),
}

impl Incoming {
    /// Parse the `-incoming` argument.
    pub fn parse(arg: &str) -> Result<Incoming, String> {
        if arg == "defer" {
            return Ok(Incoming::Defer);
        }
        MigrationUri::parse(arg).map(Incoming::Uri)
    }

    /// The argument as text.
    pub fn to_arg(&self) -> String {
        match self {
            Incoming::Defer => "defer".into(),
            Incoming::Uri(u) => u.to_uri(),
        }
    }
}

/// The migration parameters softsev models (QEMU `MigrationParameters`, plus the SEV
/// series' `sev-pdh`, `sev-plat-cert`, `sev-amd-cert`: base64 of the target's PDH
/// certificate, its PEK ‖ OCA ‖ CEK chain, and AMD's ASK ‖ ARK; empty by default as in
/// the series' `migration_instance_init`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationParameters {
    /// `max-bandwidth`, bytes per second (0: unlimited).
    pub max_bandwidth: u64,
    /// `downtime-limit`, milliseconds.
    pub downtime_limit: u64,
    /// `sev-pdh` (base64).
    pub sev_pdh: String,
    /// `sev-plat-cert` (base64).
    pub sev_plat_cert: String,
    /// `sev-amd-cert` (base64).
    pub sev_amd_cert: String,
}

impl Default for MigrationParameters {
    fn default() -> Self {
        MigrationParameters {
            max_bandwidth: DEFAULT_MAX_BANDWIDTH,
            downtime_limit: DEFAULT_DOWNTIME_LIMIT_MS,
            sev_pdh: String::new(),
            sev_plat_cert: String::new(),
            sev_amd_cert: String::new(),
        }
    }
}

/// QEMU's `MigrationStatus` values softsev reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MigrationStatus {
    /// `none`: no migration yet.
    None,
    /// `setup`.
    Setup,
    /// `active`: pre-copy rounds.
    Active,
    /// `device`: stop-and-copy (the vCPUs are stopped).
    Device,
    /// `completed`.
    Completed,
    /// `failed`.
    Failed,
    /// `cancelled`.
    Cancelled,
}

impl MigrationStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::None => "none",
            MigrationStatus::Setup => "setup",
            MigrationStatus::Active => "active",
            MigrationStatus::Device => "device",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::Cancelled => "cancelled",
        }
    }
}

/// QEMU's `MigrationStats` (`ram` of `query-migrate`), the members softsev fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RamStats {
    /// Bytes written to the stream.
    pub transferred: u64,
    /// Bytes of dirty pages still to send.
    pub remaining: u64,
    /// Bytes of guest RAM.
    pub total: u64,
    /// Pages never sent because they were never touched (QEMU counts zero pages here).
    pub duplicate: u64,
    /// Pages sent.
    pub normal: u64,
    /// Bytes of pages sent (`normal` × 4096).
    pub normal_bytes: u64,
    /// Dirty pages per second in the last round (virtual clock).
    pub dirty_pages_rate: u64,
    /// Throughput, megabits per second (wall clock).
    pub mbps: f64,
    /// Dirty-log synchronisations (rounds after the first).
    pub dirty_sync_count: u64,
    /// 4096.
    pub page_size: u64,
    /// Bytes sent while the guest ran.
    pub precopy_bytes: u64,
    /// Bytes sent during the stop-and-copy.
    pub downtime_bytes: u64,
}

/// `query-migrate`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MigrationInfo {
    /// `status`.
    pub status: MigrationStatus,
    /// `ram` (once a migration started).
    pub ram: Option<RamStats>,
    /// `total-time`, ms.
    pub total_time_ms: Option<u64>,
    /// `setup-time`, ms.
    pub setup_time_ms: Option<u64>,
    /// `downtime`, ms (completed).
    pub downtime_ms: Option<u64>,
    /// `error-desc` (failed).
    pub error_desc: Option<String>,
}

impl Default for MigrationInfo {
    fn default() -> Self {
        MigrationInfo {
            status: MigrationStatus::None,
            ram: None,
            total_time_ms: None,
            setup_time_ms: None,
            downtime_ms: None,
            error_desc: None,
        }
    }
}

/// Fuzz entry point of the `vmm_migration_stream` target
/// (fuzz/fuzz_targets/vmm_migration_stream.rs): the checking reader over arbitrary
/// bytes, to the END record or the first error. Nothing may panic; an input the reader
/// accepts must come back byte-identical through the writer.
pub fn fuzz_stream(data: &[u8]) {
    use stream::{Item, StreamReader, StreamWriter};
    let mut r = StreamReader::new(data);
    let mut items = Vec::new();
    loop {
        match r.next_item() {
            Ok(Item::End(_)) => break,
            Ok(i) => items.push(i),
            Err(_) => return,
        }
    }
    // Accepted: rewrite it and compare.
    let Some(Item::Header(h)) = items.first() else {
        panic!("accepted stream without a header first");
    };
    let Ok(mut w) = StreamWriter::new(Vec::new(), h) else {
        return;
    };
    for it in &items[1..] {
        let ok = match it {
            Item::Round { pages, .. } => w.round(*pages).is_ok(),
            Item::Page(p) => w.page(p.gfn, &p.header, &p.data).is_ok(),
            Item::Vcpu(v) => w.vcpu(v).is_ok(),
            Item::Header(_) | Item::End(_) => false,
        };
        assert!(ok, "rewriting an accepted item failed");
    }
    let Ok((out, _, _)) = w.finish() else {
        panic!("finishing an accepted stream failed");
    };
    // serde_json may normalise the JSON; compare from the first record after HEADER.
    let mut r2 = StreamReader::new(out.as_slice());
    let mut n = 0usize;
    while let Ok(i) = r2.next_item() {
        if matches!(i, Item::End(_)) {
            assert_eq!(n, items.len(), "the rewritten stream has other items");
            return;
        }
        assert_eq!(items.get(n), Some(&i), "item {n} differs after rewriting");
        n += 1;
    }
    panic!("the rewritten stream does not read back");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            MigrationUri::parse("file:/tmp/s.mig").unwrap(),
            MigrationUri::File {
                path: "/tmp/s.mig".into(),
                offset: 0
            }
        );
        assert_eq!(
            MigrationUri::parse("file:/tmp/s,offset=0x1000").unwrap(),
            MigrationUri::File {
                path: "/tmp/s".into(),
                offset: 0x1000
            }
        );
        assert_eq!(
            MigrationUri::parse("unix:/run/m.sock").unwrap(),
            MigrationUri::Unix("/run/m.sock".into())
        );
        assert_eq!(
            MigrationUri::parse("exec:cat > /dev/null").unwrap(),
            MigrationUri::Exec("cat > /dev/null".into())
        );
        for bad in ["tcp:0:4444", "bogus", "file:", "unix:"] {
            let e = MigrationUri::parse(bad).unwrap_err();
            assert!(e.starts_with("unknown migration protocol"), "{bad}: {e}");
        }
        assert!(
            MigrationUri::parse("file:/x,offset=zz")
                .unwrap_err()
                .contains("bad offset")
        );
        for u in ["file:/a", "file:/a,offset=16", "unix:/b", "exec:cat"] {
            assert_eq!(MigrationUri::parse(u).unwrap().to_uri(), u);
        }
        assert_eq!(Incoming::parse("defer").unwrap(), Incoming::Defer);
        assert_eq!(Incoming::parse("unix:/s").unwrap().to_arg(), "unix:/s");
    }

    #[test]
    fn file_channel_never_overwrites_and_renames_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = d.join("snap.mig");
        let u = MigrationUri::File {
            path: p.clone(),
            offset: 0,
        };
        let mut o = u.open_outgoing().unwrap();
        o.write_all(b"abc").unwrap();
        assert!(!p.exists(), "not visible before commit");
        assert!(tmp_path(&p).exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        let e = u.open_outgoing().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let q = d.join("other.mig");
        let o = MigrationUri::File {
            path: q.clone(),
            offset: 0,
        }
        .open_outgoing()
        .unwrap();
        o.abort();
        assert!(!q.exists() && !tmp_path(&q).exists());
    }

    #[test]
    fn exec_and_unix_channels() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("via-exec");
        let out = MigrationUri::Exec(format!("cat > '{}'", f.display()));
        let mut o = out.open_outgoing().unwrap();
        o.write_all(b"stream bytes").unwrap();
        o.commit().unwrap();
        let mut back = Vec::new();
        MigrationUri::Exec(format!("cat '{}'", f.display()))
            .open_incoming()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"stream bytes");
        let e = MigrationUri::Exec("exit 3".into())
            .open_outgoing()
            .unwrap()
            .commit()
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        // unix: the target listens, the source connects.
        let sock = dir.path().join("m.sock");
        let u = MigrationUri::Unix(sock.clone());
        let t = std::thread::spawn(move || {
            let mut v = Vec::new();
            u.open_incoming().unwrap().read_to_end(&mut v).unwrap();
            v
        });
        while !sock.exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut o = MigrationUri::Unix(sock).open_outgoing().unwrap();
        o.write_all(b"over a socket").unwrap();
        o.commit().unwrap();
        assert_eq!(t.join().unwrap(), b"over a socket");
    }
}
