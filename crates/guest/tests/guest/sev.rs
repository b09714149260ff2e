//! The legacy SEV / SEV-ES boot flow against a scripted fake host: memory whose private
//! (C-bit set) view is "encrypted" with a per-address keystream, so a host write reads
//! back as garbage and a GHCB written privately is unreadable to the host; CPUID from a
//! VMM table (direct on SEV, #VC on SEV-ES); the GHCB MSR protocol and the full-GHCB
//! events an SEV-ES guest uses, as KVM answers them.

use softsev_abi::Gpa;
use softsev_abi::Guid;
use softsev_abi::ghcb::*;
use softsev_abi::rmp::RmpStatus;
use softsev_guest::error::{TERM_OVMF_UNEXPECTED_RESP, TERM_OVMF_VC_NOT_CPUID};
use softsev_guest::platform::{CBit, Gpr, GuestFault, GuestPlatform, PageSize, VC_CPUID, VC_IOIO};
use softsev_guest::secret::{
    SECRET_TABLE_GUID, SecretArea, SecretTableError, encode_secret_table, hex, parse_secret_area,
};
use softsev_guest::{
    GuestError, SecretAreaConfig, SecretStatus, SevApConfig, SevBootConfig, SevGuest, SevMode,
    sev_ap_entry, sev_boot,
};
use std::collections::HashMap;
use zerocopy::{FromBytes, IntoBytes};

pub(crate) const GHCB: u64 = 0x8000;
pub(crate) const SECRET: u64 = 0x80_C000;
pub(crate) const SECRET_SIZE: u32 = 0xC00;
const JUMP_TABLE: u64 = 0x9_F000;
const MMIO_BASE: u64 = 0xFEC0_0000;

/// Knobs of misbehaviour.
#[derive(Clone, Debug, Default)]
struct Knobs {
    max_ver: u16,
    min_ver: u16,
    /// Answer MSR-protocol CPUID with this GHCBInfo instead of 0x005.
    cpuid_resp_code: Option<u64>,
    /// Drop RBX from the full-GHCB CPUID answer's valid bitmap.
    cpuid_drop_rbx: bool,
    /// AP jump table GET answers this instead of what was set.
    jump_table_get: Option<u64>,
}

pub(crate) struct LegacyHost {
    /// Raw DRAM as the host sees it.
    pub(crate) mem: HashMap<u64, Box<[u8; 4096]>>,
    sev_status: u64,
    msr: u64,
    cpuid: HashMap<(u32, u32), [u32; 4]>,
    msrs: HashMap<u32, u64>,
    pub(crate) io_out: Vec<(u16, u8, u32)>,
    io_in_value: u32,
    mmio: HashMap<u64, u8>,
    jump_table: u64,
    terminated: Option<(u8, u8)>,
    pub(crate) msr_log: Vec<GhcbMsg>,
    pub(crate) ghcb_log: Vec<u64>,
    k: Knobs,
    /// The vCPU's general-purpose registers, indexed by `Gpr::index`.
    pub(crate) gprs: [u64; 15],
}

