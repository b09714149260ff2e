//! FUSE serving and the private world, end to end: a small test file system (an ioctl
//! that follows a pointer in its argument, a read/write file, a directory with mkdir and
//! rmdir) served at a file in an overlaid `/dev` and at a directory grafted into
//! `/sys/kernel`, exercised by a separate client process (Python ctypes, like the
//! project's ABI client); the outside `/dev`, `/sys/kernel`, `/etc/hosts` and mount table
//! are compared before and after.

use softsev_os::fuse::{ServeOptions, serve};
use softsev_os::ns::{Graft, PrivateWorld, WorldSpec};
use softsev_vfs::{
    Caller, CallerMemory, Errno, FieldValue, IoctlReply, MemoryLog, NodeKind, OpenFlags, VirtualFs,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const CHILD_ENV: &str = "SOFTSEV_OS_TEST_CHILD";

/// `_IOWR('T', 1, 16)`: `{u64 addr; u32 len; u32 status}`.
const REVERSE: u32 = 0xC010_5401;

/// Whether root and /dev/fuse and unshare(1) and python3 are available; else SKIP (or
/// panic under SOFTSEV_REQUIRE_INTEROP=1).
fn can_mount(name: &str) -> bool {
    let why = if softsev_os::require_root().is_err() {
        Some("not root or /dev/fuse unusable".to_string())
    } else if Command::new("unshare").arg("--version").output().is_err() {
        Some("unshare(1) not installed".into())
    } else if Command::new("python3").arg("-c").arg("1").output().is_err() {
        Some("python3 not installed".into())
    } else {
        None
    };
    match why {
        None => true,
        Some(w) => {
            if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
                panic!("{name}: {w} and SOFTSEV_REQUIRE_INTEROP=1");
            }
            eprintln!("SKIP: {name}: {w}");
            false
        }
    }
}

/// The test file system: `""` is a directory with `dev` (ioctl), `data` (read/write) and
/// `items/` (mkdir/rmdir of empty items).
#[derive(Debug, Default)]
struct TestFs {
    data: Mutex<Vec<u8>>,
    items: Mutex<BTreeSet<String>>,
}

