//! Fuzz entry points (stable Rust: plain functions, driven by `fuzz/` targets and by a
//! corpus-replay test). The guest must survive any hypervisor: [`fuzz_boot`] boots
//! against a host whose every answer (MSR values, GHCB fields, PSC progress,
//! instruction results, faults, shared-memory contents) is derived from the input,
//! starting from a plausible answer and corrupting it where the input says so.
//! [`fuzz_workload`] runs the migration workload there and lets the host rewrite the
//! guest's memory and registers before the post-move check.

use crate::boot::{AcceptMode, ApConfig, BootConfig, boot};
use crate::memory::MemRange;
use crate::platform::{
    CBit, Gpr, GuestFault, GuestPlatform, PageSize, VC_CPUID, VC_IOIO, VC_PAGE_NOT_VALIDATED,
};
use crate::sev_boot::SecretAreaConfig;
use crate::workload::{WorkloadConfig, verify_after_move, workload_init, workload_step};
use softsev_abi::Gpa;
use softsev_abi::ghcb::{
    GHCB_MSR_INFO_MASK, Ghcb, GhcbField, GhcbMsg, MSR_GHCB, MSR_SEV_STATUS, PscDesc,
};
use softsev_abi::guest_msg::{KeyRsp, MsgHeader, MsgType, ReportReq, ReportRsp};
use softsev_abi::rmp::RmpStatus;
use softsev_abi::secrets::SecretsPage;
use softsev_crypto::guest_msg_aead;
use std::collections::HashMap;
use zerocopy::{FromBytes, IntoBytes};

pub use crate::hashes::fuzz_hash_table;
pub use crate::msg::fuzz_cert_table;
pub use crate::secret::fuzz_secret_table;

/// The VMPCKs the hostile host's secrets page holds (it plays the firmware too).
const FUZZ_VMPCK: [u8; 32] = [0x5A; 32];
/// Where [`fuzz_boot`] expects the secrets page.
const FUZZ_SECRETS_GPA: u64 = 0x7000;

/// Upper bound of platform calls per run (then the vCPU is stopped).
const MAX_STEPS: usize = 20_000;

/// A host driven by fuzz input.
#[derive(Debug)]
pub struct HostilePlatform<'a> {
    data: &'a [u8],
    pos: usize,
    steps: usize,
    msr: u64,
    mem: HashMap<u64, Box<[u8; 4096]>>,
    bounded: bool,
    /// The register file: the guest's own (an SNP guest's registers live in its
    /// encrypted VMSA, out of the host's reach).
    gprs: [u64; 15],
    /// SEV_STATUS fixed by [`HostilePlatform::with_sev_status`] (else chosen by the
    /// input: SNP, now and then SEV-ES).
    sev_status: Option<u64>,
}

