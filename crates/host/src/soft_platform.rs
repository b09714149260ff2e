//! The software platform as one value: SoC + chip + secure-processor firmware + KVM-
//! shaped host, built from a product, a seed, a memory size and the `kvm_amd` module
//! parameters ([`SoftPlatform::builder`]). Several platforms live side by side in one
//! process, each with its own chip (VCEK) and firmware state, as two machines would
//! for migration.
//!
//! [`SoftPlatform`] is a [`Hypervisor`] like any backend; what has no hardware
//! equivalent is in [`SoftPlatformExt`]: installing the guest model on a vCPU,
//! tampering with an RMP entry as a malicious host, the event log, the firmware, chip
//! and SoC handles, RMP inspection and the firmware's launch observers.
//! [`hypervisor`] is the runtime factory.

// Through the crate root's re-exports only, so the modules behind them can move.
use crate::{
    EventLog, GfnState, GuestFn, Hypervisor, KvmError, KvmResult, ModuleParams, SoftHost, SoftVcpu,
    SoftVm, Vcpu, Vm, VmmMemory,
};
use softsev_abi::kvm::{KvmCap, VmType};
use softsev_abi::rmp::RmpUpdateInput;
use softsev_abi::{AddrRange, Gfn, Gpa, PAGE_SIZE_2M, Product, Spa};
use softsev_firmware::identity::{Chip, IdentityError};
use softsev_firmware::{Firmware, FirmwareConfig};
use softsev_soc::{PageSize, Soc};
use std::any::Any;
use std::sync::Arc;

/// Why a platform could not be built. The message includes the cause (no separate
/// `source`, so an error chain does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The chip identity could not be derived.
    #[error("chip: {0}")]
    Chip(IdentityError),
    /// The host refused to start (SNP_INIT at probe failed, no memory).
    #[error("host: {0}")]
    Host(KvmError),
}

/// The software platform: one SoC, its chip, the firmware on it and the host.
pub struct SoftPlatform {
    product: Product,
    soc: Arc<Soc>,
    chip: Arc<Chip>,
    firmware: Arc<Firmware>,
    host: Arc<SoftHost>,
}

