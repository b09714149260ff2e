//! QEMU command lines and TOML files for SEV-SNP guests: what is accepted, what each
//! option becomes, and the message for every configuration QEMU/KVM would refuse.

use base64::Engine;
use softsev_abi::{GuestPolicy, Product, SnpPolicySupport};
use softsev_vmm::config::check_policy_on_host;
use softsev_vmm::config::{BackendKind, MachineKind};
use softsev_vmm::run::{RunOptions, run};
use softsev_vmm::{Blob, ConfigError, from_toml, parse_args};
use softsev_vmm::{Config, LaunchPlan};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The issue's example command line, with real base64 blobs.
fn full_cmdline() -> Vec<String> {
    let id_block = b64(&[0x11; 96]);
    let id_auth = b64(&[0x22; 4096]);
    let host_data = b64(&[0x33; 32]);
    let gosvw = b64(&[0x44; 16]);
    let mut a = args(
        "-enable-kvm -nographic -no-reboot -name guest=snp0,debug-threads=on \
         -machine q35,confidential-guest-support=sev0,memory-backend=ram1,kernel-irqchip=split \
         -object memory-backend-memfd,id=ram1,size=4G,share=true,reserve=false",
    );
    a.push("-object".into());
    a.push(format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,\
         id-block={id_block},id-auth={id_auth},author-key-enabled=on,host-data={host_data},\
         kernel-hashes=on,certs-path=/tmp/certs.bin,guest-visible-workarounds={gosvw},\
         vcek-disabled=off"
    ));
    a.extend(args(
        "-smp 32,maxcpus=255 -cpu EPYC-Milan-v2 -bios OVMF.fd -kernel vmlinuz \
         -initrd initrd.img -m 4G \
         -drive if=virtio,format=qcow2,file=disk.qcow2 \
         -netdev user,id=net0 -device virtio-net-pci,netdev=net0",
    ));
    a.push("-append".into());
    a.push("console=ttyS0 root=/dev/vda".into());
    a
}

#[test]
fn the_issue_command_line_parses() {
    let c = parse_args(full_cmdline()).unwrap();
    assert_eq!(c.name.as_deref(), Some("snp0"));
    assert_eq!(c.machine.kind, MachineKind::Q35);
    assert_eq!(c.memory.size, 4 << 30);
    let b = c.memory.backend.as_ref().unwrap();
    assert_eq!(
        (b.kind, b.id.as_str(), b.share, b.reserve),
        (BackendKind::Memfd, "ram1", true, false)
    );
    assert_eq!((c.smp.cpus, c.smp.maxcpus, c.smp.cores), (32, 255, 255));
    assert_eq!(c.cpu.name, "EPYC-Milan-v2");
    assert_eq!(
        (c.cpu.product, c.cpu.signature),
        (Product::Milan, 0x00A0_0F11)
    );
    let s = c.snp().unwrap();
    assert_eq!(
        (s.id.as_str(), s.cbitpos, s.reduced_phys_bits),
        ("sev0", 51, 1)
    );
    assert_eq!(s.policy, 0x30000);
    assert_eq!(s.id_block.as_deref(), Some(&[0x11u8; 96][..]));
    assert_eq!(s.id_auth.as_ref().map(Vec::len), Some(4096));
    assert!(s.author_key_enabled && s.kernel_hashes && !s.vcek_disabled && !s.debug_swap);
    assert_eq!(s.host_data, [0x33; 32]);
    assert_eq!(s.gosvw, [0x44; 16]);
    assert_eq!(
        s.certs_path.as_deref(),
        Some(std::path::Path::new("/tmp/certs.bin"))
    );
    assert_eq!(s.guest_features(), 1);
    assert_eq!(c.firmware, Blob::File("OVMF.fd".into()));
    assert_eq!(c.kernel, Some(Blob::File("vmlinuz".into())));
    assert_eq!(c.initrd, Some(Blob::File("initrd.img".into())));
    assert_eq!(c.append.as_deref(), Some("console=ttyS0 root=/dev/vda"));
    // -drive, -netdev, -device are noted, not silently dropped.
    for opt in ["-drive", "-netdev", "-device"] {
        assert!(
            c.notes.iter().any(|n| n.starts_with(opt)),
            "{opt}: {:?}",
            c.notes
        );
    }
    // The configuration's own command line and TOML give it back.
    let mut bare = c.clone();
    bare.notes.clear();
    assert_eq!(parse_args(c.to_args()).unwrap(), bare);
    assert_eq!(from_toml(&c.to_toml()).unwrap(), bare);
    // certs-filename (later RFC spelling) and certs-timeout are accepted.
    let mut a = full_cmdline();
    let i = a
        .iter()
        .position(|x| x.starts_with("sev-snp-guest"))
        .unwrap();
    a[i] = a[i].replace("certs-path=", "certs-timeout=100,certs-filename=");
    assert_eq!(
        parse_args(a).unwrap().confidential_guest,
        c.confidential_guest
    );
}

