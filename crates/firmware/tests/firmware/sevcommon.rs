//! Helpers for the legacy SEV tests: a host with SEV and SEV-ES ASID ranges, the
//! buffers of `softsev_abi::sev_buf` issued through the mailbox, and the guest owner's
//! side of the session (sev-legacy.md §3.2) built with softsev-crypto.

pub(crate) use crate::fwcommon::*;
use softsev_abi::sev_buf::*;
use softsev_abi::sev_cert::{SevAlgo, SevCert, SevUsage};
use softsev_abi::{FwCmd, Product, Spa};
use softsev_crypto::sev::{EcdhP384, derive_session_secrets, policy_mac, wrap_transport_keys};
use softsev_firmware::FwResult;
use softsev_firmware::identity::sev::{SevSigner, cert_public_key};
use zerocopy::{FromBytes, IntoBytes};

/// ES ASIDs are 1..MIN_SEV_ASID, plain SEV ones MIN_SEV_ASID..=15.
pub(crate) const MIN_SEV_ASID: u32 = 8;
/// An ES ASID and a plain SEV ASID.
pub(crate) const ES_ASID: u32 = 1;
pub(crate) const SEV_ASID: u32 = 9;
/// The legacy command buffer page (the SNP tests' [`CMD`] stays a hypervisor page).
pub(crate) const SEVCMD: u64 = 0xA000;
/// The GODH certificate (LAUNCH_START input).
pub(crate) const GODH: u64 = 0x3000;
/// The 128-byte session.
pub(crate) const SESSION: u64 = 0x4000;
/// PEK ‖ OCA ‖ CEK of PDH_CERT_EXPORT (0x186C bytes).
pub(crate) const CHAIN: u64 = 0x5000;
/// Secret packet header and ciphertext.
pub(crate) const HDR: u64 = 0x7000;
pub(crate) const TRANS: u64 = 0x8000;
/// A second output page.
pub(crate) const OUT2: u64 = 0x9000;
/// The TMR (1 MiB-aligned; 2 MiB-aligned too).
pub(crate) const TMR: u64 = 0x200_0000;
/// The INIT_EX NV buffer.
pub(crate) const NV: u64 = 0x300_0000;
/// Guest memory.
pub(crate) const GMEM: u64 = 0x40_0000;

/// A Milan host whose ASIDs 1..8 are ES/SNP ones and 8..=15 plain SEV ones.
pub(crate) fn sev_host() -> Host {
    Host::with(Product::Milan, |c| c.min_sev_asid = MIN_SEV_ASID)
}

impl Host {
    /// Write `b` at [`SEVCMD`], run its command, read it back.
    pub(crate) fn sev<T: softsev_abi::fw_buf::FwCommand>(&self, b: &mut T) -> FwResult {
        self.fw.call(Spa(SEVCMD), b)
    }

    /// Legacy INIT (ES with the TMR at [`TMR`]), WBINVD, DF_FLUSH.
    pub(crate) fn sev_init(&self, es: bool) {
        self.sev_init_only(es).unwrap();
        self.soc.wbinvd();
        self.cmd0(FwCmd::DF_FLUSH).unwrap();
    }

    /// Legacy INIT only.
    pub(crate) fn sev_init_only(&self, es: bool) -> FwResult {
        self.sev(&mut SevInit {
            flags: u32::from(es),
            reserved: 0,
            tmr_address: if es { TMR } else { 0 },
            tmr_len: if es { SEV_TMR_LEN as u32 } else { 0 },
        })
    }

    /// LAUNCH_START without a session; returns the handle.
    pub(crate) fn sev_start(&self, policy: u32, share: u32) -> Result<u32, softsev_abi::FwStatus> {
        let mut b = SevLaunchStart {
            handle: share,
            policy,
            ..Default::default()
        };
        self.sev(&mut b)?;
        Ok(b.handle)
    }

    /// LAUNCH_START with `godh` and `session` placed at [`GODH`] / [`SESSION`].
    pub(crate) fn sev_start_session(
        &self,
        policy: u32,
        godh: &SevCert,
        session: &SevSession,
    ) -> Result<u32, softsev_abi::FwStatus> {
        self.soc
            .host_write(Spa(GODH), false, godh.as_bytes())
            .unwrap();
        self.soc
            .host_write(Spa(SESSION), false, session.as_bytes())
            .unwrap();
        let mut b = SevLaunchStart {
            handle: 0,
            policy,
            dh_cert_address: GODH,
            dh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            session_address: SESSION,
            session_len: SEV_SESSION_LEN as u32,
        };
        self.sev(&mut b)?;
        Ok(b.handle)
    }

