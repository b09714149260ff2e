//! The boot flow of a legacy SEV or SEV-ES guest, in the order OVMF and Linux perform
//! it (sev-legacy.md §3.5, §8.1, §8.3; host-interfaces.md §2, §6):
//!
//! 1. CPUID 0x8000_0000 (leaf 0x8000_001F present) and 0x8000_001F: SEV reported
//!    (EAX bit 1), the C-bit position EBX\[5:0\] (at least 32, as OVMF's reset vector
//!    requires) and the physical-address reduction EBX\[11:6\]. On SEV-ES, CPUID raises
//!    #VC and is answered through the GHCB MSR protocol (no GHCB exists yet); on plain
//!    SEV the host answers it directly;
//! 2. SEV_STATUS: SEV (bit 0) must be set, SEV-ES (bit 1) exactly when the guest was
//!    launched for SEV-ES, SNP (bit 2) never — an SNP-active guest asks for termination
//!    with "SNP features unsupported" (set 0, code 2), a plain-SEV launch found running
//!    SEV-ES with "general" (set 0, code 0); a plain-SEV guest has no GHCB and cannot
//!    ask;
//! 3. SEV-ES: negotiate the GHCB protocol (SEV information; versions 1–2; no
//!    hypervisor-feature query, no SNP features), map the GHCB page with the C-bit
//!    clear — no page state change, no registration (both SNP-only) — and from then on
//!    handle #VC (CPUID, IN/OUT, RDMSR/WRMSR, MMIO) through it ([`crate::vc`]);
//! 4. verify the kernel, initrd and command line against the hashes table (OVMF, when
//!    launched with `kernel-hashes=on`; [`crate::hashes`]);
//! 5. map the DMA bounce buffers with the C-bit clear (Linux SWIOTLB for SEV: only the
//!    page tables change, the host sees plaintext there);
//! 6. APs: SEV-ES — write the real-mode entry {u16 IP, u16 CS} into the AP jump table
//!    page (private) and SET its GPA with NAE 0x8000_0005; each AP GETs it
//!    ([`sev_ap_entry`]). Plain SEV — APs start normally (INIT-SIPI from the host, which
//!    can still write their registers);
//! 7. read the OVMF secret area (private) and parse the injected table
//!    ([`crate::secret`]); the outcome ([`SecretStatus`]) is reported, never fatal:
//!    an area with no table is how an uninjected boot looks.
//!
//! On SEV-ES, fatal errors end in the termination request OVMF or Linux would send.

use crate::error::{GuestError, access_fault};
use crate::ghcb::{GhcbClient, GhcbStats};
use crate::hashes::{self, KernelBlobs};
use crate::memory::MemRange;
use crate::platform::{CBit, GuestPlatform};
use crate::secret::{SecretArea, SecretTable, SecretTableError, parse_secret_area};
use crate::vc::{self, VcStats};
use softsev_abi::ghcb::{MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP};
use softsev_abi::{Gpa, PAGE_SIZE_4K};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// CPUID leaf of the highest extended function.
pub const CPUID_EXT_MAX: u32 = 0x8000_0000;
/// CPUID leaf of the memory-encryption features (AMD APM vol. 3, Fn8000_001F).
pub const CPUID_MEM_ENC: u32 = 0x8000_001F;
/// Fn8000_001F EAX bit 1: SEV supported.
pub const CPUID_MEM_ENC_SEV: u32 = 1 << 1;
/// Largest secret area the guest reads (the OVMF area is 0xC00 bytes; LAUNCH_SECRET
/// carries at most 0x5000, sev-legacy.md §3.5).
pub const SECRET_AREA_MAX: u32 = 1 << 20;
/// Chunk used when mapping the bounce region.
const MAP_CHUNK: usize = 0x1_0000;

/// Which legacy SEV mode the guest was launched for (QEMU: the policy's ES bit, bit 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SevMode {
    /// SEV: memory encryption only; the host sees and sets registers.
    Sev,
    /// SEV-ES: registers in the encrypted VMSA, the GHCB for everything intercepted.
    SevEs,
}

