//! Fuzz entry point: interpret bytes as a sequence of SoC operations (RMPUPDATE,
//! PSMASH, PVALIDATE, RMPADJUST, host/guest/device/firmware accesses, key slot
//! changes) on a small SoC and check the invariants after every step. Used by the
//! `soc_ops` cargo-fuzz target and by the corpus-replay test.

use crate::{
    AccessKind, GuestAccess, GuestMode, KeySel, PageSize, Paging, PvalidateReq, RmpAdjustReq,
    RmpQueryReq, RmpStatus, RmpUpdateInput, Soc, SocConfig,
};
use softsev_abi::{Asid, Gpa, Spa, Vmpl};

/// What private guest writes store; the host must never read it back in the clear.
const MARK: &[u8; 8] = b"PRIVATE!";

fn assert_no_marker(buf: &[u8]) {
    assert!(
        !buf.windows(MARK.len()).any(|w| w == MARK),
        "host or device obtained plaintext of a private write"
    );
}

/// Memory of the fuzzed SoC: 8 MiB (four 2 MiB regions).
const MEM: u64 = 8 << 20;
const PAGES: u64 = MEM / 4096;

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) | (u16::from(self.u8()?) << 8))
    }
}

/// Run one fuzz input. Panics only if an invariant of the model is broken.
pub fn fuzz_soc_ops(data: &[u8]) {
    let soc = Soc::new(SocConfig {
        mem_size: MEM,
        asid_count: 4,
        snp_enabled: true,
        rmp_coverage: Some(MEM - (2 << 20)),
        seed: Some(b"fuzz".to_vec()),
        huge_pages: false,
    });
    for a in 1..4 {
        let _ = soc.activate_key(Asid(a), &[a as u8; 16]);
    }
    let mut b = Bytes(data);
    let mut steps = 0;
    while let (Some(op), Some(p)) = (b.u8(), b.u16()) {
        steps += 1;
        if steps > 256 {
            break;
        }
        let x = b.u8().unwrap_or(0);
        let y = b.u8().unwrap_or(0);
        let page = u64::from(p) % (PAGES + 4);
        let spa = Spa(page * 4096 + u64::from(x & 0xF0) * (u64::from(y & 1) * 16));
        let asid = Asid(u32::from(x % 4));
        let vmpl = Vmpl(y % 4);
        let gpa = Gpa(u64::from(y) * 4096);
        let size = if x & 0x80 != 0 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        match op % 12 {
            0 => {
                let input = RmpUpdateInput {
                    gpa: gpa.0,
                    assigned: x & 1,
                    pagesize: (x >> 1) & 1,
                    immutable: u8::from(x & 0x0C == 0x0C),
                    _reserved_0b: 0,
                    asid: if x & 1 == 1 { asid.0 } else { 0 },
                };
                let st = soc.rmpupdate(Spa(page * 4096), &input);
                if st == RmpStatus::SUCCESS {
                    // Any host change leaves the page unvalidated.
                    if let Ok(e) = soc.rmpread(Spa(page * 4096)) {
                        assert!(!e.validated(), "RMPUPDATE left the validated bit set");
                    }
                }
            }
            1 => {
                let _ = soc.psmash(Spa(page * 4096));
            }
            2 | 3 => {
                let req = PvalidateReq {
                    asid,
                    vmpl: Vmpl(0),
                    gpa,
                    spa: Spa(page * 4096),
                    size,
                    validate: op % 12 == 2,
                };
                let first = soc.pvalidate(&req);
                if first == Ok(RmpStatus::SUCCESS) {
                    assert_eq!(soc.pvalidate(&req), Ok(RmpStatus::FAIL_UNCHANGED));
                }
            }
            4 => {
                let _ = soc.rmpadjust(&RmpAdjustReq {
                    asid,
                    vmpl,
                    gpa,
                    spa: Spa(page * 4096),
                    size,
                    attrs: u64::from(y) | (u64::from(x) << 8) | (u64::from(op & 0x10) << 12),
                });
            }
            5 => {
                let _ = soc.rmpquery(&RmpQueryReq {
                    asid,
                    vmpl,
                    gpa,
                    spa: Spa(page * 4096),
                    target_vmpl: x % 5,
                });
            }
            6 | 7 => {
                let kinds = [
                    AccessKind::Read,
                    AccessKind::Write,
                    AccessKind::Execute,
                    AccessKind::WalkRead,
                    AccessKind::WalkWrite,
                ];
                let mut acc = GuestAccess::snp(
                    asid,
                    Gpa(gpa.0 | (spa.0 & 0xFFF)),
                    spa,
                    kinds[usize::from(y) % kinds.len()],
                    x & 2 != 0,
                );
                acc.vmpl = vmpl;
                acc.npt_size = size;
                acc.user = x & 4 != 0;
                acc.mode = [GuestMode::Snp, GuestMode::Sev, GuestMode::SevEs][usize::from(x) % 3];
                acc.paging = if x & 8 != 0 {
                    Paging::NoPae
                } else {
                    Paging::PaeOrLong
                };
                let mut buf = [0u8; 24];
                let n = usize::from(x % 24);
                if op % 12 == 6 {
                    let _ = soc.guest_read(&acc, buf.get_mut(..n).unwrap_or_default());
                } else {
                    // Private writes carry a marker the host must never see.
                    if acc.effective_c_bit() {
                        buf.iter_mut()
                            .zip(MARK.iter().cycle())
                            .for_each(|(b, m)| *b = *m);
                    }
                    let _ = soc.guest_write(&acc, buf.get(..n).unwrap_or_default());
                }
            }
            8 => {
                let mut buf = vec![0u8; usize::from(x) * 40];
                if soc.host_read(spa, y & 1 == 1, &mut buf).is_ok() {
                    assert_no_marker(&buf);
                }
                let r = soc.host_write(spa, y & 2 == 2, &buf);
                if r.is_ok() {
                    assert!(soc.host_write_check(spa).is_ok() || buf.is_empty());
                }
            }
            9 => {
                let mut buf = vec![0u8; usize::from(x) * 3];
                if soc.device_read(spa, &mut buf).is_ok() {
                    assert_no_marker(&buf);
                }
                let _ = soc.device_write(spa, &buf);
            }
            10 => {
                let sel = match y % 3 {
                    0 => KeySel::Plain,
                    1 => KeySel::Sme,
                    _ => KeySel::Guest(asid),
                };
                let mut buf = vec![0u8; usize::from(x) * 17];
                let _ = soc.fw_read(spa, sel, &mut buf);
                let _ = soc.fw_write(spa, sel, &buf);
                let _ = soc.fw_encrypt_in_place(spa, u64::from(x) * 16, asid);
            }
            _ => match y % 4 {
                0 => {
                    let _ = soc.deactivate_key(asid);
                }
                1 => soc.wbinvd(),
                2 => {
                    let _ = soc.df_flush();
                }
                _ => {
                    let _ = soc.activate_key(asid, &[x; 16]);
                }
            },
        }
    }
    check_invariants(&soc);
}

/// Invariants over the whole RMP: no 4 KiB entry is assigned under an assigned 2 MiB
/// entry (a page has one owner), a validated entry is assigned, and every page of
/// a guest is readable back by the host only as ciphertext (checked by the callers).
pub fn check_invariants(soc: &Soc) {
    let mut page = 0u64;
    while page * 4096 < soc.mem_size() {
        let spa = Spa(page * 4096);
        page += 1;
        let Ok((e, size)) = soc.rmp_lookup(spa) else {
            continue;
        };
        assert!(
            !e.validated() || e.assigned(),
            "{spa:?}: validated but not assigned"
        );
        if size == PageSize::Size2M && !spa.0.is_multiple_of(0x20_0000) {
            let raw = soc.rmpread(spa).unwrap_or_default();
            assert!(
                !raw.assigned(),
                "4K entry {spa:?} assigned inside a 2M page"
            );
        }
    }
}
