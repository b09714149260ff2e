//! Reports from MSG_REPORT_REQ, checked the way relying parties check them: every
//! field comes from the environment, reserved bytes are zero, the signature is the
//! VCEK's for REPORTED_TCB (or the VLEK's), and independent verifiers accept it — the
//! `sev` crate (virtee/sev 8, pure-Rust backend) and `snpguest verify certs` +
//! `snpguest verify attestation` against the chip's own chain. A flipped bit fails.
//! CHIP_ID is checked against the VCEK's hwID here, since snpguest skips that check.

use der::Decode;
use sev::certs::snp::{Certificate as SevCert, Chain as SevChain, Verifiable, ca};
use sev::parser::ByteParser;
use softsev_abi::guest_msg::{MsgType, PAGE_SIZE, ReportReq, ReportRsp};
use softsev_abi::report::{AttestationReport, FirmwareVersion, KeyInfo, PlatformInfo, SigningKey};
use softsev_abi::{FwStatus, Product, TcbVersion};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_firmware::guest_msg::{
    GuestMsgEnv, GuestMsgState, ReportVersion, handle_guest_request,
};
use softsev_firmware::identity::{CertChain, Chip};
use std::path::PathBuf;
use zerocopy::{FromBytes, IntoBytes};

const KEYS: [[u8; 32]; 4] = [[0x10; 32], [0x21; 32], [0x32; 32], [0x43; 32]];
const VMRK: [u8; 32] = [0x99; 32];

fn tcb(product: Product, snp: u8) -> TcbVersion {
    TcbVersion {
        fmc: u8::from(product == Product::Turin),
        bootloader: 9,
        tee: 1,
        snp,
        microcode: 0xdb,
    }
}

/// An environment with every field set to a distinct non-trivial value.
fn full_env(chip: &Chip, version: ReportVersion) -> GuestMsgEnv<'_> {
    let p = chip.product();
    let mut e = GuestMsgEnv::new(chip, &VMRK);
    e.report_version = version;
    e.launch_mut().policy = 0x3_001F;
    e.launch_mut().family_id = [0xFA; 16];
    e.launch_mut().image_id = [0x1D; 16];
    e.launch_mut().guest_svn = 7;
    e.launch_mut().measurement = core::array::from_fn(|i| 0x80 + i as u8);
    e.launch_mut().host_data = [0x4D; 32];
    e.launch_mut().id_block_en = true;
    e.launch_mut().id_key_digest = [0x1E; 48];
    e.launch_mut().author_key_en = true;
    e.launch_mut().author_key_digest = [0xA0; 48];
    e.launch_mut().report_id = [0x2E; 32];
    e.launch_mut().report_id_ma = [0xFF; 32];
    e.current_tcb = tcb(p, 24);
    e.reported_tcb = tcb(p, 22);
    e.committed_tcb = tcb(p, 23);
    e.launch_mut().launch_tcb = tcb(p, 21);
    e.current_version = FirmwareVersion {
        major: 1,
        minor: 55,
        build: 0x41,
    };
    e.committed_version = FirmwareVersion {
        major: 1,
        minor: 55,
        build: 0x3a,
    };
    e.platform_info = PlatformInfo(PlatformInfo::SMT_EN | PlatformInfo::TSME_EN | 0x20);
    e.launch_mit_vector = 0x3f;
    e.current_mit_vector = 0x7f;
    e
}

/// One MSG_REPORT_REQ exchange as a guest at VMPL `vmpl` with VMPCK `vmpl`.
fn request_report(env: &GuestMsgEnv<'_>, vmpl: u8, key_sel: u32) -> ReportRsp {
    let mut state = GuestMsgState::from_keys(&KEYS);
    let mut guest = GuestMsgClient::new(&KEYS[usize::from(vmpl)], vmpl);
    let req = ReportReq {
        report_data: core::array::from_fn(|i| 0xC0 ^ i as u8),
        vmpl: u32::from(vmpl),
        key_sel,
        ..ReportReq::default()
    };
    let msg = guest
        .request(MsgType::REPORT_REQ, 1, req.as_bytes())
        .unwrap();
    let mut page = vec![0u8; PAGE_SIZE];
    let reply = handle_guest_request(&mut state, env, &msg, &mut page).unwrap();
    assert_eq!(reply.msg_type, MsgType::REPORT_RSP);
    let body = guest.response(&page).unwrap();
    ReportRsp::read_from_bytes(&body).unwrap()
}

