//! The launch digests: the SNP PAGE_INFO chain (AMD SEV firmware `snp_mcmd_launch_update`,
//! shared/spec/snp-launch.md §2) and the SEV / SEV-ES running SHA-256 (§6).
//!
//! [`SnpDigest`] is the one implementation of the chain: `softsev measure` drives it
//! from an OVMF image, and the firmware model calls [`SnpDigest::update`] for every
//! SNP_LAUNCH_UPDATE page.

use crate::error::{MeasureError, Result};
use softsev_abi::Gpa;
use softsev_abi::page_info::{PAGE_INFO_LEN, PageInfo, PageType, VMSA_GPA, VMSA_TSC_FIELDS};
use softsev_crypto::hash::{Sha256, Sha384, sha384};
use zerocopy::IntoBytes;

/// Size of an SNP launch digest.
pub const SNP_DIGEST_LEN: usize = 48;
/// Size of a SEV / SEV-ES launch digest.
pub const SEV_DIGEST_LEN: usize = 32;
/// Bytes per measured page.
pub const PAGE_SIZE: usize = 4096;

/// The VMPL1..3 permission bytes of an SNP_LAUNCH_UPDATE (RMP perm byte: bit0 read,
/// bit1 write, bit2 user execute, bit3 supervisor execute, bit4 supervisor shadow stack).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VmplPerms {
    /// VMPL1 permissions.
    pub vmpl1: u8,
    /// VMPL2 permissions.
    pub vmpl2: u8,
    /// VMPL3 permissions.
    pub vmpl3: u8,
}

/// One measured page, as `softsev measure --trace` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceEntry {
    /// 0-based update index.
    pub index: u64,
    /// GPA in the PAGE_INFO.
    pub gpa: Gpa,
    /// Page type.
    pub page_type: PageType,
    /// The CONTENTS field (SHA-384 of the page, zeros for unmeasured types).
    pub contents: [u8; SNP_DIGEST_LEN],
    /// The launch digest after this update.
    pub digest: [u8; SNP_DIGEST_LEN],
}

/// GCTX.LD of an SNP guest: starts at 48 zero bytes (GCTX_CREATE zero-fills the
/// context) and becomes `SHA-384(PAGE_INFO)` after every page.
#[derive(Clone, Debug)]
pub struct SnpDigest {
    ld: [u8; SNP_DIGEST_LEN],
    updates: u64,
    trace: Option<Vec<TraceEntry>>,
}

impl Default for SnpDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl SnpDigest {
    /// A fresh digest (48 zero bytes).
    pub fn new() -> Self {
        Self::from_seed([0; SNP_DIGEST_LEN])
    }

    /// Continue from a known digest (e.g. a precomputed OVMF hash).
    pub fn from_seed(ld: [u8; SNP_DIGEST_LEN]) -> Self {
        SnpDigest {
            ld,
            updates: 0,
            trace: None,
        }
    }

    /// Record a [`TraceEntry`] for every following update.
    pub fn with_trace(mut self) -> Self {
        self.trace = Some(Vec::new());
        self
    }

    /// The current digest.
    pub fn digest(&self) -> [u8; SNP_DIGEST_LEN] {
        self.ld
    }

    /// Number of pages measured so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The recorded trace (empty unless [`SnpDigest::with_trace`]).
    pub fn trace(&self) -> &[TraceEntry] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// Take the recorded trace.
    pub fn take_trace(&mut self) -> Vec<TraceEntry> {
        self.trace.take().unwrap_or_default()
    }

    /// The PAGE_INFO the next update with these arguments would hash.
    pub fn page_info(
        &self,
        page_type: PageType,
        gpa: Gpa,
        contents: &[u8; SNP_DIGEST_LEN],
        perms: VmplPerms,
        imi: bool,
    ) -> PageInfo {
        PageInfo {
            digest_cur: self.ld,
            contents: *contents,
            length: PAGE_INFO_LEN,
            page_type: page_type.0,
            imi_page: u8::from(imi),
            _reserved_64: 0,
            vmpl1_perms: perms.vmpl1,
            vmpl2_perms: perms.vmpl2,
            vmpl3_perms: perms.vmpl3,
            gpa: gpa.raw(),
        }
    }

