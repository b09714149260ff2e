//! The structured event log: every exit, GHCB event, page-state change, RMP change and
//! launch command the host performs, with the decision it took, so a user can see
//! which exit happened and why. Each event is also emitted as a `tracing` event.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;

/// One thing the host did or decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A GHCB MSR-protocol request and the response written.
    MsrProtocol {
        /// vCPU id.
        vcpu: u32,
        /// GHCBInfo of the request.
        info: u16,
        /// The MSR value the guest wrote.
        request: u64,
        /// The MSR value after handling (`None` if the vCPU exited to userspace).
        response: Option<u64>,
    },
    /// A full-GHCB NAE event and its outcome.
    Nae {
        /// vCPU id.
        vcpu: u32,
        /// GPA of the GHCB.
        ghcb_gpa: u64,
        /// SW_EXITCODE.
        exit_code: u64,
        /// SW_EXITINFO1 written back.
        info1: u64,
        /// SW_EXITINFO2 written back.
        info2: u64,
    },
    /// A GHCB that was rejected (`SW_EXITINFO1 = 2`), with the error and why.
    GhcbError {
        /// vCPU id.
        vcpu: u32,
        /// GPA of the GHCB.
        ghcb_gpa: u64,
        /// SW_EXITCODE (as read).
        exit_code: u64,
        /// GHCB error code.
        error: u64,
        /// The reason.
        reason: String,
    },
    /// A page-state change forwarded to userspace as MAP_GPA_RANGE.
    MapGpaRange {
        /// vCPU id.
        vcpu: u32,
        /// First GPA.
        gpa: u64,
        /// 4 KiB pages.
        npages: u64,
        /// To private.
        private: bool,
        /// From the MSR protocol (else a full-GHCB PSC).
        msr: bool,
    },
    /// A page-state change completed (SW_EXITINFO2 / MSR error).
    PscDone {
        /// vCPU id.
        vcpu: u32,
        /// Result (0 = success).
        result: u64,
    },
    /// A vCPU exit to userspace.
    Exit {
        /// vCPU id.
        vcpu: u32,
        /// KVM exit reason number.
        reason: u32,
        /// Short description.
        detail: String,
    },
    /// KVM_SET_MEMORY_ATTRIBUTES.
    SetAttributes {
        /// First GPA.
        gpa: u64,
        /// Size.
        size: u64,
        /// Private.
        private: bool,
    },
    /// A private page made guest-owned (gmem prepare: RMPUPDATE).
    GmemPrepare {
        /// GPA.
        gpa: u64,
        /// SPA.
        spa: u64,
        /// 2 MiB RMP entry.
        huge: bool,
    },
    /// A private page given back to the hypervisor (gmem invalidate).
    GmemInvalidate {
        /// SPA.
        spa: u64,
        /// 2 MiB RMP entry.
        huge: bool,
        /// Through SNP_PAGE_RECLAIM first (immutable page).
        reclaimed: bool,
    },
    /// A 2 MiB RMP entry split (PSMASH).
    Psmash {
        /// SPA (2 MiB aligned).
        spa: u64,
        /// RMP status.
        status: u32,
    },
    /// A KVM_MEMORY_ENCRYPT_OP command and its result.
    EncryptOp {
        /// Command id.
        id: u32,
        /// errno (0 = success).
        errno: i32,
        /// Firmware status.
        fw_error: u32,
    },
    /// An ASID allocated or released.
    Asid {
        /// The ASID.
        asid: u32,
        /// Allocated (else released to the reclaim set).
        allocated: bool,
    },
    /// WBINVD + DF_FLUSH to recycle ASIDs.
    DfFlush {
        /// ASIDs made reusable.
        recycled: u32,
    },
    /// An SNP AP creation request.
    ApCreation {
        /// Requesting vCPU.
        vcpu: u32,
        /// Target APIC id.
        apic_id: u32,
        /// Sub-operation.
        op: u32,
        /// VMSA GPA.
        vmsa_gpa: u64,
    },
    /// An SNP guest request sent to the firmware.
    GuestRequest {
        /// vCPU id.
        vcpu: u32,
        /// Extended request.
        extended: bool,
        /// SW_EXITINFO2 written.
        info2: u64,
    },
    /// A plain SEV guest's CPUID, intercepted and answered by the host.
    Cpuid {
        /// vCPU id.
        vcpu: u32,
        /// EAX in.
        leaf: u32,
        /// ECX in.
        subleaf: u32,
    },
    /// A plain SEV guest executed VMGEXIT (`rep; vmmcall`): an ordinary VMMCALL with
    /// no GHCB, answered and resumed at once.
    Vmmcall {
        /// vCPU id.
        vcpu: u32,
    },
    /// A legacy firmware buffer the host bounced through a firmware-state page (the
    /// SNP RMP is initialised; `sev-dev.c:snp_map_cmd_buf_desc`) or moved to the
    /// firmware state in place (guest-owned pages).
    FwBounce {
        /// Firmware command id.
        cmd: u32,
        /// The buffer's original address.
        spa: u64,
        /// Its length.
        len: u32,
        /// Moved in place (guest-owned) rather than copied.
        in_place: bool,
    },
    /// A legacy SEV guest context bound to the VM's ASID, or torn down.
    SevContext {
        /// Firmware guest handle.
        handle: u32,
        /// The ASID.
        asid: u32,
        /// ACTIVATE (else DEACTIVATE + DECOMMISSION).
        activated: bool,
    },
}

/// A bounded log of [`Event`]s (oldest dropped first).
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<(VecDeque<Event>, u64)>,
    cap: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventLog {
    /// A log keeping the last `cap` events (0 = keep none, count only).
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new((VecDeque::new(), 0)),
            cap,
        }
    }

    /// Record an event (also emitted through `tracing`).
    pub fn push(&self, e: Event) {
        tracing::debug!(event = ?e, "softsev-host");
        let mut g = self.inner.lock();
        g.1 += 1;
        if self.cap == 0 {
            return;
        }
        if g.0.len() >= self.cap {
            g.0.pop_front();
        }
        g.0.push_back(e);
    }

    /// The events kept.
    pub fn snapshot(&self) -> Vec<Event> {
        self.inner.lock().0.iter().cloned().collect()
    }

    /// Take and clear the events kept.
    pub fn drain(&self) -> Vec<Event> {
        self.inner.lock().0.drain(..).collect()
    }

    /// Events recorded since creation (including dropped ones).
    pub fn total(&self) -> u64 {
        self.inner.lock().1
    }

    /// The kept events as JSON lines.
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for e in self.inner.lock().0.iter() {
            if let Ok(l) = serde_json::to_string(e) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s
    }
}
