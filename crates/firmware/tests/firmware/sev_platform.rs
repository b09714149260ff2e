//! Legacy SEV platform commands through the mailbox (sev-legacy.md §1.4–1.8, §2):
//! identity and its certificates, persistence across INIT/SHUTDOWN and INIT_EX, the
//! length queries, PEK_CSR → PEK_CERT_IMPORT, GET_ID, PLATFORM_STATUS bytes, and the
//! Firmware-page rule with SNP initialised.

use crate::sevcommon::*;
use softsev_abi::sev_buf::*;
use softsev_abi::sev_cert::{AmdCaCert, SevAlgo, SevCert, SevUsage};
use softsev_abi::{FwCmd, FwStatus, Product, Spa};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::rng::Rng;
use softsev_firmware::SevPlatformState;
use softsev_firmware::identity::sev::{
    ecc_cert, sev_cert_validate, sign_ecdsa, validate_amd_certs, validate_ark, validate_ask,
};
use zerocopy::IntoBytes;

#[test]
fn init_makes_a_chain_the_firmware_rules_accept() {
    let h = sev_host();
    h.sev_init(false);
    assert_eq!(h.fw.sev_platform_state(), SevPlatformState::Init);
    let [pdh, pek, oca, cek] = h.sev_export();
    let v = h.fw.current_image().version;
    for (c, usage, algo) in [
        (&pdh, SevUsage::PDH, SevAlgo::ECDH_SHA256),
        (&pek, SevUsage::PEK, SevAlgo::ECDSA_SHA256),
        (&oca, SevUsage::OCA, SevAlgo::ECDSA_SHA256),
        (&cek, SevUsage::CEK, SevAlgo::ECDSA_SHA256),
    ] {
        assert_eq!((c.usage(), c.algo()), (usage, algo));
        assert_eq!({ c.version }, 1);
        assert_eq!((c.api_major, c.api_minor), (v.major, v.minor), "{usage:?}");
    }
    // §1.4: OCA self-signed, PEK sig1 OCA and sig2 CEK, PDH sig1 PEK.
    sev_cert_validate(&oca, &signer(&oca)).unwrap();
    sev_cert_validate(&pek, &signer(&oca)).unwrap();
    sev_cert_validate(&pek, &signer(&cek)).unwrap();
    sev_cert_validate(&pdh, &signer(&pek)).unwrap();
    assert_eq!(pek.sig1.usage(), SevUsage::OCA);
    assert_eq!(pek.sig2.usage(), SevUsage::CEK);
    assert!(pdh.sig2.is_empty() && oca.sig2.is_empty());
    // §0.2-9: the exported CEK is unsigned.
    assert!(cek.sig1.is_empty() && cek.sig2.is_empty());

    // The KDS CEK: the same key, signed by the ASK with (0x13, RSA_SHA384); the AMD
    // certificates validate under the pinned ARK (§2.2).
    let kds = h.fw.sev_kds_cek();
    assert_eq!(kds.body(), cek.body());
    assert_eq!(
        (kds.sig1.usage(), kds.sig1.algo()),
        (SevUsage::ASK, SevAlgo::RSA_SHA384)
    );
    let (ask, ark) = h.fw.sev_ca_certs();
    assert_eq!((ask.len(), ark.len()), (1600, 1600));
    let (ask_c, _) = AmdCaCert::decode(&ask).unwrap();
    let (ark_c, _) = AmdCaCert::decode(&ark).unwrap();
    let pinned = h.fw.sev_pinned_ark();
    validate_ark(&ark_c, &pinned).unwrap();
    validate_ask(&ask_c, &ark_c).unwrap();
    let blob = [ask.clone(), ark.clone()].concat();
    let ask_signer = validate_amd_certs(&blob, &pinned).unwrap();
    sev_cert_validate(&kds, &ask_signer).unwrap();
    // The same RSA keys as the SNP X.509 ASK (the modulus is in both).
    let x509_ask = h.fw.chip().root().ask_der().to_vec();
    let n = &ask_c.modulus_be;
    assert!(x509_ask.windows(n.len()).any(|w| w == &n[..]));
}

