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
    let report = softsev_abi::report::AttestationReport::parse(&out.report).unwrap();
    assert_eq!(report.measurement, plan.expected_digest);
    assert_eq!(report.report_data, [0x5A; 64]);
    assert!(out.boot.hashes_verified);
    eprintln!("{out:?}");
}
