//! Intra-host migration of an encryption context (host-interfaces.md §1.10; Linux
//! `sev_vm_move_enc_context_from`, `sev_vm_copy_enc_context_from`): a move hands the
//! context (ASID, state) to another VM of the same host, a copy makes the destination
//! a mirror sharing the ASID. SNP guests can do neither.

use crate::error::{KvmResult, einval};
use crate::state::{ContextRole, SevState};
use crate::vm::SoftVm;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl SoftVm {
    /// KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: take over `src`'s encryption context
    /// (intra-host migration). SNP guests cannot be migrated this way.
    pub fn move_enc_context_from(&self, src: &SoftVm) -> KvmResult {
        self.take_context(src, ContextRole::Owner)
    }

    /// KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: make this VM a mirror of `src`'s context.
    pub fn copy_enc_context_from(&self, src: &SoftVm) -> KvmResult {
        self.take_context(src, ContextRole::Mirror)
    }

    /// Take `src`'s context as its new owner (a move) or as a mirror (a copy).
    fn take_context(&self, src: &SoftVm, role: ContextRole) -> KvmResult {
        if Arc::ptr_eq(&self.inner, &src.inner) {
            return einval("source and destination are the same VM");
        }
        let mut dst = self.inner.sev.lock();
        let mut s = src.inner.sev.lock();
        if dst.is_active() {
            return einval("destination is already an SEV guest");
        }
        if !s.is_usable() {
            return einval("source is not an SEV guest");
        }
        if s.snp().is_some() || self.inner.snp() || src.inner.snp() {
            return einval("SNP guests cannot be moved or mirrored");
        }
        if role == ContextRole::Mirror {
            if !self.inner.vcpus.lock().is_empty() {
                return einval("mirror destination already has vCPUs");
            }
            *dst = SevState::take_over(&s, ContextRole::Mirror);
        } else {
            let (nd, ns) = (self.inner.vcpus.lock().len(), src.inner.vcpus.lock().len());
            if nd != ns {
                return einval(format!("vCPU counts differ ({nd} vs {ns})"));
            }
            *dst = SevState::take_over(&s, ContextRole::Owner);
            s.mark_moved_away();
        }
        self.inner.asid.store(dst.asid(), Ordering::Relaxed);
        Ok(())
    }
}