#[test]
fn identity_is_per_chip_seed_and_get_id_is_the_chip_id() {
    let a = sev_host();
    let b = sev_host();
    a.sev_init(false);
    b.sev_init(false);
    let get_id = |h: &Host| {
        let mut q = SevGetId {
            address: OUT,
            len: 0,
        };
        assert_eq!(h.sev(&mut q), Err(FwStatus::INVALID_LENGTH));
        assert_eq!({ q.len }, 64);
        h.sev(&mut q).unwrap();
        let mut id = [0u8; 64];
        h.soc.host_read(Spa(OUT), false, &mut id).unwrap();
        id
    };
    let id_a = get_id(&a);
    assert_eq!(id_a, get_id(&b));
    assert_eq!(id_a, a.fw.chip().sev_get_id());
    // Same chip seed: same CEK.
    assert_eq!(a.sev_export()[3].body(), b.sev_export()[3].body());
    // Another chip: another id and CEK.
    let other = Host::with_own_chip(Product::Milan);
    other.sev_init(false);
    assert_ne!(get_id(&other), id_a);
    assert_ne!(other.sev_export()[3].body(), a.sev_export()[3].body());
}

#[test]
fn identity_persists_across_shutdown_until_platform_reset() {
    let h = sev_host();
    h.sev_init(false);
    let first = h.sev_export();
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    assert_eq!(h.fw.sev_platform_state(), SevPlatformState::Uninit);
    h.sev_init(false);
    let again = h.sev_export();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.as_bytes(), b.as_bytes());
    }
    // PDH_GEN: new PDH only.
    h.cmd0(FwCmd::PDH_GEN).unwrap();
    let pdh_gen = h.sev_export();
    assert_ne!(pdh_gen[0].as_bytes(), first[0].as_bytes());
    assert_eq!(pdh_gen[1].as_bytes(), first[1].as_bytes());
    // PEK_GEN: new OCA, PEK and PDH; same CEK.
    h.cmd0(FwCmd::PEK_GEN).unwrap();
    let pek_gen = h.sev_export();
    for i in 0..3 {
        assert_ne!(pek_gen[i].as_bytes(), pdh_gen[i].as_bytes());
    }
    assert_eq!(pek_gen[3].as_bytes(), first[3].as_bytes());
    // PLATFORM_RESET only in UNINIT; then INIT makes a new identity.
    assert_eq!(
        h.cmd0(FwCmd::PLATFORM_RESET),
        Err(FwStatus::INVALID_PLATFORM_STATE)
    );
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    h.cmd0(FwCmd::PLATFORM_RESET).unwrap();
    h.sev_init(false);
    let reset = h.sev_export();
    assert_ne!(reset[1].as_bytes(), pek_gen[1].as_bytes());
    assert_eq!(reset[3].as_bytes(), first[3].as_bytes());
}

fn init_ex(h: &Host, length: u32, nv: u64, nv_len: u32) -> Result<(), FwStatus> {
    h.sev(&mut SevInitEx {
        length,
        flags: 0,
        tmr_address: 0,
        tmr_len: 0,
        reserved: 0,
        nv_address: nv,
        nv_len,
    })
}

#[test]
fn init_ex_keeps_the_store_in_the_host_nv_buffer() {
    let h = sev_host();
    let len = SEV_INIT_EX_NV_LEN as u32;
    assert_eq!(init_ex(&h, 0x20, NV, len), Err(FwStatus::INVALID_LENGTH));
    assert_eq!(
        init_ex(&h, 0x24, NV + 0x10, len),
        Err(FwStatus::INVALID_ADDRESS)
    );
    assert_eq!(init_ex(&h, 0x24, NV, 0x4000), Err(FwStatus::INVALID_LENGTH));
    init_ex(&h, 0x24, NV, len).unwrap();
    let first = h.sev_export();
    let mut nv = vec![0u8; len as usize];
    h.soc.host_read(Spa(NV), false, &mut nv).unwrap();
    assert!(nv.iter().any(|&b| b != 0 && b != 0xFF), "store written");
    // The store is sealed: the PDH private scalar's certificate bytes are not in clear.
    assert!(!nv.windows(64).any(|w| w == &first[0].body()[0x18..0x58]));
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    init_ex(&h, 0x24, NV, len).unwrap();
    assert_eq!(h.sev_export()[0].as_bytes(), first[0].as_bytes());
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    // A flipped byte: SECURE_DATA_INVALID and the buffer erased; the retry makes a
    // fresh identity (Linux retries INIT once).
    nv[100] ^= 1;
    h.soc.host_write(Spa(NV), false, &nv).unwrap();
    assert_eq!(
        init_ex(&h, 0x24, NV, len),
        Err(FwStatus::SECURE_DATA_INVALID)
    );
    h.soc.host_read(Spa(NV), false, &mut nv).unwrap();
    assert!(nv.iter().all(|&b| b == 0xFF));
    init_ex(&h, 0x24, NV, len).unwrap();
    assert_ne!(h.sev_export()[0].as_bytes(), first[0].as_bytes());
    // A buffer of another chip does not open either.
    h.soc.host_read(Spa(NV), false, &mut nv).unwrap();
    let other = Host::with_own_chip(Product::Milan);
    other.soc.host_write(Spa(NV), false, &nv).unwrap();
    assert_eq!(
        init_ex(&other, 0x24, NV, len),
        Err(FwStatus::SECURE_DATA_INVALID)
    );
    // PLATFORM_RESET erases the NV store.
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    h.cmd0(FwCmd::PLATFORM_RESET).unwrap();
    h.soc.host_read(Spa(NV), false, &mut nv).unwrap();
    assert!(nv.iter().all(|&b| b == 0xFF));
}

