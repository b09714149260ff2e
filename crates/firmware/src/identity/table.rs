//! The certificate table of the GHCB extended guest request (snp-attestation.md §3.1):
//! 24-byte entries `{GUID, offset u32 LE, length u32 LE}` ended by an all-zero entry,
//! then the certificate blobs. Offsets count from the start of the table. GUIDs are
//! stored in RFC 4122 (text) byte order, as the Linux/virtee/go-sev-guest consumers read
//! them — not in EFI mixed-endian order.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, little_endian::U32};

/// A certificate-table GUID in RFC 4122 byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct CertTableGuid(pub [u8; 16]);

impl CertTableGuid {
    /// ARK certificate.
    pub const ARK: Self = Self::parse("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    /// ASK certificate (also used for the ASVK).
    pub const ASK: Self = Self::parse("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    /// VCEK certificate.
    pub const VCEK: Self = Self::parse("63da758d-e664-4564-adc5-f4b93be8accd");
    /// VLEK certificate.
    pub const VLEK: Self = Self::parse("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    /// CRL.
    pub const CRL: Self = Self::parse("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
    /// The terminator (all zero).
    pub const NULL: Self = Self([0; 16]);

    /// From `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`; compile-time panic on bad text.
    pub const fn parse(s: &str) -> Self {
        let b = s.as_bytes();
        assert!(b.len() == 36, "GUID text must be 36 characters");
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (hex(b[POS[i]]) << 4) | hex(b[POS[i] + 1]);
            i += 1;
        }
        Self(out)
    }

    /// A short name for known GUIDs.
    pub fn name(&self) -> Option<&'static str> {
        match *self {
            Self::ARK => Some("ARK"),
            Self::ASK => Some("ASK"),
            Self::VCEK => Some("VCEK"),
            Self::VLEK => Some("VLEK"),
            Self::CRL => Some("CRL"),
            _ => None,
        }
    }
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit in GUID"),
    }
}

impl std::fmt::Debug for CertTableGuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        for (i, x) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{x:02x}")?;
        }
        if let Some(n) = self.name() {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// One 24-byte table header entry (GHCB spec, extended guest request).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CertTableHeader {
    /// Which certificate.
    pub guid: CertTableGuid,
    /// Byte offset of the blob from the start of the table.
    pub offset: U32,
    /// Blob length.
    pub length: U32,
}
softsev_abi::assert_layout!(
    CertTableHeader,
    size = 24,
    guid = 0,
    offset = 16,
    length = 20
);

/// A certificate and its GUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertTableEntry {
    /// Which certificate.
    pub guid: CertTableGuid,
    /// The blob (DER X.509 normally).
    pub data: Vec<u8>,
}

/// Errors parsing a certificate table from untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// No terminator entry before the end of the buffer.
    #[error("certificate table of {len} bytes has no all-zero terminator entry")]
    NoTerminator {
        /// Buffer length.
        len: usize,
    },
    /// An entry's blob lies outside the buffer or overlaps the header.
    #[error(
        "certificate table entry {index} ({guid:?}) offset {offset:#x} length {length:#x} is outside the blob area {start:#x}..{end:#x}"
    )]
    BadRange {
        /// Entry index.
        index: usize,
        /// Its GUID.
        guid: CertTableGuid,
        /// Offset.
        offset: u32,
        /// Length.
        length: u32,
        /// First byte after the header.
        start: usize,
        /// Buffer length.
        end: usize,
    },
    /// The table would not fit the u32 offsets.
    #[error("certificate table too large ({0} bytes)")]
    TooLarge(usize),
}

/// A certificate table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTable {
    entries: Vec<CertTableEntry>,
}

const HDR: usize = size_of::<CertTableHeader>();

impl CertTable {
    /// An empty table (serializes to one zero entry).
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an entry.
    pub fn push(&mut self, guid: CertTableGuid, data: Vec<u8>) {
        self.entries.push(CertTableEntry { guid, data });
    }

    /// The entries in order.
    pub fn entries(&self) -> &[CertTableEntry] {
        &self.entries
    }

