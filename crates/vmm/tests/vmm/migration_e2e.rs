//! SEV and SEV-ES guests moved between two chips through softsev's migration stream
//! and the host's SEND_* / RECEIVE_* (shared/spec/sev-legacy.md §5): the guest's
//! memory arrives intact (read through DBG_DECRYPT on both sides, debug policy), the
//! stream never carries the plaintext, the source is SENT and the target RUNNING; the
//! refusals (NOSEND before any page moves; a tampered page; a truncated, reordered or
//! duplicated stream; another chip than the one the stream was sealed to) leave the
//! source running and the target with no runnable guest.

use softsev_abi::SevPolicy;
use softsev_measure::Ovmf;
use softsev_vmm::config::LaunchBlobs;
use softsev_vmm::migration::sev::{
    SendOptions, default_workload, own_target_certs, receive, run_workload, send,
};
use softsev_vmm::migration::stream::{FILE_HEADER_LEN, RECORD_HEADER_LEN};
use softsev_vmm::parse_args;
use softsev_vmm::qmp::QmpGuest;
use softsev_vmm::sev_plan::SevLaunchPlan;
use softsev_vmm::sev_run::SevVm;

const OVMF: &str = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9";

pub(crate) fn plan(policy: u32, vcpus: u32) -> Option<(SevLaunchPlan, Ovmf)> {
    let dir = softsev_testkit::fixture_dir("sev-legacy/sevctl")?;
    let ovmf = Ovmf::read(&dir.join(OVMF)).unwrap();
    let a: Vec<String> = format!(
        "-machine q35,confidential-guest-support=sev0 \
         -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={policy:#x} \
         -cpu EPYC-Milan -m 64M -smp {vcpus}"
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let c = parse_args(a).unwrap();
    let plan = SevLaunchPlan::from_parts(&c, &ovmf, None, LaunchBlobs::default()).unwrap();
    Some((plan, ovmf))
}

/// A booted guest on the chip seeded `seed`.
pub(crate) fn running(plan: &SevLaunchPlan, seed: &str) -> SevVm {
    let mut vm = SevVm::launch(plan, Some(seed.as_bytes())).unwrap();
    vm.start().unwrap();
    assert_eq!(vm.guest_state(), Some(3), "RUNNING");
    vm
}

/// Guest memory through the SEV debug path (DBG_DECRYPT), a page at a time.
fn read(vm: &mut SevVm, gpa: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for (i, page) in b.chunks_mut(4096).enumerate() {
        let at = gpa + i as u64 * 4096;
        assert!(vm.read_phys(at, page), "read {at:#x}");
    }
    b
}

fn opts(vm: &mut SevVm) -> SendOptions {
    SendOptions {
        target: Some(own_target_certs(vm).unwrap()),
        max_bandwidth: 128 << 20,
        downtime_limit_ms: 300,
        live: false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sev_and_sev_es_move_between_two_chips() {
    for policy in [0x0u32, SevPolicy::ES] {
        let Some((plan, ovmf)) = plan(policy, 2) else {
            return;
        };
        let mut src = running(&plan, "chip A");
        let fw_gpa = ovmf.gpa().unwrap();
        let fw_len = ovmf.size();
        let before = read(&mut src, fw_gpa, fw_len);
        assert_eq!(before, ovmf.data(), "the guest's firmware, decrypted");
        let mut dst = SevVm::incoming(&plan, Some(b"chip B")).unwrap();
        assert_eq!(dst.guest_state(), None, "nothing runs before the stream");
        let o = opts(&mut dst);
        let mut stream = Vec::new();
        let rep = send(&mut src, &mut stream, &o, &mut |_| {}).unwrap();
        assert_eq!(src.guest_state(), Some(6), "SENT");
        assert_eq!(rep.rounds, 1);
        assert!(rep.resident_pages > 0 && rep.resident_pages < rep.total_pages);
        assert_eq!(
            rep.pages_sent, rep.resident_pages,
            "untouched pages are not sent"
        );
        assert_eq!(rep.bytes, stream.len() as u64);
        // The firmware image is in the guest in plaintext only: the stream has none
        // of it (a 64-byte piece from every 4 KiB).
        for off in (0..before.len()).step_by(4096) {
            let piece = &before[off + 256..off + 320];
            if piece.iter().any(|&b| b != 0 && b != 0xFF) {
                assert!(
                    !contains(&stream, piece),
                    "plaintext at +{off:#x} in the stream"
                );
            }
        }
        let got = receive(&mut dst, &mut stream.as_slice(), &mut |_| {}).unwrap();
        assert_eq!(got.pages, rep.pages_sent);
        assert_eq!(got.vcpus, 2);
        assert_eq!(dst.guest_state(), Some(3), "RUNNING after RECEIVE_FINISH");
        let after = read(&mut dst, fw_gpa, fw_len);
        assert!(
            before == after,
            "the guest's memory arrived intact ({policy:#x})"
        );
        // The monitor of the source now refuses to run the sent guest.
        assert!(src.start().is_err());
    }
}

#[test]
fn nosend_is_refused_before_any_page_moves_and_the_source_keeps_running() {
    let Some((plan, _)) = plan(SevPolicy::NOSEND, 1) else {
        return;
    };
    let mut src = running(&plan, "chip A");
    let mut dst = SevVm::incoming(&plan, Some(b"chip B")).unwrap();
    let o = opts(&mut dst);
    let mut stream = Vec::new();
    let e = send(&mut src, &mut stream, &o, &mut |_| {}).unwrap_err();
    assert_eq!(
        e.fw_status(),
        Some(softsev_abi::FwStatus::POLICY_FAILURE),
        "{e}"
    );
    assert!(stream.is_empty(), "nothing was written");
    assert_eq!(src.guest_state(), Some(3), "still RUNNING");
}

/// The offset of record `n` (0 = HEADER) of a stream.
fn record_at(b: &[u8], n: usize) -> usize {
    let mut at = FILE_HEADER_LEN;
    for _ in 0..n {
        let len = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        at += RECORD_HEADER_LEN + len;
    }
    at
}

/// Recompute the END digest, as a host rewriting the stream would.
fn reseal(b: &mut [u8]) {
    let end = b.len() - (RECORD_HEADER_LEN + 56);
    let sha = softsev_crypto::hash::sha256(&b[..end]);
    let n = b.len();
    b[n - 32..].copy_from_slice(&sha);
}

#[test]
fn tampered_truncated_reordered_duplicated_and_misdirected_streams_are_refused() {
    let Some((plan, _)) = plan(0x0, 1) else {
        return;
    };
    let mut src = running(&plan, "chip A");
    let target_seed = "chip B";
    let mut probe = SevVm::incoming(&plan, Some(target_seed.as_bytes())).unwrap();
    let o = opts(&mut probe);
    drop(probe);
    let mut stream = Vec::new();
    send(&mut src, &mut stream, &o, &mut |_| {}).unwrap();
    let try_recv = |bytes: &[u8], seed: &str| {
        let mut dst = SevVm::incoming(&plan, Some(seed.as_bytes())).unwrap();
        let r = receive(&mut dst, &mut &bytes[..], &mut |_| {});
        (r, dst.guest_state(), dst)
    };
    // The intact stream goes on the chip it was sealed to.
    let (r, st, _) = try_recv(&stream, target_seed);
    r.unwrap();
    assert_eq!(st, Some(3));
    // Another chip: RECEIVE_START cannot unwrap the session (its PDH is not the one
    // SEND_START sealed to).
    let (r, st, _) = try_recv(&stream, "chip C");
    let e = r.unwrap_err();
    assert!(e.fw_status().is_some(), "{e}");
    assert_eq!(st, None, "no runnable guest");
    // A flipped ciphertext bit, digest recomputed: the firmware's MAC refuses it.
    let page1 = record_at(&stream, 2) + RECORD_HEADER_LEN + 8 + 0x34 + 17;
    let mut t = stream.clone();
    t[page1] ^= 0x40;
    reseal(&mut t);
    let (r, st, _) = try_recv(&t, target_seed);
    let e = r.unwrap_err();
    assert_eq!(
        e.fw_status(),
        Some(softsev_abi::FwStatus::BAD_MEASUREMENT),
        "{e}"
    );
    assert_eq!(st, None);
    // Without resealing the digest refuses it at the end (the page passed the MAC
    // check only if untouched; here the bit is in the header's IV, so the MAC fails
    // first).
    let mut t = stream.clone();
    t[record_at(&stream, 2) + RECORD_HEADER_LEN + 8 + 4] ^= 1;
    let (r, st, _) = try_recv(&t, target_seed);
    assert!(r.is_err());
    assert_eq!(st, None);
    // Truncated: every page received, the END record missing.
    let cut = record_at(&stream, 3);
    let n_records = {
        let mut n = 0;
        while record_at(&stream, n) < stream.len() {
            n += 1;
        }
        n
    };
    let end = record_at(&stream, n_records - 1);
    for c in [cut, end, stream.len() - 1] {
        let (r, st, _) = try_recv(&stream[..c], target_seed);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert_eq!(st, None, "no RECEIVE_FINISH");
    }
    // Duplicated and reordered page records.
    let (p2, p3, p4) = (
        record_at(&stream, 2),
        record_at(&stream, 3),
        record_at(&stream, 4),
    );
    let mut d = stream[..p3].to_vec();
    d.extend_from_slice(&stream[p2..p3]);
    d.extend_from_slice(&stream[p3..]);
    let (r, st, _) = try_recv(&d, target_seed);
    assert!(r.unwrap_err().to_string().contains("replayed"));
    assert_eq!(st, None);
    let mut s = stream[..p2].to_vec();
    s.extend_from_slice(&stream[p3..p4]);
    s.extend_from_slice(&stream[p2..p3]);
    s.extend_from_slice(&stream[p4..]);
    let (r, st, _) = try_recv(&s, target_seed);
    assert!(r.unwrap_err().to_string().contains("out of order"));
    assert_eq!(st, None);
}

/// A guest with its workload running (`batches` done), on chip `seed`.
fn with_workload(plan: &SevLaunchPlan, seed: &str, dirty_rate: u64, batches: u64) -> SevVm {
    let mut vm = SevVm::launch(plan, Some(seed.as_bytes())).unwrap();
    let w = default_workload(&vm, b"workload", 4 << 20).unwrap();
    vm.set_workload(w, dirty_rate);
    vm.start().unwrap();
    assert!(
        matches!(vm.boot_outcome(), Some(Ok(_))),
        "{:?}",
        vm.boot_outcome()
    );
    run_workload(&mut vm, batches - 1).unwrap();
    assert_eq!(vm.workload().unwrap().batches, batches);
    vm
}

fn move_check(vm: &SevVm) -> serde_json::Value {
    vm.migration_state()
        .moved
        .clone()
        .expect("the guest ran its check")
        .expect("the check completed")
}

#[test]
fn live_pre_copy_with_the_guest_writing_sev_and_sev_es() {
    for policy in [0x1u32, 0x1 | SevPolicy::ES] {
        let Some((plan, _)) = plan(policy, 1) else {
            return;
        };
        // 64 MiB/s of guest writes against a 256 MiB/s channel: the dirty set shrinks
        // round by round.
        let mut src = with_workload(&plan, "chip A", 64 << 20, 6);
        let mut dst = SevVm::incoming(&plan, Some(b"chip B")).unwrap();
        let mut o = opts(&mut dst);
        o.live = true;
        o.max_bandwidth = 256 << 20;
        o.downtime_limit_ms = 2;
        let mut stream = Vec::new();
        let rep = send(&mut src, &mut stream, &o, &mut |_| {}).unwrap();
        println!(
            "{policy:#x}: rounds {:?} bytes {}",
            rep.round_pages, rep.bytes
        );
        assert!(rep.rounds >= 2, "dirty rounds: {:?}", rep.round_pages);
        assert!(rep.batches_during > 0, "the guest ran during the pre-copy");
        assert!(
            rep.round_pages.last() < rep.round_pages.first(),
            "{:?}",
            rep.round_pages
        );
        assert!(
            !contains(&stream, &softsev_guest::workload::PAGE_MARKER),
            "the workload's plaintext marker is in the stream"
        );
        receive(&mut dst, &mut stream.as_slice(), &mut |_| {}).unwrap();
        dst.start().unwrap();
        let m = move_check(&dst);
        assert_eq!(m["pages_bad"], 0, "{m}");
        assert_eq!(m["registers_ok"], true, "{m}");
        assert_eq!(m["batches_before_move"], rep.batches_at_stop, "{m}");
        if policy & SevPolicy::ES != 0 {
            assert_eq!(m["vmsa_continued"], true, "{m}");
        } else {
            assert!(m["vmsa_continued"].is_null(), "{m}");
        }
        // Same inputs, same stream shape (the virtual clock): rounds and bytes repeat.
        let mut src2 = with_workload(&plan, "chip A", 64 << 20, 6);
        let mut stream2 = Vec::new();
        let rep2 = send(&mut src2, &mut stream2, &o, &mut |_| {}).unwrap();
        assert_eq!(rep2.round_pages, rep.round_pages);
        assert_eq!(rep2.bytes, rep.bytes);
    }
}

#[test]
fn one_snapshot_restored_twice_gives_identical_guests_and_relocation_is_caught() {
    let Some((plan, _)) = plan(0x0, 1) else {
        return;
    };
    let mut src = with_workload(&plan, "chip A", 0, 3);
    let mut own = SevVm::incoming(&plan, Some(b"chip A")).unwrap();
    let o = opts(&mut own);
    drop(own);
    let mut snap = Vec::new();
    let rep = send(&mut src, &mut snap, &o, &mut |_| {}).unwrap();
    assert_eq!(rep.rounds, 1, "a stopped guest: one round");
    let w = default_workload(&src, b"workload", 4 << 20).unwrap();
    let restore = |bytes: &[u8]| {
        let mut vm = SevVm::incoming(&plan, Some(b"chip A")).unwrap();
        receive(&mut vm, &mut &bytes[..], &mut |_| {}).unwrap();
        vm.start().unwrap();
        vm
    };
    let mut a = restore(&snap);
    let mut b = restore(&snap);
    assert_eq!(move_check(&a), move_check(&b));
    assert_eq!(move_check(&a)["pages_bad"], 0);
    let ra = read(&mut a, w.pages_gpa, w.pages_len as usize);
    let rb = read(&mut b, w.pages_gpa, w.pages_len as usize);
    assert!(
        ra == rb,
        "two restores of one snapshot hold the same memory"
    );
    // A host that swaps two workload pages' GFNs and reseals the stream: the firmware
    // accepts each packet (no address in the MAC, §5.3), the guest's ledger does not.
    let mut t = snap.clone();
    let mut at = FILE_HEADER_LEN;
    let mut offs = Vec::new();
    while at + RECORD_HEADER_LEN <= t.len() {
        let kind = u16::from_le_bytes([t[at], t[at + 1]]);
        let len = u32::from_le_bytes(t[at + 8..at + 12].try_into().unwrap()) as usize;
        if kind == 3 {
            let gfn = u64::from_le_bytes(t[at + 12..at + 20].try_into().unwrap());
            if gfn * 4096 >= w.pages_gpa && gfn * 4096 < w.pages_gpa + w.pages_len {
                offs.push(at + 12);
            }
        }
        at += RECORD_HEADER_LEN + len;
    }
    assert!(offs.len() >= 2);
    let (x, y) = (offs[0], offs[1]);
    let gx: [u8; 8] = t[x..x + 8].try_into().unwrap();
    let gy: [u8; 8] = t[y..y + 8].try_into().unwrap();
    t[x..x + 8].copy_from_slice(&gy);
    t[y..y + 8].copy_from_slice(&gx);
    reseal(&mut t);
    let c = restore(&t);
    let m = move_check(&c);
    assert_eq!(m["pages_bad"], 2, "{m}");
}

/// A channel that breaks after `left` bytes.
struct Breaks {
    left: usize,
}

impl std::io::Write for Breaks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("the channel broke"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_send_that_fails_midway_cancels_and_the_source_guest_runs_on() {
    let Some((plan, _)) = plan(0x1, 1) else {
        return;
    };
    let mut src = with_workload(&plan, "chip A", 64 << 20, 3);
    let mut dst = SevVm::incoming(&plan, Some(b"chip B")).unwrap();
    let mut o = opts(&mut dst);
    o.live = true;
    let e = send(&mut src, &mut Breaks { left: 100 << 10 }, &o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("the channel broke"), "{e}");
    assert_eq!(src.guest_state(), Some(3), "SEND_CANCEL: RUNNING again");
    let before = src.workload().unwrap().batches;
    run_workload(&mut src, 2).unwrap();
    assert_eq!(
        src.workload().unwrap().batches,
        before + 2,
        "the guest runs on"
    );
    // And it can still be migrated afterwards.
    let mut stream = Vec::new();
    send(&mut src, &mut stream, &o, &mut |_| {}).unwrap();
    receive(&mut dst, &mut stream.as_slice(), &mut |_| {}).unwrap();
    dst.start().unwrap();
    assert_eq!(move_check(&dst)["pages_bad"], 0);
}
