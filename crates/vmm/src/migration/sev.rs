//! The SEV / SEV-ES migration engine over the host's SEND_* / RECEIVE_* API
//! (shared/spec/sev-legacy.md §5.1–§5.5, §5.7, §7.2): what QEMU's SEV live-migration
//! series does in `sev_save_setup` / `sev_save_outgoing_page` / `sev_load_incoming_page`,
//! with softsev's stream ([`super::stream`]).
//!
//! Source ([`send`]): KVM_MEM_LOG_DIRTY_PAGES on every memslot, SEND_START to the
//! target's certificates (the firmware refuses NOSEND, DOMAIN with a foreign chip, SEV
//! with a non-AMD chain, a bad PDH — before any page moves), round 1 = every resident
//! page (mincore: untouched memory costs nothing), then rounds of the pages
//! KVM_GET_DIRTY_LOG reports while the guest keeps running its workload, then a
//! stop-and-copy (the vCPU stopped at a batch boundary; the last dirty pages; the vCPU
//! state: SEV registers in the clear as QEMU sends them, SEV-ES VMSAs as packets), and
//! SEND_FINISH. The guest is paced by a virtual clock: `bytes sent / max-bandwidth`
//! seconds have passed after each page, and the guest runs as many workload batches as
//! its dirty rate fits in that time, so rounds and bytes depend only on the seed and
//! the parameters. On any failure after SEND_START the source issues SEND_CANCEL and
//! its guest keeps running.
//!
//! Target ([`receive`]): the header is checked against the target's own machine,
//! RECEIVE_START with the source's PDH and session, RECEIVE_UPDATE_DATA per page
//! (the firmware's MAC refuses a tampered packet), the vCPU state, and only after the
//! END record checked RECEIVE_FINISH. On any failure the receiver is dropped without
//! RECEIVE_FINISH: the context is decommissioned with the VM and no guest can run.

use super::stream::{
    BYTES_PER_PAGE, GuestMode, Item, MachineDesc, PAGE_LEN, RegionDesc, StreamError, StreamHeader,
    StreamReader, StreamWriter, VcpuRecord, WorkloadDesc,
};
use crate::sev_run::{SevVm, Stage};
use softsev_abi::kvm::{KVM_MEM_LOG_DIRTY_PAGES, KvmDirtyLog, KvmUserspaceMemoryRegion2};
use softsev_abi::sev_buf::SEV_CERT_LEN;
use softsev_abi::sev_cert::SevCert;
use softsev_host::launch::{LaunchError, SevInit, SevPacket, SevReceiver, SevTargetCerts};
use softsev_host::{Hva, KvmError, VcpuExit};
use std::io::{Read, Write};

/// The target platform's certificates SEND_START takes (the host's type).
pub use softsev_host::launch::SevTargetCerts as TargetCerts;
use std::time::{Duration, Instant};
use zerocopy::FromBytes;

/// Most pre-copy rounds before the stop-and-copy is forced (QEMU keeps iterating; a
/// bound keeps a guest that dirties faster than the bandwidth from migrating forever).
pub const MAX_ROUNDS: u32 = 30;

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The stream was refused.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A SEND/RECEIVE step failed (the firmware's status is in the error).
    #[error("{0}")]
    Launch(#[from] LaunchError),
    /// A KVM call around the migration failed.
    #[error("{step}: {err}")]
    Kvm {
        /// What was being done.
        step: String,
        /// The error.
        err: KvmError,
    },
    /// Writing the stream failed.
    #[error("writing the migration stream: {0}")]
    Io(#[from] std::io::Error),
    /// The VM is not in a state to do this.
    #[error("{0}")]
    State(String),
    /// The stream's machine is not this machine.
    #[error("the migration stream's machine does not match this one: {0}")]
    Mismatch(String),
    /// The guest's workload failed while the VMM ran it.
    #[error("the guest's workload: {0}")]
    Guest(String),
}

impl MigrationError {
    /// The firmware status, if a firmware command refused.
    pub fn fw_status(&self) -> Option<softsev_abi::FwStatus> {
        match self {
            MigrationError::Launch(e) => e.fw_status(),
            MigrationError::Kvm { err, .. } => err.fw,
            _ => None,
        }
    }
}

fn kvm(step: impl Into<String>) -> impl FnOnce(KvmError) -> MigrationError {
    let step = step.into();
    move |err| MigrationError::Kvm { step, err }
}

/// The guest's workload as the engine drives it: its description (sent in the stream
/// header for the target's check), the dirty rate it is paced at, and the batches run.
#[derive(Clone, Debug)]
pub struct WorkloadRun {
    /// The workload.
    pub desc: WorkloadDesc,
    /// Bytes per second the guest writes (virtual clock); 0: it does not run while
    /// pages are sent.
    pub dirty_rate: u64,
    /// Batches the guest completed (each ends at the exit to `desc.exit_port`).
    pub batches: u64,
    /// The vCPU is stopped at a batch boundary and may be run again.
    pub running: bool,
}

/// How to send.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The target platform's certificates; `None`: this platform's own (a snapshot
    /// restorable on this chip, sev-legacy.md §5.7).
    pub target: Option<SevTargetCerts>,
    /// Bytes per second of the channel (the virtual clock); 0: unlimited.
    pub max_bandwidth: u64,
    /// Stop-and-copy once the dirty pages fit in this many milliseconds.
    pub downtime_limit_ms: u64,
    /// Live pre-copy while the guest runs (else one round of the resident pages with
    /// the guest stopped: a snapshot).
    pub live: bool,
}

/// What a send did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SendReport {
    /// Rounds (1 = no dirty rounds).
    pub rounds: u32,
    /// Pages in each round.
    pub round_pages: Vec<u64>,
    /// PAGE records.
    pub pages_sent: u64,
    /// Pages of guest RAM.
    pub total_pages: u64,
    /// Resident pages at round 1.
    pub resident_pages: u64,
    /// Stream bytes.
    pub bytes: u64,
    /// Bytes sent while the guest ran.
    pub precopy_bytes: u64,
    /// Bytes sent after it stopped.
    pub downtime_bytes: u64,
    /// Workload batches the guest ran during the migration.
    pub batches_during: u64,
    /// The guest's batch counter when it stopped.
    pub batches_at_stop: u64,
    /// Wall time of SETUP (dirty logging, SEND_START, header), ms.
    pub setup_ms: f64,
    /// Wall time from the guest's stop to the stream's end, ms (the source's view of
    /// the downtime; a target measures to its RECEIVE_FINISH).
    pub downtime_ms: f64,
    /// Wall time of the whole send, ms.
    pub total_ms: f64,
    /// Virtual seconds the channel took at `max-bandwidth`.
    pub virtual_seconds: f64,
    /// Dirty pages per virtual second in the last dirty round.
    pub dirty_pages_rate: u64,
    /// The SHA-256 of the stream (its END record), hex.
    pub stream_sha256: String,
    /// The guest policy SEND_START returned.
    pub policy: u32,
    /// The wall-clock instant the guest stopped (for a target's downtime).
    #[serde(skip)]
    pub stopped_at: Option<Instant>,
}

