//! The migration workload against the legacy fake host: batches on plain SEV (OUT
//! intercepted directly) and SEV-ES (#VC → GHCB IOIO), a "move" that copies the raw
//! (encrypted) memory and the register file into a second host, and the post-move
//! check catching flipped, swapped and stale pages, lost registers and a stale ledger.

use crate::sev::{GHCB, LegacyHost, SECRET, SECRET_SIZE, cfg};
use softsev_abi::Gpa;
use softsev_abi::Guid;
use softsev_abi::ghcb::GhcbMsg;
use softsev_guest::platform::{CBit, Gpr, GuestPlatform};
use softsev_guest::secret::encode_secret_table;
use softsev_guest::workload::{
    FIRST_BAD_MAX, LEDGER_ENTRY_LEN, LEDGER_HEADER_LEN, PAGE_MARKER, page_content,
};
use softsev_guest::{
    GuestError, MemRange, MoveCheck, SecretAreaConfig, SecretStatus, SevGuest, SevMode,
    WorkloadConfig, verify_after_move, workload_init, workload_step,
};

const PAGES: u64 = 0x100_0000;
const NPAGES: u64 = 8;
const LEDGER: u64 = 0x180_0000;
const PORT: u16 = 0x510;

fn wcfg(mode: SevMode) -> WorkloadConfig {
    let mut c = WorkloadConfig::new(
        MemRange::new(PAGES, NPAGES * 0x1000),
        Gpa(LEDGER),
        [0x5E; 32],
    );
    c.pages_per_batch = 3;
    c.exit_port = PORT;
    if mode == SevMode::SevEs {
        c.ghcb = Some(Gpa(GHCB));
    }
    c
}

fn secret_cfg() -> SecretAreaConfig {
    SecretAreaConfig {
        gpa: Gpa(SECRET),
        size: SECRET_SIZE,
    }
}

/// A booted guest with a secret injected and the workload initialised.
fn booted(mode: SevMode) -> LegacyHost {
    let mut h = LegacyHost::new(mode);
    let guid = Guid::parse("736869e5-84f0-4973-92ec-06879ce3da0b");
    let packet = encode_secret_table(&[(guid, b"DISK-PASSPHRASE")]);
    let mut area = vec![0u8; SECRET_SIZE as usize];
    area[..packet.len()].copy_from_slice(&packet);
    h.firmware_write(SECRET, &area);
    SevGuest::boot(&mut h, &cfg(mode)).unwrap();
    workload_init(&mut h, &wcfg(mode)).unwrap();
    h
}

/// The target of a move: the raw memory and the register file, nothing else.
fn moved(src: &LegacyHost, mode: SevMode) -> LegacyHost {
    let mut t = LegacyHost::new(mode);
    t.mem = src.mem.clone();
    t.gprs = src.gprs;
    t
}

fn check(h: &mut LegacyHost, mode: SevMode) -> MoveCheck {
    verify_after_move(h, &wcfg(mode), Some(&secret_cfg())).unwrap()
}

fn page(i: u64) -> Gpa {
    Gpa(PAGES + i * 0x1000)
}

#[test]
fn plain_sev_batches_exit_through_the_intercept_and_survive_a_move() {
    let mode = SevMode::Sev;
    let mut h = booted(mode);
    let c = wcfg(mode);
    for b in 1..=5u64 {
        let pr = workload_step(&mut h, &c).unwrap();
        assert_eq!((pr.batch, pr.pages_written), (b, 3 * b));
    }
    // One OUT of the batch number per batch, straight to the host; no GHCB exists.
    let outs: Vec<_> = (1..=5).map(|b| (PORT, 4, b)).collect();
    assert_eq!(h.io_out, outs);
    assert!(h.ghcb_log.is_empty());
    assert_eq!(h.gprs[Gpr::Rbx.index()], 5);
    assert_eq!(h.gprs[Gpr::R12.index()], LEDGER);
    // The pages hold what the round robin wrote last: 15 writes over 8 pages.
    let mut buf = [0u8; 4096];
    h.read(page(6), CBit::Private, &mut buf).unwrap();
    assert_eq!(buf, *page_content(&c.seed, page(6), 5));
    h.read(page(0), CBit::Private, &mut buf).unwrap();
    assert_eq!(buf, *page_content(&c.seed, page(0), 3));
    assert_eq!(buf[..16], PAGE_MARKER);
    // The host's raw view is not the plaintext.
    let raw = h.mem[&(PAGES >> 12)].clone();
    assert!(raw[..16] != PAGE_MARKER);

    let mut t = moved(&h, mode);
    let m = check(&mut t, mode);
    assert!(m.intact(), "{m:?}");
    assert_eq!((m.pages_checked, m.pages_bad), (NPAGES, 0));
    assert_eq!(m.batches_before_move, 5);
    assert_eq!(m.vmsa_continued, None);
    assert_eq!(m.secret.kind(), "found");
    // The moved guest goes on where it stopped.
    let pr = workload_step(&mut t, &c).unwrap();
    assert_eq!(pr.batch, 6);
    assert_eq!(t.io_out, vec![(PORT, 4, 6)]);
    assert!(check(&mut t, mode).intact());
}

