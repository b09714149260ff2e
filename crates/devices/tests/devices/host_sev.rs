//! `/dev/sev` (SevDevice) against a real SoftHost through BufferMemory: every command
//! of `sev_ioctl`, its checks in the driver's order and the structure copied back.

use softsev_abi::Product;
use softsev_abi::fw_buf::{SnpConfig, SnpPlatformStatus, SnpVlekLoad, VlekWrapped};
use softsev_abi::sev_buf::{SEV_CERT_LEN, SEV_PDH_CHAIN_LEN, SevPlatformStatus};
use softsev_crypto::rng::Rng;
use softsev_devices::host::{SEV_ISSUE_CMD, SevDevice, SevIoctlCmd, SevIssueCmd};
use softsev_host::{SoftHost, SoftPlatform};
use softsev_vfs::{BufferMemory, Caller, CallerMemory, Errno, IoctlReply, OpenFlags, VirtualFs};
use std::sync::Arc;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const BASE: u64 = 0x7f00_0000_0000;
const ROOT: Caller = Caller {
    pid: 4242,
    uid: 0,
    gid: 0,
};
/// What the caller's `error` field holds before a call (to see when the driver
/// leaves it alone).
const UNTOUCHED: u32 = 0xDEAD_BEEF;

fn host() -> Arc<SoftHost> {
    SoftPlatform::builder(Product::Milan)
        .seed(*b"fe-host sev device")
        .mem(256 << 20)
        .build()
        .expect("platform")
        .host()
        .clone()
}

struct Dev {
    dev: SevDevice,
    mem: BufferMemory,
    ro: u64,
    rw: u64,
}

impl Dev {
    fn new() -> Dev {
        Dev::with(SevDevice::new(host()))
    }

    fn with(dev: SevDevice) -> Dev {
        let ro = dev
            .open(
                "",
                OpenFlags {
                    read: true,
                    write: false,
                },
                &ROOT,
            )
            .unwrap();
        let rw = dev
            .open(
                "",
                OpenFlags {
                    read: true,
                    write: true,
                },
                &ROOT,
            )
            .unwrap();
        Dev {
            dev,
            mem: BufferMemory::new(BASE, 1 << 16),
            ro,
            rw,
        }
    }

    /// Issue `cmd` with its structure at `BASE`; returns the reply and the structure
    /// as copied back.
    fn issue(&self, fh: u64, cmd: SevIoctlCmd, data: u64) -> (IoctlReply, Option<SevIssueCmd>) {
        let c = SevIssueCmd {
            cmd: cmd.0,
            data,
            error: UNTOUCHED,
        };
        let r = self.dev.ioctl(
            "",
            fh,
            SEV_ISSUE_CMD,
            BASE - 0x100,
            c.as_bytes(),
            16,
            &ROOT,
            &self.mem,
        );
        let back = (!r.out.is_empty()).then(|| SevIssueCmd::read_from_bytes(&r.out).unwrap());
        (r, back)
    }

    fn put(&self, off: u64, bytes: &[u8]) -> u64 {
        self.mem.write(BASE + off, bytes).unwrap();
        BASE + off
    }

    fn get(&self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(BASE + off, &mut v).unwrap();
        v
    }
}

