//! `/dev/sev-guest` through a fake caller address space (frontends.md §5.1, §7.4):
//! every semantic of the driver, reports verified by softsev's verifier.

use softsev_attest::{AmdCert, CertSet, TrustStore, VerifyOptions, verify};
use softsev_devices::guest::SevGuestDevice;
use softsev_devices::guest::sev_guest::{
    SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT, SNP_GET_REPORT, TASK_SIZE_MAX,
};
use softsev_vfs::{BufferMemory, Caller, CallerMemory, Errno, IoctlReply, NodeKind, VirtualFs};
use softsev_vmm::service::{GuestService, GuestServiceConfig};
use std::sync::Arc;

/// Where things live in the fake caller's memory.
pub(crate) const BASE: u64 = 0x7f00_0000_0000;
pub(crate) const ARG: u64 = BASE;
pub(crate) const REQ: u64 = BASE + 0x100;
pub(crate) const RESP: u64 = BASE + 0x1000;
pub(crate) const CERTS: u64 = BASE + 0x2000;
pub(crate) const LEN: usize = 0x8000;

pub(crate) const ROOT: Caller = Caller {
    pid: 4242,
    uid: 0,
    gid: 0,
};

pub(crate) fn service(seed: &str, vmpl: u8) -> Arc<GuestService> {
    eprintln!("seed: {seed}");
    Arc::new(
        GuestService::boot(&GuestServiceConfig {
            seed: Some(seed.as_bytes().to_vec()),
            vmpl,
            ..GuestServiceConfig::default()
        })
        .unwrap(),
    )
}

/// The 32-byte `snp_guest_request_ioctl`.
pub(crate) fn ioctl_struct(msg_version: u8, req: u64, resp: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = msg_version;
    b[8..16].copy_from_slice(&req.to_le_bytes());
    b[16..24].copy_from_slice(&resp.to_le_bytes());
    b
}

/// `snp_report_req`.
pub(crate) fn report_req(user_data: &[u8; 64], vmpl: u32) -> Vec<u8> {
    let mut b = vec![0u8; 96];
    b[..64].copy_from_slice(user_data);
    b[64..68].copy_from_slice(&vmpl.to_le_bytes());
    b
}

/// `snp_ext_report_req`.
pub(crate) fn ext_req(
    user_data: &[u8; 64],
    vmpl: u32,
    certs_address: u64,
    certs_len: u32,
) -> Vec<u8> {
    let mut b = report_req(user_data, vmpl);
    b.resize(112, 0);
    b[96..104].copy_from_slice(&certs_address.to_le_bytes());
    b[104..108].copy_from_slice(&certs_len.to_le_bytes());
    b
}

/// Issue `cmd` with the structure FUSE hands a restricted `_IOWR` of 32 bytes.
pub(crate) fn call(dev: &SevGuestDevice, cmd: u32, s: &[u8; 32], mem: &BufferMemory) -> IoctlReply {
    mem.write(ARG, s).unwrap();
    dev.ioctl("", 0, cmd, ARG, s, 32, &ROOT, mem)
}

pub(crate) fn exitinfo2(r: &IoctlReply) -> u64 {
    assert_eq!(r.out.len(), 32, "the structure is copied back");
    u64::from_le_bytes(r.out[24..32].try_into().unwrap())
}

pub(crate) fn read(mem: &BufferMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    mem.read(addr, &mut b).unwrap();
    b
}

/// The report in a `snp_report_resp` at RESP (status 0, size 0x4A0).
pub(crate) fn report_at_resp(mem: &BufferMemory) -> Vec<u8> {
    let resp = read(mem, RESP, 4000);
    assert_eq!(
        u32::from_le_bytes(resp[0..4].try_into().unwrap()),
        0,
        "status"
    );
    assert_eq!(u32::from_le_bytes(resp[4..8].try_into().unwrap()), 0x4A0);
    assert!(resp[0x20 + 0x4A0..].iter().all(|&b| b == 0), "zero padded");
    resp[0x20..0x20 + 0x4A0].to_vec()
}

/// softsev's verifier accepts `report` under `svc`'s chip, with `certs` (a GHCB table).
pub(crate) fn assert_verifies(svc: &GuestService, report: &[u8], certs: &[u8]) {
    let trust = TrustStore::custom(
        vec![AmdCert::from_der("ark", &svc.chain().ark).unwrap()],
        None,
    )
    .unwrap();
    let set = CertSet::from_table(certs).unwrap();
    let opts = VerifyOptions::new().with_trust(&trust);
    let v = verify(report, &set, &opts);
    assert!(v.passed(), "{:?}", v.first_failure());
}