#[test]
fn sev_es_batches_exit_through_the_ghcb_and_the_vmsa_continues() {
    let mode = SevMode::SevEs;
    let mut h = booted(mode);
    let c = wcfg(mode);
    let before = h.ghcb_log.len();
    for _ in 0..4 {
        workload_step(&mut h, &c).unwrap();
    }
    // Each batch: one NAE IOIO (0x7B) through the GHCB page.
    assert_eq!(h.ghcb_log[before..], [0x7B; 4]);
    assert_eq!(h.io_out, (1..=4).map(|b| (PORT, 4, b)).collect::<Vec<_>>());
    let mut t = moved(&h, mode);
    let m = check(&mut t, mode);
    assert!(m.intact(), "{m:?}");
    assert_eq!(m.vmsa_continued, Some(true));
    assert_eq!(m.batches_before_move, 4);
    // The target needs no new GHCB negotiation: the version is in the ledger.
    workload_step(&mut t, &c).unwrap();
    assert_eq!(t.ghcb_log, vec![0x7B]);
    assert!(!t.msr_log.contains(&GhcbMsg::SevInfoReq));
    assert_eq!(t.io_out, vec![(PORT, 4, 5)]);
}

#[test]
fn lost_registers_are_reported() {
    for mode in [SevMode::Sev, SevMode::SevEs] {
        let mut h = booted(mode);
        for _ in 0..2 {
            workload_step(&mut h, &wcfg(mode)).unwrap();
        }
        // The memory arrived, the register file did not (a VMSA not sent, or reset).
        let mut t = moved(&h, mode);
        t.gprs = [0; 15];
        let m = check(&mut t, mode);
        assert_eq!(m.pages_bad, 0);
        assert!(!m.registers_ok && !m.intact(), "{mode:?}: {m:?}");
        let es = (mode == SevMode::SevEs).then_some(false);
        assert_eq!(m.vmsa_continued, es);
        // A forged batch number without the check word is not enough.
        let mut t = moved(&h, mode);
        t.gprs[Gpr::Rbx.index()] = 2;
        t.gprs[Gpr::R13.index()] ^= 1;
        assert!(!check(&mut t, mode).registers_ok);
        // A register file from an earlier batch (the VMSA of another moment).
        let mut t = moved(&h, mode);
        t.gprs[Gpr::Rbx.index()] = 1;
        assert!(!check(&mut t, mode).registers_ok);
    }
}

#[test]
fn flipped_page_is_counted_bad() {
    let mode = SevMode::SevEs;
    let mut h = booted(mode);
    for _ in 0..3 {
        workload_step(&mut h, &wcfg(mode)).unwrap();
    }
    let mut t = moved(&h, mode);
    t.mem.get_mut(&((PAGES >> 12) + 2)).unwrap()[0x123] ^= 0x10;
    let m = check(&mut t, mode);
    assert_eq!((m.pages_checked, m.pages_bad), (NPAGES, 1));
    assert_eq!(m.first_bad, vec![page(2)]);
    assert!(m.registers_ok && !m.intact());
}

#[test]
fn swapped_pages_are_counted_bad() {
    let mode = SevMode::Sev;
    let mut h = booted(mode);
    for _ in 0..3 {
        workload_step(&mut h, &wcfg(mode)).unwrap();
    }
    // Ciphertext moved to another address (the packets carry no address, §5.3).
    let mut t = moved(&h, mode);
    let (a, b) = ((PAGES >> 12) + 1, (PAGES >> 12) + 4);
    let pa = t.mem.remove(&a).unwrap();
    let pb = t.mem.remove(&b).unwrap();
    t.mem.insert(a, pb);
    t.mem.insert(b, pa);
    let m = check(&mut t, mode);
    assert_eq!(m.first_bad, vec![page(1), page(4)]);
    // Even a swap of the plaintext together with the ledger entries (what only the
    // guest itself could do) is caught: each page names its GPA.
    let mut t = moved(&h, mode);
    let swap = |t: &mut LegacyHost, x: Gpa, y: Gpa, len: usize| {
        let (mut bx, mut by) = (vec![0u8; len], vec![0u8; len]);
        t.read(x, CBit::Private, &mut bx).unwrap();
        t.read(y, CBit::Private, &mut by).unwrap();
        t.write(x, CBit::Private, &by).unwrap();
        t.write(y, CBit::Private, &bx).unwrap();
    };
    swap(&mut t, page(1), page(4), 4096);
    let entry = |i: u64| Gpa(LEDGER + LEDGER_HEADER_LEN + i * LEDGER_ENTRY_LEN);
    swap(&mut t, entry(1), entry(4), 32);
    let m = check(&mut t, mode);
    assert_eq!(
        (m.pages_bad, m.first_bad.clone()),
        (2, vec![page(1), page(4)])
    );
}