    pub(crate) fn sev_activate(&self, handle: u32, asid: u32) -> FwResult {
        self.sev(&mut SevActivate { handle, asid })
    }

    pub(crate) fn sev_update(&self, handle: u32, address: u64, len: u32) -> FwResult {
        self.sev(&mut SevLaunchUpdateData {
            handle,
            reserved: 0,
            address,
            len,
        })
    }

    /// LAUNCH_MEASURE into [`OUT`]; returns measure ‖ mnonce.
    pub(crate) fn sev_measure(&self, handle: u32) -> Result<[u8; 48], softsev_abi::FwStatus> {
        self.sev(&mut SevLaunchMeasure {
            handle,
            reserved: 0,
            address: OUT,
            len: 48,
        })?;
        let mut m = [0u8; 48];
        self.soc.host_read(Spa(OUT), false, &mut m).unwrap();
        Ok(m)
    }

    pub(crate) fn sev_finish(&self, handle: u32) -> FwResult {
        self.sev(&mut SevLaunchFinish { handle })
    }

    pub(crate) fn sev_guest_status(&self, handle: u32) -> SevGuestStatus {
        let mut b = SevGuestStatus {
            handle,
            ..Default::default()
        };
        self.sev(&mut b).unwrap();
        b
    }

    pub(crate) fn sev_status(&self) -> SevPlatformStatus {
        let mut b = SevPlatformStatus::default();
        self.sev(&mut b).unwrap();
        b
    }

    /// PDH_CERT_EXPORT: (PDH, PEK, OCA, CEK).
    pub(crate) fn sev_export(&self) -> [SevCert; 4] {
        self.sev(&mut SevPdhCertExport {
            pdh_cert_address: OUT,
            pdh_cert_len: SEV_CERT_LEN as u32,
            reserved: 0,
            cert_chain_address: CHAIN,
            cert_chain_len: SEV_PDH_CHAIN_LEN as u32,
        })
        .unwrap();
        let mut pdh = [0u8; SEV_CERT_LEN];
        self.soc.host_read(Spa(OUT), false, &mut pdh).unwrap();
        let mut chain = vec![0u8; SEV_PDH_CHAIN_LEN];
        self.soc.host_read(Spa(CHAIN), false, &mut chain).unwrap();
        let c = |b: &[u8]| SevCert::read_from_bytes(b).unwrap();
        [
            c(&pdh),
            c(&chain[..SEV_CERT_LEN]),
            c(&chain[SEV_CERT_LEN..2 * SEV_CERT_LEN]),
            c(&chain[2 * SEV_CERT_LEN..]),
        ]
    }
}

/// The guest owner: a GODH key and the session for `policy` with TEK/TIK, as sevctl
/// `session` builds it (host-interfaces.md §4.6, sev-legacy.md §3.2).
pub(crate) struct Owner {
    pub godh: SevCert,
    pub session: SevSession,
    pub tek: [u8; 16],
    pub tik: [u8; 16],
}

/// The GODH certificate of `key` (usage PDH, ECDH_SHA256, API 0.0, slots empty).
pub(crate) fn godh_cert(key: &EcdhP384) -> SevCert {
    let (x, y) = key.public_xy_be();
    SevCert::new_ecc(SevUsage::PDH, SevAlgo::ECDH_SHA256, 0, 0, &x, &y)
}

/// A session to the platform whose PDH is `pdh`.
pub(crate) fn owner_session(
    godh_key: EcdhP384,
    pdh: &SevCert,
    nonce: [u8; 16],
    wrap_iv: [u8; 16],
    tek: [u8; 16],
    tik: [u8; 16],
    policy: u32,
) -> Owner {
    let p = pdh.ecc_pubkey().unwrap();
    let z = godh_key.shared_x_be(&p.x, &p.y).unwrap();
    let s = derive_session_secrets(&z, &nonce);
    let (wrap_tk, wrap_mac) = wrap_transport_keys(&s.kek, &s.kik, &wrap_iv, &tek, &tik);
    let session = SevSession {
        nonce,
        wrap_tk,
        wrap_iv,
        wrap_mac,
        policy_mac: policy_mac(&tik, policy),
    };
    Owner {
        godh: godh_cert(&godh_key),
        session,
        tek,
        tik,
    }
}

