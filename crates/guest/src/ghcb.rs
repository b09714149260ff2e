//! The guest side of the GHCB protocol (GHCB specification 56421 v2;
//! host-interfaces.md §2): the MSR protocol (SEV information, hypervisor features, GHCB
//! GPA registration, page state change by MSR, AP reset hold, termination) and
//! full-GHCB calls (page state change with a descriptor in the shared buffer, AP
//! creation, guest requests), with the checks Linux's `sev_es_ghcb_hv_call` and
//! `vmgexit_psc` make on what the hypervisor writes back.
//!
//! The GHCB page is shared memory the hypervisor can change at any time: every answer
//! is copied out of it once and checked on the copy.

use crate::error::{GuestError, access_fault};
use crate::platform::{CBit, GuestFault, GuestPlatform};
use softsev_abi::ghcb::{
    ApCreateOp, EXIT_INFO1_BAD_INPUT, EXIT_INFO1_INJECT, EXIT_INFO1_OK, GHCB_HV_FT_SNP,
    GHCB_MSR_INFO_MASK, GHCB_SHARED_BUF_OFFSET, GHCB_VERSION_MAX, GHCB_VERSION_MIN, Ghcb,
    GhcbError, GhcbField, GhcbMsg, GuestReqVmmError, MSR_GHCB, NaeExit, PSC_MAX_ENTRIES, PscDesc,
    PscEntry, PscHdr, PscOp, ap_creation_info1,
};
use softsev_abi::{FwStatus, Gpa, PAGE_SIZE_4K};
use zerocopy::{FromBytes, IntoBytes};

/// The GHCB protocol version SNP guests need.
pub const GHCB_VERSION_SNP: u16 = 2;
/// How many times a page state change may come back without progress before the
/// guest gives up (Linux loops while the hypervisor moves forward).
pub const PSC_MAX_STALLS: u32 = 8;
/// How many times a guest request answered BUSY is retried.
pub const GUEST_REQ_BUSY_RETRIES: u32 = 16;

/// Counters of what the GHCB client did.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct GhcbStats {
    /// VMGEXITs issued (MSR protocol and full GHCB).
    pub vmgexits: u64,
    /// MSR-protocol requests.
    pub msr_calls: u64,
    /// Full-GHCB calls.
    pub ghcb_calls: u64,
    /// PSC NAE events (each carrying up to 253 entries).
    pub psc_calls: u64,
    /// PSC entries submitted.
    pub psc_entries: u64,
    /// Pages changed by PSC over the MSR protocol.
    pub psc_msr_pages: u64,
    /// Guest requests (plain and extended), including BUSY retries.
    pub guest_requests: u64,
}

/// The answer to a guest request that reached the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestReqOutcome {
    /// Firmware status (SW_EXITINFO2\[31:0\]); SUCCESS when the response page is valid.
    pub fw: FwStatus,
}

/// Certificate buffer of an extended guest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertBuf {
    /// First page (shared, page aligned).
    pub gpa: Gpa,
    /// Number of 4 KiB pages.
    pub pages: u32,
}

/// The guest's GHCB state for one vCPU.
#[derive(Debug, Clone, Default)]
pub struct GhcbClient {
    gpa: Option<Gpa>,
    version: u16,
    cbit: u8,
    hv_features: u64,
    /// What has been done so far.
    pub stats: GhcbStats,
}

fn fault(op: &'static str, gpa: Gpa) -> impl FnOnce(GuestFault) -> GuestError {
    move |f| access_fault(op, gpa, f)
}