/// The toy memory cipher of the guest's ASID key: XOR with a keystream derived from the
/// address (what matters: without the key, bytes are unreadable; with the wrong view,
/// garbage).
fn key(a: u64) -> u8 {
    (a.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ 0xA5
}

impl LegacyHost {
    pub(crate) fn new(mode: SevMode) -> Self {
        let mut cpuid = HashMap::new();
        cpuid.insert(
            (0x8000_0000, 0),
            [0x8000_0021, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
        );
        // SME | SEV | SEV-ES; EBX: C-bit 51, 1 bit of physical address reduction.
        cpuid.insert((0x8000_001F, 0), [0xB, 51 | 1 << 6, 509, 1]);
        cpuid.insert((0x7, 0), [0, 0x219C_07AB, 0, 0]);
        cpuid.insert((0xD, 1), [0xF, 0x240, 0, 0]);
        LegacyHost {
            mem: HashMap::new(),
            sev_status: mode.sev_status_bits(),
            msr: GhcbMsg::SevInfoResp {
                max: 2,
                min: 1,
                cbit: 51,
            }
            .encode(),
            cpuid,
            msrs: HashMap::from([(0x1B, 0xFEE0_0900)]),
            io_out: Vec::new(),
            io_in_value: 0,
            mmio: HashMap::new(),
            jump_table: 0,
            terminated: None,
            msr_log: Vec::new(),
            ghcb_log: Vec::new(),
            k: Knobs {
                max_ver: 2,
                min_ver: 1,
                ..Knobs::default()
            },
            gprs: [0; 15],
        }
    }

    fn es(&self) -> bool {
        self.sev_status & SEV_STATUS_SEV_ES != 0
    }

    fn raw(&mut self, a: u64) -> &mut u8 {
        &mut self
            .mem
            .entry(a >> 12)
            .or_insert_with(|| Box::new([0; 4096]))[(a & 0xFFF) as usize]
    }

    /// Host write (no key).
    fn poke(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            *self.raw(gpa + i as u64) = *b;
        }
    }

    fn peek(&self, gpa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let a = gpa + i;
                self.mem
                    .get(&(a >> 12))
                    .map_or(0, |p| p[(a & 0xFFF) as usize])
            })
            .collect()
    }

    /// Write with the guest's key, as the firmware does for LAUNCH_SECRET.
    pub(crate) fn firmware_write(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            *self.raw(a) = *b ^ key(a);
        }
    }

    fn msr_protocol(&mut self) -> Result<(), GuestFault> {
        let m = GhcbMsg::decode(self.msr);
        self.msr_log.push(m);
        self.msr = match m {
            GhcbMsg::SevInfoReq => GhcbMsg::SevInfoResp {
                max: self.k.max_ver,
                min: self.k.min_ver,
                cbit: 51,
            }
            .encode(),
            GhcbMsg::CpuidReq { function, reg } => {
                let v = self.cpuid.get(&(function, 0)).copied().unwrap_or([0; 4]);
                let r = GhcbMsg::CpuidResp {
                    reg,
                    value: v[reg as usize],
                }
                .encode();
                match self.k.cpuid_resp_code {
                    Some(c) => r & !GHCB_MSR_INFO_MASK | c,
                    None => r,
                }
            }
            GhcbMsg::TermReq { set, code } => {
                self.terminated = Some((set, code));
                return Err(GuestFault::Stopped);
            }
            _ => self.msr,
        };
        Ok(())
    }

    fn full_ghcb(&mut self) -> Result<(), GuestFault> {
        let gpa = self.msr;
        let mut g = Ghcb::read_from_bytes(&self.peek(gpa, 0x1000)).unwrap();
        self.ghcb_log.push(g.sw_exit_code);
        let input = g;
        g.clear_valid();
        let (mut info1, mut info2) = (0, 0);
        let bad = (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_INPUT.0);
        if !(1..=2).contains(&input.protocol_version) || input.ghcb_usage != 0 {
            (info1, info2) = bad;
        } else {
            match NaeExit(input.sw_exit_code) {
                NaeExit::CPUID => {
                    let (Some(rax), Some(rcx)) =
                        (input.get(GhcbField::Rax), input.get(GhcbField::Rcx))
                    else {
                        return self.answer(gpa, g, EXIT_INFO1_BAD_INPUT, 4);
                    };
                    let v = self
                        .cpuid
                        .get(&(rax as u32, rcx as u32))
                        .copied()
                        .unwrap_or([0; 4]);
                    g.set(GhcbField::Rax, u64::from(v[0]));
                    if !self.k.cpuid_drop_rbx {
                        g.set(GhcbField::Rbx, u64::from(v[1]));
                    }
                    g.set(GhcbField::Rcx, u64::from(v[2]));
                    g.set(GhcbField::Rdx, u64::from(v[3]));
                }
                NaeExit::IOIO => {
                    let i1 = input.sw_exit_info_1;
                    let port = (i1 >> 16) as u16;
                    let size = ((i1 >> 4) & 7) as u8;
                    if i1 & 1 == 1 {
                        g.set(GhcbField::Rax, u64::from(self.io_in_value));
                    } else {
                        let v = input.get(GhcbField::Rax).unwrap_or(0);
                        self.io_out.push((port, size, v as u32));
                    }
                }
                NaeExit::MSR => {
                    let msr = input.rcx as u32;
                    if input.sw_exit_info_1 == 0 {
                        let v = self.msrs.get(&msr).copied().unwrap_or(0);
                        g.set(GhcbField::Rax, v & 0xFFFF_FFFF);
                        g.set(GhcbField::Rdx, v >> 32);
                    } else {
                        self.msrs
                            .insert(msr, input.rdx << 32 | (input.rax & 0xFFFF_FFFF));
                    }
                }
                NaeExit::MMIO_READ | NaeExit::MMIO_WRITE => {
                    let (at, len) = (input.sw_exit_info_1, input.sw_exit_info_2 as usize);
                    if input.get(GhcbField::SwScratch) != Some(gpa + 0x800) || len > 8 {
                        (info1, info2) = (EXIT_INFO1_BAD_INPUT, 3);
                    } else if input.sw_exit_code == NaeExit::MMIO_READ.0 {
                        for i in 0..len {
                            g.shared_buffer[i] =
                                self.mmio.get(&(at + i as u64)).copied().unwrap_or(0xFF);
                        }
                    } else {
                        for i in 0..len {
                            self.mmio.insert(at + i as u64, input.shared_buffer[i]);
                        }
                    }
                }
                NaeExit::AP_JUMP_TABLE => match input.sw_exit_info_1 {
                    0 => self.jump_table = input.sw_exit_info_2,
                    1 => info2 = self.k.jump_table_get.unwrap_or(self.jump_table),
                    _ => (info1, info2) = bad,
                },
                // SNP-only events from an SEV-ES guest (host-interfaces.md §2.5).
                _ => (info1, info2) = (EXIT_INFO1_BAD_INPUT, GhcbError::INVALID_EVENT.0),
            }
        }
        self.answer(gpa, g, info1, info2)
    }

    fn answer(&mut self, gpa: u64, mut g: Ghcb, info1: u64, info2: u64) -> Result<(), GuestFault> {
        g.set(GhcbField::SwExitInfo1, info1);
        g.set(GhcbField::SwExitInfo2, info2);
        self.poke(gpa, g.as_bytes());
        Ok(())
    }
}

