//! The `sev-guest` launch plan against the genuine sevctl vectors
//! (../shared/fixtures/sev-legacy/VECTORS.md §3) and `softsev measure`'s SEV / SEV-ES
//! digests: LAUNCH_UPDATE_DATA order, the kernel hashes table, the SEV-ES VMSAs of
//! KVM_SEV_ES_INIT (sevctl's `vmsa build`, byte for byte) and of INIT2
//! (`seves_launch_digest`), and the measurement an owner checks.

use base64::Engine;
use softsev_crypto::hash::{hmac_sha256, sha256};
use softsev_measure::launch::{sev_launch_digest, seves_launch_digest};
use softsev_measure::{KernelHashes, Ovmf, VmmType};
use softsev_vmm::config::{LaunchBlobs, SevKvmInit};
use softsev_vmm::parse_args;
use softsev_vmm::plan::BootBlobs;
use softsev_vmm::sev_plan::SevLaunchPlan;
use zerocopy::IntoBytes;

const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";

fn cfg(props: &str, extra: &str) -> softsev_vmm::Config {
    let a: Vec<String> = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1{props} \
         -cpu EPYC-Milan -m 1G {extra}"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    parse_args(a).unwrap()
}

#[test]
fn sev_es_init_vmsas_and_measurement_equal_sevctls() {
    let Some(dir) = softsev_testkit::fixture_dir("sev-legacy/sevctl") else {
        return;
    };
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let c = cfg(",policy=0x5,legacy-vm-type=on", "-smp 4");
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, None, LaunchBlobs::default()).unwrap();
    assert!(plan.es);
    assert_eq!(plan.kvm_init, SevKvmInit::SevEsInit);
    assert_eq!(plan.updates.len(), 1);
    assert_eq!(plan.updates[0].gpa.0, (4u64 << 30) - ovmf.size() as u64);
    let vmsa0 = std::fs::read(dir.join("vmsa0.bin")).unwrap();
    let vmsa1 = std::fs::read(dir.join("vmsa1.bin")).unwrap();
    assert_eq!(plan.vmsas.len(), 4);
    assert_eq!(
        plan.vmsas[0].as_bytes(),
        &vmsa0[..],
        "BSP VMSA = sevctl vmsa0.bin"
    );
    for v in &plan.vmsas[1..] {
        assert_eq!(v.as_bytes(), &vmsa1[..], "AP VMSA = sevctl vmsa1.bin");
    }
    let mut all = ovmf.data().to_vec();
    all.extend_from_slice(&vmsa0);
    for _ in 0..3 {
        all.extend_from_slice(&vmsa1);
    }
    assert_eq!(plan.expected_digest, sha256(&all));
    // sevctl's SEV-ES vector: api 1.49 build 6, policy 5, its TIK and nonce.
    let blob = base64::engine::general_purpose::STANDARD
        .decode("/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny")
        .unwrap();
    let tik = std::fs::read(dir.join("measurement/tik1.bin")).unwrap();
    let m = hmac_sha256(
        &tik,
        &[
            &[0x04, 1, 49, 6],
            &5u32.to_le_bytes(),
            &plan.expected_digest,
            &blob[32..],
        ],
    );
    assert_eq!(m[..], blob[..32]);
    // The secret area the owner's packet goes to (§8.3: RHEL9 trimmed OVMF).
    assert_eq!(plan.secret_area, Some((0x0080_C000, 0xC00)));
}

#[test]
fn init2_vmsas_are_softsev_measures_and_differ_in_fpu_state() {
    let Some(dir) = softsev_testkit::fixture_dir("sev-legacy/sevctl") else {
        return;
    };
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let c = cfg(",policy=0x5,legacy-vm-type=off", "-smp 2");
    let init2 = SevLaunchPlan::from_parts(&c, &ovmf, None, LaunchBlobs::default()).unwrap();
    assert_eq!(
        init2.kvm_init,
        SevKvmInit::Init2(softsev_abi::kvm::VmType::SEV_ES)
    );
    let sig = c.cpu.signature;
    assert_eq!(
        init2.expected_digest,
        seves_launch_digest(&ovmf, None, 2, sig, VmmType::Qemu).unwrap()
    );
    let legacy = SevLaunchPlan::from_parts(
        &cfg(",policy=0x5", "-smp 2"),
        &ovmf,
        None,
        LaunchBlobs::default(),
    )
    .unwrap();
    assert_ne!(legacy.expected_digest, init2.expected_digest);
    // Exactly MXCSR (0x408..0x40A) and x87 FCW (0x410..0x412) differ (§8.1).
    let (a, b) = (legacy.vmsas[0].as_bytes(), init2.vmsas[0].as_bytes());
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(diff, vec![0x408, 0x409, 0x410, 0x411]);
}

#[test]
fn sev_with_kernel_hashes_is_sevctls_kernel_vector() {
    let Some(dir) = softsev_testkit::fixture_dir("sev-legacy/sevctl") else {
        return;
    };
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let kernel = std::fs::read(dir.join("measurement/vmlinuz-fake")).unwrap();
    let initrd = std::fs::read(dir.join("measurement/initrd-fake")).unwrap();
    let cmdline = "foo bar baz fake kernel=cmdline";
    let c = cfg(",policy=0x3,kernel-hashes=on", "-kernel k -initrd i");
    let boot = BootBlobs {
        kernel: kernel.clone(),
        initrd: Some(initrd.clone()),
        cmdline: Some(cmdline.to_string()),
    };
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, Some(boot), LaunchBlobs::default()).unwrap();
    assert!(!plan.es && plan.vmsas.is_empty());
    assert_eq!(plan.kvm_init, SevKvmInit::SevInit);
    assert_eq!(plan.updates.len(), 2);
    assert_eq!(plan.updates[1].what, "kernel hashes table");
    assert_eq!(plan.updates[1].data.len(), 176);
    assert_eq!(
        hex::encode(plan.expected_digest),
        "4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570"
    );
    let h = KernelHashes::from_bytes(&kernel, Some(&initrd), Some(cmdline));
    assert_eq!(
        plan.expected_digest,
        sev_launch_digest(&ovmf, Some(&h)).unwrap()
    );
    // Without kernel-hashes the kernel is not measured.
    let c = cfg(",policy=0x3", "-kernel k");
    let boot = BootBlobs {
        kernel,
        initrd: None,
        cmdline: None,
    };
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, Some(boot), LaunchBlobs::default()).unwrap();
    assert_eq!(
        hex::encode(plan.expected_digest),
        "2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5"
    );
}