fn cases() -> Vec<(Product, ReportVersion)> {
    vec![
        (Product::Milan, ReportVersion::V3),
        (Product::Genoa, ReportVersion::V3),
        (Product::Milan, ReportVersion::V5),
        (Product::Genoa, ReportVersion::V5),
        (Product::Turin, ReportVersion::V5),
    ]
}

fn hwid(cert_der: &[u8]) -> Option<Vec<u8>> {
    let c = x509_cert::Certificate::from_der(cert_der).unwrap();
    c.tbs_certificate
        .extensions?
        .iter()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.4.1.3704.1.4")
        .map(|e| e.extn_value.as_bytes().to_vec())
}

#[test]
fn every_field_comes_from_the_environment() {
    for (product, version) in cases() {
        let chip = Chip::from_seed(product, b"fields").unwrap();
        let env = full_env(&chip, version);
        let rsp = request_report(&env, 1, 0);
        assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
        let r = rsp.report;
        assert_eq!(r.version, version.number());
        assert_eq!(r.guest_svn, 7);
        assert_eq!(r.policy, 0x3_001F);
        assert_eq!(r.family_id, [0xFA; 16]);
        assert_eq!(r.image_id, [0x1D; 16]);
        assert_eq!(r.vmpl, 1);
        assert_eq!(r.signature_algo, 1);
        assert_eq!(r.platform_info, env.platform_info);
        assert_eq!(r.key_info, KeyInfo::new(true, false, SigningKey::VCEK));
        assert_eq!(r.report_data, core::array::from_fn(|i| 0xC0 ^ i as u8));
        assert_eq!(r.measurement, env.launch.measurement);
        assert_eq!(r.host_data, [0x4D; 32]);
        assert_eq!(r.id_key_digest, [0x1E; 48]);
        assert_eq!(r.author_key_digest, [0xA0; 48]);
        assert_eq!(r.report_id, [0x2E; 32]);
        assert_eq!(r.report_id_ma, [0xFF; 32]);
        let t = r.tcbs(product).unwrap();
        assert_eq!(
            (t.current, t.reported, t.committed, t.launch),
            (
                env.current_tcb,
                env.reported_tcb,
                env.committed_tcb,
                env.launch.launch_tcb
            )
        );
        assert_eq!(r.cpuid_fms(), product.cpuid_fms());
        assert_eq!(r.product(), Some(product));
        assert_eq!(r.chip_id, *chip.chip_id());
        assert_eq!(r.current_version(), env.current_version);
        assert_eq!(r.committed_version(), env.committed_version);
        let mit = if version == ReportVersion::V5 {
            (0x3f, 0x7f)
        } else {
            (0, 0)
        };
        assert_eq!((r.launch_mit_vector, r.current_mit_vector), mit);
        r.check_reserved().unwrap();
        assert!(r.signature.r.iter().any(|&b| b != 0));
        // The signature is the VCEK's for REPORTED_TCB, not CURRENT or COMMITTED.
        let sig = softsev_crypto::ecdsa::P384Signature {
            r: softsev_abi::ecdsa::le72_to_be48(&r.signature.r, "R").unwrap(),
            s: softsev_abi::ecdsa::le72_to_be48(&r.signature.s, "S").unwrap(),
        };
        let verify = |t: &TcbVersion| {
            let v = chip.vcek(t).unwrap();
            v.signing_key().public().verify(r.signed_bytes(), &sig)
        };
        verify(&env.reported_tcb).unwrap();
        assert!(verify(&env.current_tcb).is_err());
        assert!(verify(&env.committed_tcb).is_err());
    }
}

