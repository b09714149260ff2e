//! [`SevModel`]: an in-memory model of one SEV guest and its platform, implementing
//! [`QmpGuest`], so the QMP protocol can be exercised (tests, the `qmp_model`
//! example, the Python `qemu.qmp` interop test) without a host.
//!
//! What it models, with the firmware's rules (shared/spec/sev-legacy.md):
//! * the guest state machine (§3.7): launch-update → (LAUNCH_MEASURE) launch-secret →
//!   (LAUNCH_FINISH at the first `cont`) running; commands outside their states fail
//!   with INVALID_GUEST_STATE;
//! * the launch digest LD (SHA-256 of the LAUNCH_UPDATE_DATA bytes) and the
//!   measurement HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖ LE32(policy)
//!   ‖ LD ‖ mnonce) (§3.4), mnonce from the seeded project RNG;
//! * LAUNCH_SECRET's checks in the firmware's order and its packet MAC (§3.5);
//! * guest memory encrypted with a per-guest AES-XEX key at its GPA (the soc's memory
//!   encryption), so the host's view is ciphertext and DBG_DECRYPT (§6.1, refused
//!   under NODBG) gives plaintext;
//! * ATTESTATION's layout (§4) and state rule.
//!
//! The secret payload is AES-128-CTR(TEK, iv) as the firmware decrypts it
//! ([`SevModel::seal_secret`] builds packets as an owner does). Where it is a model
//! and not the platform: the report's signature field holds HMAC-SHA256(TIK, signed
//! bytes) instead of a PEK ECDSA signature. The real implementation of [`QmpGuest`]
//! is [`crate::sev_run::SevVm`], over the host's SevLauncher.

use super::{QmpError, QmpGuest, SevCapability, SevInfo, SevState, fw_error_to_str};
use softsev_crypto::hash::{Sha256, hmac_sha256};
use softsev_crypto::rng::Rng;
use softsev_crypto::sev::{aes128_ctr, launch_measure, secret_packet_mac};
use softsev_crypto::xex::XexKey;
use zeroize::Zeroizing;

/// Firmware statuses the model returns (sev-legacy.md §1, psp-sev.h).
const INVALID_GUEST_STATE: u32 = 0x02;
const INVALID_LENGTH: u32 = 0x04;
const INVALID_ADDRESS: u32 = 0x09;
const BAD_MEASUREMENT: u32 = 0x0B;
const UNSUPPORTED: u32 = 0x15;
/// KVM's errnos as QEMU prints them (`kvm_vm_ioctl` returns -errno).
const EIO: i32 = -5;
const EINVAL: i32 = -22;
/// SEV_FW_BLOB_MAX_SIZE (KVM).
const BLOB_MAX: usize = 16 << 10;

/// What a [`SevModel`] is built from.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// LAUNCH_START policy.
    pub policy: u32,
    /// The handle the firmware assigns.
    pub handle: u32,
    /// PLATFORM_STATUS api_major, api_minor, build.
    pub api: (u8, u8, u8),
    /// Guest RAM size (at GPA 0), a multiple of 16.
    pub ram_size: usize,
    /// The OVMF secret area `{base, size}`.
    pub secret_area: Option<(u32, u32)>,
    /// TEK and TIK from the owner's session (`None`: no session, both zero).
    pub session: Option<([u8; 16], [u8; 16])>,
    /// Seed of the model's RNG (memory key, mnonce).
    pub seed: Vec<u8>,
    /// `query-sev-capabilities` contents (PDH, PEK ‖ OCA ‖ CEK, chip id); `None` when
    /// the platform cannot export them.
    pub certs: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// Host C-bit position.
    pub cbitpos: u32,
}

/// One SEV guest and its platform, in memory.
pub struct SevModel {
    cfg: ModelConfig,
    state: SevState,
    tek: Zeroizing<[u8; 16]>,
    tik: Zeroizing<[u8; 16]>,
    vek: XexKey,
    /// Guest memory as the host sees it (ciphertext of the guest's private pages).
    mem: Vec<u8>,
    ld: Option<Sha256>,
    digest: [u8; 32],
    measure: Option<[u8; 48]>,
    rng: Rng,
    running: bool,
    quit: bool,
    guest_shutdown: bool,
}

