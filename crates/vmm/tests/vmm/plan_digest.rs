//! The launch plan is the launch `softsev measure` describes: its pages, replayed
//! through `SnpDigest`, give `softsev_measure::launch::snp_launch_digest` for the
//! built-in image, the real OVMF builds in ../shared/fixtures/ovmf and the
//! sev-snp-measure AmdSev fixture with kernel hashes; and its structure is QEMU's
//! (firmware first, metadata sections in table order with the right page types, one
//! VMSA per vCPU).

use softsev_abi::Gpa;
use softsev_abi::ovmf::SectionType;
use softsev_abi::page_info::PageType;
use softsev_measure::launch::{SnpParams, snp_launch_digest, snp_ovmf_hash};
use softsev_measure::vmsa::VmmType;
use softsev_measure::{KernelHashes, MeasureError, Ovmf};
use softsev_vmm::config::{ConfidentialGuest, SnpGuestConfig};
use softsev_vmm::plan::{BootBlobs, INITIAL_VMSA_GPA, LaunchPlan, UpdateSource};
use softsev_vmm::{Blob, Config, CpuModel, PlanError, bootgen};
use zerocopy::IntoBytes;

use softsev_testkit::fixtures;

fn reference(ovmf: &Ovmf, c: &Config, hashes: Option<KernelHashes>) -> [u8; 48] {
    snp_launch_digest(
        ovmf,
        None,
        &SnpParams {
            vcpus: c.smp.cpus,
            vcpu_sig: c.cpu.signature,
            guest_features: c.snp().unwrap().guest_features(),
            vmm: VmmType::Qemu,
            kernel_hashes: hashes,
        },
    )
    .unwrap()
}

fn check(plan: &LaunchPlan, want: [u8; 48]) {
    assert_eq!(hex::encode(plan.expected_digest), hex::encode(want));
    assert_eq!(plan.replay_digest().unwrap(), want);
}

