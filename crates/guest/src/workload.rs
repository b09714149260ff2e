//! A deterministic memory workload for snapshot and migration (sev-legacy.md §5, §5.7),
//! and the check a guest makes after it was moved.
//!
//! Everything the workload needs to go on lives in the guest's private (C-bit) memory
//! — the pages it writes and a *ledger* — and in three general-purpose registers, so a
//! guest moved to another machine (its memory by SEND/RECEIVE_UPDATE_DATA, its SEV-ES
//! register file by SEND/RECEIVE_UPDATE_VMSA, §5.2, §5.5) continues where it stopped.
//!
//! Each [`workload_step`] writes one batch of pages, round robin over
//! [`WorkloadConfig::pages`], with content derived from the seed, the batch number and
//! the page's GPA; records each page's SHA-256 in the ledger; puts the batch number in
//! RBX, the ledger GPA in R12 and a check word over both in R13; and makes one OUT to
//! [`WorkloadConfig::exit_port`] (plain SEV: intercepted by the host; SEV-ES: #VC →
//! GHCB NAE IOIO, host-interfaces.md §2.5), so a VMM sees a batch boundary and can
//! interleave sending with the guest's progress.
//!
//! Ledger (private, at [`WorkloadConfig::ledger`], all integers little-endian):
//!
//! ```text
//! 0x00 [8]  magic "SSWLEDG1"        0x08 u32 layout version (1)
//! 0x0C u32  pages per batch         0x10 u64 first page GPA
//! 0x18 u64  page count              0x20 u64 batches completed
//! 0x28 u64  pages written           0x30 u64 next page index (round robin)
//! 0x38 u64  GHCB GPA (0: plain SEV) 0x40 u16 GHCB protocol version
//! 0x42 u16  exit port               0x44 u32 SEV_STATUS bits 1:0 at init
//! 0x48 [32] SHA-256 of the configuration (seed included)
//! 0x68 [24] zero
//! 0x80 [32] × page count: SHA-256 of each page as last written
//! ```
//!
//! A page is bad after a move ([`verify_after_move`]) when its content does not hash to
//! its ledger entry (a flipped bit; a page put at another GPA — content names its own
//! GPA), or when the entry is not the hash of what the round-robin order says the page
//! last received (a page, or a page with its ledger entry, left stale by a host that did
//! not resend it). A stale ledger header shows as registers that do not match it.
//! Nothing here uses an integrity mechanism SEV lacks: SEV and SEV-ES memory is
//! encrypted, not integrity protected, so a host write to a private page reads back as
//! garbage, which the hashes catch.

use crate::error::{GuestError, access_fault};
use crate::ghcb::GhcbClient;
use crate::memory::MemRange;
use crate::platform::{CBit, Gpr, GuestFault, GuestPlatform, VC_IOIO};
use crate::sev_boot::{SecretAreaConfig, SecretStatus, read_secret};
use crate::vc;
use serde::Serialize;
use softsev_abi::ghcb::{MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP};
use softsev_abi::{Gpa, PAGE_SIZE_4K};
use softsev_crypto::hash::sha256;
use softsev_crypto::rng::Rng;

/// Ledger magic.
pub const LEDGER_MAGIC: [u8; 8] = *b"SSWLEDG1";
/// Ledger layout version.
pub const LEDGER_VERSION: u32 = 1;
/// Bytes of the ledger header; the per-page hashes follow.
pub const LEDGER_HEADER_LEN: u64 = 0x80;
/// Bytes of one ledger entry (a SHA-256).
pub const LEDGER_ENTRY_LEN: u64 = 32;
/// Every workload page starts with this marker, then its GPA and batch number (u64
/// LE each): plaintext a test can search a migration stream for.
pub const PAGE_MARKER: [u8; 16] = *b"SOFTSEV-WORKLOAD";
/// Most bad pages listed by GPA in a [`MoveCheck`].
pub const FIRST_BAD_MAX: usize = 16;
/// Ledger mode word of a plain SEV guest (SEV_STATUS bits 1:0).
const MODE_SEV: u32 = SEV_STATUS_SEV as u32;
/// Ledger mode word of an SEV-ES guest.
const MODE_SEV_ES: u32 = (SEV_STATUS_SEV | SEV_STATUS_SEV_ES) as u32;
/// Size of the OUT at each batch boundary (the low 32 bits of the batch number).
pub const EXIT_SIZE: u8 = 4;

