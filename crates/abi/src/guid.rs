//! EFI GUIDs as stored in firmware images: the first three fields little-endian.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A GUID in EFI (mixed-endian) byte order, exactly as it appears in memory.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(transparent)]
pub struct Guid(pub [u8; 16]);

/// The 16 bytes of a GUID's canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
/// in text order (RFC 4122 network order: the bytes as the hex digits read). The one
/// GUID-text parser of softsev: [`Guid::parse`] reorders its result into EFI order, the
/// GHCB certificate table ([`crate::ghcb::CertTableGuid`]) stores it as it is.
///
/// Usable in `const` context; panics (at compile time for constants) on malformed text.
pub const fn rfc4122_bytes(text: &str) -> [u8; 16] {
    let b = text.as_bytes();
    assert!(b.len() == 36, "GUID text must be 36 characters");
    assert!(
        b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-',
        "GUID text must have dashes at 8, 13, 18 and 23"
    );
    // Positions of the 16 bytes in text order.
    const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (hexval(b[POS[i]]) << 4) | hexval(b[POS[i] + 1]);
        i += 1;
    }
    out
}

/// Writes 16 bytes in text (RFC 4122) order as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`,
/// lower-case.
pub(crate) fn write_rfc4122(
    bytes: &[u8; 16],
    f: &mut core::fmt::Formatter<'_>,
) -> core::fmt::Result {
    for (i, x) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{x:02x}")?;
    }
    Ok(())
}

/// Swaps the first three fields between EFI (little-endian) and text order; its own
/// inverse.
const fn swap_efi_fields(b: [u8; 16]) -> [u8; 16] {
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

impl Guid {
    /// From the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    /// Usable in `const` context; panics at compile time on malformed text.
    pub const fn parse(s: &str) -> Guid {
        Guid(swap_efi_fields(rfc4122_bytes(s)))
    }

    /// From 16 bytes in EFI order.
    pub const fn from_bytes(b: [u8; 16]) -> Guid {
        Guid(b)
    }
}

const fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit in GUID"),
    }
}

impl core::fmt::Display for Guid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write_rfc4122(&swap_efi_fields(self.0), f)
    }
}

impl core::fmt::Debug for Guid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efi_byte_order() {
        // OVMF footer table GUID (spec snp-launch §4.1).
        let g = Guid::parse("96b582de-1fb2-45f7-baea-a366c55a082d");
        assert_eq!(hex::encode(g.0), "de82b596b21ff745baeaa366c55a082d");
        assert_eq!(g.to_string(), "96b582de-1fb2-45f7-baea-a366c55a082d");
        assert_eq!(
            hex::encode(rfc4122_bytes("96b582de-1fb2-45f7-baea-a366c55a082d")),
            "96b582de1fb245f7baeaa366c55a082d"
        );
        assert_eq!(Guid::parse("96B582DE-1FB2-45F7-BAEA-A366C55A082D"), g);
    }
}
