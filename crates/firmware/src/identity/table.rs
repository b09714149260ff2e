//! The certificate table of the GHCB extended guest request (snp-attestation.md §3.1),
//! as the firmware side builds it for a chip: [`CertTable`] holds the blobs; the
//! layout, the well-known GUIDs and the parsing rules are `softsev_abi::ghcb`'s
//! ([`CertTableGuid`], [`softsev_abi::ghcb::CertTableEntry`], [`CertTableHeader`],
//! [`encode_cert_table`]). GUIDs are in RFC 4122 (text) byte order, as the
//! Linux/virtee/go-sev-guest consumers read them.

pub use softsev_abi::ghcb::{CertTableError, CertTableGuid};
use softsev_abi::ghcb::{CertTableHeader, encode_cert_table};

/// A certificate and its GUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertTableBlob {
    /// Which certificate.
    pub guid: CertTableGuid,
    /// The blob (DER X.509 normally).
    pub data: Vec<u8>,
}

/// A certificate table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTable {
    entries: Vec<CertTableBlob>,
}

impl CertTable {
    /// An empty table (serializes to one zero entry).
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an entry.
    pub fn push(&mut self, guid: CertTableGuid, data: Vec<u8>) {
        self.entries.push(CertTableBlob { guid, data });
    }

    /// The entries in order.
    pub fn entries(&self) -> &[CertTableBlob] {
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
        softsev_abi::ghcb::CERT_TABLE_ENTRY_LEN * (self.entries.len() + 1)
            + self.entries.iter().map(|e| e.data.len()).sum::<usize>()
    }

    /// Serialize: headers, terminator, blobs in entry order.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CertTableError> {
        let blobs: Vec<(CertTableGuid, &[u8])> = self
            .entries
            .iter()
            .map(|e| (e.guid, e.data.as_slice()))
            .collect();
        encode_cert_table(&blobs)
    }

    /// Parse a table from untrusted bytes (a guest's copy of the shared pages) with the
    /// layout's rules (`CertTableHeader::validate`). An empty buffer is an empty table;
    /// trailing bytes after the blobs are ignored.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, CertTableError> {
        if buf.is_empty() {
            return Ok(Self::new());
        }
        let header = CertTableHeader::decode(buf)?;
        header.validate(buf.len())?;
        let mut entries = Vec::with_capacity(header.entries.len());
        for (index, e) in header.entries.iter().enumerate() {
            let range = e.blob_range(index, header.len(), buf.len())?;
            entries.push(CertTableBlob {
                guid: e.cert_guid(),
                data: buf[range].to_vec(),
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
            Err(CertTableError::BlobInHeader { .. })
        ));
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            CertTable::from_bytes(&b),
            Err(CertTableError::BlobPastEnd { .. })
        ));
    }
}
