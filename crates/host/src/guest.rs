//! How guest code runs on a vCPU of the software host. The guest is ordinary Rust code
//! (a closure, later the guest crate) executed on its own thread while the vCPU is in
//! KVM_RUN: it reads and writes guest memory through the nested translation and the
//! SoC's guest access checks, executes PVALIDATE / RMPADJUST, sets the GHCB MSR and
//! issues VMGEXIT. A VMGEXIT blocks the guest until the host has handled it (possibly
//! after exits to the VMM), exactly as the instruction would; nested page faults the
//! host can fix (first use of a private page, PSMASH for a size mismatch, an implicit
//! conversion the VMM performs after KVM_EXIT_MEMORY_FAULT) are retried transparently.

use crate::mem::{Mapping, TranslateError};
use crate::vcpu::VcpuShared;
use crate::vm::VmInner;
use softsev_abi::ghcb::{Ghcb, MSR_GHCB, MSR_SEV_STATUS};
use softsev_abi::rmp::RmpStatus;
use softsev_abi::{Asid, Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, Spa, Vmpl};
use softsev_soc::{
    AccessKind, Fault, GuestAccess, GuestMode, NPF_SIZEM, PF_RMP, PageSize, Paging, PvalidateReq,
    RmpAdjustReq, SocError,
};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use zerocopy::{FromBytes, IntoBytes};

/// How guest code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// HLT with interrupts off: the vCPU halts (KVM_EXIT_HLT).
    Halt,
    /// Triple fault (KVM_EXIT_SHUTDOWN).
    Shutdown,
}

/// A fault or condition delivered to guest code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFault {
    /// #VC raised in the guest (e.g. 0x404: page not validated).
    #[error("#VC {code:#x} at GPA {gpa}")]
    Vc {
        /// #VC error code.
        code: u64,
        /// GPA accessed.
        gpa: Gpa,
    },
    /// A nested page fault the host could not resolve (RMP violation).
    #[error("unresolved #NPF at GPA {gpa} (EXITINFO1 {error_code:#x})")]
    Npf {
        /// GPA.
        gpa: Gpa,
        /// EXITINFO1.
        error_code: u64,
    },
    /// No memory at this GPA (MMIO must use the GHCB MMIO events).
    #[error("no memory at GPA {0} (MMIO)")]
    NoMemory(Gpa),
    /// The host refused to map the page.
    #[error("host refused the access: {0}")]
    Refused(String),
    /// The vCPU was torn down while the guest waited.
    #[error("vCPU torn down")]
    Killed,
}

/// Guest code: runs on the vCPU's thread until it ends.
pub type GuestFn = Box<dyn FnOnce(&mut GuestCpu) -> Result<GuestEnd, GuestFault> + Send + 'static>;

pub(crate) enum ToHost {
    Vmgexit,
    MemoryFault { gpa: Gpa, private: bool },
    Done(Result<GuestEnd, GuestFault>),
}

pub(crate) enum ToGuest {
    Resume,
}

/// The guest's view of its vCPU.
pub struct GuestCpu {
    pub(crate) vm: Arc<VmInner>,
    pub(crate) vcpu: Arc<VcpuShared>,
    pub(crate) tx: Sender<ToHost>,
    pub(crate) rx: Receiver<ToGuest>,
    pub(crate) vmpl: Vmpl,
    pub(crate) paging: Paging,
}

impl std::fmt::Debug for GuestCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestCpu")
            .field("vcpu", &self.vcpu.id)
            .finish_non_exhaustive()
    }
}

impl GuestCpu {
    /// The vCPU id (APIC id).
    pub fn vcpu_id(&self) -> u32 {
        self.vcpu.id
    }

