//! `vmm::run`: the default configuration launched on the software platform, booted by
//! the guest model, attested.
use softsev_vmm::run::{RunOptions, run};
use softsev_vmm::{Config, LaunchPlan};

fn opts() -> RunOptions {
    RunOptions {
        seed: Some(b"run-e2e".to_vec()),
        nonce: [0x5A; 64],
        ..Default::default()
    }
}

#[test]
fn default_run_launches_boots_and_attests() {
    let mut cfg = Config::default_run();
    cfg.memory.size = 256 << 20;
    let plan = LaunchPlan::build(&cfg).unwrap();
    let out = run(&plan, &opts(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.measurement, plan.expected_digest);
    let report = softsev_abi::report::AttestationReport::parse(&out.boot.report).unwrap();
    assert_eq!(report.measurement, plan.expected_digest);
    assert_eq!(report.report_data, [0x5A; 64]);
    assert!(out.boot.hashes_verified);
    eprintln!("{out:?}");
}

#[test]
fn kernel_hash_mismatch_ends_with_the_termination_reason() {
    let mut cfg = Config::default_run();
    cfg.memory.size = 256 << 20;
    let mut plan = LaunchPlan::build(&cfg).unwrap();
    // The host hands the guest another kernel than the one the hashes table (measured
    // into the launch digest) describes, as a tampering VMM would.
    if let Some(b) = plan.boot.as_mut() {
        b.kernel[100] ^= 1;
    }
    match run(&plan, &opts(), &mut |_| {}) {
        Err(
            e @ softsev_vmm::run::RunError::Terminated {
                set: 0, code: 0, ..
            },
        ) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(
                msg.contains("kernel"),
                "the cause names the kernel hash: {msg}"
            );
        }
        Err(e) => panic!("expected a termination request, got: {e}"),
        Ok(_) => panic!("the guest accepted a kernel that does not match its hash"),
    }
}

#[test]
fn same_seed_same_report() {
    let mut cfg = Config::default_run();
    cfg.memory.size = 128 << 20;
    cfg.smp.cpus = 1;
    let plan = LaunchPlan::build(&cfg).unwrap();
    let a = run(&plan, &opts(), &mut |_| {}).unwrap();
    let b = run(&plan, &opts(), &mut |_| {}).unwrap();
    assert_eq!(a.boot.report, b.boot.report);
    assert_eq!(a.boot.certs, b.boot.certs);
    let mut other = opts();
    other.seed = Some(b"another chip".to_vec());
    let c = run(&plan, &other, &mut |_| {}).unwrap();
    assert_eq!(c.measurement, a.measurement);
    assert_ne!(
        c.boot.report, a.boot.report,
        "another chip signs differently"
    );
}

#[test]
fn a_page_the_host_changed_after_validation_is_noticed() {
    let mut cfg = Config::default_run();
    cfg.memory.size = 128 << 20;
    cfg.smp.cpus = 1;
    let plan = LaunchPlan::build(&cfg).unwrap();
    for gpa in [0x10_0000u64, 0x30_1000] {
        let mut o = opts();
        o.tamper_gpa = Some(gpa);
        let out = run(&plan, &o, &mut |_| {}).unwrap();
        let t = out.tamper.expect("tamper result");
        eprintln!("{t:?}");
        assert!(t.host_action.contains("SUCCESS"), "{}", t.host_action);
        assert!(
            t.detected(),
            "the guest read a page the host changed without noticing"
        );
        let saw = t.guest_saw.unwrap();
        assert!(saw.contains(&format!("{gpa:#x}")), "{saw}");
    }
    // Without tampering the same read succeeds.
    let out = run(&plan, &opts(), &mut |_| {}).unwrap();
    assert!(out.tamper.is_none());
}

/// A CPUID page the firmware refuses is explained the way QEMU does it: the functions
/// whose values differ between the page the VMM sent and the corrected page KVM copied
/// back. The firmware's own check (an oracle here, not used by the VMM) agrees.
#[test]
fn a_rejected_cpuid_page_names_the_functions_the_firmware_corrected() {
    use softsev_abi::fw_buf::SnpCpuidPage;
    use softsev_abi::page_info::PageType;
    use softsev_firmware::cpuid::{PlatformCpuid, rejected_functions};
    use zerocopy::{FromBytes, IntoBytes};

    let mut cfg = Config::default_run();
    cfg.memory.size = 128 << 20;
    cfg.smp.cpus = 1;
    let mut plan = LaunchPlan::build(&cfg).unwrap();
    let platform = PlatformCpuid::for_product(plan.product);
    let update = plan
        .updates
        .iter_mut()
        .find(|u| u.page_type == PageType::CPUID)
        .expect("a CPUID page");
    let mut page = SnpCpuidPage::read_from_bytes(&update.data[..]).unwrap();
    let count = page.count as usize;
    // Claim every feature bit of the first function the firmware checks.
    let bad = (0..count)
        .find(|&i| {
            let mut p = page;
            p.functions[i].edx = u32::MAX;
            p.functions[i].ecx = u32::MAX;
            !rejected_functions(&platform, &p).is_empty()
        })
        .expect("a function the firmware checks");
    page.functions[bad].edx = u32::MAX;
    page.functions[bad].ecx = u32::MAX;
    update.data = page.as_bytes().to_vec();
    let expected = rejected_functions(&platform, &page);
    match run(&plan, &opts(), &mut |_| {}) {
        Err(softsev_vmm::run::RunError::CpuidRejected(v)) => assert_eq!(v, expected),
        Err(e) => panic!("expected a CPUID rejection, got: {e}"),
        Ok(_) => panic!("the firmware accepted a CPUID page claiming every feature"),
    }
}
