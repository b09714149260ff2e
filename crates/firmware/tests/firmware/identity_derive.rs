//! MSG_KEY_REQ derived keys change when, and only when, a selected input changes.

use proptest::prelude::*;
use softsev_abi::{Product, TcbVersion};
use softsev_firmware::identity::{
    Chip, DerivedKeyRequest, GuestFieldSelect, IdentityError, KeyRoot, LaunchKey, derive_key,
};
use std::sync::OnceLock;

fn chip() -> &'static Chip {
    static CHIP: OnceLock<Chip> = OnceLock::new();
    CHIP.get_or_init(|| Chip::from_seed(Product::Genoa, b"derive").unwrap())
}

const PLATFORM_TCB: TcbVersion = TcbVersion {
    fmc: 0,
    bootloader: 9,
    tee: 0,
    snp: 23,
    microcode: 72,
};

/// The inputs one can vary, with the GUEST_FIELD_SELECT bit that gates each
/// (`None`: always mixed).
const FIELDS: [(&str, Option<u64>); 11] = [
    ("policy", Some(GuestFieldSelect::POLICY)),
    ("image_id", Some(GuestFieldSelect::IMAGE_ID)),
    ("family_id", Some(GuestFieldSelect::FAMILY_ID)),
    ("measurement", Some(GuestFieldSelect::MEASUREMENT)),
    ("guest_svn", Some(GuestFieldSelect::GUEST_SVN)),
    ("tcb", Some(GuestFieldSelect::TCB_VERSION)),
    (
        "launch_mit_vector",
        Some(GuestFieldSelect::LAUNCH_MIT_VECTOR),
    ),
    ("vmpl", None),
    ("host_data", None),
    ("launch_key", None),
    ("gfs", None),
];

fn base(gfs: u64, seed: u8) -> DerivedKeyRequest {
    DerivedKeyRequest {
        guest_field_select: GuestFieldSelect(gfs),
        vmpl: 1,
        guest_svn: 5,
        tcb: TcbVersion {
            fmc: 0,
            bootloader: 8,
            tee: 0,
            snp: 20,
            microcode: 70,
        },
        launch_mit_vector: 3,
        policy: 0x3_0000,
        image_id: [seed; 16],
        family_id: [seed ^ 1; 16],
        measurement: [seed ^ 2; 48],
        host_data: [seed ^ 3; 32],
        launch_key: LaunchKey::IdKey([seed ^ 4; 48]),
    }
}

/// Change field `i` of `r` by a non-zero `delta`.
fn mutate(r: &mut DerivedKeyRequest, i: usize, delta: u8) {
    let d = delta.max(1);
    match FIELDS[i].0 {
        "policy" => r.policy ^= u64::from(d) << 8,
        "image_id" => r.image_id[usize::from(d) % 16] ^= d,
        "family_id" => r.family_id[usize::from(d) % 16] ^= d,
        "measurement" => r.measurement[usize::from(d) % 48] ^= d,
        "guest_svn" => r.guest_svn ^= u32::from(d),
        // Stay a valid Genoa TCB (fmc must stay 0).
        "tcb" => r.tcb.microcode ^= d,
        "launch_mit_vector" => r.launch_mit_vector ^= u64::from(d),
        "vmpl" => r.vmpl ^= u32::from(d % 3 + 1),
        "host_data" => r.host_data[usize::from(d) % 32] ^= d,
        "launch_key" => {
            r.launch_key = match r.launch_key {
                LaunchKey::IdKey(k) if d.is_multiple_of(2) => LaunchKey::AuthorKey(k),
                LaunchKey::IdKey(mut k) => {
                    k[0] ^= d;
                    LaunchKey::IdKey(k)
                }
                _ => LaunchKey::None,
            }
        }
        "gfs" => r.guest_field_select.0 ^= 1u64 << (d % 7),
        other => unreachable!("unknown field {other}"),
    }
}