impl SevMode {
    /// "SEV" or "SEV-ES".
    pub fn name(self) -> &'static str {
        match self {
            SevMode::Sev => "SEV",
            SevMode::SevEs => "SEV-ES",
        }
    }

    /// The SEV_STATUS bits 2:0 of a guest in this mode.
    pub fn sev_status_bits(self) -> u64 {
        match self {
            SevMode::Sev => SEV_STATUS_SEV,
            SevMode::SevEs => SEV_STATUS_SEV | SEV_STATUS_SEV_ES,
        }
    }
}

/// The OVMF secret area (from the footer table entry `4c2eb361-…`: `{u32 base; u32
/// size}`, sev-legacy.md §8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretAreaConfig {
    /// Base GPA.
    pub gpa: Gpa,
    /// Size in bytes.
    pub size: u32,
}

/// The APs to bring up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SevApConfig {
    /// APIC IDs of the APs (not the BSP).
    pub apic_ids: Vec<u32>,
    /// SEV-ES: the AP jump table page (private, 4 KiB aligned, below 1 MiB so real mode
    /// can reach it).
    pub jump_table_gpa: Gpa,
    /// SEV-ES: real-mode entry of the AP trampoline (below 1 MiB), stored in the jump
    /// table as CS = `start_ip >> 4`, IP = `start_ip & 0xF` ([`jump_table_entry`]).
    pub start_ip: u32,
    /// SEV-ES: first of the APs' own GHCB pages (one per AP, in `apic_ids` order),
    /// mapped with the C-bit clear by the BSP.
    pub ghcb_base: Option<Gpa>,
}

/// What the guest knows when it starts.
#[derive(Clone, Debug)]
pub struct SevBootConfig {
    /// The mode it was launched for.
    pub mode: SevMode,
    /// SEV-ES: the BSP's GHCB page (mapped with the C-bit clear). Unused on plain SEV.
    pub ghcb_gpa: Gpa,
    /// The shared DMA bounce buffers (4 KiB aligned).
    pub bounce: MemRange,
    /// The OVMF secret area, if the firmware has one.
    pub secret: Option<SecretAreaConfig>,
    /// Kernel hashes check, when launched with `kernel-hashes=on`.
    pub kernel: Option<KernelBlobs>,
    /// GPA where the verified kernel, initrd and command line are copied (private).
    pub kernel_load_gpa: Option<Gpa>,
    /// APs.
    pub aps: Option<SevApConfig>,
}

impl SevBootConfig {
    /// A configuration with the given mode and layout: no secret area, no kernel
    /// hashes, no APs.
    pub fn new(mode: SevMode, ghcb_gpa: Gpa, bounce: MemRange) -> Self {
        SevBootConfig {
            mode,
            ghcb_gpa,
            bounce,
            secret: None,
            kernel: None,
            kernel_load_gpa: None,
            aps: None,
        }
    }

    fn check(&self) -> Result<(), GuestError> {
        let bad = |m: String| Err(GuestError::Config(m));
        if !self.bounce.is_page_aligned() || self.bounce.start.0 > self.bounce.end.0 {
            return bad(format!(
                "bounce range {}..{} is not 4 KiB aligned",
                self.bounce.start, self.bounce.end
            ));
        }
        if self.mode == SevMode::SevEs && !self.ghcb_gpa.is_aligned(PAGE_SIZE_4K) {
            return bad(format!("GHCB page {} is not 4 KiB aligned", self.ghcb_gpa));
        }
        if let Some(s) = self.secret
            && (s.size == 0 || s.size > SECRET_AREA_MAX)
        {
            return bad(format!(
                "secret area of {:#x} bytes at {} (1..={SECRET_AREA_MAX:#x})",
                s.size, s.gpa
            ));
        }
        if let (SevMode::SevEs, Some(a)) = (self.mode, &self.aps) {
            if !a.jump_table_gpa.is_aligned(PAGE_SIZE_4K) || a.jump_table_gpa.0 >= 1 << 20 {
                return bad(format!(
                    "AP jump table {} must be 4 KiB aligned and below 1 MiB",
                    a.jump_table_gpa
                ));
            }
            if a.start_ip >= 1 << 20 {
                return bad(format!(
                    "AP start address {:#x} is not below 1 MiB",
                    a.start_ip
                ));
            }
            if let Some(g) = a.ghcb_base
                && !g.is_aligned(PAGE_SIZE_4K)
            {
                return bad(format!("AP GHCB base {g} is not 4 KiB aligned"));
            }
        }
        Ok(())
    }
}

