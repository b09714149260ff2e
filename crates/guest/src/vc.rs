//! The #VC handler of an SEV-ES guest: intercepted instructions (CPUID, IN/OUT, RDMSR /
//! WRMSR, MMIO) turned into GHCB requests (host-interfaces.md §2.4–2.5, §6 "#VC handling
//! basics"; Linux `vc_handle_cpuid`, `vc_handle_ioio`, `vc_handle_msr`,
//! `vc_handle_mmio`; OVMF `AmdSev.asm` for the reset-vector CPUID handler).
//!
//! Before a GHCB exists only CPUID is possible, through the MSR protocol (request
//! 0x004, one register per exchange, subleaf implicitly 0). Leaves the MSR protocol
//! cannot carry — a non-zero subleaf, or leaf 0xD whose answer depends on XCR0 — need
//! the full GHCB (NAE 0x72 with RAX, RCX and XCR0). Every answer is read once out of
//! the shared page and must mark the registers it returns valid (Linux refuses a CPUID
//! answer without RAX..RDX valid).

use crate::error::{GuestError, access_fault};
use crate::ghcb::GhcbClient;
use crate::platform::{GuestFault, GuestPlatform, VC_CPUID};
use softsev_abi::Gpa;
use softsev_abi::ghcb::{CpuidReg, GHCB_SHARED_BUF_OFFSET, GhcbField, GhcbMsg, NaeExit};

/// XCR0 the model's #VC handler reports for CPUID (x87 only: the guest model enables no
/// XSAVE state components; Linux sends 1 when CR4.OSXSAVE is clear).
pub const VC_XCR0: u64 = 1;
/// Largest MMIO access through the GHCB (version 2 rule, host-interfaces.md §2.3).
pub const MMIO_MAX_LEN: usize = 8;

/// IOIO EXITINFO1 bit 0: IN (AMD APM vol. 2 §15.10.2).
pub const IOIO_TYPE_IN: u64 = 1 << 0;
/// IOIO EXITINFO1 bits 6:4: operand size, one-hot (bit 4 = 8-bit).
pub const IOIO_SIZE_SHIFT: u32 = 4;
/// IOIO EXITINFO1 bit 9: 64-bit address size (a 64-bit guest's IN/OUT).
pub const IOIO_ADDR_64: u64 = 1 << 9;

/// Counters of the #VC work.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct VcStats {
    /// CPUIDs answered through the MSR protocol (four exchanges each).
    pub cpuid_msr: u64,
    /// CPUIDs answered through the full GHCB.
    pub cpuid_ghcb: u64,
    /// CPUIDs the host answered directly (plain SEV).
    pub cpuid_direct: u64,
    /// IN/OUT events.
    pub ioio: u64,
    /// RDMSR/WRMSR events.
    pub msr: u64,
    /// MMIO events.
    pub mmio: u64,
}

/// Whether leaf/subleaf can go through the MSR protocol (subleaf 0, no XCR0 input).
pub fn msr_protocol_can_carry(leaf: u32, subleaf: u32) -> bool {
    subleaf == 0 && leaf != 0xD
}

/// CPUID through the MSR protocol, as the reset-vector #VC handler does it: one
/// exchange per register, each answer must be a CPUID response for that register.
pub fn cpuid_msr<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    leaf: u32,
) -> Result<[u32; 4], GuestError> {
    let mut out = [0u32; 4];
    for (i, reg) in [CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx]
        .into_iter()
        .enumerate()
    {
        let v = ghcb.msr_call(
            p,
            GhcbMsg::CpuidReq {
                function: leaf,
                reg,
            },
        )?;
        match GhcbMsg::decode(v) {
            GhcbMsg::CpuidResp { reg: r, value } if r == reg => out[i] = value,
            _ => {
                return Err(GuestError::VcCpuidMsr {
                    function: leaf,
                    reg: reg as u8,
                    response: v,
                });
            }
        }
    }
    Ok(out)
}

/// CPUID through the full GHCB (NAE 0x72): RAX = leaf, RCX = subleaf, XCR0; the answer
/// must mark RAX, RBX, RCX and RDX valid.
pub fn cpuid_ghcb<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    leaf: u32,
    subleaf: u32,
) -> Result<[u32; 4], GuestError> {
    let mut req = ghcb.request(NaeExit::CPUID, 0, 0);
    req.set(GhcbField::Rax, u64::from(leaf));
    req.set(GhcbField::Rcx, u64::from(subleaf));
    req.set(GhcbField::Xcr0, VC_XCR0);
    let resp = ghcb.call(p, &req)?;
    let mut out = [0u32; 4];
    for (i, f) in [
        GhcbField::Rax,
        GhcbField::Rbx,
        GhcbField::Rcx,
        GhcbField::Rdx,
    ]
    .into_iter()
    .enumerate()
    {
        out[i] = resp.get(f).ok_or(GuestError::GhcbBadResponse {
            exit: NaeExit::CPUID,
            what: "CPUID answer without RAX, RBX, RCX and RDX marked valid",
            value: u64::from(leaf),
        })? as u32;
    }
    Ok(out)
}

