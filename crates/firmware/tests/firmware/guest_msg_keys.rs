//! MSG_KEY_REQ through the guest-message handler: a derived key changes whenever an
//! input it depends on changes — always the root key, the VMPL, HOST_DATA and the
//! launch key, and each optional field when GUEST_FIELD_SELECT selects it — and never
//! when an unselected field changes (proptest).

use proptest::prelude::*;
use softsev_abi::guest_msg::{KeyReq, KeyRsp, KeySel};
use softsev_abi::{FwStatus, Product, TcbVersion};
use softsev_firmware::guest_msg::{GuestMsgEnv, handle_key_req};
use softsev_firmware::identity::Chip;
use std::sync::OnceLock;
use zerocopy::IntoBytes;

fn chip(n: u8) -> &'static Chip {
    static A: OnceLock<Chip> = OnceLock::new();
    static B: OnceLock<Chip> = OnceLock::new();
    let cell = if n == 0 { &A } else { &B };
    cell.get_or_init(|| Chip::from_seed(Product::Genoa, &[b'k', n]).unwrap())
}

static VMRK_A: [u8; 32] = [0x11; 32];
static VMRK_B: [u8; 32] = [0x12; 32];

const COMMITTED: TcbVersion = TcbVersion {
    fmc: 0,
    bootloader: 10,
    tee: 2,
    snp: 30,
    microcode: 0xd0,
};

/// The inputs of one key request: environment and request fields.
#[derive(Clone, Debug)]
struct Inputs {
    chip: u8,
    vmrk: u8,
    root_vmrk: bool,
    gfs: u64,
    vmpl: u32,
    guest_svn: u32,
    tcb: TcbVersion,
    mit: u64,
    policy: u64,
    image_id: [u8; 16],
    family_id: [u8; 16],
    measurement: [u8; 48],
    host_data: [u8; 32],
    launch_key: u8,
    id_digest: [u8; 48],
    author_digest: [u8; 48],
    reported_snp: u8,
}

fn derive(i: &Inputs) -> [u8; 32] {
    let vmrk = if i.vmrk == 0 { &VMRK_A } else { &VMRK_B };
    let mut env = GuestMsgEnv::new(chip(i.chip), vmrk);
    env.committed_tcb = COMMITTED;
    env.reported_tcb = TcbVersion {
        snp: i.reported_snp,
        ..COMMITTED
    };
    env.launch_mut().guest_svn = 100;
    env.launch_mit_vector = u64::MAX;
    env.launch_mut().policy = i.policy;
    env.launch_mut().image_id = i.image_id;
    env.launch_mut().family_id = i.family_id;
    env.launch_mut().measurement = i.measurement;
    env.launch_mut().host_data = i.host_data;
    env.launch_mut().id_block_en = i.launch_key >= 1;
    env.launch_mut().author_key_en = i.launch_key == 2;
    env.launch_mut().id_key_digest = i.id_digest;
    env.launch_mut().author_key_digest = i.author_digest;
    let req = KeyReq {
        key_select: KeyReq::key_select_word(i.root_vmrk, KeySel::VCEK_ONLY),
        guest_field_select: i.gfs,
        vmpl: i.vmpl,
        guest_svn: i.guest_svn,
        tcb_version: i.tcb.encode(Product::Genoa).unwrap(),
        launch_mit_vector: i.mit,
        ..KeyReq::default()
    };
    let rsp: KeyRsp = handle_key_req(&env, req.as_bytes(), 2, 0).unwrap();
    assert_eq!(FwStatus(rsp.status), FwStatus::SUCCESS, "{i:?}");
    rsp.derived_key
}

fn arb_tcb() -> impl Strategy<Value = TcbVersion> {
    (0..=10u8, 0..=2u8, 0..=30u8, 0xc0..=0xd0u8).prop_map(|(bootloader, tee, snp, microcode)| {
        TcbVersion {
            fmc: 0,
            bootloader,
            tee,
            snp,
            microcode,
        }
    })
}

