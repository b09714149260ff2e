//! Fuzz entry point for the `vmm_config` target (fuzz/fuzz_targets/vmm_config.rs): the
//! QEMU command-line and TOML front ends and, when a configuration is accepted, the
//! launch plan over the built-in firmware. Nothing may panic.

use crate::config::{from_toml, parse_args};
use crate::plan::{BootBlobs, LaunchPlan};

/// Input: `toml\n` followed by a TOML document, or command-line arguments separated by
/// newlines.
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = match text.strip_prefix("toml\n") {
        Some(t) => from_toml(t),
        None => parse_args(text.split('\n')),
    };
    let Ok(mut config) = parsed else { return };
    let _ = config.to_args();
    // Keep the plan cheap: the built-in firmware, a tiny kernel, no files.
    config.smp.cpus = config.smp.cpus.min(16);
    let Ok(ovmf) = softsev_measure::Ovmf::parse(softsev_measure::builtin::image()) else {
        return;
    };
    let boot = config.kernel.as_ref().map(|_| BootBlobs {
        kernel: vec![0x90; 16],
        initrd: None,
        cmdline: config.append.clone(),
    });
    if let Ok(plan) = LaunchPlan::from_parts(&config, &ovmf, boot, None) {
        let _ = plan.replay_digest();
    }
}