/// CPUID as guest code executes it: the host's answer on plain SEV; on SEV-ES the #VC
/// (error code 0x72) is handled through the full GHCB when `ghcb` has one, else through
/// the MSR protocol for leaves it can carry. Any other fault, or a #VC with another
/// code, is fatal.
pub fn cpuid<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    stats: &mut VcStats,
    leaf: u32,
    subleaf: u32,
) -> Result<[u32; 4], GuestError> {
    match p.cpuid(leaf, subleaf) {
        Ok(v) => {
            stats.cpuid_direct += 1;
            Ok(v)
        }
        Err(GuestFault::Vc { code: VC_CPUID, .. }) => {
            if ghcb.ghcb_gpa().is_some() {
                stats.cpuid_ghcb += 1;
                cpuid_ghcb(p, ghcb, leaf, subleaf)
            } else if msr_protocol_can_carry(leaf, subleaf) {
                stats.cpuid_msr += 1;
                cpuid_msr(p, ghcb, leaf)
            } else {
                Err(GuestError::VcUnhandled {
                    code: VC_CPUID,
                    early: true,
                    what: format!(
                        "CPUID {leaf:#x} subleaf {subleaf:#x} needs the full GHCB (the MSR protocol carries subleaf 0 without XCR0)"
                    ),
                })
            }
        }
        Err(GuestFault::Vc { code, .. }) => Err(GuestError::VcUnhandled {
            code,
            early: ghcb.ghcb_gpa().is_none(),
            what: format!("#VC {code:#x} raised by CPUID {leaf:#x}"),
        }),
        Err(f) => Err(access_fault("CPUID", Gpa(0), f)),
    }
}

fn need_ghcb(ghcb: &GhcbClient, exit: NaeExit, code: u64) -> Result<(), GuestError> {
    if ghcb.ghcb_gpa().is_none() {
        return Err(GuestError::VcUnhandled {
            code,
            early: true,
            what: format!("{exit:?} needs a GHCB"),
        });
    }
    Ok(())
}

fn io_size(size: u8) -> Result<u64, GuestError> {
    match size {
        1 | 2 | 4 => Ok(u64::from(size) << IOIO_SIZE_SHIFT),
        _ => Err(GuestError::Config(format!(
            "I/O access size {size} (1, 2 or 4)"
        ))),
    }
}

/// The IOIO EXITINFO1 of a (non-string) IN/OUT of `size` bytes at `port`.
pub fn ioio_info1(port: u16, size: u8, is_in: bool) -> Result<u64, GuestError> {
    Ok(
        u64::from(port) << 16
            | IOIO_ADDR_64
            | io_size(size)?
            | if is_in { IOIO_TYPE_IN } else { 0 },
    )
}

/// OUT of `size` bytes of `value` to `port` (NAE 0x7B, RAX = data).
pub fn io_out<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    port: u16,
    size: u8,
    value: u32,
) -> Result<(), GuestError> {
    need_ghcb(ghcb, NaeExit::IOIO, NaeExit::IOIO.0)?;
    let mut req = ghcb.request(NaeExit::IOIO, ioio_info1(port, size, false)?, 0);
    req.set(GhcbField::Rax, u64::from(value));
    ghcb.call(p, &req)?;
    Ok(())
}

/// IN of `size` bytes from `port` (NAE 0x7B); the answer must mark RAX valid.
pub fn io_in<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    port: u16,
    size: u8,
) -> Result<u32, GuestError> {
    need_ghcb(ghcb, NaeExit::IOIO, NaeExit::IOIO.0)?;
    let req = ghcb.request(NaeExit::IOIO, ioio_info1(port, size, true)?, 0);
    let resp = ghcb.call(p, &req)?;
    let rax = resp
        .get(GhcbField::Rax)
        .ok_or(GuestError::GhcbBadResponse {
            exit: NaeExit::IOIO,
            what: "IN answer without RAX marked valid",
            value: u64::from(port),
        })?;
    let mask = (1u64 << (u32::from(size) * 8)) - 1;
    Ok((rax & mask) as u32)
}