impl<'a> HostilePlatform<'a> {
    /// A host that answers from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        let mut p = HostilePlatform {
            data,
            pos: 0,
            steps: 0,
            msr: 0,
            mem: HashMap::new(),
            bounded: true,
            gprs: [0; 15],
            sev_status: None,
        };
        let secrets = SecretsPage::new(3, false, 0, [0; 16], &[FUZZ_VMPCK; 4], 0);
        p.poke(FUZZ_SECRETS_GPA, secrets.as_bytes());
        p
    }

    /// A host that answers every request plausibly and never stops the vCPU (no
    /// input, no step limit): a null host for benchmarks of the guest side.
    pub fn cooperative() -> HostilePlatform<'static> {
        let mut p = HostilePlatform::new(&[]);
        p.bounded = false;
        p
    }

    /// The same host for a guest launched with SEV_STATUS `sev_status` (e.g. 1 for
    /// plain SEV, 3 for SEV-ES): RDMSR answers it, and on plain SEV (bit 1 clear) OUT
    /// is intercepted directly instead of raising #VC.
    pub fn with_sev_status(mut self, sev_status: u64) -> Self {
        self.sev_status = Some(sev_status);
        self
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | u64::from(self.byte());
        }
        v
    }

    fn step(&mut self) -> Result<(), GuestFault> {
        self.steps += 1;
        if self.bounded && (self.steps > MAX_STEPS || self.pos > self.data.len() + 4096) {
            return Err(GuestFault::Stopped);
        }
        Ok(())
    }

    /// 1 in 16 (by input) accesses fault.
    fn maybe_fault(&mut self, gpa: Gpa) -> Result<(), GuestFault> {
        match self.byte() {
            0xF0 => Err(GuestFault::Vc {
                code: VC_PAGE_NOT_VALIDATED,
                gpa,
            }),
            0xF1 => Err(GuestFault::Npf { gpa, error_code: 2 }),
            0xF2 => Err(GuestFault::Gp),
            _ => Ok(()),
        }
    }

    fn peek(&self, gpa: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa.wrapping_add(i as u64);
            *b = self
                .mem
                .get(&(a >> 12))
                .map_or(0, |p| p[(a & 0xFFF) as usize]);
        }
    }

    fn poke(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = gpa.wrapping_add(i as u64);
            if self.mem.len() > 4096 && !self.mem.contains_key(&(a >> 12)) {
                continue;
            }
            self.mem
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0; 4096]))[(a & 0xFFF) as usize] = *b;
        }
    }

    fn msr_answer(&mut self) {
        let plausible = match GhcbMsg::decode(self.msr) {
            GhcbMsg::SevInfoReq => GhcbMsg::SevInfoResp {
                max: 2,
                min: 1,
                cbit: 51,
            },
            GhcbMsg::HvFeaturesReq => GhcbMsg::HvFeaturesResp { features: 3 },
            GhcbMsg::RegGpaReq { gfn } => GhcbMsg::RegGpaResp { gfn },
            GhcbMsg::PscReq { .. } => GhcbMsg::PscResp { error: 0 },
            _ => GhcbMsg::Unknown(self.msr),
        };
        self.msr = match self.byte() {
            0xE0..=0xEF => self.u64(),
            0xF0..=0xFF => plausible.encode() ^ (1 << (self.byte() % 64)),
            _ => plausible.encode(),
        };
    }

    fn ghcb_answer(&mut self) {
        let gpa = self.msr;
        let mut page = [0u8; 4096];
        self.peek(gpa, &mut page);
        let Ok(mut g) = Ghcb::read_from_bytes(&page) else {
            return;
        };
        // Plausible: success, PSC fully processed.
        if let Ok(mut d) = PscDesc::read_from_bytes(&g.shared_buffer)
            && g.sw_exit_code == 0x8000_0010
        {
            for e in d.entries.iter_mut().take(usize::from(d.hdr.end_entry) + 1) {
                e.set_cur_page(e.npages() as u16);
            }
            d.hdr.cur_entry = d.hdr.end_entry.saturating_add(1);
            g.shared_buffer.copy_from_slice(d.as_bytes());
        }
        if g.sw_exit_code == 0x8000_0011 || g.sw_exit_code == 0x8000_0012 {
            self.firmware(g.sw_exit_info_1, g.sw_exit_info_2);
        }
        g.clear_valid();
        g.set(GhcbField::SwExitInfo1, 0);
        g.set(GhcbField::SwExitInfo2, 0);
        // Corruptions chosen by the input.
        let n = self.byte() % 8;
        for _ in 0..n {
            match self.byte() % 7 {
                6 => {
                    // Certificate buffer too small.
                    g.set(GhcbField::SwExitInfo2, 1 << 32);
                    let v = u64::from(self.byte() % 24);
                    g.set(GhcbField::Rbx, v);
                }
                0 => {
                    let v = self.u64();
                    g.set(GhcbField::SwExitInfo1, v % 4);
                }
                1 => {
                    let v = self.u64();
                    g.set(GhcbField::SwExitInfo2, v);
                }
                2 => {
                    let v = self.u64() % 64;
                    g.set(GhcbField::Rbx, v);
                }
                3 => {
                    let i = usize::from(self.byte()) * 8 % g.shared_buffer.len();
                    let v = self.byte();
                    if let Some(b) = g.shared_buffer.get_mut(i) {
                        *b = v;
                    }
                }
                4 => {
                    let at = (self.u64() & 0xFFF) as usize;
                    let v = self.byte();
                    let bytes = g.as_mut_bytes();
                    if let Some(b) = bytes.get_mut(at) {
                        *b = v;
                    }
                }
                _ => {
                    // Scribble on the response page.
                    let resp = g.sw_exit_info_2;
                    let v = self.byte();
                    let off = u64::from(self.byte());
                    self.poke(resp.wrapping_add(off), &[v]);
                }
            }
        }
        self.poke(gpa, g.as_bytes());
    }
}