#[test]
fn init_flags_tmr_and_platform_status_bytes() {
    let h = sev_host();
    let st = h.sev_status();
    assert_eq!(st.state_id(), SevPlatformStateId::UNINIT);
    assert_eq!(({ st.flags }, { st.guest_count }), (0, 0));
    let v = h.fw.current_image().version;
    assert_eq!(
        (st.api_major, st.api_minor, st.build),
        (v.major, v.minor, v.build)
    );
    let mut bad = SevInit {
        flags: 2,
        ..Default::default()
    };
    assert_eq!(h.sev(&mut bad), Err(FwStatus::INVALID_CONFIG));
    let mut bad = SevInit {
        reserved: 1,
        ..Default::default()
    };
    assert_eq!(h.sev(&mut bad), Err(FwStatus::INVALID_CONFIG));
    let mut tmr = SevInit {
        flags: 1,
        reserved: 0,
        tmr_address: TMR,
        tmr_len: 0x8_0000,
    };
    assert_eq!(h.sev(&mut tmr), Err(FwStatus::INVALID_LENGTH));
    tmr.tmr_len = SEV_TMR_LEN as u32;
    tmr.tmr_address = TMR + 0x1000;
    assert_eq!(h.sev(&mut tmr), Err(FwStatus::INVALID_ADDRESS));
    assert_eq!(h.fw.sev_platform_state(), SevPlatformState::Uninit);
    h.sev_init(true);
    let st = h.sev_status();
    assert_eq!(st.state_id(), SevPlatformStateId::INIT);
    assert_eq!({ st.flags }, SEV_STATUS_FLAGS_CONFIG_ES);
    assert!(st.is_es_initialised() && !st.is_externally_owned());
    assert_eq!(h.sev_init_only(true), Err(FwStatus::INVALID_PLATFORM_STATE));
    let handle = h.sev_start(0, 0).unwrap();
    let st = h.sev_status();
    assert_eq!(st.state_id(), SevPlatformStateId::WORKING);
    assert_eq!({ st.guest_count }, 1);
    h.sev(&mut SevDecommission { handle }).unwrap();
    assert_eq!(h.sev_status().state_id(), SevPlatformStateId::INIT);
    // The raw 12 bytes (§1.6): owner byte 0, config ES at byte 4.
    let raw = h.sev_status();
    assert_eq!(raw.as_bytes()[3..7], [0, 1, 0, 0]);
}

#[test]
fn init_needs_wbinvd_then_df_flush_before_activation() {
    let h = sev_host();
    h.sev_init_only(false).unwrap();
    assert_eq!(h.cmd0(FwCmd::DF_FLUSH), Err(FwStatus::WBINVD_REQUIRED));
    let handle = h.sev_start(0, 0).unwrap();
    assert_eq!(
        h.sev_activate(handle, SEV_ASID),
        Err(FwStatus::DFFLUSH_REQUIRED)
    );
    h.soc.wbinvd();
    h.cmd0(FwCmd::DF_FLUSH).unwrap();
    h.sev_activate(handle, SEV_ASID).unwrap();
    h.cmd0(FwCmd::NOP).unwrap();
}