/// Our own CHIP_ID check (snpguest skips it for AMD-named VCEKs): CHIP_ID equals the
/// VCEK certificate's hwID on the product's significant bytes, zero after them; with
/// MASK_CHIP_ID it is all zero; with MASK_CHIP_KEY the report is unsigned.
#[test]
fn chip_id_matches_the_vcek_hwid_and_masks_apply() {
    for (product, version) in cases() {
        let chip = Chip::from_seed(product, b"chip id").unwrap();
        let mut env = full_env(&chip, version);
        let r = request_report(&env, 0, 0).report;
        let cert = chip.vcek_cert_der(&env.reported_tcb).unwrap();
        let hw = hwid(&cert).unwrap();
        let n = product.chip_id_len();
        assert_eq!(hw.len(), n);
        assert_eq!(&r.chip_id[..n], &hw[..], "{product}");
        assert!(r.chip_id[n..].iter().all(|&b| b == 0));
        assert_eq!(r.chip_id_for(product), &hw[..]);
        // Another chip's certificate does not match.
        let other = Chip::from_seed(product, b"other chip").unwrap();
        let other_hw = hwid(&other.vcek_cert_der(&env.reported_tcb).unwrap()).unwrap();
        assert_ne!(r.chip_id_for(product), &other_hw[..]);

        env.mask_chip_id = true;
        let r = request_report(&env, 0, 0).report;
        assert!(r.chip_id_masked());
        assert_eq!(r.key_info.signing_key(), SigningKey::VCEK);

        env.mask_chip_id = false;
        env.mask_chip_key = true;
        let rsp = request_report(&env, 0, 0);
        assert_eq!(rsp.status, 0, "the report is still returned");
        let r = rsp.report;
        assert_eq!(r.key_info, KeyInfo::new(true, true, SigningKey::NONE));
        assert!(r.signature.as_bytes().iter().all(|&b| b == 0));
        assert_eq!(r.chip_id, *chip.chip_id());
    }
}

fn sev_chain(c: &CertChain) -> SevChain {
    SevChain {
        ca: ca::Chain::from_der(&c.ark, &c.ask).unwrap(),
        vek: SevCert::from_der(&c.vek).unwrap(),
    }
}

/// virtee/sev 8 parses our reports (re-encoding them losslessly) and verifies
/// ARK → ASK → VCEK → report; one flipped bit anywhere in the signed area or the
/// signature fails.
#[test]
fn sev_crate_verifies_vcek_signed_reports() {
    for (product, version) in cases() {
        let chip = Chip::from_seed(product, b"sev crate").unwrap();
        let env = full_env(&chip, version);
        let r = request_report(&env, 0, 0).report;
        let bytes = r.as_bytes();
        let parsed = sev::firmware::guest::AttestationReport::from_bytes(bytes).unwrap();
        assert_eq!(
            parsed.to_bytes().unwrap().as_slice(),
            bytes,
            "{product} v{}: sev does not re-encode the report losslessly",
            version.number()
        );
        assert_eq!(parsed.report_data, r.report_data);
        assert_eq!(parsed.measurement, r.measurement);
        assert_eq!(parsed.chip_id, r.chip_id);
        assert_eq!(parsed.vmpl, 0);
        assert_eq!(parsed.reported_tcb.snp, env.reported_tcb.snp);
        assert_eq!(parsed.reported_tcb.microcode, env.reported_tcb.microcode);
        let chain = sev_chain(&chip.vcek_chain(&env.reported_tcb).unwrap());
        (&chain, &parsed).verify().unwrap();
        (&chain.vek, &parsed).verify().unwrap();

        // The VCEK of CURRENT_TCB does not verify it.
        let wrong = sev_chain(&chip.vcek_chain(&env.current_tcb).unwrap());
        assert!((&wrong, &parsed).verify().is_err());

        for pos in [0x50usize, 0x1A0, 0x29F, 0x2A0, 0x2E8 + 47] {
            let mut bad = bytes.to_vec();
            bad[pos] ^= 0x01;
            let Ok(p) = sev::firmware::guest::AttestationReport::from_bytes(&bad) else {
                continue;
            };
            assert!(
                (&chain, &p).verify().is_err(),
                "{product}: flip at {pos:#x} verified"
            );
        }
    }
}

