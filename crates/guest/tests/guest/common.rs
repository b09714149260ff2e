//! A scripted fake host for the guest model: one vCPU, guest memory as a page map with
//! a per-page (private, validated, VMSA) state, the GHCB MSR and protocol handled the
//! way KVM does, and a toy firmware that answers guest messages with real AES-GCM
//! framing. Knobs make it misbehave; every request is recorded.

use softsev_abi::ghcb::*;
use softsev_abi::guest_msg::{KeyRsp, MsgHeader, MsgType, ReportReq, ReportRsp};
use softsev_abi::report::AttestationReport;
use softsev_abi::rmp::{RMPADJUST_VMSA_PAGE_BIT, RmpStatus};
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{FwStatus, Gpa};
use softsev_crypto::guest_msg_aead;
use softsev_guest::platform::{
    CBit, Gpr, GuestFault, GuestPlatform, PageSize, VC_CPUID, VC_IOIO, VC_PAGE_NOT_VALIDATED,
};
use std::collections::HashMap;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// State of one 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pg {
    pub private: bool,
    pub validated: bool,
    pub vmsa: bool,
}

impl Default for Pg {
    fn default() -> Self {
        // KVM SNP guests start with every page private (guest_memfd), unvalidated.
        Pg {
            private: true,
            validated: false,
            vmsa: false,
        }
    }
}

/// What the host saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    Msr(GhcbMsg),
    Ghcb {
        exit: u64,
        info1: u64,
        info2: u64,
    },
    Pvalidate {
        gpa: u64,
        huge: bool,
        validate: bool,
        status: u32,
    },
    Rmpadjust {
        gpa: u64,
        attrs: u64,
    },
    PscDone {
        gfn: u64,
        op: u8,
        huge: bool,
    },
    Term {
        set: u8,
        code: u8,
    },
    FwRequest {
        msg_type: u8,
        seqno: u64,
        vmpck: u8,
    },
}

/// Ways to misbehave.
#[derive(Clone, Debug, Default)]
pub(crate) struct Knobs {
    pub max_ver: u16,
    pub min_ver: u16,
    pub hv_features: u64,
    pub reg_fail: bool,
    pub psc_msr_error: u32,
    /// Entries processed per PSC call (0 = all).
    pub psc_per_call: usize,
    /// SW_EXITINFO2 error for PSC.
    pub psc_error: u64,
    /// Return the descriptor with an entry's GFN changed.
    pub psc_tamper_entry: bool,
    /// Never make progress.
    pub psc_stall: bool,
    /// The RMP is 4 KiB only: 2 MiB PVALIDATE → FAIL_SIZEMISMATCH.
    pub rmp_4k_only: bool,
    /// After the guest validates this GFN, the host RMPUPDATEs it (validated cleared).
    pub tamper_after_validate: Option<u64>,
    /// SW_EXITINFO1 = 2 (malformed) with this error for every full-GHCB call.
    pub ghcb_bad_input: Option<u64>,
    /// SW_EXITINFO1 value for every full-GHCB call (protocol violation).
    pub ghcb_info1: Option<u64>,
    /// Certificate blob served by the extended request.
    pub certs: Vec<u8>,
    /// Answer INVALID_LEN without RBX marked valid.
    pub invalid_len_no_rbx: bool,
    /// Answer BUSY this many times first.
    pub busy: u32,
    /// Firmware status forced into SW_EXITINFO2.
    pub fw_error: u32,
    /// Add this to the response MSG_SEQNO.
    pub resp_seqno_delta: u64,
    /// Flip a ciphertext byte of the response.
    pub resp_corrupt: bool,
    /// Response MSG_TYPE override.
    pub resp_type: Option<u8>,
    /// Report status override.
    pub report_status: u32,
    /// Put different REPORT_DATA in the report.
    pub report_data_wrong: bool,
    /// Required SEV features for AP creation.
    pub sev_features: u64,
}

pub(crate) struct FakeHost {
    pub mem: HashMap<u64, Box<[u8; 4096]>>,
    pub pages: HashMap<u64, Pg>,
    pub msr: u64,
    pub sev_status: u64,
    pub registered: Option<u64>,
    pub terminated: Option<(u8, u8)>,
    pub log: Vec<Ev>,
    pub k: Knobs,
    pub vmpck: [[u8; 32]; 4],
    pub fw_count: [u64; 4],
    pub aps: Vec<(u32, u64, u64)>,
    pub derived_key_salt: u8,
    /// The VMM's CPUID table (leaf, subleaf) → [eax, ebx, ecx, edx]; absent leaves
    /// read as zero.
    pub cpuid: HashMap<(u32, u32), [u32; 4]>,
    /// The vCPU's general-purpose registers, indexed by `Gpr::index`.
    pub gprs: [u64; 15],
}