#[test]
fn qemu_syntax_variants() {
    // --opt, -opt=value, -M, boolean spellings, size suffixes, -m in MiB, comma escaping.
    let c = parse_args([
        "--machine=pc-q35-9.1,confidential-guest-support=s",
        "-object",
        "sev-snp-guest,id=s,cbitpos=0x33,reduced-phys-bits=01,kernel-hashes=no,author-key-enabled=false,debug-swap=yes",
        "-m",
        "2048",
        "-cpu",
        "EPYC-Genoa",
        "-name",
        "a,,b",
    ])
    .unwrap();
    assert_eq!(c.machine.name, "pc-q35-9.1");
    assert_eq!(c.memory.size, 2 << 30);
    assert_eq!(c.snp().unwrap().cbitpos, 51);
    assert!(c.snp().unwrap().debug_swap);
    assert_eq!(c.snp().unwrap().guest_features(), 0x21);
    assert_eq!(c.name.as_deref(), Some("a,b"));
    assert_eq!(c.cpu.product, Product::Genoa);
    assert_eq!((c.smp.cpus, c.smp.maxcpus), (1, 1));
    // -cpu default is qemu64; -m 1.5G; -smp with a topology.
    let c = parse_args(args(
        "-M q35,confidential-guest-support=s -object sev-snp-guest,id=s,cbitpos=51,reduced-phys-bits=1 \
         -m size=1.5G -smp sockets=2,cores=4,threads=2",
    ))
    .unwrap();
    assert_eq!(c.cpu.name, "qemu64");
    assert_eq!(c.memory.size, 3 << 29);
    assert_eq!(
        (
            c.smp.cpus,
            c.smp.maxcpus,
            c.smp.sockets,
            c.smp.cores,
            c.smp.threads
        ),
        (16, 16, 2, 4, 2)
    );
    // The PC default machine (i440fx) with default 128 MiB.
    let c = parse_args(args(
        "-machine confidential-guest-support=s -object sev-snp-guest,id=s,cbitpos=51,reduced-phys-bits=1",
    ))
    .unwrap();
    assert_eq!(
        (c.machine.kind, c.memory.size),
        (MachineKind::Pc, 128 << 20)
    );
}

fn base(extra_snp: &str, rest: &str) -> Vec<String> {
    let mut a = args("-machine q35,confidential-guest-support=sev0 -m 4G -cpu EPYC-Milan");
    a.push("-object".into());
    a.push(format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1{extra_snp}"
    ));
    a.extend(args(rest));
    a
}