    /// The guest's ASID (hardware knows it; guest code only uses it to build SoC requests).
    pub fn asid(&self) -> Asid {
        Asid(self.vm.asid.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// GPA of the VMSA this vCPU started from after SNP AP creation, if any.
    pub fn vmsa_gpa(&self) -> Option<u64> {
        self.vcpu.st.lock().ap_vmsa_gpa
    }

    fn mode(&self) -> GuestMode {
        let s = self.vm.sev.lock();
        if s.snp {
            GuestMode::Snp
        } else if s.es {
            GuestMode::SevEs
        } else {
            GuestMode::Sev
        }
    }

    /// RDMSR of the MSRs the guest reads without intercept: SEV_STATUS and the GHCB MSR.
    pub fn rdmsr(&self, msr: u32) -> u64 {
        match msr {
            MSR_SEV_STATUS => self.sev_status(),
            MSR_GHCB => self.ghcb_msr(),
            _ => 0,
        }
    }

    /// WRMSR of the GHCB MSR (other MSRs would be #VC events and are ignored here).
    pub fn wrmsr(&self, msr: u32, v: u64) {
        if msr == MSR_GHCB {
            self.set_ghcb_msr(v);
        }
    }

    /// SEV_STATUS: bit 0 SEV, 1 SEV-ES, 2 SNP, bits n+2 = SEV_FEATURES bit n.
    pub fn sev_status(&self) -> u64 {
        let s = self.vm.sev.lock();
        let mut v = 0;
        if s.active {
            v |= 1;
        }
        if s.es {
            v |= 2;
        }
        if s.snp {
            v |= 4 | ((s.vmsa_features & !1) << 2);
        }
        v
    }

    /// The GHCB MSR.
    pub fn ghcb_msr(&self) -> u64 {
        self.vcpu.st.lock().ghcb_msr
    }

    /// Write the GHCB MSR.
    pub fn set_ghcb_msr(&self, v: u64) {
        self.vcpu.st.lock().ghcb_msr = v;
    }

    /// VMGEXIT: hand control to the hypervisor until it resumes the guest.
    pub fn vmgexit(&mut self) -> Result<(), GuestFault> {
        self.exit_to_host(ToHost::Vmgexit)
    }

    fn exit_to_host(&mut self, m: ToHost) -> Result<(), GuestFault> {
        self.tx.send(m).map_err(|_| GuestFault::Killed)?;
        match self.rx.recv() {
            Ok(ToGuest::Resume) => Ok(()),
            Err(_) => Err(GuestFault::Killed),
        }
    }

    /// MSR protocol: write `v` to the GHCB MSR, VMGEXIT, return the MSR.
    pub fn msr_protocol(&mut self, v: u64) -> Result<u64, GuestFault> {
        self.set_ghcb_msr(v);
        self.vmgexit()?;
        Ok(self.ghcb_msr())
    }

    /// Full GHCB call: write `ghcb` to the shared page at `gpa`, point the MSR at it,
    /// VMGEXIT, and read the page back.
    pub fn ghcb_call(&mut self, gpa: u64, ghcb: &Ghcb) -> Result<Ghcb, GuestFault> {
        self.write(gpa, ghcb.as_bytes(), false)?;
        self.set_ghcb_msr(gpa);
        self.vmgexit()?;
        let mut out = Ghcb::default();
        self.read(gpa, out.as_mut_bytes(), false)?;
        Ok(out)
    }

    /// Read guest memory (`private` = C-bit of the mapping).
    pub fn read(&mut self, gpa: u64, buf: &mut [u8], private: bool) -> Result<(), GuestFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = gpa + done as u64;
            let n = ((PAGE_SIZE_4K - (a & (PAGE_SIZE_4K - 1))) as usize).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            self.access(a, private, AccessKind::Read, |soc, acc| {
                soc.guest_read(acc, chunk)
            })?;
            done += n;
        }
        Ok(())
    }

    /// Write guest memory (`private` = C-bit of the mapping).
    pub fn write(&mut self, gpa: u64, data: &[u8], private: bool) -> Result<(), GuestFault> {
        let mut done = 0usize;
        while done < data.len() {
            let a = gpa + done as u64;
            let n = ((PAGE_SIZE_4K - (a & (PAGE_SIZE_4K - 1))) as usize).min(data.len() - done);
            let chunk = &data[done..done + n];
            self.access(a, private, AccessKind::Write, |soc, acc| {
                soc.guest_write(acc, chunk)
            })?;
            done += n;
        }
        Ok(())
    }

    /// Read a structure.
    pub fn read_obj<T: FromBytes + IntoBytes>(
        &mut self,
        gpa: u64,
        private: bool,
    ) -> Result<T, GuestFault> {
        let mut v = T::new_zeroed();
        self.read(gpa, v.as_mut_bytes(), private)?;
        Ok(v)
    }

    fn translate(&mut self, gpa: u64, private: bool) -> Result<Mapping, GuestFault> {
        for _ in 0..4 {
            let asid = self.vm.asid.load(std::sync::atomic::Ordering::Relaxed);
            let r = if self.vm.snp() {
                self.vm
                    .mem
                    .lock()
                    .translate(&self.vm.host, asid, Gpa(gpa), private)
            } else {
                // SEV / SEV-ES: no private memory attribute; the C-bit only selects the key.
                self.vm
                    .mem
                    .lock()
                    .translate(&self.vm.host, asid, Gpa(gpa), false)
            };
            match r {
                Ok(m) => return Ok(m),
                Err(TranslateError::MemoryFault { gpa, private }) => {
                    self.exit_to_host(ToHost::MemoryFault { gpa, private })?;
                }
                Err(TranslateError::NoSlot(g)) => return Err(GuestFault::NoMemory(g)),
                Err(TranslateError::Refused(s)) => return Err(GuestFault::Refused(s)),
            }
        }
        Err(GuestFault::Refused(format!(
            "GPA {gpa:#x}: conversion not performed by the VMM"
        )))
    }