/// What the workload writes and where it keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// The private GPA range it writes (4 KiB aligned, not empty).
    pub pages: MemRange,
    /// The private ledger: [`LEDGER_HEADER_LEN`] bytes of header, then one SHA-256 per
    /// page ([`WorkloadConfig::ledger_len`] bytes in all; 8-byte aligned, outside
    /// `pages`).
    pub ledger: Gpa,
    /// The seed of the page contents.
    pub seed: [u8; 32],
    /// Pages per [`workload_step`] (at least 1; more than the range holds writes each
    /// page once per batch).
    pub pages_per_batch: u32,
    /// The port of the OUT made at each batch boundary.
    pub exit_port: u16,
    /// SEV-ES: the vCPU's GHCB page (mapped with the C-bit clear, as after
    /// [`sev_boot`](mod@crate::sev_boot)), through which the OUT goes. Unused on plain SEV.
    pub ghcb: Option<Gpa>,
}

impl WorkloadConfig {
    /// A configuration writing `pages` with ledger at `ledger`, 1 page per batch, exit
    /// port 0 and no GHCB (plain SEV).
    pub fn new(pages: MemRange, ledger: Gpa, seed: [u8; 32]) -> Self {
        WorkloadConfig {
            pages,
            ledger,
            seed,
            pages_per_batch: 1,
            exit_port: 0,
            ghcb: None,
        }
    }

    /// Pages in the range.
    pub fn page_count(&self) -> u64 {
        self.pages.len() / PAGE_SIZE_4K
    }

    /// Bytes of the ledger (header and one entry per page).
    pub fn ledger_len(&self) -> u64 {
        LEDGER_HEADER_LEN + LEDGER_ENTRY_LEN * self.page_count()
    }

    /// Pages one batch writes: `pages_per_batch`, at most the whole range.
    pub fn batch_pages(&self) -> u64 {
        u64::from(self.pages_per_batch).min(self.page_count())
    }

    /// SHA-256 over everything that fixes the page contents and the layout.
    fn digest(&self) -> [u8; 32] {
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(b"softsev workload config v1\0");
        m.extend_from_slice(&self.seed);
        m.extend_from_slice(&self.pages.start.0.to_le_bytes());
        m.extend_from_slice(&self.pages.end.0.to_le_bytes());
        m.extend_from_slice(&self.ledger.0.to_le_bytes());
        m.extend_from_slice(&self.pages_per_batch.to_le_bytes());
        m.extend_from_slice(&self.exit_port.to_le_bytes());
        sha256(&m)
    }

    fn check(&self) -> Result<(), GuestError> {
        let bad = |m: String| Err(GuestError::Config(format!("workload: {m}")));
        let r = self.pages;
        if !r.is_page_aligned() || r.start.0 >= r.end.0 {
            return bad(format!(
                "page range {}..{} is empty or not 4 KiB aligned",
                r.start, r.end
            ));
        }
        if self.pages_per_batch == 0 {
            return bad("pages_per_batch is 0".into());
        }
        if !self.ledger.is_aligned(8) {
            return bad(format!("ledger {} is not 8-byte aligned", self.ledger));
        }
        let Some(lend) = self.ledger.0.checked_add(self.ledger_len()) else {
            return bad(format!(
                "ledger of {:#x} bytes at {} wraps the address space",
                self.ledger_len(),
                self.ledger
            ));
        };
        let overlaps = |a: u64, b: u64, c: u64, d: u64| a < d && c < b;
        if overlaps(self.ledger.0, lend, r.start.0, r.end.0) {
            return bad(format!(
                "ledger {}..{lend:#x} overlaps the page range {}..{}",
                self.ledger, r.start, r.end
            ));
        }
        if let Some(g) = self.ghcb {
            let gend = g.0.saturating_add(PAGE_SIZE_4K);
            if !g.is_aligned(PAGE_SIZE_4K)
                || overlaps(g.0, gend, r.start.0, r.end.0)
                || overlaps(g.0, gend, self.ledger.0, lend)
            {
                return bad(format!(
                    "GHCB page {g} is unaligned or overlaps the pages or the ledger"
                ));
            }
        }
        Ok(())
    }
}