/// What a receive did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReceiveReport {
    /// Rounds in the stream.
    pub rounds: u32,
    /// PAGE records received.
    pub pages: u64,
    /// vCPU records.
    pub vcpus: u32,
    /// Stream bytes read.
    pub bytes: u64,
    /// The guest policy.
    pub policy: u32,
    /// The source's machine description.
    pub source_product: String,
    /// Wall time, ms.
    pub total_ms: f64,
    /// When RECEIVE_FINISH completed.
    #[serde(skip)]
    pub finished_at: Option<Instant>,
}

/// The last migration of a VM and, on a target, the moved guest's own check.
#[derive(Clone, Debug, Default)]
pub struct MigrationState {
    /// The send (source).
    pub sent: Option<SendReport>,
    /// The receive (target).
    pub received: Option<ReceiveReport>,
    /// The moved guest's check of itself, serialised (target, after it ran).
    pub moved: Option<Result<serde_json::Value, String>>,
}

/// This platform's certificates as SEND_START takes them for a target (its PDH, PEK ‖
/// OCA ‖ CEK with the KDS-signed CEK, ASK ‖ ARK).
pub fn own_target_certs(vm: &mut SevVm) -> Result<SevTargetCerts, MigrationError> {
    let c = vm.owner_certificates().map_err(|e| {
        MigrationError::State(format!("exporting this platform's certificates: {e}"))
    })?;
    target_certs(&c.sev_chain, &c.ca)
}

/// [`SevTargetCerts`] from PDH ‖ PEK ‖ OCA ‖ CEK (4 × 0x824 bytes, as `softsev run`
/// writes certs/sev-chain.cert) and ASK ‖ ARK.
pub fn target_certs(sev_chain: &[u8], ca: &[u8]) -> Result<SevTargetCerts, MigrationError> {
    if sev_chain.len() != 4 * SEV_CERT_LEN {
        return Err(MigrationError::State(format!(
            "the target's SEV chain is {} bytes; PDH ‖ PEK ‖ OCA ‖ CEK is {:#x}",
            sev_chain.len(),
            4 * SEV_CERT_LEN
        )));
    }
    let pdh = SevCert::read_from_bytes(&sev_chain[..SEV_CERT_LEN])
        .map_err(|_| MigrationError::State("the target's PDH certificate".into()))?;
    Ok(SevTargetCerts {
        pdh,
        plat_certs: sev_chain[SEV_CERT_LEN..].to_vec(),
        amd_certs: ca.to_vec(),
    })
}

/// The machine description of `vm` for a stream header.
pub(crate) fn machine_desc(vm: &SevVm) -> MachineDesc {
    MachineDesc {
        mode: if vm.shape.es {
            GuestMode::SevEs
        } else {
            GuestMode::Sev
        },
        product: vm.product.name().to_string(),
        vcpus: vm.shape.vcpus,
        ram_size: vm.shape.ram_size,
        regions: vm
            .slots
            .iter()
            .map(|s| RegionDesc {
                gpa: s.gpa,
                size: s.size,
            })
            .collect(),
        kvm_init: vm.shape.kvm_init.command().to_string(),
        vm_type: vm.shape.kvm_init.vm_type().0,
        secret_area: vm.secret_area,
        workload: vm.workload.as_ref().map(|w| w.desc.clone()),
        launch_digest: hex::encode(vm.shape.launch_digest),
    }
}

