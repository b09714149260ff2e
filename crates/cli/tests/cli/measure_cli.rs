//! `softsev measure` through the built binary: golden digests (measure-vectors.md, the
//! outputs of sev-snp-measure 0.0.13 on the fixture files), output formats, JSON, trace,
//! VMSA dumps, the built-in default, and one-line errors for bad inputs.

use std::process::{Command, Output};

fn softsev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softsev"))
        .arg("measure")
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = softsev(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim_end().to_string()
}

/// Runs, expects failure with one "softsev: error:" line containing `needle`.
fn fails(args: &[&str], needle: &str) {
    let o = softsev(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    if o.status.code() == Some(1) {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err:?}"
        );
        assert!(err.starts_with("softsev: error: "), "{err}");
    }
}

use softsev_testkit::fixtures;

fn fx(p: &std::path::Path, rel: &str) -> String {
    p.join(rel).display().to_string()
}

#[test]
fn golden_through_the_binary() {
    let Some(f) = fixtures() else { return };
    let amd = fx(&f, "measurement/sev-snp-measure/ovmf_AmdSev_suffix.bin");
    let k = fx(&f, "measure-inputs/fake-kernel.bin");
    let i = fx(&f, "measure-inputs/fake-initrd.bin");
    let c = "console=ttyS0 loglevel=7";
    // measure-vectors.md section B.
    assert_eq!(
        ok(&[
            "--mode",
            "snp",
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            &amd,
            "--kernel",
            &k,
            "--initrd",
            &i,
            "--append",
            c
        ]),
        "9a379441161e0a5b60b7c6f338de96e268cb0e9fb5faac20fa644c4727135f601304175e9c8ebf1cfa4ab1c4a2f5bb6b"
    );
    assert_eq!(
        ok(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            &amd,
            "--kernel",
            &k,
            "--initrd",
            &i,
            "--append",
            c,
            "--output-format",
            "base64"
        ]),
        "4kFWa7eR7cyO4n65vTNVKb93UfpSrpS3Ly2eH81M0TKJVN+3/NbTJbFIesRI2ygc"
    );
    assert_eq!(
        ok(&["--mode", "snp:ovmf-hash", "--ovmf", &amd]),
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    );
    // measure-vectors.md: --snp-ovmf-hash 086e… with kernel /dev/null and empty append.
    assert_eq!(
        ok(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            &amd,
            "--kernel",
            "/dev/null",
            "--append",
            "",
            "--snp-ovmf-hash",
            "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
        ]),
        "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"
    );
    // MV-C: gce with --vcpu-sig 0; ec2 spelled in upper case.
    assert_eq!(
        ok(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-sig",
            "0",
            "--ovmf",
            &amd,
            "--kernel",
            "/dev/null",
            "--initrd",
            "/dev/null",
            "--append",
            "",
            "--vmm-type",
            "GCE"
        ]),
        "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"
    );
    assert_eq!(
        ok(&[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            &amd,
            "--kernel",
            "/dev/null",
            "--initrd",
            "/dev/null",
            "--vmm-type",
            "EC2"
        ]),
        "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056"
    );
    assert_eq!(
        ok(&[
            "--mode",
            "seves",
            "--vcpus",
            "4",
            "--vcpu-family",
            "25",
            "--vcpu-model",
            "1",
            "--vcpu-stepping",
            "1",
            "--ovmf",
            &amd,
            "--kernel",
            &k,
            "--initrd",
            &i,
            "--append",
            c,
            // sev-snp-measure models KVM_SEV_INIT2 VMSAs (sev-legacy.md §8.1).
            "--legacy-vm-type",
            "off"
        ]),
        "5b98c22931a6bf97d7143c770f633b6c8959e2161a569882241e8fe38eb868fb"
    );
    assert_eq!(
        ok(&[
            "--mode", "sev", "--ovmf", &amd, "--kernel", &k, "--initrd", &i, "--append", c
        ]),
        "adf9986d5d0b9316780c7e3cb6bd66852b5d6665595ff2400333b07ae225ebeb"
    );
    assert_eq!(
        ok(&[
            "--mode",
            "snp:svsm",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            &fx(&f, "measurement/sev-snp-measure/svsm_ovmf.fd"),
            "--svsm",
            &fx(&f, "measurement/sev-snp-measure/svsm.bin"),
            "--vars-size",
            "540672",
            "--guest-features",
            "0x21"
        ]),
        "9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7"
    );
    let v = ok(&[
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        &amd,
        "-v",
    ]);
    assert_eq!(
        v,
        "Calculated SEV_SNP guest measurement: 19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"
    );
}