/// What the secret area held when the guest read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretStatus {
    /// No secret area configured.
    NotConfigured,
    /// The area is all zero: nothing was injected.
    Absent,
    /// The area does not start with the table GUID: nothing was injected (OVMF does not
    /// clear the area, so memory never written through the guest key decrypts to
    /// noise), or the host overwrote it. Linux's `efi_secret` logs it and boots on
    /// without secrets; so does the model.
    NoTable {
        /// The first 16 bytes as read.
        found: softsev_abi::Guid,
    },
    /// A well-formed table.
    Found(SecretTable),
    /// The area starts with the table GUID but the table is malformed.
    Invalid(SecretTableError),
}

impl SecretStatus {
    /// SHA-256 (hex) of the packet as read, when a table was found.
    pub fn sha256_hex(&self) -> Option<&str> {
        match self {
            SecretStatus::Found(t) => Some(&t.sha256_hex),
            _ => None,
        }
    }

    /// A short name: "not-configured", "absent", "no-table", "found", "invalid".
    pub fn kind(&self) -> &'static str {
        match self {
            SecretStatus::NotConfigured => "not-configured",
            SecretStatus::Absent => "absent",
            SecretStatus::NoTable { .. } => "no-table",
            SecretStatus::Found(_) => "found",
            SecretStatus::Invalid(_) => "invalid",
        }
    }
}

/// As JSON (for summaries): `kind` ([`SecretStatus::kind`]), `sha256` (the packet's
/// SHA-256 when a table was found, else null), `entries` (the GUIDs of the live
/// entries, never their data), and `error` (the parse error of an invalid table, or
/// the first 16 bytes found where the table GUID belongs).
impl serde::Serialize for SecretStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SecretStatus", 4)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("sha256", &self.sha256_hex())?;
        let entries: Vec<String> = match self {
            SecretStatus::Found(t) => t.entries.iter().map(|e| e.guid.to_string()).collect(),
            _ => Vec::new(),
        };
        st.serialize_field("entries", &entries)?;
        let error = match self {
            SecretStatus::Invalid(e) => Some(e.to_string()),
            SecretStatus::NoTable { found } => Some(format!(
                "no secret table GUID at the start of the area (found {found})"
            )),
            _ => None,
        };
        st.serialize_field("error", &error)?;
        st.end()
    }
}

/// Boot phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SevPhase {
    /// CPUID memory-encryption leaves.
    Cpuid,
    /// SEV_STATUS check.
    SevStatus,
    /// GHCB negotiation and mapping (SEV-ES).
    Ghcb,
    /// Kernel hashes.
    KernelHashes,
    /// Bounce buffers mapped shared.
    BounceBuffer,
    /// AP jump table (SEV-ES).
    Aps,
    /// Secret area read.
    Secret,
}

/// What a completed boot produced.
#[derive(Clone, Debug)]
pub struct SevBootReport {
    /// The mode.
    pub mode: SevMode,
    /// SEV_STATUS.
    pub sev_status: u64,
    /// C-bit position (CPUID 0x8000_001F EBX\[5:0\]).
    pub cbit_pos: u8,
    /// Physical address bits lost to encryption (EBX\[11:6\]).
    pub reduced_phys_bits: u8,
    /// Negotiated GHCB protocol version (0 on plain SEV).
    pub ghcb_version: u16,
    /// Whether the kernel hashes were checked (and matched).
    pub hashes_verified: bool,
    /// The secret area's content.
    pub secret: SecretStatus,
    /// SEV-ES: the AP jump table GPA set.
    pub ap_jump_table: Option<Gpa>,
    /// APIC IDs of the APs to run ([`sev_ap_entry`] on each).
    pub aps: Vec<u32>,
    /// SEV-ES: the APs' GHCB pages (same order as `aps`).
    pub ap_ghcbs: Vec<Gpa>,
    /// Bytes mapped with the C-bit clear (GHCB pages and bounce buffers).
    pub shared_bytes: u64,
    /// GHCB counters.
    pub ghcb: GhcbStats,
    /// #VC counters.
    pub vc: VcStats,
    /// Time per phase.
    pub phases: Vec<(SevPhase, Duration)>,
}

