//! The software host platform: `kvm_amd`'s module parameters, the ASID allocator with
//! recycling through WBINVD + SNP_DF_FLUSH (host-interfaces.md §1.11), and
//! `/dev/kvm`-level queries (capabilities, device attributes). The firmware is reached
//! through the PSP driver ([`crate::psp`]).

use crate::alloc::PhysAlloc;
use crate::error::{Errno, KvmError, KvmResult};
use crate::events::{Event, EventLog};
use crate::psp::PspDriver;
use crate::usermem::UserMemory;
use parking_lot::Mutex;
use softsev_abi::kvm::{
    KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS, KVM_X86_SEV_VMSA_FEATURES, KVM_X86_SNP_POLICY_BITS,
    KvmCap, VmType,
};
use softsev_abi::policy::feature_info_ecx;
use softsev_abi::vmsa::SEV_FEATURE_DEBUG_SWAP;
use softsev_abi::{FwCmd, GuestPolicy, PAGE_SIZE_2M, PAGE_SIZE_4K, SnpPolicySupport, Spa};
use softsev_firmware::Firmware;
use softsev_soc::Soc;
use std::collections::BTreeSet;
use std::sync::Arc;

/// SNP policy bits KVM knows (`KVM_SNP_POLICY_MASK_VALID`, the abi rule
/// [`GuestPolicy::KVM_KNOWN`]). MIGRATE_MA (bit 18) is not accepted.
pub const KVM_SNP_POLICY_MASK: u64 = GuestPolicy::KVM_KNOWN;
/// Policy bit 17, reserved, must be one.
pub const SNP_POLICY_RSVD_MBO: u64 = GuestPolicy::RESERVED_MBO;

/// `kvm_amd` module parameters and platform knobs.
#[derive(Debug, Clone)]
pub struct ModuleParams {
    /// `sev`: SEV guests allowed.
    pub sev: bool,
    /// `sev_es`: SEV-ES guests allowed.
    pub sev_es: bool,
    /// `sev_snp`: SNP guests allowed.
    pub sev_snp: bool,
    /// `debug_swap`: advertise DebugSwap (SEV_FEATURES bit 5) in the VMSA features.
    pub debug_swap: bool,
    /// First ASID of plain SEV (CPUID 0x8000001F EDX); `None` = the firmware's.
    pub min_sev_asid: Option<u32>,
    /// Highest usable ASID (CPUID 0x8000001F ECX); `None` = the SoC's.
    pub max_asid: Option<u32>,
    /// `ciphertext_hiding_asids`: SNP gets `1..=n`, SEV-ES `n+1..min_sev_asid-1` (0 = off).
    pub ciphertext_hiding_asids: u32,
    /// C-bit position reported in the SEV-info response (CPUID 0x8000001F EBX\[5:0\]).
    pub cbit: u8,
    /// Events kept in each VM's log.
    pub event_log_cap: usize,
    /// Pages one SNP_LAUNCH_UPDATE call processes before returning its progress
    /// (`None` = the whole range, as KVM unless a signal is pending).
    pub launch_update_batch: Option<u64>,
    /// Fail KVM_RUN with -EINVAL for an unregistered GHCB GPA or a bad AP creation
    /// request, as KVM does, instead of returning the GHCB error to the guest.
    pub kvm_exact_errors: bool,
    /// ccp `init_ex_path` is set: the legacy platform is initialised with INIT_EX and
    /// a 32 KiB non-volatile buffer the host keeps (else INIT).
    pub init_ex_path: bool,
    /// softsev extension (docs/host.md, "SEV-ES migration"): accept
    /// KVM_SEV_SEND_UPDATE_VMSA (10) and KVM_SEV_RECEIVE_UPDATE_VMSA (14) as the
    /// out-of-tree SEV-ES migration series does (Hygon CSV2 `csv_send_update_vmsa` /
    /// `csv_receive_update_vmsa`). `false` (the default) is upstream KVM: both ids are
    /// `-EINVAL` (sev-legacy.md §7.1).
    pub sev_es_migration: bool,
}

