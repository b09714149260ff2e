//! `-object sev-guest` (SEV and SEV-ES, shared/spec/sev-legacy.md §8.1), `-qmp` and
//! `-S`: QEMU's properties, defaults and messages, the KVM initialisation each
//! configuration selects, and the guest owner's base64 files.

use softsev_abi::kvm::VmType;
use softsev_vmm::config::{ConfidentialGuest, OnOffAuto, SevKvmInit, glib_base64_decode};
use softsev_vmm::{from_toml, parse_args};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn sev(props: &str) -> Vec<String> {
    args(&format!(
        "-machine q35,confidential-guest-support=sev0 -object sev-guest,id=sev0{props} \
         -cpu EPYC-Milan -m 1G"
    ))
}

fn err(a: Vec<String>) -> String {
    parse_args(a).unwrap_err().to_string()
}

#[test]
fn sev_guest_defaults_and_es_by_policy() {
    let c = parse_args(sev(",cbitpos=51,reduced-phys-bits=1")).unwrap();
    let ConfidentialGuest::Sev(g) = &c.confidential_guest else {
        panic!(
            "default policy 0x1 is plain SEV: {:?}",
            c.confidential_guest
        );
    };
    assert_eq!(g.sev_device, "/dev/sev");
    assert_eq!((g.policy, g.handle), (0x1, 0));
    assert_eq!((g.cbitpos, g.reduced_phys_bits), (51, 1));
    assert!(!g.kernel_hashes);
    assert_eq!(g.legacy_vm_type, OnOffAuto::Auto);
    assert_eq!(
        (g.dh_cert_file.as_ref(), g.session_file.as_ref()),
        (None, None)
    );
    assert_eq!(g.kvm_init(), SevKvmInit::SevInit);
    assert_eq!(g.kvm_init().vm_type(), VmType::DEFAULT);
    assert!(c.snp().is_none());

    let c = parse_args(sev(",cbitpos=51,reduced-phys-bits=1,policy=0x5")).unwrap();
    let ConfidentialGuest::SevEs(g) = &c.confidential_guest else {
        panic!("policy ES (bit 2) is SEV-ES: {:?}", c.confidential_guest);
    };
    assert_eq!(g.kvm_init(), SevKvmInit::SevEsInit);
    assert_eq!(g.kvm_init().command(), "KVM_SEV_ES_INIT");
}

#[test]
fn legacy_vm_type_selects_the_kvm_init() {
    for (value, policy, want) in [
        ("on", 0x1, SevKvmInit::SevInit),
        ("auto", 0x1, SevKvmInit::SevInit),
        ("on", 0x5, SevKvmInit::SevEsInit),
        ("auto", 0x4, SevKvmInit::SevEsInit),
        ("off", 0x1, SevKvmInit::Init2(VmType::SEV)),
        ("off", 0x5, SevKvmInit::Init2(VmType::SEV_ES)),
    ] {
        let c = parse_args(sev(&format!(
            ",cbitpos=51,reduced-phys-bits=1,policy={policy:#x},legacy-vm-type={value}"
        )))
        .unwrap();
        let (ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g)) = &c.confidential_guest
        else {
            panic!("not a sev-guest");
        };
        assert_eq!(g.kvm_init(), want, "{value} {policy:#x}");
        // On a host without the VM types only `off` fails, with QEMU's message.
        let on_old_host = g.kvm_init_on_host(|t| t == VmType::DEFAULT);
        match want {
            SevKvmInit::Init2(t) => {
                let e = on_old_host.unwrap_err().to_string();
                let name = if t == VmType::SEV_ES {
                    "KVM_X86_SEV_ES_VM"
                } else {
                    "KVM_X86_SEV_VM"
                };
                assert_eq!(
                    e,
                    format!(
                        "SEV: host kernel does not support requested {name} VM type. To allow \
                         use of the legacy KVM_X86_DEFAULT_VM VM type, the 'legacy-vm-type' \
                         argument must be set to 'on' or 'auto' for the sev-guest object."
                    )
                );
            }
            _ => assert_eq!(on_old_host.unwrap(), want),
        }
    }
}

