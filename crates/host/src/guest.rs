//! How guest code runs on a vCPU of the software host. The guest is ordinary Rust code
//! (a closure, later the guest crate) executed on its own thread while the vCPU is in
//! KVM_RUN: it reads and writes guest memory through the nested translation and the
//! SoC's guest access checks, executes PVALIDATE / RMPADJUST, sets the GHCB MSR and
//! issues VMGEXIT. A VMGEXIT blocks the guest until the host has handled it (possibly
//! after exits to the VMM), exactly as the instruction would; nested page faults the
//! host can fix (first use of a private page, PSMASH for a size mismatch, an implicit
//! conversion the VMM performs after KVM_EXIT_MEMORY_FAULT) are retried transparently.
//!
//! A [`GuestCpu`] is the guest model's platform ([`GuestPlatform`]): it speaks
//! `softsev_guest`'s C-bit, page size and fault types, so the guest crate's boot flow
//! runs unchanged on this host.

use crate::mem::{Mapping, TranslateError};
use crate::state::VcpuShared;
use crate::vm::VmInner;
use softsev_abi::ghcb::{Ghcb, MSR_GHCB, MSR_SEV_STATUS};
use softsev_abi::rmp::RmpStatus;
use softsev_abi::vmsa::Vmsa;
use softsev_abi::{Asid, Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, Spa, Vmpl};
use softsev_guest::{CBit, Gpr, GuestFault, GuestPlatform, PageSize};
use softsev_soc::{
    AccessKind, Fault, GuestAccess, GuestMode, NPF_SIZEM, PF_RMP, Paging, PvalidateReq,
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

/// Guest code: runs on the vCPU's thread until it ends.
pub type GuestFn = Box<dyn FnOnce(&mut GuestCpu) -> Result<GuestEnd, GuestFault> + Send + 'static>;

pub(crate) enum ToHost {
    Vmgexit,
    MemoryFault {
        gpa: Gpa,
        c_bit: CBit,
    },
    /// A plain SEV guest's OUT, intercepted (IOIO): the VMM sees KVM_EXIT_IO.
    IoOut {
        port: u16,
        size: u8,
        data: u32,
    },
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
            .field("vcpu", &self.vcpu.id())
            .finish_non_exhaustive()
    }
}

impl GuestCpu {
    /// The vCPU id (APIC id).
    pub fn vcpu_id(&self) -> u32 {
        self.vcpu.id()
    }

