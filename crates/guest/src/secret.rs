//! The secret a guest owner injects with LAUNCH_SECRET into the OVMF secret area, as
//! the guest reads it (sev-legacy.md §3.5, §8.3; host-interfaces.md §4.8).
//!
//! The area's GPA and size come from OVMF's footer table (GUID `4c2eb361-…`,
//! `{u32 base; u32 size}`; the VMM parses it and hands both to the guest). OVMF only
//! reserves the area and publishes it; the table in it is the one sevctl builds
//! (`sevctl secret build`) and Linux's `efi_secret` driver walks:
//!
//! ```text
//! header: GUID 1e74f542-71dd-4d66-963e-ef4287ff173b (EFI byte order) ‖ u32 len
//!         (len = the whole table, header included)
//! entry:  GUID ‖ u32 len (20-byte entry header included) ‖ data
//! the packet the owner encrypts = the table zero-padded to a multiple of 16 bytes
//! ```
//!
//! The guest reads private memory that the host may have written (there is no RMP for
//! SEV/SEV-ES guests: a host write decrypts to garbage), so every length is checked
//! against what is left before it is used, and a bad table is a named
//! [`SecretTableError`], never a panic. An all-zero area means nothing was injected
//! ([`SecretArea::Absent`]). Entries with the all-zero GUID are deleted entries and are
//! skipped, and at most [`SECRET_MAX_ENTRIES`] entries are read, as `efi_secret` does.
//!
//! The SHA-256 reported ([`SecretTable::sha256_hex`]) is over the packet exactly as
//! the guest read it: the first `round_up(len, 16)` bytes of the area, which is what
//! the owner encrypted when the secret arrived intact.

use softsev_abi::Guid;
use softsev_crypto::hash::sha256;
use zeroize::Zeroizing;

/// GUID of the secret table header (sevctl `src/secret.rs`; Linux
/// `EFI_SECRET_TABLE_HEADER_GUID`).
pub const SECRET_TABLE_GUID: Guid = Guid::parse("1e74f542-71dd-4d66-963e-ef4287ff173b");
/// Size of the table header and of each entry header (GUID + u32 length).
pub const SECRET_HDR_LEN: usize = 20;
/// Packets are padded to this multiple (AES-128-CTR blocks; sevctl pads the table).
pub const SECRET_PACKET_ALIGN: usize = 16;
/// Entries read at most (Linux `EFI_SECRET_NUM_FILES`).
pub const SECRET_MAX_ENTRIES: usize = 64;

/// What is wrong with a secret table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretTableError {
    /// The area cannot even hold a table header.
    #[error("secret area of {size} bytes is shorter than the {SECRET_HDR_LEN}-byte table header")]
    AreaTooShort {
        /// Area size.
        size: usize,
    },
    /// The area holds data but does not start with the table GUID (a host write, or
    /// memory nobody encrypted for this guest).
    #[error(
        "secret area does not start with the secret table GUID {SECRET_TABLE_GUID} (found {found})"
    )]
    NoTableGuid {
        /// The first 16 bytes.
        found: Guid,
    },
    /// The header's length does not cover the header.
    #[error("secret table length {len} is shorter than its {SECRET_HDR_LEN}-byte header")]
    TableTooShort {
        /// The header's length field.
        len: u32,
    },
    /// The table (padded to 16 bytes) would extend past the area.
    #[error(
        "secret table length {len} (packet {packet} bytes) exceeds the {area}-byte secret area"
    )]
    TableOverflow {
        /// The header's length field.
        len: u32,
        /// `round_up(len, 16)`, saturating.
        packet: u64,
        /// Area size.
        area: usize,
    },
    /// An entry's length does not cover its own header.
    #[error(
        "secret entry {index} at offset {offset:#x}: length {len} is shorter than its {SECRET_HDR_LEN}-byte header"
    )]
    EntryTooShort {
        /// Entry index.
        index: usize,
        /// Offset of the entry in the table.
        offset: usize,
        /// Its length field.
        len: u32,
    },
    /// An entry extends past the end of the table.
    #[error(
        "secret entry {index} at offset {offset:#x}: length {len} runs past the table end ({left} bytes left)"
    )]
    EntryPastEnd {
        /// Entry index.
        index: usize,
        /// Offset of the entry in the table.
        offset: usize,
        /// Its length field.
        len: u32,
        /// Bytes left in the table from the entry's start.
        left: usize,
    },
}

/// One secret: its GUID and data. The data is zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEntry {
    /// The entry's GUID (EFI byte order, as stored).
    pub guid: Guid,
    /// The secret bytes (after the 20-byte entry header).
    pub data: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("guid", &self.guid)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// A parsed secret table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretTable {
    /// The header's length field (header and entries, unpadded).
    pub len: u32,
    /// `round_up(len, 16)`: the bytes of the packet the owner encrypted.
    pub packet_len: usize,
    /// SHA-256 of those `packet_len` bytes, lower-case hex.
    pub sha256_hex: String,
    /// The live entries, in table order.
    pub entries: Vec<SecretEntry>,
    /// Entries with the all-zero GUID (deleted), skipped.
    pub deleted: usize,
    /// Bytes after the last entry read that were not parsed: a tail shorter than an
    /// entry header, or whatever follows entry [`SECRET_MAX_ENTRIES`].
    pub unparsed: usize,
}

impl SecretTable {
    /// The entry with `guid`, if any.
    pub fn get(&self, guid: &Guid) -> Option<&SecretEntry> {
        self.entries.iter().find(|e| e.guid == *guid)
    }
}

