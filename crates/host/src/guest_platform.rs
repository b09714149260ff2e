//! The software host as the platform of the guest model (`softsev_guest`): a
//! [`GuestCpu`] is one vCPU's hardware interface — memory accesses through the nested
//! translation and the RMP, PVALIDATE, RMPADJUST, the GHCB and SEV_STATUS MSRs and
//! VMGEXIT — so the guest crate's boot flow runs unchanged on this host.

use crate::guest::{GuestCpu, GuestFault as HostFault};
use softsev_abi::Gpa;
use softsev_abi::ghcb::{MSR_GHCB, MSR_SEV_STATUS};
use softsev_abi::rmp::RmpStatus;
use softsev_guest::{CBit, GuestFault, GuestPlatform, PageSize};

fn fault(f: HostFault, gpa: u64) -> GuestFault {
    match f {
        HostFault::Vc { code, gpa } => GuestFault::Vc { code, gpa },
        HostFault::Npf { gpa, error_code } => GuestFault::Npf { gpa, error_code },
        HostFault::Killed => GuestFault::Stopped,
        HostFault::NoMemory(g) => GuestFault::Npf {
            gpa: g,
            error_code: 0,
        },
        HostFault::Refused(_) => GuestFault::Npf {
            gpa: Gpa(gpa),
            error_code: 0,
        },
    }
}

fn size(s: PageSize) -> softsev_soc::PageSize {
    match s {
        PageSize::Size4K => softsev_soc::PageSize::Size4K,
        PageSize::Size2M => softsev_soc::PageSize::Size2M,
    }
}

impl GuestPlatform for GuestCpu {
    fn read(&mut self, gpa: Gpa, c_bit: CBit, buf: &mut [u8]) -> Result<(), GuestFault> {
        GuestCpu::read(self, gpa.0, buf, c_bit == CBit::Private).map_err(|f| fault(f, gpa.0))
    }

    fn write(&mut self, gpa: Gpa, c_bit: CBit, data: &[u8]) -> Result<(), GuestFault> {
        GuestCpu::write(self, gpa.0, data, c_bit == CBit::Private).map_err(|f| fault(f, gpa.0))
    }

    fn pvalidate(
        &mut self,
        gpa: Gpa,
        s: PageSize,
        validate: bool,
    ) -> Result<RmpStatus, GuestFault> {
        GuestCpu::pvalidate(self, gpa.0, size(s), validate).map_err(|f| fault(f, gpa.0))
    }

    fn rmpadjust(&mut self, gpa: Gpa, s: PageSize, attrs: u64) -> Result<RmpStatus, GuestFault> {
        GuestCpu::rmpadjust(self, gpa.0, size(s), attrs).map_err(|f| fault(f, gpa.0))
    }

    fn rdmsr(&mut self, msr: u32) -> Result<u64, GuestFault> {
        match msr {
            MSR_GHCB | MSR_SEV_STATUS => Ok(GuestCpu::rdmsr(self, msr)),
            _ => Err(GuestFault::Gp),
        }
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), GuestFault> {
        match msr {
            MSR_GHCB => {
                GuestCpu::set_ghcb_msr(self, value);
                Ok(())
            }
            _ => Err(GuestFault::Gp),
        }
    }

    fn vmgexit(&mut self) -> Result<(), GuestFault> {
        GuestCpu::vmgexit(self).map_err(|f| fault(f, 0))
    }
}
