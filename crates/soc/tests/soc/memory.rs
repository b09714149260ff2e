//! DRAM and encryption-engine behaviour through the public API.
use crate::common::*;
use softsev_abi::{Asid, Gpa, Spa};
use softsev_soc::{AccessKind, GuestAccess, KeyError, KeySel, KeyState, SocError};

#[test]
fn never_written_memory_reads_zero_and_is_not_allocated() {
    let soc = soc();
    let mut buf = [0xFFu8; 64];
    soc.host_read(Spa(0x123_4560), false, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 64]);
    assert_eq!(soc.allocated_bytes(), 0);
}

#[test]
fn same_plaintext_different_addresses_different_ciphertext() {
    let soc = soc();
    let page = [0x41u8; 4096];
    soc.fw_write(Spa(0x1000), KeySel::Guest(ASID), &page)
        .unwrap();
    soc.fw_write(Spa(0x2000), KeySel::Guest(ASID), &page)
        .unwrap();
    let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
    soc.host_read(Spa(0x1000), false, &mut a).unwrap();
    soc.host_read(Spa(0x2000), false, &mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, page);
    let mut back = [0u8; 4096];
    soc.fw_read(Spa(0x1000), KeySel::Guest(ASID), &mut back)
        .unwrap();
    assert_eq!(back, page);
}

#[test]
fn copied_ciphertext_and_other_keys_give_garbage() {
    let soc = soc();
    let page: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    soc.fw_write(Spa(0x1000), KeySel::Guest(ASID), &page)
        .unwrap();
    let mut ct = vec![0u8; 4096];
    soc.host_read(Spa(0x1000), false, &mut ct).unwrap();
    // Host copies the ciphertext elsewhere: decrypts to garbage there.
    soc.host_write(Spa(0x5000), false, &ct).unwrap();
    let mut moved = vec![0u8; 4096];
    soc.fw_read(Spa(0x5000), KeySel::Guest(ASID), &mut moved)
        .unwrap();
    assert_ne!(moved, page);
    // Another guest's key at the same address: garbage.
    let mut other = vec![0u8; 4096];
    soc.fw_read(Spa(0x1000), KeySel::Guest(OTHER), &mut other)
        .unwrap();
    assert_ne!(other, page);
    // The host's SME key: garbage.
    soc.host_read(Spa(0x1000), true, &mut other).unwrap();
    assert_ne!(other, page);
}

#[test]
fn host_read_of_private_page_returns_ciphertext() {
    let soc = soc();
    private_page(&soc, 0x40_0000, 0x1000);
    let acc = GuestAccess::snp(ASID, Gpa(0x1000), Spa(0x40_0000), AccessKind::Write, true);
    let secret = b"attack at dawn, bring the keys!!";
    soc.guest_write(&acc, secret).unwrap();
    let mut seen = [0u8; 32];
    soc.host_read(Spa(0x40_0000), false, &mut seen).unwrap();
    assert_ne!(&seen, secret);
    let mut back = [0u8; 32];
    let acc = GuestAccess {
        kind: AccessKind::Read,
        ..acc
    };
    soc.guest_read(&acc, &mut back).unwrap();
    assert_eq!(&back, secret);
}

#[test]
fn unaligned_encrypted_writes_read_modify_write() {
    let soc = soc();
    let base: Vec<u8> = (0..4096u32).map(|i| (i * 3) as u8).collect();
    soc.fw_write(Spa(0x3000), KeySel::Guest(ASID), &base)
        .unwrap();
    soc.fw_write(Spa(0x3000 + 13), KeySel::Guest(ASID), b"hello, world")
        .unwrap();
    let mut back = vec![0u8; 4096];
    soc.fw_read(Spa(0x3000), KeySel::Guest(ASID), &mut back)
        .unwrap();
    let mut expect = base.clone();
    expect[13..25].copy_from_slice(b"hello, world");
    assert_eq!(back, expect);
    let mut mid = [0u8; 7];
    soc.fw_read(Spa(0x3000 + 15), KeySel::Guest(ASID), &mut mid)
        .unwrap();
    assert_eq!(&mid, &expect[15..22]);
}