fn report_data(report: &[u8]) -> &[u8] {
    &report[0x50..0x90]
}

fn vmpl(report: &[u8]) -> u32 {
    u32::from_le_bytes(report[0x30..0x34].try_into().unwrap())
}

#[test]
fn get_report_carries_user_data_verifies_and_leaves_the_struct_untouched() {
    let svc = service("dev-report", 0);
    let dev = SevGuestDevice::new(svc.clone());
    let mem = BufferMemory::new(BASE, LEN);
    let nonce: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x5a);
    mem.write(REQ, &report_req(&nonce, 0)).unwrap();
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r, IoctlReply::ok(), "success copies nothing back");
    let report = report_at_resp(&mem);
    assert_eq!(report_data(&report), nonce);
    assert_eq!(vmpl(&report), 0);
    assert_verifies(&svc, &report, svc.cert_table());
    // Two requests, two signatures over different nonces; the sequence number moved.
    mem.write(REQ, &report_req(&[7; 64], 2)).unwrap();
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
    let second = report_at_resp(&mem);
    assert_eq!(report_data(&second), [7; 64]);
    assert_eq!(vmpl(&second), 2);
    assert_verifies(&svc, &second, svc.cert_table());
}

#[test]
fn argument_checks_come_in_the_drivers_order() {
    let svc = service("dev-args", 0);
    let dev = SevGuestDevice::new(svc);
    let mem = BufferMemory::new(BASE, LEN);
    mem.write(REQ, &report_req(&[1; 64], 0)).unwrap();
    // msg_version 0: EINVAL before anything else, the structure comes back with 0xff.
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(0, REQ, RESP), &mem);
    assert_eq!(r.result, -22);
    assert_eq!(exitinfo2(&r), 0xff);
    // Unknown command: ENOTTY (msg_version checked first).
    let r = call(&dev, 0xC020_5303, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, -25);
    assert_eq!(exitinfo2(&r), 0xff);
    let r = call(&dev, 0xC020_5303, &ioctl_struct(0, REQ, RESP), &mem);
    assert_eq!(r.result, -22);
    // A command of another size: the structure is read and written in the caller's
    // memory (copy_from_user / copy_to_user of 32 bytes at arg).
    mem.write(ARG, &ioctl_struct(1, REQ, RESP)).unwrap();
    let r = dev.ioctl("", 0, 0x5310, ARG, &[], 0, &ROOT, &mem);
    assert_eq!(r, IoctlReply::err(Errno::ENOTTY));
    assert_eq!(read(&mem, ARG + 24, 8), 0xffu64.to_le_bytes());
    let r = dev.ioctl("", 0, 0x5310, 0x10, &[], 0, &ROOT, &mem);
    assert_eq!(r, IoctlReply::err(Errno::EFAULT));
    // Null pointers: EINVAL, for every command.
    for cmd in [SNP_GET_REPORT, SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT] {
        for (req, resp) in [(0, RESP), (REQ, 0)] {
            let r = call(&dev, cmd, &ioctl_struct(1, req, resp), &mem);
            assert_eq!(r.result, -22, "{cmd:#x}");
            assert_eq!(exitinfo2(&r), 0xff);
        }
    }
    // A request pointer the caller cannot read: EFAULT before the request is sent.
    let r = call(
        &dev,
        SNP_GET_REPORT,
        &ioctl_struct(1, BASE + LEN as u64 - 8, RESP),
        &mem,
    );
    assert_eq!(r.result, -14);
    assert_eq!(exitinfo2(&r), 0xff);
    // A response pointer it cannot write: the request went through (exitinfo2 0), so
    // the structure is not copied back, and the ioctl fails with EFAULT.
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, 0x1000), &mem);
    assert_eq!(r, IoctlReply::err(Errno::EFAULT));
    // The VMPCK still works: EFAULT is no firmware failure.
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
    // The device file itself.
    assert_eq!(
        dev.kind(""),
        Some(NodeKind::File {
            mode: 0o600,
            size: 0
        })
    );
    assert_eq!(dev.kind("x"), None);
    assert_eq!(dev.read("", 0, 0, 8, &ROOT), Err(Errno::EINVAL));
}