/// Run the guest's workload for one batch: KVM_RUN of vCPU 0 until its exit to the
/// workload's port (QEMU's part of KVM_RUN for that OUT: nothing to emulate).
pub(crate) fn run_batch(vm: &mut SevVm) -> Result<(), MigrationError> {
    let Some(w) = vm.workload.as_mut().filter(|w| w.running) else {
        return Ok(());
    };
    let port = w.desc.exit_port;
    let Stage::Running(l) = &mut vm.stage else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    let Some(v) = l.vcpus_mut().first_mut() else {
        return Err(MigrationError::State("no vCPU 0".into()));
    };
    match v.run().map_err(kvm("KVM_RUN vCPU 0"))? {
        VcpuExit::Io { port: p, .. } if *p == port => {
            w.batches += 1;
            Ok(())
        }
        other => {
            w.running = false;
            Err(MigrationError::Guest(format!(
                "vCPU 0 exited with {other:?} instead of the batch exit to port {port:#x}"
            )))
        }
    }
}

/// The virtual clock: how many batches the guest has done by the time `bytes` were
/// sent at `bandwidth` bytes/s, writing `dirty_rate` bytes/s in batches of
/// `batch_bytes`.
fn batches_due(bytes: u64, bandwidth: u64, dirty_rate: u64, batch_bytes: u64) -> u64 {
    if bandwidth == 0 || batch_bytes == 0 {
        return 0;
    }
    let written = u128::from(bytes) * u128::from(dirty_rate) / u128::from(bandwidth);
    u64::try_from(written / u128::from(batch_bytes)).unwrap_or(u64::MAX)
}

/// Pages of each slot, resident (mincore) or dirty (KVM_GET_DIRTY_LOG), as GFNs.
fn resident_gfns(vm: &SevVm) -> Result<Vec<(usize, u64)>, MigrationError> {
    let mut out = Vec::new();
    for (i, s) in vm.slots.iter().enumerate() {
        let r = vm.mem.mincore(s.hva, s.size).map_err(kvm("mincore"))?;
        for (p, res) in r.iter().enumerate() {
            if *res {
                out.push((i, s.gpa / PAGE_LEN as u64 + p as u64));
            }
        }
    }
    Ok(out)
}

fn dirty_gfns(vm: &SevVm) -> Result<Vec<(usize, u64)>, MigrationError> {
    let mut out = Vec::new();
    for (i, s) in vm.slots.iter().enumerate() {
        let Stage::Running(l) = &vm.stage else {
            return Err(MigrationError::State("the guest is not running".into()));
        };
        let pages = s.size / PAGE_LEN as u64;
        let bytes = pages.div_ceil(64) * 8;
        let buf = vm
            .mem
            .mmap(bytes.max(8))
            .map_err(kvm("mmap the dirty bitmap"))?;
        let r = l
            .vm()
            .get_dirty_log(&KvmDirtyLog {
                slot: i as u32,
                pad: 0,
                dirty_bitmap: buf.0,
            })
            .map_err(kvm(format!("KVM_GET_DIRTY_LOG slot {i}")));
        let mut bm = vec![0u8; bytes as usize];
        let rd = vm
            .mem
            .read(buf, &mut bm)
            .map_err(kvm("read the dirty bitmap"));
        let _ = vm.mem.munmap(buf);
        r?;
        rd?;
        for (w, chunk) in bm.chunks(8).enumerate() {
            let mut x = [0u8; 8];
            x[..chunk.len()].copy_from_slice(chunk);
            let mut word = u64::from_le_bytes(x);
            while word != 0 {
                let b = word.trailing_zeros() as u64;
                word &= word - 1;
                let p = w as u64 * 64 + b;
                if p < pages {
                    out.push((i, s.gpa / PAGE_LEN as u64 + p));
                }
            }
        }
    }
    Ok(out)
}

fn set_dirty_logging(vm: &SevVm, on: bool) -> Result<(), MigrationError> {
    let Stage::Running(l) = &vm.stage else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    for (i, s) in vm.slots.iter().enumerate() {
        l.vm()
            .set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
                slot: i as u32,
                flags: if on { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
                guest_phys_addr: s.gpa,
                memory_size: s.size,
                userspace_addr: s.hva.0,
                ..Default::default()
            })
            .map_err(kvm(format!(
                "KVM_SET_USER_MEMORY_REGION2 slot {i} (dirty logging {})",
                if on { "on" } else { "off" }
            )))?;
    }
    Ok(())
}

