//! SNP_GUEST_REQUEST end to end through the firmware's command interface, the way KVM
//! and a Linux guest use it: the guest reads VMPCK0 from the secrets page the firmware
//! wrote at LAUNCH_UPDATE, seals a request into a shared page, the host hands the
//! firmware a response page in FIRMWARE state, then reclaims it; the guest opens the
//! response. The report's MEASUREMENT is the launch digest and it verifies with the
//! `sev` crate against the chip's chain.

use crate::fwcommon::*;
use sev::certs::snp::{Certificate as SevCert, Chain as SevChain, Verifiable, ca};
use sev::parser::ByteParser;
use softsev_abi::fw_buf::{SnpGuestRequest, SnpPaddr};
use softsev_abi::guest_msg::{KeyReq, KeyRsp, MsgType, ReportReq, ReportRsp};
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{Asid, FwCmd, FwStatus, Gpa, Spa};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_soc::{AccessKind, GuestAccess};
use zerocopy::{FromBytes, IntoBytes};

const SECRETS_SPA: u64 = GUEST_BASE + 0x1000;
const SECRETS_GPA: u64 = 0x1000;
const REQ: u64 = 0x3000;
const RSP: u64 = 0x4000;

/// A running guest with a NORMAL page at GPA 0 and the secrets page at GPA 0x1000;
/// returns the secrets page as the guest reads it.
fn launch(h: &Host) -> SecretsPage {
    h.started_guest(0x3_0000);
    h.load_page(GCTX, GUEST_BASE, 0, 1, &[0x5A; 4096]).unwrap();
    h.load_page(GCTX, SECRETS_SPA, SECRETS_GPA, 5, &[0; 4096])
        .unwrap();
    h.launch_finish(GCTX, 0, [0x4D; 32]).unwrap();
    let mut raw = vec![0u8; 4096];
    let a = GuestAccess::snp(
        Asid(ASID),
        Gpa(SECRETS_GPA),
        Spa(SECRETS_SPA),
        AccessKind::Read,
        true,
    );
    h.soc.guest_read(&a, &mut raw).unwrap();
    SecretsPage::parse(&raw).unwrap()
}

/// One SNP_GUEST_REQUEST: request in a hypervisor page, response page made a firmware
/// page for the command and given back afterwards (KVM's bounce pages).
fn guest_request(h: &Host, msg: &[u8]) -> (Result<(), FwStatus>, Vec<u8>) {
    h.soc.host_write(Spa(REQ), false, msg).unwrap();
    h.fw_page(RSP);
    let r = h.cmd(
        FwCmd::SNP_GUEST_REQUEST,
        &SnpGuestRequest {
            gctx_paddr: GCTX,
            request_paddr: REQ,
            response_paddr: RSP,
        },
    );
    // Give the page back: PAGE_RECLAIM, then RMPUPDATE to the hypervisor.
    h.cmd(FwCmd::SNP_PAGE_RECLAIM, &SnpPaddr { paddr: RSP })
        .unwrap();
    h.hv_page(RSP);
    let mut page = vec![0u8; 4096];
    h.soc.host_read(Spa(RSP), false, &mut page).unwrap();
    (r, page)
}

#[test]
fn report_and_key_requests_through_the_command_interface() {
    let h = Host::new();
    let secrets = launch(&h);
    assert_eq!(secrets.version, 3);
    assert!(secrets.vmpck.iter().all(|k| k.iter().any(|&b| b != 0)));
    assert_ne!(secrets.vmpck[0], secrets.vmpck[1]);
    let mut guest = GuestMsgClient::new(&secrets.vmpck[0], 0);

    // MSG_REPORT_REQ.
    let req = ReportReq {
        report_data: [0xAB; 64],
        ..ReportReq::default()
    };
    let msg = guest
        .request(MsgType::REPORT_REQ, 1, req.as_bytes())
        .unwrap();
    let (r, page) = guest_request(&h, &msg);
    r.unwrap();
    let body = guest.response(&page).unwrap();
    let rsp = ReportRsp::read_from_bytes(&body).unwrap();
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
    let report = rsp.report;
    assert_eq!(report.report_data, [0xAB; 64]);
    assert_eq!(report.host_data, [0x4D; 32]);
    assert_eq!(report.policy, 0x3_0000);
    assert_eq!(report.report_id_ma, [0xFF; 32]);
    let info = h.fw.launch_record(Spa(GCTX)).unwrap();
    assert_eq!(report.measurement, info.measurement);
    assert_eq!(report.report_id, info.report_id);
    assert_ne!(report.report_id, [0; 32]);
    report.check_reserved().unwrap();

    // The `sev` crate verifies it with the chain of the TCB the report names.
    let product = softsev_abi::Product::Milan; // Host::new()
    let tcbs = report.tcbs(product).unwrap();
    let chain = chip(product).vcek_chain(&tcbs.reported).unwrap();
    let sev_chain = SevChain {
        ca: ca::Chain::from_der(&chain.ark, &chain.ask).unwrap(),
        vek: SevCert::from_der(&chain.vek).unwrap(),
    };
    let parsed = sev::firmware::guest::AttestationReport::from_bytes(report.as_bytes()).unwrap();
    (&sev_chain, &parsed).verify().unwrap();

    // Replaying the same request is refused (AEAD_OFLOW) and writes nothing.
    let (r, page) = guest_request(&h, &msg);
    assert_eq!(r, Err(FwStatus::AEAD_OFLOW));
    assert!(guest.response(&page).is_err());

    // MSG_KEY_REQ on the next sequence number: a key, the same one twice.
    let key_req = KeyReq {
        guest_field_select: 0x8,
        ..KeyReq::default()
    };
    let mut keys = Vec::new();
    for _ in 0..2 {
        let msg = guest
            .request(MsgType::KEY_REQ, 1, &key_req.as_bytes()[..0x20])
            .unwrap();
        let (r, page) = guest_request(&h, &msg);
        r.unwrap();
        let rsp = KeyRsp::read_from_bytes(&guest.response(&page).unwrap()).unwrap();
        assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS);
        keys.push(rsp.derived_key);
    }
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[0], [0; 32]);
    assert_eq!(guest.last_seqno(), 6);

    // VMPCK1 has its own counter and cannot ask for a VMPL-0 report.
    let mut g1 = GuestMsgClient::new(&secrets.vmpck[1], 1);
    let msg = g1.request(MsgType::REPORT_REQ, 1, req.as_bytes()).unwrap();
    let (r, page) = guest_request(&h, &msg);
    r.unwrap();
    let rsp = ReportRsp::read_from_bytes(&g1.response(&page).unwrap()).unwrap();
    assert_eq!(FwStatus(rsp.status), FwStatus::INVALID_PARAM);
}

#[test]
fn response_page_must_be_a_firmware_page() {
    let h = Host::new();
    let secrets = launch(&h);
    let mut guest = GuestMsgClient::new(&secrets.vmpck[0], 0);
    let msg = guest
        .request(MsgType::REPORT_REQ, 1, ReportReq::default().as_bytes())
        .unwrap();
    h.soc.host_write(Spa(REQ), false, &msg).unwrap();
    let r = h.cmd(
        FwCmd::SNP_GUEST_REQUEST,
        &SnpGuestRequest {
            gctx_paddr: GCTX,
            request_paddr: REQ,
            response_paddr: RSP,
        },
    );
    assert_eq!(r, Err(FwStatus::INVALID_PAGE_STATE));
    // The counter did not move: the same request works once the page is right.
    let (r, page) = guest_request(&h, &msg);
    r.unwrap();
    guest.response(&page).unwrap();
}
