//! "softsev migration stream v1": the byte format a source VMM writes and a target VMM
//! reads when an SEV / SEV-ES guest moves (live migration, or a snapshot file). There
//! is no upstream format to follow — QEMU installs a migration blocker for SEV guests
//! (`target/i386/sev.c:sev_launch_finish`, "SEV: Migration is not implemented") — so
//! the format is softsev's own, with its own magic (not QEMU's `QEVM`); the layout is
//! specified in docs/migration.md.
//!
//! What the firmware protects and what this layer adds (shared/spec/sev-legacy.md §5.3,
//! §5.5): every guest page and (ES) VMSA travels as a transport packet
//! (SEND_UPDATE_DATA / SEND_UPDATE_VMSA: AES-128-CTR with the TEK, HMAC-SHA256 with the
//! TIK), so the firmware refuses a tampered packet (BAD_MEASUREMENT). Packets carry no
//! sequence number and no address, so the *stream* orders and counts them: every record
//! has a sequence number (refusing duplicated, replayed, dropped and reordered
//! records), pages come in declared rounds (a GFN at most once per round, the round's
//! page count checked), the end record carries the counts and a SHA-256 of every byte
//! before it, and nothing may follow it (refusing truncation and appended data). A host
//! that rewrites the stream consistently (relocating or replaying whole pages and
//! recomputing the digest) is caught by the guest's own ledger of page hashes
//! (`softsev_guest::workload::verify_after_move`), not here.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! stream  = file-header record* end-record
//! file-header = "SSEVMIG\n" (8) ‖ u32 version = 1 ‖ u32 flags = 0
//! record  = u16 kind ‖ u16 reserved = 0 ‖ u32 seq ‖ u32 len ‖ payload[len]
//! kind 1 HEADER   u32 policy ‖ PDH cert (0x824) ‖ session (0x80) ‖ u32 n ‖ JSON machine (n)
//! kind 2 ROUND    u32 round ‖ u32 reserved ‖ u64 pages
//! kind 3 PAGE     u64 gfn ‖ packet header (0x34) ‖ ciphertext (4096)
//! kind 4 VCPU     u32 vcpu ‖ u32 reserved ‖ register file (VMSA layout, 4096)   (SEV)
//! kind 5 VMSA     u32 vcpu ‖ u32 reserved ‖ packet header (0x34) ‖ ciphertext (4096) (ES)
//! kind 6 END      u32 rounds ‖ u32 vcpus ‖ u64 pages ‖ u64 records ‖ SHA-256 (32)
//! ```

use serde::{Deserialize, Serialize};
use softsev_abi::sev_buf::{SevPacketHeader, SevSession};
use softsev_abi::sev_cert::SevCert;
use softsev_abi::vmsa::Vmsa;
use softsev_crypto::hash::Sha256;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use zerocopy::{FromBytes, IntoBytes};

/// The first 8 bytes of a stream.
pub const MAGIC: [u8; 8] = *b"SSEVMIG\n";
/// The version this module writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 16;
/// Bytes of a record header (kind, reserved, seq, len).
pub const RECORD_HEADER_LEN: usize = 12;
/// A guest page.
pub const PAGE_LEN: usize = 4096;
/// Bytes of a packet header (`SevPacketHeader`).
pub const PACKET_HEADER_LEN: usize = 0x34;
/// Payload of a PAGE record.
pub const PAGE_RECORD_LEN: usize = 8 + PACKET_HEADER_LEN + PAGE_LEN;
/// Payload of a VCPU record.
pub const VCPU_RECORD_LEN: usize = 8 + PAGE_LEN;
/// Payload of a VMSA record.
pub const VMSA_RECORD_LEN: usize = 8 + PACKET_HEADER_LEN + PAGE_LEN;
/// Payload of a ROUND record.
pub const ROUND_RECORD_LEN: usize = 16;
/// Payload of an END record.
pub const END_RECORD_LEN: usize = 24 + 32;
/// Most bytes of the JSON machine description a reader accepts.
pub const MAX_MACHINE_JSON: usize = 64 << 10;
/// Fixed part of the HEADER payload (policy, PDH, session, JSON length).
pub const HEADER_FIXED_LEN: usize = 4 + softsev_abi::sev_buf::SEV_CERT_LEN + 0x80 + 4;
/// Bytes a stream adds per page sent (record header + PAGE payload).
pub const BYTES_PER_PAGE: u64 = (RECORD_HEADER_LEN + PAGE_RECORD_LEN) as u64;