impl Default for ModuleParams {
    fn default() -> Self {
        Self {
            sev: true,
            sev_es: true,
            sev_snp: true,
            debug_swap: true,
            min_sev_asid: None,
            max_asid: None,
            ciphertext_hiding_asids: 0,
            cbit: 51,
            event_log_cap: 4096,
            launch_update_batch: None,
            kvm_exact_errors: false,
            init_ex_path: false,
            sev_es_migration: false,
        }
    }
}

/// Which ASID range a guest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsidClass {
    /// Plain SEV: `[min_sev_asid, max_asid]`.
    Sev,
    /// SEV-ES: below `min_sev_asid` (above the SNP range with ciphertext hiding).
    SevEs,
    /// SNP: below `min_sev_asid` (`1..=ciphertext_hiding_asids` with ciphertext hiding).
    Snp,
}

/// An inclusive ASID range (empty when `first > last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsidRange {
    /// First ASID.
    pub first: u32,
    /// Last ASID (inclusive).
    pub last: u32,
}

impl AsidRange {
    /// Whether the range holds no usable ASID (ASID 0 is the host's).
    pub fn is_empty(&self) -> bool {
        self.first == 0 || self.first > self.last
    }
}

/// How many ASIDs are allocated and how many wait for a flush before reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsidCounts {
    /// Allocated to a VM.
    pub in_use: usize,
    /// Released, usable again after the next WBINVD + DF_FLUSH.
    pub awaiting_flush: usize,
}

#[derive(Debug, Default)]
struct Asids {
    used: BTreeSet<u32>,
    reclaim: BTreeSet<u32>,
}

/// The software host: SoC + firmware + physical memory + VMM address space.
pub struct SoftHost {
    pub(crate) soc: Arc<Soc>,
    pub(crate) psp: PspDriver,
    pub(crate) params: ModuleParams,
    pub(crate) alloc: Arc<PhysAlloc>,
    pub(crate) user: Arc<UserMemory>,
    asids: Mutex<Asids>,
    min_sev_asid: u32,
    max_asid: u32,
    pub(crate) log: Arc<EventLog>,
}

impl std::fmt::Debug for SoftHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftHost")
            .field("params", &self.params)
            .field("min_sev_asid", &self.min_sev_asid)
            .field("max_asid", &self.max_asid)
            .finish_non_exhaustive()
    }
}

impl SoftHost {
    /// A host on `fw`'s SoC. Initialises SNP in the firmware if it is not yet (SNP_INIT,
    /// WBINVD, SNP_DF_FLUSH, as the PSP driver does at probe).
    pub fn new(fw: Arc<Firmware>, params: ModuleParams) -> KvmResult<Arc<SoftHost>> {
        let soc = fw.soc().clone();
        let alloc = Arc::new(PhysAlloc::new(PAGE_SIZE_2M, soc.mem_size()));
        let psp = PspDriver::new(
            fw.clone(),
            alloc.clone(),
            params.init_ex_path,
            1u64 << params.cbit,
        )?;
        let min_sev_asid = params
            .min_sev_asid
            .unwrap_or(fw.config().min_sev_asid)
            .max(1);
        let max_asid = params
            .max_asid
            .unwrap_or(soc.asid_count().saturating_sub(1))
            .min(soc.asid_count().saturating_sub(1));
        let user = Arc::new(UserMemory::new(soc.clone(), alloc.clone()));
        let h = SoftHost {
            soc,
            psp,
            log: Arc::new(EventLog::new(params.event_log_cap)),
            params,
            alloc,
            user,
            asids: Mutex::new(Asids::default()),
            min_sev_asid,
            max_asid,
        };
        if h.params.sev_snp {
            h.psp.snp_init_at_probe()?;
        }
        Ok(Arc::new(h))
    }

    /// The SoC.
    pub fn soc(&self) -> &Arc<Soc> {
        &self.soc
    }

    /// The firmware.
    pub fn firmware(&self) -> &Arc<Firmware> {
        self.psp.firmware()
    }

    /// The module parameters in force.
    pub fn params(&self) -> &ModuleParams {
        &self.params
    }

    /// The VMM address space.
    pub fn user(&self) -> &Arc<UserMemory> {
        &self.user
    }