impl GhcbClient {
    /// A client that has not negotiated anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client for a GHCB page `gpa` (page aligned, mapped with the C-bit clear) that
    /// this guest already uses with the negotiated protocol `version` (1 or 2): the
    /// state a guest keeps in its own memory, so code that resumes on a vCPU — after
    /// the VM moved to another machine, say — goes on without a new negotiation.
    pub(crate) fn resumed(gpa: Gpa, version: u16) -> Result<Self, GuestError> {
        if !gpa.is_aligned(PAGE_SIZE_4K) {
            return Err(GuestError::Config(format!(
                "GHCB GPA {gpa} is not page aligned"
            )));
        }
        if !(GHCB_VERSION_MIN..=GHCB_VERSION_MAX).contains(&version) {
            return Err(GuestError::Config(format!(
                "GHCB protocol version {version} (the guest speaks {GHCB_VERSION_MIN}..={GHCB_VERSION_MAX})"
            )));
        }
        Ok(GhcbClient {
            gpa: Some(gpa),
            version,
            ..GhcbClient::default()
        })
    }

    /// The negotiated GHCB protocol version (0 before [`GhcbClient::negotiate`]).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The C-bit position the hypervisor reported.
    pub fn cbit_pos(&self) -> u8 {
        self.cbit
    }

    /// The hypervisor feature bitmap (0 before [`GhcbClient::query_hv_features`]).
    pub fn hv_features(&self) -> u64 {
        self.hv_features
    }

    /// The registered GHCB page.
    pub fn ghcb_gpa(&self) -> Option<Gpa> {
        self.gpa
    }