#[test]
fn default_run_plan_matches_measure() {
    let c = Config::default_run();
    let plan = LaunchPlan::build(&c).unwrap();
    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    let hashes = KernelHashes::from_bytes(
        &bootgen::kernel(),
        Some(&bootgen::initrd()),
        Some(bootgen::CMDLINE),
    );
    check(&plan, reference(&ovmf, &c, Some(hashes)));
    assert_eq!(plan.ovmf_hash, snp_ovmf_hash(&ovmf).unwrap());
    assert_eq!(plan.kernel_hashes, Some(hashes));

    // Structure: firmware, then the 7 built-in sections in table order.
    assert_eq!(plan.vm_type, 4);
    assert_eq!(plan.vcpus, 4);
    assert_eq!(plan.init2.vmsa_features, 0);
    let fw = &plan.updates[0];
    assert_eq!(fw.source, UpdateSource::Firmware);
    assert_eq!(
        (fw.gpa, fw.len, fw.page_type),
        (Gpa(0x1_0000_0000 - 0x40000), 0x40000, PageType::NORMAL)
    );
    assert_eq!(fw.data, softsev_measure::builtin::image());
    let kinds: Vec<(u64, u64, PageType)> = plan.updates[1..]
        .iter()
        .map(|u| (u.gpa.raw(), u.len, u.page_type))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0x80_0000, 0x9000, PageType::ZERO),
            (0x80_A000, 0x3000, PageType::ZERO),
            (0x80_D000, 0x1000, PageType::SECRETS),
            (0x80_E000, 0x1000, PageType::CPUID),
            (0x80_F000, 0x1000, PageType::ZERO),
            (0x81_0000, 0x1000, PageType::NORMAL),
            (0x81_1000, 0xF000, PageType::ZERO),
        ]
    );
    for (i, u) in plan.updates[1..].iter().enumerate() {
        match u.source {
            UpdateSource::Metadata { index, .. } => assert_eq!(index, i),
            UpdateSource::Firmware => panic!("firmware twice"),
        }
        let want_data = matches!(u.page_type, PageType::NORMAL | PageType::CPUID);
        assert_eq!(u.data.len() as u64, if want_data { u.len } else { 0 });
    }
    // The hashes page: the 176-byte table at the hash-table block's page offset.
    let hp = &plan.updates[6];
    assert_eq!(
        hp.source,
        UpdateSource::Metadata {
            index: 5,
            kind: SectionType::SNP_KERNEL_HASHES
        }
    );
    assert_eq!(
        &hp.data[0xC00..0xC00 + 176],
        hashes.table_bytes().as_slice()
    );
    assert!(hp.data[..0xC00].iter().all(|&b| b == 0));
    assert!(hp.data[0xC00 + 176..].iter().all(|&b| b == 0));
    assert_eq!(plan.kernel_hashes_gpa, Some(Gpa(0x81_0C00)));
    assert_eq!(plan.update_pages(), 64 + 9 + 3 + 1 + 1 + 1 + 1 + 15);

    // VMSAs: BSP at the reset vector, APs at the SEV-ES reset block, RDX = Milan.
    let bsp = plan.vmsa(0).unwrap();
    assert_eq!(
        (bsp.rip, bsp.cs.base, bsp.rdx, bsp.sev_features),
        (0xFFF0, 0xFFFF_0000, 0xA0_0F11, 1)
    );
    let ap = plan.vmsa(3).unwrap();
    assert_eq!((ap.rip, ap.cs.base), (0xB004, 0x80_0000));
    assert!(plan.vmsa(4).is_none());
    assert_eq!(INITIAL_VMSA_GPA, Gpa(0xFFFF_FFFF_F000));

    // Memory: 4 GiB on q35 = 2 GiB below + 2 GiB above 4 GiB, firmware under 4 GiB.
    assert_eq!(
        (plan.memory.below_4g, plan.memory.above_4g),
        (2 << 30, 2 << 30)
    );
    assert_eq!(plan.firmware_gpa, Gpa(0xFFFC_0000));
    // LAUNCH_START / FINISH.
    assert_eq!(plan.start.policy.0, 0x30000);
    assert_eq!(plan.start.gosvw, [0; 16]);
    assert!(plan.finish.id_block.is_none() && plan.finish.id_auth.is_none());
    assert!(!plan.finish.auth_key_en && !plan.finish.vcek_disabled);
    // The boot blobs the guest will check.
    let boot = plan.boot.as_ref().unwrap();
    assert_eq!(boot.hashes(), hashes);
}

fn cfg(fw: Blob, vcpus: u32, cpu: &str, debug_swap: bool) -> Config {
    let mut c = Config::default_run();
    c.firmware = fw;
    c.kernel = None;
    c.initrd = None;
    c.append = None;
    c.snp_mut().unwrap().kernel_hashes = false;
    c.snp_mut().unwrap().debug_swap = debug_swap;
    c.smp.cpus = vcpus;
    c.smp.maxcpus = vcpus;
    c.cpu = CpuModel::parse(cpu).unwrap();
    c
}

#[test]
fn builtin_image_variants_match_measure() {
    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    for (vcpus, cpu, ds) in [
        (1, "EPYC-v4", false),
        (2, "EPYC-Rome", true),
        (7, "EPYC-Genoa-v2", false),
        (64, "EPYC-Turin", true),
        (3, "qemu64", false),
    ] {
        let c = cfg(Blob::Builtin, vcpus, cpu, ds);
        let plan = LaunchPlan::build(&c).unwrap();
        check(&plan, reference(&ovmf, &c, None));
        assert_eq!(plan.init2.vmsa_features, if ds { 0x20 } else { 0 });
        // Without kernel hashes the hashes section is ZERO pages.
        assert_eq!(plan.updates[6].page_type, PageType::ZERO);
        assert!(plan.kernel_hashes.is_none());
    }
}