    /// Extend with a page whose CONTENTS field is already known.
    pub fn update_with_contents(
        &mut self,
        page_type: PageType,
        gpa: Gpa,
        contents: &[u8; SNP_DIGEST_LEN],
        perms: VmplPerms,
        imi: bool,
    ) {
        let pi = self.page_info(page_type, gpa, contents, perms, imi);
        self.ld = sha384(pi.as_bytes());
        if let Some(t) = self.trace.as_mut() {
            t.push(TraceEntry {
                index: self.updates,
                gpa,
                page_type,
                contents: *contents,
                digest: self.ld,
            });
        }
        self.updates += 1;
    }

    /// One SNP_LAUNCH_UPDATE of a 4 KiB page, as the firmware measures it: NORMAL pages
    /// hash their contents, VMSA pages hash with GUEST_TSC_SCALE/OFFSET zeroed, the other
    /// types contribute zeros (their `page` may be empty). Returns the CONTENTS used.
    pub fn update(
        &mut self,
        page_type: PageType,
        gpa: Gpa,
        page: &[u8],
        perms: VmplPerms,
    ) -> Result<[u8; SNP_DIGEST_LEN]> {
        let contents = page_contents(page_type, gpa, page)?;
        self.update_with_contents(page_type, gpa, &contents, perms, false);
        Ok(contents)
    }

    /// NORMAL pages for `data` (a multiple of 4 KiB) starting at `gpa`.
    pub fn update_normal_pages(&mut self, gpa: Gpa, data: &[u8]) -> Result<()> {
        if !data.len().is_multiple_of(PAGE_SIZE) {
            return Err(MeasureError::PageLength {
                page_type: PageType::NORMAL,
                gpa,
                len: data.len(),
            });
        }
        check_range(gpa, data.len() as u64)?;
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let g = Gpa(gpa.raw() + (i * PAGE_SIZE) as u64);
            self.update_with_contents(
                PageType::NORMAL,
                g,
                &sha384(page),
                VmplPerms::default(),
                false,
            );
        }
        Ok(())
    }

    /// `len / 4096` pages of an unmeasured type (ZERO, UNMEASURED, SECRETS, CPUID).
    pub fn update_unmeasured_range(
        &mut self,
        page_type: PageType,
        gpa: Gpa,
        len: u64,
    ) -> Result<()> {
        if page_type.is_measured() || !(1..=6).contains(&page_type.0) {
            return Err(MeasureError::BadPageType(page_type));
        }
        if !len.is_multiple_of(PAGE_SIZE as u64) {
            return Err(MeasureError::PageLength {
                page_type,
                gpa,
                len: len as usize,
            });
        }
        check_range(gpa, len)?;
        let mut off = 0;
        while off < len {
            self.update_with_contents(
                page_type,
                Gpa(gpa.raw() + off),
                &[0; SNP_DIGEST_LEN],
                VmplPerms::default(),
                false,
            );
            off += PAGE_SIZE as u64;
        }
        Ok(())
    }

    /// A VMSA page at the KVM VMSA GPA (0xFFFFFFFFF000).
    pub fn update_vmsa(&mut self, vmsa: &softsev_abi::vmsa::Vmsa) -> [u8; SNP_DIGEST_LEN] {
        let contents = vmsa_contents(vmsa.as_bytes());
        self.update_with_contents(
            PageType::VMSA,
            Gpa(VMSA_GPA),
            &contents,
            VmplPerms::default(),
            false,
        );
        contents
    }
}

fn check_range(gpa: Gpa, len: u64) -> Result<()> {
    match gpa.raw().checked_add(len) {
        Some(_) => Ok(()),
        None => Err(MeasureError::GpaOverflow {
            gpa: gpa.raw(),
            len,
        }),
    }
}

/// The CONTENTS field the firmware uses for a page of `page_type`.
pub fn page_contents(page_type: PageType, gpa: Gpa, page: &[u8]) -> Result<[u8; SNP_DIGEST_LEN]> {
    match page_type {
        PageType::NORMAL | PageType::VMSA => {
            if page.len() != PAGE_SIZE {
                return Err(MeasureError::PageLength {
                    page_type,
                    gpa,
                    len: page.len(),
                });
            }
            Ok(if page_type == PageType::VMSA {
                vmsa_contents(page)
            } else {
                sha384(page)
            })
        }
        PageType::ZERO | PageType::UNMEASURED | PageType::SECRETS | PageType::CPUID => {
            Ok([0; SNP_DIGEST_LEN])
        }
        other => Err(MeasureError::BadPageType(other)),
    }
}