fn arb_inputs() -> impl Strategy<Value = Inputs> {
    (
        (
            0..2u8,
            0..2u8,
            any::<bool>(),
            0..0x80u64,
            0..4u32,
            0..=100u32,
        ),
        (
            arb_tcb(),
            any::<u64>(),
            any::<u64>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        ),
        (
            prop::array::uniform32(any::<u8>()).prop_map(|a| {
                let mut m = [0u8; 48];
                m[..32].copy_from_slice(&a);
                m[32..].copy_from_slice(&a[..16]);
                m
            }),
            any::<[u8; 32]>(),
            0..3u8,
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            25..=30u8,
        ),
    )
        .prop_map(
            |(
                (chip, vmrk, root_vmrk, gfs, vmpl, guest_svn),
                (tcb, mit, policy, image_id, family_id),
                (measurement, host_data, launch_key, idd, ad, reported_snp),
            )| {
                let widen = |a: [u8; 32]| {
                    let mut d = [0u8; 48];
                    d[..32].copy_from_slice(&a);
                    d[40] = a[0] ^ 0x5A;
                    d
                };
                Inputs {
                    chip,
                    vmrk,
                    root_vmrk,
                    gfs,
                    vmpl,
                    guest_svn,
                    tcb,
                    mit,
                    policy,
                    image_id,
                    family_id,
                    measurement,
                    host_data,
                    launch_key,
                    id_digest: widen(idd),
                    author_digest: widen(ad),
                    reported_snp,
                }
            },
        )
}

/// One input changed, and whether the key must change as a result.
fn mutate(base: &Inputs, which: u8) -> (Inputs, bool, &'static str) {
    let mut m = base.clone();
    let sel = |bit: u64| base.gfs & (1 << bit) != 0;
    let vcek = !base.root_vmrk;
    match which {
        0 => {
            m.policy ^= 1 << 20;
            (m, sel(0), "policy")
        }
        1 => {
            m.image_id[3] ^= 1;
            (m, sel(1), "image id")
        }
        2 => {
            m.family_id[15] ^= 0x80;
            (m, sel(2), "family id")
        }
        3 => {
            m.measurement[0] ^= 1;
            (m, sel(3), "measurement")
        }
        4 => {
            m.guest_svn = if base.guest_svn == 0 {
                1
            } else {
                base.guest_svn - 1
            };
            (m, sel(4), "guest svn")
        }
        5 => {
            m.tcb.microcode = if base.tcb.microcode == 0xc0 {
                0xc1
            } else {
                0xc0
            };
            (m, sel(5), "tcb")
        }
        6 => {
            m.mit ^= 1 << 40;
            (m, sel(6), "launch mit vector")
        }
        7 => {
            m.vmpl = (base.vmpl + 1) % 4;
            (m, true, "vmpl")
        }
        8 => {
            m.host_data[31] ^= 1;
            (m, true, "host data")
        }
        9 => {
            m.launch_key = (base.launch_key + 1) % 3;
            (m, true, "launch key kind")
        }
        10 => {
            // The digest of the key in use changes; the other one is not mixed in.
            match base.launch_key {
                1 => m.id_digest[0] ^= 1,
                2 => m.author_digest[0] ^= 1,
                _ => m.id_digest[0] ^= 1,
            }
            (m, base.launch_key != 0, "launch key digest")
        }
        11 => {
            // The digest of a key not in use.
            if base.launch_key == 2 {
                m.id_digest[5] ^= 1;
            } else {
                m.author_digest[5] ^= 1;
            }
            (m, false, "unused launch key digest")
        }
        12 => {
            m.chip ^= 1;
            (m, vcek, "chip (VCEK root)")
        }
        13 => {
            m.vmrk ^= 1;
            (m, !vcek, "VMRK")
        }
        14 => {
            m.root_vmrk = !base.root_vmrk;
            (m, true, "root key select")
        }
        15 => {
            m.gfs ^= 1 << (base.vmpl % 7);
            (m, true, "guest field select")
        }
        _ => {
            // The VCEK root without TCB_VERSION selected uses REPORTED_TCB.
            m.reported_snp = if base.reported_snp == 25 { 26 } else { 25 };
            (m, vcek && !sel(5), "reported tcb")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn derived_key_changes_iff_a_mixed_input_changes(base in arb_inputs(), which in 0..17u8) {
        let (changed, must_differ, what) = mutate(&base, which);
        let a = derive(&base);
        let b = derive(&changed);
        prop_assert_eq!(a != b, must_differ, "{} (gfs {:#x}, root_vmrk {})", what, base.gfs, base.root_vmrk);
        // Deterministic.
        prop_assert_eq!(a, derive(&base));
    }
}
