//! proptest invariants over random operation sequences, checked against a reference
//! model of page ownership after every step:
//! - every page has exactly the owner (ASID, GPA) the model predicts — so no page is
//!   ever assigned to two ASIDs or two GPAs, and no 4 KiB entry is assigned under an
//!   assigned 2 MiB entry;
//! - a page the host touched with RMPUPDATE is no longer validated;
//! - PVALIDATE of an already validated page reports FAIL_UNCHANGED;
//! - the host (C-bit clear or set) and devices never obtain the plaintext of a
//!   private page.
use crate::common::*;
use proptest::prelude::*;
use softsev_abi::{Asid, Gpa, Spa};
use softsev_soc::*;
use std::collections::{BTreeSet, HashMap};

const PAGES: u64 = 1024; // two 2 MiB regions
const MARK: &[u8; 12] = b"SECRETSECRET";

#[derive(Debug, Clone)]
enum Op {
    MakePrivate {
        page: u64,
        gpa: u64,
        asid: u32,
    },
    Assign {
        page: u64,
        gpa: u64,
        asid: u32,
        two_m: bool,
    },
    Shared {
        page: u64,
        two_m: bool,
    },
    Psmash {
        page: u64,
    },
    Pvalidate {
        page: u64,
        gpa: u64,
        asid: u32,
        two_m: bool,
        validate: bool,
    },
    GuestWriteSecret {
        page: u64,
        gpa: u64,
        asid: u32,
        off: u64,
    },
    HostWrite {
        page: u64,
        c: bool,
    },
    HostCopy {
        from: u64,
        to: u64,
    },
    DeviceWrite {
        page: u64,
    },
}

/// Pages are drawn from a small set around the 2 MiB boundary so that operations
/// collide often; a page's GPA is derived from the page and a variant so that
/// operations agree on mappings often enough to succeed.
fn page() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..3, 4 => 510u64..514, 1 => Just(0u64), 1 => Just(512u64), 1 => 0..PAGES]
}

fn gpa_of(page: u64, variant: u64, two_m: bool) -> u64 {
    let p = if two_m { page & !511 } else { page };
    variant * 0x40_0000 + p * 4096
}