#[test]
fn ext_report_negotiates_the_certificate_length() {
    let svc = service("dev-ext", 0);
    let dev = SevGuestDevice::new(svc.clone());
    let mem = BufferMemory::new(BASE, LEN);
    let table = svc.cert_table().to_vec();
    let need = table.len().div_ceil(4096) * 4096;
    let nonce = [0x33; 64];
    // The sev crate's first call: no buffer (address u64::MAX, length 0).
    mem.write(REQ, &ext_req(&nonce, 0, u64::MAX, 0)).unwrap();
    mem.write(RESP, &[0xEE; 16]).unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, -5, "EIO");
    assert_eq!(exitinfo2(&r), 1 << 32, "vmm_error INVALID_LEN, fw_error 0");
    let back = read(&mem, REQ, 112);
    assert_eq!(
        u32::from_le_bytes(back[104..108].try_into().unwrap()),
        need as u32
    );
    assert_eq!(read(&mem, RESP, 16), [0xEE; 16], "resp_data untouched");
    // Too small a buffer, the same answer.
    mem.write(REQ, &ext_req(&nonce, 0, CERTS, 4096)).unwrap();
    if need > 4096 {
        let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
        assert_eq!((r.result, exitinfo2(&r)), (-5, 1 << 32));
    }
    // The length asked for: report and table.
    mem.write(CERTS, &vec![0xAB; 0x4000]).unwrap();
    mem.write(REQ, &ext_req(&nonce, 0, CERTS, need as u32))
        .unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r, IoctlReply::ok());
    let report = report_at_resp(&mem);
    assert_eq!(report_data(&report), nonce);
    let certs = read(&mem, CERTS, need);
    assert_eq!(&certs[..table.len()], &table[..]);
    assert!(certs[table.len()..].iter().all(|&b| b == 0), "zero padded");
    // First entry: the ARK's GUID, bytes c0b406a4a803495297433fb6014cd0ae as
    // snpguest reads them (frontends.md §3.3).
    let ark_guid: Vec<u8> = (0..16)
        .map(|i| {
            u8::from_str_radix(&"c0b406a4a803495297433fb6014cd0ae"[2 * i..2 * i + 2], 16).unwrap()
        })
        .collect();
    assert_eq!(certs[..16], ark_guid[..]);
    assert_eq!(
        read(&mem, CERTS + need as u64, 16),
        [0xAB; 16],
        "only certs_len written"
    );
    assert_verifies(&svc, &report, &certs);
    // A larger buffer than needed (16 KiB, the most): the table, then zeros.
    mem.write(REQ, &ext_req(&nonce, 0, CERTS, 0x4000)).unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
    assert!(
        read(&mem, CERTS + table.len() as u64, 0x4000 - table.len())
            .iter()
            .all(|&b| b == 0)
    );
    // A null address also means "no certificates": a plain negotiation again.
    mem.write(REQ, &ext_req(&nonce, 0, 0, 0x4000)).unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!((r.result, exitinfo2(&r)), (-5, 1 << 32));
    // Lengths the driver refuses before sending anything.
    for bad in [4097, 0x5000, 0x4000 + 4096, 100] {
        mem.write(REQ, &ext_req(&nonce, 0, CERTS, bad)).unwrap();
        let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
        assert_eq!((r.result, exitinfo2(&r)), (-22, 0xff), "certs_len {bad}");
    }
    // An address outside user space: EFAULT at access_ok.
    mem.write(REQ, &ext_req(&nonce, 0, TASK_SIZE_MAX - 4096, 8192))
        .unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!((r.result, exitinfo2(&r)), (-14, 0xff));
    // A user address the caller has not mapped: the request is made, the copy faults.
    mem.write(REQ, &ext_req(&nonce, 0, 0x1000, 8192)).unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r, IoctlReply::err(Errno::EFAULT));
    // The request pointer must cover the whole 112-byte structure.
    let r = call(
        &dev,
        SNP_GET_EXT_REPORT,
        &ioctl_struct(1, BASE + LEN as u64 - 100, RESP),
        &mem,
    );
    assert_eq!(r.result, -14);
    // And everything still works.
    mem.write(REQ, &ext_req(&[9; 64], 0, CERTS, need as u32))
        .unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
}