/// `--legacy-vm-type` (QEMU's sev-guest property, sev-legacy.md §8.1): on/auto (the
/// default) measure the KVM_SEV_ES_INIT VMSAs sevctl models, off the INIT2 ones
/// sev-snp-measure models (§9.2 digests on the trimmed OVMF sevctl's tests use).
#[test]
fn seves_legacy_vm_type() {
    let Some(f) = fixtures() else { return };
    let ovmf = fx(
        &f,
        "sev-legacy/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9",
    );
    let base = [
        "--mode",
        "seves",
        "--vcpus",
        "2",
        "--vcpu-family",
        "25",
        "--vcpu-model",
        "1",
        "--vcpu-stepping",
        "1",
        "--ovmf",
        &ovmf,
    ];
    let with = |t: Option<&str>| {
        let mut a = base.to_vec();
        if let Some(t) = t {
            a.extend(["--legacy-vm-type", t]);
        }
        ok(&a)
    };
    let es_init = "2cb557f76f7533ce1f74e38a316877d169a122175b2005b8564ff08f21adeff8";
    assert_eq!(with(None), es_init);
    assert_eq!(with(Some("on")), es_init);
    assert_eq!(with(Some("auto")), es_init);
    assert_eq!(
        with(Some("off")),
        "da4ef7c6a087cb6bb5b6419c716bd65966c33347be9cc9cc2f9651014a770fe8"
    );
    let mut j = base.to_vec();
    j.push("--json");
    let v: serde_json::Value = serde_json::from_str(&ok(&j)).unwrap();
    assert_eq!(v["legacy_vm_type"], "auto");
    assert_eq!(v["measurement"], es_init);
    // --dump-vmsa writes the pages of the chosen flavour: sevctl's for the default.
    let dir = tempfile::tempdir().unwrap();
    let mut d = base.to_vec();
    d.push("--dump-vmsa");
    let o = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .arg("measure")
        .args(&d)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for n in ["vmsa0.bin", "vmsa1.bin"] {
        assert_eq!(
            std::fs::read(dir.path().join(n)).unwrap(),
            std::fs::read(f.join("sev-legacy/sevctl").join(n)).unwrap(),
            "{n}"
        );
    }
    fails(
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--legacy-vm-type",
            "on",
        ],
        "--legacy-vm-type is a property of QEMU's sev-guest",
    );
    fails(&[&base[..], &["--legacy-vm-type", "yes"]].concat(), "yes");
}

#[test]
fn json_and_trace() {
    let Some(f) = fixtures() else { return };
    let amd = fx(&f, "measurement/sev-snp-measure/ovmf_AmdSev_suffix.bin");
    let base = [
        "--mode",
        "snp",
        "--vcpus",
        "3",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        &amd,
    ];
    let digest = ok(&base);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&[&base[..], &["--json"]].concat())).unwrap();
    assert_eq!(j["measurement"], digest.as_str());
    assert_eq!(j["mode"], "snp");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&[&base[..], &["--json", "--trace"]].concat())).unwrap();
    let pages = j["pages"].as_array().unwrap();
    // 1 OVMF page + (9+3+1+1+1+1+15) metadata pages + 3 VMSAs.
    assert_eq!(pages.len(), 1 + 31 + 3);
    assert_eq!(pages[0]["gpa"], "0xfffff000");
    assert_eq!(pages[0]["page_type"], "NORMAL");
    assert_eq!(
        pages[0]["digest"],
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    );
    let last = pages.last().unwrap();
    assert_eq!(last["page_type"], "VMSA");
    assert_eq!(last["gpa"], "0xfffffffff000");
    assert_eq!(last["digest"], digest.as_str());
    assert_eq!(
        pages.iter().filter(|p| p["page_type"] == "SECRETS").count(),
        1
    );
    assert_eq!(
        pages.iter().filter(|p| p["page_type"] == "CPUID").count(),
        1
    );
    let text = ok(&[&base[..], &["--trace"]].concat());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 35 + 1);
    assert_eq!(*lines.last().unwrap(), digest);
    assert!(
        lines[1].starts_with("0 0x0000fffff000 NORMAL 161ace08"),
        "{}",
        lines[1]
    );
}

