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
