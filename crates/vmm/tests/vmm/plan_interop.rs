//! Differential test: QEMU command lines → launch plan → expected digest, against the
//! installed sev-snp-measure (PyPI, 0.0.13) given the same firmware, vCPUs, CPU type,
//! guest features, kernel, initrd and command line. Covers the built-in image (with the
//! generated test kernel), the sev-snp-measure AmdSev fixture with the measure-inputs
//! kernel/initrd/cmdline, and the real OVMF builds in ../shared/fixtures/ovmf.

use softsev_vmm::plan::LaunchPlan;
use softsev_vmm::{bootgen, parse_args};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOL: &str = "sev-snp-measure";

fn find_tool() -> Option<PathBuf> {
    softsev_testkit::on_path(TOOL)
}

use softsev_testkit::fixtures;

struct Case {
    ovmf: PathBuf,
    vcpus: u32,
    cpu: &'static str,
    debug_swap: bool,
    /// (kernel, initrd, append) with kernel-hashes=on.
    boot: Option<(PathBuf, Option<PathBuf>, Option<String>)>,
}

impl Case {
    fn qemu_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-enable-kvm".into(),
            "-machine".into(),
            "q35,confidential-guest-support=sev0".into(),
            "-object".into(),
            format!(
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes={},debug-swap={}",
                if self.boot.is_some() { "on" } else { "off" },
                if self.debug_swap { "on" } else { "off" }
            ),
            "-m".into(),
            "4G".into(),
            "-smp".into(),
            self.vcpus.to_string(),
            "-cpu".into(),
            self.cpu.into(),
            "-bios".into(),
            self.ovmf.display().to_string(),
        ];
        if let Some((k, i, ap)) = &self.boot {
            a.push("-kernel".into());
            a.push(k.display().to_string());
            if let Some(i) = i {
                a.push("-initrd".into());
                a.push(i.display().to_string());
            }
            if let Some(ap) = ap {
                a.push("-append".into());
                a.push(ap.clone());
            }
        }
        a
    }

    fn ssm_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--mode".into(),
            "snp".into(),
            "--vmm-type".into(),
            "QEMU".into(),
            "--ovmf".into(),
            self.ovmf.display().to_string(),
            "--vcpus".into(),
            self.vcpus.to_string(),
            "--guest-features".into(),
            if self.debug_swap { "0x21" } else { "0x1" }.into(),
        ];
        // sev-snp-measure has no qemu64 model; pass its signature.
        if self.cpu == "qemu64" {
            a.push("--vcpu-sig".into());
            a.push("0x60fb1".into());
        } else {
            a.push("--vcpu-type".into());
            a.push(self.cpu.into());
        }
        if let Some((k, i, ap)) = &self.boot {
            a.push("--kernel".into());
            a.push(k.display().to_string());
            if let Some(i) = i {
                a.push("--initrd".into());
                a.push(i.display().to_string());
            }
            if let Some(ap) = ap {
                a.push("--append".into());
                a.push(ap.clone());
            }
        }
        a
    }
}

fn ours(c: &Case) -> Result<String, String> {
    let cfg = parse_args(c.qemu_args()).map_err(|e| e.to_string())?;
    let plan = LaunchPlan::build(&cfg).map_err(|e| e.to_string())?;
    let replay = plan.replay_digest().map_err(|e| e.to_string())?;
    assert_eq!(
        replay, plan.expected_digest,
        "replay differs from the plan's digest"
    );
    Ok(hex::encode(plan.expected_digest))
}

fn theirs(tool: &Path, c: &Case) -> Result<String, String> {
    let out = Command::new(tool)
        .args(c.ssm_args())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn plan_digest_matches_sev_snp_measure() {
    let Some(tool) = find_tool() else {
        if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{TOOL} not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!("SKIP: {TOOL} not installed (run scripts/install-interop-tools.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let builtin = w("builtin.fd", &softsev_measure::builtin::image());
    let gen_boot = (
        w("vmlinuz", &bootgen::kernel()),
        Some(w("initrd.img", &bootgen::initrd())),
        Some(bootgen::CMDLINE.to_string()),
    );
    let mut cases = Vec::new();
    for (vcpus, cpu, ds) in [
        (1, "EPYC-Milan-v2", false),
        (4, "EPYC-Milan", false),
        (4, "EPYC-v4", true),
        (7, "EPYC-Genoa", false),
        (64, "EPYC-Turin", false),
        (2, "EPYC-Rome-v3", true),
        (3, "qemu64", false),
    ] {
        cases.push(Case {
            ovmf: builtin.clone(),
            vcpus,
            cpu,
            debug_swap: ds,
            boot: Some(gen_boot.clone()),
        });
        cases.push(Case {
            ovmf: builtin.clone(),
            vcpus,
            cpu,
            debug_swap: ds,
            boot: None,
        });
    }
    match fixtures() {
        Some(fx) => {
            let inputs = fx.join("measure-inputs");
            let append = std::fs::read_to_string(inputs.join("cmdline.txt")).unwrap();
            let boot = (
                inputs.join("fake-kernel.bin"),
                Some(inputs.join("fake-initrd.bin")),
                Some(append),
            );
            for rel in [
                "measurement/sev-snp-measure/ovmf_AmdSev_suffix.bin",
                "ovmf/debian-trixie-2025.02-8+deb13u1/OVMF_CODE_4M.fd",
                "ovmf/lit-sev-snp-utils/OVMF_CODE.fd",
            ] {
                for (vcpus, cpu) in [(1, "EPYC-Milan-v2"), (4, "EPYC-v4"), (16, "EPYC-Genoa-v1")] {
                    for b in [None, Some(boot.clone())] {
                        cases.push(Case {
                            ovmf: fx.join(rel),
                            vcpus,
                            cpu,
                            debug_swap: false,
                            boot: b,
                        });
                    }
                }
            }
        }
        None => println!("note: ../shared/fixtures absent; only the built-in image is compared"),
    }
    // The default run's written inputs and measure_args reproduce its digest.
    for kh in [true, false] {
        let mut cfg = softsev_vmm::Config::default_run();
        cfg.snp_mut().unwrap().kernel_hashes = kh;
        let plan = LaunchPlan::build(&cfg).unwrap();
        let files = plan
            .write_inputs(&dir.path().join(format!("out{kh}")))
            .unwrap();
        let out = Command::new(&tool)
            .args(plan.measure_args(&files))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            hex::encode(plan.expected_digest),
            "default run (kernel-hashes={kh}) re-measured by {TOOL}"
        );
    }

    let mut failures = Vec::new();
    let (mut equal, mut both_failed) = (0, 0);
    for c in &cases {
        let (o, t) = (ours(c), theirs(&tool, c));
        match (&o, &t) {
            (Ok(a), Ok(b)) if a == b => equal += 1,
            (Err(_), Err(_)) => both_failed += 1,
            _ => failures.push(format!(
                "{:?}\n  ours   {o:?}\n  theirs {t:?}",
                c.qemu_args()
            )),
        }
    }
    println!(
        "{} cases: {equal} equal digests, {both_failed} refused by both, {} mismatches",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        equal * 2 > cases.len(),
        "too few successful cases ({equal})"
    );
}