#[test]
fn vlek_signs_when_loaded_and_selected() {
    let chip = Chip::from_seed(Product::Milan, b"vlek reports").unwrap();
    let mut env = full_env(&chip, ReportVersion::V3);
    let mut rng = softsev_crypto::rng::Rng::seeded(b"kds", "vlek");
    let wrapped = chip
        .provision_vlek(&mut rng, &env.reported_tcb, "softsev-csp")
        .unwrap();
    chip.load_vlek(&wrapped).unwrap();
    let chain = sev_chain(&chip.vlek_chain().unwrap());
    for key_sel in [0u32, 2] {
        let r = request_report(&env, 0, key_sel).report;
        assert_eq!(
            r.key_info.signing_key(),
            SigningKey::VLEK,
            "KEY_SEL {key_sel}"
        );
        let parsed = sev::firmware::guest::AttestationReport::from_bytes(r.as_bytes()).unwrap();
        (&chain, &parsed).verify().unwrap();
    }
    // KEY_SEL 1 still picks the VCEK.
    let r = request_report(&env, 0, 1).report;
    assert_eq!(r.key_info.signing_key(), SigningKey::VCEK);
    // With the VCEK disabled the VLEK still serves KEY_SEL 0; KEY_SEL 1 is refused.
    env.launch_mut().vcek_disabled = true;
    assert_eq!(
        request_report(&env, 0, 0).report.key_info.signing_key(),
        SigningKey::VLEK
    );
    assert_eq!(
        FwStatus(request_report(&env, 0, 1).status),
        FwStatus::INVALID_KEY
    );
    // MASK_CHIP_KEY does not stop the VLEK.
    env.launch_mut().vcek_disabled = false;
    env.mask_chip_key = true;
    let r = request_report(&env, 0, 0).report;
    assert_eq!(r.key_info, KeyInfo::new(true, true, SigningKey::VLEK));
    chip.unload_vlek();
}

use softsev_testkit::tool;