/// The ECDSA signer of a certificate's key (OCA, PEK).
pub(crate) fn signer(cert: &SevCert) -> SevSigner {
    SevSigner::from_cert(cert).unwrap()
}

/// The P-384 public key of `cert`.
pub(crate) fn p384(cert: &SevCert) -> softsev_crypto::ecdsa::P384PublicKey {
    match cert_public_key(cert).unwrap() {
        softsev_firmware::identity::sev::SevPublicKey::Ecc(k) => k,
        other => panic!("not an ECC key: {other:?}"),
    }
}

/// Where the SEND_START inputs are placed: the target's PDH, PEK ‖ OCA ‖ CEK and
/// ASK ‖ ARK.
pub(crate) const TPDH: u64 = 0xB000;
pub(crate) const TPLAT: u64 = 0xC000;
pub(crate) const TAMD: u64 = 0xE000;

/// A second platform: another chip of `product` and another firmware seed (its own
/// CEK, OCA, PEK and PDH), with the same ASID split as [`sev_host`].
pub(crate) fn sev_host_b(product: Product) -> Host {
    let chip = std::sync::Arc::new(
        softsev_firmware::identity::Chip::from_seed(product, b"fw-tests chip B").unwrap(),
    );
    Host::custom(product, chip, b"fw-tests B", |c| {
        c.min_sev_asid = MIN_SEV_ASID
    })
}

/// What SEND_START needs of a target, as a target exports it (sevctl's chain: the
/// KDS-signed CEK in place of the unsigned one PDH_CERT_EXPORT returns).
pub(crate) struct TargetCerts {
    pub pdh: SevCert,
    pub plat: Vec<u8>,
    pub amd: Vec<u8>,
}

impl Host {
    /// This platform's certificates for a source's SEND_START (INIT or WORKING).
    pub(crate) fn target_certs(&self) -> TargetCerts {
        let [pdh, pek, oca, _] = self.sev_export();
        let cek = self.fw.sev_kds_cek();
        let mut plat = Vec::new();
        for c in [&pek, &oca, &cek] {
            plat.extend_from_slice(c.as_bytes());
        }
        let (ask, ark) = self.fw.sev_ca_certs();
        TargetCerts {
            pdh,
            plat,
            amd: [ask, ark].concat(),
        }
    }

    /// SEND_START of `handle` to `t`; returns (policy, session).
    pub(crate) fn sev_send_start(
        &self,
        handle: u32,
        t: &TargetCerts,
    ) -> Result<(u32, SevSession), softsev_abi::FwStatus> {
        self.soc
            .host_write(Spa(TPDH), false, t.pdh.as_bytes())
            .unwrap();
        self.soc.host_write(Spa(TPLAT), false, &t.plat).unwrap();
        self.soc.host_write(Spa(TAMD), false, &t.amd).unwrap();
        let mut b = SevSendStart {
            handle,
            pdh_cert_address: TPDH,
            pdh_cert_len: t.pdh.as_bytes().len() as u32,
            plat_certs_address: TPLAT,
            plat_certs_len: t.plat.len() as u32,
            amd_certs_address: TAMD,
            amd_certs_len: t.amd.len() as u32,
            session_address: SESSION,
            session_len: SEV_SESSION_LEN as u32,
            ..Default::default()
        };
        self.sev(&mut b)?;
        let mut s = [0u8; SEV_SESSION_LEN];
        self.soc.host_read(Spa(SESSION), false, &mut s).unwrap();
        Ok((b.policy, SevSession::read_from_bytes(&s).unwrap()))
    }

    /// SEND_UPDATE_DATA (or _VMSA) of `len` bytes at `addr`; returns (header, data).
    pub(crate) fn sev_send_packet(
        &self,
        handle: u32,
        addr: u64,
        len: u32,
        vmsa: bool,
    ) -> Result<(SevPacketHeader, Vec<u8>), softsev_abi::FwStatus> {
        let fields = (handle, HDR, 52u32, addr, len, TRANS, len);
        if vmsa {
            self.sev(&mut SevSendUpdateVmsa {
                handle: fields.0,
                hdr_address: fields.1,
                hdr_len: fields.2,
                guest_address: fields.3,
                guest_len: fields.4,
                trans_address: fields.5,
                trans_len: fields.6,
                ..Default::default()
            })?;
        } else {
            self.sev(&mut SevSendUpdateData {
                handle: fields.0,
                hdr_address: fields.1,
                hdr_len: fields.2,
                guest_address: fields.3,
                guest_len: fields.4,
                trans_address: fields.5,
                trans_len: fields.6,
                ..Default::default()
            })?;
        }
        let mut h = [0u8; 52];
        self.soc.host_read(Spa(HDR), false, &mut h).unwrap();
        let mut d = vec![0u8; len as usize];
        self.soc.host_read(Spa(TRANS), false, &mut d).unwrap();
        Ok((SevPacketHeader::read_from_bytes(&h).unwrap(), d))
    }

