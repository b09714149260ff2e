//! The boot flow of an SNP guest, in the order OVMF and Linux perform it:
//!
//! 1. read SEV_STATUS and require SEV, SEV-ES and SNP;
//! 2. negotiate GHCB protocol version 2, query hypervisor features (SNP required),
//!    make the GHCB page shared (rescind + PSC by MSR) and register it;
//! 3. accept memory: every RAM range not pre-validated at launch, fully or only a
//!    first part (lazy; the rest is accepted on demand later);
//! 4. verify the kernel, initrd and command line against the hashes table (OVMF);
//!    on mismatch the guest asks to be terminated;
//! 5. make the bounce-buffer region shared (DMA, guest-request pages, certificates);
//! 6. start the APs with SNP AP creation;
//! 7. read the secrets page and take VMPCK0;
//! 8. request an extended attestation report with the caller's nonce, and a derived
//!    key.
//!
//! Every error that Linux or OVMF treats as fatal ends in a termination request
//! (reason set and code in [`GuestError::Terminated`]); a private access that raises
//! #VC 0x404 names the tampered GPA.

use crate::ap;
use crate::error::{GuestError, access_fault};
use crate::ghcb::{GhcbClient, GhcbStats};
use crate::hashes::{self, KernelBlobs};
use crate::memory::{MemRange, MemStats, RangeSet, Validated};
use crate::msg::{ExtReport, KeyRequest, MsgClient, ReportRequest, SeqnoStore};
use crate::platform::{CBit, GuestPlatform};
use softsev_abi::fw_buf::{SNP_CPUID_COUNT_MAX, SnpCpuidPage};
use softsev_abi::ghcb::{MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP};
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K};
use std::time::{Duration, Instant};
use zerocopy::FromBytes;
use zeroize::{Zeroize, Zeroizing};

/// How much memory to accept at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptMode {
    /// Accept all RAM before going on (OVMF without unaccepted-memory support).
    Full,
    /// Accept only the first `eager_bytes` of not-yet-validated RAM; the rest stays
    /// unaccepted and is accepted on first use ([`Guest::accept`], [`Guest::read_private`]).
    Lazy {
        /// Bytes accepted at boot.
        eager_bytes: u64,
    },
}

/// Where the message sequence numbers live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqnoPlace {
    /// In the secrets page's guest-OS area (Linux).
    SecretsPage,
    /// In the client's memory.
    Memory,
}

/// The APs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApConfig {
    /// APIC IDs of the APs (not the BSP).
    pub apic_ids: Vec<u32>,
    /// First GPA of the region their VMSA pages are taken from (one page each, 2 MiB
    /// aligned pages skipped).
    pub vmsa_base: Gpa,
    /// Real-mode start address of the AP trampoline.
    pub start_ip: u64,
}

/// Everything the guest knows when it starts: what OVMF learns from its own metadata
/// and the launch, plus the caller's attestation parameters.
#[derive(Clone, Debug)]
pub struct BootConfig {
    /// The GHCB page (launch-validated or not; it is made shared).
    pub ghcb_gpa: Gpa,
    /// The secrets page.
    pub secrets_gpa: Gpa,
    /// The CPUID page, checked as Linux's `snp_cpuid_init` does (COUNT in 1..=64).
    pub cpuid_gpa: Option<Gpa>,
    /// Ranges validated at launch (SNP_LAUNCH_UPDATE pages, pre-validated metadata
    /// sections). Never PVALIDATEd again.
    pub prevalidated: Vec<MemRange>,
    /// Guest RAM (4 KiB aligned ranges).
    pub ram: Vec<MemRange>,
    /// Full or lazy acceptance.
    pub accept: AcceptMode,
    /// Kernel hashes check, when the guest was launched with `kernel-hashes=on`.
    pub kernel: Option<KernelBlobs>,
    /// GPA where the verified kernel, initrd and command line are copied (private),
    /// as the firmware loads them; `None` skips the copy.
    pub kernel_load_gpa: Option<Gpa>,
    /// The shared region: page 0 = guest request, page 1 = response, pages
    /// 2..2 + `max_cert_pages` = certificate buffer, the rest DMA bounce buffers.
    pub bounce: MemRange,
    /// APs to start.
    pub aps: Option<ApConfig>,
    /// First of the APs' own GHCB pages (one per AP, in `apic_ids` order), made shared
    /// by the BSP before the APs are created; `None` leaves that to someone else.
    pub ap_ghcb_base: Option<Gpa>,
    /// The VMPCK used for guest messages (0 for a guest at VMPL0).
    pub vmpck: u8,
    /// Where its sequence number is kept.
    pub seqno: SeqnoPlace,
    /// The report request (the nonce goes into REPORT_DATA).
    pub report: ReportRequest,
    /// The derived-key request, if one is wanted.
    pub key: Option<KeyRequest>,
    /// Certificate buffer pages offered first (Linux's default is 4).
    pub cert_pages: u32,
    /// Largest certificate buffer the guest will offer after a too-small answer.
    pub max_cert_pages: u32,
}