fn user_buf(address: u64, length: u32) -> Vec<u8> {
    [address.to_le_bytes().as_slice(), &length.to_le_bytes()].concat()
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn error_of(c: &Option<SevIssueCmd>) -> u32 {
    c.as_ref().map(|c| c.error).expect("structure copied back")
}

#[test]
fn envelope_follows_sev_ioctl() {
    let d = Dev::new();
    // Another ioctl number.
    let r = d
        .dev
        .ioctl("", d.rw, 0xC020_5300, 0, &[0; 32], 32, &ROOT, &d.mem);
    assert_eq!(r, IoctlReply::err(Errno::EINVAL));
    // cmd > SEV_MAX and cmd == SEV_MAX: -EINVAL, nothing copied back.
    for cmd in [13, 14, 0x100, u32::MAX] {
        let (r, back) = d.issue(d.rw, SevIoctlCmd(cmd), BASE);
        assert_eq!(r.result, -22, "cmd {cmd}");
        assert!(back.is_none(), "cmd {cmd} must not copy back");
    }
    // A short structure (cannot come from the kernel, but must not panic).
    let r = d
        .dev
        .ioctl("", d.rw, SEV_ISSUE_CMD, 0, &[1, 0, 0], 16, &ROOT, &d.mem);
    assert_eq!(r.result, -14);
    // read/write on the device: -EINVAL as for a file without read/write fops.
    assert_eq!(d.dev.read("", d.ro, 0, 16, &ROOT), Err(Errno::EINVAL));
    assert_eq!(d.dev.write("", d.rw, 0, &[0], &ROOT), Err(Errno::EINVAL));
}

#[test]
fn platform_status_and_efault() {
    let d = Dev::new();
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_PLATFORM_STATUS, BASE + 0x1000);
    assert_eq!(r.result, 0);
    assert_eq!(error_of(&back), 0, "firmware status SUCCESS copied back");
    let st = SevPlatformStatus::read_from_bytes(&d.get(0x1000, 12)).unwrap();
    let v = d.dev.host().firmware().current_image().version;
    assert_eq!((st.api_major, st.api_minor), (v.major, v.minor));
    // A bad user pointer: the command ran (error 0), the copy faults.
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_PLATFORM_STATUS, 0x10);
    assert_eq!(r.result, -14);
    assert_eq!(error_of(&back), 0);
}

#[test]
fn state_changing_commands_need_a_writable_fd() {
    let d = Dev::new();
    let data = d.put(0x100, &user_buf(0, 0));
    for cmd in [
        SevIoctlCmd::SEV_FACTORY_RESET,
        SevIoctlCmd::SEV_PEK_GEN,
        SevIoctlCmd::SEV_PDH_GEN,
        SevIoctlCmd::SEV_PEK_CSR,
        SevIoctlCmd::SEV_PEK_CERT_IMPORT,
        SevIoctlCmd::SEV_PDH_CERT_EXPORT, // not INIT yet: needs write to INIT
        SevIoctlCmd::SNP_SET_CONFIG,
        SevIoctlCmd::SNP_VLEK_LOAD,
    ] {
        let (r, back) = d.issue(d.ro, cmd, data);
        assert_eq!(r.result, -1, "{cmd:?} on a read-only fd");
        assert_eq!(
            error_of(&back),
            UNTOUCHED,
            "{cmd:?}: no firmware command issued"
        );
    }
    assert!(!d.dev.host().sev_platform_initialised());
    // SNP_COMMIT has no writable check in the driver.
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SNP_COMMIT, 0);
    assert_eq!(r.result, 0);
    assert_eq!(error_of(&back), 0);
}

#[test]
fn get_id_and_get_id2_length_query() {
    let d = Dev::new();
    let want = d.dev.host().firmware().chip().sev_get_id();
    // Query: address 0 → firmware INVALID_LENGTH (4), -EIO, 64 written back.
    let data = d.put(0x100, &user_buf(0, 0));
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_GET_ID2, data);
    assert_eq!(r.result, -5);
    assert_eq!(error_of(&back), 4);
    assert_eq!(u32_at(&d.get(0x100, 12), 8), 64);
    // Too short a buffer: the same, and nothing written to it.
    let data = d.put(0x100, &user_buf(BASE + 0x2000, 10));
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_GET_ID2, data);
    assert_eq!((r.result, error_of(&back)), (-5, 4));
    assert_eq!(u32_at(&d.get(0x100, 12), 8), 64);
    assert_eq!(d.get(0x2000, 10), vec![0; 10]);
    // The real call, on a read-only fd, without initialising the platform.
    let data = d.put(0x100, &user_buf(BASE + 0x2000, 64));
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_GET_ID2, data);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    assert_eq!(d.get(0x2000, 64), want.to_vec());
    assert!(!d.dev.host().sev_platform_initialised());
    // An unwritable buffer: -EFAULT after the command.
    let data = d.put(0x100, &user_buf(0x1000, 64));
    let (r, _) = d.issue(d.ro, SevIoctlCmd::SEV_GET_ID2, data);
    assert_eq!(r.result, -14);
    // Deprecated GET_ID: 64 bytes (one socket) at data.
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_GET_ID, BASE + 0x3000);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    assert_eq!(d.get(0x3000, 64), want.to_vec());
    assert_eq!(d.get(0x3040, 64), vec![0; 64]);
}

