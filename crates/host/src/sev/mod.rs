//! KVM_MEMORY_ENCRYPT_OP (host-interfaces.md §1.5–1.7; Linux `arch/x86/kvm/svm/sev.c`
//! `sev_mem_enc_ioctl`): the dispatch of SEV commands with KVM's checks and errnos,
//! and INIT / ES_INIT / INIT2, which make a VM an SEV, SEV-ES or SNP guest
//! ([`SevMode`]). The SNP launch commands are in [`snp`], the move and mirror of a
//! context in [`migrate`].

mod legacy;
mod migrate;
mod snp;

use legacy::HandleOnly;
pub(crate) use legacy::unbind_asid;

use crate::error::{Errno, KvmError, KvmResult, einval};
use crate::events::Event;
use crate::platform::AsidClass;
use crate::state::{ContextRole, GuestRequestPages, SevMode, SevState, SnpState};
use crate::usermem::Hva;
use crate::vm::{GHCB_VERSION_DEFAULT, GHCB_VERSION_MAX, SoftVm};
use softsev_abi::kvm::{KvmSevCmd, KvmSevInit, SevCmdId, VmType};
use std::sync::atomic::Ordering;
use zerocopy::{FromBytes, IntoBytes};

impl SoftVm {
    /// KVM_MEMORY_ENCRYPT_OP with the command in `cmd` (its `data` is a user address
    /// in [`crate::SoftHost::user`]); `cmd.error` receives the firmware status.
    pub fn memory_encrypt_op(&self, cmd: &mut KvmSevCmd) -> KvmResult {
        let id = SevCmdId(cmd.id);
        let span = tracing::debug_span!("memory_encrypt_op", ?id);
        let _g = span.enter();
        cmd.error = 0;
        let r = self.encrypt_op(id, cmd);
        if let Err(e) = &r
            && let Some(s) = e.fw
        {
            cmd.error = s.0;
        }
        self.inner.log.push(Event::EncryptOp {
            id: id.0,
            errno: r.as_ref().err().map_or(0, |e| e.errno.0),
            fw_error: cmd.error,
        });
        r
    }