const _: () = assert!(SevPacketHeader::LEN == PACKET_HEADER_LEN);
const _: () = assert!(SevSession::LEN == 0x80);
const _: () = assert!(size_of::<Vmsa>() == PAGE_LEN);

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum RecordKind {
    /// The stream header: policy, source PDH, session, machine description.
    Header = 1,
    /// A round of pages starts.
    Round = 2,
    /// One guest page as a transport packet.
    Page = 3,
    /// One vCPU's register file in the clear (plain SEV, as QEMU sends CPU state).
    Vcpu = 4,
    /// One vCPU's VMSA as a transport packet (SEV-ES).
    Vmsa = 5,
    /// The end: counts and the stream digest.
    End = 6,
}

impl RecordKind {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => RecordKind::Header,
            2 => RecordKind::Round,
            3 => RecordKind::Page,
            4 => RecordKind::Vcpu,
            5 => RecordKind::Vmsa,
            6 => RecordKind::End,
            _ => return None,
        })
    }
}

/// The guest's SEV mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestMode {
    /// Plain SEV.
    Sev,
    /// SEV-ES.
    SevEs,
}

/// A guest-physical RAM region of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDesc {
    /// Start GPA.
    pub gpa: u64,
    /// Bytes.
    pub size: u64,
}

/// The workload the guest runs (mirrors `softsev_guest::workload::WorkloadConfig` in
/// a stable, serialisable form: the target's guest needs the same configuration to
/// check itself after the move).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDesc {
    /// First GPA of the pages the workload writes.
    pub pages_gpa: u64,
    /// Bytes of that range.
    pub pages_len: u64,
    /// GPA of the ledger (header + one SHA-256 per page).
    pub ledger: u64,
    /// Content seed, hex.
    pub seed: String,
    /// Pages written per batch.
    pub pages_per_batch: u32,
    /// The port of the per-batch exit.
    pub exit_port: u16,
}

/// What the target needs to rebuild the machine and check that it is the same one
/// (QEMU's target is started with the same options and refuses a mismatching RAM
/// layout; softsev's target checks this description against its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineDesc {
    /// SEV or SEV-ES.
    pub mode: GuestMode,
    /// The source's CPU product (informational; policy decides where a guest may go).
    pub product: String,
    /// vCPUs.
    pub vcpus: u32,
    /// RAM size in bytes.
    pub ram_size: u64,
    /// The memslots, ascending.
    pub regions: Vec<RegionDesc>,
    /// The KVM initialisation of the source (`KVM_SEV_INIT`, `KVM_SEV_ES_INIT`,
    /// `KVM_SEV_INIT2`).
    pub kvm_init: String,
    /// The KVM VM type.
    pub vm_type: u32,
    /// The OVMF secret area `(base, size)`.
    pub secret_area: Option<(u32, u32)>,
    /// The running workload, if any.
    pub workload: Option<WorkloadDesc>,
    /// The guest's launch digest at the source, hex (informational).
    pub launch_digest: String,
}

impl MachineDesc {
    /// The region holding `gfn`, if any.
    pub fn holds_gfn(&self, gfn: u64) -> bool {
        let Some(gpa) = gfn.checked_mul(PAGE_LEN as u64) else {
            return false;
        };
        self.regions
            .iter()
            .any(|r| gpa >= r.gpa && gpa - r.gpa < r.size)
    }

    /// Pages of RAM in the regions.
    pub fn total_pages(&self) -> u64 {
        self.regions.iter().map(|r| r.size / PAGE_LEN as u64).sum()
    }
}

/// The HEADER record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// The guest policy SEND_START returned (RECEIVE_START's `policy`).
    pub policy: u32,
    /// The source platform's PDH certificate (RECEIVE_START's `pdh`).
    pub source_pdh: SevCert,
    /// The session SEND_START made (RECEIVE_START's `session`).
    pub session: SevSession,
    /// The machine.
    pub machine: MachineDesc,
}

/// A PAGE record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRecord {
    /// Guest frame number.
    pub gfn: u64,
    /// The packet header (flags, IV, MAC).
    pub header: SevPacketHeader,
    /// The ciphertext (4096 bytes).
    pub data: Vec<u8>,
}

/// A vCPU's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VcpuRecord {
    /// Plain SEV: the register file in the clear.
    Regs {
        /// vCPU id.
        vcpu: u32,
        /// The register file.
        regs: Box<Vmsa>,
    },
    /// SEV-ES: the VMSA as a transport packet.
    Vmsa {
        /// vCPU id.
        vcpu: u32,
        /// Packet header.
        header: SevPacketHeader,
        /// Ciphertext (4096 bytes).
        data: Vec<u8>,
    },
}

