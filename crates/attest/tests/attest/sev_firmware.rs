//! End to end with softsev's firmware model on the legacy SEV path: the relying party
//! verifies the platform chain the firmware exports (PDH_CERT_EXPORT, with the KDS CEK
//! and the product's AMD-format CA, sev-legacy.md §2.6, §9.4), the guest owner's
//! session opens in the firmware (LAUNCH_START), the measurement checks, the secret
//! packet is accepted (LAUNCH_SECRET) and the report verifies (ATTESTATION) — and
//! sevctl agrees on the chain and the report when it is installed.
//! softsev-firmware is a dev-dependency only.

use softsev_abi::sev_buf::*;
use softsev_abi::sev_cert::SevCert;
use softsev_abi::{FwCmd, FwStatus, Product, Spa};
use softsev_attest::sev::owner::{
    MeasureInputs, OwnerSession, SecretEntry, check_measurement, parse_guid, seal_secret,
    secret_table,
};
use softsev_attest::sev::{CaChoice, SevCa, SevChainOptions, SevReportExpect, verify_sev_chain};
use softsev_crypto::hash::sha256;
use softsev_crypto::rng::Rng;
use softsev_firmware::Firmware;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};
use zeroize::Zeroizing;

const CMD: u64 = 0x1000;
const OUT: u64 = 0x2000;
const GODH: u64 = 0x3000;
const SESSION: u64 = 0x4000;
const CHAIN: u64 = 0x5000;
const HDR: u64 = 0x7000;
const TRANS: u64 = 0x8000;
const GMEM: u64 = 0x40_0000;
const SEV_ASID: u32 = 9;

fn platform() -> Arc<Firmware> {
    let fw = Firmware::builder(Product::Milan)
        .seed(b"attest sev e2e")
        .soc_bytes(64 << 20)
        .asid_count(16)
        .configure(|c| c.min_sev_asid = 8)
        .build()
        .unwrap();
    fw.call(
        Spa(CMD),
        &mut SevInit {
            flags: 0,
            reserved: 0,
            tmr_address: 0,
            tmr_len: 0,
        },
    )
    .unwrap();
    fw.soc().wbinvd();
    fw.command(FwCmd::DF_FLUSH, Spa(CMD)).unwrap();
    fw
}

/// PDH_CERT_EXPORT: PDH, and PEK ‖ OCA ‖ CEK (the CEK unsigned, §0.2-9).
fn export(fw: &Firmware) -> (SevCert, Vec<u8>) {
    fw.call(
        Spa(CMD),
        &mut SevPdhCertExport {
            pdh_cert_address: OUT,
            pdh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            cert_chain_address: CHAIN,
            cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
        },
    )
    .unwrap();
    let mut pdh = [0u8; SEV_CERT_LEN];
    fw.soc().host_read(Spa(OUT), false, &mut pdh).unwrap();
    let mut chain = vec![0u8; SEV_PDH_CHAIN_LEN];
    fw.soc().host_read(Spa(CHAIN), false, &mut chain).unwrap();
    (SevCert::read_from_bytes(&pdh).unwrap(), chain)
}

/// The relying party's view: PDH ‖ PEK ‖ OCA ‖ KDS CEK, and the CA ASK ‖ ARK.
fn chain_and_ca(fw: &Firmware) -> (Vec<u8>, Vec<u8>) {
    let (pdh, plat) = export(fw);
    let mut chain = pdh.as_bytes().to_vec();
    chain.extend_from_slice(&plat[..2 * SEV_CERT_LEN]);
    chain.extend_from_slice(fw.sev_kds_cek().as_bytes());
    let (ask, ark) = fw.sev_ca_certs();
    let mut ca = ask;
    ca.extend(ark);
    (chain, ca)
}