/// The guest after boot, for further #VC-handled work and DMA.
#[derive(Debug)]
pub struct SevGuest {
    /// The mode.
    pub mode: SevMode,
    /// The GHCB client (unused on plain SEV).
    pub ghcb: GhcbClient,
    /// #VC counters.
    pub vc: VcStats,
    bounce: MemRange,
    sev_status: Option<u64>,
}

struct Timer {
    phases: Vec<(SevPhase, Duration)>,
    at: Instant,
}

impl Timer {
    fn lap(&mut self, ph: SevPhase) {
        let now = Instant::now();
        self.phases.push((ph, now - self.at));
        self.at = now;
    }
}

/// Boot a legacy SEV / SEV-ES guest on `p`.
pub fn sev_boot<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &SevBootConfig,
) -> Result<SevBootReport, GuestError> {
    SevGuest::boot(p, cfg).map(|(_, r)| r)
}

/// Read the OVMF secret area `cfg` (private) and parse the table in it (step 7 of the
/// module documentation); `None` is [`SecretStatus::NotConfigured`].
pub(crate) fn read_secret<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: Option<&SecretAreaConfig>,
) -> Result<SecretStatus, GuestError> {
    let Some(s) = cfg else {
        return Ok(SecretStatus::NotConfigured);
    };
    if s.size == 0 || s.size > SECRET_AREA_MAX {
        return Err(GuestError::Config(format!(
            "secret area of {:#x} bytes at {} (1..={SECRET_AREA_MAX:#x})",
            s.size, s.gpa
        )));
    }
    let mut area = Zeroizing::new(vec![0u8; s.size as usize]);
    p.read(s.gpa, CBit::Private, &mut area)
        .map_err(|f| access_fault("secret area read", s.gpa, f))?;
    Ok(match parse_secret_area(&area) {
        Ok(SecretArea::Absent) => SecretStatus::Absent,
        Ok(SecretArea::Table(t)) => SecretStatus::Found(t),
        Err(SecretTableError::NoTableGuid { found }) => SecretStatus::NoTable { found },
        Err(e) => SecretStatus::Invalid(e),
    })
}

/// Check SEV_STATUS against `mode` (step 2 of the module documentation).
fn check_status(mode: SevMode, sev_status: u64) -> Result<(), GuestError> {
    if sev_status & SEV_STATUS_SEV == 0 {
        return Err(GuestError::NotSev { sev_status });
    }
    let bits = sev_status & (SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SNP);
    if bits != mode.sev_status_bits() {
        return Err(GuestError::SevMode {
            expected: mode.name(),
            sev_status,
        });
    }
    Ok(())
}

fn write_zeros<P: GuestPlatform + ?Sized>(
    p: &mut P,
    r: MemRange,
    what: &'static str,
) -> Result<u64, GuestError> {
    let zeros = [0u8; MAP_CHUNK];
    let mut a = r.start.0;
    while a < r.end.0 {
        let n = ((r.end.0 - a) as usize).min(MAP_CHUNK);
        p.write(Gpa(a), CBit::Shared, &zeros[..n])
            .map_err(|f| access_fault(what, Gpa(a), f))?;
        a += n as u64;
    }
    Ok(r.len())
}

impl SevGuest {
    /// Boot (see the module documentation) and keep the guest state.
    pub fn boot<P: GuestPlatform + ?Sized>(
        p: &mut P,
        cfg: &SevBootConfig,
    ) -> Result<(SevGuest, SevBootReport), GuestError> {
        cfg.check()?;
        let mut g = SevGuest {
            mode: cfg.mode,
            ghcb: GhcbClient::new(),
            vc: VcStats::default(),
            bounce: cfg.bounce,
            sev_status: None,
        };
        match g.run(p, cfg) {
            Ok(r) => Ok((g, r)),
            Err(e) => Err(g.fatal(p, e)),
        }
    }