/// Where the workload is after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadProgress {
    /// Batches completed (this step's batch number).
    pub batch: u64,
    /// Pages written in all batches (a page written twice counts twice).
    pub pages_written: u64,
}

/// What the guest found after it was moved ([`verify_after_move`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoveCheck {
    /// Pages the ledger lists (written at least once) and that were re-hashed.
    pub pages_checked: u64,
    /// Of those, pages whose content is not what the guest last wrote there.
    pub pages_bad: u64,
    /// The first [`FIRST_BAD_MAX`] bad pages, in GPA order.
    pub first_bad: Vec<Gpa>,
    /// Batches the workload had completed when it stopped (the ledger header's count).
    pub batches_before_move: u64,
    /// RBX, R12 and R13 hold what the last batch put there (batch number, ledger GPA,
    /// check word).
    pub registers_ok: bool,
    /// SEV-ES: the registers arrived through the encrypted VMSA and the vCPU still runs
    /// with SEV-ES (SEV_STATUS bit 1); `None` for plain SEV, whose registers the host
    /// carries in the clear.
    pub vmsa_continued: Option<bool>,
    /// The launch secret, read again from the secret area.
    pub secret: SecretStatus,
}

impl MoveCheck {
    /// Every page intact, the registers continued (and on SEV-ES the VMSA).
    pub fn intact(&self) -> bool {
        self.pages_bad == 0 && self.registers_ok && self.vmsa_continued != Some(false)
    }
}

/// The ledger header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    batch: u64,
    pages_written: u64,
    cursor: u64,
    ghcb: u64,
    ghcb_version: u16,
    mode: u32,
}

/// What to wrap a fault in.
fn fault(op: &'static str, gpa: Gpa) -> impl FnOnce(GuestFault) -> GuestError {
    move |f| access_fault(op, gpa, f)
}