/// What the secret area held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretArea {
    /// All zero: nothing was injected.
    Absent,
    /// A well-formed table.
    Table(SecretTable),
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn guid_at(b: &[u8], at: usize) -> Option<Guid> {
    let s = b.get(at..at.checked_add(16)?)?;
    let mut g = [0u8; 16];
    g.copy_from_slice(s);
    Some(Guid(g))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse the secret area `area` (its full configured size, as read by the guest).
pub fn parse_secret_area(area: &[u8]) -> Result<SecretArea, SecretTableError> {
    if area.iter().all(|&b| b == 0) {
        return Ok(SecretArea::Absent);
    }
    let (Some(guid), Some(len)) = (guid_at(area, 0), le32(area, 16)) else {
        return Err(SecretTableError::AreaTooShort { size: area.len() });
    };
    if guid != SECRET_TABLE_GUID {
        return Err(SecretTableError::NoTableGuid { found: guid });
    }
    if (len as usize) < SECRET_HDR_LEN {
        return Err(SecretTableError::TableTooShort { len });
    }
    let packet = u64::from(len).next_multiple_of(SECRET_PACKET_ALIGN as u64);
    if packet > area.len() as u64 {
        return Err(SecretTableError::TableOverflow {
            len,
            packet,
            area: area.len(),
        });
    }
    let packet_len = packet as usize;
    let table = &area[..len as usize];
    let mut entries = Vec::new();
    let mut deleted = 0;
    let mut off = SECRET_HDR_LEN;
    let mut index = 0;
    while table.len() - off >= SECRET_HDR_LEN && index < SECRET_MAX_ENTRIES {
        let left = table.len() - off;
        let (Some(eguid), Some(elen)) = (guid_at(table, off), le32(table, off + 16)) else {
            // Unreachable given the loop condition; treated as a short tail.
            break;
        };
        if (elen as usize) < SECRET_HDR_LEN {
            return Err(SecretTableError::EntryTooShort {
                index,
                offset: off,
                len: elen,
            });
        }
        if elen as usize > left {
            return Err(SecretTableError::EntryPastEnd {
                index,
                offset: off,
                len: elen,
                left,
            });
        }
        let data = &table[off + SECRET_HDR_LEN..off + elen as usize];
        if eguid.0 == [0; 16] {
            deleted += 1;
        } else {
            entries.push(SecretEntry {
                guid: eguid,
                data: Zeroizing::new(data.to_vec()),
            });
        }
        off += elen as usize;
        index += 1;
    }
    Ok(SecretArea::Table(SecretTable {
        len,
        packet_len,
        sha256_hex: hex(&sha256(&area[..packet_len])),
        entries,
        deleted,
        unparsed: table.len() - off,
    }))
}

/// Build the packet plaintext sevctl builds for `entries` (header, entries, zero
/// padding to 16 bytes): the guest owner's side, for tests and tools.
pub fn encode_secret_table(entries: &[(Guid, &[u8])]) -> Zeroizing<Vec<u8>> {
    let len: usize = SECRET_HDR_LEN
        + entries
            .iter()
            .map(|(_, d)| SECRET_HDR_LEN + d.len())
            .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len.next_multiple_of(16)));
    out.extend_from_slice(&SECRET_TABLE_GUID.0);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for (g, d) in entries {
        out.extend_from_slice(&g.0);
        out.extend_from_slice(&((SECRET_HDR_LEN + d.len()) as u32).to_le_bytes());
        out.extend_from_slice(d);
    }
    out.resize(len.next_multiple_of(SECRET_PACKET_ALIGN), 0);
    out
}

/// Fuzz entry point: parsing any area never panics, and a table that parses has its
/// packet inside the area, hashes to what is reported, and re-encodes to the same
/// bytes when nothing was skipped.
pub fn fuzz_secret_table(data: &[u8]) {
    match parse_secret_area(data) {
        Ok(SecretArea::Absent) => assert!(data.iter().all(|&b| b == 0)),
        Ok(SecretArea::Table(t)) => {
            assert!(t.packet_len <= data.len() && t.packet_len % SECRET_PACKET_ALIGN == 0);
            assert_eq!(t.sha256_hex, hex(&sha256(&data[..t.packet_len])));
            if t.deleted == 0 && t.unparsed == 0 {
                let e: Vec<(Guid, &[u8])> =
                    t.entries.iter().map(|e| (e.guid, &e.data[..])).collect();
                let again = encode_secret_table(&e);
                assert_eq!(&again[..t.len as usize], &data[..t.len as usize]);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sevctl_layout() {
        // VECTORS.md §3 "Full test": one 18-byte secret → len 0x3a, entry 0x26, 64 bytes.
        let g = Guid::parse("736869e5-84f0-4973-92ec-06879ce3da0b");
        let t = encode_secret_table(&[(g, b"MY-LUKS-PASSPHRASE")]);
        assert_eq!(t.len(), 64);
        assert_eq!(le32(&t, 16), Some(0x3a));
        assert_eq!(le32(&t, 36), Some(0x26));
        assert_eq!(&t[..4], &[0x42, 0xf5, 0x74, 0x1e]);
        let mut area = t.to_vec();
        area.resize(0xC00, 0);
        let SecretArea::Table(p) = parse_secret_area(&area).unwrap() else {
            panic!("absent")
        };
        assert_eq!(p.packet_len, 64);
        assert_eq!(p.sha256_hex, hex(&sha256(&t)));
        assert_eq!(&p.get(&g).unwrap().data[..], b"MY-LUKS-PASSPHRASE");
        // secret3/secret4 sizes (16343, 16344 bytes) both give 16384-byte packets.
        for n in [16343, 16344] {
            assert_eq!(encode_secret_table(&[(g, &vec![1; n])]).len(), 16384);
        }
    }
}