    /// The guest's ASID (hardware knows it; guest code only uses it to build SoC requests).
    pub fn asid(&self) -> Asid {
        Asid(self.vm.asid.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// GPA of the VMSA this vCPU started from after SNP AP creation, if any.
    pub fn vmsa_gpa(&self) -> Option<Gpa> {
        self.vcpu.state().ap_vmsa_gpa()
    }

    fn mode(&self) -> GuestMode {
        let s = self.vm.sev.lock();
        if s.snp().is_some() {
            GuestMode::Snp
        } else if s.is_es() {
            GuestMode::SevEs
        } else {
            GuestMode::Sev
        }
    }

    /// SEV_STATUS: bit 0 SEV, 1 SEV-ES, 2 SNP, bits n+2 = SEV_FEATURES bit n.
    pub fn sev_status(&self) -> u64 {
        let s = self.vm.sev.lock();
        let mut v = 0;
        if s.is_active() {
            v |= 1;
        }
        if s.is_es() {
            // SEV_FEATURES bit n shows as bit n + 2 for an SEV-ES guest too (e.g.
            // DebugSwap, bit 5 → 7); bit 0 (SNP_ACTIVE) is the SNP bit 2 itself.
            v |= 2 | ((s.vmsa_features() & !1) << 2);
        }
        if s.snp().is_some() {
            v |= 4;
        }
        v
    }

    /// The GHCB MSR.
    pub fn ghcb_msr(&self) -> u64 {
        self.vcpu.ghcb_msr()
    }

    /// Write the GHCB MSR.
    pub fn set_ghcb_msr(&self, v: u64) {
        self.vcpu.set_ghcb_msr(v);
    }

    fn exit_to_host(&mut self, m: ToHost) -> Result<(), GuestFault> {
        self.tx.send(m).map_err(|_| GuestFault::Stopped)?;
        match self.rx.recv() {
            Ok(ToGuest::Resume) => Ok(()),
            Err(_) => Err(GuestFault::Stopped),
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
    pub fn ghcb_call(&mut self, gpa: Gpa, ghcb: &Ghcb) -> Result<Ghcb, GuestFault> {
        self.write(gpa, CBit::Shared, ghcb.as_bytes())?;
        self.set_ghcb_msr(gpa.0);
        self.vmgexit()?;
        let mut out = Ghcb::default();
        self.read(gpa, CBit::Shared, out.as_mut_bytes())?;
        Ok(out)
    }

    /// Read a structure.
    pub fn read_obj<T: FromBytes + IntoBytes>(
        &mut self,
        gpa: Gpa,
        c_bit: CBit,
    ) -> Result<T, GuestFault> {
        let mut v = T::new_zeroed();
        self.read(gpa, c_bit, v.as_mut_bytes())?;
        Ok(v)
    }

    /// The host did not map `gpa` for `why`: logged here, the guest sees only that the
    /// access never completed.
    fn unmapped(&self, gpa: Gpa, why: &str) -> GuestFault {
        tracing::debug!(vcpu = self.vcpu.id(), %gpa, why, "guest access not mapped");
        GuestFault::Unmapped { gpa }
    }

    fn translate(&mut self, gpa: Gpa, c_bit: CBit) -> Result<Mapping, GuestFault> {
        for _ in 0..4 {
            let asid = self.vm.asid.load(std::sync::atomic::Ordering::Relaxed);
            // SEV / SEV-ES: no private memory attribute; the C-bit only selects the key.
            let private = self.vm.snp() && c_bit == CBit::Private;
            let r = self
                .vm
                .mem
                .lock()
                .translate(&self.vm.host, asid, gpa, private);
            match r {
                Ok(m) => return Ok(m),
                Err(TranslateError::MemoryFault { gpa, private }) => {
                    let c_bit = CBit::from_bit(private);
                    self.exit_to_host(ToHost::MemoryFault { gpa, c_bit })?;
                }
                Err(TranslateError::NoSlot(g)) => return Err(GuestFault::NoMemory { gpa: g }),
                Err(TranslateError::Refused(s)) => return Err(self.unmapped(gpa, &s)),
            }
        }
        Err(self.unmapped(gpa, "conversion not performed by the VMM"))
    }

    fn access(
        &mut self,
        gpa: Gpa,
        c_bit: CBit,
        kind: AccessKind,
        mut f: impl FnMut(&softsev_soc::Soc, &GuestAccess) -> Result<(), SocError>,
    ) -> Result<(), GuestFault> {
        let mode = self.mode();
        for _ in 0..4 {
            let (spa, c_bit, npt) = match self.translate(gpa, c_bit)? {
                Mapping::Private { spa, npt } => (spa, true, npt),
                Mapping::Shared { spa } => (
                    spa,
                    mode != GuestMode::Snp && c_bit == CBit::Private,
                    PageSize::Size4K,
                ),
            };
            let acc = GuestAccess {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa,
                spa,
                kind,
                c_bit,
                user: false,
                npt_size: npt,
                mode,
                paging: self.paging,
            };
            match f(&self.vm.host.soc, &acc) {
                Ok(()) => {
                    if kind == AccessKind::Write {
                        // The write sets the dirty bit of the page's memslot (KVM's
                        // dirty logging write-protects the page and marks it on the
                        // fault, `mark_page_dirty`).
                        self.vm.mem.lock().mark_dirty(gpa.0 / PAGE_SIZE_4K);
                    }
                    return Ok(());
                }
                Err(SocError::Fault(fault)) => {
                    if !self.fix_npf(&fault, spa, npt) {
                        return Err(self.to_guest_fault(fault, gpa));
                    }
                }
                Err(e) => return Err(self.unmapped(gpa, &e.to_string())),
            }
        }
        Err(self.unmapped(gpa, "fault not resolved"))
    }

    /// The host's RMP #NPF handling: PSMASH when the RMP entry is 2 MiB and the access
    /// (or PVALIDATE) is 4 KiB. Returns whether to retry.
    fn fix_npf(&self, f: &Fault, spa: Spa, npt: PageSize) -> bool {
        let Fault::Npf { error_code, .. } = f else {
            return false;
        };
        if error_code & PF_RMP == 0 {
            return false;
        }
        let Ok((_, size)) = self.vm.host.soc.rmp_lookup(spa) else {
            return false;
        };
        if size == PageSize::Size2M && (npt == PageSize::Size4K || error_code & NPF_SIZEM != 0) {
            let head = Spa(spa.0 & !(PAGE_SIZE_2M - 1));
            let st = self.vm.host.soc.psmash(head);
            self.vm.log.push(crate::events::Event::Psmash {
                spa: head.0,
                status: st.0,
            });
            return st.is_success();
        }
        false
    }

    /// A SoC fault as the guest sees it: #VC and #NPF as such; anything else the host
    /// does not let the access complete.
    fn to_guest_fault(&self, f: Fault, gpa: Gpa) -> GuestFault {
        match f {
            Fault::Vc { exit_code, gpa } => GuestFault::Vc {
                code: exit_code,
                gpa,
            },
            Fault::Npf { gpa, error_code } => GuestFault::Npf { gpa, error_code },
            other => self.unmapped(gpa, &other.to_string()),
        }
    }

    /// Read or write `len` bytes at `gpa`, one page at a time.
    fn access_pages(
        &mut self,
        gpa: Gpa,
        c_bit: CBit,
        kind: AccessKind,
        len: usize,
        mut f: impl FnMut(
            &softsev_soc::Soc,
            &GuestAccess,
            std::ops::Range<usize>,
        ) -> Result<(), SocError>,
    ) -> Result<(), GuestFault> {
        let mut done = 0usize;
        while done < len {
            let a = Gpa(gpa.0 + done as u64);
            let n = ((PAGE_SIZE_4K - a.page_offset()) as usize).min(len - done);
            self.access(a, c_bit, kind, |soc, acc| f(soc, acc, done..done + n))?;
            done += n;
        }
        Ok(())
    }
}

/// The field of the register file (the VMSA layout, AMD APM vol. 2 appendix B) that
/// holds `r`.
fn gpr_field(regs: &mut Vmsa, r: Gpr) -> &mut u64 {
    match r {
        Gpr::Rax => &mut regs.rax,
        Gpr::Rbx => &mut regs.rbx,
        Gpr::Rcx => &mut regs.rcx,
        Gpr::Rdx => &mut regs.rdx,
        Gpr::Rsi => &mut regs.rsi,
        Gpr::Rdi => &mut regs.rdi,
        Gpr::Rbp => &mut regs.rbp,
        Gpr::R8 => &mut regs.r8,
        Gpr::R9 => &mut regs.r9,
        Gpr::R10 => &mut regs.r10,
        Gpr::R11 => &mut regs.r11,
        Gpr::R12 => &mut regs.r12,
        Gpr::R13 => &mut regs.r13,
        Gpr::R14 => &mut regs.r14,
        Gpr::R15 => &mut regs.r15,
    }
}

impl GuestPlatform for GuestCpu {
    fn read(&mut self, gpa: Gpa, c_bit: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.access_pages(gpa, c_bit, AccessKind::Read, buf.len(), |soc, acc, r| {
            soc.guest_read(acc, &mut buf[r])
        })
    }

    fn write(&mut self, gpa: Gpa, c_bit: CBit, data: &[u8]) -> Result<(), GuestFault> {
        self.access_pages(gpa, c_bit, AccessKind::Write, data.len(), |soc, acc, r| {
            soc.guest_write(acc, &data[r])
        })
    }

    /// PVALIDATE; #UD unless SNP is active for the guest (AMD APM vol. 3, PVALIDATE).
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault> {
        if self.mode() != GuestMode::Snp {
            return Err(GuestFault::Ud);
        }
        for _ in 0..4 {
            let (spa, npt) = match self.translate(gpa, CBit::Private)? {
                Mapping::Private { spa, npt } => (spa, npt),
                Mapping::Shared { .. } => {
                    return Err(self.unmapped(gpa, "PVALIDATE of a shared GPA"));
                }
            };
            let req = PvalidateReq {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa,
                spa,
                size,
                validate,
            };
            match self.vm.host.soc.pvalidate(&req) {
                Ok(st) => return Ok(st),
                Err(f) => {
                    let npt = if size == PageSize::Size4K {
                        PageSize::Size4K
                    } else {
                        npt
                    };
                    if !self.fix_npf(&f, spa, npt) {
                        return Err(self.to_guest_fault(f, gpa));
                    }
                }
            }
        }
        Err(self.unmapped(gpa, "PVALIDATE not resolved"))
    }

    /// RMPADJUST; #UD unless SNP is active for the guest (AMD APM vol. 3, RMPADJUST).
    fn rmpadjust(&mut self, gpa: Gpa, size: PageSize, attrs: u64) -> Result<RmpStatus, GuestFault> {
        if self.mode() != GuestMode::Snp {
            return Err(GuestFault::Ud);
        }
        for _ in 0..4 {
            let spa = match self.translate(gpa, CBit::Private)? {
                Mapping::Private { spa, .. } => spa,
                Mapping::Shared { .. } => {
                    return Err(self.unmapped(gpa, "RMPADJUST of a shared GPA"));
                }
            };
            let req = RmpAdjustReq {
                asid: self.asid(),
                vmpl: self.vmpl,
                gpa,
                spa,
                size,
                attrs,
            };
            match self.vm.host.soc.rmpadjust(&req) {
                Ok(st) => return Ok(st),
                Err(f) => {
                    if !self.fix_npf(&f, spa, size) {
                        return Err(self.to_guest_fault(f, gpa));
                    }
                }
            }
        }
        Err(self.unmapped(gpa, "RMPADJUST not resolved"))
    }

    /// CPUID. A plain SEV guest's CPUID is intercepted and answered by the host from
    /// the vCPU's CPUID table (KVM_SET_CPUID2; the exact subleaf, else subleaf 0, else
    /// zeros as KVM answers an AMD guest's absent leaf). In an SEV-ES or SNP guest the
    /// intercept is #VC with SVM_EXIT_CPUID (host-interfaces.md §2.1): the guest asks
    /// through the GHCB.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], GuestFault> {
        if self.mode() != GuestMode::Sev {
            return Err(GuestFault::Vc {
                code: softsev_guest::VC_CPUID,
                gpa: Gpa(0),
            });
        }
        let e = {
            let st = self.vcpu.state();
            st.cpuid(leaf, subleaf)
                .or_else(|| st.cpuid(leaf, 0))
                .unwrap_or_default()
        };
        self.vm.log.push(crate::events::Event::Cpuid {
            vcpu: self.vcpu.id(),
            leaf,
            subleaf,
        });
        Ok([e.eax, e.ebx, e.ecx, e.edx])
    }

    /// OUT. A plain SEV guest's port I/O is intercepted (IOIO) and handed to the VMM
    /// as KVM_EXIT_IO; the guest continues at the next KVM_RUN. In an SEV-ES or SNP
    /// guest the intercept is #VC with SVM_EXIT_IOIO (host-interfaces.md §2.1): the
    /// guest asks through the GHCB (NAE IOIO).
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), GuestFault> {
        if self.mode() != GuestMode::Sev {
            return Err(GuestFault::Vc {
                code: softsev_guest::platform::VC_IOIO,
                gpa: Gpa(0),
            });
        }
        if !matches!(size, 1 | 2 | 4) {
            // No such OUT encoding (AMD APM vol. 3, OUT: 8-, 16- or 32-bit).
            return Err(GuestFault::Ud);
        }
        let mask = (1u64 << (u32::from(size) * 8)) - 1;
        let data = (u64::from(value) & mask) as u32;
        self.exit_to_host(ToHost::IoOut { port, size, data })
    }

    /// RDMSR of the MSRs the guest reads without intercept: SEV_STATUS and, in an
    /// SEV-ES or SNP guest, the GHCB MSR (#GP for the others; a plain SEV guest has no
    /// GHCB MSR).
    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        match msr {
            MSR_SEV_STATUS => Ok(self.sev_status()),
            MSR_GHCB if self.mode() != GuestMode::Sev => Ok(self.ghcb_msr()),
            _ => Err(GuestFault::Gp),
        }
    }

    /// WRMSR of the GHCB MSR in an SEV-ES or SNP guest (#GP for the others).
    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        match msr {
            MSR_GHCB if self.mode() != GuestMode::Sev => {
                self.set_ghcb_msr(value);
                Ok(())
            }
            _ => Err(GuestFault::Gp),
        }
    }