fn ledger_error(cfg: &WorkloadConfig, what: String) -> GuestError {
    GuestError::Workload {
        gpa: cfg.ledger,
        what,
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn encode_header(cfg: &WorkloadConfig, h: &Header) -> [u8; LEDGER_HEADER_LEN as usize] {
    let mut b = [0u8; LEDGER_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&LEDGER_MAGIC);
    b[8..12].copy_from_slice(&LEDGER_VERSION.to_le_bytes());
    b[0x0C..0x10].copy_from_slice(&cfg.pages_per_batch.to_le_bytes());
    b[0x10..0x18].copy_from_slice(&cfg.pages.start.0.to_le_bytes());
    b[0x18..0x20].copy_from_slice(&cfg.page_count().to_le_bytes());
    b[0x20..0x28].copy_from_slice(&h.batch.to_le_bytes());
    b[0x28..0x30].copy_from_slice(&h.pages_written.to_le_bytes());
    b[0x30..0x38].copy_from_slice(&h.cursor.to_le_bytes());
    b[0x38..0x40].copy_from_slice(&h.ghcb.to_le_bytes());
    b[0x40..0x42].copy_from_slice(&h.ghcb_version.to_le_bytes());
    b[0x42..0x44].copy_from_slice(&cfg.exit_port.to_le_bytes());
    b[0x44..0x48].copy_from_slice(&h.mode.to_le_bytes());
    b[0x48..0x68].copy_from_slice(&cfg.digest());
    b
}

/// Read and check the ledger header against `cfg`.
fn read_header<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
) -> Result<Header, GuestError> {
    let mut b = [0u8; LEDGER_HEADER_LEN as usize];
    p.read(cfg.ledger, CBit::Private, &mut b)
        .map_err(fault("workload ledger read", cfg.ledger))?;
    if b[0..8] != LEDGER_MAGIC {
        return Err(ledger_error(
            cfg,
            format!(
                "no ledger magic {:?} (found {})",
                String::from_utf8_lossy(&LEDGER_MAGIC),
                crate::secret::hex(&b[0..8])
            ),
        ));
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version != LEDGER_VERSION {
        return Err(ledger_error(
            cfg,
            format!("ledger layout version {version} (expected {LEDGER_VERSION})"),
        ));
    }
    if b[0x48..0x68] != cfg.digest() {
        return Err(ledger_error(
            cfg,
            "the ledger belongs to another workload configuration (seed, range, batch size or port differ)".into(),
        ));
    }
    let h = Header {
        batch: le64(&b, 0x20),
        pages_written: le64(&b, 0x28),
        cursor: le64(&b, 0x30),
        ghcb: le64(&b, 0x38),
        ghcb_version: u16::from_le_bytes([b[0x40], b[0x41]]),
        mode: u32::from_le_bytes([b[0x44], b[0x45], b[0x46], b[0x47]]),
    };
    let k = cfg.batch_pages();
    let n = cfg.page_count();
    let consistent = h.batch.checked_mul(k) == Some(h.pages_written)
        && h.cursor == h.pages_written % n
        && (h.mode == MODE_SEV || h.mode == MODE_SEV_ES)
        && (h.mode == MODE_SEV) == (h.ghcb == 0);
    if !consistent || encode_header(cfg, &h) != b {
        return Err(ledger_error(
            cfg,
            format!(
                "inconsistent ledger header (batch {}, pages written {}, next page {}, GHCB {:#x})",
                h.batch, h.pages_written, h.cursor, h.ghcb
            ),
        ));
    }
    Ok(h)
}

/// The content of the page at `gpa` as batch `batch` writes it: [`PAGE_MARKER`], the
/// GPA and the batch number (u64 LE), then a ChaCha20 stream seeded from the seed, the
/// GPA and the batch.
pub fn page_content(seed: &[u8; 32], gpa: Gpa, batch: u64) -> Box<[u8; 4096]> {
    let mut page = Box::new([0u8; 4096]);
    page[..16].copy_from_slice(&PAGE_MARKER);
    page[16..24].copy_from_slice(&gpa.0.to_le_bytes());
    page[24..32].copy_from_slice(&batch.to_le_bytes());
    let mut s = [0u8; 48];
    s[..32].copy_from_slice(seed);
    s[32..40].copy_from_slice(&gpa.0.to_le_bytes());
    s[40..48].copy_from_slice(&batch.to_le_bytes());
    Rng::seeded(&s, "softsev workload page").fill(&mut page[32..]);
    page
}

/// The batch that last wrote page index `i` after `pages_written` page writes in
/// batches of `k` over `n` pages (round robin from index 0), if any did.
fn last_batch(i: u64, pages_written: u64, k: u64, n: u64) -> Option<u64> {
    // Write number w (0-based) goes to page w mod n in batch w / k + 1; the last w
    // below pages_written with w ≡ i (mod n).
    let last = pages_written.checked_sub(1)?;
    if last < i {
        return None;
    }
    let w = i + (last - i) / n * n;
    Some(w / k + 1)
}

/// The R13 check word over RBX (the batch number) and R12 (the ledger GPA).
fn check_word(cfg: &WorkloadConfig, rbx: u64, r12: u64) -> u64 {
    let mut m = Vec::with_capacity(80);
    m.extend_from_slice(b"softsev workload registers v1\0");
    m.extend_from_slice(&rbx.to_le_bytes());
    m.extend_from_slice(&r12.to_le_bytes());
    m.extend_from_slice(&cfg.digest());
    let d = sha256(&m);
    let mut v = [0u8; 8];
    v.copy_from_slice(&d[..8]);
    u64::from_le_bytes(v)
}

fn set_registers<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
    batch: u64,
) -> Result<(), GuestError> {
    let regs = [
        (Gpr::Rbx, batch),
        (Gpr::R12, cfg.ledger.0),
        (Gpr::R13, check_word(cfg, batch, cfg.ledger.0)),
    ];
    for (r, v) in regs {
        p.set_gpr(r, v)
            .map_err(fault("workload register write", Gpa(0)))?;
    }
    Ok(())
}

fn sev_status<P: GuestPlatform + ?Sized>(p: &mut P) -> Result<u64, GuestError> {
    p.rdmsr(MSR_SEV_STATUS)
        .map_err(fault("RDMSR SEV_STATUS", Gpa(0)))
}

/// Set the workload up: write a fresh ledger (header, all entries zero), and RBX, R12,
/// R13 for batch 0, so that a guest moved before its first step checks out too. On
/// SEV-ES the GHCB protocol is negotiated (MSR protocol) and the version kept in the
/// ledger; [`WorkloadConfig::ghcb`] must then be set. SNP guests are refused (an SNP
/// guest is not migrated without a migration agent).
pub fn workload_init<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
) -> Result<(), GuestError> {
    cfg.check()?;
    let status = sev_status(p)?;
    if status & SEV_STATUS_SEV == 0 {
        return Err(GuestError::NotSev { sev_status: status });
    }
    if status & SEV_STATUS_SNP != 0 {
        return Err(GuestError::SevMode {
            expected: "SEV or SEV-ES",
            sev_status: status,
        });
    }
    let es = status & SEV_STATUS_SEV_ES != 0;
    let (ghcb, ghcb_version) = if es {
        let g = cfg.ghcb.ok_or_else(|| {
            GuestError::Config("workload: an SEV-ES guest needs its GHCB page (ghcb)".into())
        })?;
        let mut client = GhcbClient::new();
        let v = client.negotiate_es(p)?;
        client.use_unregistered(p, g)?;
        (g.0, v)
    } else {
        (0, 0)
    };
    let h = Header {
        batch: 0,
        pages_written: 0,
        cursor: 0,
        ghcb,
        ghcb_version,
        mode: if es { MODE_SEV_ES } else { MODE_SEV },
    };
    // Entries first, the header last: a ledger without its magic is not a ledger.
    let zeros = [0u8; 4096];
    let mut at = cfg.ledger.0 + LEDGER_HEADER_LEN;
    let end = cfg.ledger.0 + cfg.ledger_len();
    while at < end {
        let n = ((end - at) as usize).min(zeros.len());
        p.write(Gpa(at), CBit::Private, &zeros[..n])
            .map_err(fault("workload ledger write", Gpa(at)))?;
        at += n as u64;
    }
    p.write(cfg.ledger, CBit::Private, &encode_header(cfg, &h))
        .map_err(fault("workload ledger write", cfg.ledger))?;
    set_registers(p, cfg, 0)
}

