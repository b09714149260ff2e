//! Shared helpers for the SoC integration tests.

use softsev_abi::{Asid, Gpa, Spa, Vmpl};
use softsev_soc::{PageSize, PvalidateReq, RmpStatus, RmpUpdateInput, Soc, SocConfig};

pub(crate) const ASID: Asid = Asid(1);
pub(crate) const OTHER: Asid = Asid(2);

pub(crate) fn soc() -> Soc {
    let soc = Soc::new(SocConfig {
        seed: Some(b"test".to_vec()),
        asid_count: 16,
        ..SocConfig::new(64 << 20)
    });
    soc.activate_key(ASID, &[0x11; 16]).unwrap();
    soc.activate_key(OTHER, &[0x22; 16]).unwrap();
    soc
}

pub(crate) fn assign(soc: &Soc, spa: u64, gpa: u64, asid: Asid, size: PageSize) -> RmpStatus {
    soc.rmpupdate(
        Spa(spa),
        &RmpUpdateInput {
            gpa,
            assigned: 1,
            pagesize: u8::from(size == PageSize::Size2M),
            immutable: 0,
            _reserved_0b: 0,
            asid: asid.0,
        },
    )
}

pub(crate) fn make_shared(soc: &Soc, spa: u64, size: PageSize) -> RmpStatus {
    soc.rmpupdate(
        Spa(spa),
        &RmpUpdateInput {
            pagesize: u8::from(size == PageSize::Size2M),
            ..Default::default()
        },
    )
}

pub(crate) fn pv(asid: Asid, gpa: u64, spa: u64, size: PageSize, validate: bool) -> PvalidateReq {
    PvalidateReq {
        asid,
        vmpl: Vmpl(0),
        gpa: Gpa(gpa),
        spa: Spa(spa),
        size,
        validate,
    }
}

/// Assign and validate a 4 KiB private page.
pub(crate) fn private_page(soc: &Soc, spa: u64, gpa: u64) {
    assert_eq!(
        assign(soc, spa, gpa, ASID, PageSize::Size4K),
        RmpStatus::SUCCESS
    );
    assert_eq!(
        soc.pvalidate(&pv(ASID, gpa, spa, PageSize::Size4K, true)),
        Ok(RmpStatus::SUCCESS)
    );
}