/// Send the running guest of `vm` into `out` (see the module docs). `progress` is told
/// each status change and, every so often, the bytes sent.
pub fn send(
    vm: &mut SevVm,
    out: &mut dyn Write,
    opts: &SendOptions,
    progress: &mut dyn FnMut(SendProgress),
) -> Result<SendReport, MigrationError> {
    let t0 = Instant::now();
    if !matches!(vm.stage, Stage::Running(_)) {
        return Err(MigrationError::State(match vm.stage {
            Stage::Measured(_) => "SEV: the guest has not been started (LAUNCH_FINISH) yet".into(),
            Stage::Sent(_) => "SEV: the guest was already migrated (firmware state SENT)".into(),
            _ => "SEV: there is no running guest to migrate".into(),
        }));
    }
    let target = match &opts.target {
        Some(t) => t.clone(),
        None => own_target_certs(vm)?,
    };
    progress(SendProgress::Status(super::MigrationStatus::Setup));
    set_dirty_logging(vm, true)?;
    let Stage::Running(l) = &mut vm.stage else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    let started = match l.send_start(&target) {
        Ok(s) => s,
        Err(e) => {
            let _ = set_dirty_logging(vm, false);
            return Err(e.into());
        }
    };
    let r = send_after_start(vm, out, opts, started, t0, progress);
    if r.is_err()
        && let Stage::Running(l) = &mut vm.stage
    {
        // The source keeps the guest (§5.4: SEND_CANCEL → RUNNING).
        let _ = l.send_cancel();
        if let Some(w) = vm.workload.as_mut() {
            w.running = w.running && w.batches > 0;
        }
    }
    let _ = set_dirty_logging(vm, false);
    r
}

/// What [`send`] reports while it works.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SendProgress {
    /// A status change (setup, active, device).
    Status(super::MigrationStatus),
    /// Bytes sent so far and the total expected (resident pages at round 1).
    Bytes {
        /// Sent.
        sent: u64,
        /// Expected (grows with dirty rounds).
        expected: u64,
    },
}

fn send_after_start(
    vm: &mut SevVm,
    out: &mut dyn Write,
    opts: &SendOptions,
    started: softsev_host::launch::SevSendStartOut,
    t0: Instant,
    progress: &mut dyn FnMut(SendProgress),
) -> Result<SendReport, MigrationError> {
    let header = StreamHeader {
        policy: started.policy,
        source_pdh: own_pdh(vm)?,
        session: started.session,
        machine: machine_desc(vm),
    };
    let mut w = StreamWriter::new(&mut *out, &header)?;
    let mut rep = SendReport {
        policy: started.policy,
        total_pages: header.machine.total_pages(),
        setup_ms: t0.elapsed().as_secs_f64() * 1e3,
        ..SendReport::default()
    };
    // Clear what was dirtied before SEND_START: round 1 sends every resident page.
    let _ = dirty_gfns(vm)?;
    let live = opts.live
        && vm
            .workload
            .as_ref()
            .is_some_and(|w| w.running && w.dirty_rate > 0);
    let (dirty_rate, batch_bytes, batches0) = vm.workload.as_ref().map_or((0, 0, 0), |w| {
        (
            w.dirty_rate,
            u64::from(w.desc.pages_per_batch) * PAGE_LEN as u64,
            w.batches,
        )
    });
    let bw = opts.max_bandwidth;
    progress(SendProgress::Status(super::MigrationStatus::Active));
    let mut pages = resident_gfns(vm)?;
    rep.resident_pages = pages.len() as u64;
    let mut expected = w.bytes() + pages.len() as u64 * BYTES_PER_PAGE;
    let mut stopped: Option<Instant> = None;
    let mut batches_run = 0u64;
    let mut last_report = 0u64;
    loop {
        let round = w.round(pages.len() as u64)?;
        rep.round_pages.push(pages.len() as u64);
        for &(slot, gfn) in &pages {
            let s = vm.slots[slot];
            let hva = Hva(s.hva.0 + (gfn * PAGE_LEN as u64 - s.gpa));
            let Stage::Running(l) = &mut vm.stage else {
                return Err(MigrationError::State("the guest is not running".into()));
            };
            let SevPacket { header, data } = l.send_update_data(hva, PAGE_LEN as u32)?;
            w.page(gfn, &header, &data)?;
            rep.pages_sent += 1;
            if live && stopped.is_none() {
                let due = batches_due(w.bytes(), bw, dirty_rate, batch_bytes);
                while batches_run < due {
                    run_batch(vm)?;
                    batches_run += 1;
                }
            }
            if w.bytes() - last_report >= 8 << 20 {
                last_report = w.bytes();
                progress(SendProgress::Bytes {
                    sent: w.bytes(),
                    expected,
                });
            }
        }
        if stopped.is_some() {
            break;
        }
        if !live {
            // A snapshot: the guest did not run, nothing is dirty.
            stopped = Some(Instant::now());
            rep.precopy_bytes = w.bytes();
            progress(SendProgress::Status(super::MigrationStatus::Device));
            let dirty = dirty_gfns(vm)?;
            if dirty.is_empty() {
                break;
            }
            pages = dirty;
            expected += pages.len() as u64 * BYTES_PER_PAGE;
            continue;
        }
        let dirty = dirty_gfns(vm)?;
        rep.dirty_pages_rate = if bw == 0 {
            0
        } else {
            let secs = (pages.len() as u64 * BYTES_PER_PAGE) as f64 / bw as f64;
            if secs > 0.0 {
                (dirty.len() as f64 / secs) as u64
            } else {
                0
            }
        };
        let fits = bw == 0
            || (dirty.len() as u64 * BYTES_PER_PAGE).saturating_mul(1000)
                <= opts.downtime_limit_ms.saturating_mul(bw);
        if fits || round >= MAX_ROUNDS {
            // Stop-and-copy: the vCPU is at a batch boundary (out of KVM_RUN); the
            // last dirty pages and the vCPU state go while it stays stopped.
            stopped = Some(Instant::now());
            rep.precopy_bytes = w.bytes();
            progress(SendProgress::Status(super::MigrationStatus::Device));
            // The pages dirtied up to the stop (the sync just taken) go now.
        }
        pages = dirty;
        expected += pages.len() as u64 * BYTES_PER_PAGE;
    }
    // vCPU state.
    let es = vm.shape.es;
    let Stage::Running(l) = &mut vm.stage else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    let ids: Vec<u32> = l.vcpus().iter().map(|v| v.id()).collect();
    for id in ids {
        let rec = if es {
            let SevPacket { header, data } = l.send_update_vmsa(id)?;
            VcpuRecord::Vmsa {
                vcpu: id,
                header,
                data,
            }
        } else {
            let v = l
                .vcpus()
                .iter()
                .find(|v| v.id() == id)
                .ok_or_else(|| MigrationError::State(format!("vCPU {id}")))?;
            let regs = v
                .vmsa_state()
                .map_err(kvm(format!("KVM_GET_REGS vCPU {id}")))?;
            VcpuRecord::Regs {
                vcpu: id,
                regs: Box::new(regs),
            }
        };
        w.vcpu(&rec)?;
    }
    let (_, end, total) = w.finish()?;
    out.flush()?;
    // SEND_FINISH: the guest is SENT and cannot run here again.
    l.send_finish()?;
    let at = stopped.unwrap_or_else(Instant::now);
    rep.rounds = rep.round_pages.len() as u32;
    rep.bytes = total;
    rep.downtime_bytes = total - rep.precopy_bytes;
    rep.batches_during = batches_run;
    rep.batches_at_stop = batches0 + batches_run;
    rep.downtime_ms = at.elapsed().as_secs_f64() * 1e3;
    rep.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    rep.virtual_seconds = if bw == 0 {
        0.0
    } else {
        total as f64 / bw as f64
    };
    rep.stream_sha256 = hex::encode(end.sha256);
    rep.stopped_at = Some(at);
    if let Some(w) = vm.workload.as_mut() {
        w.running = false;
    }
    let Stage::Running(l) = std::mem::replace(&mut vm.stage, Stage::Gone) else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    vm.stage = Stage::Sent(l);
    vm.migration.sent = Some(rep.clone());
    Ok(rep)
}