#[test]
fn sev_guest_refusals_are_qemus() {
    for (props, want) in [
        (
            ",cbitpos=47,reduced-phys-bits=1",
            "sev_common_kvm_init: cbitpos check failed, host '51' requested '47'",
        ),
        (
            ",reduced-phys-bits=1",
            "sev_common_kvm_init: cbitpos check failed, host '51' requested '0'",
        ),
        (
            ",cbitpos=51",
            "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range of \
             1 to 63, requested '0'",
        ),
        (
            ",cbitpos=51,reduced-phys-bits=64",
            "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range of \
             1 to 63, requested '64'",
        ),
        // cbitpos is checked first.
        (
            ",cbitpos=1,reduced-phys-bits=0",
            "sev_common_kvm_init: cbitpos check failed, host '51' requested '1'",
        ),
        (
            ",cbitpos=51,reduced-phys-bits=1,legacy-vm-type=maybe",
            "Parameter 'legacy-vm-type' does not accept value 'maybe'",
        ),
        (
            ",cbitpos=51,reduced-phys-bits=1,id-block=AAAA",
            "Property 'sev-guest.id-block' not found",
        ),
        (
            ",cbitpos=51,reduced-phys-bits=1,policy=0x100000000",
            "policy",
        ),
    ] {
        let e = err(sev(props));
        assert!(e.contains(want), "{props}: {e}");
    }
}

#[test]
fn qmp_and_paused_start() {
    let mut a = sev(",cbitpos=51,reduced-phys-bits=1");
    a.extend(args(
        "-qmp unix:/tmp/softsev-qmp.sock,server=on,wait=off -S",
    ));
    let c = parse_args(&a).unwrap();
    assert!(c.start_paused);
    let q = c.qmp.as_ref().unwrap();
    assert_eq!(
        (q.path.to_str(), q.wait),
        (Some("/tmp/softsev-qmp.sock"), false)
    );
    // The emitters write what the parsers read.
    assert_eq!(parse_args(c.to_args()).unwrap(), c);
    assert_eq!(from_toml(&c.to_toml()).unwrap(), c);

    // QEMU's legacy short forms, with its deprecation warning as a note.
    let mut a = sev(",cbitpos=51,reduced-phys-bits=1");
    a.extend(args("-qmp unix:/tmp/q,server,nowait"));
    let c = parse_args(&a).unwrap();
    assert!(!c.qmp.as_ref().unwrap().wait);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("short-form boolean option 'nowait' deprecated"))
    );

    for (q, want) in [
        ("tcp:127.0.0.1:4444,server=on", "Unix socket only"),
        ("unix:/tmp/q", "server=on"),
        ("unix:/tmp/q,server=on,bogus=1", "Invalid parameter 'bogus'"),
    ] {
        let mut a = sev(",cbitpos=51,reduced-phys-bits=1");
        a.extend(["-qmp".to_string(), q.to_string()]);
        let e = err(a);
        assert!(e.contains(want), "{q}: {e}");
    }
    let mut a = sev(",cbitpos=51,reduced-phys-bits=1");
    a.extend(args(
        "-qmp unix:/tmp/a,server=on -qmp unix:/tmp/b,server=on",
    ));
    assert!(err(a).contains("one QMP monitor"));
}

#[test]
fn launch_blobs_are_read_as_qemu_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let session: Vec<u8> = (0..128u8).collect();
    let godh: Vec<u8> = (0..0x824u32).map(|i| (i * 7) as u8).collect();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    // sevctl writes base64 with a trailing newline; GLib skips it.
    std::fs::write(dir.path().join("s.b64"), b64(&session) + "\n").unwrap();
    std::fs::write(dir.path().join("godh.b64"), b64(&godh) + "\n").unwrap();
    let c = parse_args(sev(&format!(
        ",cbitpos=51,reduced-phys-bits=1,session-file={0}/s.b64,dh-cert-file={0}/godh.b64",
        dir.path().display()
    )))
    .unwrap();
    let (ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g)) = &c.confidential_guest else {
        panic!("not a sev-guest");
    };
    let blobs = g.read_launch_blobs().unwrap();
    assert_eq!(blobs.session.as_deref(), Some(&session[..]));
    assert_eq!(blobs.dh_cert.as_deref(), Some(&godh[..]));

    let mut missing = g.clone();
    missing.session_file = Some(dir.path().join("nope.b64"));
    let e = missing.read_launch_blobs().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "SEV: Failed to read '{0}' (Failed to open file “{0}”: No such file or directory)",
            dir.path().join("nope.b64").display()
        )
    );
}

#[test]
fn glib_base64_is_lenient() {
    assert_eq!(glib_base64_decode(b"aGVsbG8="), b"hello");
    assert_eq!(glib_base64_decode(b"aGVs\nbG8=\n"), b"hello");
    assert_eq!(glib_base64_decode(b"aG*Vs!bG8="), b"hello");
    assert_eq!(glib_base64_decode(b"aGk="), b"hi");
    assert_eq!(glib_base64_decode(b"aA=="), b"h");
    // An incomplete trailing quantum is dropped, never an error.
    assert_eq!(glib_base64_decode(b"aGVsbG8"), b"hel");
    assert_eq!(glib_base64_decode(b""), b"");
}
