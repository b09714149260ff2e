//! EFI GUIDs as stored in firmware images: the first three fields little-endian.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A GUID in EFI (mixed-endian) byte order, exactly as it appears in memory.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
#[repr(transparent)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// From the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    /// Usable in `const` context; panics at compile time on malformed text.
    pub const fn parse(s: &str) -> Guid {
        let b = s.as_bytes();
        assert!(b.len() == 36, "GUID text must be 36 characters");
        // Positions of the 16 bytes in text order.
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut text = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            text[i] = (hexval(b[POS[i]]) << 4) | hexval(b[POS[i] + 1]);
            i += 1;
        }
        Guid([
            text[3], text[2], text[1], text[0], text[5], text[4], text[7], text[6], text[8],
            text[9], text[10], text[11], text[12], text[13], text[14], text[15],
        ])
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
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
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
    }
}