fn op() -> impl Strategy<Value = Op> {
    let v = 0u64..2;
    let asid = 1u32..3;
    prop_oneof![
        3 => (page(), v.clone(), asid.clone()).prop_map(|(p, v, a)| Op::MakePrivate {
            page: p,
            gpa: gpa_of(p, v, false),
            asid: a,
        }),
        1 => (page(), v.clone(), asid.clone(), any::<bool>()).prop_map(|(p, v, a, t)| Op::Assign {
            page: if t { p & !511 } else { p },
            gpa: gpa_of(p, v, t),
            asid: a,
            two_m: t
        }),
        1 => (page(), any::<bool>()).prop_map(|(p, t)| Op::Shared { page: if t { p & !511 } else { p }, two_m: t }),
        1 => page().prop_map(|p| Op::Psmash { page: p & !511 }),
        1 => (page(), v.clone(), asid.clone(), any::<bool>(), any::<bool>()).prop_map(
            |(p, v, a, t, val)| Op::Pvalidate {
                page: if t { p & !511 } else { p },
                gpa: gpa_of(p, v, t),
                asid: a,
                two_m: t,
                validate: val
            }
        ),
        3 => (page(), v.clone(), asid.clone(), 0u64..250).prop_map(|(p, v, a, o)| Op::GuestWriteSecret {
            page: p,
            gpa: gpa_of(p, v, false),
            asid: a,
            off: o * 16
        }),
        1 => (page(), any::<bool>()).prop_map(|(p, c)| Op::HostWrite { page: p, c }),
        1 => (page(), page()).prop_map(|(f, t)| Op::HostCopy { from: f, to: t }),
        1 => page().prop_map(|p| Op::DeviceWrite { page: p }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Owner {
    asid: u32,
    gpa: u64,
    validated: bool,
    two_m: bool,
}

struct Model {
    pages: HashMap<u64, Owner>,
}

impl Model {
    fn span(page: u64, two_m: bool) -> std::ops::Range<u64> {
        if two_m {
            page..page + 512
        } else {
            page..page + 1
        }
    }
}

fn check_all(soc: &Soc, m: &Model) -> Result<(), TestCaseError> {
    for p in 0..PAGES {
        let (e, size) = soc.rmp_lookup(Spa(p * 4096)).unwrap();
        match m.pages.get(&p) {
            None => prop_assert!(!e.assigned(), "page {p:#x} unexpectedly assigned: {e:?}"),
            Some(o) => {
                prop_assert!(e.assigned());
                prop_assert_eq!(e.asid(), o.asid, "page {:#x} ASID", p);
                let base = if size == PageSize::Size2M {
                    p & !511
                } else {
                    p
                };
                prop_assert_eq!(e.gpa() + (p - base) * 4096, o.gpa, "page {:#x} GPA", p);
                prop_assert_eq!(e.validated(), o.validated, "page {:#x} validated", p);
                prop_assert_eq!(size == PageSize::Size2M, o.two_m, "page {:#x} size", p);
            }
        }
        if size == PageSize::Size2M && p % 512 != 0 {
            prop_assert!(!soc.rmpread(Spa(p * 4096)).unwrap().assigned());
        }
    }
    Ok(())
}

fn no_plaintext(soc: &Soc, secret_pages: &BTreeSet<u64>) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; 4096];
    for &p in secret_pages {
        for c in [false, true] {
            soc.host_read(Spa(p * 4096), c, &mut buf).unwrap();
            prop_assert!(
                !buf.windows(MARK.len()).any(|w| w == MARK),
                "host (C={}) read plaintext of page {:#x}",
                c,
                p
            );
        }
        if soc.device_read(Spa(p * 4096), &mut buf).is_ok() {
            prop_assert!(!buf.windows(MARK.len()).any(|w| w == MARK));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rmp_and_encryption_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let soc = Soc::new(SocConfig {
            asid_count: 4,
            seed: Some(b"prop".to_vec()),
            ..SocConfig::new(PAGES * 4096)
        });
        soc.activate_key(Asid(1), &[1; 16]).unwrap();
        soc.activate_key(Asid(2), &[2; 16]).unwrap();
        let mut m = Model { pages: HashMap::new() };
        let mut secret_pages = BTreeSet::new();
        for op in ops {
            match op {
                Op::MakePrivate { page, gpa, asid } => {
                    if assign(&soc, page * 4096, gpa, Asid(asid), PageSize::Size4K) == RmpStatus::SUCCESS {
                        m.pages.insert(page, Owner { asid, gpa, validated: false, two_m: false });
                        let r = soc.pvalidate(&pv(Asid(asid), gpa, page * 4096, PageSize::Size4K, true));
                        prop_assert_eq!(r, Ok(RmpStatus::SUCCESS));
                        if let Some(o) = m.pages.get_mut(&page) {
                            o.validated = true;
                        }
                    }
                }
                Op::Assign { page, gpa, asid, two_m } => {
                    let size = if two_m { PageSize::Size2M } else { PageSize::Size4K };
                    let st = assign(&soc, page * 4096, gpa, Asid(asid), size);
                    if st == RmpStatus::SUCCESS {
                        if two_m {
                            for (i, p) in Model::span(page, true).enumerate() {
                                m.pages.remove(&p);
                                m.pages.insert(p, Owner { asid, gpa: gpa + i as u64 * 4096, validated: false, two_m: true });
                            }
                        } else {
                            m.pages.insert(page, Owner { asid, gpa, validated: false, two_m: false });
                        }
                        // The host touched the page: not validated any more.
                        prop_assert!(!soc.rmp_lookup(Spa(page * 4096)).unwrap().0.validated());
                    }
                }
                Op::Shared { page, two_m } => {
                    let size = if two_m { PageSize::Size2M } else { PageSize::Size4K };
                    if make_shared(&soc, page * 4096, size) == RmpStatus::SUCCESS {
                        for p in Model::span(page, two_m) {
                            m.pages.remove(&p);
                        }
                    }
                }
                Op::Psmash { page } => {
                    if soc.psmash(Spa(page * 4096)) == RmpStatus::SUCCESS {
                        for p in Model::span(page, true) {
                            if let Some(o) = m.pages.get_mut(&p) {
                                o.two_m = false;
                            }
                        }
                    }
                }
                Op::Pvalidate { page, gpa, asid, two_m, validate } => {
                    let size = if two_m { PageSize::Size2M } else { PageSize::Size4K };
                    let before = m.pages.get(&page).copied();
                    let r = soc.pvalidate(&pv(Asid(asid), gpa, page * 4096, size, validate));
                    if let Some(o) = before
                        && o.asid == asid && o.gpa == gpa && o.two_m == two_m
                        && (!two_m || page % 512 == 0)
                    {
                        if o.validated == validate {
                            prop_assert_eq!(r, Ok(RmpStatus::FAIL_UNCHANGED));
                        } else {
                            prop_assert_eq!(r, Ok(RmpStatus::SUCCESS));
                        }
                    }
                    if r == Ok(RmpStatus::SUCCESS) {
                        for p in Model::span(page, two_m) {
                            if let Some(o) = m.pages.get_mut(&p) {
                                o.validated = validate;
                            }
                        }
                    }
                }
                Op::GuestWriteSecret { page, gpa, asid, off } => {
                    let a = GuestAccess::snp(Asid(asid), Gpa(gpa + off), Spa(page * 4096 + off), AccessKind::Write, true);
                    let mut data = [0u8; 16];
                    data[..12].copy_from_slice(MARK);
                    let r = soc.guest_write(&a, &data);
                    let o = m.pages.get(&page);
                    let ok = o.is_some_and(|o| o.asid == asid && o.gpa == gpa && o.validated && !o.two_m);
                    prop_assert_eq!(r.is_ok(), ok, "guest write {:?} with owner {:?}", r, o);
                    if r.is_ok() {
                        secret_pages.insert(page);
                        let mut back = [0u8; 16];
                        soc.guest_read(&GuestAccess { kind: AccessKind::Read, ..a }, &mut back).unwrap();
                        prop_assert_eq!(back, data);
                    }
                }
                Op::HostWrite { page, c } => {
                    let r = soc.host_write(Spa(page * 4096 + 64), c, &[0xEE; 64]);
                    prop_assert_eq!(r.is_ok(), !m.pages.contains_key(&page));
                }
                Op::HostCopy { from, to } => {
                    let mut buf = vec![0u8; 4096];
                    soc.host_read(Spa(from * 4096), false, &mut buf).unwrap();
                    let r = soc.host_write(Spa(to * 4096), false, &buf);
                    prop_assert_eq!(r.is_ok(), !m.pages.contains_key(&to));
                    if r.is_ok() && secret_pages.contains(&from) {
                        secret_pages.insert(to);
                    }
                }
                Op::DeviceWrite { page } => {
                    let r = soc.device_write(Spa(page * 4096), &[0xDD; 32]);
                    prop_assert_eq!(r.is_ok(), !m.pages.contains_key(&page));
                }
            }
            check_all(&soc, &m)?;
            no_plaintext(&soc, &secret_pages)?;
        }
    }
}