pub(crate) const SEV_STATUS_SNP_ALL: u64 = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SNP;

impl FakeHost {
    pub(crate) fn new() -> Self {
        let mut vmpck = [[0u8; 32]; 4];
        for (i, k) in vmpck.iter_mut().enumerate() {
            *k = [0x40 + i as u8; 32];
        }
        FakeHost {
            mem: HashMap::new(),
            pages: HashMap::new(),
            msr: GhcbMsg::SevInfoResp {
                max: 2,
                min: 1,
                cbit: 51,
            }
            .encode(),
            sev_status: SEV_STATUS_SNP_ALL,
            registered: None,
            terminated: None,
            log: Vec::new(),
            k: Knobs {
                max_ver: 2,
                min_ver: 1,
                hv_features: GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION,
                sev_features: 1,
                ..Knobs::default()
            },
            vmpck,
            fw_count: [0; 4],
            aps: Vec::new(),
            derived_key_salt: 0,
            cpuid: HashMap::new(),
            gprs: [0; 15],
        }
    }

    pub(crate) fn pg(&self, gfn: u64) -> Pg {
        self.pages.get(&gfn).copied().unwrap_or_default()
    }

    pub(crate) fn pg_mut(&mut self, gfn: u64) -> &mut Pg {
        self.pages.entry(gfn).or_default()
    }

    /// Launch-time state: pages pre-validated (private, validated), optional contents.
    pub(crate) fn prevalidate(&mut self, gpa: u64, len: u64) {
        for gfn in (gpa >> 12)..((gpa + len) >> 12) {
            *self.pg_mut(gfn) = Pg {
                private: true,
                validated: true,
                vmsa: false,
            };
        }
    }

    /// Place a secrets page as the firmware would (at launch).
    pub(crate) fn install_secrets(&mut self, gpa: u64) {
        let sp = SecretsPage::new(3, false, 0x00A0_0F11, [0; 16], &self.vmpck, 0);
        self.prevalidate(gpa, 0x1000);
        self.poke(gpa, sp.as_bytes());
    }

    /// Host RMPUPDATE on a page: the validated bit is cleared.
    pub(crate) fn tamper(&mut self, gpa: u64) {
        self.pg_mut(gpa >> 12).validated = false;
    }