#[test]
fn stale_pages_are_counted_bad() {
    let mode = SevMode::SevEs;
    let c = wcfg(mode);
    let mut h = booted(mode);
    for _ in 0..2 {
        workload_step(&mut h, &c).unwrap();
    }
    // The first pre-copy round sees memory after batch 2 …
    let round1 = h.mem.clone();
    // … the guest goes on; batch 3 writes pages 6, 7 and (again) 0.
    workload_step(&mut h, &c).unwrap();
    // A page not resent: the target keeps the first round's copy.
    let mut t = moved(&h, mode);
    let g0 = PAGES >> 12;
    t.mem.insert(g0, round1[&g0].clone());
    let m = check(&mut t, mode);
    assert_eq!(m.first_bad, vec![page(0)]);
    // Stale page and stale ledger entry together, replayed consistently: the entry
    // is not what batch 3 wrote to page 0.
    let mut t = moved(&h, mode);
    t.mem.insert(g0, round1[&g0].clone());
    let e0 = LEDGER + LEDGER_HEADER_LEN;
    let lp = LEDGER >> 12;
    let off = (e0 & 0xFFF) as usize;
    let old = round1[&lp][off..off + 32].to_vec();
    t.mem.get_mut(&lp).unwrap()[off..off + 32].copy_from_slice(&old);
    let m = check(&mut t, mode);
    assert_eq!((m.pages_bad, m.first_bad.clone()), (1, vec![page(0)]));
    // The whole memory of an earlier moment with the current registers: the ledger
    // header is consistent with the old pages, but not with the registers.
    let mut t = moved(&h, mode);
    t.mem = round1;
    let m = check(&mut t, mode);
    assert_eq!(
        (m.pages_checked, m.pages_bad, m.batches_before_move),
        (6, 0, 2)
    );
    assert!(!m.registers_ok);
    assert_eq!(m.vmsa_continued, Some(false));
}

#[test]
fn first_bad_is_bounded_and_the_check_serialises_without_secrets() {
    let mode = SevMode::Sev;
    let mut c = wcfg(mode);
    c.pages = MemRange::new(PAGES, 40 * 0x1000);
    c.pages_per_batch = 64;
    let mut h = LegacyHost::new(mode);
    let packet = encode_secret_table(&[(Guid([7; 16]), b"TOP-SECRET-VALUE")]);
    h.firmware_write(SECRET, &packet);
    workload_init(&mut h, &c).unwrap();
    let pr = workload_step(&mut h, &c).unwrap();
    // A batch larger than the range writes each page once.
    assert_eq!(pr.pages_written, 40);
    let mut t = moved(&h, mode);
    for i in 0..40 {
        t.mem.get_mut(&((PAGES >> 12) + i)).unwrap()[9] ^= 1;
    }
    let m = verify_after_move(&mut t, &c, Some(&secret_cfg())).unwrap();
    assert_eq!((m.pages_checked, m.pages_bad), (40, 40));
    assert_eq!(m.first_bad.len(), FIRST_BAD_MAX);
    assert_eq!(m.first_bad[15], page(15));
    let j = serde_json::to_value(&m).unwrap();
    assert_eq!(j["pages_bad"], 40);
    assert_eq!(j["first_bad"][1], PAGES + 0x1000);
    assert_eq!(j["registers_ok"], true);
    assert!(j["vmsa_continued"].is_null());
    assert_eq!(j["secret"]["kind"], "found");
    assert_eq!(j["secret"]["sha256"].as_str(), m.secret.sha256_hex(), "{j}");
    assert_eq!(j["secret"]["entries"][0], Guid([7; 16]).to_string());
    assert!(!j.to_string().contains("TOP-SECRET"));
    // No secret area configured, or the host overwrote it.
    let m = verify_after_move(&mut t, &c, None).unwrap();
    assert_eq!(m.secret, SecretStatus::NotConfigured);
    t.mem.remove(&(SECRET >> 12));
    t.mem.insert(SECRET >> 12, Box::new([0x41; 4096]));
    let m = verify_after_move(&mut t, &c, Some(&secret_cfg())).unwrap();
    assert_eq!(m.secret.kind(), "no-table");
}