impl BootConfig {
    /// A configuration with the given layout and nonce, full acceptance, no kernel
    /// hashes, no APs, VMPCK0 with Linux's sequence-number placement, a derived key
    /// over the measurement, and a 4-page certificate buffer growing to 16.
    pub fn new(
        ghcb_gpa: Gpa,
        secrets_gpa: Gpa,
        ram: Vec<MemRange>,
        bounce: MemRange,
        nonce: [u8; 64],
    ) -> Self {
        BootConfig {
            ghcb_gpa,
            secrets_gpa,
            cpuid_gpa: None,
            prevalidated: Vec::new(),
            ram,
            accept: AcceptMode::Full,
            kernel: None,
            kernel_load_gpa: None,
            bounce,
            aps: None,
            ap_ghcb_base: None,
            vmpck: 0,
            seqno: SeqnoPlace::SecretsPage,
            report: ReportRequest {
                report_data: nonce,
                vmpl: 0,
                key_sel: softsev_abi::guest_msg::KeySel::VLEK_OR_VCEK,
            },
            key: Some(KeyRequest::default()),
            cert_pages: 4,
            max_cert_pages: 16,
        }
    }

    fn check(&self) -> Result<(), GuestError> {
        let bad = |m: String| Err(GuestError::Config(m));
        for r in self
            .ram
            .iter()
            .chain(&self.prevalidated)
            .chain([&self.bounce])
        {
            if !r.is_page_aligned() || r.start.0 > r.end.0 {
                return bad(format!("range {}..{} is not 4 KiB aligned", r.start, r.end));
            }
        }
        for (what, g) in [("GHCB", self.ghcb_gpa), ("secrets", self.secrets_gpa)]
            .into_iter()
            .chain(self.cpuid_gpa.map(|g| ("CPUID", g)))
        {
            if !g.is_aligned(PAGE_SIZE_4K) {
                return bad(format!("{what} page {g} is not 4 KiB aligned"));
            }
        }
        let need = (2 + u64::from(self.max_cert_pages)) * PAGE_SIZE_4K;
        if self.bounce.len() < need {
            return bad(format!(
                "bounce region of {:#x} bytes is smaller than the {need:#x} the guest-request and certificate pages need",
                self.bounce.len()
            ));
        }
        if self.cert_pages == 0 || self.cert_pages > self.max_cert_pages {
            return bad(format!(
                "initial certificate pages {} outside 1..={}",
                self.cert_pages, self.max_cert_pages
            ));
        }
        Ok(())
    }
}

/// Boot phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// SEV_STATUS check.
    SevStatus,
    /// GHCB negotiation, features, registration.
    Ghcb,
    /// Memory acceptance.
    AcceptMemory,
    /// Kernel hashes check (and load).
    KernelHashes,
    /// Bounce buffers made shared.
    BounceBuffer,
    /// AP creation.
    StartAps,
    /// Secrets page read.
    SecretsPage,
    /// Extended attestation report.
    Report,
    /// Derived key.
    DerivedKey,
}