    /// Send the termination request an error calls for — only possible with SEV-ES
    /// active (the GHCB MSR exists) — and wrap the error.
    fn fatal<P: GuestPlatform + ?Sized>(&mut self, p: &mut P, e: GuestError) -> GuestError {
        let status = match self.sev_status {
            Some(s) => Some(s),
            None => p.rdmsr(MSR_SEV_STATUS).ok(),
        };
        let es = status.is_some_and(|s| s & SEV_STATUS_SEV_ES != 0);
        match e.termination_reason() {
            Some((set, code)) if es => {
                let _ = self.ghcb.terminate(p, set, code);
                GuestError::Terminated {
                    set,
                    code,
                    cause: Box::new(e),
                }
            }
            _ => e,
        }
    }

    fn run<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        cfg: &SevBootConfig,
    ) -> Result<SevBootReport, GuestError> {
        let mut t = Timer {
            phases: Vec::new(),
            at: Instant::now(),
        };
        // 1. CPUID (OVMF CheckSevFeatures order: before SEV_STATUS).
        let max = self.cpuid(p, CPUID_EXT_MAX, 0)?[0];
        if max < CPUID_MEM_ENC {
            return Err(GuestError::NoSevCpuid {
                leaf: CPUID_EXT_MAX,
                value: max,
            });
        }
        let [eax, ebx, _, _] = self.cpuid(p, CPUID_MEM_ENC, 0)?;
        if eax & CPUID_MEM_ENC_SEV == 0 {
            return Err(GuestError::NoSevCpuid {
                leaf: CPUID_MEM_ENC,
                value: eax,
            });
        }
        let cbit_pos = (ebx & 0x3F) as u8;
        let reduced_phys_bits = ((ebx >> 6) & 0x3F) as u8;
        if cbit_pos < 32 {
            return Err(GuestError::CbitPosition { cbit: cbit_pos });
        }
        t.lap(SevPhase::Cpuid);

        // 2. SEV_STATUS.
        let sev_status = p
            .rdmsr(MSR_SEV_STATUS)
            .map_err(|f| access_fault("RDMSR SEV_STATUS", Gpa(0), f))?;
        self.sev_status = Some(sev_status);
        check_status(cfg.mode, sev_status)?;
        t.lap(SevPhase::SevStatus);

        // 3. GHCB (SEV-ES).
        let mut shared_bytes = 0;
        if cfg.mode == SevMode::SevEs {
            self.ghcb.negotiate_es(p)?;
            shared_bytes += write_zeros(
                p,
                MemRange::new(cfg.ghcb_gpa.0, PAGE_SIZE_4K),
                "GHCB page map",
            )?;
            self.ghcb.use_unregistered(p, cfg.ghcb_gpa)?;
        }
        t.lap(SevPhase::Ghcb);

        // 4. Kernel hashes.
        let hashes_verified = match &cfg.kernel {
            Some(blobs) => {
                hashes::verify(p, blobs)?;
                if let Some(at) = cfg.kernel_load_gpa {
                    let mut off = at.0;
                    for blob in [&blobs.kernel, &blobs.initrd, &blobs.cmdline] {
                        p.write(Gpa(off), CBit::Private, blob)
                            .map_err(|f| access_fault("kernel load", Gpa(off), f))?;
                        off = (off + blob.len() as u64).next_multiple_of(PAGE_SIZE_4K);
                    }
                }
                true
            }
            None => false,
        };
        t.lap(SevPhase::KernelHashes);

        // 5. Bounce buffers.
        shared_bytes += write_zeros(p, cfg.bounce, "bounce buffer map")?;
        t.lap(SevPhase::BounceBuffer);

        // 6. APs.
        let mut aps = Vec::new();
        let mut ap_ghcbs = Vec::new();
        let mut ap_jump_table = None;
        if let Some(a) = &cfg.aps {
            aps = a.apic_ids.clone();
            if cfg.mode == SevMode::SevEs {
                let entry = jump_table_entry(a.start_ip);
                p.write(a.jump_table_gpa, CBit::Private, &entry)
                    .map_err(|f| access_fault("AP jump table write", a.jump_table_gpa, f))?;
                vc::ap_jump_table_set(p, &mut self.ghcb, a.jump_table_gpa)?;
                ap_jump_table = Some(a.jump_table_gpa);
                if let Some(base) = a.ghcb_base {
                    let n = a.apic_ids.len() as u64;
                    shared_bytes +=
                        write_zeros(p, MemRange::new(base.0, n * PAGE_SIZE_4K), "AP GHCB map")?;
                    ap_ghcbs = (0..n).map(|i| Gpa(base.0 + i * PAGE_SIZE_4K)).collect();
                }
            }
        }
        t.lap(SevPhase::Aps);

        // 7. Secret area.
        let secret = read_secret(p, cfg.secret.as_ref())?;
        t.lap(SevPhase::Secret);

        Ok(SevBootReport {
            mode: cfg.mode,
            sev_status,
            cbit_pos,
            reduced_phys_bits,
            ghcb_version: self.ghcb.version(),
            hashes_verified,
            secret,
            ap_jump_table,
            aps,
            ap_ghcbs,
            shared_bytes,
            ghcb: self.ghcb.stats,
            vc: self.vc,
            phases: t.phases,
        })
    }

    /// CPUID as guest code runs it (the host's answer on SEV; #VC through the GHCB on
    /// SEV-ES: [`vc::cpuid`]).
    pub fn cpuid<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        leaf: u32,
        subleaf: u32,
    ) -> Result<[u32; 4], GuestError> {
        vc::cpuid(p, &mut self.ghcb, &mut self.vc, leaf, subleaf)
    }

    fn es(&self, what: &str) -> Result<(), GuestError> {
        if self.mode != SevMode::SevEs {
            return Err(GuestError::Config(format!(
                "{what} through the GHCB needs SEV-ES (a plain SEV guest's intercepts go to the host directly)"
            )));
        }
        Ok(())
    }

    /// OUT through the GHCB (SEV-ES #VC IOIO).
    pub fn io_out<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        port: u16,
        size: u8,
        value: u32,
    ) -> Result<(), GuestError> {
        self.es("OUT")?;
        self.vc.ioio += 1;
        vc::io_out(p, &mut self.ghcb, port, size, value)
    }

    /// IN through the GHCB (SEV-ES #VC IOIO).
    pub fn io_in<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        port: u16,
        size: u8,
    ) -> Result<u32, GuestError> {
        self.es("IN")?;
        self.vc.ioio += 1;
        vc::io_in(p, &mut self.ghcb, port, size)
    }

    /// RDMSR of an intercepted MSR through the GHCB (SEV-ES #VC MSR).
    pub fn rdmsr<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        msr: u32,
    ) -> Result<u64, GuestError> {
        self.es("RDMSR")?;
        self.vc.msr += 1;
        vc::rdmsr(p, &mut self.ghcb, msr)
    }

    /// WRMSR of an intercepted MSR through the GHCB (SEV-ES #VC MSR).
    pub fn wrmsr<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        msr: u32,
        value: u64,
    ) -> Result<(), GuestError> {
        self.es("WRMSR")?;
        self.vc.msr += 1;
        vc::wrmsr(p, &mut self.ghcb, msr, value)
    }

    /// MMIO read through the GHCB (SEV-ES #VC NPF on an MMIO page).
    pub fn mmio_read<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        buf: &mut [u8],
    ) -> Result<(), GuestError> {
        self.es("MMIO read")?;
        self.vc.mmio += 1;
        vc::mmio_read(p, &mut self.ghcb, gpa, buf)
    }

    /// MMIO write through the GHCB.
    pub fn mmio_write<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        data: &[u8],
    ) -> Result<(), GuestError> {
        self.es("MMIO write")?;
        self.vc.mmio += 1;
        vc::mmio_write(p, &mut self.ghcb, gpa, data)
    }

    fn bounce_at(&self, offset: u64, len: usize) -> Result<Gpa, GuestError> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.bounce.len()) {
            return Err(GuestError::Config(format!(
                "DMA of {len:#x} bytes at bounce offset {offset:#x} exceeds the {:#x}-byte bounce region",
                self.bounce.len()
            )));
        }
        Ok(Gpa(self.bounce.start.0 + offset))
    }

    /// DMA to a device: copy `data` (private) into the bounce buffer at `offset`
    /// (C-bit clear), where the device (the host) reads plaintext.
    pub fn dma_to_device<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        offset: u64,
        data: &[u8],
    ) -> Result<(), GuestError> {
        let gpa = self.bounce_at(offset, data.len())?;
        p.write(gpa, CBit::Shared, data)
            .map_err(|f| access_fault("DMA bounce write", gpa, f))
    }

    /// DMA from a device: copy what the device wrote at bounce `offset` into `buf`
    /// (the guest's private memory).
    pub fn dma_from_device<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), GuestError> {
        let gpa = self.bounce_at(offset, buf.len())?;
        p.read(gpa, CBit::Shared, buf)
            .map_err(|f| access_fault("DMA bounce read", gpa, f))
    }
}

