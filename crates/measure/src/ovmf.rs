//! OVMF (and COCONUT-SVSM) image parsing: the footer GUID table and the SEV metadata
//! (shared/spec/snp-launch.md §4). Parsing never panics; every malformed structure is a
//! [`MeasureError`] naming the field and value.

use crate::error::{MeasureError, Result};
use softsev_abi::Guid;
use softsev_abi::ovmf::{
    FOOTER_TABLE_END_FROM_IMAGE_END, FOOTER_TABLE_GUID, FooterEntryTrailer,
    SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_BLOCK_GUID, SEV_METADATA_GUID, SEV_METADATA_SIGNATURE,
    SEV_SECRET_BLOCK_GUID, SVSM_INFO_GUID, SectionType, SevMetadataDesc, SevMetadataHeader,
};
use std::ops::Range;

/// The largest firmware image file softsev reads: far above any real OVMF (QEMU's
/// `FLASH_SIZE_LIMIT` is 8 MiB; edk2's AmdSev and OvmfX64 builds are 2–4 MiB), so a
/// wrong path is refused instead of read whole.
pub const MAX_IMAGE_FILE: u64 = 64 << 20;
use std::path::Path;
use zerocopy::FromBytes;

/// 4 GiB: where an OVMF image ends in guest physical memory.
pub const FOUR_GIB: u64 = 0x1_0000_0000;

const TRAILER: usize = core::mem::size_of::<FooterEntryTrailer>();

/// One footer-table entry: its GUID and the byte range of its data in the image.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FooterEntry {
    /// Entry GUID.
    pub guid: Guid,
    /// Data bytes (without the 18-byte trailer) as a range of image offsets.
    pub data: Range<usize>,
}

/// A parsed firmware image (OVMF, or an SVSM image which uses the same footer format).
#[derive(Clone, Debug)]
pub struct Ovmf {
    data: Vec<u8>,
    table: Vec<FooterEntry>,
    metadata: Vec<SevMetadataDesc>,
    metadata_offset: Option<usize>,
}