impl VcpuRecord {
    /// The vCPU id.
    pub fn vcpu(&self) -> u32 {
        match self {
            VcpuRecord::Regs { vcpu, .. } | VcpuRecord::Vmsa { vcpu, .. } => *vcpu,
        }
    }
}

/// The END record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRecord {
    /// Rounds.
    pub rounds: u32,
    /// vCPU records.
    pub vcpus: u32,
    /// PAGE records.
    pub pages: u64,
    /// Records before END (HEADER included).
    pub records: u64,
    /// SHA-256 of every stream byte before the END record.
    pub sha256: [u8; 32],
}

/// One item read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// The header (always first).
    Header(Box<StreamHeader>),
    /// A round starts with this many pages.
    Round {
        /// Round number (1, 2, …).
        round: u32,
        /// Pages the round carries.
        pages: u64,
    },
    /// A page.
    Page(PageRecord),
    /// A vCPU.
    Vcpu(VcpuRecord),
    /// The end (checked: counts, digest, nothing after it).
    End(EndRecord),
}

/// Why a stream is refused.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading failed.
    #[error("migration stream: read error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended early.
    #[error("migration stream truncated: {0}")]
    Truncated(String),
    /// Not a softsev migration stream.
    #[error("not a softsev migration stream (magic {0:02x?}, expected \"SSEVMIG\\n\")")]
    BadMagic([u8; 8]),
    /// Another version.
    #[error("softsev migration stream version {0} (this softsev reads version 1)")]
    Version(u32),
    /// A record's sequence number is not the next one.
    #[error(
        "migration stream record {got} where record {expected} was due: {}",
        if *got < *expected { "a duplicated or replayed record" } else { "a record is missing or out of order" }
    )]
    Sequence {
        /// The sequence number due.
        expected: u64,
        /// The one found.
        got: u64,
    },
    /// A malformed or misplaced record.
    #[error("migration stream record {seq}: {reason}")]
    Record {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

/// Writes a stream. Every method appends one record; [`StreamWriter::finish`] writes
/// the END record.
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    out: W,
    sha: Sha256,
    seq: u64,
    bytes: u64,
    rounds: u32,
    vcpus: u32,
    pages: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Write the file header and the HEADER record.
    pub fn new(out: W, header: &StreamHeader) -> io::Result<Self> {
        let mut w = StreamWriter {
            out,
            sha: Sha256::new(),
            seq: 0,
            bytes: 0,
            rounds: 0,
            vcpus: 0,
            pages: 0,
        };
        let mut fh = MAGIC.to_vec();
        fh.extend_from_slice(&VERSION.to_le_bytes());
        fh.extend_from_slice(&0u32.to_le_bytes());
        w.raw(&fh)?;
        let json = serde_json::to_vec(&header.machine).map_err(io::Error::other)?;
        let mut p = Vec::with_capacity(HEADER_FIXED_LEN + json.len());
        p.extend_from_slice(&header.policy.to_le_bytes());
        p.extend_from_slice(header.source_pdh.as_bytes());
        p.extend_from_slice(header.session.as_bytes());
        p.extend_from_slice(&(json.len() as u32).to_le_bytes());
        p.extend_from_slice(&json);
        w.record(RecordKind::Header, &[&p])?;
        Ok(w)
    }

    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.sha.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn record(&mut self, kind: RecordKind, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[..2].copy_from_slice(&(kind as u16).to_le_bytes());
        h[4..8].copy_from_slice(&(self.seq as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        self.raw(&h)?;
        for p in parts {
            self.raw(p)?;
        }
        self.seq += 1;
        Ok(())
    }

    /// Start round `self.rounds + 1` of `pages` pages.
    pub fn round(&mut self, pages: u64) -> io::Result<u32> {
        self.rounds += 1;
        let mut p = [0u8; ROUND_RECORD_LEN];
        p[..4].copy_from_slice(&self.rounds.to_le_bytes());
        p[8..].copy_from_slice(&pages.to_le_bytes());
        self.record(RecordKind::Round, &[&p])?;
        Ok(self.rounds)
    }

    /// One page packet.
    pub fn page(&mut self, gfn: u64, header: &SevPacketHeader, data: &[u8]) -> io::Result<()> {
        if data.len() != PAGE_LEN {
            return Err(io::Error::other(format!(
                "a page packet carries {PAGE_LEN} bytes, not {}",
                data.len()
            )));
        }
        self.pages += 1;
        self.record(
            RecordKind::Page,
            &[&gfn.to_le_bytes(), header.as_bytes(), data],
        )
    }

    /// One vCPU's state.
    pub fn vcpu(&mut self, v: &VcpuRecord) -> io::Result<()> {
        self.vcpus += 1;
        match v {
            VcpuRecord::Regs { vcpu, regs } => {
                let id = [vcpu.to_le_bytes(), [0; 4]].concat();
                self.record(RecordKind::Vcpu, &[&id, regs.as_bytes()])
            }
            VcpuRecord::Vmsa { vcpu, header, data } => {
                if data.len() != PAGE_LEN {
                    return Err(io::Error::other("a VMSA packet carries 4096 bytes"));
                }
                let id = [vcpu.to_le_bytes(), [0; 4]].concat();
                self.record(RecordKind::Vmsa, &[&id, header.as_bytes(), data])
            }
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Rounds started so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Write the END record, flush, and return the writer and the END record.
    pub fn finish(mut self) -> io::Result<(W, EndRecord, u64)> {
        let sha = std::mem::take(&mut self.sha).finish();
        let end = EndRecord {
            rounds: self.rounds,
            vcpus: self.vcpus,
            pages: self.pages,
            records: self.seq,
            sha256: sha,
        };
        let mut p = Vec::with_capacity(END_RECORD_LEN);
        p.extend_from_slice(&end.rounds.to_le_bytes());
        p.extend_from_slice(&end.vcpus.to_le_bytes());
        p.extend_from_slice(&end.pages.to_le_bytes());
        p.extend_from_slice(&end.records.to_le_bytes());
        p.extend_from_slice(&end.sha256);
        // The END record is not part of its own digest.
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[..2].copy_from_slice(&(RecordKind::End as u16).to_le_bytes());
        h[4..8].copy_from_slice(&(self.seq as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(p.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&p)?;
        self.out.flush()?;
        let total = self.bytes + (RECORD_HEADER_LEN + p.len()) as u64;
        Ok((self.out, end, total))
    }
}

/// Where the reader is in the stream's grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    FileHeader,
    Header,
    /// Rounds may start; inside round `round` with `left` pages to come.
    Rounds {
        round: u32,
        left: u64,
    },
    Vcpus,
    Done,
}

/// Reads and checks a stream item by item (see the module docs for what it refuses).
#[derive(Debug)]
pub struct StreamReader<R: Read> {
    input: R,
    sha: Sha256,
    seq: u64,
    phase: Phase,
    mode: Option<GuestMode>,
    machine: Option<MachineDesc>,
    seen: HashSet<u64>,
    vcpus_seen: HashSet<u32>,
    pages: u64,
    bytes: u64,
}

impl<R: Read> StreamReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        StreamReader {
            input,
            sha: Sha256::new(),
            seq: 0,
            phase: Phase::FileHeader,
            mode: None,
            machine: None,
            seen: HashSet::new(),
            vcpus_seen: HashSet::new(),
            pages: 0,
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fill `buf` completely; `Ok(false)` at a clean EOF before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, StreamError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => {
                    if got == 0 {
                        return Ok(false);
                    }
                    return Err(StreamError::Truncated(format!(
                        "{got} of {} bytes of a record",
                        buf.len()
                    )));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.bytes += buf.len() as u64;
        Ok(true)
    }

    fn bad(&self, reason: impl Into<String>) -> StreamError {
        StreamError::Record {
            seq: self.seq,
            reason: reason.into(),
        }
    }

    /// The next item. After [`Item::End`] the stream is complete and checked; calling
    /// again is an error.
    pub fn next_item(&mut self) -> Result<Item, StreamError> {
        if self.phase == Phase::FileHeader {
            let mut fh = [0u8; FILE_HEADER_LEN];
            if !self.fill(&mut fh)? {
                return Err(StreamError::Truncated("empty stream".into()));
            }
            let mut magic = [0u8; 8];
            magic.copy_from_slice(&fh[..8]);
            if magic != MAGIC {
                return Err(StreamError::BadMagic(magic));
            }
            let v = le32(&fh, 8);
            if v != VERSION {
                return Err(StreamError::Version(v));
            }
            if le32(&fh, 12) != 0 {
                return Err(StreamError::Record {
                    seq: 0,
                    reason: format!("file header flags {:#x}, expected 0", le32(&fh, 12)),
                });
            }
            self.sha.update(&fh);
            self.phase = Phase::Header;
        }
        if self.phase == Phase::Done {
            return Err(self.bad("read past the END record"));
        }
        let mut rh = [0u8; RECORD_HEADER_LEN];
        if !self.fill(&mut rh)? {
            return Err(StreamError::Truncated(format!(
                "the stream ends after {} records without an END record",
                self.seq
            )));
        }
        let kind_raw = u16::from_le_bytes([rh[0], rh[1]]);
        let rsvd = u16::from_le_bytes([rh[2], rh[3]]);
        let seq = u64::from(le32(&rh, 4));
        let len = le32(&rh, 8) as usize;
        if seq != self.seq {
            return Err(StreamError::Sequence {
                expected: self.seq,
                got: seq,
            });
        }
        let Some(kind) = RecordKind::from_u16(kind_raw) else {
            return Err(self.bad(format!("unknown record kind {kind_raw}")));
        };
        if rsvd != 0 {
            return Err(self.bad(format!("reserved field {rsvd:#x}, expected 0")));
        }
        let want = match kind {
            RecordKind::Header => None,
            RecordKind::Round => Some(ROUND_RECORD_LEN),
            RecordKind::Page => Some(PAGE_RECORD_LEN),
            RecordKind::Vcpu => Some(VCPU_RECORD_LEN),
            RecordKind::Vmsa => Some(VMSA_RECORD_LEN),
            RecordKind::End => Some(END_RECORD_LEN),
        };
        match want {
            Some(w) if w != len => {
                return Err(self.bad(format!("{kind:?} record of {len} bytes, expected {w}")));
            }
            None if !(HEADER_FIXED_LEN..=HEADER_FIXED_LEN + MAX_MACHINE_JSON).contains(&len) => {
                return Err(self.bad(format!("HEADER record of {len} bytes")));
            }
            _ => {}
        }
        let mut p = vec![0u8; len];
        if len > 0 && !self.fill(&mut p)? {
            return Err(StreamError::Truncated(format!(
                "record {} ends after its header",
                self.seq
            )));
        }
        if kind == RecordKind::End {
            let item = self.end(&p)?;
            self.seq += 1;
            return Ok(item);
        }
        self.sha.update(&rh);
        self.sha.update(&p);
        let item = self.item(kind, &p)?;
        self.seq += 1;
        Ok(item)
    }

    fn item(&mut self, kind: RecordKind, p: &[u8]) -> Result<Item, StreamError> {
        match (kind, self.phase) {
            (RecordKind::Header, Phase::Header) => {
                let policy = le32(p, 0);
                let cert_end = 4 + softsev_abi::sev_buf::SEV_CERT_LEN;
                let source_pdh =
                    SevCert::read_from_bytes(&p[4..cert_end]).map_err(|_| self.bad("short PDH"))?;
                let session = SevSession::read_from_bytes(&p[cert_end..cert_end + 0x80])
                    .map_err(|_| self.bad("short session"))?;
                let n = le32(p, cert_end + 0x80) as usize;
                let json = &p[HEADER_FIXED_LEN..];
                if n != json.len() {
                    return Err(self.bad(format!(
                        "machine description of {n} bytes in {} bytes",
                        json.len()
                    )));
                }
                let machine: MachineDesc = serde_json::from_slice(json)
                    .map_err(|e| self.bad(format!("machine description: {e}")))?;
                if machine.vcpus == 0 || machine.vcpus > 4096 {
                    return Err(self.bad(format!("{} vCPUs", machine.vcpus)));
                }
                self.mode = Some(machine.mode);
                self.machine = Some(machine.clone());
                self.phase = Phase::Rounds { round: 0, left: 0 };
                Ok(Item::Header(Box::new(StreamHeader {
                    policy,
                    source_pdh,
                    session,
                    machine,
                })))
            }
            (RecordKind::Header, _) => Err(self.bad("a second HEADER record")),
            (_, Phase::Header) => Err(self.bad(format!("{kind:?} record before the HEADER"))),
            (RecordKind::Round, Phase::Rounds { round, left }) => {
                if left != 0 {
                    return Err(self.bad(format!(
                        "round {} starts with {left} pages of round {round} missing",
                        round + 1
                    )));
                }
                let r = le32(p, 0);
                let pages = le64(p, 8);
                if r != round + 1 || le32(p, 4) != 0 {
                    return Err(self.bad(format!("round {r} after round {round}")));
                }
                let total = self.machine.as_ref().map_or(0, MachineDesc::total_pages);
                if pages > total {
                    return Err(self.bad(format!(
                        "round {r} of {pages} pages in a guest of {total} pages"
                    )));
                }
                self.seen.clear();
                self.phase = Phase::Rounds {
                    round: r,
                    left: pages,
                };
                Ok(Item::Round { round: r, pages })
            }
            (RecordKind::Round, _) => Err(self.bad("a ROUND record after the vCPU records")),
            (RecordKind::Page, Phase::Rounds { round, left }) => {
                if round == 0 {
                    return Err(self.bad("a PAGE record before the first ROUND"));
                }
                if left == 0 {
                    return Err(self.bad(format!("more pages than round {round} declared")));
                }
                let gfn = le64(p, 0);
                if !self.machine.as_ref().is_some_and(|m| m.holds_gfn(gfn)) {
                    return Err(self.bad(format!("GFN {gfn:#x} is outside the guest's RAM")));
                }
                if !self.seen.insert(gfn) {
                    return Err(self.bad(format!("GFN {gfn:#x} twice in round {round}")));
                }
                let header = SevPacketHeader::read_from_bytes(&p[8..8 + PACKET_HEADER_LEN])
                    .map_err(|_| self.bad("short packet header"))?;
                self.pages += 1;
                self.phase = Phase::Rounds {
                    round,
                    left: left - 1,
                };
                Ok(Item::Page(PageRecord {
                    gfn,
                    header,
                    data: p[8 + PACKET_HEADER_LEN..].to_vec(),
                }))
            }
            (RecordKind::Page, _) => Err(self.bad("a PAGE record after the vCPU records")),
            (RecordKind::Vcpu | RecordKind::Vmsa, Phase::Rounds { round, left }) => {
                if round == 0 {
                    return Err(self.bad("vCPU state before any page round"));
                }
                if left != 0 {
                    return Err(self.bad(format!(
                        "vCPU state with {left} pages of round {round} missing"
                    )));
                }
                self.phase = Phase::Vcpus;
                self.vcpu(kind, p)
            }
            (RecordKind::Vcpu | RecordKind::Vmsa, Phase::Vcpus) => self.vcpu(kind, p),
            (RecordKind::End, _) | (_, Phase::FileHeader | Phase::Done) => {
                Err(self.bad("unexpected record"))
            }
        }
    }

    fn vcpu(&mut self, kind: RecordKind, p: &[u8]) -> Result<Item, StreamError> {
        let id = le32(p, 0);
        let vcpus = self.machine.as_ref().map_or(0, |m| m.vcpus);
        if id >= vcpus || le32(p, 4) != 0 {
            return Err(self.bad(format!("vCPU {id} in a guest of {vcpus} vCPUs")));
        }
        if !self.vcpus_seen.insert(id) {
            return Err(self.bad(format!("vCPU {id} twice")));
        }
        let rec = match (kind, self.mode) {
            (RecordKind::Vcpu, Some(GuestMode::Sev)) => VcpuRecord::Regs {
                vcpu: id,
                regs: Box::new(
                    Vmsa::read_from_bytes(&p[8..]).map_err(|_| self.bad("short register file"))?,
                ),
            },
            (RecordKind::Vmsa, Some(GuestMode::SevEs)) => VcpuRecord::Vmsa {
                vcpu: id,
                header: SevPacketHeader::read_from_bytes(&p[8..8 + PACKET_HEADER_LEN])
                    .map_err(|_| self.bad("short packet header"))?,
                data: p[8 + PACKET_HEADER_LEN..].to_vec(),
            },
            (k, m) => {
                return Err(self.bad(format!(
                    "{k:?} record for a {m:?} guest (SEV sends VCPU, SEV-ES VMSA)"
                )));
            }
        };
        Ok(Item::Vcpu(rec))
    }

    fn end(&mut self, p: &[u8]) -> Result<Item, StreamError> {
        let (round, left) = match self.phase {
            Phase::Vcpus => (0, 0),
            Phase::Rounds { round, left } => (round, left),
            _ => return Err(self.bad("END before the HEADER")),
        };
        if left != 0 {
            return Err(self.bad(format!("END with {left} pages of round {round} missing")));
        }
        let vcpus = self.machine.as_ref().map_or(0, |m| m.vcpus);
        if self.vcpus_seen.len() as u32 != vcpus {
            return Err(self.bad(format!(
                "END after {} of {vcpus} vCPU records",
                self.vcpus_seen.len()
            )));
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&p[24..56]);
        let end = EndRecord {
            rounds: le32(p, 0),
            vcpus: le32(p, 4),
            pages: le64(p, 8),
            records: le64(p, 16),
            sha256,
        };
        let got = std::mem::take(&mut self.sha).finish();
        let counts_ok = end.vcpus == vcpus && end.pages == self.pages && end.records == self.seq;
        if !counts_ok {
            return Err(self.bad(format!(
                "END counts {} vCPUs, {} pages, {} records; the stream had {vcpus}, {}, {}",
                end.vcpus, end.pages, end.records, self.pages, self.seq
            )));
        }
        if !softsev_crypto::ct::ct_eq(&got, &end.sha256) {
            return Err(self.bad("the stream's SHA-256 does not match its END record"));
        }
        // Nothing may follow.
        let mut extra = [0u8; 1];
        loop {
            match self.input.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(self.bad("data after the END record")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.phase = Phase::Done;
        Ok(Item::End(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn machine(mode: GuestMode) -> MachineDesc {
        MachineDesc {
            mode,
            product: "Milan".into(),
            vcpus: 2,
            ram_size: 1 << 20,
            regions: vec![RegionDesc {
                gpa: 0,
                size: 1 << 20,
            }],
            kvm_init: "KVM_SEV_INIT".into(),
            vm_type: 0,
            secret_area: Some((0x8_0000, 0xC00)),
            workload: None,
            launch_digest: "00".into(),
        }
    }

    fn header(mode: GuestMode) -> StreamHeader {
        StreamHeader {
            policy: 0x1,
            source_pdh: SevCert::new_zeroed(),
            session: SevSession::new_zeroed(),
            machine: machine(mode),
        }
    }

    fn sample(mode: GuestMode) -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new(), &header(mode)).unwrap();
        w.round(2).unwrap();
        let h = SevPacketHeader::new_zeroed();
        w.page(1, &h, &[1; PAGE_LEN]).unwrap();
        w.page(7, &h, &[7; PAGE_LEN]).unwrap();
        w.round(1).unwrap();
        w.page(1, &h, &[2; PAGE_LEN]).unwrap();
        for v in 0..2 {
            let rec = match mode {
                GuestMode::Sev => VcpuRecord::Regs {
                    vcpu: v,
                    regs: Box::new(Vmsa::new_zeroed()),
                },
                GuestMode::SevEs => VcpuRecord::Vmsa {
                    vcpu: v,
                    header: h,
                    data: vec![0; PAGE_LEN],
                },
            };
            w.vcpu(&rec).unwrap();
        }
        let (out, end, total) = w.finish().unwrap();
        assert_eq!(end.pages, 3);
        assert_eq!(end.records, 1 + 2 + 3 + 2);
        assert_eq!(total, out.len() as u64);
        out
    }

    fn read_all(b: &[u8]) -> Result<Vec<Item>, StreamError> {
        let mut r = StreamReader::new(b);
        let mut items = Vec::new();
        loop {
            let it = r.next_item()?;
            let end = matches!(it, Item::End(_));
            items.push(it);
            if end {
                return Ok(items);
            }
        }
    }

    /// Byte offset of record `n` (0 = HEADER).
    fn record_at(b: &[u8], n: usize) -> usize {
        let mut at = FILE_HEADER_LEN;
        for _ in 0..n {
            at += RECORD_HEADER_LEN + le32(b, at + 8) as usize;
        }
        at
    }

    fn reseal(b: &mut [u8]) {
        // Recompute the END digest as a host that rewrites the stream would.
        let end = b.len() - (RECORD_HEADER_LEN + END_RECORD_LEN);
        let sha = softsev_crypto::hash::sha256(&b[..end]);
        let n = b.len();
        b[n - 32..].copy_from_slice(&sha);
    }

    #[test]
    fn round_trip_sev_and_es() {
        for mode in [GuestMode::Sev, GuestMode::SevEs] {
            let b = sample(mode);
            let items = read_all(&b).unwrap();
            assert!(matches!(&items[0], Item::Header(h) if h.machine.mode == mode));
            assert_eq!(items.len(), 1 + 2 + 3 + 2 + 1);
            let pages: Vec<u64> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Page(p) => Some(p.gfn),
                    _ => None,
                })
                .collect();
            assert_eq!(pages, [1, 7, 1], "a page may come again in a later round");
        }
    }

    #[test]
    fn truncation_anywhere_is_refused() {
        let b = sample(GuestMode::Sev);
        for cut in [
            0,
            5,
            FILE_HEADER_LEN,
            FILE_HEADER_LEN + 3,
            b.len() / 2,
            b.len() - 1,
        ] {
            let e = read_all(&b[..cut]).unwrap_err();
            assert!(matches!(e, StreamError::Truncated(_)), "cut {cut}: {e}");
        }
        // Cut exactly before the END record.
        let end = record_at(&b, 8);
        let e = read_all(&b[..end]).unwrap_err();
        assert!(e.to_string().contains("without an END record"), "{e}");
    }

    #[test]
    fn duplicated_and_reordered_records_are_refused() {
        let b = sample(GuestMode::Sev);
        let (p1, p2, p3) = (record_at(&b, 2), record_at(&b, 3), record_at(&b, 4));
        // Duplicate record 2 (a page).
        let mut d = b[..p2].to_vec();
        d.extend_from_slice(&b[p1..p2]);
        d.extend_from_slice(&b[p2..]);
        let e = read_all(&d).unwrap_err();
        assert!(e.to_string().contains("duplicated or replayed"), "{e}");
        // Swap records 2 and 3.
        let mut s = b[..p1].to_vec();
        s.extend_from_slice(&b[p2..p3]);
        s.extend_from_slice(&b[p1..p2]);
        s.extend_from_slice(&b[p3..]);
        let e = read_all(&s).unwrap_err();
        assert!(e.to_string().contains("missing or out of order"), "{e}");
        // Drop record 3.
        let mut m = b[..p2].to_vec();
        m.extend_from_slice(&b[p3..]);
        assert!(matches!(
            read_all(&m).unwrap_err(),
            StreamError::Sequence { .. }
        ));
    }

    #[test]
    fn rewritten_sequence_numbers_still_break_the_rounds_or_digest() {
        let b = sample(GuestMode::Sev);
        // A host duplicates page gfn 7 inside round 1 and renumbers everything after
        // it: the round's declared count and the GFN-once rule refuse it.
        let (p2, p3) = (record_at(&b, 3), record_at(&b, 4));
        let mut d = b[..p3].to_vec();
        d.extend_from_slice(&b[p2..p3]);
        d.extend_from_slice(&b[p3..]);
        let mut at = FILE_HEADER_LEN;
        let mut seq = 0u32;
        while at < d.len() {
            d[at + 4..at + 8].copy_from_slice(&seq.to_le_bytes());
            at += RECORD_HEADER_LEN + le32(&d, at + 8) as usize;
            seq += 1;
        }
        let e = read_all(&d).unwrap_err();
        assert!(e.to_string().contains("more pages than round 1"), "{e}");
        // And with the round's count raised to match (and the digest resealed), the
        // GFN-once rule refuses the replayed page.
        let r1 = record_at(&d, 1) + RECORD_HEADER_LEN;
        d[r1 + 8..r1 + 16].copy_from_slice(&3u64.to_le_bytes());
        reseal(&mut d);
        let e = read_all(&d).unwrap_err();
        assert!(e.to_string().contains("twice in round 1"), "{e}");
        // A flipped ciphertext byte with the digest left alone: the digest refuses it
        // (the firmware's MAC refuses it too, earlier, when the page is received).
        let mut t = b.clone();
        t[record_at(&b, 2) + RECORD_HEADER_LEN + 100] ^= 1;
        let e = read_all(&t).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        // Resealed: the stream layer accepts it; only the firmware MAC can tell.
        reseal(&mut t);
        read_all(&t).unwrap();
    }

    #[test]
    fn structure_errors() {
        let b = sample(GuestMode::Sev);
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(matches!(
            read_all(&bad).unwrap_err(),
            StreamError::BadMagic(_)
        ));
        let mut bad = b.clone();
        bad[8] = 2;
        assert!(matches!(
            read_all(&bad).unwrap_err(),
            StreamError::Version(2)
        ));
        let mut bad = b.clone();
        bad.push(0);
        assert!(
            read_all(&bad)
                .unwrap_err()
                .to_string()
                .contains("after the END")
        );
        // GFN outside RAM (resealed so only the structural check speaks).
        let mut bad = b.clone();
        let at = record_at(&b, 2) + RECORD_HEADER_LEN;
        bad[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        reseal(&mut bad);
        assert!(
            read_all(&bad)
                .unwrap_err()
                .to_string()
                .contains("outside the guest's RAM")
        );
        // An ES stream with a clear register record.
        let es = sample(GuestMode::SevEs);
        let at = record_at(&es, 6);
        let mut bad = es[..at].to_vec();
        bad.extend_from_slice(&(RecordKind::Vcpu as u16).to_le_bytes());
        bad.extend_from_slice(&[0, 0]);
        bad.extend_from_slice(&6u32.to_le_bytes());
        bad.extend_from_slice(&(VCPU_RECORD_LEN as u32).to_le_bytes());
        bad.extend_from_slice(&[0; VCPU_RECORD_LEN]);
        let e = read_all(&bad).unwrap_err().to_string();
        assert!(e.contains("SEV sends VCPU"), "{e}");
    }
}