#[test]
fn length_queries_write_the_lengths_back() {
    let h = sev_host();
    h.sev_init(false);
    let mut csr = SevPekCsr {
        address: OUT,
        len: 0,
    };
    assert_eq!(h.sev(&mut csr), Err(FwStatus::INVALID_LENGTH));
    assert_eq!({ csr.len }, 0x824);
    let mut ex = SevPdhCertExport {
        pdh_cert_address: OUT,
        pdh_cert_len: 0x824,
        reserved: 0,
        cert_chain_address: CHAIN,
        cert_chain_len: 0x100,
    };
    assert_eq!(h.sev(&mut ex), Err(FwStatus::INVALID_LENGTH));
    assert_eq!(
        ({ ex.pdh_cert_len }, { ex.cert_chain_len }),
        (0x824, 0x186C)
    );
    // Input-only commands do not write back: a failed LAUNCH_START leaves the handle.
    let mut ls = SevLaunchStart {
        handle: 77,
        policy: 0,
        dh_cert_address: GODH,
        dh_cert_len: 0x824,
        session_len: 1,
        ..Default::default()
    };
    assert_eq!(h.sev(&mut ls), Err(FwStatus::INVALID_LENGTH));
    assert_eq!({ ls.handle }, 77);
}

/// Build the owner's OCA and sign `csr` with it (what sevctl `provision` does).
fn owner_sign(csr: &mut SevCert, rng: &mut Rng) -> SevCert {
    let key = P384SigningKey::generate(rng);
    let v = softsev_firmware::FwVersion {
        major: 0,
        minor: 0,
        build: 0,
    };
    let mut oca = ecc_cert(SevUsage::OCA, SevAlgo::ECDSA_SHA256, v, key.public());
    sign_ecdsa(&mut oca, false, SevUsage::OCA, &key, rng);
    sign_ecdsa(csr, false, SevUsage::OCA, &key, rng);
    oca
}

fn import(h: &Host, pek: &SevCert, oca: &SevCert, pek_len: u32) -> Result<(), FwStatus> {
    h.soc.host_write(Spa(OUT), false, pek.as_bytes()).unwrap();
    h.soc.host_write(Spa(OUT2), false, oca.as_bytes()).unwrap();
    h.sev(&mut SevPekCertImport {
        pek_cert_address: OUT,
        pek_cert_len: pek_len,
        reserved: 0,
        oca_cert_address: OUT2,
        oca_cert_len: 0x824,
    })
}

#[test]
fn pek_csr_signed_by_an_owner_imports_once() {
    let h = sev_host();
    h.sev_init(false);
    let [pdh0, pek0, _, cek] = h.sev_export();
    h.sev(&mut SevPekCsr {
        address: OUT,
        len: 0x824,
    })
    .unwrap();
    let mut raw = [0u8; 0x824];
    h.soc.host_read(Spa(OUT), false, &mut raw).unwrap();
    let csr = SevCert::decode(&raw).unwrap();
    assert_eq!(csr.body(), pek0.body());
    assert!(csr.sig1.is_empty() && csr.sig2.is_empty());
    let mut rng = Rng::seeded(b"owner", "oca");
    let mut signed = csr;
    let oca = owner_sign(&mut signed, &mut rng);
    assert_eq!(
        import(&h, &signed, &oca, 0x823),
        Err(FwStatus::INVALID_LENGTH)
    );
    // An OCA signature by another key: BAD_SIGNATURE (PEK←OCA).
    let mut foreign = csr;
    owner_sign(&mut foreign, &mut rng);
    assert_eq!(
        import(&h, &foreign, &oca, 0x824),
        Err(FwStatus::BAD_SIGNATURE)
    );
    // A PEK body that is not the platform's: INVALID_CERTIFICATE.
    let mut other_body = csr;
    other_body.api_minor ^= 1;
    let oca_b = owner_sign(&mut other_body, &mut rng);
    assert_eq!(
        import(&h, &other_body, &oca_b, 0x824),
        Err(FwStatus::INVALID_CERTIFICATE)
    );
    import(&h, &signed, &oca, 0x824).unwrap();
    let st = h.sev_status();
    assert!(st.is_externally_owned());
    let [pdh1, pek1, oca1, _] = h.sev_export();
    assert_eq!(oca1.as_bytes(), oca.as_bytes());
    assert_eq!(pek1.body(), pek0.body());
    sev_cert_validate(&pek1, &signer(&oca)).unwrap();
    sev_cert_validate(&pek1, &signer(&cek)).unwrap();
    assert_eq!(pek1.sig1.usage(), SevUsage::OCA);
    assert_eq!(pek1.sig2.usage(), SevUsage::CEK);
    assert_ne!(pdh1.as_bytes(), pdh0.as_bytes());
    sev_cert_validate(&pdh1, &signer(&pek1)).unwrap();
    assert_eq!(
        import(&h, &signed, &oca, 0x824),
        Err(FwStatus::ALREADY_OWNED)
    );
    // PEK_GEN makes the platform self-owned again.
    h.cmd0(FwCmd::PEK_GEN).unwrap();
    assert!(!h.sev_status().is_externally_owned());
    // PEK_CERT_IMPORT is INIT-only.
    h.sev_start(0, 0).unwrap();
    assert_eq!(
        import(&h, &signed, &oca, 0x824),
        Err(FwStatus::INVALID_PLATFORM_STATE)
    );
}