impl GuestPlatform for LegacyHost {
    fn read(&mut self, gpa: Gpa, c: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        let raw = self.peek(gpa.0, buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa.0 + i as u64;
            *b = match c {
                CBit::Private => raw[i] ^ key(a),
                CBit::Shared => raw[i],
            };
        }
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, c: CBit, data: &[u8]) -> Result<(), GuestFault> {
        match c {
            CBit::Private => self.firmware_write(gpa.0, data),
            CBit::Shared => self.poke(gpa.0, data),
        }
        Ok(())
    }

    fn pvalidate(&mut self, _: Gpa, _: PageSize, _: bool) -> Result<RmpStatus, GuestFault> {
        Err(GuestFault::Ud)
    }

    fn rmpadjust(&mut self, _: Gpa, _: PageSize, _: u64) -> Result<RmpStatus, GuestFault> {
        Err(GuestFault::Ud)
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], GuestFault> {
        if self.es() {
            return Err(GuestFault::Vc {
                code: VC_CPUID,
                gpa: Gpa(0),
            });
        }
        Ok(self.cpuid.get(&(leaf, subleaf)).copied().unwrap_or([0; 4]))
    }

    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), GuestFault> {
        if self.es() {
            return Err(GuestFault::Vc {
                code: VC_IOIO,
                gpa: Gpa(0),
            });
        }
        // Plain SEV: the IOIO intercept reaches the host directly.
        self.io_out.push((port, size, value));
        Ok(())
    }

    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        match msr {
            MSR_SEV_STATUS => Ok(self.sev_status),
            MSR_GHCB if self.es() => Ok(self.msr),
            _ => Err(GuestFault::Gp),
        }
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        match msr {
            MSR_GHCB if self.es() => {
                self.msr = value;
                Ok(())
            }
            _ => Err(GuestFault::Gp),
        }
    }

    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        if !self.es() {
            // Without SEV-ES, VMGEXIT is a VMMCALL the guest model never issues.
            return Err(GuestFault::Ud);
        }
        if self.terminated.is_some() {
            return Err(GuestFault::Stopped);
        }
        if self.msr & GHCB_MSR_INFO_MASK != 0 {
            self.msr_protocol()
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

pub(crate) fn cfg(mode: SevMode) -> SevBootConfig {
    let mut c = SevBootConfig::new(
        mode,
        Gpa(GHCB),
        softsev_guest::MemRange::new(0x40_0000, 0x2_0000),
    );
    c.secret = Some(SecretAreaConfig {
        gpa: Gpa(SECRET),
        size: SECRET_SIZE,
    });
    c
}

fn luks_guid() -> Guid {
    Guid::parse("736869e5-84f0-4973-92ec-06879ce3da0b")
}

#[test]
fn plain_sev_boots_with_direct_cpuid_and_no_ghcb() {
    let mut h = LegacyHost::new(SevMode::Sev);
    let r = sev_boot(&mut h, &cfg(SevMode::Sev)).unwrap();
    assert_eq!(r.sev_status, SEV_STATUS_SEV);
    assert_eq!((r.cbit_pos, r.reduced_phys_bits), (51, 1));
    assert_eq!(r.ghcb_version, 0);
    assert_eq!(r.vc.cpuid_direct, 2);
    assert_eq!(r.vc.cpuid_msr + r.vc.cpuid_ghcb, 0);
    assert_eq!(r.ghcb.vmgexits, 0);
    // Nothing injected: the never-written area decrypts to noise, no table.
    assert_eq!(r.secret.kind(), "no-table");
    assert!(h.msr_log.is_empty() && h.ghcb_log.is_empty());
    // Zeros written through the guest key read as an absent secret.
    let mut h2 = LegacyHost::new(SevMode::Sev);
    h2.firmware_write(SECRET, &[0; SECRET_SIZE as usize]);
    let r2 = sev_boot(&mut h2, &cfg(SevMode::Sev)).unwrap();
    assert_eq!(r2.secret, SecretStatus::Absent);
    assert!(r2.secret.sha256_hex().is_none());
    // Plain SEV APs start normally: only their mode is checked.
    let ap = sev_ap_entry(&mut h, SevMode::Sev, None).unwrap();
    assert_eq!((ap.jump_table, ap.start), (None, None));
}

#[test]
fn sev_es_cpuid_goes_through_the_msr_protocol_then_the_ghcb() {
    let mut h = LegacyHost::new(SevMode::SevEs);
    let (mut g, r) = SevGuest::boot(&mut h, &cfg(SevMode::SevEs)).unwrap();
    assert_eq!(r.sev_status, SEV_STATUS_SEV | SEV_STATUS_SEV_ES);
    assert_eq!(r.cbit_pos, 51);
    assert_eq!(r.ghcb_version, 2);
    // Two leaves × four registers over the MSR protocol, then SEV information.
    let want: Vec<GhcbMsg> = [0x8000_0000u32, 0x8000_001F]
        .into_iter()
        .flat_map(|f| {
            [CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx]
                .map(|reg| GhcbMsg::CpuidReq { function: f, reg })
        })
        .chain([GhcbMsg::SevInfoReq])
        .collect();
    assert_eq!(h.msr_log, want);
    assert_eq!(r.vc.cpuid_msr, 2);
    // No registration, no page state change, no hypervisor-feature query.
    assert!(h.ghcb_log.is_empty());
    // The GHCB is mapped shared: the host sees the guest's request in plaintext.
    let leaf7 = g.cpuid(&mut h, 0x7, 0).unwrap();
    assert_eq!(leaf7[1], 0x219C_07AB);
    let xsave = g.cpuid(&mut h, 0xD, 1).unwrap();
    assert_eq!(xsave, [0xF, 0x240, 0, 0]);
    assert_eq!(h.ghcb_log, vec![0x72, 0x72]);
    assert_eq!(g.vc.cpuid_ghcb, 2);
    // The other #VC events.
    g.io_out(&mut h, 0x3F8, 1, u32::from(b'A')).unwrap();
    assert_eq!(h.io_out, vec![(0x3F8, 1, u32::from(b'A'))]);
    h.io_in_value = 0x1234_5678;
    assert_eq!(g.io_in(&mut h, 0x3FD, 1).unwrap(), 0x78);
    assert_eq!(g.rdmsr(&mut h, 0x1B).unwrap(), 0xFEE0_0900);
    g.wrmsr(&mut h, 0x1B, 0x1_FEE0_0D00).unwrap();
    assert_eq!(h.msrs[&0x1B], 0x1_FEE0_0D00);
    g.mmio_write(&mut h, Gpa(MMIO_BASE), &[1, 2, 3, 4]).unwrap();
    let mut b = [0u8; 4];
    g.mmio_read(&mut h, Gpa(MMIO_BASE), &mut b).unwrap();
    assert_eq!(b, [1, 2, 3, 4]);
    assert!(g.mmio_read(&mut h, Gpa(MMIO_BASE), &mut [0; 9]).is_err());
    // DMA through the bounce buffer: the device sees plaintext.
    g.dma_to_device(&mut h, 0x100, b"block").unwrap();
    assert_eq!(h.peek(0x40_0100, 5), b"block");
    h.poke(0x40_0200, b"reply");
    let mut back = [0u8; 5];
    g.dma_from_device(&mut h, 0x200, &mut back).unwrap();
    assert_eq!(&back, b"reply");
    assert!(g.dma_to_device(&mut h, 0x2_0000 - 2, b"abc").is_err());
}

#[test]
fn plain_sev_has_no_ghcb_events() {
    let mut h = LegacyHost::new(SevMode::Sev);
    let (mut g, _) = SevGuest::boot(&mut h, &cfg(SevMode::Sev)).unwrap();
    assert!(matches!(
        g.io_out(&mut h, 0x3F8, 1, 0),
        Err(GuestError::Config(_))
    ));
    assert_eq!(g.cpuid(&mut h, 0xD, 1).unwrap(), [0xF, 0x240, 0, 0]);
    // DMA works the same way.
    g.dma_to_device(&mut h, 0, b"x").unwrap();
    assert_eq!(h.peek(0x40_0000, 1), b"x");
}

#[test]
fn wrong_mode_is_refused_with_the_right_termination() {
    // SNP active in the legacy flow: "SNP features unsupported".
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.sev_status |= SEV_STATUS_SNP;
    let e = sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Terminated {
                set: 0,
                code: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(e.root(), GuestError::SevMode { .. }));
    assert_eq!(h.terminated, Some((0, 2)));
    // Launched as SEV, running SEV-ES: general termination through the MSR protocol.
    let mut h = LegacyHost::new(SevMode::SevEs);
    let e = sev_boot(&mut h, &cfg(SevMode::Sev)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Terminated {
                set: 0,
                code: 0,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(h.terminated, Some((0, 0)));
    // Launched as SEV-ES, running plain SEV: no GHCB, nobody to ask.
    let mut h = LegacyHost::new(SevMode::Sev);
    let e = sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::SevMode {
                expected: "SEV-ES",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(h.terminated, None);
    // Not SEV at all.
    let mut h = LegacyHost::new(SevMode::Sev);
    h.sev_status = 0;
    assert!(matches!(
        sev_boot(&mut h, &cfg(SevMode::Sev)),
        Err(GuestError::NotSev { sev_status: 0 })
    ));
    // An AP in the wrong mode is refused too.
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.sev_status |= SEV_STATUS_SNP;
    assert!(sev_ap_entry(&mut h, SevMode::SevEs, Some(Gpa(GHCB))).is_err());
    assert_eq!(h.terminated, Some((0, 2)));
}

#[test]
fn cpuid_checks_follow_ovmf() {
    // C-bit below 32: OVMF halts (no termination request on plain SEV).
    let mut h = LegacyHost::new(SevMode::Sev);
    h.cpuid.insert((0x8000_001F, 0), [0xB, 31, 0, 0]);
    assert!(matches!(
        sev_boot(&mut h, &cfg(SevMode::Sev)),
        Err(GuestError::CbitPosition { cbit: 31 })
    ));
    // No SEV bit in CPUID.
    let mut h = LegacyHost::new(SevMode::Sev);
    h.cpuid.insert((0x8000_001F, 0), [0x1, 51, 0, 0]);
    assert!(matches!(
        sev_boot(&mut h, &cfg(SevMode::Sev)),
        Err(GuestError::NoSevCpuid {
            leaf: 0x8000_001F,
            ..
        })
    ));
    // Max extended leaf below 0x8000_001F.
    let mut h = LegacyHost::new(SevMode::Sev);
    h.cpuid.insert((0x8000_0000, 0), [0x8000_0008, 0, 0, 0]);
    assert!(matches!(
        sev_boot(&mut h, &cfg(SevMode::Sev)),
        Err(GuestError::NoSevCpuid {
            leaf: 0x8000_0000,
            ..
        })
    ));
    // SEV-ES: a wrong MSR-protocol response code → OVMF's set 1 code 2.
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.k.cpuid_resp_code = Some(0x003);
    let e = sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap_err();
    assert!(matches!(
        e.root(),
        GuestError::VcCpuidMsr {
            function: 0x8000_0000,
            reg: 0,
            ..
        }
    ));
    assert_eq!(h.terminated, Some((1, TERM_OVMF_UNEXPECTED_RESP)));
    // A full-GHCB CPUID answer without RBX valid is refused.
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.k.cpuid_drop_rbx = true;
    let (mut g, _) = SevGuest::boot(&mut h, &cfg(SevMode::SevEs)).unwrap();
    assert!(matches!(
        g.cpuid(&mut h, 0x7, 0),
        Err(GuestError::GhcbBadResponse { .. })
    ));
}

#[test]
fn early_vc_for_a_leaf_the_msr_protocol_cannot_carry() {
    let mut h = LegacyHost::new(SevMode::SevEs);
    let mut ghcb = softsev_guest::GhcbClient::new();
    let mut st = softsev_guest::VcStats::default();
    let e = softsev_guest::vc::cpuid(&mut h, &mut ghcb, &mut st, 0x7, 1).unwrap_err();
    assert!(
        matches!(e, GuestError::VcUnhandled { early: true, .. }),
        "{e}"
    );
    assert_eq!(e.termination_reason(), Some((1, TERM_OVMF_VC_NOT_CPUID)));
    assert!(softsev_guest::vc::cpuid(&mut h, &mut ghcb, &mut st, 0xD, 0).is_err());
    assert_eq!(
        softsev_guest::vc::cpuid(&mut h, &mut ghcb, &mut st, 0x8000_001F, 0).unwrap()[1],
        51 | 1 << 6
    );
}

#[test]
fn es_version_negotiation() {
    // Version 1 only: fine for SEV-ES.
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.k.max_ver = 1;
    assert_eq!(
        sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap().ghcb_version,
        1
    );
    // 3..=4 only: protocol unsupported (set 0, code 1).
    let mut h = LegacyHost::new(SevMode::SevEs);
    (h.k.min_ver, h.k.max_ver) = (3, 4);
    let e = sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestError::Terminated {
                set: 0,
                code: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn es_aps_use_the_jump_table() {
    let mut h = LegacyHost::new(SevMode::SevEs);
    let mut c = cfg(SevMode::SevEs);
    c.aps = Some(SevApConfig {
        apic_ids: vec![1, 2, 3],
        jump_table_gpa: Gpa(JUMP_TABLE),
        start_ip: 0x9_A123,
        ghcb_base: Some(Gpa(0x1_0000)),
    });
    let r = sev_boot(&mut h, &c).unwrap();
    assert_eq!(r.ap_jump_table, Some(Gpa(JUMP_TABLE)));
    assert_eq!(h.jump_table, JUMP_TABLE);
    assert_eq!(r.aps, vec![1, 2, 3]);
    assert_eq!(
        r.ap_ghcbs,
        vec![Gpa(0x1_0000), Gpa(0x1_1000), Gpa(0x1_2000)]
    );
    // The entry is private: the host sees ciphertext, not {IP, CS}.
    assert_ne!(h.peek(JUMP_TABLE, 4), [0x3, 0, 0x12, 0x9A]);
    for (i, ghcb) in r.ap_ghcbs.iter().enumerate() {
        h.msr = GhcbMsg::SevInfoResp {
            max: 2,
            min: 1,
            cbit: 51,
        }
        .encode();
        let ap = sev_ap_entry(&mut h, SevMode::SevEs, Some(*ghcb)).unwrap();
        assert_eq!(ap.jump_table, Some(Gpa(JUMP_TABLE)), "AP {i}");
        assert_eq!(ap.start, Some(0x9_A123));
        assert_eq!(ap.ghcb_version, 2);
    }
    // A hypervisor that hands out no jump table: general termination.
    h.k.jump_table_get = Some(0);
    let e = sev_ap_entry(&mut h, SevMode::SevEs, Some(Gpa(0x1_0000))).unwrap_err();
    assert!(matches!(e.root(), GuestError::ApJumpTable { .. }));
    assert_eq!(h.terminated, Some((0, 0)));
}

#[test]
fn kernel_hashes_are_verified_on_sev() {
    use softsev_abi::kernel_hashes::PaddedSevHashTable;
    use softsev_crypto::hash::sha256;
    let blobs = softsev_guest::KernelBlobs {
        table_gpa: Gpa(0x80_CC00),
        area_size: 0x400,
        kernel: vec![0x90; 3000],
        initrd: b"initrd".to_vec(),
        cmdline: b"console=ttyS0\0".to_vec(),
    };
    let t = PaddedSevHashTable::new(
        sha256(&blobs.cmdline),
        sha256(&blobs.initrd),
        sha256(&blobs.kernel),
    );
    for mode in [SevMode::Sev, SevMode::SevEs] {
        let mut h = LegacyHost::new(mode);
        h.firmware_write(0x80_CC00, t.as_bytes());
        let mut c = cfg(mode);
        c.kernel = Some(blobs.clone());
        c.kernel_load_gpa = Some(Gpa(0x100_0000));
        assert!(sev_boot(&mut h, &c).unwrap().hashes_verified);
        let mut bad = blobs.clone();
        bad.kernel[7] ^= 1;
        c.kernel = Some(bad);
        let e = sev_boot(&mut LegacyHost::new(mode), &c).unwrap_err();
        assert!(matches!(e.root(), GuestError::KernelHashes { .. }), "{e}");
    }
}

#[test]
fn injected_secret_is_parsed_and_hashed_as_read() {
    let g2 = Guid::parse("736869e5-aaaa-4973-92ec-06879ce3da0b");
    let packet = encode_secret_table(&[(luks_guid(), b"MY-LUKS-PASSPHRASE"), (g2, b"second")]);
    assert_eq!(packet.len() % 16, 0);
    for mode in [SevMode::Sev, SevMode::SevEs] {
        let mut h = LegacyHost::new(mode);
        h.firmware_write(SECRET, &packet);
        let r = sev_boot(&mut h, &cfg(mode)).unwrap();
        let SecretStatus::Found(t) = &r.secret else {
            panic!("{:?}", r.secret)
        };
        assert_eq!(t.entries.len(), 2);
        assert_eq!(
            &t.get(&luks_guid()).unwrap().data[..],
            b"MY-LUKS-PASSPHRASE"
        );
        assert_eq!(&t.get(&g2).unwrap().data[..], b"second");
        assert_eq!(t.packet_len, packet.len());
        let want = hex(&softsev_crypto::hash::sha256(&packet));
        assert_eq!(r.secret.sha256_hex(), Some(want.as_str()));
        // The secret bytes do not appear in Debug output.
        assert!(!format!("{r:?}").contains("LUKS"));
    }
}

#[test]
fn host_writes_to_the_secret_area_read_as_garbage_and_are_reported() {
    let packet = encode_secret_table(&[(luks_guid(), b"MY-LUKS-PASSPHRASE")]);
    // The host overwrote the table with plaintext of its own: the guest decrypts it to
    // garbage and says so.
    let mut h = LegacyHost::new(SevMode::Sev);
    h.poke(SECRET, &packet);
    let r = sev_boot(&mut h, &cfg(SevMode::Sev)).unwrap();
    assert!(
        matches!(r.secret, SecretStatus::NoTable { .. }),
        "{:?}",
        r.secret
    );
    // Only the length field was overwritten: bounds checks catch it.
    let mut h = LegacyHost::new(SevMode::SevEs);
    h.firmware_write(SECRET, &packet);
    h.poke(SECRET + 16, &[0xFF; 4]);
    let r = sev_boot(&mut h, &cfg(SevMode::SevEs)).unwrap();
    assert_eq!(r.secret.kind(), "invalid");
    assert!(r.secret.sha256_hex().is_none());
}

fn area(table: &[u8]) -> Vec<u8> {
    let mut a = table.to_vec();
    a.resize(SECRET_SIZE as usize, 0);
    a
}

fn header(len: u32) -> Vec<u8> {
    let mut v = SECRET_TABLE_GUID.0.to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v
}

#[test]
fn malformed_tables_are_named_errors() {
    use SecretTableError as E;
    // All zero: absent.
    assert_eq!(parse_secret_area(&[0; 64]), Ok(SecretArea::Absent));
    assert_eq!(parse_secret_area(&[]), Ok(SecretArea::Absent));
    // Short: not even a header.
    assert_eq!(
        parse_secret_area(&SECRET_TABLE_GUID.0[..10]),
        Err(E::AreaTooShort { size: 10 })
    );
    // Header length below the header.
    assert_eq!(
        parse_secret_area(&area(&header(19))),
        Err(E::TableTooShort { len: 19 })
    );
    // Length overflow: past the area, and at the top of u32 (padding must not wrap).
    assert!(matches!(
        parse_secret_area(&area(&header(SECRET_SIZE + 1))),
        Err(E::TableOverflow { .. })
    ));
    assert!(matches!(
        parse_secret_area(&area(&header(u32::MAX))),
        Err(E::TableOverflow {
            packet: 0x1_0000_0000,
            ..
        })
    ));
    // Padding that does not fit: len 0xBF9 rounds to 0xC00 (fits), 0xC01 does not.
    let mut t = header(0xBF9);
    t.extend_from_slice(&[0; 16]);
    t.extend_from_slice(&(0xBF9u32 - 20).to_le_bytes());
    assert!(parse_secret_area(&area(&t)).is_ok());
    // Entry past the end of the table.
    let mut t = header(20 + 30);
    t.extend_from_slice(&luks_guid().0);
    t.extend_from_slice(&31u32.to_le_bytes());
    assert_eq!(
        parse_secret_area(&area(&t)),
        Err(E::EntryPastEnd {
            index: 0,
            offset: 20,
            len: 31,
            left: 30
        })
    );
    // Entry shorter than its header (a zero length would loop forever).
    for len in [0u32, 19] {
        let mut t = header(20 + 20);
        t.extend_from_slice(&luks_guid().0);
        t.extend_from_slice(&len.to_le_bytes());
        assert_eq!(
            parse_secret_area(&area(&t)),
            Err(E::EntryTooShort {
                index: 0,
                offset: 20,
                len
            })
        );
    }
    // Second entry past the end.
    let mut t = encode_secret_table(&[(luks_guid(), b"abc")]).to_vec();
    t.truncate(43);
    let total = 43 + 20 + 5;
    t[16..20].copy_from_slice(&(total as u32).to_le_bytes());
    t.extend_from_slice(&luks_guid().0);
    t.extend_from_slice(&100u32.to_le_bytes());
    t.extend_from_slice(&[7; 5]);
    assert!(matches!(
        parse_secret_area(&area(&t)),
        Err(E::EntryPastEnd { index: 1, .. })
    ));
    // Not the table GUID.
    let mut t = area(&header(40));
    t[3] ^= 0x80;
    assert!(matches!(parse_secret_area(&t), Err(E::NoTableGuid { .. })));
    // Deleted entries (null GUID) are skipped; a short tail is left unparsed.
    let mut t = encode_secret_table(&[(Guid([0; 16]), b"gone"), (luks_guid(), b"kept")]).to_vec();
    let len = u32::from_le_bytes(t[16..20].try_into().unwrap()) + 7;
    t[16..20].copy_from_slice(&len.to_le_bytes());
    t.resize(len as usize, 0x33);
    let SecretArea::Table(p) = parse_secret_area(&area(&t)).unwrap() else {
        panic!()
    };
    assert_eq!((p.entries.len(), p.deleted, p.unparsed), (1, 1, 7));
    assert!(
        E::EntryPastEnd {
            index: 1,
            offset: 2,
            len: 3,
            left: 4
        }
        .to_string()
        .contains("runs past the table end")
    );
}

#[test]
fn garbage_areas_never_panic() {
    // What a host write leaves: pseudo-random bytes, with and without a valid header.
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let n = (next() % 0x400) as usize;
        let mut a: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if i % 2 == 0 && a.len() >= 20 {
            a[..16].copy_from_slice(&SECRET_TABLE_GUID.0);
        }
        softsev_guest::fuzz::fuzz_secret_table(&a);
    }
}
