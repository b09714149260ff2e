//! The memory controller's key slots: one AES-128 key per ASID plus the host's SME key.
//!
//! Keys enter only from the firmware (ACTIVATE installs the guest's VEK) and never
//! leave: there is no API that returns key bytes. DEACTIVATE drops the key (the
//! `XexKey` zeroizes its schedule on drop once the last in-flight access releases it)
//! and marks the ASID dirty; reusing a dirty ASID needs WBINVD on all cores followed by
//! DF_FLUSH, as on hardware (host-interfaces.md §1.11, §8).

use crate::error::KeyError;
use parking_lot::RwLock;
use softsev_abi::Asid;
use softsev_crypto::xex::{XEX_KEY_LEN, XexKey};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which key an access is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySel {
    /// No encryption (C-bit clear): DRAM bytes as they are.
    Plain,
    /// The host's SME key (ASID 0 with the C-bit set).
    Sme,
    /// The key of a guest ASID.
    Guest(Asid),
}

/// The state of one ASID's key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// No key, usable.
    Empty,
    /// A key is installed.
    Active,
    /// Deactivated; needs WBINVD + DF_FLUSH before a new key may be installed.
    NeedsFlush,
}

enum Slot {
    Empty,
    Active(Arc<XexKey>),
    NeedsFlush,
}

pub(crate) struct KeyTable {
    slots: RwLock<Vec<Slot>>,
    sme: Arc<XexKey>,
    wbinvd_done: AtomicBool,
}

impl KeyTable {
    pub(crate) fn new(asid_count: u32, sme_key: &[u8; XEX_KEY_LEN]) -> Self {
        Self {
            slots: RwLock::new((0..asid_count).map(|_| Slot::Empty).collect()),
            sme: Arc::new(XexKey::new(sme_key)),
            wbinvd_done: AtomicBool::new(true),
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.slots.read().len()).unwrap_or(u32::MAX)
    }

    fn check_guest(&self, asid: Asid) -> Result<usize, KeyError> {
        let count = self.count();
        if asid.0 == 0 || asid.0 >= count {
            return Err(KeyError::BadAsid {
                asid: asid.0,
                count,
            });
        }
        usize::try_from(asid.0).map_err(|_| KeyError::BadAsid {
            asid: asid.0,
            count,
        })
    }

    /// The key for a selector; `Ok(None)` for plaintext, `Err` when no key is there.
    pub(crate) fn resolve(&self, sel: KeySel) -> Result<Option<Arc<XexKey>>, u32> {
        match sel {
            KeySel::Plain => Ok(None),
            KeySel::Sme => Ok(Some(self.sme.clone())),
            KeySel::Guest(a) => {
                match usize::try_from(a.0)
                    .ok()
                    .and_then(|i| match self.slots.read().get(i) {
                        Some(Slot::Active(k)) => Some(k.clone()),
                        _ => None,
                    }) {
                    Some(k) => Ok(Some(k)),
                    None => Err(a.0),
                }
            }
        }
    }

    pub(crate) fn activate(&self, asid: Asid, key: &[u8; XEX_KEY_LEN]) -> Result<(), KeyError> {
        let i = self.check_guest(asid)?;
        let mut slots = self.slots.write();
        let slot = slots.get_mut(i).ok_or(KeyError::BadAsid {
            asid: asid.0,
            count: 0,
        })?;
        match slot {
            Slot::Active(_) => Err(KeyError::AsidActive(asid.0)),
            Slot::NeedsFlush => Err(KeyError::NeedsFlush(asid.0)),
            Slot::Empty => {
                *slot = Slot::Active(Arc::new(XexKey::new(key)));
                Ok(())
            }
        }
    }

    pub(crate) fn deactivate(&self, asid: Asid) -> Result<(), KeyError> {
        let i = self.check_guest(asid)?;
        let mut slots = self.slots.write();
        match slots.get_mut(i) {
            Some(slot @ Slot::Active(_)) => {
                *slot = Slot::NeedsFlush;
                self.wbinvd_done.store(false, Ordering::SeqCst);
                Ok(())
            }
            _ => Err(KeyError::NotActive(asid.0)),
        }
    }

    pub(crate) fn release_unused(&self, asid: Asid) -> Result<(), KeyError> {
        let i = self.check_guest(asid)?;
        let mut slots = self.slots.write();
        match slots.get_mut(i) {
            Some(slot @ Slot::Active(_)) => {
                *slot = Slot::Empty;
                Ok(())
            }
            _ => Err(KeyError::NotActive(asid.0)),
        }
    }

    pub(crate) fn wbinvd_done(&self) -> bool {
        self.wbinvd_done.load(Ordering::SeqCst)
    }

    pub(crate) fn clear_wbinvd_done(&self) {
        self.wbinvd_done.store(false, Ordering::SeqCst);
    }

    pub(crate) fn state(&self, asid: Asid) -> Option<KeyState> {
        let slots = self.slots.read();
        match slots.get(usize::try_from(asid.0).ok()?)? {
            Slot::Empty => Some(KeyState::Empty),
            Slot::Active(_) => Some(KeyState::Active),
            Slot::NeedsFlush => Some(KeyState::NeedsFlush),
        }
    }

    pub(crate) fn wbinvd(&self) {
        self.wbinvd_done.store(true, Ordering::SeqCst);
    }

    pub(crate) fn df_flush(&self) -> Result<(), KeyError> {
        let mut slots = self.slots.write();
        if !self.wbinvd_done.load(Ordering::SeqCst) {
            return Err(KeyError::WbinvdRequired);
        }
        for s in slots.iter_mut() {
            if matches!(s, Slot::NeedsFlush) {
                *s = Slot::Empty;
            }
        }
        Ok(())
    }

    pub(crate) fn asid_count(&self) -> u32 {
        self.count()
    }
}