impl std::fmt::Debug for SevModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SevModel")
            .field("state", &self.state)
            .field("policy", &self.cfg.policy)
            .field("handle", &self.cfg.handle)
            .finish_non_exhaustive()
    }
}

fn fw_err(what: &str, ret: i32, code: u32) -> QmpError {
    QmpError::generic(format!(
        "{what} ret={ret} fw_error={code} '{}'",
        fw_error_to_str(code)
    ))
}

impl SevModel {
    /// LAUNCH_START done: the guest is in launch-update.
    pub fn new(cfg: ModelConfig) -> Self {
        let mut rng = Rng::seeded(&cfg.seed, "softsev qmp model");
        let vek = Zeroizing::new(rng.array::<16>());
        let (tek, tik) = cfg.session.unwrap_or(([0; 16], [0; 16]));
        let ram = cfg.ram_size / 16 * 16;
        let vek = XexKey::new(&vek);
        let mut mem = vec![0u8; ram];
        // Fresh private memory reads back as the encryption of zeros.
        let _ = vek.encrypt(0, &mut mem);
        SevModel {
            cfg,
            state: SevState::LaunchUpdate,
            tek: Zeroizing::new(tek),
            tik: Zeroizing::new(tik),
            vek,
            mem,
            ld: Some(Sha256::new()),
            digest: [0; 32],
            measure: None,
            rng,
            running: false,
            quit: false,
            guest_shutdown: false,
        }
    }

    /// The state.
    pub fn state(&self) -> SevState {
        self.state
    }

    /// Whether the vCPUs run.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Whether `quit` tore the VM down.
    pub fn has_quit(&self) -> bool {
        self.quit
    }

    /// The launch digest LD (valid after [`Self::launch_measure`]).
    pub fn launch_digest(&self) -> [u8; 32] {
        self.digest
    }