impl std::fmt::Debug for SoftPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftPlatform")
            .field("product", &self.product)
            .field("mem_size", &self.soc.mem_size())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SoftPlatform`]; every setting has a default.
#[derive(Debug, Clone)]
pub struct SoftPlatformBuilder {
    product: Product,
    seed: Option<Vec<u8>>,
    mem: u64,
    module_params: ModuleParams,
    chip: Option<Arc<Chip>>,
    firmware_config: Option<FirmwareConfig>,
}

impl SoftPlatform {
    /// A platform of `product`: 1 GiB of memory, default module parameters, the
    /// firmware configuration of the product, and OS randomness unless seeded.
    pub fn builder(product: Product) -> SoftPlatformBuilder {
        SoftPlatformBuilder {
            product,
            seed: None,
            mem: 1 << 30,
            module_params: ModuleParams::default(),
            chip: None,
            firmware_config: None,
        }
    }

    /// The platform behind a hypervisor made by [`hypervisor`], if it is one.
    pub fn from_hypervisor(hv: &dyn Hypervisor) -> Option<&SoftPlatform> {
        hv.as_any().downcast_ref()
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The host (`/dev/kvm` of this platform), for its full software API.
    pub fn host(&self) -> &Arc<SoftHost> {
        &self.host
    }
}

impl SoftPlatformBuilder {
    /// Seed every random choice (SoC memory key, chip identity, firmware keys and
    /// nonces): equal seeds give equal bytes.
    pub fn seed(mut self, seed: impl Into<Vec<u8>>) -> Self {
        self.seed = Some(seed.into());
        self
    }

    /// Installed memory in bytes (rounded up to 2 MiB; pages cost nothing until
    /// touched).
    pub fn mem(mut self, bytes: u64) -> Self {
        self.mem = bytes;
        self
    }

    /// The `kvm_amd` module parameters.
    pub fn module_params(mut self, params: ModuleParams) -> Self {
        self.module_params = params;
        self
    }

    /// Use this chip instead of deriving one (tests share one derived chip).
    pub fn chip(mut self, chip: Arc<Chip>) -> Self {
        self.chip = Some(chip);
        self
    }

    /// Use this firmware configuration as given (its `seed` included) instead of
    /// the product's, seeded with [`SoftPlatformBuilder::seed`].
    pub fn firmware_config(mut self, config: FirmwareConfig) -> Self {
        self.firmware_config = Some(config);
        self
    }

    /// Assemble SoC, chip, firmware and host; the host initialises SNP as the PSP
    /// driver does at probe.
    pub fn build(self) -> Result<SoftPlatform, PlatformError> {
        let firmware = assemble_firmware(
            self.product,
            self.seed,
            self.mem,
            self.chip,
            self.firmware_config,
        )?;
        let host =
            SoftHost::new(firmware.clone(), self.module_params).map_err(PlatformError::Host)?;
        Ok(SoftPlatform {
            product: self.product,
            soc: firmware.soc().clone(),
            chip: firmware.chip().clone(),
            firmware,
            host,
        })
    }
}

/// SoC, chip and the firmware on them: the one place they are put together (the
/// firmware reaches its SoC and chip through [`Firmware::soc`] and [`Firmware::chip`]).
fn assemble_firmware(
    product: Product,
    seed: Option<Vec<u8>>,
    mem: u64,
    chip: Option<Arc<Chip>>,
    firmware_config: Option<FirmwareConfig>,
) -> Result<Arc<Firmware>, PlatformError> {
    let mut b = Firmware::builder(product).soc_bytes(mem);
    if let Some(s) = &seed {
        b = b.seed(s);
    }
    if let Some(c) = chip {
        b = b.chip(c);
    }
    if let Some(cfg) = firmware_config {
        // A configuration given whole replaces the product default, seed included.
        b = b.configure(|c| *c = cfg);
    }
    b.build().map_err(PlatformError::Chip)
}

/// The backends [`hypervisor`] can make.
#[derive(Debug, Clone)]
pub enum HypervisorKind {
    /// The software platform.
    Soft(SoftPlatformBuilder),
}

/// A hypervisor of `kind`, behind the backend traits.
pub fn hypervisor(kind: HypervisorKind) -> Result<Arc<dyn Hypervisor>, PlatformError> {
    match kind {
        HypervisorKind::Soft(b) => Ok(Arc::new(b.build()?)),
    }
}

impl Hypervisor for SoftPlatform {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn create_vm(&self, vm_type: VmType) -> KvmResult<Arc<dyn Vm>> {
        Hypervisor::create_vm(&self.host, vm_type)
    }
    fn check_extension(&self, cap: KvmCap) -> u64 {
        self.host.check_extension(cap)
    }
    fn get_device_attr(&self, group: u32, attr: u64) -> KvmResult<u64> {
        self.host.get_device_attr(group, attr)
    }
    fn vmm_memory(&self) -> Arc<dyn VmmMemory> {
        self.host.user().clone()
    }
}

/// What only the software platform can do: no hardware backend has these.
pub trait SoftPlatformExt {
    /// The SoC.
    fn soc(&self) -> &Arc<Soc>;
    /// The chip (its VCEK/VLEK chain).
    fn chip(&self) -> &Arc<Chip>;
    /// The firmware, with its observers (guest state, launch digest, reported TCB).
    fn firmware(&self) -> &Arc<Firmware>;
    /// The host's event log (every exit and decision).
    fn events(&self) -> &Arc<EventLog>;
    /// Install the guest model's code on a vCPU (before its first KVM_RUN).
    fn set_guest(&self, vcpu: &mut dyn Vcpu, guest: GuestFn) -> KvmResult;
    /// Act as a malicious host: RMPUPDATE the page backing `gpa` to the owner it
    /// already has (any hypervisor change of an RMP entry clears the validated bit).
    /// Returns what was done, or why nothing could be.
    fn tamper_rmp_entry(&self, vm: &dyn Vm, gpa: Gpa) -> KvmResult<String>;
    /// For each GFN: its PRIVATE attribute and the RMP entry of its private page.
    fn rmp_snapshot(&self, vm: &dyn Vm, gfns: AddrRange<Gfn>) -> KvmResult<Vec<GfnState>>;
    /// The launch digest the firmware holds for `vm` (an observer: a VMM learns the
    /// digest from the guest's attestation report).
    fn launch_digest(&self, vm: &dyn Vm) -> KvmResult<Option<[u8; 48]>>;
}

fn soft_vm(vm: &dyn Vm) -> KvmResult<&SoftVm> {
    vm.as_any()
        .downcast_ref()
        .ok_or_else(|| KvmError::inval("the VM is not one of the software backend"))
}

impl SoftPlatformExt for SoftPlatform {
    fn soc(&self) -> &Arc<Soc> {
        &self.soc
    }

    fn chip(&self) -> &Arc<Chip> {
        &self.chip
    }

    fn firmware(&self) -> &Arc<Firmware> {
        &self.firmware
    }

    fn events(&self) -> &Arc<EventLog> {
        self.host.events()
    }

    fn set_guest(&self, vcpu: &mut dyn Vcpu, guest: GuestFn) -> KvmResult {
        let vcpu: &mut SoftVcpu = vcpu
            .as_any_mut()
            .downcast_mut()
            .ok_or_else(|| KvmError::inval("the vCPU is not one of the software backend"))?;
        vcpu.set_guest(guest);
        Ok(())
    }

    fn tamper_rmp_entry(&self, vm: &dyn Vm, gpa: Gpa) -> KvmResult<String> {
        let vm = soft_vm(vm)?;
        let Some(crate::Backing::Private(spa)) = vm.lookup(gpa) else {
            let gpa = gpa.0;
            return Ok(format!(
                "GPA {gpa:#x} is not private guest memory; nothing changed"
            ));
        };
        let Ok((e, size)) = self.soc.rmp_lookup(spa) else {
            return Ok(format!("no RMP entry for {spa}; nothing changed"));
        };
        // A 2 MiB entry is changed at its head.
        let spa = if size == PageSize::Size2M {
            Spa(spa.0 & !(PAGE_SIZE_2M - 1))
        } else {
            spa
        };
        let st = self.soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                gpa: e.gpa(),
                assigned: u8::from(e.assigned()),
                pagesize: u8::from(e.is_2m()),
                immutable: 0,
                asid: e.asid(),
                ..Default::default()
            },
        );
        Ok(format!(
            "RMPUPDATE of {spa} (GPA {:#x}, ASID {}) to its current owner: {st:?}",
            gpa.0,
            e.asid()
        ))
    }

    fn rmp_snapshot(&self, vm: &dyn Vm, gfns: AddrRange<Gfn>) -> KvmResult<Vec<GfnState>> {
        Ok(soft_vm(vm)?.rmp_snapshot(gfns))
    }

    fn launch_digest(&self, vm: &dyn Vm) -> KvmResult<Option<[u8; 48]>> {
        Ok(soft_vm(vm)?
            .sev_state()
            .snp_context()
            .and_then(|gctx| self.firmware.launch_digest(gctx)))
    }
}
