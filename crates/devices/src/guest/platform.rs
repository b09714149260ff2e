//! `/sys/devices/platform/sev-guest` and the guest's MSR source.
//!
//! The directory is the platform device the SNP guest's kernel registers for the
//! sev-guest driver (`arch/x86/coco/sev/core.c`, `snp_init_platform_device`:
//! `platform_device_register_data(NULL, "sev-guest", -1, ...)`); tools such as the
//! CoCo attestation-agent only test that it exists. Its attributes are the driver
//! core's for a bound platform device (`drivers/base/platform.c`: `modalias`,
//! `driver_override`; `drivers/base/core.c`: `uevent`); symlinks (`driver`,
//! `subsystem`) have no counterpart in a [`VirtualFs`] and are left out.
//!
//! [`GuestMsrs`] answers SEV_STATUS (MSR 0xC0010131, AMD APM vol. 2 §15.34.10) with
//! the value the guest read at boot, for `/dev/cpu/N/msr` (`snpguest ok`).

use crate::msr::MsrSource;
use softsev_abi::ghcb::MSR_SEV_STATUS;
use softsev_vfs::{Caller, Errno, NodeKind, VirtualFs};

/// Where the directory is mounted.
pub const MOUNT_POINT: &str = "/sys/devices/platform/sev-guest";

/// The actions a write to `uevent` may name (lib/kobject_uevent.c `kobject_actions`).
const UEVENT_ACTIONS: [&str; 8] = [
    "add", "remove", "change", "move", "online", "offline", "bind", "unbind",
];

/// `/sys/devices/platform/sev-guest`.
#[derive(Debug, Default)]
pub struct PlatformDir {
    driver_override: parking_lot::Mutex<Option<String>>,
}

impl PlatformDir {
    /// The directory.
    pub fn new() -> Self {
        PlatformDir::default()
    }

    fn text(&self, path: &str) -> Option<String> {
        match path {
            "modalias" => Some("platform:sev-guest\n".into()),
            "uevent" => Some("DRIVER=sev-guest\nMODALIAS=platform:sev-guest\n".into()),
            "driver_override" => Some(format!(
                "{}\n",
                self.driver_override.lock().as_deref().unwrap_or("(null)")
            )),
            _ => None,
        }
    }
}

impl VirtualFs for PlatformDir {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        match path {
            "" => Some(NodeKind::Dir { mode: 0o755 }),
            "modalias" => Some(NodeKind::File {
                mode: 0o444,
                size: 4096,
            }),
            "uevent" | "driver_override" => Some(NodeKind::File {
                mode: 0o644,
                size: 4096,
            }),
            _ => None,
        }
    }

    fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        match self.kind(path) {
            Some(NodeKind::Dir { .. }) => Ok(["driver_override", "modalias", "uevent"]
                .map(String::from)
                .to_vec()),
            Some(NodeKind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        path: &str,
        _fh: u64,
        offset: u64,
        size: u32,
        _caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        let t = self.text(path).ok_or(Errno::EISDIR)?;
        let t = t.as_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(t.len());
        let end = start.saturating_add(size as usize).min(t.len());
        Ok(t[start..end].to_vec())
    }

    /// `uevent_store`: a known action (the kernel then emits the uevent; nobody
    /// listens in the namespace) or `EINVAL`. `driver_override_store`
    /// (`driver_set_override`): the name up to a newline, at most a page; empty
    /// clears it. It only matters at the next probe, which never comes here.
    fn write(
        &self,
        path: &str,
        _fh: u64,
        _offset: u64,
        data: &[u8],
        _caller: &Caller,
    ) -> Result<u32, Errno> {
        match path {
            "uevent" => {
                let s = String::from_utf8_lossy(data);
                let action = s.split_whitespace().next().unwrap_or("");
                if UEVENT_ACTIONS.contains(&action) {
                    Ok(data.len() as u32)
                } else {
                    Err(Errno::EINVAL)
                }
            }
            "driver_override" => {
                if data.len() >= 4096 {
                    return Err(Errno::EINVAL);
                }
                let s = String::from_utf8_lossy(data);
                let name = s.split('\n').next().unwrap_or("");
                *self.driver_override.lock() = (!name.is_empty()).then(|| name.to_string());
                Ok(data.len() as u32)
            }
            "modalias" => Err(Errno::EACCES),
            _ => Err(Errno::EISDIR),
        }
    }
}

/// The guest's MSRs as `/dev/cpu/N/msr` reads them: SEV_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMsrs {
    sev_status: u64,
}

impl GuestMsrs {
    /// SEV_STATUS = `sev_status` (e.g. [`softsev_vmm::service::GuestService::sev_status`]).
    pub fn new(sev_status: u64) -> Self {
        GuestMsrs { sev_status }
    }
}

impl MsrSource for GuestMsrs {
    fn rdmsr(&self, index: u32) -> Option<u64> {
        (index == MSR_SEV_STATUS).then_some(self.sev_status)
    }
}
