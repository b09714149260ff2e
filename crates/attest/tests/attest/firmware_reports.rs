//! End to end with softsev's firmware model: a guest asks for a report with
//! MSG_REPORT_REQ (AES-GCM guest message, the firmware's handler), and the relying party
//! verifies what comes back against the chip's chain given as custom root — with a
//! policy built from the launch values. softsev-firmware is a dev-dependency only.

use softsev_abi::guest_msg::{MsgType, PAGE_SIZE, ReportReq, ReportRsp};
use softsev_abi::report::{FirmwareVersion, PlatformInfo};
use softsev_abi::{FwStatus, GuestPolicy, Product, TcbVersion};
use softsev_attest::{
    AmdCert, CertSet, Policy, TrustStore, VerifyOptions, time::parse_rfc3339, verify,
};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_firmware::guest_msg::{
    GuestMsgEnv, GuestMsgState, ReportVersion, handle_guest_request,
};
use softsev_firmware::identity::Chip;
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

fn env(chip: &Chip, version: ReportVersion) -> GuestMsgEnv<'_> {
    let p = chip.product();
    let mut e = GuestMsgEnv::new(chip, &VMRK);
    e.report_version = version;
    e.launch_mut().policy = 0x3_0000;
    e.launch_mut().family_id = [0xFA; 16];
    e.launch_mut().image_id = [0x1D; 16];
    e.launch_mut().guest_svn = 7;
    e.launch_mut().measurement = core::array::from_fn(|i| 0x80 + i as u8);
    e.launch_mut().host_data = [0x4D; 32];
    e.launch_mut().id_block_en = true;
    e.launch_mut().id_key_digest = [0x1E; 48];
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
    e.platform_info = PlatformInfo(PlatformInfo::SMT_EN | PlatformInfo::TSME_EN);
    e.launch_mit_vector = 0x3f;
    e.current_mit_vector = 0x7f;
    e
}

fn request_report(env: &GuestMsgEnv<'_>, report_data: [u8; 64]) -> Vec<u8> {
    let mut state = GuestMsgState::from_keys(&KEYS);
    let mut guest = GuestMsgClient::new(&KEYS[1], 1);
    let req = ReportReq {
        report_data,
        vmpl: 1,
        ..ReportReq::default()
    };
    let msg = guest
        .request(MsgType::REPORT_REQ, 1, req.as_bytes())
        .unwrap();
    let mut page = vec![0u8; PAGE_SIZE];
    handle_guest_request(&mut state, env, &msg, &mut page).unwrap();
    let body = guest.response(&page).unwrap();
    let rsp = ReportRsp::read_from_bytes(&body).unwrap();
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
    rsp.report.as_bytes().to_vec()
}

#[test]
fn firmware_reports_verify_with_the_chip_root() {
    let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    for (product, version) in [
        (Product::Milan, ReportVersion::V3),
        (Product::Genoa, ReportVersion::V5),
        (Product::Turin, ReportVersion::V5),
    ] {
        let chip = Chip::from_seed(product, b"attest-e2e").unwrap();
        let e = env(&chip, version);
        let nonce = [0x42; 64];
        let bytes = request_report(&e, nonce);
        let chain = chip.vcek_chain(&e.reported_tcb).unwrap();
        let mut certs = CertSet::default();
        for d in [&chain.ark, &chain.ask, &chain.vek] {
            certs
                .insert(AmdCert::from_der("fw", d).unwrap(), None)
                .unwrap();
        }
        let trust =
            TrustStore::custom(vec![AmdCert::from_der("ark", &chain.ark).unwrap()], None).unwrap();
        let policy = Policy {
            measurement: Some(e.launch.measurement),
            report_data: Some(nonce),
            host_data: Some(e.launch.host_data),
            id_key_digest: Some(e.launch.id_key_digest),
            family_id: Some(e.launch.family_id),
            image_id: Some(e.launch.image_id),
            report_id: Some(e.launch.report_id),
            min_guest_svn: Some(7),
            min_tcb: Some(tcb(product, 22)),
            min_launch_tcb: Some(tcb(product, 21)),
            min_version: Some((1, 55)),
            min_build: Some(0x3a),
            max_guest_policy: Some(GuestPolicy(0x30000)),
            vmpl: Some(1),
            platform_info_required: Some(PlatformInfo::TSME_EN),
            chip_ids: vec![chip.chip_id()[..product.chip_id_len()].to_vec()],
            product: Some(product),
            stepping: Some(product.cpuid_fms().2),
            require_id_block: true,
            required_mit_vector: (version == ReportVersion::V5).then_some(0x3f),
            ..Policy::default()
        };
        let o = VerifyOptions {
            trust: &trust,
            at,
            policy,
            ..VerifyOptions::new()
        };
        let v = verify(&bytes, &certs, &o);
        assert!(v.passed(), "{product} {version:?}:\n{}", v.to_table());
        // The firmware is provisional (committed 1.55.58 TCB snp 23 < current snp 24):
        // a relying party that refuses provisional firmware says so.
        let strict = VerifyOptions {
            policy: Policy {
                require_committed: true,
                ..Policy::default()
            },
            ..o.clone()
        };
        let v = verify(&bytes, &certs, &strict);
        assert_eq!(
            v.failures().map(|c| c.id).collect::<Vec<_>>(),
            ["policy.committed"],
            "{}",
            v.to_table()
        );
        // Another nonce than the one asked for: a replay.
        let other = request_report(&e, [0x43; 64]);
        assert!(verify(&other, &certs, &o).failed("policy.report_data"));
        // AMD's roots do not vouch for the simulated chip.
        let amd = VerifyOptions {
            at,
            ..VerifyOptions::new()
        };
        assert!(!verify(&bytes, &certs, &amd).passed());
    }
}