#[test]
fn builtin_default_and_dump_vmsa() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("b.fd");
    ok(&["--write-builtin-ovmf", img.to_str().unwrap()]);
    let a = ok(&["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Genoa"]);
    let b = ok(&[
        "--mode",
        "snp",
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Genoa",
        "--ovmf",
        img.to_str().unwrap(),
    ]);
    assert_eq!(a, b);
    assert_eq!(a.len(), 96);
    let o = Command::new(env!("CARGO_BIN_EXE_softsev"))
        .current_dir(d.path())
        .args([
            "measure",
            "--mode",
            "snp",
            "--vcpus",
            "3",
            "--vcpu-type",
            "EPYC-v4",
            "--dump-vmsa",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v0 = std::fs::read(d.path().join("vmsa0.bin")).unwrap();
    let v1 = std::fs::read(d.path().join("vmsa1.bin")).unwrap();
    assert_eq!(v0.len(), 4096);
    assert_eq!(v1, std::fs::read(d.path().join("vmsa2.bin")).unwrap());
    assert_ne!(v0, v1);
    assert_eq!(&v0[0x310..0x314], &0x80_0F12u32.to_le_bytes());
    assert_eq!(&v1[0x178..0x17A], &0xB004u16.to_le_bytes());
}

fn write(d: &tempfile::TempDir, name: &str, data: &[u8]) -> String {
    let p = d.path().join(name);
    std::fs::write(&p, data).unwrap();
    p.display().to_string()
}

#[test]
fn malformed_images_and_bad_options_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let good = softsev_measure::builtin::image();
    let n = good.len();
    let snp = |p: &str| -> Vec<String> {
        [
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            p,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>, needle: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&a, needle);
    };
    // Truncated to less than a footer.
    run(
        snp(&write(&d, "tiny.fd", &good[n - 40..])),
        "too small for a footer table",
    );
    // Not a page multiple.
    run(
        snp(&write(&d, "odd.fd", &good[100..])),
        "not a multiple of 4096",
    );
    // Empty.
    run(snp(&write(&d, "empty.fd", &[])), "too small");
    // No footer GUID: no table, so no SEV-ES reset block.
    let mut nofooter = good.clone();
    nofooter[n - 0x30] ^= 0xFF;
    run(
        snp(&write(&d, "nofooter.fd", &nofooter)),
        "SEV_ES_RESET_BLOCK_GUID",
    );
    // Footer table length larger than the image.
    let mut big = good.clone();
    big[n - 0x32..n - 0x30].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let small_big = &big[n - 0x1000..];
    run(
        snp(&write(&d, "biglen.fd", small_big)),
        "footer table length 0xffff exceeds",
    );
    // A footer entry with a bad length (the reset-block entry just before the footer).
    let mut badent = good.clone();
    badent[n - 0x32 - 18 - 4 + 4..n - 0x32 - 18 - 4 + 6].copy_from_slice(&3u16.to_le_bytes());
    run(snp(&write(&d, "badentry.fd", &badent)), "has length 0x3");
    // Metadata offset outside the image.
    let o = softsev_measure::Ovmf::parse(good.clone()).unwrap();
    let meta_entry = o
        .footer_entries()
        .iter()
        .find(|e| e.guid == softsev_abi::ovmf::SEV_METADATA_GUID)
        .unwrap()
        .data
        .start;
    let mut far = good.clone();
    far[meta_entry..meta_entry + 4].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    run(snp(&write(&d, "far.fd", &far)), "outside the");
    // Metadata signature and item count.
    let mut sig = good.clone();
    let m = softsev_measure::builtin::METADATA_OFFSET;
    sig[m] = b'X';
    run(snp(&write(&d, "sig.fd", &sig)), "is not 'ASEV'");
    let mut cnt = good.clone();
    cnt[m + 12..m + 16].copy_from_slice(&1000u32.to_le_bytes());
    run(snp(&write(&d, "count.fd", &cnt)), "items does not fit");
    let mut kind = good.clone();
    kind[m + 16 + 8..m + 16 + 12].copy_from_slice(&0x77u32.to_le_bytes());
    run(snp(&write(&d, "kind.fd", &kind)), "unknown type 0x77");
    // Kernel hashes asked for an image without the section.
    let x64 = fixtures().map(|f| fx(&f, "measurement/sev-snp-measure/ovmf_OvmfX64_suffix.bin"));
    if let Some(x) = x64 {
        let mut a = snp(&x);
        a.extend(["--kernel".into(), "/dev/null".into()]);
        run(a, "doesn't include SNP_KERNEL_HASHES section");
    }
    // Unreadable files.
    run(
        snp("/nonexistent/ovmf.fd"),
        "cannot read OVMF '/nonexistent/ovmf.fd'",
    );
    let mut a = snp(&write(&d, "ok.fd", &good));
    a.extend(["--kernel".into(), "/nonexistent/vmlinuz".into()]);
    run(a, "cannot read kernel '/nonexistent/vmlinuz'");
    let mut a = snp(&write(&d, "ok2.fd", &good));
    a.extend([
        "--kernel".into(),
        "/dev/null".into(),
        "--initrd".into(),
        d.path().display().to_string(),
    ]);
    run(a, "cannot read initrd");
    // Bad options.
    fails(
        &["--mode", "snp", "--vcpu-type", "EPYC-v4"],
        "missing --vcpus N",
    );
    fails(&["--mode", "snp", "--vcpus", "1"], "missing --vcpu-type");
    fails(
        &["--mode", "snp", "--vcpus", "0", "--vcpu-type", "EPYC"],
        "at least 1",
    );
    fails(
        &["--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-Foo"],
        "unknown vCPU type",
    );
    fails(
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--vmm-type",
            "xen",
        ],
        "unknown VMM type",
    );
    fails(&["--mode", "tdx"], "unknown mode");
    fails(
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--guest-features",
            "zz",
        ],
        "invalid integer",
    );
    fails(
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--initrd",
            "/dev/null",
        ],
        "--kernel required when using --initrd",
    );
    fails(
        &["--mode", "sev", "--snp-ovmf-hash", "00"],
        "only works with --mode snp",
    );
    fails(
        &[
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--snp-ovmf-hash",
            "abcd",
        ],
        "48",
    );
    fails(&["--mode", "sev", "--trace"], "--trace");
    fails(
        &["--mode", "snp:svsm", "--vcpus", "1", "--vcpu-type", "EPYC"],
        "requires --svsm",
    );
}