#[test]
fn pdh_cert_export_and_pek_csr() {
    let d = Dev::new();
    // Length query on a writable fd: INIT, then INVALID_LENGTH with both lengths.
    let q = [user_buf(0, 0), user_buf(0, 0)].concat();
    let data = d.put(0x100, &q);
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PDH_CERT_EXPORT, data);
    assert_eq!((r.result, error_of(&back)), (-5, 4));
    let s = d.get(0x100, 24);
    assert_eq!(u32_at(&s, 8) as usize, SEV_CERT_LEN);
    assert_eq!(u32_at(&s, 20) as usize, SEV_PDH_CHAIN_LEN);
    assert!(d.dev.host().sev_platform_initialised());
    // Now INIT: a read-only fd may export.
    let req = [
        user_buf(BASE + 0x1000, SEV_CERT_LEN as u32),
        user_buf(BASE + 0x4000, SEV_PDH_CHAIN_LEN as u32),
    ]
    .concat();
    let data = d.put(0x100, &req);
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SEV_PDH_CERT_EXPORT, data);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    let pdh = d.get(0x1000, SEV_CERT_LEN);
    let chain = d.get(0x4000, SEV_PDH_CHAIN_LEN);
    assert_ne!(pdh, vec![0; SEV_CERT_LEN]);
    assert_ne!(chain, vec![0; SEV_PDH_CHAIN_LEN]);
    // The same PDH as the host API gives.
    let mut arg = softsev_host::SevUserPdhCertExport {
        pdh_cert: Some(Vec::new()),
        pdh_cert_len: SEV_CERT_LEN as u32,
        cert_chain: Some(Vec::new()),
        cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
    };
    d.dev.host().sev_pdh_cert_export(&mut arg).unwrap();
    assert_eq!(arg.pdh_cert.unwrap(), pdh);
    // Over 16 KiB: -EFAULT, nothing copied back into the structure.
    let data = d.put(
        0x100,
        &[user_buf(BASE, 0x4001), user_buf(BASE, 16)].concat(),
    );
    let (r, _) = d.issue(d.ro, SevIoctlCmd::SEV_PDH_CERT_EXPORT, data);
    assert_eq!(r.result, -14);
    assert_eq!(u32_at(&d.get(0x100, 24), 8), 0x4001);

    // PEK_CSR: query, then the CSR (the PEK body with empty signatures).
    let data = d.put(0x100, &user_buf(0, 0));
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PEK_CSR, data);
    assert_eq!((r.result, error_of(&back)), (-5, 4));
    assert_eq!(u32_at(&d.get(0x100, 12), 8) as usize, SEV_CERT_LEN);
    let data = d.put(0x100, &user_buf(BASE + 0x8000, SEV_CERT_LEN as u32));
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PEK_CSR, data);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    let csr = d.get(0x8000, SEV_CERT_LEN);
    // PEK ‖ OCA ‖ CEK: the CSR's public key equals the exported PEK's (bytes 0x10..).
    assert_eq!(
        csr[8..0x414],
        chain[8..0x414],
        "usage, algorithm and key of the PEK"
    );
}