/// The AP jump table entry for a real-mode start at `start` (below 1 MiB): u16 IP at
/// +0, u16 CS at +2 (Linux `sev_es_setup_ap_jump_table`: `jump_table[0] = ip`,
/// `jump_table[1] = cs`; host-interfaces.md §2.7).
pub fn jump_table_entry(start: u32) -> [u8; 4] {
    let cs = (start >> 4) as u16;
    let ip = (start & 0xF) as u16;
    let mut e = [0u8; 4];
    e[..2].copy_from_slice(&ip.to_le_bytes());
    e[2..].copy_from_slice(&cs.to_le_bytes());
    e
}

/// What an AP found when it came up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevApReport {
    /// SEV_STATUS on this vCPU.
    pub sev_status: u64,
    /// GHCB protocol version (0 on plain SEV).
    pub ghcb_version: u16,
    /// SEV-ES: the jump table GPA the hypervisor returned.
    pub jump_table: Option<Gpa>,
    /// SEV-ES: the real-mode start address read from the jump table (CS·16 + IP).
    pub start: Option<u32>,
}

/// The AP side, run on the AP's vCPU: check SEV_STATUS; SEV-ES — negotiate the GHCB
/// protocol, use its own GHCB page `ghcb_gpa` (mapped shared by the BSP), GET the AP
/// jump table and read the entry from it (private). Plain SEV APs were started by the
/// host and only check their mode.
pub fn sev_ap_entry<P: GuestPlatform + ?Sized>(
    p: &mut P,
    mode: SevMode,
    ghcb_gpa: Option<Gpa>,
) -> Result<SevApReport, GuestError> {
    let mut g = SevGuest {
        mode,
        ghcb: GhcbClient::new(),
        vc: VcStats::default(),
        bounce: MemRange::new(0, 0),
        sev_status: None,
    };
    let run = |p: &mut P, g: &mut SevGuest| -> Result<SevApReport, GuestError> {
        let sev_status = p
            .rdmsr(MSR_SEV_STATUS)
            .map_err(|f| access_fault("RDMSR SEV_STATUS", Gpa(0), f))?;
        g.sev_status = Some(sev_status);
        check_status(mode, sev_status)?;
        if mode == SevMode::Sev {
            return Ok(SevApReport {
                sev_status,
                ghcb_version: 0,
                jump_table: None,
                start: None,
            });
        }
        let ghcb = ghcb_gpa
            .ok_or_else(|| GuestError::Config("an SEV-ES AP needs its own GHCB page".into()))?;
        g.ghcb.negotiate_es(p)?;
        g.ghcb.use_unregistered(p, ghcb)?;
        let jt = vc::ap_jump_table_get(p, &mut g.ghcb)?;
        if jt.0 == 0 || !jt.is_aligned(PAGE_SIZE_4K) || jt.0 >= 1 << 20 {
            return Err(GuestError::ApJumpTable {
                what: "the hypervisor returned no usable jump table (0, unaligned or above 1 MiB)",
                value: jt.0,
            });
        }
        let mut e = [0u8; 4];
        p.read(jt, CBit::Private, &mut e)
            .map_err(|f| access_fault("AP jump table read", jt, f))?;
        let ip = u32::from(u16::from_le_bytes([e[0], e[1]]));
        let cs = u32::from(u16::from_le_bytes([e[2], e[3]]));
        Ok(SevApReport {
            sev_status,
            ghcb_version: g.ghcb.version(),
            jump_table: Some(jt),
            start: Some(cs * 16 + ip),
        })
    };
    match run(p, &mut g) {
        Ok(r) => Ok(r),
        Err(e) => Err(g.fatal(p, e)),
    }
}
