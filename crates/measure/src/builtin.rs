//! The built-in firmware image: a 256 KiB flash image generated deterministically here,
//! laid out like an edk2 AmdSevX64 OVMF (shared/spec/snp-launch.md §4): footer GUID table
//! with the SEV metadata offset, kernel hash-table block, secret block and SEV-ES reset
//! block; an 'ASEV' metadata table with SNP_SEC_MEM ranges, secrets, CPUID, SVSM CAA and
//! kernel-hashes sections; a VTF signature and a reset vector that jumps to a `cli; hlt`
//! loop; the rest filled with a fixed pseudo-random byte stream.
//!
//! Every `softsev` command uses it when no `--ovmf` is given; `softsev run` boots it.

use softsev_abi::Guid;
use softsev_abi::ovmf::{
    FOOTER_TABLE_GUID, SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_BLOCK_GUID, SEV_METADATA_GUID,
    SEV_METADATA_SIGNATURE, SEV_SECRET_BLOCK_GUID, SectionType, SevMetadataDesc, SevMetadataHeader,
};
use zerocopy::IntoBytes;

/// Image size (256 KiB); it is mapped at 4 GiB − SIZE.
pub const SIZE: usize = 0x4_0000;
/// SEV-ES AP reset address (IP 0xB004 in the 64 KiB segment at 0x800000).
pub const SEV_ES_RESET_EIP: u32 = 0x0080_B004;
/// Kernel hash table (base GPA, size).
pub const HASH_TABLE: (u32, u32) = (0x0081_0C00, 0x400);
/// Legacy LAUNCH_SECRET area (base GPA, size).
pub const SECRET_AREA: (u32, u32) = (0x0081_0000, 0xC00);
/// Image offset of the 'ASEV' header (first byte of the last page).
pub const METADATA_OFFSET: usize = SIZE - 0x1000;
/// Image offset of the halt loop the reset vector jumps to.
pub const HALT_STUB_OFFSET: usize = SIZE - 0x1000 + 0x100;

/// The SEV metadata sections, in table order (base, size, type).
pub const SECTIONS: [(u32, u32, SectionType); 7] = [
    (0x0080_0000, 0x9000, SectionType::SNP_SEC_MEM),
    (0x0080_A000, 0x3000, SectionType::SNP_SEC_MEM),
    (0x0080_D000, 0x1000, SectionType::SNP_SECRETS),
    (0x0080_E000, 0x1000, SectionType::CPUID),
    (0x0080_F000, 0x1000, SectionType::SVSM_CAA),
    (0x0081_0000, 0x1000, SectionType::SNP_KERNEL_HASHES),
    (0x0081_1000, 0xF000, SectionType::SNP_SEC_MEM),
];

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn entry(out: &mut Vec<u8>, data: &[u8], guid: Guid) {
    out.extend_from_slice(data);
    out.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
    out.extend_from_slice(&guid.0);
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut x = [0u8; 8];
    x[..4].copy_from_slice(&a.to_le_bytes());
    x[4..].copy_from_slice(&b.to_le_bytes());
    x
}

/// Generate the image (deterministic: the same bytes on every call).
pub fn image() -> Vec<u8> {
    let mut img = vec![0u8; SIZE];
    // Firmware body: a header line, then a fixed pseudo-random stream.
    let mut state = 0x736f_6674_7365_7631; // "softsev1"
    for chunk in img[..METADATA_OFFSET].chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let banner = b"softsev built-in SEV firmware image v1\0";
    img[..banner.len()].copy_from_slice(banner);

    // SEV metadata.
    let descs: Vec<SevMetadataDesc> = SECTIONS
        .iter()
        .map(|&(base, size, kind)| SevMetadataDesc {
            base,
            size,
            kind: kind.0,
        })
        .collect();
    let hdr = SevMetadataHeader {
        signature: SEV_METADATA_SIGNATURE,
        length: (16 + 12 * descs.len()) as u32,
        version: 1,
        num_items: descs.len() as u32,
    };
    let mut meta = hdr.as_bytes().to_vec();
    for d in &descs {
        meta.extend_from_slice(d.as_bytes());
    }
    img[METADATA_OFFSET..METADATA_OFFSET + meta.len()].copy_from_slice(&meta);

    // Halt loop: cli; hlt; jmp $-1 (back to hlt).
    img[HALT_STUB_OFFSET..HALT_STUB_OFFSET + 4].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);

    // Footer GUID table, ending 0x20 bytes before the image end.
    let mut table = Vec::new();
    entry(
        &mut table,
        &((SIZE - METADATA_OFFSET) as u32).to_le_bytes(),
        SEV_METADATA_GUID,
    );
    entry(
        &mut table,
        &pair(HASH_TABLE.0, HASH_TABLE.1),
        SEV_HASH_TABLE_BLOCK_GUID,
    );
    entry(
        &mut table,
        &pair(SECRET_AREA.0, SECRET_AREA.1),
        SEV_SECRET_BLOCK_GUID,
    );
    entry(
        &mut table,
        &SEV_ES_RESET_EIP.to_le_bytes(),
        SEV_ES_RESET_BLOCK_GUID,
    );
    let total = table.len() + 18;
    table.extend_from_slice(&(total as u16).to_le_bytes());
    table.extend_from_slice(&FOOTER_TABLE_GUID.0);
    let tstart = SIZE - 0x20 - table.len();
    img[tstart..SIZE - 0x20].copy_from_slice(&table);

    // VTF area: 12 zero bytes, "VTF\0", then the reset vector at 0xFFFFFFF0:
    // nop; nop; jmp rel16 to the halt loop; rest zero.
    img[SIZE - 0x20..SIZE - 0x14].fill(0);
    img[SIZE - 0x14..SIZE - 0x10].copy_from_slice(b"VTF\0");
    let ip_after_jmp = 0xFFF0u16 + 5;
    let target = (HALT_STUB_OFFSET & 0xFFFF) as u16;
    let rel = target.wrapping_sub(ip_after_jmp);
    let mut rv = [0u8; 16];
    rv[..5].copy_from_slice(&[0x90, 0x90, 0xE9, rel.to_le_bytes()[0], rel.to_le_bytes()[1]]);
    img[SIZE - 0x10..].copy_from_slice(&rv);
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovmf::Ovmf;

    #[test]
    fn parses_with_every_structure() {
        let o = Ovmf::parse(image()).unwrap();
        assert_eq!(o.size(), SIZE);
        assert_eq!(o.sev_es_reset_eip().unwrap(), SEV_ES_RESET_EIP);
        assert_eq!(o.sev_hash_table().unwrap(), Some(HASH_TABLE));
        assert_eq!(o.sev_secret_block().unwrap(), Some(SECRET_AREA));
        assert_eq!(o.metadata().len(), SECTIONS.len());
        for (d, s) in o.metadata().iter().zip(SECTIONS) {
            assert_eq!((d.base, d.size, d.section_type()), s);
        }
        assert_eq!(o.metadata_offset(), Some(METADATA_OFFSET));
        assert_eq!(image(), image());
    }
}