/// This platform's PDH certificate (RECEIVE_START's `pdh` on the target).
fn own_pdh(vm: &mut SevVm) -> Result<SevCert, MigrationError> {
    let c = vm
        .owner_certificates()
        .map_err(|e| MigrationError::State(format!("exporting the PDH: {e}")))?;
    SevCert::read_from_bytes(&c.sev_chain[..SEV_CERT_LEN])
        .map_err(|_| MigrationError::State("short PDH export".into()))
}

/// Check the stream's machine against the target's.
fn check_machine(vm: &SevVm, m: &MachineDesc) -> Result<(), MigrationError> {
    let mine = machine_desc(vm);
    let mismatch = |what: &str, theirs: String, ours: String| {
        Err(MigrationError::Mismatch(format!(
            "{what}: the stream has {theirs}, this machine {ours}"
        )))
    };
    if m.mode != mine.mode {
        return mismatch("mode", format!("{:?}", m.mode), format!("{:?}", mine.mode));
    }
    if m.vcpus != mine.vcpus {
        return mismatch("vCPUs", m.vcpus.to_string(), mine.vcpus.to_string());
    }
    if m.regions != mine.regions {
        return mismatch(
            "memory layout",
            format!("{:x?}", m.regions),
            format!("{:x?}", mine.regions),
        );
    }
    if m.secret_area != mine.secret_area {
        return mismatch(
            "OVMF secret area",
            format!("{:x?}", m.secret_area),
            format!("{:x?}", mine.secret_area),
        );
    }
    Ok(())
}

/// Receive a guest from `input` into the incoming VM `vm` (see the module docs).
pub fn receive(
    vm: &mut SevVm,
    input: &mut dyn Read,
    progress: &mut dyn FnMut(u64),
) -> Result<ReceiveReport, MigrationError> {
    let t0 = Instant::now();
    let Stage::Incoming(raw) = &vm.stage else {
        return Err(MigrationError::State(
            "this VM is not waiting for an incoming migration (-incoming)".into(),
        ));
    };
    let raw = raw.clone();
    let r = receive_into(vm, raw, input, t0, progress);
    if r.is_err() {
        // No RECEIVE_FINISH: the receiver (and its firmware context) went with the
        // error; nothing can run here.
        vm.stage = Stage::Gone;
    }
    r
}