fn key(root: &KeyRoot<'_>, r: &DerivedKeyRequest) -> [u8; 32] {
    *derive_key(root, r).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn changes_iff_a_selected_input_changes(
        gfs in 0u64..=GuestFieldSelect::ALL,
        field in 0usize..FIELDS.len(),
        delta in 1u8..=255,
        seed in any::<u8>(),
        root_kind in 0u8..2,
    ) {
        let vmrk = [seed; 32];
        let root = if root_kind == 0 {
            KeyRoot::Vcek { chip: chip(), platform_tcb: PLATFORM_TCB }
        } else {
            KeyRoot::Vmrk(&vmrk)
        };
        let a = base(gfs, seed);
        let mut b = a.clone();
        mutate(&mut b, field, delta);
        let selected = match FIELDS[field].1 {
            Some(bit) => gfs & bit != 0,
            None => true,
        };
        let (ka, kb) = (key(&root, &a), key(&root, &b));
        prop_assert_eq!(ka != kb, selected, "field {} gfs {:#x}", FIELDS[field].0, gfs);
        // Same inputs, same key.
        prop_assert_eq!(ka, key(&root, &a.clone()));
    }
}

#[test]
fn root_choice_changes_the_key() {
    let r = base(GuestFieldSelect::ALL, 9);
    let vcek = key(
        &KeyRoot::Vcek {
            chip: chip(),
            platform_tcb: PLATFORM_TCB,
        },
        &r,
    );
    let vmrk1 = key(&KeyRoot::Vmrk(&[1; 32]), &r);
    let vmrk2 = key(&KeyRoot::Vmrk(&[2; 32]), &r);
    assert_ne!(vcek, vmrk1);
    assert_ne!(vmrk1, vmrk2);
    let other = Chip::from_seed(Product::Genoa, b"derive-other").unwrap();
    assert_ne!(
        vcek,
        key(
            &KeyRoot::Vcek {
                chip: &other,
                platform_tcb: PLATFORM_TCB
            },
            &r
        )
    );
}

#[test]
fn platform_tcb_matters_only_when_tcb_is_not_selected() {
    let mut newer = PLATFORM_TCB;
    newer.snp += 1;
    let k = |gfs: u64, tcb: TcbVersion| {
        key(
            &KeyRoot::Vcek {
                chip: chip(),
                platform_tcb: tcb,
            },
            &base(gfs, 0),
        )
    };
    assert_ne!(k(0, PLATFORM_TCB), k(0, newer));
    let sel = GuestFieldSelect::TCB_VERSION;
    assert_eq!(k(sel, PLATFORM_TCB), k(sel, newer));
}

#[test]
fn bad_inputs_are_errors() {
    let mut r = base(0x80, 0);
    let root = KeyRoot::Vcek {
        chip: chip(),
        platform_tcb: PLATFORM_TCB,
    };
    assert!(matches!(
        derive_key(&root, &r),
        Err(IdentityError::BadKeyRequest { value: 0x80, .. })
    ));
    r.guest_field_select = GuestFieldSelect(GuestFieldSelect::TCB_VERSION);
    r.tcb.fmc = 1; // no FMC on Genoa
    assert!(matches!(
        derive_key(&root, &r),
        Err(IdentityError::BadTcb { .. })
    ));
}

#[test]
fn vlek_root_differs_from_vcek_root() {
    let c = Chip::from_seed(Product::Genoa, b"derive-vlek").unwrap();
    let mut rng = softsev_crypto::rng::Rng::seeded(b"x", "vlek");
    let w = c.provision_vlek(&mut rng, &PLATFORM_TCB, "csp").unwrap();
    let v = c.load_vlek(&w).unwrap();
    let r = base(0, 0);
    let kv = key(&KeyRoot::Vlek(&v), &r);
    assert_ne!(
        kv,
        key(
            &KeyRoot::Vcek {
                chip: &c,
                platform_tcb: PLATFORM_TCB
            },
            &r
        )
    );
    let mut r2 = r.clone();
    r2.vmpl = 2;
    assert_ne!(kv, key(&KeyRoot::Vlek(&v), &r2));
}

#[test]
fn cached_and_uncached_vcek_roots_agree() {
    let fresh = Chip::from_seed(Product::Genoa, b"derive-cache").unwrap();
    let mut r = base(GuestFieldSelect::TCB_VERSION, 7);
    r.tcb.microcode = 11;
    let root = KeyRoot::Vcek {
        chip: &fresh,
        platform_tcb: PLATFORM_TCB,
    };
    let before = key(&root, &r); // no VCEK for r.tcb yet: computed, not cached
    fresh.vcek(&r.tcb).unwrap(); // now cached
    assert_eq!(before, key(&root, &r));
}