    fn range(&self, gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.mem.len()).then_some(start..end)
    }

    /// LAUNCH_UPDATE_DATA: encrypt `data` in place at `gpa` (16-aligned) and measure
    /// it. Only in launch-update.
    pub fn launch_update_data(&mut self, gpa: u64, data: &[u8]) -> Result<(), QmpError> {
        if self.state != SevState::LaunchUpdate {
            return Err(fw_err("LAUNCH_UPDATE", EIO, INVALID_GUEST_STATE));
        }
        if !gpa.is_multiple_of(16) || !data.len().is_multiple_of(16) {
            return Err(fw_err("LAUNCH_UPDATE", EIO, INVALID_LENGTH));
        }
        let r = self
            .range(gpa, data.len())
            .ok_or_else(|| fw_err("LAUNCH_UPDATE", EINVAL, 0))?;
        if let Some(ld) = self.ld.as_mut() {
            ld.update(data);
        }
        self.vek
            .encrypt_to(gpa, data, &mut self.mem[r])
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    /// LAUNCH_MEASURE (QEMU does it at machine-init-done): LD is final, a fresh
    /// mnonce, the guest goes to launch-secret. Returns measure ‖ mnonce.
    pub fn launch_measure(&mut self) -> Result<[u8; 48], QmpError> {
        if self.state != SevState::LaunchUpdate {
            return Err(fw_err("LAUNCH_MEASURE", EIO, INVALID_GUEST_STATE));
        }
        self.digest = self.ld.take().map(Sha256::finish).unwrap_or_default();
        let mnonce = self.rng.array::<16>();
        let (maj, min, build) = self.cfg.api;
        let m = launch_measure(
            &self.tik,
            maj,
            min,
            build,
            self.cfg.policy,
            &self.digest,
            &mnonce,
        );
        let mut blob = [0u8; 48];
        blob[..32].copy_from_slice(&m);
        blob[32..].copy_from_slice(&mnonce);
        self.measure = Some(blob);
        self.state = SevState::LaunchSecret;
        Ok(blob)
    }

    /// The guest owner's side: a secret packet (52-byte header, ciphertext) for this
    /// model, with `measure` the 32-byte measurement the owner checked.
    pub fn seal_secret(
        tek: &[u8; 16],
        tik: &[u8; 16],
        measure: &[u8; 32],
        iv: [u8; 16],
        plaintext: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let mut ct = plaintext.to_vec();
        aes128_ctr(tek, &iv, &mut ct);
        let len = ct.len() as u32;
        let mac = secret_packet_mac(tik, 0, &iv, len, len, &ct, measure);
        let mut hdr = Vec::with_capacity(52);
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&iv);
        hdr.extend_from_slice(&mac);
        (hdr, ct)
    }

    /// The guest's own read of its private memory (decrypted with its key).
    pub fn guest_read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.decrypt_into(gpa, buf)
    }

    /// The guest's own write to its private memory.
    pub fn guest_write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let start = gpa & !15;
        let end = (gpa + data.len() as u64).next_multiple_of(16);
        let Some(r) = self.range(start, (end - start) as usize) else {
            return false;
        };
        let mut plain = self.mem[r.clone()].to_vec();
        if self.vek.decrypt(start, &mut plain).is_err() {
            return false;
        }
        let off = (gpa - start) as usize;
        plain[off..off + data.len()].copy_from_slice(data);
        self.vek.encrypt_to(start, &plain, &mut self.mem[r]).is_ok()
    }

    /// The guest halts: the monitor reports SHUTDOWN (guest).
    pub fn guest_shuts_down(&mut self) {
        self.running = false;
        self.guest_shutdown = true;
    }

    fn decrypt_into(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let start = gpa & !15;
        let Some(end) = gpa.checked_add(buf.len() as u64) else {
            return false;
        };
        let end = end.next_multiple_of(16);
        let Some(r) = self.range(start, (end - start) as usize) else {
            return false;
        };
        let mut plain = self.mem[r].to_vec();
        if self.vek.decrypt(start, &mut plain).is_err() {
            return false;
        }
        let off = (gpa - start) as usize;
        buf.copy_from_slice(&plain[off..off + buf.len()]);
        true
    }
}

impl QmpGuest for SevModel {
    fn sev_info(&self) -> SevInfo {
        SevInfo {
            enabled: true,
            api_major: self.cfg.api.0,
            api_minor: self.cfg.api.1,
            build_id: self.cfg.api.2,
            state: self.state,
            policy: self.cfg.policy,
            handle: self.cfg.handle,
        }
    }

    fn capabilities(&mut self) -> Result<SevCapability, QmpError> {
        let Some((pdh, chain, id)) = &self.cfg.certs else {
            return Err(QmpError::generic(
                "SEV: Failed to export PDH cert ret=-1 fw_err=1 (Platform state is invalid)",
            ));
        };
        Ok(SevCapability {
            pdh: pdh.clone(),
            cert_chain: chain.clone(),
            cpu0_id: id.clone(),
            cbitpos: self.cfg.cbitpos,
            reduced_phys_bits: 1,
        })
    }

    fn launch_measure(&self) -> Option<Vec<u8>> {
        self.measure.map(|m| m.to_vec())
    }

    fn secret_area(&self) -> Option<(u32, u32)> {
        self.cfg.secret_area
    }

