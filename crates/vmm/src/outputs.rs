//! What a launch plan hands to people and other tools: a serialisable summary (for
//! `summary.json` and `--json`) and the exact launch inputs written to a directory with
//! the `sev-snp-measure` / `softsev measure` arguments that re-compute the digest.

use crate::error::PlanError;
use crate::plan::{LaunchPlan, UpdateSource};
use serde::Serialize;
use std::path::{Path, PathBuf};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One launch range in a [`PlanSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeSummary {
    /// First GPA, `0x…`.
    pub gpa: String,
    /// Length in bytes.
    pub len: u64,
    /// Page type name (`NORMAL`, `ZERO`, `SECRETS`, `CPUID`, ...).
    pub page_type: String,
    /// `firmware` or the metadata section (`metadata[3] CPUID`).
    pub source: String,
}

/// The facts of a launch plan, serialisable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Expected launch digest (hex), the report's MEASUREMENT.
    pub measurement: String,
    /// Digest after the firmware pages (sev-snp-measure's `snp:ovmf-hash`).
    pub ovmf_hash: String,
    /// Host product.
    pub product: String,
    /// Guest policy, `0x…`.
    pub policy: String,
    /// vCPUs at launch.
    pub vcpus: u32,
    /// VMSA RDX signature, `0x…`.
    pub vcpu_sig: String,
    /// SEV_FEATURES, `0x…`.
    pub guest_features: String,
    /// RAM bytes.
    pub ram_size: u64,
    /// RAM below 4 GiB.
    pub below_4g: u64,
    /// RAM above 4 GiB.
    pub above_4g: u64,
    /// Firmware GPA, `0x…`.
    pub firmware_gpa: String,
    /// LAUNCH_UPDATE ranges in order.
    pub updates: Vec<RangeSummary>,
    /// Total LAUNCH_UPDATE pages (VMSAs excluded).
    pub update_pages: u64,
    /// Kernel, initrd and command line measured (`kernel-hashes=on`).
    pub kernel_hashes: bool,
    /// An ID block is given.
    pub id_block: bool,
    /// AUTHOR_KEY_EN.
    pub author_key: bool,
    /// HOST_DATA (hex).
    pub host_data: String,
}

/// The launch inputs as written by [`LaunchPlan::write_inputs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFiles {
    /// The firmware image.
    pub firmware: PathBuf,
    /// The kernel (when one is loaded).
    pub kernel: Option<PathBuf>,
    /// The initrd (when one is loaded).
    pub initrd: Option<PathBuf>,
    /// The command line, as a file without trailing newline (when given).
    pub cmdline: Option<PathBuf>,
}

impl LaunchPlan {
    /// A serialisable summary.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            measurement: hex(&self.expected_digest),
            ovmf_hash: hex(&self.ovmf_hash),
            product: self.product.name().to_string(),
            policy: format!("{:#x}", self.start.policy.0),
            vcpus: self.vcpus,
            vcpu_sig: format!("{:#x}", self.vcpu_sig),
            guest_features: format!("{:#x}", self.guest_features),
            ram_size: self.memory.ram_size,
            below_4g: self.memory.below_4g,
            above_4g: self.memory.above_4g,
            firmware_gpa: format!("{:#x}", self.firmware_gpa.raw()),
            updates: self
                .updates
                .iter()
                .map(|u| RangeSummary {
                    gpa: format!("{:#x}", u.gpa.raw()),
                    len: u.len,
                    page_type: format!("{:?}", u.page_type),
                    source: match u.source {
                        UpdateSource::Firmware => "firmware".to_string(),
                        UpdateSource::Metadata { index, kind } => {
                            format!("metadata[{index}] {kind:?}")
                        }
                    },
                })
                .collect(),
            update_pages: self.update_pages(),
            kernel_hashes: self.kernel_hashes.is_some(),
            id_block: self.finish.id_block.is_some(),
            author_key: self.finish.auth_key_en,
            host_data: hex(&self.finish.host_data),
        }
    }

    /// The firmware image bytes the plan launches.
    pub fn firmware_image(&self) -> &[u8] {
        self.updates
            .iter()
            .find(|u| u.source == UpdateSource::Firmware)
            .map_or(&[], |u| u.data.as_slice())
    }

    /// Write the exact launch inputs to `dir` (created if needed): `firmware.fd`, and
    /// `vmlinuz`, `initrd.img`, `cmdline.txt` when the guest boots a kernel.
    pub fn write_inputs(&self, dir: &Path) -> Result<InputFiles, PlanError> {
        let write = |name: &str, data: &[u8]| -> Result<PathBuf, PlanError> {
            let p = dir.join(name);
            std::fs::write(&p, data).map_err(|error| PlanError::Write {
                path: p.clone(),
                error,
            })?;
            Ok(p)
        };
        std::fs::create_dir_all(dir).map_err(|error| PlanError::Write {
            path: dir.to_owned(),
            error,
        })?;
        let firmware = write("firmware.fd", self.firmware_image())?;
        let (mut kernel, mut initrd, mut cmdline) = (None, None, None);
        if let Some(b) = &self.boot {
            kernel = Some(write("vmlinuz", &b.kernel)?);
            if let Some(i) = &b.initrd {
                initrd = Some(write("initrd.img", i)?);
            }
            if let Some(c) = &b.cmdline {
                cmdline = Some(write("cmdline.txt", c.as_bytes())?);
            }
        }
        Ok(InputFiles {
            firmware,
            kernel,
            initrd,
            cmdline,
        })
    }

    /// Arguments for `sev-snp-measure` (and `softsev measure`) that re-compute
    /// [`LaunchPlan::expected_digest`] from the files [`LaunchPlan::write_inputs`] wrote.
    /// The kernel, initrd and command line are passed only when they are measured.
    pub fn measure_args(&self, files: &InputFiles) -> Vec<String> {
        let mut a: Vec<String> = ["--mode", "snp", "--vmm-type", "QEMU", "--ovmf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(files.firmware.display().to_string());
        a.push("--vcpus".into());
        a.push(self.vcpus.to_string());
        a.push("--vcpu-sig".into());
        a.push(format!("{:#x}", self.vcpu_sig));
        a.push("--guest-features".into());
        a.push(format!("{:#x}", self.guest_features));
        if self.kernel_hashes.is_some()
            && let Some(k) = &files.kernel
        {
            a.push("--kernel".into());
            a.push(k.display().to_string());
            if let Some(i) = &files.initrd {
                a.push("--initrd".into());
                a.push(i.display().to_string());
            }
            if let Some(c) = self.boot.as_ref().and_then(|b| b.cmdline.as_ref()) {
                a.push("--append".into());
                a.push(c.clone());
            }
        }
        a
    }
}