    fn encrypt_op(&self, id: SevCmdId, cmd: &mut KvmSevCmd) -> KvmResult {
        let h = &self.inner.host;
        if !h.params.sev {
            return Err(KvmError::new(Errno::ENOTTY, "SEV is disabled"));
        }
        let mut sev = self.inner.sev.lock();
        // Only these commands may come from a mirror VM (`is_cmd_allowed_from_mirror`).
        if sev.role() == ContextRole::Mirror
            && !matches!(
                id,
                SevCmdId::LAUNCH_UPDATE_VMSA
                    | SevCmdId::GUEST_STATUS
                    | SevCmdId::DBG_DECRYPT
                    | SevCmdId::DBG_ENCRYPT
            )
        {
            return einval(format!("{id:?} from a mirror VM"));
        }
        // Once SNP, only the SNP commands.
        if sev.snp().is_some() && id.0 < SevCmdId::SNP_LAUNCH_START.0 {
            return Err(KvmError::new(
                Errno::EPERM,
                format!("{id:?} on an SNP guest"),
            ));
        }
        match id {
            SevCmdId::INIT | SevCmdId::ES_INIT => {
                if id == SevCmdId::ES_INIT && !h.params.sev_es {
                    return Err(KvmError::new(Errno::ENOTTY, "ES_INIT: sev_es is disabled"));
                }
                if self.inner.vm_type != VmType::DEFAULT {
                    return einval("legacy INIT on a VM that is not KVM_X86_DEFAULT_VM");
                }
                let es = id == SevCmdId::ES_INIT;
                let init = KvmSevInit {
                    ghcb_version: u16::from(es),
                    ..Default::default()
                };
                return self.guest_init(
                    &mut sev,
                    &init,
                    if es { VmType::SEV_ES } else { VmType::SEV },
                );
            }
            SevCmdId::INIT2 => {
                if !matches!(
                    self.inner.vm_type,
                    VmType::SEV | VmType::SEV_ES | VmType::SNP
                ) {
                    return einval(format!("INIT2 on a {:?} VM", self.inner.vm_type));
                }
                let init: KvmSevInit = self.copy_from_user(cmd.data)?;
                return self.guest_init(&mut sev, &init, self.inner.vm_type);
            }
            // Reserved ids KVM does not implement; the VMSA pair is a softsev extension
            // behind `sev_es_migration` (docs/host.md).
            SevCmdId::SEND_UPDATE_VMSA | SevCmdId::RECEIVE_UPDATE_VMSA
                if h.params.sev_es_migration => {}
            SevCmdId::SEND_UPDATE_VMSA | SevCmdId::RECEIVE_UPDATE_VMSA | SevCmdId::CERT_EXPORT => {
                return einval(format!("{id:?} is not implemented by KVM"));
            }
            _ => {}
        }
        let known = matches!(
            id,
            SevCmdId::SNP_LAUNCH_START
                | SevCmdId::SNP_LAUNCH_UPDATE
                | SevCmdId::SNP_LAUNCH_FINISH
                | SevCmdId::SNP_ENABLE_REQ_CERTS
                | SevCmdId::LAUNCH_START
                | SevCmdId::LAUNCH_UPDATE_DATA
                | SevCmdId::LAUNCH_UPDATE_VMSA
                | SevCmdId::LAUNCH_SECRET
                | SevCmdId::LAUNCH_MEASURE
                | SevCmdId::LAUNCH_FINISH
                | SevCmdId::SEND_START
                | SevCmdId::SEND_UPDATE_DATA
                | SevCmdId::SEND_UPDATE_VMSA
                | SevCmdId::RECEIVE_UPDATE_VMSA
                | SevCmdId::SEND_FINISH
                | SevCmdId::SEND_CANCEL
                | SevCmdId::RECEIVE_START
                | SevCmdId::RECEIVE_UPDATE_DATA
                | SevCmdId::RECEIVE_FINISH
                | SevCmdId::GUEST_STATUS
                | SevCmdId::DBG_DECRYPT
                | SevCmdId::DBG_ENCRYPT
                | SevCmdId::GET_ATTESTATION_REPORT
        );
        if !known {
            return einval(format!("unknown or unsupported command {id:?}"));
        }
        if !sev.is_usable() {
            // Each handler's `sev_guest()` check; RECEIVE_UPDATE_DATA alone answers
            // -EINVAL (sev-legacy.md §7.2).
            let errno = if id == SevCmdId::RECEIVE_UPDATE_DATA {
                Errno::EINVAL
            } else {
                Errno::ENOTTY
            };
            return Err(KvmError::new(errno, "not an SEV guest"));
        }
        match id {
            SevCmdId::SNP_LAUNCH_START => self.snp_launch_start(&mut sev, cmd),
            SevCmdId::SNP_LAUNCH_UPDATE => self.snp_launch_update(&sev, cmd),
            SevCmdId::SNP_LAUNCH_FINISH => self.snp_launch_finish(&mut sev, cmd),
            SevCmdId::SNP_ENABLE_REQ_CERTS => self.snp_enable_req_certs(&mut sev),
            SevCmdId::LAUNCH_START => self.sev_launch_start(&mut sev, cmd),
            SevCmdId::LAUNCH_UPDATE_DATA => self.sev_launch_update_data(&sev, cmd),
            SevCmdId::LAUNCH_UPDATE_VMSA => self.sev_launch_update_vmsa(&sev),
            SevCmdId::LAUNCH_SECRET => self.sev_launch_secret(&sev, cmd),
            SevCmdId::LAUNCH_MEASURE => self.sev_launch_measure(&sev, cmd),
            SevCmdId::LAUNCH_FINISH => self.sev_launch_finish(&sev),
            SevCmdId::GUEST_STATUS => self.sev_guest_status(&sev, cmd),
            SevCmdId::DBG_DECRYPT => self.sev_dbg_crypt(&sev, cmd, true),
            SevCmdId::DBG_ENCRYPT => self.sev_dbg_crypt(&sev, cmd, false),
            SevCmdId::GET_ATTESTATION_REPORT => self.sev_get_attestation_report(&sev, cmd),
            SevCmdId::SEND_START => self.sev_send_start(&sev, cmd),
            SevCmdId::SEND_UPDATE_DATA => self.sev_send_update_data(&sev, cmd),
            SevCmdId::SEND_FINISH => self.sev_handle_only(&sev, HandleOnly::SendFinish),
            SevCmdId::SEND_CANCEL => self.sev_handle_only(&sev, HandleOnly::SendCancel),
            SevCmdId::RECEIVE_START => self.sev_receive_start(&mut sev, cmd),
            SevCmdId::RECEIVE_UPDATE_DATA => self.sev_receive_update_data(&sev, cmd),
            SevCmdId::RECEIVE_FINISH => self.sev_handle_only(&sev, HandleOnly::ReceiveFinish),
            SevCmdId::SEND_UPDATE_VMSA => self.sev_send_update_vmsa(&sev, cmd),
            SevCmdId::RECEIVE_UPDATE_VMSA => self.sev_receive_update_vmsa(&sev, cmd),
            _ => einval(format!("unknown or unsupported command {id:?}")),
        }
    }