/// One batch (see the module documentation): write the next
/// [`WorkloadConfig::batch_pages`] pages, their ledger entries, the header, RBX / R12
/// / R13, then OUT the batch number's low 32 bits to the exit port — directly on plain
/// SEV, through the GHCB on SEV-ES. Returns when the host resumes the guest.
pub fn workload_step<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
) -> Result<WorkloadProgress, GuestError> {
    cfg.check()?;
    let mut h = read_header(p, cfg)?;
    let n = cfg.page_count();
    let k = cfg.batch_pages();
    let exhausted = || ledger_error(cfg, "batch counter exhausted".into());
    let batch = h.batch.checked_add(1).ok_or_else(exhausted)?;
    let pages_written = batch.checked_mul(k).ok_or_else(exhausted)?;
    for j in 0..k {
        let i = (h.cursor + j) % n;
        let gpa = Gpa(cfg.pages.start.0 + i * PAGE_SIZE_4K);
        let page = page_content(&cfg.seed, gpa, batch);
        p.write(gpa, CBit::Private, &page[..])
            .map_err(fault("workload page write", gpa))?;
        let entry = Gpa(cfg.ledger.0 + LEDGER_HEADER_LEN + i * LEDGER_ENTRY_LEN);
        p.write(entry, CBit::Private, &sha256(&page[..]))
            .map_err(fault("workload ledger write", entry))?;
    }
    h.batch = batch;
    h.pages_written = pages_written;
    h.cursor = pages_written % n;
    p.write(cfg.ledger, CBit::Private, &encode_header(cfg, &h))
        .map_err(fault("workload ledger write", cfg.ledger))?;
    set_registers(p, cfg, batch)?;
    batch_exit(p, cfg, &h, batch as u32)?;
    Ok(WorkloadProgress {
        batch,
        pages_written: h.pages_written,
    })
}