    /// RECEIVE_START with the source PDH `pdh`, `session` and `policy`; the handle.
    pub(crate) fn sev_receive_start(
        &self,
        policy: u32,
        pdh: &SevCert,
        session: &SevSession,
    ) -> Result<u32, softsev_abi::FwStatus> {
        self.soc
            .host_write(Spa(GODH), false, pdh.as_bytes())
            .unwrap();
        self.soc
            .host_write(Spa(SESSION), false, session.as_bytes())
            .unwrap();
        let mut b = SevReceiveStart {
            handle: 0,
            policy,
            pdh_cert_address: GODH,
            pdh_cert_len: SEV_CERT_LEN as u32,
            reserved1: 0,
            session_address: SESSION,
            session_len: SEV_SESSION_LEN as u32,
        };
        self.sev(&mut b)?;
        Ok(b.handle)
    }

    /// RECEIVE_UPDATE_DATA (or _VMSA) of a packet into `addr`.
    pub(crate) fn sev_receive_packet(
        &self,
        handle: u32,
        addr: u64,
        hdr: &SevPacketHeader,
        data: &[u8],
        vmsa: bool,
    ) -> FwResult {
        self.soc
            .host_write(Spa(HDR), false, hdr.as_bytes())
            .unwrap();
        self.soc.host_write(Spa(TRANS), false, data).unwrap();
        let len = data.len() as u32;
        if vmsa {
            self.sev(&mut SevReceiveUpdateVmsa {
                handle,
                hdr_address: HDR,
                hdr_len: 52,
                guest_address: addr,
                guest_len: len,
                trans_address: TRANS,
                trans_len: len,
                ..Default::default()
            })
        } else {
            self.sev(&mut SevReceiveUpdateData {
                handle,
                hdr_address: HDR,
                hdr_len: 52,
                guest_address: addr,
                guest_len: len,
                trans_address: TRANS,
                trans_len: len,
                ..Default::default()
            })
        }
    }

    /// DBG_DECRYPT of `len` bytes of guest `handle` at `addr` (through [`OUT2`]).
    pub(crate) fn sev_peek(&self, handle: u32, addr: u64, len: u32) -> Vec<u8> {
        self.sev(&mut SevDbgDecrypt {
            handle,
            reserved: 0,
            src_addr: addr,
            dst_addr: OUT2,
            len,
        })
        .unwrap();
        let mut v = vec![0u8; len as usize];
        self.soc.host_read(Spa(OUT2), false, &mut v).unwrap();
        v
    }

    /// A running guest of `policy` on ASID `asid` whose first `pages` pages at
    /// [`GMEM`] hold `fill(i)` and, for ES, one VMSA at `GMEM + pages * 4096`.
    pub(crate) fn sev_running_guest(
        &self,
        policy: u32,
        asid: u32,
        pages: u32,
        es_vmsa: Option<&[u8; 4096]>,
    ) -> u32 {
        let g = self.sev_start(policy, 0).unwrap();
        self.sev_activate(g, asid).unwrap();
        for i in 0..pages {
            let data: Vec<u8> = (0..4096u32).map(|b| (b as u8) ^ (i as u8) ^ 0x5A).collect();
            let a = GMEM + u64::from(i) * 4096;
            self.soc.host_write(Spa(a), false, &data).unwrap();
            self.sev_update(g, a, 4096).unwrap();
        }
        if let Some(v) = es_vmsa {
            let a = GMEM + u64::from(pages) * 4096;
            self.soc.host_write(Spa(a), false, v).unwrap();
            self.sev(&mut SevLaunchUpdateVmsa {
                handle: g,
                reserved: 0,
                address: a,
                len: 4096,
            })
            .unwrap();
        }
        self.sev_measure(g).unwrap();
        self.sev_finish(g).unwrap();
        g
    }
}