/// What a completed boot produced.
pub struct BootReport {
    /// SEV_STATUS.
    pub sev_status: u64,
    /// Negotiated GHCB version.
    pub ghcb_version: u16,
    /// C-bit position the hypervisor reported.
    pub cbit_pos: u8,
    /// Hypervisor feature bitmap.
    pub hv_features: u64,
    /// Functions in the CPUID page (0 when none was configured).
    pub cpuid_functions: u32,
    /// Whether the kernel hashes were checked (and matched).
    pub hashes_verified: bool,
    /// The attestation report (0x4A0 bytes).
    pub report: Vec<u8>,
    /// The certificate table (trimmed; 24 zero bytes when the host supplied none).
    pub certs: Vec<u8>,
    /// Entries in the certificate table.
    pub cert_entries: usize,
    /// Certificate-buffer pages of the successful request.
    pub cert_pages: u32,
    /// Too-small answers before the certificate buffer fitted.
    pub cert_retries: u32,
    /// The derived key, if requested.
    pub derived_key: Option<Zeroizing<[u8; 32]>>,
    /// APIC IDs of the APs started.
    pub aps_started: Vec<u32>,
    /// The APs' GHCB pages made shared (same order as `aps_started`).
    pub ap_ghcbs: Vec<Gpa>,
    /// Bytes pre-validated at launch.
    pub prevalidated_bytes: u64,
    /// Bytes accepted by the guest.
    pub accepted_bytes: u64,
    /// RAM left unaccepted (lazy mode).
    pub unaccepted: Vec<MemRange>,
    /// Bytes made shared.
    pub shared_bytes: u64,
    /// GHCB counters.
    pub ghcb: GhcbStats,
    /// Memory counters.
    pub mem: MemStats,
    /// Guest-message round trips.
    pub msg_exchanges: u64,
    /// Time per phase.
    pub phases: Vec<(Phase, Duration)>,
}

impl core::fmt::Debug for BootReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootReport")
            .field("sev_status", &format_args!("{:#x}", self.sev_status))
            .field("ghcb_version", &self.ghcb_version)
            .field("hv_features", &format_args!("{:#x}", self.hv_features))
            .field("hashes_verified", &self.hashes_verified)
            .field("report_len", &self.report.len())
            .field("certs_len", &self.certs.len())
            .field("cert_entries", &self.cert_entries)
            .field(
                "derived_key",
                &self.derived_key.as_ref().map(|_| "<secret>"),
            )
            .field("aps_started", &self.aps_started)
            .field("accepted_bytes", &self.accepted_bytes)
            .field("unaccepted", &self.unaccepted)
            .field("shared_bytes", &self.shared_bytes)
            .field("ghcb", &self.ghcb)
            .field("mem", &self.mem)
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

/// The guest after boot: its GHCB, validated-memory record and message client, for
/// further work (lazy acceptance, more reports).
#[derive(Debug)]
pub struct Guest {
    /// The GHCB client.
    pub ghcb: GhcbClient,
    /// Which pages the guest validated.
    pub mem: Validated,
    /// RAM not yet accepted.
    pub unaccepted: RangeSet,
    /// The guest-message client (after the secrets page was read).
    pub msg: Option<MsgClient>,
    bounce: MemRange,
    max_cert_pages: u32,
}

/// Boot the guest on `p` and return what it produced.
pub fn boot<P: GuestPlatform + ?Sized>(
    p: &mut P,
    cfg: &BootConfig,
) -> Result<BootReport, GuestError> {
    Guest::boot(p, cfg).map(|(_, r)| r)
}

struct Timer {
    phases: Vec<(Phase, Duration)>,
    at: Instant,
}

impl Timer {
    fn lap(&mut self, ph: Phase) {
        let now = Instant::now();
        self.phases.push((ph, now - self.at));
        self.at = now;
    }
}