#[test]
fn bulk_parallel_roundtrip_across_regions() {
    let soc = soc();
    let data: Vec<u8> = (0..(5 << 20) as u32)
        .map(|i| (i ^ (i >> 11)) as u8)
        .collect();
    soc.fw_write(Spa(0x1F_F000), KeySel::Guest(ASID), &data)
        .unwrap();
    let mut back = vec![0u8; data.len()];
    soc.fw_read(Spa(0x1F_F000), KeySel::Guest(ASID), &mut back)
        .unwrap();
    assert!(back == data);
    // Encrypt in place a plaintext region (LAUNCH_UPDATE) and read it through the key.
    soc.fw_write(Spa(0x80_0000), KeySel::Plain, &data[..1 << 20])
        .unwrap();
    soc.fw_encrypt_in_place(Spa(0x80_0000), 1 << 20, ASID)
        .unwrap();
    let mut dec = vec![0u8; 1 << 20];
    soc.fw_read(Spa(0x80_0000), KeySel::Guest(ASID), &mut dec)
        .unwrap();
    assert!(dec[..] == data[..1 << 20]);
    let mut raw = vec![0u8; 1 << 20];
    soc.host_read(Spa(0x80_0000), false, &mut raw).unwrap();
    assert!(raw[..] != data[..1 << 20]);
}

#[test]
fn out_of_range_and_misaligned_are_errors() {
    let soc = soc();
    let mut b = [0u8; 16];
    assert!(matches!(
        soc.host_read(Spa((64 << 20) - 8), false, &mut b),
        Err(SocError::OutOfRange { .. })
    ));
    assert!(matches!(
        soc.host_read(Spa(u64::MAX - 2), false, &mut b),
        Err(SocError::OutOfRange { .. })
    ));
    assert!(matches!(
        soc.fw_encrypt_in_place(Spa(8), 16, ASID),
        Err(SocError::Misaligned { .. })
    ));
    assert_eq!(
        soc.fw_read(Spa(0), KeySel::Guest(Asid(9)), &mut b),
        Err(SocError::NoKey(9))
    );
}

#[test]
fn key_lifecycle_requires_wbinvd_and_df_flush() {
    let soc = soc();
    assert_eq!(soc.key_state(ASID), Some(KeyState::Active));
    assert_eq!(
        soc.activate_key(ASID, &[1; 16]),
        Err(KeyError::AsidActive(1))
    );
    assert!(matches!(
        soc.activate_key(Asid(0), &[1; 16]),
        Err(KeyError::BadAsid { .. })
    ));
    assert!(matches!(
        soc.activate_key(Asid(16), &[1; 16]),
        Err(KeyError::BadAsid { .. })
    ));
    soc.deactivate_key(ASID).unwrap();
    assert_eq!(soc.deactivate_key(ASID), Err(KeyError::NotActive(1)));
    assert_eq!(soc.key_state(ASID), Some(KeyState::NeedsFlush));
    let mut b = [0u8; 16];
    assert_eq!(
        soc.fw_read(Spa(0), KeySel::Guest(ASID), &mut b),
        Err(SocError::NoKey(1))
    );
    assert_eq!(
        soc.activate_key(ASID, &[1; 16]),
        Err(KeyError::NeedsFlush(1))
    );
    assert_eq!(soc.df_flush(), Err(KeyError::WbinvdRequired));
    soc.wbinvd();
    soc.df_flush().unwrap();
    assert_eq!(soc.key_state(ASID), Some(KeyState::Empty));
    soc.activate_key(ASID, &[1; 16]).unwrap();
}