fn receive_into(
    vm: &mut SevVm,
    raw: std::sync::Arc<dyn softsev_host::Vm>,
    input: &mut dyn Read,
    t0: Instant,
    progress: &mut dyn FnMut(u64),
) -> Result<ReceiveReport, MigrationError> {
    let mut r = StreamReader::new(input);
    let Item::Header(h) = r.next_item()? else {
        return Err(MigrationError::State("the stream has no header".into()));
    };
    check_machine(vm, &h.machine)?;
    let init = match vm.shape.kvm_init {
        crate::config::SevKvmInit::SevInit => SevInit::Init,
        crate::config::SevKvmInit::SevEsInit => SevInit::EsInit,
        crate::config::SevKvmInit::Init2(_) => {
            SevInit::Init2(softsev_abi::kvm::KvmSevInit::default())
        }
    };
    let mut rx = SevReceiver::new(raw, init)?;
    for (i, st) in vm.shape.vcpu_states.iter().enumerate() {
        rx.create_vcpu(i as u32, st)?;
    }
    rx.receive_start(h.policy, &h.source_pdh, &h.session)?;
    let mut rep = ReceiveReport {
        policy: h.policy,
        source_product: h.machine.product.clone(),
        ..ReceiveReport::default()
    };
    let mut last = 0u64;
    loop {
        match r.next_item()? {
            Item::Header(_) => return Err(MigrationError::State("a second header".into())),
            Item::Round { .. } => rep.rounds += 1,
            Item::Page(p) => {
                let gpa = p.gfn * PAGE_LEN as u64;
                let hva = vm.hva(gpa, PAGE_LEN as u64).ok_or_else(|| {
                    MigrationError::Mismatch(format!("GFN {:#x} has no memslot here", p.gfn))
                })?;
                rx.receive_update_data(
                    hva,
                    &SevPacket {
                        header: p.header,
                        data: p.data,
                    },
                )?;
                rep.pages += 1;
                if r.bytes() - last >= 8 << 20 {
                    last = r.bytes();
                    progress(last);
                }
            }
            Item::Vcpu(VcpuRecord::Regs { vcpu, regs }) => {
                let v = rx
                    .vcpus()
                    .iter()
                    .find(|v| v.id() == vcpu)
                    .ok_or_else(|| MigrationError::Mismatch(format!("no vCPU {vcpu} here")))?;
                v.set_vmsa_state(&regs)
                    .map_err(kvm(format!("KVM_SET_REGS vCPU {vcpu}")))?;
                rep.vcpus += 1;
            }
            Item::Vcpu(VcpuRecord::Vmsa { vcpu, header, data }) => {
                rx.receive_update_vmsa(vcpu, &SevPacket { header, data })?;
                rep.vcpus += 1;
            }
            Item::End(_) => break,
        }
    }
    rep.bytes = r.bytes();
    // Every record arrived, in order, with the digest checked: the guest may run.
    let l = rx.receive_finish()?;
    rep.finished_at = Some(Instant::now());
    rep.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    vm.stage = Stage::Running(l);
    vm.policy = h.policy;
    vm.workload = h.machine.workload.clone().map(|desc| WorkloadRun {
        desc,
        dirty_rate: 0,
        batches: 0,
        running: false,
    });
    vm.migration.received = Some(rep.clone());
    Ok(rep)
}

/// QEMU's words for a failed SEV migration step (the SEV series' `%s: SEND_START
/// ret=%d fw_error=%d '%s'` pattern with the firmware's status text).
pub fn qemu_desc(e: &MigrationError) -> String {
    match e {
        MigrationError::Launch(l) => {
            let ret = l.kvm().map_or(-5, |k| -k.errno.0);
            let fw = l.fw_status().map_or(0, |s| s.0);
            format!(
                "{} ret={ret} fw_error={fw} '{}'",
                l.step(),
                crate::qmp::fw_error_to_str(fw)
            )
        }
        other => other.to_string(),
    }
}

/// The SEND_START certificates from the `sev-*` migration parameters (base64, decoded
/// as GLib does); all three empty: this platform's own.
pub fn certs_from_parameters(
    p: &super::MigrationParameters,
) -> Result<Option<SevTargetCerts>, MigrationError> {
    let (a, b, c) = (&p.sev_pdh, &p.sev_plat_cert, &p.sev_amd_cert);
    if a.is_empty() && b.is_empty() && c.is_empty() {
        return Ok(None);
    }
    if a.is_empty() || b.is_empty() || c.is_empty() {
        return Err(MigrationError::State(
            "SEV: sev-pdh, sev-plat-cert and sev-amd-cert are needed together (the \
             target's PDH, its PEK ‖ OCA ‖ CEK chain, AMD's ASK ‖ ARK)"
                .into(),
        ));
    }
    let pdh = crate::config::glib_base64_decode(a.as_bytes());
    let plat = crate::config::glib_base64_decode(b.as_bytes());
    let amd = crate::config::glib_base64_decode(c.as_bytes());
    let pdh = SevCert::read_from_bytes(&pdh).map_err(|_| {
        MigrationError::State(format!(
            "SEV: sev-pdh decodes to {} bytes; a PDH certificate is {SEV_CERT_LEN:#x}",
            pdh.len()
        ))
    })?;
    Ok(Some(SevTargetCerts {
        pdh,
        plat_certs: plat,
        amd_certs: amd,
    }))
}

