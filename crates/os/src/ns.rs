//! The private world `softsev exec` runs a tool in (frontends.md §3.3, §2.2, §4, §7.1):
//! a mount namespace of its own, every mount in it private, and
//!
//! - `/dev` overlaid (the real `/dev` as the lower layer, a tmpfs upper) so device files
//!   can be created without touching the real one; its sub-mounts (`pts`, `shm`, …) are
//!   moved back on top, so terminals and POSIX shared memory keep working;
//! - read-only overlays of sysfs directories (`/sys/kernel`, `/sys/devices/platform`,
//!   `/sys/module`) with an extra lower layer holding the directories and files the
//!   front ends graft in (`config/tsm`, `sev-guest`, `kvm_amd/parameters`);
//! - a generated `/etc/hosts` bound over the real one.
//!
//! The staging tmpfs that holds the overlay layers is mounted on a fresh directory under
//! the temporary directory, and detached and removed as soon as the overlays exist
//! (overlayfs keeps private clones of its layers), so nothing of it is visible outside,
//! and nothing outlives the process: the namespace dies with the last process in it and
//! takes every mount along.
//!
//! `unshare(CLONE_NEWNS)` implies `CLONE_FS`, which a thread sharing its file-system
//! context with other threads cannot unshare (`EINVAL`): [`PrivateWorld::enter`] must
//! run while the process has one thread (before any model, logger or FUSE thread starts).

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use std::fs;
use std::path::{Path, PathBuf};

/// The message of [`require_root`] (issue 14; frontends.md §3.4: `/dev/fuse` is 0600 and
/// the namespace needs `CAP_SYS_ADMIN`).
pub const NEEDS_ROOT: &str =
    "softsev exec needs root: it mounts FUSE (/dev/fuse is 0600) in a private mount namespace";

/// Errors of building the private world.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// Not running as root.
    #[error("{NEEDS_ROOT}")]
    NotRoot,
    /// `/dev/fuse` is missing or cannot be opened.
    #[error("/dev/fuse cannot be opened ({0}); the kernel needs CONFIG_FUSE_FS")]
    NoFuse(std::io::Error),
    /// More than one thread: the mount namespace cannot be unshared.
    #[error(
        "cannot enter a private mount namespace: the process already runs {0} threads (unshare(CLONE_NEWNS) needs a single-threaded process)"
    )]
    Threads(usize),
    /// A system call failed.
    #[error("{what}: {errno}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        errno: nix::errno::Errno,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A path cannot be grafted (not absolute, or not under the overlaid directory).
    #[error("cannot graft {0}: {1}")]
    BadPath(PathBuf, &'static str),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> NsError {
    let what = what.into();
    move |errno| NsError::Sys { what, errno }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NsError {
    let what = what.into();
    move |source| NsError::Io { what, source }
}

/// Root (effective uid 0) and a usable `/dev/fuse`, or the error saying why not.
pub fn require_root() -> Result<(), NsError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NsError::NotRoot);
    }
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(NsError::NoFuse)
}

/// How many threads this process runs (from `/proc/self/status`).
pub fn thread_count() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// A file or directory to add to a sysfs overlay, relative to the overlaid directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Graft {
    /// An empty directory (a FUSE mount point, or a parent).
    Dir(PathBuf),
    /// A file with fixed contents (read-only inside the overlay).
    File(PathBuf, Vec<u8>),
}

/// What the private world contains, set up by [`PrivateWorld::enter`].
#[derive(Debug, Clone, Default)]
pub struct WorldSpec {
    /// Files to create in the overlaid `/dev` (e.g. `sev-guest`, `cpu/0/msr`), each as an
    /// empty regular file of mode 0600 that a FUSE file system is then mounted on.
    pub dev_files: Vec<PathBuf>,
    /// Directories to create in the overlaid `/dev` (private scratch space: files only
    /// the namespace sees, gone with it).
    pub private_dirs: Vec<PathBuf>,
    /// Read-only overlays: the overlaid directory (e.g. `/sys/kernel`) and what its extra
    /// layer adds (e.g. `config/tsm`).
    pub overlays: Vec<(PathBuf, Vec<Graft>)>,
    /// Contents for a private `/etc/hosts`.
    pub hosts: Option<String>,
    /// A private network namespace too (only loopback, brought up): listeners on
    /// 127.0.0.1:443/444 are then the front end's own, invisible to and not clashing with
    /// the rest of the machine (or another `softsev exec`).
    pub private_net: bool,
}