    /// The physical page allocator.
    pub fn phys(&self) -> &Arc<PhysAlloc> {
        &self.alloc
    }

    /// Host-wide events (ASID recycling, DF_FLUSH).
    pub fn events(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// VM types this host can create (`KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES)` bits).
    pub fn vm_types(&self) -> u64 {
        let mut t = 1u64 << VmType::DEFAULT.0;
        if self.params.sev {
            t |= 1 << VmType::SEV.0;
        }
        if self.params.sev_es && self.min_sev_asid > 1 {
            t |= 1 << VmType::SEV_ES.0;
        }
        if self.params.sev_snp && self.min_sev_asid > 1 && self.soc.snp_enabled() {
            t |= 1 << VmType::SNP.0;
        }
        t
    }

    /// The VMSA features INIT2 accepts (`KVM_X86_SEV_VMSA_FEATURES`).
    pub fn supported_vmsa_features(&self) -> u64 {
        if self.params.debug_swap {
            SEV_FEATURE_DEBUG_SWAP
        } else {
            0
        }
    }

    /// SNP policy bits accepted at SNP_LAUNCH_START (`KVM_X86_SNP_POLICY_BITS`): the abi
    /// rule ([`SnpPolicySupport::kvm_policy_bits`]) over the running firmware's API
    /// version and its FEATURE_INFO(0).ECX, with ciphertext hiding shown when the
    /// firmware can enable it (the model's FEATURE_INFO does not report that bit).
    pub fn snp_policy_bits(&self) -> u64 {
        let version = self.firmware().current_image().version;
        let mut ecx = softsev_firmware::FEATURE_INFO_0_ECX;
        if self.firmware().config().ciphertext_hiding {
            ecx |= feature_info_ecx::CIPHERTEXT_HIDING;
        }
        SnpPolicySupport {
            api_major: version.major,
            api_minor: version.minor,
            feature_info_ecx: Some(ecx),
        }
        .kvm_policy_bits()
    }

    /// `KVM_CHECK_EXTENSION` on /dev/kvm.
    pub fn check_extension(&self, cap: KvmCap) -> u64 {
        match cap {
            KvmCap::VM_TYPES => self.vm_types(),
            KvmCap::EXIT_HYPERCALL => 1 << softsev_abi::kvm::KVM_HC_MAP_GPA_RANGE,
            KvmCap::MEMORY_ATTRIBUTES => softsev_abi::kvm::KVM_MEMORY_ATTRIBUTE_PRIVATE,
            KvmCap::USER_MEMORY2
            | KvmCap::GUEST_MEMFD
            | KvmCap::MEMORY_FAULT_INFO
            | KvmCap::PRE_FAULT_MEMORY => 1,
            KvmCap::VM_COPY_ENC_CONTEXT_FROM | KvmCap::VM_MOVE_ENC_CONTEXT_FROM => 1,
            _ => 0,
        }
    }

    /// `KVM_GET_DEVICE_ATTR` on /dev/kvm.
    pub fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64> {
        if group != KVM_X86_GRP_SEV {
            return Err(KvmError::new(
                Errno::ENXIO,
                format!("attribute group {group}"),
            ));
        }
        match attr {
            KVM_X86_SEV_VMSA_FEATURES => Ok(self.supported_vmsa_features()),
            KVM_X86_SNP_POLICY_BITS => Ok(self.snp_policy_bits()),
            KVM_X86_SEV_SNP_REQ_CERTS => Ok(1),
            _ => Err(KvmError::new(Errno::ENXIO, format!("SEV attribute {attr}"))),
        }
    }

    // ---- ASIDs ----

    /// The ASID range of `class`.
    pub fn asid_range(&self, class: AsidClass) -> AsidRange {
        let below = self.min_sev_asid.saturating_sub(1);
        let ch = self.params.ciphertext_hiding_asids.min(below);
        let (first, last) = match class {
            AsidClass::Sev => (self.min_sev_asid, self.max_asid),
            AsidClass::Snp if ch > 0 => (1, ch),
            AsidClass::SevEs if ch > 0 => (ch + 1, below),
            AsidClass::Snp | AsidClass::SevEs => (1, below),
        };
        AsidRange { first, last }
    }

    /// Allocate an ASID of `class`; recycles released ASIDs with WBINVD + DF_FLUSH when
    /// the range is exhausted; `-EBUSY` when none is left.
    pub(crate) fn asid_alloc(&self, class: AsidClass) -> KvmResult<u32> {
        let range = self.asid_range(class);
        let (lo, hi) = (range.first, range.last);
        if range.is_empty() {
            // `sev_asid_new`: an empty range (min > max, e.g. min_sev_asid = 1 leaves
            // SEV-ES none) is -ENOTTY; a full one is -EBUSY.
            return Err(KvmError::new(
                Errno::ENOTTY,
                format!("no ASIDs for {class:?} (range {lo}..={hi})"),
            ));
        }
        let mut a = self.asids.lock();
        for retry in 0..2 {
            if let Some(x) = (lo..=hi).find(|x| !a.used.contains(x) && !a.reclaim.contains(x)) {
                a.used.insert(x);
                self.log.push(Event::Asid {
                    asid: x,
                    allocated: true,
                });
                return Ok(x);
            }
            if retry == 0 && !a.reclaim.is_empty() {
                self.recycle(&mut a)?;
            }
        }
        Err(KvmError::new(
            Errno::EBUSY,
            format!("all ASIDs of {class:?} ({lo}..={hi}) are in use"),
        ))
    }

    fn recycle(&self, a: &mut Asids) -> KvmResult {
        self.soc.wbinvd();
        if self.params.sev_snp {
            self.psp
                .raw(FwCmd::SNP_DF_FLUSH)
                .map_err(|s| KvmError::fw(s, "SNP_DF_FLUSH"))?;
        } else {
            self.soc
                .df_flush()
                .map_err(|e| KvmError::new(Errno::EIO, format!("DF_FLUSH: {e}")))?;
        }
        let n = a.reclaim.len() as u32;
        a.reclaim.clear();
        self.log.push(Event::DfFlush { recycled: n });
        Ok(())
    }

    /// Release an ASID into the reclaim set (usable again after the next flush).
    pub(crate) fn asid_free(&self, asid: u32) {
        let mut a = self.asids.lock();
        if a.used.remove(&asid) {
            a.reclaim.insert(asid);
            self.log.push(Event::Asid {
                asid,
                allocated: false,
            });
        }
    }

    /// `sev_platform_init` of the PSP driver: initialise the legacy SEV firmware if it
    /// is not yet (TMR, INIT or INIT_EX, WBINVD, DF_FLUSH; sev-legacy.md §1.3–1.5). KVM
    /// does it lazily at the first SEV INIT / INIT2, the `/dev/sev` ioctls before the
    /// identity commands. The error carries the firmware status.
    pub fn sev_platform_init(&self) -> KvmResult {
        self.psp.sev_platform_init()
    }

    /// Whether the PSP driver has initialised the legacy SEV platform (the ccp's own
    /// UNINIT/INIT flag; done lazily by the first SEV INIT / INIT2).
    pub fn sev_platform_initialised(&self) -> bool {
        self.psp.sev_initialised()
    }

    /// The SEV-ES TMR the driver gave the firmware at INIT (address, length).
    pub fn sev_tmr(&self) -> Option<(Spa, u64)> {
        self.psp.sev_tmr()
    }

    /// ASIDs in use and waiting for a flush.
    pub fn asid_counts(&self) -> AsidCounts {
        let a = self.asids.lock();
        AsidCounts {
            in_use: a.used.len(),
            awaiting_flush: a.reclaim.len(),
        }
    }

    /// A zeroed hypervisor page.
    pub(crate) fn alloc_page(&self) -> KvmResult<Spa> {
        let spa = self
            .alloc
            .alloc_4k()
            .ok_or_else(|| KvmError::new(Errno::ENOMEM, "out of physical memory"))?;
        self.soc
            .host_write(spa, false, &[0u8; PAGE_SIZE_4K as usize])
            .map_err(|e| KvmError::new(Errno::EFAULT, e.to_string()))?;
        Ok(spa)
    }
}