/// `query-migrate`'s view of a completed send.
pub fn info_from_send(r: &SendReport) -> super::MigrationInfo {
    let secs = r.total_ms / 1e3;
    super::MigrationInfo {
        status: super::MigrationStatus::Completed,
        ram: Some(super::RamStats {
            transferred: r.bytes,
            remaining: 0,
            total: r.total_pages * PAGE_LEN as u64,
            duplicate: r.total_pages.saturating_sub(r.resident_pages),
            normal: r.pages_sent,
            normal_bytes: r.pages_sent * PAGE_LEN as u64,
            dirty_pages_rate: r.dirty_pages_rate,
            mbps: if secs > 0.0 {
                r.bytes as f64 * 8.0 / 1e6 / secs
            } else {
                0.0
            },
            dirty_sync_count: u64::from(r.rounds.saturating_sub(1)),
            page_size: PAGE_LEN as u64,
            precopy_bytes: r.precopy_bytes,
            downtime_bytes: r.downtime_bytes,
        }),
        total_time_ms: Some(r.total_ms as u64),
        setup_time_ms: Some(r.setup_ms as u64),
        downtime_ms: Some(r.downtime_ms.ceil() as u64),
        error_desc: None,
    }
}

/// `migrate` of an SEV / SEV-ES guest (the QMP monitor's part).
pub fn qmp_migrate_out(
    vm: &mut SevVm,
    uri: &super::MigrationUri,
    params: &super::MigrationParameters,
    status: &mut dyn FnMut(super::MigrationStatus),
) -> Result<super::MigrationInfo, crate::qmp::QmpError> {
    use crate::qmp::QmpError;
    let target = certs_from_parameters(params).map_err(|e| QmpError::generic(e.to_string()))?;
    let opts = SendOptions {
        target,
        max_bandwidth: params.max_bandwidth,
        downtime_limit_ms: params.downtime_limit,
        live: true,
    };
    status(super::MigrationStatus::Setup);
    let mut out = match uri.open_outgoing() {
        Ok(o) => o,
        Err(e) => {
            status(super::MigrationStatus::Failed);
            return Err(QmpError::generic(format!("{}: {e}", uri.to_uri())));
        }
    };
    let mut first = true;
    let r = send(vm, &mut out, &opts, &mut |p| {
        if let SendProgress::Status(s) = p {
            // `setup` was reported already.
            if !(first && s == super::MigrationStatus::Setup) {
                status(s);
            }
            first = false;
        }
    });
    match r.and_then(|rep| out.commit().map(|()| rep).map_err(MigrationError::from)) {
        Ok(rep) => {
            status(super::MigrationStatus::Completed);
            Ok(info_from_send(&rep))
        }
        Err(e) => {
            status(super::MigrationStatus::Failed);
            Err(QmpError::generic(qemu_desc(&e)))
        }
    }
}

/// `-incoming URI` / `migrate-incoming` of an SEV / SEV-ES guest.
pub fn qmp_migrate_in(
    vm: &mut SevVm,
    uri: &super::MigrationUri,
    status: &mut dyn FnMut(super::MigrationStatus),
) -> Result<super::MigrationInfo, crate::qmp::QmpError> {
    use crate::qmp::QmpError;
    status(super::MigrationStatus::Setup);
    let mut input = uri
        .open_incoming()
        .map_err(|e| QmpError::generic(format!("{}: {e}", uri.to_uri())))?;
    status(super::MigrationStatus::Active);
    let rep = receive(vm, &mut input, &mut |_| {}).map_err(|e| QmpError::generic(qemu_desc(&e)))?;
    status(super::MigrationStatus::Completed);
    Ok(super::MigrationInfo {
        status: super::MigrationStatus::Completed,
        ram: Some(super::RamStats {
            transferred: rep.bytes,
            normal: rep.pages,
            normal_bytes: rep.pages * PAGE_LEN as u64,
            page_size: PAGE_LEN as u64,
            ..super::RamStats::default()
        }),
        total_time_ms: Some(rep.total_ms as u64),
        ..super::MigrationInfo::default()
    })
}

/// Let a migrated-in guest continue (the target's `cont`, or autostart): vCPU 0 runs
/// the guest's post-move check of itself when it has a workload; the result is kept
/// in [`MigrationState::moved`].
pub fn resume(vm: &mut SevVm) -> Result<(), MigrationError> {
    if vm.migration.moved.is_some() {
        return Ok(());
    }
    let r = resume_guest(vm);
    vm.migration.moved = Some(r.as_ref().map_err(|e| e.to_string()).cloned());
    r.map(|_| ())
}

