//! The two SEV-ES VMSA flavours (shared/spec/sev-legacy.md §8.1, §9.2): KVM_SEV_ES_INIT
//! (QEMU `legacy-vm-type=on/auto`) leaves MXCSR and x87 FCW zero, as sevctl `vmsa
//! build` models; KVM_SEV_INIT2 (`off`) writes QEMU's reset values, as sev-snp-measure
//! models. Checked against the genuine sevctl VMSAs and both tools' digests
//! (shared/fixtures/sev-legacy/VECTORS.md §3).

use softsev_abi::product::cpuid_signature;
use softsev_crypto::hash::Sha256;
use softsev_measure::launch::{seves_launch_digest, seves_launch_digest_with, seves_launch_vmsas};
use softsev_measure::{EsVmsaInit, Ovmf, VmmType};
use softsev_testkit::fixture_dir;
use zerocopy::IntoBytes;

/// The trimmed RHEL 9 OVMF sevctl's tests use.
const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";
/// SHA-256(OVMF ‖ sevctl vmsa0 ‖ vmsa1) (§9.2).
const ES_INIT_2VCPU: &str = "2cb557f76f7533ce1f74e38a316877d169a122175b2005b8564ff08f21adeff8";
/// sev-snp-measure `--mode seves --vcpus 2 --vcpu-family 25 --vcpu-model 1
/// --vcpu-stepping 1` on the same OVMF (§9.2).
const INIT2_2VCPU: &str = "da4ef7c6a087cb6bb5b6419c716bd65966c33347be9cc9cc2f9651014a770fe8";

struct Sevctl {
    ovmf_bytes: Vec<u8>,
    ovmf: Ovmf,
    vmsa0: Vec<u8>,
    vmsa1: Vec<u8>,
}

fn sevctl() -> Option<Sevctl> {
    let dir = fixture_dir("sev-legacy/sevctl")?;
    let ovmf_bytes = std::fs::read(dir.join(OVMF)).unwrap();
    Some(Sevctl {
        ovmf: Ovmf::parse(ovmf_bytes.clone()).unwrap(),
        ovmf_bytes,
        vmsa0: std::fs::read(dir.join("vmsa0.bin")).unwrap(),
        vmsa1: std::fs::read(dir.join("vmsa1.bin")).unwrap(),
    })
}

/// Family 25, model 1, stepping 1, as sevctl `vmsa build` was run (VECTORS.md §3).
fn sig() -> u32 {
    cpuid_signature(25, 1, 1)
}

#[test]
fn es_init_vmsas_equal_sevctl_vmsa_build() {
    let Some(f) = sevctl() else { return };
    let v = seves_launch_vmsas(&f.ovmf, 2, sig(), VmmType::Qemu, EsVmsaInit::EsInit).unwrap();
    assert_eq!(v.bsp.as_bytes(), f.vmsa0.as_slice());
    assert_eq!(v.ap.as_ref().unwrap().as_bytes(), f.vmsa1.as_slice());
}

#[test]
fn init2_vmsas_differ_from_es_init_in_mxcsr_and_fcw_only() {
    let Some(f) = sevctl() else { return };
    let es = seves_launch_vmsas(&f.ovmf, 2, sig(), VmmType::Qemu, EsVmsaInit::EsInit).unwrap();
    let i2 = seves_launch_vmsas(&f.ovmf, 2, sig(), VmmType::Qemu, EsVmsaInit::Init2).unwrap();
    for (a, b) in [
        (&es.bsp, &i2.bsp),
        (es.ap.as_ref().unwrap(), i2.ap.as_ref().unwrap()),
    ] {
        let diff: Vec<(usize, u8, u8)> = a
            .as_bytes()
            .iter()
            .zip(b.as_bytes())
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| (i, *x, *y))
            .collect();
        // MXCSR 0x1F80 at 0x408, x87 FCW 0x037F at 0x410 (little-endian).
        assert_eq!(
            diff,
            [
                (0x408, 0, 0x80),
                (0x409, 0, 0x1F),
                (0x410, 0, 0x7F),
                (0x411, 0, 0x03)
            ]
        );
    }
}

#[test]
fn es_init_digest_is_the_sevctl_stream() {
    let Some(f) = sevctl() else { return };
    let mut d = Sha256::new();
    d.update(&f.ovmf_bytes);
    d.update(&f.vmsa0);
    d.update(&f.vmsa1);
    let stream = d.finish();
    assert_eq!(hex::encode(stream), ES_INIT_2VCPU);
    let ours = seves_launch_digest_with(&f.ovmf, None, 2, sig(), VmmType::Qemu, EsVmsaInit::EsInit)
        .unwrap();
    assert_eq!(ours, stream);
    // More vCPUs repeat the AP page (VECTORS.md §3, SEV-ES case).
    let mut d = Sha256::new();
    d.update(&f.ovmf_bytes);
    d.update(&f.vmsa0);
    for _ in 1..4 {
        d.update(&f.vmsa1);
    }
    assert_eq!(
        seves_launch_digest_with(&f.ovmf, None, 4, sig(), VmmType::Qemu, EsVmsaInit::EsInit)
            .unwrap(),
        d.finish()
    );
}

#[test]
fn init2_digest_is_sev_snp_measure_and_the_old_default() {
    let Some(f) = sevctl() else { return };
    let i2 = seves_launch_digest_with(&f.ovmf, None, 2, sig(), VmmType::Qemu, EsVmsaInit::Init2)
        .unwrap();
    assert_eq!(hex::encode(i2), INIT2_2VCPU);
    // The original entry point keeps its INIT2 result.
    assert_eq!(
        seves_launch_digest(&f.ovmf, None, 2, sig(), VmmType::Qemu).unwrap(),
        i2
    );
}

#[test]
fn ec2_and_gce_pages_do_not_depend_on_the_flavour() {
    // Both set MXCSR and FCW to 0 themselves (crates/measure/src/vmsa.rs).
    let o = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    for vmm in [VmmType::Ec2, VmmType::Gce] {
        let a = seves_launch_vmsas(&o, 2, sig(), vmm, EsVmsaInit::EsInit).unwrap();
        let b = seves_launch_vmsas(&o, 2, sig(), vmm, EsVmsaInit::Init2).unwrap();
        assert_eq!(a.bsp.as_bytes(), b.bsp.as_bytes());
        assert_eq!(
            a.ap.as_ref().map(|v| v.as_bytes().to_vec()),
            b.ap.as_ref().map(|v| v.as_bytes().to_vec())
        );
    }
}

#[test]
fn legacy_vm_type_words() {
    assert_eq!(
        EsVmsaInit::from_legacy_vm_type("on"),
        Some(EsVmsaInit::EsInit)
    );
    assert_eq!(
        EsVmsaInit::from_legacy_vm_type("auto"),
        Some(EsVmsaInit::EsInit)
    );
    assert_eq!(
        EsVmsaInit::from_legacy_vm_type("OFF"),
        Some(EsVmsaInit::Init2)
    );
    assert_eq!(EsVmsaInit::from_legacy_vm_type("yes"), None);
    assert_eq!(EsVmsaInit::default(), EsVmsaInit::EsInit);
}
