//! Fuzz entry point for the `vmm_config` target (fuzz/fuzz_targets/vmm_config.rs): the
//! QEMU command-line and TOML front ends and, when a configuration is accepted, the
//! launch plan over the built-in firmware; and the `qmp_parser` target: the QMP monitor
//! over a real SEV guest.
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
/// client sends, fed to a [`crate::qmp::Session`] over a real guest — a
/// [`crate::sev_run::SevVm`] launched on the software platform from the built-in
/// firmware, one per input, up to LAUNCH_MEASURE (launch-secret) — in pieces whose
/// sizes come from the first byte, so values split across reads are exercised. The
/// first byte also picks the policy (bit 0: NODBG, bit 1: SEV-ES) and `-S` (bit 2).
/// Nothing may panic, and every line the monitor writes must be one JSON object ending
/// in `\r\n`.
pub fn fuzz_qmp(data: &[u8]) {
    use crate::qmp::{QmpVersion, Session};
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let vm = fuzz_sev_guest(u32::from(split & 1) | (u32::from(split & 2) << 1));
    let mut s = Session::new(vm, split & 4 != 0, QmpVersion::default());
    let check = |line: &str| {
        assert!(line.ends_with("\r\n"), "unterminated line {line:?}");
        let v: serde_json::Value =
            serde_json::from_str(line.trim_end()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v.is_object(), "{line:?}");
    };
    check(&s.connect());
    let step = usize::from(split >> 3).max(1);
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

/// A small `sev-guest` (16 MiB, one vCPU, the built-in firmware) launched to
/// launch-secret with `policy`. The setup does not depend on the input, so a failure
/// is a bug of the launch path and panics with the reason.
fn fuzz_sev_guest(policy: u32) -> crate::sev_run::SevVm {
    let args = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy:#x} \
         -cpu EPYC-Milan -m 16M -smp 1 -S"
    );
    let config = parse_args(args.split_whitespace().map(str::to_string))
        .unwrap_or_else(|e| panic!("fuzz guest arguments: {e}"));
    let ovmf = softsev_measure::Ovmf::parse(softsev_measure::builtin::image())
        .unwrap_or_else(|e| panic!("built-in firmware: {e}"));
    let plan = crate::sev_plan::SevLaunchPlan::from_parts(
        &config,
        &ovmf,
        None,
        crate::config::LaunchBlobs::default(),
    )
    .unwrap_or_else(|e| panic!("fuzz guest plan (policy {policy:#x}): {e}"));
    crate::sev_run::SevVm::launch(&plan, Some(b"fuzz qmp"))
        .unwrap_or_else(|e| panic!("fuzz guest launch (policy {policy:#x}): {e}"))
}
