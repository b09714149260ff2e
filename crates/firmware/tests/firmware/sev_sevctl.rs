//! The legacy SEV firmware against virtee/sevctl as the guest owner and relying party
//! (sev-legacy.md §9.4): `sevctl verify` accepts the exported chain with the KDS CEK
//! and the AMD-format CA; a `sevctl session` opens through LAUNCH_START with the same
//! TEK/TIK; `sevctl measurement build` reproduces LAUNCH_MEASURE; a `sevctl secret
//! build` packet is accepted by LAUNCH_SECRET and the guest sees sevctl's secret
//! table; `sevctl validate` accepts the ATTESTATION report (and rejects a flipped
//! byte). Without sevctl on PATH the tests print SKIP (and fail when
//! SOFTSEV_REQUIRE_INTEROP=1).

use crate::sevcommon::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use softsev_abi::sev_buf::*;
use softsev_abi::sev_cert::SevCert;
use softsev_abi::{Asid, Spa};
use std::path::{Path, PathBuf};
use std::process::Command;
use zerocopy::{FromBytes, IntoBytes};

const TOOL: &str = "sevctl";

fn sevctl_or_skip() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
        dirs.push(Path::new(&home).join(".local/bin"));
    }
    let found = dirs.into_iter().map(|d| d.join(TOOL)).find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{TOOL} not installed and SOFTSEV_REQUIRE_INTEROP=1");
        }
        println!("SKIP: {TOOL} not installed (cargo install sevctl)");
    }
    found
}

fn run(tool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    name.to_string()
}

fn b64_file(dir: &Path, name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    B64.decode(text.trim()).unwrap()
}

#[test]
fn sevctl_verifies_the_exported_chain() {
    let Some(tool) = sevctl_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h = sev_host();
    h.sev_init(false);
    let [pdh, pek, oca, _] = h.sev_export();
    let kds = h.fw.sev_kds_cek();
    let chain: Vec<u8> = [pdh, pek, oca, kds]
        .iter()
        .flat_map(|c| c.as_bytes().to_vec())
        .collect();
    let (ask, ark) = h.fw.sev_ca_certs();
    let sev = write(d, "sev.cert", &chain);
    let ca = write(d, "ca.cert", &[ask, ark].concat());
    let oca_f = write(d, "oca.cert", oca.as_bytes());
    let (ok, out) = run(
        &tool,
        d,
        &["verify", "--sev", &sev, "--ca", &ca, "--oca", &oca_f],
    );
    assert!(ok, "sevctl verify failed:\n{out}");
    // Another product's CA does not sign this CEK.
    let genoa = Host::with(softsev_abi::Product::Genoa, |_| {});
    let (g_ask, g_ark) = genoa.fw.sev_ca_certs();
    let gca = write(d, "genoa-ca.cert", &[g_ask, g_ark].concat());
    let (ok, out) = run(&tool, d, &["verify", "--sev", &sev, "--ca", &gca]);
    assert!(!ok, "sevctl verify accepted a foreign CA:\n{out}");
}