/// The OUT at a batch boundary: the host's IOIO intercept on plain SEV; #VC → GHCB NAE
/// IOIO on SEV-ES (the GHCB page and version from the ledger).
fn batch_exit<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
    h: &Header,
    value: u32,
) -> Result<(), GuestError> {
    match p.io_out(cfg.exit_port, EXIT_SIZE, value) {
        Ok(()) if h.ghcb == 0 => Ok(()),
        Ok(()) => Err(GuestError::VcUnhandled {
            code: VC_IOIO,
            early: false,
            what: "an SEV-ES guest's OUT completed without #VC".into(),
        }),
        Err(GuestFault::Vc { code: VC_IOIO, .. }) if h.ghcb != 0 => {
            let mut ghcb = GhcbClient::resumed(Gpa(h.ghcb), h.ghcb_version)?;
            vc::io_out(p, &mut ghcb, cfg.exit_port, EXIT_SIZE, value)
        }
        Err(GuestFault::Vc { code, .. }) => Err(GuestError::VcUnhandled {
            code,
            early: false,
            what: format!("#VC {code:#x} raised by OUT to port {:#x}", cfg.exit_port),
        }),
        Err(f) => Err(access_fault("OUT (workload batch exit)", Gpa(0), f)),
    }
}

/// After a move (or a restore): re-hash every page the ledger lists and compare with
/// its entry and with what the round-robin order says the page last received; check
/// RBX / R12 / R13 against the ledger header (on SEV-ES these came through the
/// encrypted VMSA: `vmsa_continued`); and read the launch secret again from `secret`.
/// Bad pages are counted, not fatal; a ledger header that is not this workload's is
/// an error ([`GuestError::Workload`]).
pub fn verify_after_move<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &WorkloadConfig,
    secret: Option<&SecretAreaConfig>,
) -> Result<MoveCheck, GuestError> {
    cfg.check()?;
    let h = read_header(p, cfg)?;
    let n = cfg.page_count();
    let k = cfg.batch_pages();
    let listed = h.pages_written.min(n);
    let mut pages_bad = 0;
    let mut first_bad = Vec::new();
    let mut page = vec![0u8; PAGE_SIZE_4K as usize];
    let mut entry = [0u8; LEDGER_ENTRY_LEN as usize];
    for i in 0..listed {
        let gpa = Gpa(cfg.pages.start.0 + i * PAGE_SIZE_4K);
        p.read(gpa, CBit::Private, &mut page)
            .map_err(fault("workload page read", gpa))?;
        let at = Gpa(cfg.ledger.0 + LEDGER_HEADER_LEN + i * LEDGER_ENTRY_LEN);
        p.read(at, CBit::Private, &mut entry)
            .map_err(fault("workload ledger read", at))?;
        let expected = last_batch(i, h.pages_written, k, n)
            .map(|b| sha256(&page_content(&cfg.seed, gpa, b)[..]));
        let ok = sha256(&page) == entry && expected == Some(entry);
        if !ok {
            pages_bad += 1;
            if first_bad.len() < FIRST_BAD_MAX {
                first_bad.push(gpa);
            }
        }
    }
    let mut reg = |r: Gpr| p.gpr(r).map_err(fault("workload register read", Gpa(0)));
    let (rbx, r12, r13) = (reg(Gpr::Rbx)?, reg(Gpr::R12)?, reg(Gpr::R13)?);
    let registers_ok = rbx == h.batch && r12 == cfg.ledger.0 && r13 == check_word(cfg, rbx, r12);
    let vmsa_continued = if h.ghcb != 0 {
        let es_now = sev_status(p)? & SEV_STATUS_SEV_ES != 0;
        Some(registers_ok && es_now)
    } else {
        None
    };
    let secret = read_secret(p, secret)?;
    Ok(MoveCheck {
        pages_checked: listed,
        pages_bad,
        first_bad,
        batches_before_move: h.batch,
        registers_ok,
        vmsa_continued,
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::last_batch;

    /// The closed form agrees with replaying the round robin.
    #[test]
    fn last_batch_matches_replay() {
        for n in 1..7u64 {
            for k in 1..=n {
                let mut last = vec![None; n as usize];
                let mut cursor = 0;
                for b in 1..=12u64 {
                    for j in 0..k {
                        last[((cursor + j) % n) as usize] = Some(b);
                    }
                    cursor = (cursor + k) % n;
                    for i in 0..n {
                        assert_eq!(
                            last_batch(i, b * k, k, n),
                            last[i as usize],
                            "n {n} k {k} batch {b} page {i}"
                        );
                    }
                }
            }
        }
        assert_eq!(last_batch(0, 0, 1, 4), None);
    }
}