impl HostilePlatform<'_> {
    /// Answer a guest message as a cooperative firmware would (the corruptions come
    /// afterwards).
    fn firmware(&mut self, req: u64, resp: u64) {
        let mut msg = vec![0u8; 4096];
        self.peek(req, &mut msg);
        let Some(hdr) = MsgHeader::read(&msg) else {
            return;
        };
        let size = 0x60 + usize::from(hdr.msg_size);
        let Some(m) = msg.get_mut(..size) else {
            return;
        };
        if guest_msg_aead::open(&FUZZ_VMPCK, m).is_err() {
            return;
        }
        let body: Vec<u8> = match MsgType(hdr.msg_type) {
            MsgType::REPORT_REQ => {
                let Ok((r, _)) = ReportReq::read_from_prefix(&msg[0x60..]) else {
                    return;
                };
                let mut rsp = ReportRsp {
                    report_size: 0x4A0,
                    ..ReportRsp::default()
                };
                rsp.report.report_data = r.report_data;
                rsp.report.vmpl = r.vmpl;
                rsp.as_bytes().to_vec()
            }
            MsgType::KEY_REQ => KeyRsp::default().as_bytes().to_vec(),
            _ => return,
        };
        let rh = MsgHeader::new(
            MsgType(hdr.msg_type.wrapping_add(1)),
            hdr.msg_version,
            body.len() as u16,
            hdr.msg_vmpck,
            hdr.msg_seqno.wrapping_add(1),
        );
        let mut out = rh.as_bytes().to_vec();
        out.extend_from_slice(&body);
        if guest_msg_aead::seal(&FUZZ_VMPCK, &mut out).is_ok() {
            self.poke(resp, &out);
        }
    }
}

impl GuestPlatform for HostilePlatform<'_> {
    fn read(&mut self, gpa: Gpa, _c: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.step()?;
        self.maybe_fault(gpa)?;
        self.peek(gpa.0, buf);
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, _c: CBit, data: &[u8]) -> Result<(), GuestFault> {
        self.step()?;
        self.maybe_fault(gpa)?;
        self.poke(gpa.0, data);
        Ok(())
    }

    fn pvalidate(&mut self, gpa: Gpa, _s: PageSize, _v: bool) -> Result<RmpStatus, GuestFault> {
        self.step()?;
        self.maybe_fault(gpa)?;
        Ok(match self.byte() {
            0xE0..=0xFF => RmpStatus(u32::from(self.byte() % 8)),
            0xD0..=0xDF => RmpStatus::FAIL_SIZEMISMATCH,
            _ => RmpStatus::SUCCESS,
        })
    }

    fn rmpadjust(&mut self, gpa: Gpa, _s: PageSize, _a: u64) -> Result<RmpStatus, GuestFault> {
        self.step()?;
        self.maybe_fault(gpa)?;
        Ok(RmpStatus(u32::from(self.byte() / 0xF0)))
    }

    fn cpuid(&mut self, _leaf: u32, _subleaf: u32) -> Result<[u32; 4], GuestFault> {
        self.step()?;
        // An SEV-ES/SNP guest's CPUID is intercepted as #VC (host-interfaces.md §3.1).
        Err(GuestFault::Vc {
            code: VC_CPUID,
            gpa: Gpa(0),
        })
    }

    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> Result<(), GuestFault> {
        self.step()?;
        if self.sev_status.is_some_and(|s| s & 2 == 0) {
            // Plain SEV: the host intercepts the OUT itself.
            return Ok(());
        }
        // SEV-ES / SNP: port I/O is intercepted as #VC (host-interfaces.md §2.1).
        Err(GuestFault::Vc {
            code: VC_IOIO,
            gpa: Gpa(0),
        })
    }

    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        self.step()?;
        match msr {
            MSR_GHCB => Ok(self.msr),
            MSR_SEV_STATUS => Ok(match self.sev_status {
                Some(v) => v,
                None => {
                    if self.byte() == 0xFF {
                        3
                    } else {
                        7
                    }
                }
            }),
            _ => Err(GuestFault::Gp),
        }
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        self.step()?;
        if msr != MSR_GHCB {
            return Err(GuestFault::Gp);
        }
        self.msr = value;
        Ok(())
    }

    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        self.step()?;
        if self.msr & GHCB_MSR_INFO_MASK != 0 {
            if matches!(GhcbMsg::decode(self.msr), GhcbMsg::TermReq { .. }) {
                return Err(GuestFault::Stopped);
            }
            self.msr_answer();
        } else {
            self.ghcb_answer();
        }
        Ok(())
    }

    fn gpr(&mut self, r: Gpr) -> Result<u64, GuestFault> {
        self.step()?;
        Ok(self.gprs[r.index()])
    }

    fn set_gpr(&mut self, r: Gpr, v: u64) -> Result<(), GuestFault> {
        self.step()?;
        self.gprs[r.index()] = v;
        Ok(())
    }
}