impl Guest {
    /// Send the termination request an error calls for and wrap the error.
    fn fatal<P: GuestPlatform + ?Sized>(&mut self, p: &mut P, e: GuestError) -> GuestError {
        match e.termination_reason() {
            Some((set, code)) => {
                // A host that has already stopped the vCPU makes this fail: the
                // cause is what matters.
                let _ = self.ghcb.terminate(p, set, code);
                GuestError::Terminated {
                    set,
                    code,
                    cause: Box::new(e),
                }
            }
            None => e,
        }
    }

    /// Boot (see the module documentation) and keep the guest state.
    pub fn boot<P: GuestPlatform + ?Sized>(
        p: &mut P,
        cfg: &BootConfig,
    ) -> Result<(Guest, BootReport), GuestError> {
        cfg.check()?;
        let mut g = Guest {
            ghcb: GhcbClient::new(),
            mem: Validated::new(),
            unaccepted: RangeSet::new(),
            msg: None,
            bounce: cfg.bounce,
            max_cert_pages: cfg.max_cert_pages,
        };
        match g.run(p, cfg) {
            Ok(r) => Ok((g, r)),
            Err(e) => Err(g.fatal(p, e)),
        }
    }

    fn run<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        cfg: &BootConfig,
    ) -> Result<BootReport, GuestError> {
        let mut t = Timer {
            phases: Vec::new(),
            at: Instant::now(),
        };
        // 1. SEV_STATUS.
        let sev_status = p
            .rdmsr(MSR_SEV_STATUS)
            .map_err(|f| access_fault("RDMSR SEV_STATUS", Gpa(0), f))?;
        let need = SEV_STATUS_SEV | SEV_STATUS_SEV_ES | SEV_STATUS_SNP;
        if sev_status & need != need {
            return Err(GuestError::NotSnp { sev_status });
        }
        t.lap(Phase::SevStatus);

        // CPUID page (read before anything trusts CPUID; Linux does it first).
        let cpuid_functions = match cfg.cpuid_gpa {
            Some(gpa) => {
                let mut page = [0u8; PAGE_SIZE_4K as usize];
                p.read(gpa, CBit::Private, &mut page)
                    .map_err(|f| access_fault("CPUID page read", gpa, f))?;
                let count = SnpCpuidPage::read_from_bytes(&page)
                    .map(|c| c.count)
                    .unwrap_or(0);
                if count == 0 || count as usize > SNP_CPUID_COUNT_MAX {
                    return Err(GuestError::CpuidPage { gpa, count });
                }
                count
            }
            None => 0,
        };

        // 2. GHCB.
        for r in &cfg.prevalidated {
            self.mem.mark_validated(*r);
        }
        self.ghcb.negotiate(p)?;
        self.ghcb.query_hv_features(p)?;
        self.mem.make_shared_msr(p, &mut self.ghcb, cfg.ghcb_gpa)?;
        self.ghcb.register(p, cfg.ghcb_gpa)?;
        t.lap(Phase::Ghcb);

        // 3. Memory.
        let ghcb_page = MemRange::new(cfg.ghcb_gpa.0, PAGE_SIZE_4K);
        for r in &cfg.ram {
            self.unaccepted.insert(*r);
        }
        for r in self.mem.set().ranges() {
            self.unaccepted.remove(r);
        }
        self.unaccepted.remove(ghcb_page);
        let mut budget = match cfg.accept {
            AcceptMode::Full => u64::MAX,
            AcceptMode::Lazy { eager_bytes } => eager_bytes,
        };
        for r in self.unaccepted.ranges() {
            if budget == 0 {
                break;
            }
            let len = r.len().min(budget) & !(PAGE_SIZE_4K - 1);
            if len == 0 {
                break;
            }
            let piece = MemRange::new(r.start.0, len);
            self.accept(p, piece)?;
            budget = budget.saturating_sub(len);
        }
        t.lap(Phase::AcceptMemory);

        // 4. Kernel hashes.
        let hashes_verified = match &cfg.kernel {
            Some(blobs) => {
                hashes::verify(p, blobs)?;
                if let Some(at) = cfg.kernel_load_gpa {
                    let mut off = at.0;
                    for blob in [&blobs.kernel, &blobs.initrd, &blobs.cmdline] {
                        let end = off + blob.len() as u64;
                        self.ensure_accepted(p, MemRange::new(off, end - off))?;
                        p.write(Gpa(off), CBit::Private, blob)
                            .map_err(|f| access_fault("kernel load", Gpa(off), f))?;
                        off = end.next_multiple_of(PAGE_SIZE_4K);
                    }
                }
                true
            }
            None => false,
        };
        t.lap(Phase::KernelHashes);

        // 5. Bounce buffers.
        self.unaccepted.remove(cfg.bounce);
        self.mem.make_shared(p, &mut self.ghcb, cfg.bounce)?;
        t.lap(Phase::BounceBuffer);

        // 6. APs.
        let mut aps_started = Vec::new();
        let mut ap_ghcbs = Vec::new();
        if let (Some(aps), Some(base)) = (&cfg.aps, cfg.ap_ghcb_base) {
            let n = aps.apic_ids.len() as u64;
            let r = MemRange::new(base.align_down(PAGE_SIZE_4K).0, n * PAGE_SIZE_4K);
            self.unaccepted.remove(r);
            self.mem.make_shared(p, &mut self.ghcb, r)?;
            ap_ghcbs = (0..n).map(|i| Gpa(r.start.0 + i * PAGE_SIZE_4K)).collect();
        }
        if let Some(aps) = &cfg.aps {
            let sev_features = sev_status >> 2;
            let mut page = aps.vmsa_base.align_down(PAGE_SIZE_4K).0;
            for &apic in &aps.apic_ids {
                if page.is_multiple_of(PAGE_SIZE_2M) {
                    page += PAGE_SIZE_4K;
                }
                let gpa = Gpa(page);
                if cfg.bounce.start.0 <= page && page < cfg.bounce.end.0 {
                    return Err(GuestError::Config(format!(
                        "VMSA page {gpa} lies in the shared bounce region"
                    )));
                }
                self.unaccepted.remove(MemRange::new(page, PAGE_SIZE_4K));
                ap::start_ap(
                    p,
                    &mut self.ghcb,
                    &mut self.mem,
                    apic,
                    gpa,
                    aps.start_ip,
                    sev_features,
                )?;
                aps_started.push(apic);
                page += PAGE_SIZE_4K;
            }
        }
        t.lap(Phase::StartAps);

        // 7. Secrets page.
        let mut raw = Zeroizing::new(vec![0u8; PAGE_SIZE_4K as usize]);
        p.read(cfg.secrets_gpa, CBit::Private, &mut raw)
            .map_err(|f| access_fault("secrets page read", cfg.secrets_gpa, f))?;
        let mut secrets = SecretsPage::parse(&raw).map_err(|e| GuestError::Secrets {
            gpa: cfg.secrets_gpa,
            what: e.to_string(),
        })?;
        let store = match cfg.seqno {
            SeqnoPlace::SecretsPage => SeqnoStore::SecretsPage(cfg.secrets_gpa),
            SeqnoPlace::Memory => SeqnoStore::Memory,
        };
        let req_page = cfg.bounce.start;
        let resp_page = Gpa(cfg.bounce.start.0 + PAGE_SIZE_4K);
        let client = MsgClient::from_secrets(
            &secrets,
            cfg.secrets_gpa,
            cfg.vmpck,
            store,
            req_page,
            resp_page,
        );
        // The copy of the keys is no longer needed.
        secrets.vmpck.zeroize();
        let client = client.map_err(|e| GuestError::Secrets {
            gpa: cfg.secrets_gpa,
            what: e.to_string(),
        })?;
        self.msg = Some(client);
        t.lap(Phase::SecretsPage);

        // 8. Report and key.
        let x = self.extended_report(p, &cfg.report, cfg.cert_pages)?;
        t.lap(Phase::Report);
        let derived_key = match &cfg.key {
            Some(k) => Some(self.derived_key(p, k)?),
            None => None,
        };
        t.lap(Phase::DerivedKey);

        Ok(BootReport {
            sev_status,
            ghcb_version: self.ghcb.version(),
            cbit_pos: self.ghcb.cbit_pos(),
            hv_features: self.ghcb.hv_features(),
            cpuid_functions,
            hashes_verified,
            cert_entries: x.entries.len(),
            cert_pages: x.cert_pages,
            cert_retries: x.too_small_retries,
            report: x.report,
            certs: x.certs,
            derived_key,
            aps_started,
            ap_ghcbs,
            prevalidated_bytes: cfg.prevalidated.iter().map(MemRange::len).sum(),
            accepted_bytes: self.mem.stats.accepted_bytes,
            unaccepted: self.unaccepted.ranges(),
            shared_bytes: self.mem.stats.shared_bytes,
            ghcb: self.ghcb.stats,
            mem: self.mem.stats,
            msg_exchanges: self.msg.as_ref().map_or(0, |m| m.exchanges),
            phases: t.phases,
        })
    }

    /// Accept `r` (make it private and validated) and drop it from the unaccepted set.
    pub fn accept<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        r: MemRange,
    ) -> Result<(), GuestError> {
        self.mem.make_private(p, &mut self.ghcb, r)?;
        self.unaccepted.remove(r);
        Ok(())
    }

    /// Accept whatever part of `r` is still unaccepted, in 2 MiB units where the unit
    /// lies wholly in unaccepted RAM (as Linux's unaccepted-memory table does).
    pub fn ensure_accepted<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        r: MemRange,
    ) -> Result<(), GuestError> {
        let start = r.start.0 & !(PAGE_SIZE_4K - 1);
        let end = r.end.0.next_multiple_of(PAGE_SIZE_4K);
        for piece in self.unaccepted.intersect(MemRange::new(start, end - start)) {
            let s2 = piece.start.0 & !(PAGE_SIZE_2M - 1);
            let e2 = piece.end.0.next_multiple_of(PAGE_SIZE_2M);
            let unit = MemRange::new(s2, e2 - s2);
            let whole = self.unaccepted.intersect(unit) == vec![unit];
            self.accept(p, if whole { unit } else { piece })?;
        }
        Ok(())
    }

    /// Read private memory, accepting unaccepted RAM first. #VC 0x404 on a page the
    /// guest validated is reported as [`GuestError::Tampered`].
    pub fn read_private<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        buf: &mut [u8],
    ) -> Result<(), GuestError> {
        self.ensure_accepted(p, MemRange::new(gpa.0, buf.len() as u64))?;
        p.read(gpa, CBit::Private, buf)
            .map_err(|f| access_fault("private read", gpa, f))
    }

    /// Write private memory, accepting unaccepted RAM first.
    pub fn write_private<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        data: &[u8],
    ) -> Result<(), GuestError> {
        self.ensure_accepted(p, MemRange::new(gpa.0, data.len() as u64))?;
        p.write(gpa, CBit::Private, data)
            .map_err(|f| access_fault("private write", gpa, f))
    }

    /// An extended report (certificate buffer in the bounce region, page 2 on).
    pub fn extended_report<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        req: &ReportRequest,
        cert_pages: u32,
    ) -> Result<ExtReport, GuestError> {
        let certs = Gpa(self.bounce.start.0 + 2 * PAGE_SIZE_4K);
        let max = self.max_cert_pages;
        let Guest { ghcb, msg, .. } = self;
        let m = msg
            .as_mut()
            .ok_or_else(|| GuestError::Config("the secrets page has not been read yet".into()))?;
        m.extended_report(p, ghcb, req, certs, cert_pages, max)
    }

    /// A derived key.
    pub fn derived_key<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        req: &KeyRequest,
    ) -> Result<Zeroizing<[u8; 32]>, GuestError> {
        let Guest { ghcb, msg, .. } = self;
        let m = msg
            .as_mut()
            .ok_or_else(|| GuestError::Config("the secrets page has not been read yet".into()))?;
        m.derived_key(p, ghcb, req)
    }
}