    /// One MSR-protocol exchange: write the request to the GHCB MSR, VMGEXIT, read the
    /// MSR back. The registered GHCB GPA is restored afterwards (Linux does the same).
    pub fn msr_call<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        req: GhcbMsg,
    ) -> Result<u64, GuestError> {
        let gpa = Gpa(0);
        p.wrmsr(MSR_GHCB, req.encode())
            .map_err(fault("WRMSR GHCB", gpa))?;
        self.stats.msr_calls += 1;
        self.stats.vmgexits += 1;
        p.vmgexit().map_err(fault("VMGEXIT (MSR protocol)", gpa))?;
        let v = p.rdmsr(MSR_GHCB).map_err(fault("RDMSR GHCB", gpa))?;
        if let Some(g) = self.gpa {
            p.wrmsr(MSR_GHCB, g.raw()).map_err(fault("WRMSR GHCB", g))?;
        }
        Ok(v)
    }

    /// Negotiate the protocol version: SEV information request, check that version 2
    /// is in the hypervisor's range, keep min(max, 2) and the C-bit position.
    pub fn negotiate<P: GuestPlatform + ?Sized>(&mut self, p: &mut P) -> Result<u16, GuestError> {
        self.negotiate_from(p, GHCB_VERSION_SNP, |min, max| {
            GuestError::UnsupportedGhcbVersion { min, max }
        })
    }

    /// Negotiate the protocol version as an SEV-ES guest does (Linux
    /// `sev_es_negotiate_protocol`): SEV information request, the hypervisor's range
    /// must meet 1..=2, keep min(max, 2) and the C-bit position. No SNP features are
    /// asked for.
    pub fn negotiate_es<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Result<u16, GuestError> {
        self.negotiate_from(p, GHCB_VERSION_MIN, |min, max| {
            GuestError::UnsupportedGhcbVersionEs { min, max }
        })
    }

    /// The SEV information exchange: the hypervisor's `min..=max` must reach `least`
    /// and not start above the highest version we speak; keep min(max, 2).
    fn negotiate_from<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        least: u16,
        unsupported: fn(u16, u16) -> GuestError,
    ) -> Result<u16, GuestError> {
        let v = self.msr_call(p, GhcbMsg::SevInfoReq)?;
        match GhcbMsg::decode(v) {
            GhcbMsg::SevInfoResp { max, min, cbit } => {
                if max < least || min > GHCB_VERSION_MAX || min > max {
                    return Err(unsupported(min, max));
                }
                self.version = max.min(GHCB_VERSION_MAX);
                self.cbit = cbit;
                Ok(self.version)
            }
            _ => Err(GuestError::MsrProtocol {
                request: "SEV information",
                response: v,
            }),
        }
    }

    /// Use `gpa` (page aligned, mapped with the C-bit clear) as this vCPU's GHCB without
    /// registering it: GHCB GPA registration is SNP-only (host-interfaces.md §2.3), an
    /// SEV-ES guest just points the GHCB MSR at its page for each full-GHCB call.
    pub fn use_unregistered<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
    ) -> Result<(), GuestError> {
        if !gpa.is_aligned(PAGE_SIZE_4K) {
            return Err(GuestError::Config(format!(
                "GHCB GPA {gpa} is not page aligned"
            )));
        }
        p.wrmsr(MSR_GHCB, gpa.raw())
            .map_err(fault("WRMSR GHCB", gpa))?;
        self.gpa = Some(gpa);
        Ok(())
    }

    /// Ask for the hypervisor feature bitmap; SNP guests require bit 0 (SEV-SNP).
    pub fn query_hv_features<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Result<u64, GuestError> {
        let v = self.msr_call(p, GhcbMsg::HvFeaturesReq)?;
        match GhcbMsg::decode(v) {
            GhcbMsg::HvFeaturesResp { features } => {
                self.hv_features = features;
                if features & GHCB_HV_FT_SNP == 0 {
                    return Err(GuestError::HvFeatureMissing {
                        feature: "SEV-SNP (bit 0)",
                        features,
                    });
                }
                Ok(features)
            }
            _ => Err(GuestError::MsrProtocol {
                request: "hypervisor features",
                response: v,
            }),
        }
    }

    /// Register `gpa` (page aligned, already shared) as this vCPU's GHCB; the response
    /// must echo the GFN.
    pub fn register<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
    ) -> Result<(), GuestError> {
        if !gpa.is_aligned(PAGE_SIZE_4K) {
            return Err(GuestError::Config(format!(
                "GHCB GPA {gpa} is not page aligned"
            )));
        }
        let gfn = gpa.gfn().0;
        self.gpa = None;
        let v = self.msr_call(p, GhcbMsg::RegGpaReq { gfn })?;
        match GhcbMsg::decode(v) {
            GhcbMsg::RegGpaResp { gfn: got } if got == gfn => {
                self.gpa = Some(gpa);
                p.wrmsr(MSR_GHCB, gpa.raw())
                    .map_err(fault("WRMSR GHCB", gpa))?;
                Ok(())
            }
            _ => Err(GuestError::GhcbRegistration { gfn, response: v }),
        }
    }

    /// Change the state of one 4 KiB page over the MSR protocol (usable before a GHCB
    /// is registered). Validation is the caller's business.
    pub fn psc_msr<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        gpa: Gpa,
        op: PscOp,
    ) -> Result<(), GuestError> {
        let v = self.msr_call(
            p,
            GhcbMsg::PscReq {
                gfn: gpa.gfn().0,
                op,
            },
        )?;
        self.stats.psc_msr_pages += 1;
        match GhcbMsg::decode(v) {
            GhcbMsg::PscResp { error: 0 } => Ok(()),
            GhcbMsg::PscResp { .. } => Err(GuestError::Psc {
                gpa,
                what: "MSR protocol error response",
                value: v,
            }),
            _ => Err(GuestError::MsrProtocol {
                request: "page state change",
                response: v,
            }),
        }
    }

    /// AP reset hold over the MSR protocol: returns the non-zero payload of a SIPI
    /// wake-up (0 means a spurious wake-up).
    pub fn ap_reset_hold<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Result<u64, GuestError> {
        let v = self.msr_call(p, GhcbMsg::ApResetHoldReq)?;
        match GhcbMsg::decode(v) {
            GhcbMsg::ApResetHoldResp { value } => Ok(value),
            _ => Err(GuestError::MsrProtocol {
                request: "AP reset hold",
                response: v,
            }),
        }
    }

    /// Send a termination request (reason set and code) over the MSR protocol. A host
    /// that honours it never resumes the vCPU, so [`GuestFault::Stopped`] from the
    /// VMGEXIT is the expected outcome and is not an error.
    pub fn terminate<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        set: u8,
        code: u8,
    ) -> Result<(), GuestError> {
        p.wrmsr(MSR_GHCB, GhcbMsg::TermReq { set, code }.encode())
            .map_err(fault("WRMSR GHCB", Gpa(0)))?;
        self.stats.msr_calls += 1;
        self.stats.vmgexits += 1;
        match p.vmgexit() {
            Ok(()) | Err(GuestFault::Stopped) => Ok(()),
            Err(f) => Err(access_fault("VMGEXIT (termination)", Gpa(0), f)),
        }
    }

    /// One full-GHCB call: `req` (built with [`Ghcb::request`] or [`GhcbClient::request`])
    /// is written to the registered GHCB, the MSR is pointed at it, VMGEXIT, and the
    /// page is copied back. SW_EXITINFO1\[31:0\] is checked: 1 = exception injected,
    /// 2 = malformed input (error in SW_EXITINFO2), anything else but 0 is a protocol
    /// violation.
    pub fn call<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        req: &Ghcb,
    ) -> Result<Ghcb, GuestError> {
        let exit = NaeExit(req.sw_exit_code);
        let gpa = self.gpa.ok_or(GuestError::NoGhcb { exit })?;
        p.write(gpa, CBit::Shared, req.as_bytes())
            .map_err(fault("GHCB write", gpa))?;
        p.wrmsr(MSR_GHCB, gpa.raw())
            .map_err(fault("WRMSR GHCB", gpa))?;
        self.stats.ghcb_calls += 1;
        self.stats.vmgexits += 1;
        p.vmgexit().map_err(fault("VMGEXIT", gpa))?;
        // The hypervisor may not move the GHCB or answer in the MSR.
        let msr = p.rdmsr(MSR_GHCB).map_err(fault("RDMSR GHCB", gpa))?;
        if msr != gpa.raw() {
            return Err(GuestError::GhcbBadResponse {
                exit,
                what: "GHCB MSR changed across a full-GHCB call",
                value: msr,
            });
        }
        let mut page = [0u8; 0x1000];
        p.read(gpa, CBit::Shared, &mut page)
            .map_err(fault("GHCB read", gpa))?;
        let resp = Ghcb::read_from_bytes(&page).map_err(|_| GuestError::GhcbBadResponse {
            exit,
            what: "GHCB page size",
            value: page.len() as u64,
        })?;
        let info1 = resp.sw_exit_info_1 & 0xFFFF_FFFF;
        match info1 {
            EXIT_INFO1_OK => Ok(resp),
            EXIT_INFO1_INJECT => Err(GuestError::GhcbException {
                exit,
                event: resp.sw_exit_info_2,
            }),
            EXIT_INFO1_BAD_INPUT => Err(GuestError::GhcbBadInput {
                exit,
                error: GhcbError(resp.sw_exit_info_2 & 0xFFFF_FFFF),
            }),
            v => Err(GuestError::GhcbBadResponse {
                exit,
                what: "SW_EXITINFO1",
                value: v,
            }),
        }
    }

    /// A request GHCB with this client's version.
    pub fn request(&self, exit: NaeExit, info1: u64, info2: u64) -> Ghcb {
        Ghcb::request(self.version, exit, info1, info2)
    }

    /// Page state change of up to 253 entries through the GHCB shared buffer, resubmitted
    /// until the hypervisor reports every entry done (header `cur_entry` past
    /// `end_entry`). The hypervisor may process any prefix per call; it must not move
    /// backwards, change the entries or set reserved bits.
    pub fn psc<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        entries: &[PscEntry],
    ) -> Result<(), GuestError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_gpa = Gpa(first.gfn() << 12);
        if entries.len() > PSC_MAX_ENTRIES {
            return Err(GuestError::Psc {
                gpa: first_gpa,
                what: "more entries than one descriptor holds",
                value: entries.len() as u64,
            });
        }
        let gpa = self.gpa.ok_or(GuestError::NoGhcb { exit: NaeExit::PSC })?;
        let mut desc = PscDesc::default();
        let end = (entries.len() - 1) as u16;
        desc.hdr = PscHdr {
            cur_entry: 0,
            end_entry: end,
            reserved: 0,
        };
        desc.entries[..entries.len()].copy_from_slice(entries);
        self.stats.psc_entries += entries.len() as u64;
        let mut stalls = 0;
        while desc.hdr.cur_entry <= desc.hdr.end_entry {
            let mut req = self.request(NaeExit::PSC, 0, 0);
            req.shared_buffer.copy_from_slice(desc.as_bytes());
            req.set(
                GhcbField::SwScratch,
                gpa.raw() + GHCB_SHARED_BUF_OFFSET as u64,
            );
            self.stats.psc_calls += 1;
            let resp = self.call(p, &req)?;
            if resp.sw_exit_info_2 != 0 {
                return Err(GuestError::Psc {
                    gpa: first_gpa,
                    what: "hypervisor error (SW_EXITINFO2)",
                    value: resp.sw_exit_info_2,
                });
            }
            let back =
                PscDesc::read_from_bytes(&resp.shared_buffer).map_err(|_| GuestError::Psc {
                    gpa: first_gpa,
                    what: "descriptor size",
                    value: 0,
                })?;
            if back.hdr.reserved != 0 {
                return Err(GuestError::Psc {
                    gpa: first_gpa,
                    what: "reserved header bits set by the hypervisor",
                    value: u64::from(back.hdr.reserved),
                });
            }
            if back.hdr.end_entry != end || back.hdr.cur_entry < desc.hdr.cur_entry {
                return Err(GuestError::Psc {
                    gpa: first_gpa,
                    what: "hypervisor moved the descriptor backwards or changed end_entry",
                    value: u64::from(back.hdr.cur_entry) | u64::from(back.hdr.end_entry) << 16,
                });
            }
            // Entries must be the ones we sent (only cur_page may change, and only up).
            for (i, (sent, got)) in desc.entries[..entries.len()]
                .iter()
                .zip(&back.entries[..entries.len()])
                .enumerate()
            {
                let same = got.gfn() == sent.gfn()
                    && got.op() == sent.op()
                    && got.huge() == sent.huge()
                    && got.reserved() == 0;
                if !same
                    || got.cur_page() < sent.cur_page()
                    || u64::from(got.cur_page()) > got.npages()
                {
                    return Err(GuestError::Psc {
                        gpa: Gpa(sent.gfn() << 12),
                        what: "hypervisor altered a descriptor entry",
                        value: (i as u64) << 48 | got.0 & 0xFFFF_FFFF_FFFF,
                    });
                }
            }
            let progressed = back.hdr.cur_entry != desc.hdr.cur_entry
                || back.entries[..entries.len()] != desc.entries[..entries.len()];
            desc = back;
            if !progressed {
                stalls += 1;
                if stalls >= PSC_MAX_STALLS {
                    return Err(GuestError::Psc {
                        gpa: first_gpa,
                        what: "hypervisor makes no progress",
                        value: u64::from(desc.hdr.cur_entry),
                    });
                }
            } else {
                stalls = 0;
            }
        }
        Ok(())
    }

    /// Hypervisor features through the full GHCB (NAE 0x8000_FFFD, bitmap in
    /// SW_EXITINFO2); SEV-SNP (bit 0) is required.
    pub fn hv_features_nae<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Result<u64, GuestError> {
        let req = self.request(NaeExit::HV_FEATURES, 0, 0);
        let features = self.call(p, &req)?.sw_exit_info_2;
        self.hv_features = features;
        if features & GHCB_HV_FT_SNP == 0 {
            return Err(GuestError::HvFeatureMissing {
                feature: "SEV-SNP (bit 0)",
                features,
            });
        }
        Ok(features)
    }

    /// Ask the hypervisor to start (CREATE) the vCPU with `apic_id` from the VMSA at
    /// `vmsa` (a private page the guest made a VMSA with RMPADJUST); RAX carries the
    /// SEV features the VMSA uses.
    pub fn ap_create<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        op: ApCreateOp,
        apic_id: u32,
        vmsa: Gpa,
        sev_features: u64,
    ) -> Result<(), GuestError> {
        let mut req = self.request(
            NaeExit::AP_CREATION,
            ap_creation_info1(op, apic_id),
            vmsa.raw(),
        );
        req.set(GhcbField::Rax, sev_features);
        let resp = self.call(p, &req)?;
        let info1 = resp.sw_exit_info_1 & 0xFFFF_FFFF;
        if info1 != 0 {
            return Err(GuestError::ApCreation {
                apic_id,
                vmsa,
                info1: resp.sw_exit_info_1,
            });
        }
        Ok(())
    }

    /// Ask the hypervisor to DESTROY the vCPU `apic_id` (its pending VMSA is dropped
    /// and the vCPU parked until a new VMSA is supplied).
    pub fn ap_destroy<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        apic_id: u32,
        sev_features: u64,
    ) -> Result<(), GuestError> {
        self.ap_create(p, ApCreateOp::DESTROY, apic_id, Gpa(0), sev_features)
    }

    /// Issue an SNP guest request (NAE 0x8000_0011) or, with `certs`, an extended
    /// guest request (0x8000_0012: RAX = certificate buffer, RBX = pages). Request and
    /// response pages are shared and distinct. A BUSY answer is retried.
    ///
    /// SW_EXITINFO2 = (VMM error << 32) | firmware status. INVALID_LEN on an extended
    /// request returns [`GuestError::CertBufferTooSmall`] with RBX (pages needed).
    pub fn guest_request<P: GuestPlatform + ?Sized>(
        &mut self,
        p: &mut P,
        req_gpa: Gpa,
        resp_gpa: Gpa,
        certs: Option<CertBuf>,
    ) -> Result<GuestReqOutcome, GuestError> {
        let exit = if certs.is_some() {
            NaeExit::EXT_GUEST_REQUEST
        } else {
            NaeExit::GUEST_REQUEST
        };
        for _ in 0..=GUEST_REQ_BUSY_RETRIES {
            let mut req = self.request(exit, req_gpa.raw(), resp_gpa.raw());
            if let Some(c) = certs {
                req.set(GhcbField::Rax, c.gpa.raw());
                req.set(GhcbField::Rbx, u64::from(c.pages));
            }
            self.stats.guest_requests += 1;
            let resp = self.call(p, &req)?;
            let info2 = resp.sw_exit_info_2;
            let vmm = GuestReqVmmError((info2 >> 32) as u32);
            let fw = FwStatus(info2 as u32);
            match vmm {
                GuestReqVmmError::NONE if fw.is_success() => return Ok(GuestReqOutcome { fw }),
                GuestReqVmmError::BUSY => continue,
                GuestReqVmmError::INVALID_LEN => {
                    let Some(c) = certs else {
                        return Err(GuestError::GuestRequest { vmm, fw });
                    };
                    let needed = resp
                        .get(GhcbField::Rbx)
                        .ok_or(GuestError::GhcbBadResponse {
                            exit,
                            what: "INVALID_LEN without RBX marked valid",
                            value: info2,
                        })?;
                    if needed <= u64::from(c.pages) {
                        return Err(GuestError::GhcbBadResponse {
                            exit,
                            what: "INVALID_LEN asks for no more pages than given",
                            value: needed,
                        });
                    }
                    return Err(GuestError::CertBufferTooSmall {
                        given: c.pages,
                        needed,
                    });
                }
                _ => return Err(GuestError::GuestRequest { vmm, fw }),
            }
        }
        Err(GuestError::GuestRequest {
            vmm: GuestReqVmmError::BUSY,
            fw: FwStatus::SUCCESS,
        })
    }
}

/// Whether the MSR value is an MSR-protocol value (GHCBInfo bits non-zero).
pub fn is_msr_protocol(v: u64) -> bool {
    v & GHCB_MSR_INFO_MASK != 0
}