impl Ovmf {
    /// Parse an image held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Ovmf> {
        let table = parse_footer_table(&data)?;
        let mut o = Ovmf {
            data,
            table,
            metadata: Vec::new(),
            metadata_offset: None,
        };
        o.parse_metadata()?;
        Ok(o)
    }

    /// Read and parse an image file of at most [`MAX_IMAGE_FILE`] bytes (a FIFO, a
    /// socket or a directory is refused before anything is read; a device is read up to
    /// the limit).
    pub fn read(path: &Path) -> Result<Ovmf> {
        let io = |error| MeasureError::Io {
            what: "OVMF",
            path: path.to_owned(),
            error,
        };
        let len = crate::kernel_hashes::readable_file_len(path).map_err(io)?;
        if len > MAX_IMAGE_FILE {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{len} bytes; a firmware image is at most {MAX_IMAGE_FILE} bytes here \
                     (QEMU's flash limit is 8 MiB, edk2's SEV builds are 4 MiB)"
                ),
            )));
        }
        let mut data = Vec::with_capacity(len as usize);
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_IMAGE_FILE + 1).read_to_end(&mut data))
            .map_err(io)?;
        if data.len() as u64 > MAX_IMAGE_FILE {
            // A device, or a file that grew while it was read.
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("more than {MAX_IMAGE_FILE} bytes; a firmware image is at most that"),
            )));
        }
        Ovmf::parse(data)
    }

    /// The raw image.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Image size in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The footer-table entries, in table walk order (last entry in the file first).
    pub fn footer_entries(&self) -> &[FooterEntry] {
        &self.table
    }

    /// Data of the footer-table entry with this GUID.
    pub fn table_entry(&self, guid: Guid) -> Option<&[u8]> {
        let e = self.table.iter().find(|e| e.guid == guid)?;
        self.data.get(e.data.clone())
    }

    fn entry_u32(&self, guid: Guid, index: usize) -> Result<Option<u32>> {
        let Some(d) = self.table_entry(guid) else {
            return Ok(None);
        };
        let need = 4 * (index + 1);
        match d.get(4 * index..need) {
            Some(b) => Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            None => Err(MeasureError::FooterEntryPayload {
                guid,
                len: d.len(),
                need,
            }),
        }
    }

    /// The SEV metadata sections, in table order.
    pub fn metadata(&self) -> &[SevMetadataDesc] {
        &self.metadata
    }

    /// Image offset of the 'ASEV' header, if the image has SEV metadata.
    pub fn metadata_offset(&self) -> Option<usize> {
        self.metadata_offset
    }

    /// Whether a metadata section of this type exists.
    pub fn has_section(&self, kind: SectionType) -> bool {
        self.metadata.iter().any(|d| d.section_type() == kind)
    }

    /// The SEV-ES AP reset address (IP in bits 15:0, CS base in bits 31:16).
    pub fn sev_es_reset_eip(&self) -> Result<u32> {
        self.entry_u32(SEV_ES_RESET_BLOCK_GUID, 0)?
            .ok_or(MeasureError::NoResetBlock)
    }

    /// The kernel-hashes table block (base GPA, size), if present.
    pub fn sev_hash_table(&self) -> Result<Option<(u32, u32)>> {
        let Some(base) = self.entry_u32(SEV_HASH_TABLE_BLOCK_GUID, 0)? else {
            return Ok(None);
        };
        // SSM reads only the base; the size is optional for measurement.
        let size = self
            .entry_u32(SEV_HASH_TABLE_BLOCK_GUID, 1)
            .ok()
            .flatten()
            .unwrap_or(0);
        Ok(Some((base, size)))
    }

    /// Whether SEV / SEV-ES kernel measurement is possible (hash-table block with base ≠ 0).
    pub fn supports_sev_hashes(&self) -> Result<bool> {
        Ok(matches!(self.sev_hash_table()?, Some((base, _)) if base != 0))
    }

    /// The legacy LAUNCH_SECRET area (base GPA, size), if present.
    pub fn sev_secret_block(&self) -> Result<Option<(u32, u32)>> {
        let Some(base) = self.entry_u32(SEV_SECRET_BLOCK_GUID, 0)? else {
            return Ok(None);
        };
        let size = self.entry_u32(SEV_SECRET_BLOCK_GUID, 1)?.unwrap_or(0);
        Ok(Some((base, size)))
    }

    /// The SVSM entry offset from an SVSM image's info entry.
    pub fn svsm_entry_offset(&self) -> Result<u32> {
        self.entry_u32(SVSM_INFO_GUID, 0)?
            .ok_or(MeasureError::NoSvsmInfo)
    }

    /// Check that the image can be measured page by page below `end` and return its
    /// GPA (`end − size`).
    pub fn gpa_below(&self, end: u64, what: &'static str) -> Result<u64> {
        let size = self.data.len();
        if size == 0 {
            return Err(MeasureError::ImageSize {
                what,
                size,
                reason: "empty",
            });
        }
        if !size.is_multiple_of(4096) {
            return Err(MeasureError::ImageSize {
                what,
                size,
                reason: "not a multiple of 4096",
            });
        }
        end.checked_sub(size as u64).ok_or(MeasureError::ImageSize {
            what,
            size,
            reason: "larger than the space below its end address",
        })
    }

    /// GPA of an OVMF image (ends at 4 GiB).
    pub fn gpa(&self) -> Result<u64> {
        self.gpa_below(FOUR_GIB, "OVMF")
    }

    fn parse_metadata(&mut self) -> Result<()> {
        let Some(off) = self.entry_u32(SEV_METADATA_GUID, 0)? else {
            return Ok(());
        };
        let size = self.data.len();
        let start = size
            .checked_sub(off as usize)
            .ok_or(MeasureError::MetadataOffset { offset: off, size })?;
        let hdr_bytes = self
            .data
            .get(start..)
            .ok_or(MeasureError::MetadataOffset { offset: off, size })?;
        let (hdr, rest) = SevMetadataHeader::read_from_prefix(hdr_bytes)
            .map_err(|_| MeasureError::MetadataOffset { offset: off, size })?;
        if hdr.signature != SEV_METADATA_SIGNATURE {
            return Err(MeasureError::MetadataSignature {
                found: hdr.signature,
            });
        }
        if hdr.version != 1 {
            return Err(MeasureError::MetadataVersion(hdr.version));
        }
        let avail = hdr_bytes.len();
        let desc_len = core::mem::size_of::<SevMetadataDesc>();
        let need = (hdr.num_items as usize)
            .checked_mul(desc_len)
            .and_then(|n| n.checked_add(16));
        let fits = matches!(need, Some(n) if n <= hdr.length as usize && n <= avail);
        if !fits {
            return Err(MeasureError::MetadataLength {
                items: hdr.num_items,
                len: hdr.length,
                avail,
            });
        }
        self.metadata = rest
            .chunks_exact(desc_len)
            .take(hdr.num_items as usize)
            .filter_map(|c| SevMetadataDesc::read_from_bytes(c).ok())
            .collect();
        self.metadata_offset = Some(start);
        Ok(())
    }
}