fn err(a: Vec<String>) -> String {
    match parse_args(a) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_is_accepted() {
    parse_args(base("", "")).unwrap();
}

#[test]
fn rejections_name_the_object_and_property() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(",foo=1", ""), "Property 'sev-snp-guest.foo' not found"),
        (
            base("", "-machine q35,bogus=1"),
            "Property 'q35-machine.bogus' not found",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,cbitpos=47,reduced-phys-bits=1",
            ),
            "cbitpos check failed, host '51' requested '47'",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,reduced-phys-bits=1",
            ),
            "cbitpos check failed, host '51' requested '0'",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,cbitpos=51",
            ),
            "Parameter 'reduced-phys-bits' is missing",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=0",
            ),
            "it should be in the range of 1 to 63, requested '0'",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=64",
            ),
            "requested '64'",
        ),
        (
            base(",kernel-hashes=on", ""),
            "sev-snp-guest.kernel-hashes=on requires -kernel",
        ),
        (
            base(&format!(",id-auth={}", b64(&[1; 4096])), ""),
            "sev-snp-guest.id-auth requires sev-snp-guest.id-block",
        ),
        (
            base(&format!(",id-block={}", b64(&[1; 96])), ""),
            "sev-snp-guest.id-block requires sev-snp-guest.id-auth",
        ),
        (
            base(",author-key-enabled=on", ""),
            "author-key-enabled=on requires",
        ),
        (
            base(&format!(",host-data={}", b64(&[1; 31])), ""),
            "sev-snp-guest.host-data: parameter length of 31 not equal to 32",
        ),
        (
            base(&format!(",id-block={}", b64(&[1; 95])), ""),
            "sev-snp-guest.id-block: parameter length of 95 not equal to 96",
        ),
        (
            base(&format!(",id-auth={}", b64(&[1; 4097])), ""),
            "parameter length of 4097 exceeds max of 4096",
        ),
        (
            base(&format!(",guest-visible-workarounds={}", b64(&[1; 17])), ""),
            "not equal to 16",
        ),
        (
            base(",host-data=not*base64", ""),
            "sev-snp-guest.host-data: Base64 data is not valid",
        ),
        (
            base(",policy=0x10000", ""),
            "policy 0x10000: bit 17 is reserved and must be 1",
        ),
        (
            base(",policy=0x70000", ""),
            "bits outside KVM's accepted set",
        ),
        (
            base(",policy=lots", ""),
            "Parameter 'policy' expects uint64",
        ),
        (
            base(",kernel-hashes=maybe", ""),
            "Parameter 'kernel-hashes' expects 'on' or 'off'",
        ),
        (
            base(",cbitpos=-1", ""),
            "Parameter 'cbitpos' expects uint32",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=sev1 -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1",
            ),
            "Property 'q35-machine.confidential-guest-support' can't find value 'sev1'",
        ),
        (
            args(
                "-machine q35,confidential-guest-support=ram1 -object memory-backend-ram,id=ram1,size=1G",
            ),
            "object 'ram1' is a memory-backend-ram, not a sev-snp-guest",
        ),
        (
            base("", "-machine memory-backend=ram9"),
            "Property 'q35-machine.memory-backend' can't find value 'ram9'",
        ),
        (
            base("", "-machine memory-backend=sev0"),
            "object 'sev0' is a sev-snp-guest, not a memory-backend-*",
        ),
        (
            base(
                "",
                "-machine memory-backend=ram1 -object memory-backend-memfd,id=ram1,size=2G",
            ),
            "must equal its memory-backend size",
        ),
        (
            base("", "-object memory-backend-memfd,id=ram1"),
            "can't create backend with size 0",
        ),
        (
            base(
                "",
                "-object memory-backend-memfd,id=ram1,size=1G,colour=red",
            ),
            "Property 'memory-backend-memfd.colour' not found",
        ),
        (
            base("", "-object memory-backend-file,id=f,size=1G"),
            "Parameter 'mem-path' is missing",
        ),
        (
            base("", "-object memory-backend-memfd,size=1G"),
            "Parameter 'id' is missing",
        ),
        (
            base("", "-object memory-backend-memfd,id=sev0,size=1G"),
            "attempt to add duplicate property 'sev0'",
        ),
        (
            base("", "-object frobnicator,id=x"),
            "invalid object type: frobnicator",
        ),
        (
            base("", "-smp 300,maxcpus=255"),
            "maxcpus must be equal to or greater than smp",
        ),
        (
            base("", "-smp 4,sockets=2,cores=3,maxcpus=4"),
            "product of the hierarchy must match maxcpus",
        ),
        (
            base("", "-smp 5000"),
            "The max CPUs supported by machine 'q35' is 4096",
        ),
        (base("", "-smp 0"), "must be greater than zero"),
        (
            base("", "-smp 4,bogus=1"),
            "Property 'smp-opts.bogus' not found",
        ),
        (
            base("", "-cpu EPYC-Milan-v7"),
            "unable to find CPU model 'EPYC-Milan-v7'",
        ),
        (
            base("", "-cpu Cascadelake-Server"),
            "unable to find CPU model 'Cascadelake-Server'",
        ),
        (
            base("", "-m 4Q"),
            "Parameter 'size' expects a non-negative number",
        ),
        (base("", "-machine smm=on"), "SEV-SNP does not support SMM."),
        (base("", "-machine kernel-irqchip=off"), "in-kernel irqchip"),
        (base("", "-machine accel=tcg"), "requires KVM"),
        (base("", "-accel tcg"), "requires KVM"),
        (
            base("", "-machine microvm"),
            "unsupported machine type 'microvm'",
        ),
        (
            base("", "-drive if=pflash,format=raw,file=OVMF.fd"),
            "pflash",
        ),
        (base("", "-initrd initrd.img"), "-initrd requires -kernel"),
        (
            base("", "-append console=ttyS0"),
            "-append requires -kernel",
        ),
        (base("", "-frobnicate"), "-frobnicate: invalid option"),
        (base("", "-kernel"), "-kernel: requires an argument"),
        (
            args("-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1 -machine q35"),
            "softsev launches SEV-SNP guests",
        ),
    ];
    let mut failures = Vec::new();
    for (a, want) in &cases {
        let got = err(a.clone());
        if !got.contains(want) {
            failures.push(format!("{a:?}\n  want …{want}…\n  got  {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_but_noted_options() {
    let c = parse_args(base(
        "",
        "-S -serial mon:stdio -object rng-random,id=rng0,filename=/dev/urandom -cpu EPYC-Milan,+x2apic disk.img",
    ))
    .unwrap();
    assert!(c.notes.iter().any(|n| n.contains("rng-random")));
    assert!(c.notes.iter().any(|n| n.contains("+x2apic")));
    assert!(c.notes.iter().any(|n| n.starts_with("disk.img")));
    assert!(c.start_paused, "-S starts the guest paused");
    assert!(
        c.notes
            .iter()
            .any(|n| n.starts_with("-S: an SNP launch runs to completion"))
    );
    assert!(c.notes.iter().any(|n| n.starts_with("-serial")));
    // A kernel without kernel-hashes is launched, with a note that it is unmeasured.
    let c = parse_args(base("", "-kernel k")).unwrap();
    assert!(c.notes.iter().any(|n| n.contains("not measured")));
}

const TOML_FULL: &str = r#"
name = "snp0"
machine = { type = "q35", confidential-guest-support = "sev0", memory-backend = "ram1" }
smp = { cpus = 32, maxcpus = 255 }
cpu = "EPYC-Milan-v2"
bios = "OVMF.fd"
kernel = "vmlinuz"
initrd = "initrd.img"
append = "console=ttyS0 root=/dev/vda"
enable-kvm = true
nographic = true
drive = ["if=virtio,format=qcow2,file=disk.qcow2"]
netdev = "user,id=net0"
device = ["virtio-net-pci,netdev=net0"]

[[object]]
qom-type = "memory-backend-memfd"
id = "ram1"
size = "4G"
share = true
reserve = false

[[object]]
qom-type = "sev-snp-guest"
id = "sev0"
cbitpos = 51
reduced-phys-bits = 1
policy = 0x30000
id-block = "ID_BLOCK"
id-auth = "ID_AUTH"
author-key-enabled = true
host-data = "HOST_DATA"
kernel-hashes = true
certs-path = "/tmp/certs.bin"
guest-visible-workarounds = "GOSVW"
vcek-disabled = false
"#;

fn toml_full() -> String {
    TOML_FULL
        .replace("ID_BLOCK", &b64(&[0x11; 96]))
        .replace("ID_AUTH", &b64(&[0x22; 4096]))
        .replace("HOST_DATA", &b64(&[0x33; 32]))
        .replace("GOSVW", &b64(&[0x44; 16]))
}

#[test]
fn toml_equals_the_command_line() {
    let t = from_toml(&toml_full()).unwrap();
    let q = parse_args(full_cmdline()).unwrap();
    // -name's debug-threads and the note texts differ in spelling only.
    let (mut t2, mut q2) = (t.clone(), q.clone());
    t2.notes.clear();
    q2.notes.clear();
    assert_eq!(t2, q2);
    assert_eq!(t.notes.len(), 3, "{:?}", t.notes);
    // Short forms.
    let s = from_toml(
        "machine = \"q35,confidential-guest-support=s\"\nm = 4096\nsmp = 4\ncpu = \"EPYC-Turin\"\n\
         [[object]]\nqom-type = \"sev-snp-guest\"\nid = \"s\"\ncbitpos = 51\nreduced-phys-bits = 1\n",
    )
    .unwrap();
    assert_eq!(
        (s.memory.size, s.smp.cpus, s.cpu.product),
        (4 << 30, 4, Product::Turin)
    );
}

#[test]
fn toml_rejections() {
    let cases = [
        (
            "colour = \"red\"",
            "TOML configuration: unknown key 'colour'",
        ),
        ("machine = 1.5", "must be a string, an integer or a table"),
        ("object = 3", "array of tables"),
        ("this is not toml", "TOML configuration:"),
        (
            "machine = { type = \"q35\", confidential-guest-support = \"s\" }\n[[object]]\nqom-type = \"sev-snp-guest\"\nid = \"s\"\ncbitpos = 51\nreduced-phys-bits = 1\nfoo = true",
            "Property 'sev-snp-guest.foo' not found",
        ),
        (
            "machine = { type = \"q35\", confidential-guest-support = \"s\" }\n[[object]]\nqom-type = \"sev-snp-guest\"\nid = \"s\"\ncbitpos = 51\nreduced-phys-bits = -1",
            "must be a string, a non-negative integer or a boolean",
        ),
    ];
    for (text, want) in cases {
        let e = from_toml(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn toml_file_paths_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vm.toml");
    std::fs::write(&p, toml_full()).unwrap();
    let c = softsev_vmm::from_toml_file(&p).unwrap();
    assert_eq!(c.firmware, Blob::File(dir.path().join("OVMF.fd")));
    assert_eq!(c.kernel, Some(Blob::File(dir.path().join("vmlinuz"))));
    // Absolute paths stay.
    assert_eq!(
        c.snp().unwrap().certs_path.as_deref(),
        Some(std::path::Path::new("/tmp/certs.bin"))
    );
    let missing = softsev_vmm::from_toml_file(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }));
}

// ---- The SNP policy rule (issue 11 item 3; fidelity audit D6, D9) ----
//
// Regression: the option check enforced the Linux 6.11 KVM rules (SMT required,
// SINGLE_SOCKET and bits 21-25 refused) while the host accepted them. Both now use
// abi's rule: without a host the check refuses only what no KVM accepts; the launcher
// asks the host for KVM_X86_SNP_POLICY_BITS; the firmware judges SMT and SINGLE_SOCKET.

fn policy_cmdline(policy: u64) -> Vec<String> {
    base(&format!(",policy={policy:#x}"), "")
}

#[test]
fn regression_policy_without_smt_or_with_single_socket_passes_the_option_check() {
    for policy in [0x20000u64, 0x30000 | GuestPolicy::SINGLE_SOCKET, 0x130000] {
        let c = parse_args(policy_cmdline(policy)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.snp().unwrap().policy, policy);
    }
}

#[test]
fn regression_policy_bits_21_to_25_pass_the_option_check_and_the_host_decides() {
    let milan = SnpPolicySupport {
        api_major: 1,
        api_minor: 55,
        feature_info_ecx: Some(0),
    };
    let turin = SnpPolicySupport {
        api_minor: 58,
        ..milan
    };
    for bit in 21..=25 {
        let policy = 0x30000u64 | 1 << bit;
        parse_args(policy_cmdline(policy)).unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        // A 1.55 firmware offers none of them.
        let e = check_policy_on_host(GuestPolicy(policy), milan.kvm_policy_bits()).unwrap_err();
        assert!(
            e.to_string().contains("KVM_X86_SNP_POLICY_BITS"),
            "bit {bit}: {e}"
        );
        // 1.58 adds PAGE_SWAP_DISABLE; FEATURE_INFO ECX adds the others.
        let turin_ok = check_policy_on_host(GuestPolicy(policy), turin.kvm_policy_bits()).is_ok();
        assert_eq!(turin_ok, bit == 25, "bit {bit}");
        let all = SnpPolicySupport {
            feature_info_ecx: Some(0x3C),
            ..turin
        };
        check_policy_on_host(GuestPolicy(policy), all.kvm_policy_bits()).unwrap();
    }
}

#[test]
fn regression_policy_bits_no_kvm_accepts_fail_the_option_check() {
    for (policy, want) in [
        (0x10000u64, "bit 17 is reserved and must be 1"),
        (
            0x30000 | GuestPolicy::MIGRATE_MA,
            "bits outside KVM's accepted set",
        ),
        (0x30000 | 1 << 26, "bits outside KVM's accepted set"),
        (0x30000 | 1 << 63, "bits outside KVM's accepted set"),
    ] {
        let e = err(policy_cmdline(policy));
        assert!(e.contains(want), "{policy:#x}: {e}");
    }
    // With a host, KVM's order: unsupported bits before bit 17.
    let e = check_policy_on_host(GuestPolicy(0x10000), GuestPolicy::KVM_KNOWN).unwrap_err();
    assert!(e.to_string().contains("bit 17"), "{e}");
}

fn small_run(policy: u64) -> Result<(), String> {
    let mut cfg = Config::default_run();
    cfg.memory.size = 128 << 20;
    cfg.smp.cpus = 1;
    cfg.snp_mut().unwrap().policy = policy;
    let plan = LaunchPlan::build(&cfg).map_err(|e| e.to_string())?;
    let opts = RunOptions {
        seed: Some(b"policy-rule".to_vec()),
        ..Default::default()
    };
    run(&plan, &opts, &mut |_| {})
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn regression_launcher_asks_the_host_for_its_policy_bits() {
    // CXL_ALLOW: the Milan host's KVM_X86_SNP_POLICY_BITS lacks it, so the launcher
    // refuses before KVM_SEV_SNP_LAUNCH_START.
    let e = small_run(0x30000 | GuestPolicy::CXL_ALLOW).unwrap_err();
    assert!(e.contains("KVM_X86_SNP_POLICY_BITS"), "{e}");
    // No SMT on an SMT host: KVM passes it on and the firmware refuses it.
    let e = small_run(0x20000).unwrap_err();
    assert!(
        e.contains("KVM_SEV_SNP_LAUNCH_START") && e.contains("POLICY_FAILURE"),
        "{e}"
    );
}