/// Fuzz entry point: boot a small guest against a hostile host. Must never panic;
/// a boot that succeeds must have produced a full report.
pub fn fuzz_boot(data: &[u8]) {
    let mut cfg = BootConfig::new(
        Gpa(0x8000),
        Gpa(FUZZ_SECRETS_GPA),
        vec![MemRange::new(0, 0x60_0000)],
        MemRange::new(0x40_0000, 0x20_0000),
        [0x11; 64],
    );
    cfg.prevalidated = vec![MemRange::new(0, 0x1_0000)];
    cfg.accept = if data.first().is_some_and(|b| b & 1 == 1) {
        AcceptMode::Full
    } else {
        AcceptMode::Lazy {
            eager_bytes: 0x10_0000,
        }
    };
    cfg.aps = Some(ApConfig {
        apic_ids: vec![1, 2],
        vmsa_base: Gpa(0x20_0000),
        start_ip: 0x9_A000,
    });
    let mut p = HostilePlatform::new(data);
    if let Ok(r) = boot(&mut p, &cfg) {
        assert_eq!(r.report.len(), 0x4A0);
        assert!(r.certs.len() >= 24);
    }
}

/// Fuzz entry point: the migration workload ([`crate::workload`]) on a hostile host
/// that also rewrites pages, ledger and registers before the post-move check. Byte 0
/// picks the mode (bit 0: SEV-ES), the batch size (bits 3:1, plus 1) and the number of
/// steps (bits 7:4); the rest drives the host. Must never panic; a check that completes
/// must be self-consistent.
pub fn fuzz_workload(data: &[u8]) {
    let (mode, rest) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    let es = mode & 1 == 1;
    let mut p = HostilePlatform::new(rest).with_sev_status(if es { 3 } else { 1 });
    let cfg = fuzz_workload_config(es, u32::from(mode >> 1 & 7) + 1);
    let _ = workload_init(&mut p, &cfg);
    for _ in 0..(mode >> 4) {
        let _ = workload_step(&mut p, &cfg);
    }
    // The host's own writes: raw bytes in the pages or the ledger, and registers (a
    // plain SEV host can set them).
    for _ in 0..p.byte() % 8 {
        let pick = p.byte();
        let off = u64::from(u16::from_be_bytes([p.byte(), p.byte()]));
        let v = p.byte();
        let at = if pick & 1 == 0 {
            cfg.pages.start.0 + off % cfg.pages.len()
        } else {
            cfg.ledger.0 + off % cfg.ledger_len()
        };
        p.poke(at, &[v]);
        if pick & 0x80 != 0 {
            let r = Gpr::ALL[usize::from(pick >> 1) % Gpr::ALL.len()];
            p.gprs[r.index()] = p.u64();
        }
    }
    let secret = SecretAreaConfig {
        gpa: Gpa(0x30_0000),
        size: 0x100,
    };
    if let Ok(m) = verify_after_move(&mut p, &cfg, Some(&secret)) {
        assert!(m.pages_checked <= cfg.page_count());
        assert!(m.pages_bad <= m.pages_checked);
        assert_eq!(
            m.first_bad.len() as u64,
            m.pages_bad.min(crate::workload::FIRST_BAD_MAX as u64)
        );
        assert!(m.first_bad.windows(2).all(|w| w[0] < w[1]));
    }
}

/// The layout [`fuzz_workload`] uses: 4 pages at 1 MiB, the ledger at 2 MiB, the GHCB
/// (SEV-ES) at 0x8000, exit port 0x510.
pub fn fuzz_workload_config(es: bool, pages_per_batch: u32) -> WorkloadConfig {
    let mut cfg = WorkloadConfig::new(
        MemRange::new(0x10_0000, 4 * 0x1000),
        Gpa(0x20_0000),
        [0x77; 32],
    );
    cfg.pages_per_batch = pages_per_batch;
    cfg.exit_port = 0x510;
    if es {
        cfg.ghcb = Some(Gpa(0x8000));
    }
    cfg
}