#[test]
fn with_snp_initialised_written_buffers_must_be_firmware_pages() {
    let h = sev_host();
    h.cmd0(FwCmd::SNP_INIT).unwrap();
    h.sev_init(false);
    // The command buffer of PLATFORM_STATUS is written back: a hypervisor page is
    // refused, a Firmware page works.
    assert_eq!(
        h.sev(&mut SevPlatformStatus::default()),
        Err(FwStatus::INVALID_PAGE_STATE)
    );
    h.fw_page(SEVCMD);
    h.sev(&mut SevPlatformStatus::default()).unwrap();
    // NOP and input-only buffers need nothing.
    h.cmd0(FwCmd::NOP).unwrap();
    // PDH_CERT_EXPORT outputs on hypervisor pages: INVALID_PAGE_STATE.
    let mut ex = SevPdhCertExport {
        pdh_cert_address: OUT,
        pdh_cert_len: 0x824,
        reserved: 0,
        cert_chain_address: CHAIN,
        cert_chain_len: 0x186C,
    };
    assert_eq!(h.sev(&mut ex), Err(FwStatus::INVALID_PAGE_STATE));
    for p in [OUT, CHAIN, CHAIN + 0x1000] {
        h.fw_page(p);
    }
    h.sev(&mut ex).unwrap();
    // The ES TMR must be firmware pages too (and 2 MiB with the RMP).
    h.cmd0(FwCmd::SHUTDOWN).unwrap();
    let mut tmr = SevInit {
        flags: 1,
        reserved: 0,
        tmr_address: TMR,
        tmr_len: SEV_TMR_LEN as u32,
    };
    assert_eq!(h.sev(&mut tmr), Err(FwStatus::INVALID_LENGTH));
    tmr.tmr_len = SEV_TMR_LEN_SNP as u32;
    assert_eq!(h.sev(&mut tmr), Err(FwStatus::INVALID_PAGE_STATE));
    for i in 0..512 {
        h.fw_page(TMR + i * 0x1000);
    }
    h.sev(&mut tmr).unwrap();
}

#[test]
fn amd_cert_rules_reject_foreign_and_altered_roots() {
    let h = sev_host();
    let (ask, ark) = h.fw.sev_ca_certs();
    let pinned = h.fw.sev_pinned_ark();
    let ok = [ask.clone(), ark.clone()].concat();
    validate_amd_certs(&ok, &pinned).unwrap();
    // Wrong total length (§2.2 set) → INVALID_LENGTH.
    assert_eq!(
        validate_amd_certs(&ok[..ok.len() - 1], &pinned).err(),
        Some(FwStatus::INVALID_LENGTH)
    );
    // Another product's ARK is not the pinned root.
    let genoa = Host::with(Product::Genoa, |_| {});
    let (g_ask, g_ark) = genoa.fw.sev_ca_certs();
    let foreign = [g_ask.clone(), g_ark.clone()].concat();
    assert_eq!(
        validate_amd_certs(&foreign, &pinned).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    // This product's ARK with a foreign ASK: ASK←ARK fails.
    let mixed = [g_ask, ark.clone()].concat();
    assert_eq!(
        validate_amd_certs(&mixed, &pinned).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    // A flipped signature byte in the ASK.
    let mut bad = ok.clone();
    let last = ask.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        validate_amd_certs(&bad, &pinned).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    // certifying_id ≠ the ARK's key id (bytes 0x14..0x24 of the ASK).
    let mut bad = ok.clone();
    bad[0x14] ^= 1;
    assert_eq!(
        validate_amd_certs(&bad, &pinned).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
    let (ask_c, _) = AmdCaCert::decode(&ask).unwrap();
    // The ASK used as an ARK: wrong usage.
    assert_eq!(
        validate_ark(&ask_c, &pinned).err(),
        Some(FwStatus::INVALID_CERTIFICATE)
    );
}