    fn access(
        &mut self,
        gpa: u64,
        private: bool,
        kind: AccessKind,
        mut f: impl FnMut(&softsev_soc::Soc, &GuestAccess) -> Result<(), SocError>,
    ) -> Result<(), GuestFault> {
        let mode = self.mode();
        for _ in 0..4 {
            let (spa, c_bit, npt) = match self.translate(gpa, private)? {
                Mapping::Private { spa, npt } => (spa, true, npt),
                Mapping::Shared { spa } => {
                    (spa, mode != GuestMode::Snp && private, PageSize::Size4K)
                }
            };
            let acc = GuestAccess {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa: Gpa(gpa),
                spa,
                kind,
                c_bit,
                user: false,
                npt_size: npt,
                mode,
                paging: self.paging,
            };
            match f(&self.vm.host.soc, &acc) {
                Ok(()) => return Ok(()),
                Err(SocError::Fault(fault)) => {
                    if !self.fix_npf(&fault, spa, npt)? {
                        return Err(to_guest_fault(fault));
                    }
                }
                Err(e) => return Err(GuestFault::Refused(e.to_string())),
            }
        }
        Err(GuestFault::Refused(format!(
            "GPA {gpa:#x}: fault not resolved"
        )))
    }

    /// The host's RMP #NPF handling: PSMASH when the RMP entry is 2 MiB and the access
    /// (or PVALIDATE) is 4 KiB. Returns whether to retry.
    fn fix_npf(&self, f: &Fault, spa: Spa, npt: PageSize) -> Result<bool, GuestFault> {
        let Fault::Npf { error_code, .. } = f else {
            return Ok(false);
        };
        if error_code & PF_RMP == 0 {
            return Ok(false);
        }
        let Ok((_, size)) = self.vm.host.soc.rmp_lookup(spa) else {
            return Ok(false);
        };
        if size == PageSize::Size2M && (npt == PageSize::Size4K || error_code & NPF_SIZEM != 0) {
            let head = Spa(spa.0 & !(PAGE_SIZE_2M - 1));
            let st = self.vm.host.soc.psmash(head);
            self.vm.log.push(crate::events::Event::Psmash {
                spa: head.0,
                status: st.0,
            });
            return Ok(st.is_success());
        }
        Ok(false)
    }

    /// PVALIDATE the private page at `gpa`.
    pub fn pvalidate(
        &mut self,
        gpa: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault> {
        for _ in 0..4 {
            let (spa, npt) = match self.translate(gpa, true)? {
                Mapping::Private { spa, npt } => (spa, npt),
                Mapping::Shared { .. } => {
                    return Err(GuestFault::Refused(format!(
                        "PVALIDATE of shared GPA {gpa:#x}"
                    )));
                }
            };
            let req = PvalidateReq {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa: Gpa(gpa),
                spa,
                size,
                validate,
            };
            match self.vm.host.soc.pvalidate(&req) {
                Ok(st) => return Ok(st),
                Err(f) => {
                    if !self.fix_npf(
                        &f,
                        spa,
                        if size == PageSize::Size4K {
                            PageSize::Size4K
                        } else {
                            npt
                        },
                    )? {
                        return Err(to_guest_fault(f));
                    }
                }
            }
        }
        Err(GuestFault::Refused(format!(
            "PVALIDATE of {gpa:#x} not resolved"
        )))
    }

    /// RMPADJUST the private page at `gpa` (`attrs`: RDX — target VMPL, permissions,
    /// VMSA bit 16).
    pub fn rmpadjust(
        &mut self,
        gpa: u64,
        size: PageSize,
        attrs: u64,
    ) -> Result<RmpStatus, GuestFault> {
        for _ in 0..4 {
            let spa = match self.translate(gpa, true)? {
                Mapping::Private { spa, .. } => spa,
                Mapping::Shared { .. } => {
                    return Err(GuestFault::Refused(format!(
                        "RMPADJUST of shared GPA {gpa:#x}"
                    )));
                }
            };
            let req = RmpAdjustReq {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa: Gpa(gpa),
                spa,
                size,
                attrs,
            };
            match self.vm.host.soc.rmpadjust(&req) {
                Ok(st) => return Ok(st),
                Err(f) => {
                    if !self.fix_npf(&f, spa, size)? {
                        return Err(to_guest_fault(f));
                    }
                }
            }
        }
        Err(GuestFault::Refused(format!(
            "RMPADJUST of {gpa:#x} not resolved"
        )))
    }
}

fn to_guest_fault(f: Fault) -> GuestFault {
    match f {
        Fault::Vc { exit_code, gpa } => GuestFault::Vc {
            code: exit_code,
            gpa,
        },
        Fault::Npf { gpa, error_code } => GuestFault::Npf { gpa, error_code },
        other => GuestFault::Refused(other.to_string()),
    }
}
