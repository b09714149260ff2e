//! The certificate table of the GHCB extended guest request, as a relying party
//! receives it next to a report (snp-attestation.md §3.1): 24-byte entries
//! `{GUID (RFC 4122 byte order), offset u32 LE, length u32 LE}` ended by an all-zero
//! entry, offsets counted from the start of the table, then the blobs.
//!
//! This is the verifier's own parser; it shares no code with the firmware model.

/// A table GUID in RFC 4122 byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableGuid(pub [u8; 16]);

const fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit in GUID constant"),
    }
}

impl TableGuid {
    /// ARK.
    pub const ARK: TableGuid = TableGuid::from_text("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    /// ASK (also carries the ASVK).
    pub const ASK: TableGuid = TableGuid::from_text("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    /// VCEK.
    pub const VCEK: TableGuid = TableGuid::from_text("63da758d-e664-4564-adc5-f4b93be8accd");
    /// VLEK.
    pub const VLEK: TableGuid = TableGuid::from_text("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    /// CRL.
    pub const CRL: TableGuid = TableGuid::from_text("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");

    /// From the 36-character text form; a compile-time panic on bad text (constants
    /// only).
    pub const fn from_text(s: &str) -> TableGuid {
        let b = s.as_bytes();
        assert!(b.len() == 36);
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (hexval(b[POS[i]]) << 4) | hexval(b[POS[i] + 1]);
            i += 1;
        }
        TableGuid(out)
    }

    /// Known name ("ARK", "ASK", "VCEK", "VLEK", "CRL").
    pub fn name(&self) -> Option<&'static str> {
        match *self {
            TableGuid::ARK => Some("ARK"),
            TableGuid::ASK => Some("ASK"),
            TableGuid::VCEK => Some("VCEK"),
            TableGuid::VLEK => Some("VLEK"),
            TableGuid::CRL => Some("CRL"),
            _ => None,
        }
    }
}

impl std::fmt::Display for TableGuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for TableGuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{self} ({n})"),
            None => write!(f, "{self}"),
        }
    }
}

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
        guid: TableGuid,
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
    Duplicate(TableGuid),
}

/// Size of one header entry.
pub const ENTRY_LEN: usize = 24;

/// A parsed table: entries in order with their blobs copied out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTable {
    /// (GUID, blob) in table order.
    pub entries: Vec<(TableGuid, Vec<u8>)>,
}

impl CertTable {
    /// Parse a table buffer. An empty buffer or one starting with the terminator is
    /// an empty table; trailing bytes after the blobs are ignored (the buffer is a
    /// whole number of pages).
    pub fn parse(buf: &[u8]) -> Result<CertTable, TableError> {
        if buf.is_empty() {
            return Ok(CertTable::default());
        }
        let mut raw = Vec::new();
        let mut chunks = buf.chunks_exact(ENTRY_LEN);
        let header_len = loop {
            let Some(e) = chunks.next() else {
                return Err(TableError::Unterminated { len: buf.len() });
            };
            if e.iter().all(|&b| b == 0) {
                break (raw.len() + 1) * ENTRY_LEN;
            }
            let (g, rest) = e.split_at(16);
            let mut guid = [0u8; 16];
            guid.copy_from_slice(g);
            let (o, l) = rest.split_at(4);
            let offset = u32::from_le_bytes([o[0], o[1], o[2], o[3]]);
            let length = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
            raw.push((TableGuid(guid), offset, length));
        };
        let mut entries: Vec<(TableGuid, Vec<u8>)> = Vec::with_capacity(raw.len());
        for (index, (guid, offset, length)) in raw.into_iter().enumerate() {
            let range = (offset as usize)
                .checked_add(length as usize)
                .filter(|&end| offset as usize >= header_len && end <= buf.len())
                .map(|end| offset as usize..end);
            let Some(blob) = range.and_then(|r| buf.get(r)) else {
                return Err(TableError::OutOfRange {
                    index,
                    guid,
                    offset,
                    length,
                    start: header_len,
                    len: buf.len(),
                });
            };
            if entries.iter().any(|(g, _)| *g == guid) {
                return Err(TableError::Duplicate(guid));
            }
            entries.push((guid, blob.to_vec()));
        }
        Ok(CertTable { entries })
    }

    /// The blob for `guid`.
    pub fn get(&self, guid: TableGuid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(g, _)| *g == guid)
            .map(|(_, b)| b.as_slice())
    }

    /// Encode: header, terminator, blobs in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = (self.entries.len() + 1) * ENTRY_LEN;
        let mut out =
            Vec::with_capacity(header + self.entries.iter().map(|e| e.1.len()).sum::<usize>());
        let mut off = header;
        for (g, b) in &self.entries {
            out.extend_from_slice(&g.0);
            out.extend_from_slice(&(off as u32).to_le_bytes());
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            off += b.len();
        }
        out.extend_from_slice(&[0u8; ENTRY_LEN]);
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
                (TableGuid::ARK, vec![1, 2, 3]),
                (TableGuid::VCEK, vec![9; 10]),
            ],
        };
        let mut b = t.to_bytes();
        assert_eq!(b.len(), 72 + 13);
        assert_eq!(&b[..16], &TableGuid::ARK.0);
        assert_eq!(b[0], 0xc0);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 72);
        b.resize(4096, 0);
        let back = CertTable::parse(&b).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get(TableGuid::VCEK), Some(&[9u8; 10][..]));
        assert_eq!(back.get(TableGuid::ASK), None);
        assert_eq!(CertTable::parse(&[]).unwrap(), CertTable::default());
        assert_eq!(CertTable::parse(&[0; 24]).unwrap(), CertTable::default());
        assert_eq!(
            TableGuid::VLEK.to_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
    }

    #[test]
    fn bad_tables() {
        let t = CertTable {
            entries: vec![(TableGuid::ARK, vec![1, 2, 3])],
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
            entries: vec![(TableGuid::ARK, vec![1]), (TableGuid::ARK, vec![2])],
        };
        assert_eq!(
            CertTable::parse(&dup.to_bytes()),
            Err(TableError::Duplicate(TableGuid::ARK))
        );
    }
}