#[test]
fn pek_gen_pdh_gen_import_checks_and_factory_reset() {
    let d = Dev::new();
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PEK_GEN, 0);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PDH_GEN, 0);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    // PEK_CERT_IMPORT: null or empty or over-16 KiB blobs are -EINVAL (no command).
    for (pa, pl, oa, ol) in [
        (0, 0x824, BASE + 0x1000, 0x824),
        (BASE + 0x1000, 0, BASE + 0x1000, 0x824),
        (BASE + 0x1000, 0x824, BASE + 0x1000, 0x4001),
    ] {
        let s = [
            pa.to_le_bytes().as_slice(),
            &u32::to_le_bytes(pl),
            &u64::to_le_bytes(oa),
            &u32::to_le_bytes(ol),
        ]
        .concat();
        let data = d.put(0x100, &s);
        let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PEK_CERT_IMPORT, data);
        assert_eq!((r.result, error_of(&back)), (-22, UNTOUCHED));
    }
    // Two zero "certificates": the firmware refuses them (-EIO with its status).
    let s = [
        (BASE + 0x1000).to_le_bytes().as_slice(),
        &0x824u32.to_le_bytes(),
        &(BASE + 0x2000).to_le_bytes(),
        &0x824u32.to_le_bytes(),
    ]
    .concat();
    let data = d.put(0x100, &s);
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_PEK_CERT_IMPORT, data);
    assert_eq!(r.result, -5);
    assert_ne!(error_of(&back), 0);
    assert_ne!(error_of(&back), UNTOUCHED);
    // FACTORY_RESET from INIT: SHUTDOWN then PLATFORM_RESET; the platform is UNINIT.
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SEV_FACTORY_RESET, 0);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    assert!(!d.dev.host().sev_platform_initialised());
    let (r, _) = d.issue(d.ro, SevIoctlCmd::SEV_PLATFORM_STATUS, BASE + 0x1000);
    assert_eq!(r.result, 0);
    assert_eq!(d.get(0x1000, 12)[2], 0, "state UNINIT");
}

#[test]
fn snp_status_config_commit_and_vlek_load() {
    let d = Dev::new();
    let (r, _) = d.issue(d.ro, SevIoctlCmd::SNP_PLATFORM_STATUS, 0);
    assert_eq!(r.result, -22, "data 0");
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SNP_PLATFORM_STATUS, BASE + 0x1000);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    let st = SnpPlatformStatus::read_from_bytes(&d.get(0x1000, 32)).unwrap();
    assert_eq!(st.state, 1);
    assert_eq!(st.is_rmp_init & 1, 1);
    let fw = d.dev.host().firmware().clone();
    let product = fw.chip().product();
    assert_eq!(
        st.current_tcb,
        fw.current_image().tcb.encode(product).unwrap().to_u64()
    );

    // SNP_SET_CONFIG with reserved bits set: firmware INVALID_PARAM (0x16).
    let mut cfg = SnpConfig::new_zeroed();
    cfg.flags = 1 << 5;
    let data = d.put(0x100, cfg.as_bytes());
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SNP_SET_CONFIG, data);
    assert_eq!((r.result, error_of(&back)), (-5, 0x16));
    // MASK_CHIP_ID: the status shows it.
    cfg.flags = SnpConfig::MASK_CHIP_ID;
    let data = d.put(0x100, cfg.as_bytes());
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SNP_SET_CONFIG, data);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    d.issue(d.ro, SevIoctlCmd::SNP_PLATFORM_STATUS, BASE + 0x1000);
    let st = SnpPlatformStatus::read_from_bytes(&d.get(0x1000, 32)).unwrap();
    assert_eq!(
        st.flags & SnpPlatformStatus::MASK_CHIP_ID,
        SnpPlatformStatus::MASK_CHIP_ID
    );
    let (r, back) = d.issue(d.ro, SevIoctlCmd::SNP_COMMIT, 0);
    assert_eq!((r.result, error_of(&back)), (0, 0));

    // SNP_VLEK_LOAD: wrong len / version are -EINVAL before the firmware.
    let blob_at = BASE + 0x3000;
    let mut vl = SnpVlekLoad::new_zeroed();
    vl.length = 8;
    vl.vlek_wrapped_paddr = blob_at;
    let data = d.put(0x100, vl.as_bytes());
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SNP_VLEK_LOAD, data);
    assert_eq!((r.result, error_of(&back)), (-22, UNTOUCHED));
    vl.length = 16;
    vl.vlek_wrapped_version = 1;
    let data = d.put(0x100, vl.as_bytes());
    let (r, _) = d.issue(d.rw, SevIoctlCmd::SNP_VLEK_LOAD, data);
    assert_eq!(r.result, -22);
    // A blob wrapped for this chip at the REPORTED_TCB loads; the status says VLEK_EN.
    let mut rng = Rng::seeded(b"fe-host vlek", "test");
    let (blob, _cert) = fw
        .chip()
        .provision_vlek_blob(&mut rng, &fw.reported_tcb(), "test-csp")
        .unwrap();
    d.put(0x3000, blob.as_bytes());
    vl.vlek_wrapped_version = 0;
    let data = d.put(0x100, vl.as_bytes());
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SNP_VLEK_LOAD, data);
    assert_eq!((r.result, error_of(&back)), (0, 0));
    d.issue(d.ro, SevIoctlCmd::SNP_PLATFORM_STATUS, BASE + 0x1000);
    let st = SnpPlatformStatus::read_from_bytes(&d.get(0x1000, 32)).unwrap();
    assert_eq!(
        st.flags & SnpPlatformStatus::VLEK_EN,
        SnpPlatformStatus::VLEK_EN
    );
    // A tampered blob: the firmware refuses it.
    let mut bad = blob;
    bad.vlek_wrapped[0] ^= 1;
    d.put(0x3000, bad.as_bytes());
    let (r, back) = d.issue(d.rw, SevIoctlCmd::SNP_VLEK_LOAD, data);
    assert_eq!(r.result, -5);
    assert_ne!(error_of(&back), 0);
    // An unreadable blob address: -EFAULT.
    vl.vlek_wrapped_paddr = 0x1000;
    let data = d.put(0x100, vl.as_bytes());
    let (r, _) = d.issue(d.rw, SevIoctlCmd::SNP_VLEK_LOAD, data);
    assert_eq!(r.result, -14);
    assert_eq!(VlekWrapped::LEN, 432);
}

