//! Verification of the kernel, initrd and command line against the SEV hashes table,
//! as OVMF's `BlobVerifierLibSevHashes` does it (snp-launch.md §5; QEMU
//! `SevHashTable`): the table sits in private, measured memory at a GPA OVMF knows
//! from its own metadata; each blob the host hands over (fw_cfg) is hashed with SHA-256
//! and must equal the entry with its GUID.
//!
//! Table: GUID `9438d606-…`, u16 length (≥ 18 and within the area), then entries
//! `GUID | u16 length | data` walked while the remaining length covers them; the first
//! entry with the blob's GUID decides, and its data must be exactly 32 bytes. No table,
//! no entry, a wrong size or a different digest all refuse the blob.

use crate::error::{GuestError, access_fault};
use crate::platform::{CBit, GuestPlatform};
use softsev_abi::kernel_hashes::{
    SEV_CMDLINE_ENTRY_GUID, SEV_HASH_TABLE_GUID, SEV_INITRD_ENTRY_GUID, SEV_KERNEL_ENTRY_GUID,
};
use softsev_abi::{Gpa, Guid};
use softsev_crypto::ct::ct_eq;
use softsev_crypto::hash::sha256;

/// Size of a table or entry header (GUID + u16 length).
const HDR: usize = 18;
/// Default size of the hashes area (OVMF `PcdQemuHashTableSize`).
pub const DEFAULT_AREA_SIZE: u32 = 0x400;

/// The blobs the host hands over, and where the table is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelBlobs {
    /// GPA of the hashes table (from the firmware's metadata).
    pub table_gpa: Gpa,
    /// Size of the area the table may occupy.
    pub area_size: u32,
    /// The kernel blob exactly as fw_cfg delivers it.
    pub kernel: Vec<u8>,
    /// The initrd blob (may be empty).
    pub initrd: Vec<u8>,
    /// The command line blob (QEMU includes the trailing NUL).
    pub cmdline: Vec<u8>,
}

/// Find `guid`'s digest in the table body (after the table header).
fn find<'a>(body: &'a [u8], guid: &Guid) -> Result<&'a [u8], String> {
    let mut rest = body;
    while rest.len() >= HDR {
        let len = usize::from(u16::from_le_bytes([rest[16], rest[17]]));
        if len < HDR || len > rest.len() {
            break;
        }
        let (entry, tail) = rest.split_at(len);
        if entry[..16] == guid.0 {
            let data = &entry[HDR..];
            if data.len() != 32 {
                return Err(format!(
                    "entry {guid} holds {} bytes, not a SHA-256 digest",
                    data.len()
                ));
            }
            return Ok(data);
        }
        rest = tail;
    }
    Err(format!("no entry for {guid}"))
}

/// Check `blobs` against a table image `table` (the bytes of the area).
pub fn verify_table(table: &[u8], blobs: &KernelBlobs) -> Result<(), String> {
    if table.len() < HDR || table[..16] != SEV_HASH_TABLE_GUID.0 {
        return Err("no SEV hashes table (GUID missing)".into());
    }
    let len = usize::from(u16::from_le_bytes([table[16], table[17]]));
    if len < HDR || len > table.len() {
        return Err(format!(
            "table length {len:#x} outside {HDR:#x}..={:#x}",
            table.len()
        ));
    }
    let body = &table[HDR..len];
    for (name, guid, blob) in [
        ("kernel", SEV_KERNEL_ENTRY_GUID, &blobs.kernel),
        ("initrd", SEV_INITRD_ENTRY_GUID, &blobs.initrd),
        ("cmdline", SEV_CMDLINE_ENTRY_GUID, &blobs.cmdline),
    ] {
        let want = find(body, &guid).map_err(|e| format!("{name}: {e}"))?;
        if !ct_eq(want, &sha256(blob)) {
            return Err(format!(
                "{name} ({} bytes) does not match its hash",
                blob.len()
            ));
        }
    }
    Ok(())
}

/// Read the table from private memory and verify the blobs against it.
pub fn verify<P: GuestPlatform + ?Sized>(p: &mut P, blobs: &KernelBlobs) -> Result<(), GuestError> {
    let gpa = blobs.table_gpa;
    let size = blobs.area_size.clamp(HDR as u32, 0x1000) as usize;
    let mut area = vec![0u8; size];
    p.read(gpa, CBit::Private, &mut area)
        .map_err(|f| access_fault("kernel hashes table read", gpa, f))?;
    verify_table(&area, blobs).map_err(|what| GuestError::KernelHashes { gpa, what })
}

/// Fuzz entry point: table verification never panics.
pub fn fuzz_hash_table(data: &[u8]) {
    let blobs = KernelBlobs {
        table_gpa: Gpa(0),
        area_size: DEFAULT_AREA_SIZE,
        kernel: b"k".to_vec(),
        initrd: Vec::new(),
        cmdline: b"\0".to_vec(),
    };
    let _ = verify_table(data, &blobs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use softsev_abi::kernel_hashes::PaddedSevHashTable;
    use zerocopy::IntoBytes;

    fn blobs() -> KernelBlobs {
        KernelBlobs {
            table_gpa: Gpa(0),
            area_size: DEFAULT_AREA_SIZE,
            kernel: vec![0x90; 5000],
            initrd: vec![1, 2, 3],
            cmdline: b"console=ttyS0\0".to_vec(),
        }
    }

    fn area(b: &KernelBlobs) -> Vec<u8> {
        let t = PaddedSevHashTable::new(sha256(&b.cmdline), sha256(&b.initrd), sha256(&b.kernel));
        let mut a = t.as_bytes().to_vec();
        a.resize(DEFAULT_AREA_SIZE as usize, 0);
        a
    }

    #[test]
    fn qemu_table_verifies_and_each_blob_matters() {
        let b = blobs();
        let a = area(&b);
        verify_table(&a, &b).unwrap();
        for i in 0..3 {
            let mut t = b.clone();
            match i {
                0 => t.kernel[0] ^= 1,
                1 => t.initrd.push(0),
                _ => t.cmdline.pop().map(|_| ()).unwrap_or(()),
            }
            let e = verify_table(&a, &t).unwrap_err();
            assert!(e.contains("does not match"), "{e}");
        }
    }

    #[test]
    fn malformed_tables_refuse() {
        let b = blobs();
        let good = area(&b);
        let mut t = good.clone();
        t[0] ^= 1;
        assert!(verify_table(&t, &b).unwrap_err().contains("GUID"));
        let mut t = good.clone();
        t[16] = 0xFF;
        t[17] = 0xFF;
        assert!(verify_table(&t, &b).unwrap_err().contains("length"));
        // Kernel entry (third) with a wrong length: found, wrong size.
        let mut t = good.clone();
        t[0x76 + 16] = 49;
        assert!(verify_table(&t, &b).is_err());
        // Table length cut before the kernel entry: not found.
        let mut t = good.clone();
        t[16] = 0x76;
        t[17] = 0;
        assert!(verify_table(&t, &b).unwrap_err().contains("no entry"));
        assert!(verify_table(&[], &b).is_err());
        // Zero-length entry does not loop.
        let mut t = good;
        t[0x12 + 16] = 0;
        assert!(verify_table(&t, &b).is_err());
    }
}