#[test]
fn same_seed_same_memory() {
    let run = || {
        let mut h = booted(SevMode::Sev);
        for _ in 0..4 {
            workload_step(&mut h, &wcfg(SevMode::Sev)).unwrap();
        }
        let mut v: Vec<_> = h.mem.into_iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    };
    assert!(run() == run());
    // Another seed writes other pages.
    let a = page_content(&[1; 32], page(0), 1);
    let b = page_content(&[2; 32], page(0), 1);
    assert_eq!(a[..32], b[..32]);
    assert!(a[32..] != b[32..]);
}

#[test]
fn foreign_or_missing_ledger_and_bad_configs_are_named_errors() {
    let mode = SevMode::Sev;
    let mut h = booted(mode);
    workload_step(&mut h, &wcfg(mode)).unwrap();
    let mut other = wcfg(mode);
    other.seed[0] ^= 1;
    let e = verify_after_move(&mut h, &other, None).unwrap_err();
    assert!(
        matches!(&e, GuestError::Workload { gpa, what } if *gpa == Gpa(LEDGER) && what.contains("another workload")),
        "{e}"
    );
    // Never initialised: no magic (private memory nobody wrote decrypts to noise).
    let mut fresh = LegacyHost::new(mode);
    let e = workload_step(&mut fresh, &wcfg(mode)).unwrap_err();
    assert!(e.to_string().contains("no ledger magic"), "{e}");
    // A ledger page the host overwrote.
    let mut t = moved(&h, mode);
    t.mem.get_mut(&(LEDGER >> 12)).unwrap()[0x20] ^= 4;
    let e = verify_after_move(&mut t, &wcfg(mode), None).unwrap_err();
    assert!(matches!(e, GuestError::Workload { .. }), "{e}");

    let bad = |f: fn(&mut WorkloadConfig)| {
        let mut c = wcfg(mode);
        f(&mut c);
        let mut h = LegacyHost::new(mode);
        match workload_init(&mut h, &c) {
            Err(GuestError::Config(m)) => m,
            r => panic!("{r:?}"),
        }
    };
    assert!(bad(|c| c.pages_per_batch = 0).contains("pages_per_batch"));
    assert!(bad(|c| c.ledger = Gpa(PAGES + 0x1000)).contains("overlaps"));
    assert!(bad(|c| c.pages = MemRange::new(PAGES + 1, 0x1000)).contains("aligned"));
    assert!(bad(|c| c.pages = MemRange::new(PAGES, 0)).contains("empty"));
    assert!(bad(|c| c.ledger = Gpa(LEDGER + 4)).contains("8-byte"));
    assert!(bad(|c| c.ghcb = Some(Gpa(LEDGER))).contains("GHCB"));
    // An SEV-ES guest needs its GHCB page.
    let mut h = LegacyHost::new(SevMode::SevEs);
    SevGuest::boot(&mut h, &cfg(SevMode::SevEs)).unwrap();
    let e = workload_init(&mut h, &wcfg(SevMode::Sev)).unwrap_err();
    assert!(e.to_string().contains("GHCB page"), "{e}");
}

#[test]
fn snp_and_non_sev_guests_are_refused() {
    let mut f = crate::common::FakeHost::new();
    let e = workload_init(&mut f, &wcfg(SevMode::SevEs)).unwrap_err();
    assert!(
        matches!(e, GuestError::SevMode { sev_status, .. } if sev_status & 4 != 0),
        "{e}"
    );
    f.sev_status = 0;
    let e = workload_init(&mut f, &wcfg(SevMode::Sev)).unwrap_err();
    assert!(matches!(e, GuestError::NotSev { .. }), "{e}");
}

#[test]
fn extreme_counters_in_a_consistent_header_are_errors_not_overflows() {
    let mode = SevMode::Sev;
    let c = wcfg(mode);
    let mut h = booted(mode);
    // A header the guest could only reach after 2^64 page writes: batch B, 3B pages.
    let b = u64::MAX / 3;
    let pw = b * 3;
    for (off, v) in [(0x20, b), (0x28, pw), (0x30, pw % NPAGES)] {
        h.write(Gpa(LEDGER + off), CBit::Private, &v.to_le_bytes())
            .unwrap();
    }
    let m = verify_after_move(&mut h, &c, None).unwrap();
    assert_eq!((m.pages_checked, m.batches_before_move), (NPAGES, b));
    assert!(!m.registers_ok && m.pages_bad == NPAGES);
    let e = workload_step(&mut h, &c).unwrap_err();
    assert!(e.to_string().contains("exhausted"), "{e}");
    // Counters that contradict each other (the next page must be 3B mod 8 = 7).
    h.write(Gpa(LEDGER + 0x30), CBit::Private, &0u64.to_le_bytes())
        .unwrap();
    let e = verify_after_move(&mut h, &c, None).unwrap_err();
    assert!(e.to_string().contains("inconsistent"), "{e}");
}