    /// VMGEXIT: hand control to the hypervisor until it resumes the guest. In a plain
    /// SEV guest the instruction is `rep; vmmcall`, an ordinary VMMCALL: KVM's
    /// hypercall handling answers an unknown hypercall in RAX and resumes at once
    /// (no GHCB exists), so nothing the guest model sees changes.
    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        if self.mode() == GuestMode::Sev {
            self.vm.log.push(crate::events::Event::Vmmcall {
                vcpu: self.vcpu.id(),
            });
            return Ok(());
        }
        self.exit_to_host(ToHost::Vmgexit)
    }

    /// A general-purpose register from the vCPU's register file (for a protected
    /// SEV-ES vCPU, the state its VMSA holds once it exits).
    fn gpr(&mut self, r: Gpr) -> Result<u64, GuestFault> {
        Ok(*gpr_field(self.vcpu.state().regs_mut(), r))
    }

    /// A MOV into a general-purpose register: the vCPU's register file changes. The
    /// guest writes its own state, so this also applies once the state is protected
    /// (where KVM_SET_REGS no longer reaches it); an SEV-ES vCPU's next #VMEXIT saves
    /// it into the encrypted VMSA.
    fn set_gpr(&mut self, r: Gpr, v: u64) -> Result<(), GuestFault> {
        *gpr_field(self.vcpu.state().regs_mut(), r) = v;
        Ok(())
    }
}