#[test]
fn snp_commands_need_snp_initialised() {
    let params = softsev_host::ModuleParams {
        sev_snp: false,
        ..Default::default()
    };
    let host = SoftPlatform::builder(Product::Milan)
        .seed(*b"fe-host no snp")
        .mem(64 << 20)
        .module_params(params)
        .build()
        .unwrap()
        .host()
        .clone();
    let dev = SevDevice::new(host);
    let rw = dev
        .open(
            "",
            OpenFlags {
                read: true,
                write: true,
            },
            &ROOT,
        )
        .unwrap();
    let mem = BufferMemory::new(BASE, 4096);
    for cmd in [
        SevIoctlCmd::SNP_PLATFORM_STATUS,
        SevIoctlCmd::SNP_COMMIT,
        SevIoctlCmd::SNP_SET_CONFIG,
        SevIoctlCmd::SNP_VLEK_LOAD,
    ] {
        let c = SevIssueCmd {
            cmd: cmd.0,
            data: BASE,
            error: UNTOUCHED,
        };
        let r = dev.ioctl("", rw, SEV_ISSUE_CMD, 0, c.as_bytes(), 16, &ROOT, &mem);
        assert_eq!(r.result, -22, "{cmd:?}");
        let error = { SevIssueCmd::read_from_bytes(&r.out).unwrap().error };
        assert_eq!(error, UNTOUCHED);
    }
}

#[test]
fn observer_sees_each_command_with_its_outcome() {
    use softsev_devices::host::SevEvent;
    let log: Arc<std::sync::Mutex<Vec<SevEvent>>> = Arc::default();
    let l = log.clone();
    let d = Dev::with(
        SevDevice::new(host()).with_observer(Arc::new(move |e: &SevEvent| {
            l.lock().unwrap().push(e.clone())
        })),
    );
    let data = d.put(0x100, &user_buf(0, 0));
    d.issue(d.ro, SevIoctlCmd::SEV_GET_ID2, data);
    d.issue(d.ro, SevIoctlCmd::SEV_PEK_GEN, 0);
    d.issue(d.ro, SevIoctlCmd(13), 0);
    let log = log.lock().unwrap();
    let seen: Vec<_> = log.iter().map(|e| (e.name, e.result, e.error)).collect();
    assert_eq!(
        seen,
        [
            (Some("SEV_GET_ID2"), -5, Some(4)),
            (Some("SEV_PEK_GEN"), -1, Some(UNTOUCHED)),
            (None, -22, None),
        ]
    );
    assert!(log.iter().all(|e| e.pid == ROOT.pid && !e.writable));
}