/// RDMSR of an intercepted MSR (NAE 0x7C, EXITINFO1 0, RCX = MSR); EDX:EAX come back
/// in RDX and RAX, both of which must be valid.
pub fn rdmsr<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    msr: u32,
) -> Result<u64, GuestError> {
    need_ghcb(ghcb, NaeExit::MSR, NaeExit::MSR.0)?;
    let mut req = ghcb.request(NaeExit::MSR, 0, 0);
    req.set(GhcbField::Rcx, u64::from(msr));
    let resp = ghcb.call(p, &req)?;
    let (Some(lo), Some(hi)) = (resp.get(GhcbField::Rax), resp.get(GhcbField::Rdx)) else {
        return Err(GuestError::GhcbBadResponse {
            exit: NaeExit::MSR,
            what: "RDMSR answer without RAX and RDX marked valid",
            value: u64::from(msr),
        });
    };
    Ok((hi & 0xFFFF_FFFF) << 32 | (lo & 0xFFFF_FFFF))
}

/// WRMSR of an intercepted MSR (NAE 0x7C, EXITINFO1 1, RCX, RAX = low, RDX = high).
pub fn wrmsr<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    msr: u32,
    value: u64,
) -> Result<(), GuestError> {
    need_ghcb(ghcb, NaeExit::MSR, NaeExit::MSR.0)?;
    let mut req = ghcb.request(NaeExit::MSR, 1, 0);
    req.set(GhcbField::Rcx, u64::from(msr));
    req.set(GhcbField::Rax, value & 0xFFFF_FFFF);
    req.set(GhcbField::Rdx, value >> 32);
    ghcb.call(p, &req)?;
    Ok(())
}

fn mmio_check(gpa: Gpa, len: usize) -> Result<(), GuestError> {
    if len == 0 || len > MMIO_MAX_LEN {
        return Err(GuestError::Config(format!(
            "MMIO access of {len} bytes at {gpa} (1..={MMIO_MAX_LEN})"
        )));
    }
    Ok(())
}

/// MMIO read (NAE 0x8000_0001: EXITINFO1 = GPA, EXITINFO2 = length, the scratch area in
/// the GHCB's shared buffer receives the data).
pub fn mmio_read<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    gpa: Gpa,
    buf: &mut [u8],
) -> Result<(), GuestError> {
    mmio_check(gpa, buf.len())?;
    need_ghcb(ghcb, NaeExit::MMIO_READ, 0x400)?;
    let g = ghcb.ghcb_gpa().unwrap_or(Gpa(0));
    let mut req = ghcb.request(NaeExit::MMIO_READ, gpa.raw(), buf.len() as u64);
    req.set(
        GhcbField::SwScratch,
        g.raw() + GHCB_SHARED_BUF_OFFSET as u64,
    );
    let resp = ghcb.call(p, &req)?;
    buf.copy_from_slice(&resp.shared_buffer[..buf.len()]);
    Ok(())
}

/// MMIO write (NAE 0x8000_0002; the data in the scratch area).
pub fn mmio_write<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    gpa: Gpa,
    data: &[u8],
) -> Result<(), GuestError> {
    mmio_check(gpa, data.len())?;
    need_ghcb(ghcb, NaeExit::MMIO_WRITE, 0x400)?;
    let g = ghcb.ghcb_gpa().unwrap_or(Gpa(0));
    let mut req = ghcb.request(NaeExit::MMIO_WRITE, gpa.raw(), data.len() as u64);
    req.shared_buffer[..data.len()].copy_from_slice(data);
    req.set(
        GhcbField::SwScratch,
        g.raw() + GHCB_SHARED_BUF_OFFSET as u64,
    );
    ghcb.call(p, &req)?;
    Ok(())
}

/// AP jump table SET (NAE 0x8000_0005, EXITINFO1 0, EXITINFO2 = GPA).
pub fn ap_jump_table_set<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
    gpa: Gpa,
) -> Result<(), GuestError> {
    need_ghcb(ghcb, NaeExit::AP_JUMP_TABLE, 0)?;
    let req = ghcb.request(NaeExit::AP_JUMP_TABLE, 0, gpa.raw());
    ghcb.call(p, &req)?;
    Ok(())
}

/// AP jump table GET (NAE 0x8000_0005, EXITINFO1 1): the GPA comes back in EXITINFO2.
pub fn ap_jump_table_get<P: GuestPlatform + ?Sized>(
    p: &mut P,
    ghcb: &mut GhcbClient,
) -> Result<Gpa, GuestError> {
    need_ghcb(ghcb, NaeExit::AP_JUMP_TABLE, 0)?;
    let req = ghcb.request(NaeExit::AP_JUMP_TABLE, 1, 0);
    let resp = ghcb.call(p, &req)?;
    Ok(Gpa(resp.sw_exit_info_2))
}