#[test]
fn fixture_ovmf_plans_match_measure() {
    let Some(fx) = fixtures() else { return };
    let inputs = fx.join("measure-inputs");
    let append = std::fs::read_to_string(inputs.join("cmdline.txt")).unwrap();
    for rel in [
        "ovmf/debian-trixie-2025.02-8+deb13u1/OVMF_CODE_4M.fd",
        "ovmf/lit-sev-snp-utils/OVMF_CODE.fd",
        "measurement/sev-snp-measure/ovmf_AmdSev_suffix.bin",
    ] {
        let path = fx.join(rel);
        let ovmf = Ovmf::read(&path).unwrap();
        let has_hashes = ovmf.has_section(SectionType::SNP_KERNEL_HASHES);
        for (vcpus, cpu) in [(1, "EPYC-Milan-v2"), (4, "EPYC-v4"), (32, "EPYC-Genoa")] {
            let c = cfg(Blob::File(path.clone()), vcpus, cpu, false);
            let plan = LaunchPlan::build(&c).unwrap();
            check(&plan, reference(&ovmf, &c, None));
            assert_eq!(plan.updates[0].len as usize, ovmf.size());
            assert_eq!(plan.updates.len(), 1 + ovmf.metadata().len());

            // With the measure-inputs kernel, initrd and cmdline and kernel-hashes=on.
            let mut k = c.clone();
            k.kernel = Some(Blob::File(inputs.join("fake-kernel.bin")));
            k.initrd = Some(Blob::File(inputs.join("fake-initrd.bin")));
            k.append = Some(append.clone());
            k.snp_mut().unwrap().kernel_hashes = true;
            let hashes = KernelHashes::from_files(
                &inputs.join("fake-kernel.bin"),
                Some(&inputs.join("fake-initrd.bin")),
                Some(&append),
            )
            .unwrap();
            match LaunchPlan::build(&k) {
                Ok(plan) => {
                    assert!(has_hashes, "{rel}");
                    check(&plan, reference(&ovmf, &k, Some(hashes)));
                }
                Err(e) => {
                    // Real distribution OVMF (OvmfPkgX64) has no SNP_KERNEL_HASHES
                    // section; sev-snp-measure fails the same way.
                    // QEMU checks the hash-table block first, then the metadata section.
                    assert!(!has_hashes, "{rel}: {e}");
                    assert!(
                        matches!(
                            e,
                            PlanError::NoHashTable
                                | PlanError::HashTableArea { .. }
                                | PlanError::Measure(MeasureError::NoKernelHashesSection)
                        ),
                        "{rel}: {e}"
                    );
                }
            }
            // kernel-hashes=off: the kernel is loaded but unmeasured.
            k.snp_mut().unwrap().kernel_hashes = false;
            let plan = LaunchPlan::build(&k).unwrap();
            check(&plan, reference(&ovmf, &k, None));
            assert!(plan.boot.is_some() && plan.kernel_hashes.is_none());
        }
    }
}

#[test]
fn launch_finish_parameters_and_certs() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.bin");
    std::fs::write(&certs, b"cert table").unwrap();
    let mut c = Config::default_run();
    let mut snp = SnpGuestConfig::new("sev0", 51);
    snp.kernel_hashes = true;
    snp.id_block = Some(vec![7; 96]);
    snp.id_auth = Some(vec![9; 1000]);
    snp.author_key_enabled = true;
    snp.vcek_disabled = true;
    snp.host_data = [5; 32];
    snp.gosvw = [3; 16];
    snp.policy = 0xB0000;
    snp.certs_path = Some(certs);
    c.confidential_guest = ConfidentialGuest::Snp(snp);
    let plan = LaunchPlan::build(&c).unwrap();
    assert_eq!(plan.finish.id_block, Some([7; 96]));
    let auth = plan.finish.id_auth.as_ref().unwrap();
    assert!(auth[..1000].iter().all(|&b| b == 9) && auth[1000..].iter().all(|&b| b == 0));
    assert!(plan.finish.auth_key_en && plan.finish.vcek_disabled);
    assert_eq!(plan.finish.host_data, [5; 32]);
    assert_eq!((plan.start.policy.0, plan.start.gosvw), (0xB0000, [3; 16]));
    assert_eq!(plan.certs.as_deref(), Some(&b"cert table"[..]));
    // LAUNCH_FINISH inputs do not change the digest.
    assert_eq!(
        plan.expected_digest,
        LaunchPlan::build(&Config::default_run())
            .unwrap()
            .expected_digest
    );
}