/// The private mount namespace of this process, once entered.
#[derive(Debug)]
pub struct PrivateWorld {
    dev_files: Vec<PathBuf>,
}

impl PrivateWorld {
    /// Check root, unshare the mount namespace, make every mount private, and build what
    /// `spec` asks for. Must be called while the process is single-threaded.
    pub fn enter(spec: &WorldSpec) -> Result<PrivateWorld, NsError> {
        require_root()?;
        let threads = thread_count();
        if threads > 1 {
            return Err(NsError::Threads(threads));
        }
        let mut flags = CloneFlags::CLONE_NEWNS;
        if spec.private_net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        unshare(flags).map_err(sys("unshare(CLONE_NEWNS)"))?;
        if spec.private_net {
            loopback_up()?;
        }
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("mount --make-rprivate /"))?;
        Self::furnish_current(spec)
    }

    /// Build what `spec` asks for in the *current* mount namespace, which must already be
    /// this process's own with private propagation (e.g. a process started by
    /// `unshare --mount --propagation private`, as the tests do: a test harness runs
    /// several threads and so cannot unshare itself).
    pub fn furnish_current(spec: &WorldSpec) -> Result<PrivateWorld, NsError> {
        require_root()?;
        let stage = Stage::new()?;
        let r = build(spec, &stage);
        stage.remove();
        r?;
        Ok(PrivateWorld {
            dev_files: spec.dev_files.clone(),
        })
    }

    /// The device files created in `/dev` (absolute paths).
    pub fn dev_files(&self) -> &[PathBuf] {
        &self.dev_files
    }
}

/// The staging tmpfs: a fresh directory under the temporary directory with a tmpfs on
/// it, detached and removed once the overlays hold their clones of the layers.
struct Stage {
    dir: PathBuf,
}

impl Stage {
    fn new() -> Result<Stage, NsError> {
        let base = std::env::temp_dir();
        let mut n = 0u32;
        let dir = loop {
            let d = base.join(format!(".softsev-stage-{}-{n}", std::process::id()));
            match fs::create_dir(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(io(format!("creating {}", d.display()))(e)),
            }
        };
        let s = Stage { dir };
        mount(
            Some("softsev-stage"),
            &s.dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .map_err(sys(format!("mounting a tmpfs on {}", s.dir.display())))?;
        Ok(s)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn remove(self) {
        if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
            tracing::debug!(dir = %self.dir.display(), "detaching the stage: {e}");
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "removing the stage directory: {e}");
        }
    }
}

fn relative_under(p: &Path) -> Result<&Path, NsError> {
    let r = p
        .strip_prefix("/")
        .map_err(|_| NsError::BadPath(p.to_path_buf(), "not absolute"))?;
    if r.components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(NsError::BadPath(p.to_path_buf(), "has . or .. components"));
    }
    Ok(r)
}

/// The direct sub-mounts of `dir` (e.g. `/dev/pts`, `/dev/shm`), from mountinfo.
fn submounts(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for line in info.lines() {
        // mountinfo field 5 is the mount point (octal escapes for spaces; none in /dev).
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = Path::new(mp);
        if mp.parent() == Some(dir) && !out.iter().any(|o| o == mp) {
            out.push(mp.to_path_buf());
        }
    }
    out
}

