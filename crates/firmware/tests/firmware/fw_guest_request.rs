//! SNP_GUEST_REQUEST through the mailbox: the command-level checks (context, response
//! page state and size, guest state, request placement) and a full report / derived
//! key exchange for a launched guest, with the report checked against the guest
//! context, the platform and the VCEK of REPORTED_TCB.
use crate::fwcommon::*;
use softsev_abi::fw_buf::*;
use softsev_abi::guest_msg::{MsgType, ReportReq, ReportRsp};
use softsev_abi::report::AttestationReport;
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{Asid, FwCmd, FwStatus, Gpa, Product, Spa};
use softsev_firmware::fuzzing::GuestMsgClient;
use softsev_soc::{AccessKind, GuestAccess};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const POLICY: u64 = 0x30000;
const SECRETS_SPA: u64 = GUEST_BASE + 0x1000;
const SECRETS_GPA: u64 = 0x9000;
const REQ: u64 = 0x6000;
const RSP: u64 = 0x7000;

/// A running guest with one NORMAL page and a secrets page; returns its VMPCK0.
fn guest(h: &Host) -> [u8; 32] {
    h.started_guest(POLICY);
    h.load_page(GCTX, GUEST_BASE, 0, 1, &[0x11; 4096]).unwrap();
    h.load_page(GCTX, SECRETS_SPA, SECRETS_GPA, 5, &[0; 4096])
        .unwrap();
    h.launch_finish(GCTX, 0, [0x42; 32]).unwrap();
    let mut page = vec![0u8; 4096];
    h.soc
        .guest_read(
            &GuestAccess::snp(
                Asid(ASID),
                Gpa(SECRETS_GPA),
                Spa(SECRETS_SPA),
                AccessKind::Read,
                true,
            ),
            &mut page,
        )
        .unwrap();
    *SecretsPage::parse(&page).unwrap().vmpck(0).unwrap()
}

fn request(h: &Host, req: u64, rsp: u64) -> FwStatus {
    status(h.cmd(
        FwCmd::SNP_GUEST_REQUEST,
        &SnpGuestRequest {
            gctx_paddr: GCTX,
            request_paddr: req,
            response_paddr: rsp,
        },
    ))
}

fn report_req(nonce: [u8; 64]) -> Vec<u8> {
    let mut r = ReportReq::new_zeroed();
    r.report_data = nonce;
    r.as_bytes().to_vec()
}

#[test]
fn report_request_end_to_end() {
    let h = Host::new();
    let vmpck = guest(&h);
    h.fw_page(RSP);
    let mut client = GuestMsgClient::new(&vmpck, 0);
    let nonce = [0xA5; 64];
    for round in 0..3 {
        let msg = client
            .request(MsgType::REPORT_REQ, 1, &report_req(nonce))
            .unwrap();
        h.soc.host_write(Spa(REQ), false, &msg).unwrap();
        assert_eq!(request(&h, REQ, RSP), FwStatus::SUCCESS, "round {round}");
        let mut page = vec![0u8; 4096];
        // The host reclaims the response page to read it (KVM copies it to the guest).
        h.soc.host_read(Spa(RSP), false, &mut page).unwrap();
        let payload = client.response(&page).unwrap();
        let rsp = ReportRsp::read_from_prefix(&payload).unwrap().0;
        assert_eq!(rsp.status, 0);
        assert_eq!(rsp.report_size, 0x4A0);
        let report: AttestationReport = rsp.report;
        let info = h.fw.launch_record(Spa(GCTX)).unwrap();
        assert_eq!(report.version, 3);
        assert_eq!(report.report_data, nonce);
        assert_eq!(report.measurement, info.measurement);
        assert_eq!(report.host_data, [0x42; 32]);
        assert_eq!(report.policy, POLICY);
        assert_eq!(report.report_id, info.report_id);
        assert_eq!(report.report_id_ma, [0xFF; 32]);
        assert_eq!(&report.chip_id[..], &h.fw.chip().chip_id()[..]);
        let tcbs = report.tcbs(Product::Milan).unwrap();
        assert_eq!(tcbs.reported, h.fw.reported_tcb());
        assert_eq!(tcbs.current, h.fw.current_image().tcb);
        assert_eq!(tcbs.launch, info.launch_tcb);
        assert_eq!(report.current_version(), h.fw.current_image().version);
        // Signed by the VCEK of REPORTED_TCB.
        let vcek = h.fw.chip().vcek(&tcbs.reported).unwrap();
        let (r, s) = report.signature.to_be().expect("signature layout");
        let sig = softsev_crypto::ecdsa::P384Signature { r, s };
        vcek.signing_key()
            .public()
            .verify(report.signed_bytes(), &sig)
            .expect("report verifies with the VCEK of REPORTED_TCB");
    }
}

#[test]
fn command_level_checks() {
    let h = Host::new();
    let vmpck = guest(&h);
    let mut client = GuestMsgClient::new(&vmpck, 0);
    let msg = client
        .request(MsgType::REPORT_REQ, 1, &report_req([0; 64]))
        .unwrap();
    h.soc.host_write(Spa(REQ), false, &msg).unwrap();
    // Response page not a firmware page.
    assert_eq!(request(&h, REQ, RSP), FwStatus::INVALID_PAGE_STATE);
    h.fw_page(RSP);
    // Request placed so the header crosses the page end.
    assert_eq!(request(&h, REQ + 0xFC0, RSP), FwStatus::INVALID_PARAM);
    // 2 MiB response page.
    h.rmpupdate(0x80_0000, true, 0, 0, true, true);
    assert_eq!(request(&h, REQ, 0x80_0000), FwStatus::INVALID_PAGE_SIZE);
    // Wrong context.
    assert_eq!(
        status(h.cmd(
            FwCmd::SNP_GUEST_REQUEST,
            &SnpGuestRequest {
                gctx_paddr: GCTX2,
                request_paddr: REQ,
                response_paddr: RSP,
            },
        )),
        FwStatus::INVALID_GUEST
    );
    // A tampered request fails authentication; the counter does not move, so the
    // untampered one still succeeds.
    let mut bad = msg.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    h.soc.host_write(Spa(REQ), false, &bad).unwrap();
    assert_eq!(request(&h, REQ, RSP), FwStatus::BAD_MEASUREMENT);
    h.soc.host_write(Spa(REQ), false, &msg).unwrap();
    assert_eq!(request(&h, REQ, RSP), FwStatus::SUCCESS);
    // Replaying it: the sequence number is stale.
    assert_eq!(request(&h, REQ, RSP), FwStatus::AEAD_OFLOW);
}

#[test]
fn guest_request_needs_a_running_guest() {
    let h = Host::new();
    h.started_guest(POLICY);
    h.fw_page(RSP);
    assert_eq!(request(&h, REQ, RSP), FwStatus::INVALID_GUEST_STATE);
}
