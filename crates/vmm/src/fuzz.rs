//! Fuzz entry point for the `vmm_config` target (fuzz/fuzz_targets/vmm_config.rs): the
//! QEMU command-line and TOML front ends and, when a configuration is accepted, the
//! launch plan over the built-in firmware; and the `qmp_parser` target: the QMP monitor.
//! Nothing may panic.

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

/// Input of the `qmp_parser` target (fuzz/fuzz_targets/qmp_parser.rs): bytes a QMP
/// client sends, fed to a [`crate::qmp::Session`] over a small launched
/// [`crate::qmp::model::SevModel`] in pieces whose sizes come from the first byte, so
/// values split across reads are exercised. Nothing may panic, and every line the
/// monitor writes must be one JSON object ending in `\r\n`.
pub fn fuzz_qmp(data: &[u8]) {
    use crate::qmp::model::{ModelConfig, SevModel};
    use crate::qmp::{QmpVersion, Session};
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let mut model = SevModel::new(ModelConfig {
        policy: u32::from(split & 1),
        handle: 1,
        api: (1, 55, 25),
        ram_size: 64 << 10,
        secret_area: Some((0x8000, 0xC00)),
        session: None,
        seed: b"fuzz".to_vec(),
        certs: None,
        cbitpos: 51,
    });
    let _ = model.launch_update_data(0, &[0x90; 0x100]);
    let _ = model.launch_measure();
    let mut s = Session::new(model, split & 2 != 0, QmpVersion::default());
    let check = |line: &str| {
        assert!(line.ends_with("\r\n"), "unterminated line {line:?}");
        let v: serde_json::Value =
            serde_json::from_str(line.trim_end()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v.is_object(), "{line:?}");
    };
    check(&s.connect());
    let step = usize::from(split >> 2).max(1);
    for chunk in data.chunks(step) {
        for line in s.feed(chunk).iter().chain(s.poll_events().iter()) {
            check(line);
        }
        if s.closed() {
            break;
        }
    }
    for line in s.feed(b"\n") {
        check(&line);
    }
}