fn build(spec: &WorldSpec, stage: &Stage) -> Result<(), NsError> {
    if !spec.dev_files.is_empty() || !spec.private_dirs.is_empty() {
        overlay_dev(&spec.dev_files, &spec.private_dirs, stage)?;
    }
    for (i, (target, grafts)) in spec.overlays.iter().enumerate() {
        let layer = stage.path(&format!("layer{i}"));
        fs::create_dir_all(&layer).map_err(io("creating an overlay layer"))?;
        for g in grafts {
            match g {
                Graft::Dir(p) => {
                    let p = layer.join(relative_under(&Path::new("/").join(p))?);
                    fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
                }
                Graft::File(p, data) => {
                    let p = layer.join(relative_under(&Path::new("/").join(p))?);
                    if let Some(parent) = p.parent() {
                        fs::create_dir_all(parent)
                            .map_err(io(format!("creating {}", parent.display())))?;
                    }
                    fs::write(&p, data).map_err(io(format!("writing {}", p.display())))?;
                }
            }
        }
        // Two lower layers and no upper: a read-only union (overlayfs needs ≥ 2 lowers
        // without an upper). The extra layer is first, so it wins on a name clash.
        let opts = format!("lowerdir={}:{}", layer.display(), target.display());
        let keep = stage.path(&format!("keep{i}"));
        overlay_keeping_submounts(
            target,
            &keep,
            "softsev-sys",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            &opts,
        )?;
    }
    if let Some(hosts) = &spec.hosts {
        let p = stage.path("hosts");
        fs::write(&p, hosts).map_err(io("writing the private /etc/hosts"))?;
        // A bind mount keeps its source alive after the stage is detached.
        mount(
            Some(&p),
            "/etc/hosts",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("binding the private /etc/hosts"))?;
    }
    Ok(())
}

/// Mount an overlay on `target`; the direct sub-mounts of `target` (which the overlay
/// would hide: overlayfs layers do not include sub-mounts) are parked under `keep` first
/// and moved back on top afterwards.
fn overlay_keeping_submounts(
    target: &Path,
    keep: &Path,
    source: &str,
    flags: MsFlags,
    opts: &str,
) -> Result<(), NsError> {
    fs::create_dir_all(keep).map_err(io(format!("creating {}", keep.display())))?;
    let mut parked = Vec::new();
    for (i, s) in submounts(target).iter().enumerate() {
        let k = keep.join(i.to_string());
        fs::create_dir_all(&k).map_err(io("creating a parking directory"))?;
        mount(
            Some(s),
            &k,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(format!("binding {}", s.display())))?;
        parked.push((k, s.clone()));
    }
    mount(Some(source), target, Some("overlay"), flags, Some(opts))
        .map_err(sys(format!("overlaying {}", target.display())))?;
    for (k, s) in parked {
        mount(Some(&k), &s, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys(format!("moving {} back", s.display())))?;
    }
    Ok(())
}

fn overlay_dev(files: &[PathBuf], dirs: &[PathBuf], stage: &Stage) -> Result<(), NsError> {
    let dev = Path::new("/dev");
    let (up, work, keep) = (stage.path("up"), stage.path("work"), stage.path("keep"));
    for d in [&up, &work, &keep] {
        fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let opts = format!(
        "lowerdir=/dev,upperdir={},workdir={}",
        up.display(),
        work.display()
    );
    overlay_keeping_submounts(dev, &keep, "softsev-dev", MsFlags::MS_NOSUID, &opts)?;
    for d in dirs {
        relative_under(d)?;
        if !d.starts_with(dev) {
            return Err(NsError::BadPath(d.clone(), "not under /dev"));
        }
        fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    for f in files {
        relative_under(f)?;
        if !f.starts_with(dev) {
            return Err(NsError::BadPath(f.clone(), "not under /dev"));
        }
        if let Some(parent) = f.parent() {
            fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        fs::write(f, b"").map_err(io(format!("creating {}", f.display())))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(f, fs::Permissions::from_mode(0o600))
            .map_err(io(format!("chmod {}", f.display())))?;
    }
    Ok(())
}

/// Bring up `lo` in a fresh network namespace (it starts down): `SIOCGIFFLAGS`, set
/// `IFF_UP`, `SIOCSIFFLAGS` on a datagram socket (netdevice(7)).
#[allow(unsafe_code)]
pub fn loopback_up() -> Result<(), NsError> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys("socket(AF_INET, SOCK_DGRAM)"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into
    // `req.ifr_ifru`; `req` is a valid, exclusively borrowed ifreq for the whole call and
    // the socket fd is open.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return Err(sys("SIOCGIFFLAGS lo")(nix::errno::Errno::last()));
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags (ifru_flags); reading and
    // writing that member of plain-old-data is sound.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc != 0 {
        return Err(sys("SIOCSIFFLAGS lo up")(nix::errno::Errno::last()));
    }
    Ok(())
}
