//! The certificate table of the GHCB extended guest request, as a relying party
//! receives it next to a report (snp-attestation.md §3.1): 24-byte entries
//! `{GUID (RFC 4122 byte order), offset u32 LE, length u32 LE}` ended by an all-zero
//! entry, offsets counted from the start of the table, then the blobs.
//!
//! The layout and the well-known GUIDs are `softsev_abi::ghcb`'s
//! ([`CertTableGuid`], [`CertTableEntry`], [`CertTableHeader`]); what this verifier
//! accepts is its own: it rejects a GUID that appears twice, and it accepts entries
//! with the null GUID (they are listed, not trusted). It shares no code with the
//! firmware model.

pub use softsev_abi::ghcb::CertTableGuid;
use softsev_abi::ghcb::{CERT_TABLE_ENTRY_LEN, CertTableEntry, CertTableHeader};
use zerocopy::IntoBytes;

/// Why a certificate table does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No terminating all-zero entry within the buffer.
    #[error("certificate table: no terminating zero entry within {len} bytes")]
    Unterminated {
        /// Buffer length.
        len: usize,
    },
    /// An entry's blob points into the header or past the buffer.
    #[error(
        "certificate table entry {index} ({guid}): offset {offset:#x} + length {length:#x} outside blob area {start:#x}..{len:#x}"
    )]
    OutOfRange {
        /// Entry index.
        index: usize,
        /// The entry's GUID.
        guid: CertTableGuid,
        /// Offset.
        offset: u32,
        /// Length.
        length: u32,
        /// First byte after the header.
        start: usize,
        /// Buffer length.
        len: usize,
    },
    /// The same GUID twice.
    #[error("certificate table: GUID {0} appears twice")]
    Duplicate(CertTableGuid),
}

/// A parsed table: entries in order with their blobs copied out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTable {
    /// (GUID, blob) in table order.
    pub entries: Vec<(CertTableGuid, Vec<u8>)>,
}

impl CertTable {
    /// Parse a table buffer. An empty buffer or one starting with the terminator is
    /// an empty table; trailing bytes after the blobs are ignored (the buffer is a
    /// whole number of pages).
    pub fn parse(buf: &[u8]) -> Result<CertTable, TableError> {
        if buf.is_empty() {
            return Ok(CertTable::default());
        }
        let header = CertTableHeader::decode(buf)
            .map_err(|_| TableError::Unterminated { len: buf.len() })?;
        let mut entries: Vec<(CertTableGuid, Vec<u8>)> = Vec::with_capacity(header.entries.len());
        for (index, e) in header.entries.iter().enumerate() {
            let guid = e.cert_guid();
            // blob_range fails only when the blob is outside the blob area.
            let range = e.blob_range(index, header.len(), buf.len()).map_err(|_| {
                TableError::OutOfRange {
                    index,
                    guid,
                    offset: e.offset,
                    length: e.length,
                    start: header.len(),
                    len: buf.len(),
                }
            })?;
            if entries.iter().any(|(g, _)| *g == guid) {
                return Err(TableError::Duplicate(guid));
            }
            entries.push((guid, buf[range].to_vec()));
        }
        Ok(CertTable { entries })
    }

    /// The blob for `guid`.
    pub fn get(&self, guid: CertTableGuid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(g, _)| *g == guid)
            .map(|(_, b)| b.as_slice())
    }

    /// Encode: header, terminator, blobs in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = (self.entries.len() + 1) * CERT_TABLE_ENTRY_LEN;
        let mut out =
            Vec::with_capacity(header + self.entries.iter().map(|e| e.1.len()).sum::<usize>());
        let mut off = header;
        for (g, b) in &self.entries {
            out.extend_from_slice(CertTableEntry::new(*g, off as u32, b.len() as u32).as_bytes());
            off += b.len();
        }
        out.extend_from_slice(CertTableEntry::TERMINATOR.as_bytes());
        for (_, b) in &self.entries {
            out.extend_from_slice(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let t = CertTable {
            entries: vec![
                (CertTableGuid::ARK, vec![1, 2, 3]),
                (CertTableGuid::VCEK, vec![9; 10]),
            ],
        };
        let mut b = t.to_bytes();
        assert_eq!(b.len(), 72 + 13);
        assert_eq!(&b[..16], &CertTableGuid::ARK.0);
        assert_eq!(b[0], 0xc0);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 72);
        b.resize(4096, 0);
        let back = CertTable::parse(&b).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get(CertTableGuid::VCEK), Some(&[9u8; 10][..]));
        assert_eq!(back.get(CertTableGuid::ASK), None);
        assert_eq!(CertTable::parse(&[]).unwrap(), CertTable::default());
        assert_eq!(CertTable::parse(&[0; 24]).unwrap(), CertTable::default());
        assert_eq!(
            CertTableGuid::VLEK.to_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
    }

    #[test]
    fn bad_tables() {
        let t = CertTable {
            entries: vec![(CertTableGuid::ARK, vec![1, 2, 3])],
        };
        let b = t.to_bytes();
        assert!(matches!(
            CertTable::parse(&b[..20]),
            Err(TableError::Unterminated { .. })
        ));
        assert!(matches!(
            CertTable::parse(&b[..b.len() - 1]),
            Err(TableError::OutOfRange { .. })
        ));
        let mut into_header = b.clone();
        into_header[16] = 4;
        assert!(matches!(
            CertTable::parse(&into_header),
            Err(TableError::OutOfRange { .. })
        ));
        let mut huge = b.clone();
        huge[16..24].copy_from_slice(&[0xff; 8]);
        assert!(CertTable::parse(&huge).is_err());
        let dup = CertTable {
            entries: vec![(CertTableGuid::ARK, vec![1]), (CertTableGuid::ARK, vec![2])],
        };
        assert_eq!(
            CertTable::parse(&dup.to_bytes()),
            Err(TableError::Duplicate(CertTableGuid::ARK))
        );
    }
}