/// Walk the footer GUID table backwards from `end − 0x32`. No footer GUID → empty table.
fn parse_footer_table(data: &[u8]) -> Result<Vec<FooterEntry>> {
    let size = data.len();
    let min = FOOTER_TABLE_END_FROM_IMAGE_END + TRAILER;
    let Some(footer_at) = size.checked_sub(min) else {
        return Err(MeasureError::ImageSize {
            what: "OVMF",
            size,
            reason: "too small for a footer table (50 bytes)",
        });
    };
    let footer = data
        .get(footer_at..footer_at + TRAILER)
        .and_then(|b| FooterEntryTrailer::read_from_bytes(b).ok())
        .ok_or(MeasureError::ImageSize {
            what: "OVMF",
            size,
            reason: "too small for a footer table (50 bytes)",
        })?;
    if footer.guid != FOOTER_TABLE_GUID {
        return Ok(Vec::new());
    }
    let Some(table_len) = (footer.len() as usize).checked_sub(TRAILER) else {
        return Ok(Vec::new());
    };
    let Some(table_start) = footer_at.checked_sub(table_len) else {
        return Err(MeasureError::FooterTableLength {
            len: footer.len(),
            size,
        });
    };
    let mut end = footer_at;
    let mut out: Vec<FooterEntry> = Vec::new();
    while end - table_start >= TRAILER {
        let t = data
            .get(end - TRAILER..end)
            .and_then(|b| FooterEntryTrailer::read_from_bytes(b).ok())
            .ok_or(MeasureError::FooterTableLength {
                len: footer.len(),
                size,
            })?;
        let len = t.len() as usize;
        let max = end - table_start;
        if len < TRAILER || len > max {
            return Err(MeasureError::FooterEntryLength {
                guid: t.guid,
                len: t.len(),
                max,
            });
        }
        let entry = FooterEntry {
            guid: t.guid,
            data: end - len..end - TRAILER,
        };
        // Like the Python tool's dict, a GUID seen again (earlier in the file) wins.
        out.retain(|e| e.guid != entry.guid);
        out.push(entry);
        end -= len;
    }
    Ok(out)
}

/// Fuzz entry point for the `ovmf_parse` target: parse arbitrary bytes and query every
/// accessor; must never panic.
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(o) = Ovmf::parse(data.to_vec()) {
        let _ = o.sev_es_reset_eip();
        let _ = o.sev_hash_table();
        let _ = o.supports_sev_hashes();
        let _ = o.sev_secret_block();
        let _ = o.svsm_entry_offset();
        let _ = o.gpa();
        for e in o.footer_entries() {
            let _ = o.table_entry(e.guid);
        }
        let _ = crate::launch::check_snp_sections(&o);
    }
}