    fn inject_secret(&mut self, header: &[u8], secret: &[u8], gpa: u64) -> Result<(), QmpError> {
        const WHAT: &str = "SEV: failed to inject secret";
        let Some(range) = self.range(gpa, secret.len()) else {
            return Err(QmpError::generic(format!(
                "SEV: Failed to calculate guest address: No memory is mapped at address {gpa:#x}"
            )));
        };
        // KVM: blobs non-empty and at most 16 KiB.
        if header.len() > BLOB_MAX || secret.len() > BLOB_MAX {
            return Err(fw_err(WHAT, EINVAL, 0));
        }
        // The firmware, in its order (§3.5).
        if !gpa.is_multiple_of(16) {
            return Err(fw_err(WHAT, EIO, INVALID_ADDRESS));
        }
        if header.len() != 52 || !secret.len().is_multiple_of(16) || secret.len() > 0x5000 {
            return Err(fw_err(WHAT, EIO, INVALID_LENGTH));
        }
        if self.state != SevState::LaunchSecret {
            return Err(fw_err(WHAT, EIO, INVALID_GUEST_STATE));
        }
        let Some(measure) = self.measure else {
            return Err(fw_err(WHAT, EIO, INVALID_GUEST_STATE));
        };
        let flags = u32::from_le_bytes(header[0..4].try_into().unwrap_or([0; 4]));
        let iv: [u8; 16] = header[4..20].try_into().unwrap_or([0; 16]);
        let len = secret.len() as u32;
        let m: [u8; 32] = measure[..32].try_into().unwrap_or([0; 32]);
        let mac = secret_packet_mac(&self.tik, flags, &iv, len, len, secret, &m);
        if !softsev_crypto::ct::ct_eq(&mac, &header[20..52]) {
            return Err(fw_err(WHAT, EIO, BAD_MEASUREMENT));
        }
        if flags & 1 != 0 {
            return Err(fw_err(WHAT, EIO, UNSUPPORTED));
        }
        let mut plain = Zeroizing::new(secret.to_vec());
        aes128_ctr(&self.tek, &iv, &mut plain);
        self.vek
            .encrypt_to(gpa, &plain, &mut self.mem[range])
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    fn attestation_report(&mut self, mnonce: &[u8; 16]) -> Result<Vec<u8>, QmpError> {
        if !matches!(
            self.state,
            SevState::LaunchSecret | SevState::Running | SevState::SendUpdate
        ) {
            return Err(QmpError::generic(format!(
                "SEV: Failed to query the attestation report length ret={EIO} fw_err={} ({})",
                INVALID_GUEST_STATE,
                fw_error_to_str(INVALID_GUEST_STATE)
            )));
        }
        let mut r = vec![0u8; 0xD0];
        r[0..16].copy_from_slice(mnonce);
        r[0x10..0x30].copy_from_slice(&self.digest);
        r[0x30..0x34].copy_from_slice(&self.cfg.policy.to_le_bytes());
        r[0x34..0x38].copy_from_slice(&0x1002u32.to_le_bytes());
        r[0x38..0x3C].copy_from_slice(&2u32.to_le_bytes());
        let sig = hmac_sha256(&self.tik[..], &[&r[..0x34]]);
        r[0x40..0x60].copy_from_slice(&sig);
        Ok(r)
    }

    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        if self.cfg.policy & 1 == 0 {
            // DBG_DECRYPT (the debug ops registered without NODBG).
            return self.decrypt_into(gpa, buf);
        }
        match self.range(gpa, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.mem[r]);
                true
            }
            None => false,
        }
    }

    fn translate(&mut self, _cpu: u32, _vaddr: u64) -> Option<u64> {
        // The model has no vCPU page tables.
        None
    }

    fn start(&mut self) -> Result<(), QmpError> {
        match self.state {
            // The first transition to running: LAUNCH_FINISH.
            SevState::LaunchSecret => self.state = SevState::Running,
            SevState::Running => {}
            _ => {
                return Err(QmpError::generic(format!(
                    "sev_launch_finish: LAUNCH_FINISH ret={EIO} fw_error={INVALID_GUEST_STATE} '{}'",
                    fw_error_to_str(INVALID_GUEST_STATE)
                )));
            }
        }
        self.running = true;
        Ok(())
    }

    fn stop(&mut self) {
        self.running = false;
    }

    fn quit(&mut self) {
        self.running = false;
        self.quit = true;
    }

    fn take_guest_shutdown(&mut self) -> bool {
        std::mem::take(&mut self.guest_shutdown)
    }
}