#[test]
fn sevctl_session_measurement_secret_and_report() {
    let Some(tool) = sevctl_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h = sev_host();
    h.sev_init(false);
    let [pdh, pek, oca, _] = h.sev_export();
    let pdh_f = write(d, "pdh.cert", pdh.as_bytes());
    // Policy bits 6–31 zero: sevctl MACs a mangled policy otherwise (§9.3).
    let policy = 0u32;
    let (ok, out) = run(&tool, d, &["session", "--name", "s", &pdh_f, "0"]);
    assert!(ok, "sevctl session failed:\n{out}");
    let godh = SevCert::read_from_bytes(&b64_file(d, "s_godh.b64")).unwrap();
    let session = SevSession::read_from_bytes(&b64_file(d, "s_session.b64")).unwrap();
    let handle = h.sev_start_session(policy, &godh, &session).unwrap();
    let (tek, tik) = h.fw.sev_transport_keys_for_test(handle).unwrap();
    assert_eq!(tek[..], std::fs::read(d.join("s_tek.bin")).unwrap());
    assert_eq!(tik[..], std::fs::read(d.join("s_tik.bin")).unwrap());

    h.sev_activate(handle, SEV_ASID).unwrap();
    let image: Vec<u8> = (0..0x3000u32).map(|i| (i ^ 0x5A) as u8).collect();
    h.soc.host_write(Spa(GMEM), false, &image).unwrap();
    h.sev_update(handle, GMEM, image.len() as u32).unwrap();
    let blob = h.sev_measure(handle).unwrap();
    let ld = h.fw.sev_launch_digest(handle).unwrap();
    let blob_f = write(d, "measure.bin", &blob);
    let v = h.fw.current_image().version;
    let (ok, out) = run(
        &tool,
        d,
        &[
            "measurement",
            "build",
            "--api-major",
            &v.major.to_string(),
            "--api-minor",
            &v.minor.to_string(),
            "--build-id",
            &v.build.to_string(),
            "--policy",
            &policy.to_string(),
            "--tik",
            "s_tik.bin",
            "--launch-measure-blob",
            &blob_f,
            "--launch-digest",
            &B64.encode(ld),
            "--outfile",
            "expected.bin",
        ],
    );
    assert!(ok, "sevctl measurement build failed:\n{out}");
    assert_eq!(std::fs::read(d.join("expected.bin")).unwrap(), blob);

    // A secret table from sevctl, injected at a guest page.
    write(d, "s1.txt", b"hello from the guest owner");
    let (ok, out) = run(
        &tool,
        d,
        &[
            "secret",
            "build",
            "--tik",
            "s_tik.bin",
            "--tek",
            "s_tek.bin",
            "--launch-measure-blob",
            &blob_f,
            "--secret",
            "736869e5-84f0-4973-92ec-06879ce3da0b:s1.txt",
            "hdr.bin",
            "payload.bin",
        ],
    );
    assert!(ok, "sevctl secret build failed:\n{out}");
    let hdr = std::fs::read(d.join("hdr.bin")).unwrap();
    let payload = std::fs::read(d.join("payload.bin")).unwrap();
    assert_eq!(hdr.len(), 52);
    h.soc.host_write(Spa(HDR), false, &hdr).unwrap();
    h.soc.host_write(Spa(TRANS), false, &payload).unwrap();
    let secret_at = GMEM + 0x4000;
    h.sev(&mut SevLaunchSecret {
        handle,
        hdr_address: HDR,
        hdr_len: 52,
        guest_address: secret_at,
        guest_len: payload.len() as u32,
        trans_address: TRANS,
        trans_len: payload.len() as u32,
        ..Default::default()
    })
    .unwrap();
    let mut seen = vec![0u8; payload.len()];
    h.soc
        .fw_read(
            Spa(secret_at),
            softsev_soc::KeySel::Guest(Asid(SEV_ASID)),
            &mut seen,
        )
        .unwrap();
    // The sevctl table GUID 1e74f542-71dd-4d66-963e-ef4287ff173b in its LE byte order.
    assert_eq!(
        seen[..16],
        hex::decode("42f5741edd71664d963eef4287ff173b").unwrap()[..]
    );
    assert!(seen.windows(26).any(|w| w == b"hello from the guest owner"));

    h.sev_finish(handle).unwrap();
    let mut a = SevAttestation {
        handle,
        reserved: 0,
        address: OUT,
        mnonce: [0x33; 16],
        len: 0xD0,
    };
    h.sev(&mut a).unwrap();
    let mut report = [0u8; 0xD0];
    h.soc.host_read(Spa(OUT), false, &mut report).unwrap();
    let chain: Vec<u8> = [pdh, pek, oca, h.fw.sev_kds_cek()]
        .iter()
        .flat_map(|c| c.as_bytes().to_vec())
        .collect();
    let chain_f = write(d, "chain.cert", &chain);
    let rep_f = write(d, "report.bin", &report);
    let (ok, out) = run(&tool, d, &["validate", &chain_f, &rep_f]);
    assert!(ok, "sevctl validate failed:\n{out}");
    report[0x30] ^= 1;
    let bad_f = write(d, "report-bad.bin", &report);
    let (ok, out) = run(&tool, d, &["validate", &chain_f, &bad_f]);
    assert!(!ok, "sevctl validate accepted a tampered report:\n{out}");
}