#[test]
fn concurrent_access_from_threads() {
    let soc = soc();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let soc = &soc;
            s.spawn(move || {
                let page = vec![t as u8; 4096];
                for i in 0..64u64 {
                    let spa = Spa(0x10_0000 + (i * 4 + t) * 4096);
                    soc.fw_write(spa, KeySel::Guest(ASID), &page).unwrap();
                    let mut back = vec![0u8; 4096];
                    soc.fw_read(spa, KeySel::Guest(ASID), &mut back).unwrap();
                    assert_eq!(back, page);
                }
            });
        }
    });
}

#[test]
fn huge_page_backing_behaves_the_same() {
    let soc = softsev_soc::Soc::new(softsev_soc::SocConfig {
        huge_pages: true,
        seed: Some(b"huge".to_vec()),
        ..softsev_soc::SocConfig::new(8 << 20)
    });
    soc.activate_key(ASID, &[3; 16]).unwrap();
    let data: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i >> 5) as u8).collect();
    soc.fw_write(Spa(0x10_0000), KeySel::Guest(ASID), &data)
        .unwrap();
    let mut back = vec![0u8; data.len()];
    soc.fw_read(Spa(0x10_0000), KeySel::Guest(ASID), &mut back)
        .unwrap();
    assert!(back == data);
    assert_eq!(soc.allocated_bytes(), 4 << 20);
}

#[test]
fn unused_key_release_needs_no_flush_but_deactivation_does() {
    let soc = soc();
    let a = Asid(7);
    soc.activate_key(a, &[1; 16]).unwrap();
    soc.release_unused_key(a).unwrap();
    assert_eq!(soc.key_state(a), Some(KeyState::Empty));
    soc.activate_key(a, &[2; 16]).unwrap();
    soc.deactivate_key(a).unwrap();
    assert!(!soc.wbinvd_done());
    assert!(matches!(
        soc.activate_key(a, &[3; 16]),
        Err(KeyError::NeedsFlush(7))
    ));
    assert!(matches!(
        soc.release_unused_key(a),
        Err(KeyError::NotActive(7))
    ));
    soc.wbinvd();
    assert!(soc.wbinvd_done());
    soc.clear_wbinvd_done();
    assert!(matches!(soc.df_flush(), Err(KeyError::WbinvdRequired)));
    soc.wbinvd();
    soc.df_flush().unwrap();
    soc.activate_key(a, &[3; 16]).unwrap();
}

#[test]
fn rmp_reset_returns_every_page_to_the_hypervisor() {
    use softsev_abi::rmp::RmpUpdateInput;
    let soc = soc();
    for spa in [0x1000u64, 0x40_0000, 0x400_0000 - 0x1000] {
        let st = soc.rmpupdate(
            Spa(spa),
            &RmpUpdateInput {
                gpa: 0x5000,
                assigned: 1,
                asid: 3,
                ..Default::default()
            },
        );
        assert!(st.is_success(), "{st:?}");
        assert!(soc.fw_rmp_read(Spa(spa)).unwrap().assigned());
    }
    soc.fw_rmp_reset();
    for spa in [0x1000u64, 0x40_0000, 0x400_0000 - 0x1000] {
        assert!(!soc.fw_rmp_read(Spa(spa)).unwrap().assigned());
    }
}

#[test]
fn rmp_count_asid_counts_assigned_entries() {
    use softsev_abi::rmp::RmpUpdateInput;
    let soc = soc();
    assert_eq!(soc.fw_rmp_count_asid(3), 0);
    for (i, spa) in [0x1000u64, 0x40_0000, 0x200_0000].iter().enumerate() {
        let st = soc.rmpupdate(
            Spa(*spa),
            &RmpUpdateInput {
                gpa: 0x5000 * (i as u64 + 1),
                assigned: 1,
                asid: if i == 2 { 4 } else { 3 },
                ..Default::default()
            },
        );
        assert!(st.is_success());
    }
    assert_eq!(soc.fw_rmp_count_asid(3), 2);
    assert_eq!(soc.fw_rmp_count_asid(4), 1);
}