fn snpguest(bin: &PathBuf, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `snpguest verify certs DIR` and `snpguest verify attestation DIR REPORT` accept
/// the reports the firmware model signs, for every product and report version; a
/// flipped bit, an unsigned (MASK_CHIP_KEY) report and the wrong TCB's VCEK fail.
#[test]
fn snpguest_verifies_reports_from_the_handler() {
    let Some(bin) = tool("snpguest") else { return };
    for (product, version) in cases() {
        let chip = Chip::from_seed(product, b"snpguest reports").unwrap();
        let mut env = full_env(&chip, version);
        let dir = tempfile::tempdir().unwrap();
        chip.vcek_chain(&env.reported_tcb)
            .unwrap()
            .write_dir(dir.path(), true)
            .unwrap();
        let report_path = dir.path().join("report.bin");
        let d = dir.path().as_os_str();
        let (ok, text) = snpguest(&bin, &["verify".as_ref(), "certs".as_ref(), d]);
        assert!(ok, "{product}: {text}");
        let verify = |report: &AttestationReport| {
            std::fs::write(&report_path, report.as_bytes()).unwrap();
            snpguest(
                &bin,
                &[
                    "verify".as_ref(),
                    "attestation".as_ref(),
                    d,
                    report_path.as_os_str(),
                ],
            )
        };
        let tag = format!("{product} v{}", version.number());
        let good = request_report(&env, 0, 0).report;
        let (ok, text) = verify(&good);
        assert!(ok, "{tag}: {text}");
        assert!(
            text.contains("VEK signed the Attestation Report"),
            "{tag}: {text}"
        );

        // Field checks (snpguest wants 0x-prefixed hex): the values the report
        // carries pass, a wrong one fails.
        let fields = |m: &[u8], hd: &[u8], rd: &[u8], idk: &[u8]| {
            let args = [
                "-m".to_string(),
                format!("0x{}", hex::encode(m)),
                "-d".to_string(),
                format!("0x{}", hex::encode(hd)),
                "-r".to_string(),
                format!("0x{}", hex::encode(rd)),
                "--id-key-digest".to_string(),
                format!("0x{}", hex::encode(idk)),
            ];
            let mut all: Vec<&std::ffi::OsStr> = vec![
                "verify".as_ref(),
                "attestation".as_ref(),
                d,
                report_path.as_os_str(),
            ];
            all.extend(args.iter().map(|a| std::ffi::OsStr::new(a.as_str())));
            snpguest(&bin, &all)
        };
        let (ok, text) = fields(
            &good.measurement,
            &good.host_data,
            &good.report_data,
            &good.id_key_digest,
        );
        assert!(ok, "{tag}: field checks: {text}");
        let mut wrong = good.measurement;
        wrong[47] ^= 1;
        let (ok, _) = fields(
            &wrong,
            &good.host_data,
            &good.report_data,
            &good.id_key_digest,
        );
        assert!(!ok, "{tag}: wrong measurement accepted");
        let (ok, _) = fields(
            &good.measurement,
            &[0; 32],
            &good.report_data,
            &good.id_key_digest,
        );
        assert!(!ok, "{tag}: wrong host data accepted");

        for pos in [0x50usize, 0x90, 0x180, 0x2A0] {
            let mut bad = good;
            bad.as_mut_bytes()[pos] ^= 0x01;
            let (ok, text) = verify(&bad);
            assert!(!ok, "{tag}: flip at {pos:#x} accepted: {text}");
        }
        // Masked chip id: still verifies (CHIP_ID is signed as zero).
        env.mask_chip_id = true;
        let (ok, text) = verify(&request_report(&env, 0, 0).report);
        assert!(ok, "{tag} masked chip id: {text}");
        // Masked chip key: no signature, refused.
        env.mask_chip_id = false;
        env.mask_chip_key = true;
        let (ok, _) = verify(&request_report(&env, 0, 0).report);
        assert!(!ok, "{tag}: unsigned report accepted");
        // REPORTED_TCB moved on (SNP_CONFIG): the old VCEK's chain no longer matches.
        env.mask_chip_key = false;
        env.reported_tcb = env.committed_tcb;
        let (ok, _) = verify(&request_report(&env, 0, 0).report);
        assert!(!ok, "{tag}: report for another REPORTED_TCB accepted");
    }
}

/// VLEK-signed reports: snpguest picks the VLEK chain (ark, asvk, vlek) and accepts.
#[test]
fn snpguest_verifies_vlek_signed_reports() {
    let Some(bin) = tool("snpguest") else { return };
    let chip = Chip::from_seed(Product::Genoa, b"snpguest vlek").unwrap();
    let env = full_env(&chip, ReportVersion::V3);
    let mut rng = softsev_crypto::rng::Rng::seeded(b"kds", "snpguest vlek");
    let wrapped = chip
        .provision_vlek(&mut rng, &env.reported_tcb, "softsev-csp")
        .unwrap();
    chip.load_vlek(&wrapped).unwrap();
    let dir = tempfile::tempdir().unwrap();
    chip.vlek_chain()
        .unwrap()
        .write_dir(dir.path(), true)
        .unwrap();
    let report = request_report(&env, 0, 2).report;
    assert_eq!(report.key_info.signing_key(), SigningKey::VLEK);
    let path = dir.path().join("report.bin");
    let d = dir.path().as_os_str();
    let (ok, text) = snpguest(&bin, &["verify".as_ref(), "certs".as_ref(), d]);
    assert!(ok, "{text}");
    std::fs::write(&path, report.as_bytes()).unwrap();
    let args = [
        "verify".as_ref(),
        "attestation".as_ref(),
        d,
        path.as_os_str(),
    ];
    let (ok, text) = snpguest(&bin, &args);
    assert!(ok, "{text}");
    assert!(text.contains("VEK signed the Attestation Report"), "{text}");
    let mut bad = report;
    bad.report_data[0] ^= 1;
    std::fs::write(&path, bad.as_bytes()).unwrap();
    let (ok, _) = snpguest(&bin, &args);
    assert!(!ok, "flipped report accepted with the VLEK chain");
}