/// Regression (seed 1592598566 of measure_interop): `--vcpu-family 0` is refused by name,
/// for every VMM type, instead of giving a digest of a family-0 signature (or, as
/// sev-snp-measure does, silently falling back to the other options).
#[test]
fn regression_vcpu_family_zero_is_refused() {
    for vmm in ["QEMU", "ec2", "gce"] {
        fails(
            &[
                "--mode",
                "snp",
                "--vcpus",
                "2",
                "--vcpu-family",
                "0",
                "--vcpu-model",
                "255",
                "--vcpu-stepping",
                "14",
                "--vmm-type",
                vmm,
            ],
            "--vcpu-family 0 is not a CPU family",
        );
    }
    // Family 1 is a family: a digest.
    ok(&[
        "--mode",
        "snp",
        "--vcpus",
        "2",
        "--vcpu-family",
        "1",
        "--vcpu-model",
        "0",
        "--vcpu-stepping",
        "0",
    ]);
}

/// P7 (probe): a FIFO, socket or directory is refused before it is read (no hang on a
/// FIFO without a writer), an image far larger than any firmware is refused from its
/// size (no gigabytes read to report a missing GUID), a device is read only up to the
/// limit (`/dev/null` stays the usual empty kernel; a `/dev/zero` kernel is cut off at
/// 4 GiB, constant memory, not exercised here for time).
#[test]
fn non_regular_and_oversized_inputs_are_refused_before_reading() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_str().unwrap();
    let base = ["--vcpus", "1", "--vcpu-type", "EPYC"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    fails(
        &with(&base, &["--ovmf", fifo]),
        "a FIFO, not a regular file",
    );
    fails(
        &with(&base, &["--ovmf", "/dev/zero"]),
        "more than 67108864 bytes; a firmware image is at most that",
    );
    fails(
        &with(&base, &["--ovmf", "/"]),
        "a directory, not a regular file",
    );
    fails(
        &with(&base, &["--kernel", fifo]),
        "a FIFO, not a regular file",
    );
    let k = write(&d, "k", b"kernel");
    fails(
        &with(&base, &["--kernel", &k, "--initrd", "/"]),
        "cannot read initrd '/': a directory, not a regular file",
    );
    // A sparse 2 GiB file: refused from its size, nothing read.
    let big = d.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    fails(
        &with(&base, &["--ovmf", big.to_str().unwrap()]),
        "2147483648 bytes; a firmware image is at most 67108864 bytes",
    );
}