impl VirtualFs for TestFs {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        match path {
            "" | "items" => Some(NodeKind::Dir { mode: 0o755 }),
            "dev" => Some(NodeKind::File {
                mode: 0o666,
                size: 0,
            }),
            "data" => Some(NodeKind::File {
                mode: 0o644,
                size: 4096,
            }),
            p => p
                .strip_prefix("items/")
                .filter(|n| self.items.lock().unwrap().contains(*n))
                .map(|_| NodeKind::Dir { mode: 0o755 }),
        }
    }

    fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        match path {
            "" => Ok(vec!["dev".into(), "data".into(), "items".into()]),
            "items" => Ok(self.items.lock().unwrap().iter().cloned().collect()),
            p if self.kind(p).is_some() => Ok(vec![]),
            _ => Err(Errno::ENOENT),
        }
    }

    fn open(&self, path: &str, flags: OpenFlags, _c: &Caller) -> Result<u64, Errno> {
        if path == "data" && flags.write {
            self.data.lock().unwrap().clear();
        }
        Ok(7)
    }

    fn read(
        &self,
        path: &str,
        fh: u64,
        off: u64,
        size: u32,
        _c: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        assert_eq!(fh, 7, "the handle from open comes back");
        if path != "data" {
            return Err(Errno::EINVAL);
        }
        let d = self.data.lock().unwrap();
        let off = (off as usize).min(d.len());
        let end = (off + size as usize).min(d.len());
        Ok(d[off..end].to_vec())
    }

    fn write(
        &self,
        path: &str,
        _fh: u64,
        _off: u64,
        data: &[u8],
        _c: &Caller,
    ) -> Result<u32, Errno> {
        if path != "data" {
            return Err(Errno::EINVAL);
        }
        self.data.lock().unwrap().extend_from_slice(data);
        Ok(data.len() as u32)
    }

    fn mkdir(&self, path: &str, _c: &Caller) -> Result<(), Errno> {
        let name = path.strip_prefix("items/").ok_or(Errno::EPERM)?;
        if !self.items.lock().unwrap().insert(name.to_string()) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    fn rmdir(&self, path: &str, _c: &Caller) -> Result<(), Errno> {
        let name = path.strip_prefix("items/").ok_or(Errno::EPERM)?;
        if !self.items.lock().unwrap().remove(name) {
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    fn ioctl(
        &self,
        path: &str,
        _fh: u64,
        cmd: u32,
        _arg: u64,
        input: &[u8],
        _out_size: u32,
        _c: &Caller,
        mem: &dyn CallerMemory,
    ) -> IoctlReply {
        if path != "dev" || cmd != REVERSE || input.len() != 16 {
            return IoctlReply::err(Errno::ENOTTY);
        }
        let addr = u64::from_le_bytes(input[..8].try_into().unwrap());
        let len = u32::from_le_bytes(input[8..12].try_into().unwrap());
        let mut out = input.to_vec();
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = mem.read(addr, &mut buf) {
            out[12..16].copy_from_slice(&0xEEu32.to_le_bytes());
            return IoctlReply::with_out(e.negated(), out);
        }
        buf.reverse();
        if let Err(e) = mem.write(addr, &buf) {
            return IoctlReply::err(e);
        }
        out[12..16].copy_from_slice(&len.to_le_bytes());
        IoctlReply::with_out(0, out)
    }
}

/// The client: ioctl with a pointer to a buffer (reversed in place), the same with a bad
/// pointer (EFAULT, status copied back), an unknown ioctl (ENOTTY), write/read `data`,
/// mkdir/rmdir an item, unlink refused.
const CLIENT: &str = r#"
import ctypes, fcntl, os, struct, sys, errno
dev, d = sys.argv[1], sys.argv[2]
buf = ctypes.create_string_buffer(b"softsev-fuse", 12)
arg = bytearray(struct.pack("<QII", ctypes.addressof(buf), 12, 0))
fd = os.open(dev, os.O_RDWR)
fcntl.ioctl(fd, 0xC0105401, arg, True)
assert buf.raw == b"esuf-vestfos", buf.raw
assert struct.unpack("<QII", bytes(arg))[2] == 12
bad = bytearray(struct.pack("<QII", 8, 12, 0))
try:
    fcntl.ioctl(fd, 0xC0105401, bad, True); sys.exit("no EFAULT")
except OSError as e:
    assert e.errno == errno.EFAULT, e
assert struct.unpack("<QII", bytes(bad))[2] == 0xEE, bad
try:
    fcntl.ioctl(fd, 0xC0105402, bytearray(16), True); sys.exit("no ENOTTY")
except OSError as e:
    assert e.errno == errno.ENOTTY, e
os.close(fd)
with open(os.path.join(d, "data"), "w") as f: f.write("hello")
assert open(os.path.join(d, "data")).read() == "hello"
os.mkdir(os.path.join(d, "items", "a"))
assert os.listdir(os.path.join(d, "items")) == ["a"]
try:
    os.mkdir(os.path.join(d, "items", "a")); sys.exit("no EEXIST")
except FileExistsError: pass
os.rmdir(os.path.join(d, "items", "a"))
assert os.listdir(os.path.join(d, "items")) == []
try:
    os.unlink(os.path.join(d, "data")); sys.exit("unlink allowed")
except PermissionError: pass
print("client ok")
"#;

/// What is visible outside: names under /dev and /sys/kernel, /etc/hosts, mount points.
fn outside_view() -> (Vec<String>, Vec<String>, Vec<u8>, Vec<String>) {
    let names = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    (
        names("/dev"),
        names("/sys/kernel"),
        std::fs::read("/etc/hosts").unwrap_or_default(),
        mounts,
    )
}

#[test]
fn serves_ioctls_files_and_dirs_in_a_private_world_and_leaves_nothing_outside() {
    if std::env::var(CHILD_ENV).is_ok() {
        return child();
    }
    if !can_mount("softsev-os FUSE + namespace test") {
        return;
    }
    let before = outside_view();
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fuse_ns::serves_ioctls_files_and_dirs_in_a_private_world_and_leaves_nothing_outside",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("client ok"), "{text}");
    assert!(text.contains("world ok"), "{text}");
    assert_eq!(before, outside_view(), "the outside changed");
    assert!(!Path::new("/dev/softsev-test").exists());
    assert!(
        !Path::new("/sys/kernel/config/tsm").exists() || before.1.contains(&"config".to_string())
    );
}

fn child() {
    let spec = WorldSpec {
        dev_files: vec![PathBuf::from("/dev/softsev-test")],
        overlays: vec![(
            PathBuf::from("/sys/kernel"),
            vec![
                Graft::Dir("softsev-tree".into()),
                Graft::File("softsev-note".into(), b"grafted\n".to_vec()),
            ],
        )],
        hosts: Some("127.0.0.1 localhost\n127.0.0.1 kdsintf.amd.com\n".into()),
        private_net: false,
        private_dirs: vec![PathBuf::from("/dev/softsev-scratch")],
    };
    let world = PrivateWorld::furnish_current(&spec).expect("furnishing the world");
    // A private network namespace: loopback comes up, and port 443 is ours alone.
    softsev_os::ns::loopback_up().expect("bringing up lo");
    let l = std::net::TcpListener::bind("127.0.0.1:443").expect("binding 127.0.0.1:443");
    std::net::TcpStream::connect(l.local_addr().unwrap()).expect("connecting over lo");
    assert!(Path::new("/dev/softsev-scratch").is_dir());
    assert_eq!(world.dev_files(), [PathBuf::from("/dev/softsev-test")]);
    assert_eq!(
        std::fs::read_to_string("/sys/kernel/softsev-note").unwrap(),
        "grafted\n"
    );
    assert!(
        std::fs::read_to_string("/etc/hosts")
            .unwrap()
            .contains("kdsintf.amd.com")
    );
    // The real /dev still works through the overlay, and its sub-mounts are back.
    std::fs::write("/dev/null", b"x").unwrap();
    assert!(Path::new("/dev/pts").is_dir());
    // sysfs overlay is read-only.
    assert!(std::fs::write("/sys/kernel/softsev-x", b"x").is_err());

    let fs = Arc::new(TestFs::default());
    let log = Arc::new(MemoryLog::default());
    let mut o = ServeOptions::new("test-dev");
    o.log = Some(log.clone());
    // A file-rooted mount: serve the test fs's "dev" file alone at /dev/softsev-test.
    let dev = serve(
        Arc::new(Sub(fs.clone(), "dev")),
        Path::new("/dev/softsev-test"),
        o,
    )
    .expect("mounting on the device file");
    let tree = serve(
        fs.clone(),
        Path::new("/sys/kernel/softsev-tree"),
        ServeOptions::new("test-tree"),
    )
    .expect("mounting on the grafted directory");
    let c = Command::new("python3")
        .args([
            "-c",
            CLIENT,
            "/dev/softsev-test",
            "/sys/kernel/softsev-tree",
        ])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&c.stdout));
    assert!(
        c.status.success(),
        "client: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let ev = log.events();
    let ioctls: Vec<_> = ev.iter().filter(|e| e.op == "ioctl").collect();
    assert_eq!(ioctls.len(), 3, "{ev:?}");
    assert_eq!(
        ioctls[0].fields[0],
        ("cmd", FieldValue::Str("0xc0105401".into()))
    );
    assert_eq!(
        (ioctls[0].result, ioctls[1].result, ioctls[2].result),
        (0, -14, -25)
    );
    assert!(ioctls[0].caller.pid > 0 && ioctls[0].caller.pid != std::process::id());
    dev.unmount().unwrap();
    tree.unmount().unwrap();
    println!("world ok");
}

/// One node of a file system served as the root of its own mount.
#[derive(Debug)]
struct Sub(Arc<TestFs>, &'static str);

impl VirtualFs for Sub {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        if path.is_empty() {
            self.0.kind(self.1)
        } else {
            None
        }
    }
    fn readdir(&self, _path: &str) -> Result<Vec<String>, Errno> {
        Err(Errno::ENOTDIR)
    }
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _path: &str,
        fh: u64,
        cmd: u32,
        arg: u64,
        input: &[u8],
        out_size: u32,
        c: &Caller,
        mem: &dyn CallerMemory,
    ) -> IoctlReply {
        self.0.ioctl(self.1, fh, cmd, arg, input, out_size, c, mem)
    }
}