    /// Read a command structure from the VMM's memory.
    pub(super) fn copy_from_user<T: FromBytes + IntoBytes>(&self, uaddr: u64) -> KvmResult<T> {
        let mut v = T::new_zeroed();
        self.inner.host.user.read(Hva(uaddr), v.as_mut_bytes())?;
        Ok(v)
    }

    /// Write a command structure (its outputs) back to the VMM's memory.
    pub(super) fn copy_to_user<T: IntoBytes + zerocopy::Immutable>(
        &self,
        uaddr: u64,
        v: &T,
    ) -> KvmResult {
        self.inner.host.user.write(Hva(uaddr), v.as_bytes())
    }

    fn guest_init(&self, sev: &mut SevState, init: &KvmSevInit, vm_type: VmType) -> KvmResult {
        let h = &self.inner.host;
        if !self.inner.vcpus.lock().is_empty() {
            return einval("SEV init after vCPUs were created");
        }
        if init.flags != 0 {
            return einval(format!("kvm_sev_init.flags {:#x} must be 0", init.flags));
        }
        let es = vm_type != VmType::SEV;
        let valid = if es { h.supported_vmsa_features() } else { 0 };
        if init.vmsa_features & !valid != 0 {
            return einval(format!(
                "vmsa_features {:#x} not within the supported {valid:#x}",
                init.vmsa_features
            ));
        }
        if init.ghcb_version > GHCB_VERSION_MAX || (!es && init.ghcb_version != 0) {
            return einval(format!("ghcb_version {}", init.ghcb_version));
        }
        if vm_type == VmType::SNP && init.ghcb_version != 0 && init.ghcb_version < 2 {
            return einval(format!(
                "SNP needs GHCB version 2, got {}",
                init.ghcb_version
            ));
        }
        if sev.is_active() {
            return einval("SEV already initialised");
        }
        let (allowed, class) = match vm_type {
            VmType::SNP => (h.params.sev_snp, AsidClass::Snp),
            VmType::SEV_ES => (h.params.sev_es, AsidClass::SevEs),
            _ => (h.params.sev, AsidClass::Sev),
        };
        if !allowed {
            // `sev_mem_enc_ioctl`: ES_INIT without `sev_es` is -ENOTTY (the INIT2
            // types of a disabled flavour cannot be created at all).
            return Err(KvmError::new(
                Errno::ENOTTY,
                format!("{vm_type:?} guests are disabled"),
            ));
        }
        let asid = h.asid_alloc(class)?;
        // `sev_platform_init`: the lazy legacy INIT (TMR, INIT_EX, DF_FLUSH); on
        // failure the ASID is freed and `error` carries the firmware status.
        if let Err(e) = h.psp.sev_platform_init() {
            h.asid_free(asid);
            return Err(e);
        }
        let ghcb_version = if es && init.ghcb_version == 0 {
            GHCB_VERSION_DEFAULT
        } else {
            init.ghcb_version
        };
        let (mode, vmsa_features) = match vm_type {
            VmType::SNP => (
                SevMode::Snp(SnpState::new(self.guest_request_pages(asid)?)),
                init.vmsa_features | softsev_abi::vmsa::SEV_FEATURE_SNP_ACTIVE,
            ),
            VmType::SEV_ES => (SevMode::SevEs, init.vmsa_features),
            _ => (SevMode::Sev, init.vmsa_features),
        };
        self.inner.asid.store(asid, Ordering::Relaxed);
        *sev = SevState::initialised(mode, asid, vmsa_features, ghcb_version);
        Ok(())
    }

    /// The guest-request bounce pages of a new SNP guest of `asid` (freed with the ASID
    /// on failure).
    fn guest_request_pages(&self, asid: u32) -> KvmResult<GuestRequestPages> {
        let h = &self.inner.host;
        let req = h.alloc_page();
        let resp = h.alloc_page();
        match (req, resp) {
            (Ok(request), Ok(response)) => {
                if let Err(e) = h.psp.make_firmware_page(response) {
                    h.alloc.free_4k(request);
                    h.alloc.free_4k(response);
                    h.asid_free(asid);
                    return Err(e);
                }
                Ok(GuestRequestPages { request, response })
            }
            (a, b) => {
                for p in [a, b].into_iter().flatten() {
                    h.alloc.free_4k(p);
                }
                h.asid_free(asid);
                Err(KvmError::new(Errno::ENOMEM, "guest request pages"))
            }
        }
    }
}