    /// The first blob with `guid`.
    pub fn get(&self, guid: CertTableGuid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.guid == guid)
            .map(|e| e.data.as_slice())
    }

    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        HDR * (self.entries.len() + 1) + self.entries.iter().map(|e| e.data.len()).sum::<usize>()
    }

    /// Serialize: headers, terminator, blobs in entry order.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CertTableError> {
        let total = self.encoded_len();
        if u32::try_from(total).is_err() {
            return Err(CertTableError::TooLarge(total));
        }
        let mut out = Vec::with_capacity(total);
        let mut offset = HDR * (self.entries.len() + 1);
        for e in &self.entries {
            let h = CertTableHeader {
                guid: e.guid,
                offset: U32::new(offset as u32),
                length: U32::new(e.data.len() as u32),
            };
            out.extend_from_slice(h.as_bytes());
            offset += e.data.len();
        }
        out.extend_from_slice(&[0u8; HDR]);
        for e in &self.entries {
            out.extend_from_slice(&e.data);
        }
        Ok(out)
    }

    /// Parse a table from untrusted bytes (a guest's copy of the shared pages). An
    /// empty buffer is an empty table; trailing bytes after the blobs are ignored.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, CertTableError> {
        if buf.is_empty() {
            return Ok(Self::new());
        }
        let mut headers = Vec::new();
        let mut pos = 0usize;
        loop {
            let chunk = buf
                .get(pos..pos + HDR)
                .ok_or(CertTableError::NoTerminator { len: buf.len() })?;
            let h = CertTableHeader::read_from_bytes(chunk)
                .map_err(|_| CertTableError::NoTerminator { len: buf.len() })?;
            pos += HDR;
            if h.guid == CertTableGuid::NULL {
                break;
            }
            headers.push(h);
        }
        let start = pos;
        let mut entries = Vec::with_capacity(headers.len());
        for (index, h) in headers.into_iter().enumerate() {
            let (offset, length) = (h.offset.get(), h.length.get());
            let bad = CertTableError::BadRange {
                index,
                guid: h.guid,
                offset,
                length,
                start,
                end: buf.len(),
            };
            let o = offset as usize;
            let end = o.checked_add(length as usize).ok_or(bad.clone())?;
            if length != 0 && o < start {
                return Err(bad);
            }
            let data = buf.get(o..end).ok_or(bad)?;
            entries.push(CertTableEntry {
                guid: h.guid,
                data: data.to_vec(),
            });
        }
        Ok(Self { entries })
    }
}

/// Fuzz entry point: parse arbitrary bytes as a certificate table; when it parses,
/// re-serialize and re-parse and check the entries survive.
pub fn fuzz_cert_table(data: &[u8]) {
    if let Ok(t) = CertTable::from_bytes(data)
        && let Ok(bytes) = t.to_bytes()
    {
        let again = CertTable::from_bytes(&bytes).ok();
        assert_eq!(again.as_ref(), Some(&t), "certificate table round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_text_order() {
        assert_eq!(
            CertTableGuid::VCEK.0,
            [
                0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
                0xac, 0xcd
            ]
        );
        assert_eq!(
            format!("{:?}", CertTableGuid::ARK),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae (ARK)"
        );
    }

    #[test]
    fn layout_and_round_trip() {
        let mut t = CertTable::new();
        t.push(CertTableGuid::ARK, vec![1; 10]);
        t.push(CertTableGuid::VCEK, vec![2; 5]);
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 24 * 3 + 15);
        assert_eq!(&b[16..20], &72u32.to_le_bytes());
        assert_eq!(&b[20..24], &10u32.to_le_bytes());
        assert_eq!(&b[24 + 16..24 + 20], &82u32.to_le_bytes());
        assert!(b[48..72].iter().all(|&x| x == 0));
        assert_eq!(CertTable::from_bytes(&b).unwrap(), t);
        assert_eq!(t.get(CertTableGuid::VCEK), Some(&[2u8; 5][..]));
        assert_eq!(CertTable::from_bytes(&[]).unwrap(), CertTable::new());
    }

    #[test]
    fn rejects_bad_ranges_and_missing_terminator() {
        let mut t = CertTable::new();
        t.push(CertTableGuid::ARK, vec![1; 10]);
        let mut b = t.to_bytes().unwrap();
        assert!(matches!(
            CertTable::from_bytes(&b[..30]),
            Err(CertTableError::NoTerminator { .. })
        ));
        b[16..20].copy_from_slice(&4u32.to_le_bytes()); // into the header
        assert!(matches!(
            CertTable::from_bytes(&b),
            Err(CertTableError::BadRange { .. })
        ));
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            CertTable::from_bytes(&b),
            Err(CertTableError::BadRange { .. })
        ));
    }
}
