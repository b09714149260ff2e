//! `/sys/devices/platform/sev-guest` and SEV_STATUS through `/dev/cpu/N/msr`.

use crate::guest_sev_guest::{ROOT, service};
use softsev_devices::guest::{GuestMsrs, PlatformDir};
use softsev_devices::msr::MsrFile;
use softsev_vfs::{Errno, NodeKind, VirtualFs};
use std::sync::Arc;

#[test]
fn sev_status_comes_from_the_booted_guest() {
    let svc = service("platform-msr", 0);
    let msr = MsrFile::new(vec![Arc::new(GuestMsrs::new(svc.sev_status()))]);
    let v = msr.read("", 0, 0xC001_0131, 8, &ROOT).unwrap();
    let v = u64::from_le_bytes(v.try_into().unwrap());
    assert_eq!(v, svc.sev_status());
    assert_eq!(
        v & 7,
        7,
        "SEV, SEV-ES and SNP enabled, as snpguest ok checks"
    );
    assert_eq!(msr.read("", 0, 0xC001_0010, 8, &ROOT), Err(Errno::EIO));
}

#[test]
fn the_platform_device_directory() {
    let d = PlatformDir::new();
    assert_eq!(d.kind(""), Some(NodeKind::Dir { mode: 0o755 }));
    assert_eq!(
        d.readdir("").unwrap(),
        ["driver_override", "modalias", "uevent"]
    );
    assert_eq!(
        d.read("modalias", 0, 0, 4096, &ROOT).unwrap(),
        b"platform:sev-guest\n"
    );
    assert_eq!(
        d.read("modalias", 0, 9, 4096, &ROOT).unwrap(),
        b"sev-guest\n"
    );
    assert_eq!(
        d.read("uevent", 0, 0, 4096, &ROOT).unwrap(),
        b"DRIVER=sev-guest\nMODALIAS=platform:sev-guest\n"
    );
    assert_eq!(
        d.read("driver_override", 0, 0, 4096, &ROOT).unwrap(),
        b"(null)\n"
    );
    assert_eq!(d.write("driver_override", 0, 0, b"foo\n", &ROOT), Ok(4));
    assert_eq!(
        d.read("driver_override", 0, 0, 4096, &ROOT).unwrap(),
        b"foo\n"
    );
    assert_eq!(d.write("driver_override", 0, 0, b"\n", &ROOT), Ok(1));
    assert_eq!(
        d.read("driver_override", 0, 0, 4096, &ROOT).unwrap(),
        b"(null)\n"
    );
    assert_eq!(d.write("uevent", 0, 0, b"change\n", &ROOT), Ok(7));
    assert_eq!(d.write("uevent", 0, 0, b"bogus", &ROOT), Err(Errno::EINVAL));
    assert_eq!(d.kind("driver"), None);
    assert_eq!(d.readdir("modalias"), Err(Errno::ENOTDIR));
}