#[test]
fn vmpl_below_the_guests_is_the_firmwares_invalid_param() {
    let svc = service("dev-vmpl1", 1);
    assert_eq!(svc.vmpck_id(), 1);
    let dev = SevGuestDevice::new(svc.clone());
    let mem = BufferMemory::new(BASE, LEN);
    mem.write(REQ, &report_req(&[5; 64], 0)).unwrap();
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r, IoctlReply::ok(), "the exchange itself succeeded");
    let resp = read(&mem, RESP, 0x20 + 0x4A0);
    assert_eq!(u32::from_le_bytes(resp[0..4].try_into().unwrap()), 0x16);
    assert!(resp[0x20..].iter().all(|&b| b == 0), "no report");
    // VMPL 1 and above work.
    mem.write(REQ, &report_req(&[5; 64], 1)).unwrap();
    let r = call(&dev, SNP_GET_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
    let report = report_at_resp(&mem);
    assert_eq!(vmpl(&report), 1);
    assert_verifies(&svc, &report, svc.cert_table());
}

fn derived_key(dev: &SevGuestDevice, req: &[u8; 32]) -> Vec<u8> {
    // The request ends where the caller's memory ends: only 32 bytes may be read.
    let mem = BufferMemory::new(BASE, LEN);
    let at = BASE + LEN as u64 - 32;
    mem.write(at, req).unwrap();
    let r = call(dev, SNP_GET_DERIVED_KEY, &ioctl_struct(1, at, RESP), &mem);
    assert_eq!(r, IoctlReply::ok());
    let resp = read(&mem, RESP, 64);
    assert_eq!(
        u32::from_le_bytes(resp[0..4].try_into().unwrap()),
        0,
        "status"
    );
    resp[32..64].to_vec()
}

#[test]
fn seeded_derived_keys_are_identical_across_boots() {
    // root_key_select 0 (VCEK), guest_field_select = measurement, vmpl 0.
    let mut req = [0u8; 32];
    req[8] = 1 << 3;
    let a = derived_key(&SevGuestDevice::new(service("dev-key", 0)), &req);
    let b = derived_key(&SevGuestDevice::new(service("dev-key", 0)), &req);
    let c = derived_key(&SevGuestDevice::new(service("dev-key-other", 0)), &req);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().any(|&x| x != 0));
    // Another field selection, another key.
    let mut other = req;
    other[8] = 1;
    let d = derived_key(&SevGuestDevice::new(service("dev-key", 0)), &other);
    assert_ne!(a, d);
}

#[test]
fn a_failed_request_disables_the_vmpck() {
    let svc = service("dev-busy", 0);
    let dev = SevGuestDevice::new(svc.clone());
    let mem = BufferMemory::new(BASE, LEN);
    // The host stays busy: the driver gives up with ETIMEDOUT, exitinfo2 = BUSY << 32.
    svc.set_vmm_busy(true);
    mem.write(REQ, &ext_req(&[1; 64], 0, CERTS, 0x4000))
        .unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!((r.result, exitinfo2(&r)), (-110, 2 << 32));
    svc.set_vmm_busy(false);
    // From now on every request: ENOTTY, exitinfo2 0xff.
    mem.write(REQ, &report_req(&[1; 64], 0)).unwrap();
    for cmd in [SNP_GET_REPORT, SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT] {
        let r = call(&dev, cmd, &ioctl_struct(1, REQ, RESP), &mem);
        assert_eq!((r.result, exitinfo2(&r)), (-25, 0xff), "{cmd:#x}");
    }
}

#[test]
fn the_event_log_records_each_ioctl() {
    let svc = service("dev-log", 0);
    let events = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = events.clone();
    let dev = SevGuestDevice::new(svc.clone()).with_log(Arc::new(move |e: &serde_json::Value| {
        sink.lock().unwrap().push(e.clone())
    }));
    let mem = BufferMemory::new(BASE, LEN);
    let need = svc.cert_table().len().div_ceil(4096) * 4096;
    // snpguest certificates: a length query, then the request with that length.
    mem.write(REQ, &ext_req(&[0; 64], 0, u64::MAX, 0)).unwrap();
    call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    mem.write(REQ, &ext_req(&[0; 64], 0, CERTS, need as u32))
        .unwrap();
    call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["cmd"], "0xc0205302");
    assert_eq!(ev[0]["name"], "SNP_GET_EXT_REPORT");
    assert_eq!(ev[0]["certs_len"], 0);
    assert_eq!(ev[0]["certs_len_out"], need);
    assert_eq!(ev[0]["result"], -5);
    assert_eq!(ev[0]["exitinfo2"], "0x100000000");
    assert_eq!(ev[0]["pid"], ROOT.pid);
    assert_eq!(ev[1]["certs_len"], need);
    assert_eq!(ev[1]["result"], 0);
    assert_eq!(ev[1]["status"], 0);
    assert_eq!(ev[1]["exitinfo2"], "0x0");
}
