//! DRAM access paths: raw and encrypted page spans, the firmware's unchecked path, the
//! host's path (#PF on RMP violations for writes) and the device (DMA) path.
//!
//! What DRAM holds: memory never written holds zero bytes (as after a memory-clearing
//! boot). An encrypted read of such memory returns the XEX decryption of zeros — i.e.
//! garbage, exactly as on hardware. Encrypted spans that are not 16-byte aligned are
//! read-modify-written a block at a time, as the memory controller does.

use crate::Soc;
use crate::error::{Fault, PF_PRESENT, PF_RMP, PF_WRITE, SocError};
use crate::keys::KeySel;
use crate::store::{REGION_SIZE, new_chunk};
use rayon::prelude::*;
use softsev_abi::{Asid, PAGE_SIZE_4K, Spa};
use softsev_crypto::xex::XexKey;
use std::sync::Arc;

/// Spans at least this long are processed page-parallel.
const PAR_MIN: usize = 64 * 1024;
const PAGE: usize = PAGE_SIZE_4K as usize;

/// Per-page gate of a span operation: gets the page address and the body to run
/// (the data movement), runs it or returns the fault.
pub(crate) type Gate<'a> = dyn Fn(u64, &mut dyn FnMut()) -> Result<(), SocError> + Sync + 'a;

/// Bulk (firmware) transfers are cut into pieces of this size, processed in parallel.
const BULK_PIECE: usize = 64 * 1024;

/// Split `[spa, spa+len)` into (address, range) pieces that stay within one 4 KiB page.
fn page_pieces(spa: u64, len: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    pieces(spa, len, PAGE)
}

/// Split `[spa, spa+len)` into (address, range) pieces that do not cross a multiple of
/// `unit` (a power of two dividing 2 MiB, so no piece crosses a region).
fn pieces(spa: u64, len: usize, unit: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut out = Vec::with_capacity(len / unit + 2);
    let mut off = 0usize;
    while off < len {
        let a = spa + off as u64;
        let room = unit - (a % unit as u64) as usize;
        let take = room.min(len - off);
        out.push((a, off..off + take));
        off += take;
    }
    out
}