fn build_err(c: &Config) -> String {
    match LaunchPlan::build(c) {
        Ok(p) => panic!("plan built: digest {}", hex::encode(p.expected_digest)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn plan_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Missing files name themselves.
    let mut c = Config::default_run();
    c.firmware = Blob::File(dir.path().join("missing.fd"));
    let e = build_err(&c);
    assert!(e.starts_with("cannot read firmware"), "{e}");
    let mut c = Config::default_run();
    c.kernel = Some(Blob::File(dir.path().join("vmlinuz")));
    assert!(build_err(&c).starts_with("cannot read kernel"));
    let mut c = Config::default_run();
    c.snp_mut().unwrap().certs_path = Some(dir.path().join("certs"));
    assert!(build_err(&c).contains("certs-path"));
    // Firmware without SEV metadata.
    let mut img = vec![0u8; 0x10000];
    img[0] = 1;
    let f = dir.path().join("plain.fd");
    std::fs::write(&f, &img).unwrap();
    let mut c = cfg(Blob::File(f), 1, "EPYC-Milan", false);
    assert!(matches!(LaunchPlan::build(&c), Err(PlanError::NoMetadata)));
    // RAM too small for the metadata sections at 8 MiB.
    c.firmware = Blob::Builtin;
    c.memory.size = 4 << 20;
    let e = build_err(&c);
    assert!(e.contains("outside guest RAM below 4 GiB"), "{e}");
    // Firmware overlapping RAM below 4 GiB.
    c.memory.size = 4 << 30;
    c.machine.max_ram_below_4g = Some(4 << 30);
    c.machine.kind = softsev_vmm::config::MachineKind::Pc;
    c.memory.size = 0xE000_0000;
    assert!(LaunchPlan::build(&c).is_ok());
    c.machine.max_ram_below_4g = Some(0xFFFF_0000);
    c.memory.size = 0xFFFE_0000;
    let e = build_err(&c);
    assert!(e.contains("overlaps guest RAM"), "{e}");
}

#[test]
fn cpuid_page_passes_the_firmware_check() {
    use softsev_abi::fw_buf::SnpCpuidPage;
    use softsev_firmware::cpuid::{PlatformCpuid, check_cpuid_page};
    use zerocopy::FromBytes;
    for (cpu, vcpus) in [
        ("EPYC-Milan-v2", 4),
        ("EPYC-Genoa", 32),
        ("EPYC-Turin", 1),
        ("EPYC-v4", 2),
    ] {
        let c = cfg(Blob::Builtin, vcpus, cpu, false);
        let plan = LaunchPlan::build(&c).unwrap();
        let u = plan
            .updates
            .iter()
            .find(|u| u.page_type == PageType::CPUID)
            .unwrap();
        assert_eq!((u.gpa, u.len), (Gpa(0x80_E000), 0x1000));
        let mut page = SnpCpuidPage::read_from_bytes(&u.data).unwrap();
        assert!(page.count > 0, "{cpu}: empty CPUID table");
        let before = page.as_bytes().to_vec();
        check_cpuid_page(&PlatformCpuid::for_product(c.cpu.product), &mut page)
            .unwrap_or_else(|e| panic!("{cpu}: firmware refuses the CPUID page: {e:?}"));
        assert_eq!(
            page.as_bytes(),
            &before[..],
            "{cpu}: firmware corrected the page"
        );
    }
}

#[test]
fn overlapping_sections_are_refused() {
    use softsev_measure::builtin::METADATA_OFFSET;
    let mut img = softsev_measure::builtin::image();
    // Section 1 (SNP_SEC_MEM at 0x80A000) moved onto section 0 (0x800000+0x9000).
    let d1 = METADATA_OFFSET + 16 + 12;
    img[d1..d1 + 4].copy_from_slice(&0x80_8000u32.to_le_bytes());
    let ovmf = Ovmf::parse(img).unwrap();
    let c = cfg(Blob::Builtin, 1, "EPYC-Milan", false);
    match LaunchPlan::from_parts(&c, &ovmf, None, None) {
        Ok(_) => panic!("overlap accepted"),
        Err(e) => assert_eq!(
            e.to_string(),
            "launch ranges overlap: metadata section 0 (SNP_SEC_MEM) at 0x800000+0x9000 and \
             metadata section 1 (SNP_SEC_MEM) at 0x808000+0x3000"
        ),
    }
}

#[test]
fn from_parts_needs_no_files() {
    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    let c = Config::default_run();
    let boot = BootBlobs {
        kernel: vec![1, 2, 3],
        initrd: None,
        cmdline: None,
    };
    let plan = LaunchPlan::from_parts(&c, &ovmf, Some(boot), None).unwrap();
    let hashes = KernelHashes::from_bytes(&[1, 2, 3], None, None);
    check(&plan, reference(&ovmf, &c, Some(hashes)));
    // The plan's VMSA pages are the measured ones.
    assert_eq!(plan.vmsa(0).unwrap().as_bytes().len(), 4096);
}

#[test]
fn summary_and_written_inputs_re_measure() {
    let plan = LaunchPlan::build(&Config::default_run()).unwrap();
    let s = plan.summary();
    assert_eq!(s.measurement, hex::encode(plan.expected_digest));
    assert_eq!(
        (s.vcpus, s.policy.as_str(), s.vcpu_sig.as_str()),
        (4, "0x30000", "0xa00f11")
    );
    assert_eq!(s.updates.len(), 8);
    assert_eq!(s.updates[4].page_type, "CPUID");
    assert_eq!(s.updates[4].source, "metadata[3] CPUID");
    assert!(s.kernel_hashes && !s.id_block);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["measurement"], s.measurement);
    assert_eq!(json["updates"][0]["source"], "firmware");

    let dir = tempfile::tempdir().unwrap();
    let files = plan.write_inputs(&dir.path().join("inputs")).unwrap();
    assert_eq!(
        std::fs::read(&files.firmware).unwrap(),
        softsev_measure::builtin::image()
    );
    assert_eq!(
        std::fs::read(files.kernel.as_ref().unwrap()).unwrap(),
        bootgen::kernel()
    );
    assert_eq!(
        std::fs::read(files.initrd.as_ref().unwrap()).unwrap(),
        bootgen::initrd()
    );
    assert_eq!(
        std::fs::read_to_string(files.cmdline.as_ref().unwrap()).unwrap(),
        bootgen::CMDLINE
    );
    // Re-measure the written files with the measurement library alone.
    let ovmf = Ovmf::read(&files.firmware).unwrap();
    let hashes = KernelHashes::from_files(
        files.kernel.as_ref().unwrap(),
        files.initrd.as_deref(),
        Some(bootgen::CMDLINE),
    )
    .unwrap();
    let c = Config::default_run();
    assert_eq!(reference(&ovmf, &c, Some(hashes)), plan.expected_digest);
    let args = plan.measure_args(&files);
    assert_eq!(&args[..4], ["--mode", "snp", "--vmm-type", "QEMU"]);
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--append" && w[1] == bootgen::CMDLINE)
    );
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--vcpu-sig" && w[1] == "0xa00f11")
    );
    // Without kernel hashes the kernel is written but not passed to the measurer.
    let mut c = Config::default_run();
    c.snp_mut().unwrap().kernel_hashes = false;
    let plan = LaunchPlan::build(&c).unwrap();
    let files = plan.write_inputs(dir.path()).unwrap();
    assert!(files.kernel.is_some());
    assert!(!plan.measure_args(&files).iter().any(|a| a == "--kernel"));
    // Unwritable directory.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    match plan.write_inputs(&blocker.join("sub")) {
        Ok(_) => panic!("wrote under a file"),
        Err(e) => assert!(e.to_string().starts_with("cannot write"), "{e}"),
    }
}