#[test]
fn firmware_chain_verifies_under_its_ca_only() {
    let fw = platform();
    let (chain, ca) = chain_and_ca(&fw);
    let opts = SevChainOptions {
        ca: CaChoice::Custom(Box::new(SevCa::from_ask_ark(&ca).unwrap())),
        oca: None,
    };
    let v = verify_sev_chain(&chain, &opts);
    assert!(v.passed(), "{}", v.to_table());
    // The exported CEK is unsigned: the ASK link has no slot to check.
    let (pdh, plat) = export(&fw);
    let mut unsigned = pdh.as_bytes().to_vec();
    unsigned.extend_from_slice(&plat);
    let v = verify_sev_chain(&unsigned, &opts);
    assert_eq!(v.failed_ids(), vec!["sev.cek.signed_by_ask"]);
    // AMD's built-in CAs do not sign a simulated chip's CEK.
    let v = verify_sev_chain(&chain, &SevChainOptions::default());
    assert_eq!(v.failed_ids(), vec!["sev.ca"]);
    // sevctl agrees on the firmware's chain.
    if let Some(sevctl) = softsev_testkit::tool("sevctl") {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sev.cert"), &chain).unwrap();
        std::fs::write(d.path().join("ca.cert"), &ca).unwrap();
        let o = std::process::Command::new(sevctl)
            .current_dir(d.path())
            .args(["verify", "--sev", "sev.cert", "--ca", "ca.cert"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn owner_session_measurement_secret_and_report_through_the_firmware() {
    let fw = platform();
    let soc = fw.soc().clone();
    let (chain, ca) = chain_and_ca(&fw);
    let chain_verdict = verify_sev_chain(
        &chain,
        &SevChainOptions {
            ca: CaChoice::Custom(Box::new(SevCa::from_ask_ark(&ca).unwrap())),
            oca: None,
        },
    );
    assert!(chain_verdict.passed());
    let pdh = chain_verdict.pdh.unwrap();
    // LAUNCH_START with our session: the firmware holds our TEK and TIK.
    let policy = 0x1; // NODBG
    let mut rng = Rng::seeded(b"owner", "e2e");
    let s = OwnerSession::start(&pdh, policy, &mut rng).unwrap();
    soc.host_write(Spa(GODH), false, s.godh().as_bytes())
        .unwrap();
    soc.host_write(Spa(SESSION), false, s.session().as_bytes())
        .unwrap();
    let start = |policy: u32| {
        let mut b = SevLaunchStart {
            handle: 0,
            policy,
            dh_cert_address: GODH,
            dh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            session_address: SESSION,
            session_len: SEV_SESSION_LEN as u32,
        };
        fw.call(Spa(CMD), &mut b).map(|()| b.handle)
    };
    // The policy is MACed: another policy is BAD_MEASUREMENT.
    assert_eq!(start(0x3), Err(FwStatus::BAD_MEASUREMENT));
    let handle = start(policy).unwrap();
    let (tek, tik) = fw.sev_transport_keys_for_test(handle).unwrap();
    assert_eq!((&*tek, &*tik), (s.tek(), s.tik()));
    // One page of guest data, measured.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
    soc.host_write(Spa(GMEM), false, &data).unwrap();
    fw.call(
        Spa(CMD),
        &mut SevActivate {
            handle,
            asid: SEV_ASID,
        },
    )
    .unwrap();
    fw.call(
        Spa(CMD),
        &mut SevLaunchUpdateData {
            handle,
            reserved: 0,
            address: GMEM,
            len: data.len() as u32,
        },
    )
    .unwrap();
    fw.call(
        Spa(CMD),
        &mut SevLaunchMeasure {
            handle,
            reserved: 0,
            address: OUT,
            len: 48,
        },
    )
    .unwrap();
    let mut blob = [0u8; 48];
    soc.host_read(Spa(OUT), false, &mut blob).unwrap();
    let mut st = SevPlatformStatus::default();
    fw.call(Spa(CMD), &mut st).unwrap();
    let ld = sha256(&data);
    let inputs = MeasureInputs {
        api_major: st.api_major,
        api_minor: st.api_minor,
        build: st.build,
        policy,
        launch_digest: ld,
    };
    check_measurement(s.tik(), &inputs, &blob).unwrap();
    assert!(
        check_measurement(
            s.tik(),
            &MeasureInputs {
                launch_digest: [0; 32],
                ..inputs
            },
            &blob
        )
        .is_err()
    );
    // LAUNCH_SECRET with our packet: accepted; tampered: BAD_MEASUREMENT.
    let table = secret_table(&[SecretEntry {
        guid: parse_guid("736869e5-84f0-4973-92ec-06879ce3da0b").unwrap(),
        data: Zeroizing::new(b"the disk key".to_vec()),
    }])
    .unwrap();
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    let p = seal_secret(s.tek(), s.tik(), &measure, &rng.array(), &table).unwrap();
    let inject = |hdr: &SevPacketHeader| {
        soc.host_write(Spa(HDR), false, hdr.as_bytes()).unwrap();
        soc.host_write(Spa(TRANS), false, &p.ciphertext).unwrap();
        let n = p.ciphertext.len() as u32;
        fw.call(
            Spa(CMD),
            &mut SevLaunchSecret {
                handle,
                hdr_address: HDR,
                hdr_len: SEV_PACKET_HEADER_LEN as u32,
                guest_address: GMEM + 0x1000,
                guest_len: n,
                trans_address: TRANS,
                trans_len: n,
                ..Default::default()
            },
        )
    };
    let mut bad = p.header;
    bad.mac[5] ^= 1;
    assert_eq!(inject(&bad), Err(FwStatus::BAD_MEASUREMENT));
    inject(&p.header).unwrap();
    // ATTESTATION with the relying party's mnonce: the report verifies under the chain.
    let mnonce: [u8; 16] = rng.array();
    fw.call(
        Spa(CMD),
        &mut SevAttestation {
            handle,
            reserved: 0,
            address: OUT,
            mnonce,
            len: SEV_REPORT_LEN as u32,
        },
    )
    .unwrap();
    let mut report = [0u8; SEV_REPORT_LEN];
    soc.host_read(Spa(OUT), false, &mut report).unwrap();
    let expect = SevReportExpect {
        mnonce: Some(mnonce),
        launch_digest: Some(ld),
        policy: Some(policy),
        policy_required: Some(0x1),
    };
    let v = chain_verdict.clone().with_report(&report, &expect);
    assert!(v.passed(), "{}", v.to_table());
    let v = chain_verdict.clone().with_report(
        &report,
        &SevReportExpect {
            mnonce: Some([0; 16]),
            ..expect.clone()
        },
    );
    assert_eq!(v.failed_ids(), vec!["sev.report.mnonce"]);
    if let Some(sevctl) = softsev_testkit::tool("sevctl") {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sev.cert"), &chain).unwrap();
        std::fs::write(d.path().join("report.bin"), report).unwrap();
        let o = std::process::Command::new(sevctl)
            .current_dir(d.path())
            .args(["validate", "sev.cert", "report.bin"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}