/// vCPU 0 of the received guest runs its check of itself (the workload's
/// `verify_after_move`, softsev_guest::workload); a guest without a workload has
/// nothing to check (`null`).
fn resume_guest(vm: &mut SevVm) -> Result<serde_json::Value, MigrationError> {
    use softsev_guest::workload::verify_after_move;
    use softsev_host::{GuestCpu, GuestEnd, SoftPlatformExt};
    let Some(w) = vm.workload.as_ref() else {
        return Ok(serde_json::Value::Null);
    };
    let cfg = workload_config(&vm.boot_cfg, &w.desc)?;
    let secret = vm.boot_cfg.secret;
    let Stage::Running(l) = &mut vm.stage else {
        return Err(MigrationError::State("the guest is not running".into()));
    };
    let Some(bsp) = l.vcpus_mut().first_mut() else {
        return Err(MigrationError::State("no vCPU 0".into()));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let guest = move |cpu: &mut GuestCpu| {
        let r = verify_after_move(&mut *cpu, &cfg, secret.as_ref());
        let end = if r.is_ok() {
            GuestEnd::Halt
        } else {
            GuestEnd::Shutdown
        };
        let _ = tx.send(r);
        Ok(end)
    };
    vm.platform
        .set_guest(&mut **bsp, Box::new(guest))
        .map_err(kvm("install the guest on vCPU 0"))?;
    let exit = bsp.run().map_err(kvm("KVM_RUN vCPU 0"))?.clone();
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| MigrationError::Guest(format!("vCPU 0 ended ({exit:?}) without a check")))?;
    let check = got.map_err(|e| MigrationError::Guest(e.root().to_string()))?;
    serde_json::to_value(&check).map_err(|e| MigrationError::Guest(e.to_string()))
}

/// The guest's [`WorkloadConfig`] for `desc` in a VM booted with `boot` (SEV-ES: the
/// OUT goes through the boot's GHCB page).
///
/// [`WorkloadConfig`]: softsev_guest::workload::WorkloadConfig
pub fn workload_config(
    boot: &softsev_guest::sev_boot::SevBootConfig,
    desc: &WorkloadDesc,
) -> Result<softsev_guest::workload::WorkloadConfig, MigrationError> {
    let seed = hex::decode(&desc.seed)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| MigrationError::Mismatch(format!("workload seed {:?}", desc.seed)))?;
    let mut c = softsev_guest::workload::WorkloadConfig::new(
        softsev_guest::MemRange::new(desc.pages_gpa, desc.pages_len),
        softsev_abi::Gpa(desc.ledger),
        seed,
    );
    c.pages_per_batch = desc.pages_per_batch;
    c.exit_port = desc.exit_port;
    c.ghcb = (boot.mode == softsev_guest::sev_boot::SevMode::SevEs).then_some(boot.ghcb_gpa);
    Ok(c)
}

/// The port of the workload's batch exit (an unused ISA port).
pub const WORKLOAD_PORT: u16 = 0x5E5;
/// Where the workload's pages start (above the kernel load area at 16 MiB); its ledger
/// follows them.
pub const WORKLOAD_GPA: u64 = 32 << 20;

/// A workload writing `bytes` of the guest's low RAM from [`WORKLOAD_GPA`], 16 pages
/// per batch, with contents seeded by `seed`, its ledger (64 bytes + 32 per page) right
/// after the pages. Pages and ledger must leave the guest's own work areas (the top
/// 16 MiB below 4 GiB) alone.
pub fn default_workload(
    vm: &SevVm,
    seed: &[u8],
    bytes: u64,
) -> Result<WorkloadDesc, MigrationError> {
    let low_top = vm.slots.first().map_or(0, |s| s.gpa + s.size);
    let room = low_top
        .saturating_sub(16 << 20)
        .saturating_sub(WORKLOAD_GPA);
    let bytes = bytes.next_multiple_of(PAGE_LEN as u64);
    let pages = bytes / PAGE_LEN as u64;
    let ledger_len = (64 + 32 * pages).next_multiple_of(PAGE_LEN as u64);
    if bytes == 0 || bytes.saturating_add(ledger_len) > room {
        return Err(MigrationError::State(format!(
            "a workload of {bytes:#x} bytes and its {ledger_len:#x}-byte ledger do not fit \
             the guest's low RAM ({room:#x} bytes free from {WORKLOAD_GPA:#x}); give the \
             guest more memory"
        )));
    }
    let mut m = b"softsev workload seed ".to_vec();
    m.extend_from_slice(seed);
    Ok(WorkloadDesc {
        pages_gpa: WORKLOAD_GPA,
        pages_len: bytes,
        ledger: WORKLOAD_GPA + bytes,
        seed: hex::encode(softsev_crypto::hash::sha256(&m)),
        pages_per_batch: 16,
        exit_port: WORKLOAD_PORT,
    })
}

/// Run `n` more batches of the guest's workload (the vCPU stops after each).
pub fn run_workload(vm: &mut SevVm, n: u64) -> Result<(), MigrationError> {
    for _ in 0..n {
        run_batch(vm)?;
    }
    Ok(())
}

/// The duration in ms between two instants (0 when out of order).
pub fn ms_between(a: Option<Instant>, b: Option<Instant>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            b.checked_duration_since(a)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                * 1e3,
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_clock() {
        // 128 MiB/s channel, guest writing 64 MiB/s in 16-page batches: after 1 MiB
        // sent, 0.5 MiB written = 8 batches.
        assert_eq!(batches_due(1 << 20, 128 << 20, 64 << 20, 16 * 4096), 8);
        assert_eq!(batches_due(1 << 20, 0, 64 << 20, 4096), 0);
        assert_eq!(batches_due(u64::MAX, 1, u64::MAX, 1), u64::MAX);
    }
}