fn first_err(results: Vec<Result<(), SocError>>) -> Result<(), SocError> {
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

impl Soc {
    pub(crate) fn check_range(&self, spa: Spa, len: u64) -> Result<(), SocError> {
        match spa.0.checked_add(len) {
            Some(end) if end <= self.mem_size => Ok(()),
            _ => Err(SocError::OutOfRange {
                spa,
                len,
                size: self.mem_size,
            }),
        }
    }

    pub(crate) fn key_for(&self, sel: KeySel) -> Result<Option<Arc<XexKey>>, SocError> {
        self.keys.resolve(sel).map_err(SocError::NoKey)
    }

    /// Run `f` on the raw DRAM bytes of a span inside one region (read-locked), or on
    /// `None` if the region was never written (all zero).
    fn raw_read_with<R>(&self, spa: u64, len: usize, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let off = (spa % REGION_SIZE) as usize;
        let region = self.store.region_if_present(spa / REGION_SIZE);
        let guard = region.map(|r| r.data.read());
        f(guard
            .as_ref()
            .and_then(|g| g.as_ref())
            .and_then(|c| c.get(off..off + len)))
    }

    /// Copy raw DRAM bytes of a span inside one region into `out`.
    fn raw_read(&self, spa: u64, out: &mut [u8]) {
        self.raw_read_with(spa, out.len(), |src| match src {
            Some(src) => out.copy_from_slice(src),
            None => out.fill(0),
        })
    }

    /// Run `f` on the raw DRAM bytes of a span inside one region, allocating the region.
    fn raw_modify(&self, spa: u64, len: usize, f: impl FnOnce(&mut [u8])) {
        let off = (spa % REGION_SIZE) as usize;
        if let Some(region) = self.store.region(spa / REGION_SIZE) {
            let mut g = region.data.write();
            let chunk = g.get_or_insert_with(|| new_chunk(self.huge_pages));
            if let Some(dst) = chunk.get_mut(off..off + len) {
                f(dst);
            }
        }
    }

    /// Read a span inside one 4 KiB page through `key` (or raw).
    pub(crate) fn read_in_page(&self, spa: u64, buf: &mut [u8], key: Option<&XexKey>) {
        let Some(k) = key else {
            return self.raw_read(spa, buf);
        };
        let end = spa + buf.len() as u64;
        let (a0, a1) = (spa & !15, (end + 15) & !15);
        if a0 == spa && a1 == end {
            self.raw_read_with(spa, buf.len(), |src| match src {
                Some(src) => {
                    let _ = k.decrypt_to(spa, src, buf);
                }
                None => {
                    buf.fill(0);
                    let _ = k.decrypt(spa, buf);
                }
            });
        } else {
            let mut tmp = [0u8; PAGE];
            let n = (a1 - a0) as usize;
            if let Some(t) = tmp.get_mut(..n) {
                self.raw_read(a0, t);
                let _ = k.decrypt(a0, t);
                let skip = (spa - a0) as usize;
                if let Some(src) = t.get(skip..skip + buf.len()) {
                    buf.copy_from_slice(src);
                }
            }
        }
    }

    /// Write a span inside one 4 KiB page through `key` (or raw).
    pub(crate) fn write_in_page(&self, spa: u64, data: &[u8], key: Option<&XexKey>) {
        let Some(k) = key else {
            return self.raw_modify(spa, data.len(), |d| d.copy_from_slice(data));
        };
        let end = spa + data.len() as u64;
        let (a0, a1) = (spa & !15, (end + 15) & !15);
        if a0 == spa && a1 == end {
            self.raw_modify(spa, data.len(), |d| {
                let _ = k.encrypt_to(spa, data, d);
            });
        } else {
            let skip = (spa - a0) as usize;
            self.raw_modify(a0, (a1 - a0) as usize, |d| {
                let _ = k.decrypt(a0, d);
                if let Some(dst) = d.get_mut(skip..skip + data.len()) {
                    dst.copy_from_slice(data);
                }
                let _ = k.encrypt(a0, d);
            });
        }
    }

    /// Page-wise (parallel for long spans) read with a per-page gate.
    pub(crate) fn read_span(
        &self,
        spa: Spa,
        buf: &mut [u8],
        key: Option<&XexKey>,
        gate: &Gate<'_>,
    ) -> Result<(), SocError> {
        self.check_range(spa, buf.len() as u64)?;
        let run = |a: u64, piece: &mut [u8]| {
            let mut body = || self.read_in_page(a, piece, key);
            gate(a, &mut body)
        };
        if buf.len() <= PAGE && (spa.0 % PAGE_SIZE_4K) as usize + buf.len() <= PAGE {
            return run(spa.0, buf);
        }
        let pieces = page_pieces(spa.0, buf.len());
        let mut slices: Vec<(u64, &mut [u8])> = Vec::with_capacity(pieces.len());
        let mut rest = buf;
        for (a, r) in pieces {
            let (head, tail) = rest.split_at_mut(r.len());
            slices.push((a, head));
            rest = tail;
        }
        if slices.len() * PAGE >= PAR_MIN {
            first_err(slices.into_par_iter().map(|(a, s)| run(a, s)).collect())
        } else {
            slices.into_iter().try_for_each(|(a, s)| run(a, s))
        }
    }

    /// Page-wise (parallel for long spans) write with a per-page gate.
    pub(crate) fn write_span(
        &self,
        spa: Spa,
        data: &[u8],
        key: Option<&XexKey>,
        gate: &Gate<'_>,
    ) -> Result<(), SocError> {
        self.check_range(spa, data.len() as u64)?;
        let run = |a: u64, piece: &[u8]| {
            let mut body = || self.write_in_page(a, piece, key);
            gate(a, &mut body)
        };
        if data.len() <= PAGE && (spa.0 % PAGE_SIZE_4K) as usize + data.len() <= PAGE {
            return run(spa.0, data);
        }
        let pieces = page_pieces(spa.0, data.len());
        if data.len() >= PAR_MIN {
            first_err(
                pieces
                    .into_par_iter()
                    .map(|(a, r)| run(a, data.get(r).unwrap_or_default()))
                    .collect(),
            )
        } else {
            pieces
                .into_iter()
                .try_for_each(|(a, r)| run(a, data.get(r).unwrap_or_default()))
        }
    }

    // ---- firmware path: no RMP checks (the firmware checks page states itself) ----

    /// Firmware read of `buf.len()` bytes at `spa` through key `sel` (DBG_DECRYPT,
    /// reading command buffers, guest-request pages...). No RMP check.
    pub fn fw_read(&self, spa: Spa, sel: KeySel, buf: &mut [u8]) -> Result<(), SocError> {
        let key = self.key_for(sel)?;
        if buf.len() >= PAR_MIN && spa.0.is_multiple_of(16) && buf.len().is_multiple_of(16) {
            self.check_range(spa, buf.len() as u64)?;
            let mut slices: Vec<(u64, &mut [u8])> = Vec::new();
            let mut rest = buf;
            for (a, r) in pieces(spa.0, rest.len(), BULK_PIECE) {
                let (head, tail) = rest.split_at_mut(r.len());
                slices.push((a, head));
                rest = tail;
            }
            let key = key.as_deref();
            slices.into_par_iter().for_each(|(a, piece)| match key {
                Some(k) => self.read_in_page(a, piece, Some(k)),
                None => self.raw_read(a, piece),
            });
            return Ok(());
        }
        self.read_span(spa, buf, key.as_deref(), &|_, body| {
            body();
            Ok(())
        })
    }

    /// Firmware write of `data` at `spa` through key `sel` (DBG_ENCRYPT, LAUNCH_SECRET,
    /// command-buffer outputs...). No RMP check.
    pub fn fw_write(&self, spa: Spa, sel: KeySel, data: &[u8]) -> Result<(), SocError> {
        let key = self.key_for(sel)?;
        if data.len() >= PAR_MIN && spa.0.is_multiple_of(16) && data.len().is_multiple_of(16) {
            self.check_range(spa, data.len() as u64)?;
            let key = key.as_deref();
            // Encrypt each piece outside the region lock, so that pieces of the same
            // 2 MiB region are processed in parallel too.
            pieces(spa.0, data.len(), BULK_PIECE)
                .into_par_iter()
                .for_each(|(a, r)| {
                    let src = data.get(r).unwrap_or_default();
                    match key {
                        Some(k) => {
                            let mut tmp = src.to_vec();
                            let _ = k.encrypt(a, &mut tmp);
                            self.raw_modify(a, tmp.len(), |d| d.copy_from_slice(&tmp));
                        }
                        None => self.raw_modify(a, src.len(), |d| d.copy_from_slice(src)),
                    }
                });
            return Ok(());
        }
        self.write_span(spa, data, key.as_deref(), &|_, body| {
            body();
            Ok(())
        })
    }

    /// Encrypt `len` bytes at `spa` in place with the key of `asid`: the DRAM bytes are
    /// taken as plaintext and replaced by their ciphertext (LAUNCH_UPDATE_DATA,
    /// SNP_LAUNCH_UPDATE). Address and length must be 16-byte aligned. Page-parallel.
    pub fn fw_encrypt_in_place(&self, spa: Spa, len: u64, asid: Asid) -> Result<(), SocError> {
        self.check_range(spa, len)?;
        if !spa.0.is_multiple_of(16) || !len.is_multiple_of(16) {
            return Err(SocError::Misaligned { spa, len });
        }
        let key = self
            .key_for(KeySel::Guest(asid))?
            .ok_or(SocError::NoKey(asid.0))?;
        let len = usize::try_from(len).map_err(|_| SocError::OutOfRange {
            spa,
            len,
            size: self.mem_size,
        })?;
        let one = |(a, r): (u64, std::ops::Range<usize>)| {
            let n = r.len();
            // Copy the plaintext out, encrypt it straight back into DRAM under the lock.
            let plain = self.raw_read_with(a, n, |src| match src {
                Some(s) => s.to_vec(),
                None => vec![0u8; n],
            });
            self.raw_modify(a, n, |d| {
                let _ = key.encrypt_to(a, &plain, d);
            });
        };
        let pieces = pieces(spa.0, len, BULK_PIECE);
        if len >= PAR_MIN {
            pieces.into_par_iter().for_each(one);
        } else {
            pieces.into_iter().for_each(one);
        }
        Ok(())
    }

    /// Firmware: fill `len` bytes at `spa` with zero bytes in DRAM (raw).
    pub fn fw_zero(&self, spa: Spa, len: u64) -> Result<(), SocError> {
        self.check_range(spa, len)?;
        let len = usize::try_from(len).unwrap_or(0);
        for (a, r) in page_pieces(spa.0, len) {
            self.raw_modify(a, r.len(), |d| d.fill(0));
        }
        Ok(())
    }

    // ---- host path ----

    /// Host read. C-bit set: decrypted with the SME key; clear: the raw DRAM bytes (for
    /// a guest's private page: its ciphertext). Reads are not RMP-checked.
    pub fn host_read(&self, spa: Spa, c_bit: bool, buf: &mut [u8]) -> Result<(), SocError> {
        let key = self.key_for(if c_bit { KeySel::Sme } else { KeySel::Plain })?;
        self.read_span(spa, buf, key.as_deref(), &|_, body| {
            body();
            Ok(())
        })
    }

    /// Host write (data or page-table A/D update). With SNP enabled every page written
    /// must be hypervisor-owned, else #PF with error code P|W|RMP at the first byte of
    /// the span inside the offending page; earlier pages of the span stay written (as a `rep movs`
    /// would leave them).
    pub fn host_write(&self, spa: Spa, c_bit: bool, data: &[u8]) -> Result<(), SocError> {
        let key = self.key_for(if c_bit { KeySel::Sme } else { KeySel::Plain })?;
        self.write_span(spa, data, key.as_deref(), &|a, body| {
            self.with_rmp(a, |rmp| {
                if self.snp && self.hypervisor_owned_4k(rmp, a).is_err() {
                    return Err(SocError::Fault(Fault::PageFault {
                        addr: Spa(a),
                        error_code: PF_PRESENT | PF_WRITE | PF_RMP,
                    }));
                }
                body();
                Ok(())
            })
        })
    }

    /// Host check without data: would a write to `spa` fault?
    pub fn host_write_check(&self, spa: Spa) -> Result<(), Fault> {
        if !self.snp {
            return Ok(());
        }
        self.with_rmp(spa.0, |rmp| self.hypervisor_owned_4k(rmp, spa.0))
            .map_err(|_| Fault::PageFault {
                addr: spa,
                error_code: PF_PRESENT | PF_WRITE | PF_RMP,
            })
    }

    // ---- device path (DMA) ----

    /// Device (DMA) read: never decrypted. With SNP enabled only hypervisor-owned pages
    /// are reachable (IOMMU fault otherwise).
    pub fn device_read(&self, spa: Spa, buf: &mut [u8]) -> Result<(), SocError> {
        self.read_span(spa, buf, None, &|a, body| {
            self.with_rmp(a, |rmp| {
                if self.snp && self.hypervisor_owned_4k(rmp, a).is_err() {
                    return Err(SocError::Fault(Fault::Iommu {
                        spa: Spa(a),
                        write: false,
                    }));
                }
                body();
                Ok(())
            })
        })
    }

    /// Device (DMA) write: never encrypted; hypervisor-owned pages only with SNP.
    pub fn device_write(&self, spa: Spa, data: &[u8]) -> Result<(), SocError> {
        self.write_span(spa, data, None, &|a, body| {
            self.with_rmp(a, |rmp| {
                if self.snp && self.hypervisor_owned_4k(rmp, a).is_err() {
                    return Err(SocError::Fault(Fault::Iommu {
                        spa: Spa(a),
                        write: true,
                    }));
                }
                body();
                Ok(())
            })
        })
    }

    /// Bytes of DRAM backing allocated so far (2 MiB per touched region; the host RSS
    /// is lower when only some pages of a region were written).
    pub fn allocated_bytes(&self) -> u64 {
        let mut n = 0;
        for i in 0..self.store.regions() {
            if let Some(r) = self.store.region_if_present(i)
                && r.data.read().is_some()
            {
                n += REGION_SIZE;
            }
        }
        n
    }
}