    /// Raw write (host/firmware side, no checks).
    pub(crate) fn poke(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            self.mem
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0; 4096]))[(a & 0xFFF) as usize] = *b;
        }
    }

    /// Raw read.
    pub(crate) fn peek(&self, gpa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let a = gpa + i;
                self.mem
                    .get(&(a >> 12))
                    .map_or(0, |p| p[(a & 0xFFF) as usize])
            })
            .collect()
    }

    pub(crate) fn msr_events(&self) -> Vec<GhcbMsg> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Ev::Msr(m) => Some(*m),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn ghcb_exits(&self) -> Vec<u64> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Ev::Ghcb { exit, .. } => Some(*exit),
                _ => None,
            })
            .collect()
    }

    fn check(&self, gpa: u64, len: usize, c: CBit, write: bool) -> Result<(), GuestFault> {
        let first = gpa >> 12;
        let last = (gpa + len.max(1) as u64 - 1) >> 12;
        for gfn in first..=last {
            let pg = self.pg(gfn);
            let at = Gpa(gfn << 12);
            match c {
                CBit::Private => {
                    if !pg.private {
                        return Err(GuestFault::Npf {
                            gpa: at,
                            error_code: 1 << 34,
                        });
                    }
                    if !pg.validated {
                        return Err(GuestFault::Vc {
                            code: VC_PAGE_NOT_VALIDATED,
                            gpa: at,
                        });
                    }
                    if pg.vmsa && write {
                        return Err(GuestFault::Npf {
                            gpa: at,
                            error_code: (1 << 31) | 2,
                        });
                    }
                }
                CBit::Shared => {
                    if pg.private {
                        return Err(GuestFault::Npf {
                            gpa: at,
                            error_code: 2,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn msr_protocol(&mut self, v: u64) -> Result<(), GuestFault> {
        let m = GhcbMsg::decode(v);
        self.log.push(Ev::Msr(m));
        let resp = match m {
            GhcbMsg::SevInfoReq => GhcbMsg::SevInfoResp {
                max: self.k.max_ver,
                min: self.k.min_ver,
                cbit: 51,
            },
            GhcbMsg::HvFeaturesReq => GhcbMsg::HvFeaturesResp {
                features: self.k.hv_features,
            },
            GhcbMsg::RegGpaReq { gfn } => {
                if self.k.reg_fail {
                    GhcbMsg::RegGpaResp {
                        gfn: GHCB_MSR_GFN_NONE,
                    }
                } else {
                    self.registered = Some(gfn);
                    GhcbMsg::RegGpaResp { gfn }
                }
            }
            GhcbMsg::PscReq { gfn, op } => {
                if self.k.psc_msr_error == 0 {
                    self.psc_page(gfn, op);
                }
                GhcbMsg::PscResp {
                    error: self.k.psc_msr_error,
                }
            }
            GhcbMsg::ApResetHoldReq => GhcbMsg::ApResetHoldResp { value: 1 },
            GhcbMsg::TermReq { set, code } => {
                self.terminated = Some((set, code));
                self.log.push(Ev::Term { set, code });
                return Err(GuestFault::Stopped);
            }
            _ => return Ok(()),
        };
        self.msr = resp.encode();
        Ok(())
    }

    fn psc_page(&mut self, gfn: u64, op: PscOp) {
        let pg = self.pg_mut(gfn);
        match op {
            PscOp::PRIVATE if !pg.private => *pg = Pg::default(),
            PscOp::SHARED => {
                *pg = Pg {
                    private: false,
                    validated: false,
                    vmsa: false,
                }
            }
            _ => {}
        }
    }

    fn full_ghcb(&mut self) -> Result<(), GuestFault> {
        let gpa = self.msr;
        let mut g = Ghcb::read_from_bytes(&self.peek(gpa, 0x1000)).unwrap();
        self.log.push(Ev::Ghcb {
            exit: g.sw_exit_code,
            info1: g.sw_exit_info_1,
            info2: g.sw_exit_info_2,
        });
        let (info1, info2) = if self.registered != Some(gpa >> 12) {
            (EXIT_INFO1_BAD_INPUT, GhcbError::NOT_REGISTERED.0)
        } else if g.ghcb_usage != 0 {
            (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_USAGE.0)
        } else if g.protocol_version != 2 {
            (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_INPUT.0)
        } else if let Some(e) = self.k.ghcb_bad_input {
            (EXIT_INFO1_BAD_INPUT, e)
        } else if let Some(i) = self.k.ghcb_info1 {
            (i, 0)
        } else {
            match NaeExit(g.sw_exit_code) {
                NaeExit::PSC => self.psc(gpa, &mut g),
                NaeExit::AP_CREATION => self.ap_create(&g),
                NaeExit::GUEST_REQUEST | NaeExit::EXT_GUEST_REQUEST => self.guest_req(&mut g),
                NaeExit::HV_FEATURES => (0, self.k.hv_features),
                _ => (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_EVENT.0),
            }
        };
        let rbx = g.get(GhcbField::Rbx);
        let shared = g.shared_buffer;
        g.clear_valid();
        g.shared_buffer = shared;
        g.set(GhcbField::SwExitInfo1, info1);
        g.set(GhcbField::SwExitInfo2, info2);
        if let Some(r) = rbx.filter(|_| info2 == 1 << 32 && !self.k.invalid_len_no_rbx) {
            g.set(GhcbField::Rbx, r);
        }
        self.poke(gpa, g.as_bytes());
        Ok(())
    }

    fn psc(&mut self, gpa: u64, g: &mut Ghcb) -> (u64, u64) {
        if g.get(GhcbField::SwScratch) != Some(gpa + 0x800) {
            return (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_SCRATCH_AREA.0);
        }
        if self.k.psc_error != 0 {
            return (0, self.k.psc_error);
        }
        let mut d = PscDesc::read_from_bytes(&g.shared_buffer).unwrap();
        if d.hdr.end_entry as usize >= PSC_MAX_ENTRIES || d.hdr.cur_entry > d.hdr.end_entry {
            return (0, PSC_ERROR_INVALID_HDR);
        }
        let mut done = 0;
        while !self.k.psc_stall && d.hdr.cur_entry <= d.hdr.end_entry {
            if self.k.psc_per_call != 0 && done == self.k.psc_per_call {
                break;
            }
            let e = &mut d.entries[d.hdr.cur_entry as usize];
            for i in 0..e.npages() {
                let op = e.op();
                self.psc_page(e.gfn() + i, op);
            }
            self.log.push(Ev::PscDone {
                gfn: e.gfn(),
                op: e.op().0,
                huge: e.huge(),
            });
            e.set_cur_page(e.npages() as u16);
            d.hdr.cur_entry += 1;
            done += 1;
        }
        if self.k.psc_tamper_entry {
            d.entries[0] = PscEntry::new(d.entries[0].gfn() + 1, d.entries[0].op(), false);
        }
        g.shared_buffer.copy_from_slice(d.as_bytes());
        (0, 0)
    }

    fn ap_create(&mut self, g: &Ghcb) -> (u64, u64) {
        let op = (g.sw_exit_info_1 & 0xFFFF_FFFF) as u32;
        let apic = (g.sw_exit_info_1 >> 32) as u32;
        let vmsa = g.sw_exit_info_2;
        if op == ApCreateOp::DESTROY.0 {
            self.aps.retain(|a| a.0 != apic);
            return (0, 0);
        }
        let ok = g.get(GhcbField::Rax) == Some(self.k.sev_features)
            && vmsa & 0xFFF == 0
            && vmsa & 0x1F_FFFF != 0
            && self.pg(vmsa >> 12).vmsa;
        if !ok {
            return (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_INPUT.0);
        }
        self.aps.push((apic, vmsa, g.rax));
        (0, 0)
    }

    fn guest_req(&mut self, g: &mut Ghcb) -> (u64, u64) {
        let (req, resp) = (g.sw_exit_info_1, g.sw_exit_info_2);
        if req & 0xFFF != 0 || resp & 0xFFF != 0 || req == resp {
            return (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_INPUT.0);
        }
        if self.pg(req >> 12).private || self.pg(resp >> 12).private {
            return (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_INPUT.0);
        }
        if self.k.busy > 0 {
            self.k.busy -= 1;
            return (0, guest_req_info2(GuestReqVmmError::BUSY, 0));
        }
        let mut msg = self.peek(req, 0x1000);
        let hdr = MsgHeader::read(&msg).unwrap();
        let ext = g.sw_exit_code == NaeExit::EXT_GUEST_REQUEST.0;
        let is_report = hdr.msg_type == MsgType::REPORT_REQ.0;
        if ext && is_report {
            let (Some(certs), Some(npages)) = (g.get(GhcbField::Rax), g.get(GhcbField::Rbx)) else {
                return (EXIT_INFO1_BAD_INPUT, GhcbError::MISSING_INPUT.0);
            };
            let need = self.k.certs.len().div_ceil(4096) as u64;
            if need > npages {
                g.rbx = need;
                g.mark_valid(GhcbField::Rbx);
                return (0, guest_req_info2(GuestReqVmmError::INVALID_LEN, 0));
            }
            let c = self.k.certs.clone();
            self.poke(certs, &c);
        }
        if self.k.fw_error != 0 {
            return (0, u64::from(self.k.fw_error));
        }
        // Firmware: authenticate, check seqno, answer.
        let v = hdr.msg_vmpck as usize;
        let Some(key) = self.vmpck.get(v).copied() else {
            return (0, FwStatus::INVALID_PARAM.0 as u64);
        };
        let size = 0x60 + hdr.msg_size as usize;
        if guest_msg_aead::open(&key, &mut msg[..size]).is_err() {
            return (0, FwStatus::AEAD_OFLOW.0 as u64);
        }
        self.log.push(Ev::FwRequest {
            msg_type: hdr.msg_type,
            seqno: hdr.msg_seqno,
            vmpck: hdr.msg_vmpck,
        });
        if hdr.msg_seqno != self.fw_count[v] + 1 {
            return (0, FwStatus::AEAD_OFLOW.0 as u64);
        }
        let payload = &msg[0x60..size];
        let body: Vec<u8> = if is_report {
            let r = ReportReq::read_from_prefix(payload).unwrap().0;
            let mut rep = AttestationReport::new_zeroed();
            rep.version = 3;
            rep.vmpl = r.vmpl;
            rep.report_data = r.report_data;
            if self.k.report_data_wrong {
                rep.report_data[0] ^= 1;
            }
            let rsp = ReportRsp {
                status: self.k.report_status,
                report_size: 0x4A0,
                report: rep,
                ..Default::default()
            };
            rsp.as_bytes().to_vec()
        } else if hdr.msg_type == MsgType::KEY_REQ.0 {
            let mut rsp = KeyRsp::default();
            let mut input = payload.to_vec();
            input.push(self.derived_key_salt);
            input.extend_from_slice(&key);
            rsp.derived_key = softsev_crypto::hash::sha256(&input);
            rsp.as_bytes().to_vec()
        } else {
            return (0, FwStatus::INVALID_PARAM.0 as u64);
        };
        let mut rh = MsgHeader::new(
            MsgType(self.k.resp_type.unwrap_or(hdr.msg_type + 1)),
            hdr.msg_version,
            body.len() as u16,
            hdr.msg_vmpck,
            hdr.msg_seqno + 1 + self.k.resp_seqno_delta,
        );
        rh.msg_vmpck = hdr.msg_vmpck;
        let mut out = rh.as_bytes().to_vec();
        out.extend_from_slice(&body);
        guest_msg_aead::seal(&key, &mut out).unwrap();
        if self.k.resp_corrupt {
            out[0x70] ^= 1;
        }
        self.fw_count[v] += 2;
        self.poke(resp, &out);
        (0, 0)
    }
}

impl GuestPlatform for FakeHost {
    fn read(&mut self, gpa: Gpa, c: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.check(gpa.0, buf.len(), c, false)?;
        buf.copy_from_slice(&self.peek(gpa.0, buf.len()));
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, c: CBit, data: &[u8]) -> Result<(), GuestFault> {
        self.check(gpa.0, data.len(), c, true)?;
        self.poke(gpa.0, data);
        Ok(())
    }

    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault> {
        let huge = size == PageSize::Size2M;
        let status = if huge && self.k.rmp_4k_only {
            RmpStatus::FAIL_SIZEMISMATCH
        } else if !gpa.is_aligned(size.bytes()) {
            RmpStatus::FAIL_INPUT
        } else {
            let n = size.bytes() >> 12;
            let gfn = gpa.0 >> 12;
            if (0..n).any(|i| !self.pg(gfn + i).private) {
                return Err(GuestFault::Npf {
                    gpa,
                    error_code: 1 << 31,
                });
            }
            if (0..n).all(|i| self.pg(gfn + i).validated == validate) {
                RmpStatus::FAIL_UNCHANGED
            } else {
                for i in 0..n {
                    self.pg_mut(gfn + i).validated = validate;
                }
                if validate
                    && let Some(t) = self.k.tamper_after_validate
                    && (gfn..gfn + n).contains(&t)
                {
                    self.pg_mut(t).validated = false;
                }
                RmpStatus::SUCCESS
            }
        };
        self.log.push(Ev::Pvalidate {
            gpa: gpa.0,
            huge,
            validate,
            status: status.0,
        });
        Ok(status)
    }

    fn rmpadjust(&mut self, gpa: Gpa, size: PageSize, attrs: u64) -> Result<RmpStatus, GuestFault> {
        self.log.push(Ev::Rmpadjust { gpa: gpa.0, attrs });
        if size != PageSize::Size4K || !gpa.is_aligned(4096) {
            return Ok(RmpStatus::FAIL_INPUT);
        }
        let pg = self.pg(gpa.0 >> 12);
        if !pg.private || !pg.validated {
            return Ok(RmpStatus::FAIL_PERMISSION);
        }
        self.pg_mut(gpa.0 >> 12).vmsa = attrs & RMPADJUST_VMSA_PAGE_BIT != 0;
        Ok(RmpStatus::SUCCESS)
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], GuestFault> {
        if self.sev_status & SEV_STATUS_SEV_ES != 0 {
            // SEV-ES/SNP: the intercept is a #VC (host-interfaces.md §3.1).
            return Err(GuestFault::Vc {
                code: VC_CPUID,
                gpa: Gpa(0),
            });
        }
        Ok(self.cpuid.get(&(leaf, subleaf)).copied().unwrap_or([0; 4]))
    }

    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> Result<(), GuestFault> {
        // An SNP guest: the intercept is a #VC (host-interfaces.md §2.1).
        Err(GuestFault::Vc {
            code: VC_IOIO,
            gpa: Gpa(0),
        })
    }

    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        match msr {
            MSR_GHCB => Ok(self.msr),
            MSR_SEV_STATUS => Ok(self.sev_status),
            _ => Err(GuestFault::Gp),
        }
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        match msr {
            MSR_GHCB => {
                self.msr = value;
                Ok(())
            }
            _ => Err(GuestFault::Gp),
        }
    }

    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        if self.terminated.is_some() {
            return Err(GuestFault::Stopped);
        }
        if self.msr & GHCB_MSR_INFO_MASK != 0 {
            self.msr_protocol(self.msr)
        } else {
            self.full_ghcb()
        }
    }

    fn gpr(&mut self, r: Gpr) -> Result<u64, GuestFault> {
        Ok(self.gprs[r.index()])
    }

    fn set_gpr(&mut self, r: Gpr, v: u64) -> Result<(), GuestFault> {
        self.gprs[r.index()] = v;
        Ok(())
    }
}