/// SHA-384 of a 4 KiB VMSA page with bytes 0x2F0..0x300 treated as zero.
fn vmsa_contents(page: &[u8]) -> [u8; SNP_DIGEST_LEN] {
    let mut h = Sha384::new();
    h.update(page.get(..VMSA_TSC_FIELDS.start).unwrap_or(page));
    h.update(&[0u8; 16]);
    h.update(page.get(VMSA_TSC_FIELDS.end..).unwrap_or(&[]));
    h.finish()
}

/// GCTX.LD of a SEV or SEV-ES guest: a running SHA-256 over every LAUNCH_UPDATE_DATA
/// buffer and LAUNCH_UPDATE_VMSA page, in command order.
#[derive(Clone, Debug, Default)]
pub struct SevDigest(Sha256);

impl SevDigest {
    /// A fresh digest.
    pub fn new() -> Self {
        SevDigest(Sha256::new())
    }
    /// Append a LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA buffer.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest LAUNCH_MEASURE would MAC.
    pub fn finish(self) -> [u8; SEV_DIGEST_LEN] {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn worked_example_first_page_and_zero_page() {
        // spec §2.2: page contents hash 161ace08… at 0xFFFFF000 from LD 0 gives 086e2e91…,
        // then a ZERO page at 0x800000 gives cb97f2e2….
        let mut d = SnpDigest::new().with_trace();
        let contents: [u8; 48] = h("161ace084859674ded7322ad102eb33f49457e0f7845a8f9ad0e03a59eac3e3e360f8b78345363feaeac956ebba2d894").try_into().unwrap();
        d.update_with_contents(
            PageType::NORMAL,
            Gpa(0xFFFF_F000),
            &contents,
            VmplPerms::default(),
            false,
        );
        assert_eq!(
            d.digest().to_vec(),
            h(
                "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
            )
        );
        d.update(PageType::ZERO, Gpa(0x80_0000), &[], VmplPerms::default())
            .unwrap();
        assert_eq!(
            d.digest().to_vec(),
            h(
                "cb97f2e22ca4c090feb9453ef6cb076f8ded7ae48c9bbb892569c328b133f089f711d5c5a57afc127cf91d7a32e0736a"
            )
        );
        assert_eq!(d.trace().len(), 2);
        assert_eq!(d.trace()[1].index, 1);
    }

    #[test]
    fn perms_use_firmware_byte_order() {
        let d = SnpDigest::new();
        let pi = d.page_info(
            PageType::NORMAL,
            Gpa(0),
            &[0; 48],
            VmplPerms {
                vmpl1: 1,
                vmpl2: 2,
                vmpl3: 3,
            },
            false,
        );
        assert_eq!(&pi.as_bytes()[0x64..0x68], &[0, 1, 2, 3]);
    }

    #[test]
    fn vmsa_tsc_fields_do_not_change_the_contents() {
        let mut a = [0u8; 4096];
        a[0x10] = 7;
        let mut b = a;
        b[0x2F0] = 0xAA;
        b[0x2FF] = 0x55;
        assert_eq!(
            page_contents(PageType::VMSA, Gpa(0), &a).unwrap(),
            page_contents(PageType::VMSA, Gpa(0), &b).unwrap()
        );
        assert_ne!(
            page_contents(PageType::NORMAL, Gpa(0), &a).unwrap(),
            page_contents(PageType::NORMAL, Gpa(0), &b).unwrap()
        );
    }

    #[test]
    fn bad_pages_are_errors() {
        let mut d = SnpDigest::new();
        assert!(
            d.update(PageType::NORMAL, Gpa(0), &[0; 10], VmplPerms::default())
                .is_err()
        );
        assert!(
            d.update(PageType(0), Gpa(0), &[0; 4096], VmplPerms::default())
                .is_err()
        );
        assert!(
            d.update(PageType(7), Gpa(0), &[0; 4096], VmplPerms::default())
                .is_err()
        );
        assert!(d.update_normal_pages(Gpa(0), &[0; 100]).is_err());
        assert!(
            d.update_unmeasured_range(PageType::ZERO, Gpa(u64::MAX - 0xFFF), 0x2000)
                .is_err()
        );
        assert_eq!(d.updates(), 0);
    }
}
