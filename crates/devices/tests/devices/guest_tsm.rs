//! configfs-tsm (frontends.md §5.2): the report item's attributes with configfs's file
//! rules, reports identical to the ioctl path, the SVSM attributes above VMPL0.

use crate::guest_sev_guest::{
    BASE, CERTS, LEN, REQ, RESP, ROOT, assert_verifies, call, ext_req, ioctl_struct,
    report_at_resp, service,
};
use softsev_devices::guest::sev_guest::SNP_GET_EXT_REPORT;
use softsev_devices::guest::{SevGuestDevice, TsmReports};
use softsev_vfs::{BufferMemory, CallerMemory, Errno, NodeKind, OpenFlags, VirtualFs};

const R: OpenFlags = OpenFlags {
    read: true,
    write: false,
};
const W: OpenFlags = OpenFlags {
    read: false,
    write: true,
};

/// `cat path`: open, read in 100-byte pieces until EOF, close.
fn cat(t: &TsmReports, path: &str) -> Result<Vec<u8>, Errno> {
    let fh = t.open(path, R, &ROOT)?;
    let mut out = Vec::new();
    let r = loop {
        match t.read(path, fh, out.len() as u64, 100, &ROOT) {
            Ok(b) if b.is_empty() => break Ok(out),
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => break Err(e),
        }
    };
    t.release(path, fh, &ROOT).unwrap();
    r
}

fn text(t: &TsmReports, path: &str) -> String {
    String::from_utf8(cat(t, path).unwrap()).unwrap()
}

/// `echo -n data > path` in `chunks`-byte writes.
fn put(t: &TsmReports, path: &str, data: &[u8], chunk: usize) -> Result<(), Errno> {
    let fh = t.open(path, W, &ROOT)?;
    let mut r = Ok(());
    for (i, c) in data.chunks(chunk.max(1)).enumerate() {
        if let Err(e) = t.write(path, fh, (i * chunk) as u64, c, &ROOT) {
            r = Err(e);
            break;
        }
    }
    t.release(path, fh, &ROOT).unwrap();
    r
}

#[test]
fn report_items_follow_configfs_tsm() {
    let svc = service("tsm-flow", 0);
    let t = TsmReports::new(svc.clone());
    assert_eq!(t.readdir("").unwrap(), ["report"]);
    assert_eq!(t.readdir("report").unwrap(), Vec::<String>::new());
    t.mkdir("report/entry.Aema", &ROOT).unwrap();
    assert_eq!(t.mkdir("report/entry.Aema", &ROOT), Err(Errno::EEXIST));
    let e = "report/entry.Aema";
    let mut names = t.readdir(e).unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            "auxblob",
            "generation",
            "inblob",
            "outblob",
            "privlevel",
            "privlevel_floor",
            "provider"
        ]
    );
    for (a, mode) in [
        ("auxblob", 0o444),
        ("generation", 0o444),
        ("inblob", 0o200),
        ("outblob", 0o444),
        ("privlevel", 0o200),
        ("privlevel_floor", 0o444),
        ("provider", 0o444),
    ] {
        assert_eq!(
            t.kind(&format!("{e}/{a}")),
            Some(NodeKind::File { mode, size: 4096 }),
            "{a}"
        );
    }
    assert_eq!(
        t.kind(&format!("{e}/manifestblob")),
        None,
        "no SVSM at VMPL0"
    );
    assert_eq!(t.kind(&format!("{e}/service_provider")), None);
    assert_eq!(text(&t, &format!("{e}/generation")), "0\n");
    assert_eq!(text(&t, &format!("{e}/provider")), "sev_guest\n");
    assert_eq!(text(&t, &format!("{e}/privlevel_floor")), "0\n");
    // No inblob yet: EINVAL.
    assert_eq!(cat(&t, &format!("{e}/outblob")), Err(Errno::EINVAL));
    // Write-only and read-only, even for root.
    assert_eq!(t.open(&format!("{e}/inblob"), R, &ROOT), Err(Errno::EACCES));
    assert_eq!(
        t.open(&format!("{e}/outblob"), W, &ROOT),
        Err(Errno::EACCES)
    );
    // privlevel: kstrtouint, floor..=3.
    assert_eq!(
        put(&t, &format!("{e}/privlevel"), b"4\n", 64),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        put(&t, &format!("{e}/privlevel"), &[2], 64),
        Err(Errno::EINVAL),
        "a raw byte"
    );
    assert_eq!(
        text(&t, &format!("{e}/generation")),
        "0\n",
        "refused writes do not count"
    );
    put(&t, &format!("{e}/privlevel"), b"2\n", 64).unwrap();
    // inblob is committed on close, whatever the pieces.
    let nonce: [u8; 64] = std::array::from_fn(|i| (i * 3) as u8);
    put(&t, &format!("{e}/inblob"), &nonce, 10).unwrap();
    assert_eq!(text(&t, &format!("{e}/generation")), "2\n");
    let out = cat(&t, &format!("{e}/outblob")).unwrap();
    assert_eq!(out.len(), 1184);
    assert_eq!(&out[0x50..0x90], nonce);
    assert_eq!(
        u32::from_le_bytes(out[0x30..0x34].try_into().unwrap()),
        2,
        "privlevel is the VMPL"
    );
    let aux = cat(&t, &format!("{e}/auxblob")).unwrap();
    assert_eq!(aux, svc.cert_table(), "the table up to its last blob");
    assert_verifies(&svc, &out, &aux);
    // An open outblob keeps what its first read produced.
    let fh = t.open(&format!("{e}/outblob"), R, &ROOT).unwrap();
    let first = t.read(&format!("{e}/outblob"), fh, 0, 16, &ROOT).unwrap();
    put(&t, &format!("{e}/privlevel"), b"3", 64).unwrap();
    let rest = t
        .read(&format!("{e}/outblob"), fh, 16, 4096, &ROOT)
        .unwrap();
    assert_eq!([first, rest].concat(), out);
    t.release(&format!("{e}/outblob"), fh, &ROOT).unwrap();
    // A fresh open regenerates after the write.
    let out3 = cat(&t, &format!("{e}/outblob")).unwrap();
    assert_eq!(u32::from_le_bytes(out3[0x30..0x34].try_into().unwrap()), 3);
    assert_eq!(text(&t, &format!("{e}/generation")), "3\n");
    // inblob: at most 64 bytes (EFBIG), and sev_guest wants exactly 64.
    assert_eq!(
        put(&t, &format!("{e}/inblob"), &[1; 65], 65),
        Err(Errno::EFBIG)
    );
    put(&t, &format!("{e}/inblob"), &[1; 32], 32).unwrap();
    assert_eq!(cat(&t, &format!("{e}/outblob")), Err(Errno::EINVAL));
    // The directory rules.
    assert_eq!(t.mkdir(&format!("{e}/sub"), &ROOT), Err(Errno::EPERM));
    assert_eq!(t.mkdir("other", &ROOT), Err(Errno::EPERM));
    assert_eq!(t.rmdir("report", &ROOT), Err(Errno::EPERM));
    assert_eq!(t.rmdir(&format!("{e}/outblob"), &ROOT), Err(Errno::ENOTDIR));
    let fh = t.open(&format!("{e}/generation"), R, &ROOT).unwrap();
    t.rmdir(e, &ROOT).unwrap();
    assert_eq!(
        t.read(&format!("{e}/generation"), fh, 0, 10, &ROOT),
        Err(Errno::ENOENT)
    );
    t.release(&format!("{e}/generation"), fh, &ROOT).unwrap();
    assert_eq!(t.kind(e), None);
    assert_eq!(t.rmdir(e, &ROOT), Err(Errno::ENOENT));
    assert!(t.readdir("report").unwrap().is_empty());
}

#[test]
fn outblob_equals_the_ioctl_report_for_the_same_nonce() {
    let svc = service("tsm-same", 0);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = events.clone();
    let t =
        TsmReports::new(svc.clone()).with_log(std::sync::Arc::new(move |e: &serde_json::Value| {
            sink.lock().unwrap().push(e.clone())
        }));
    let nonce = [0x42; 64];
    t.mkdir("report/a", &ROOT).unwrap();
    put(&t, "report/a/inblob", &nonce, 64).unwrap();
    let tsm = cat(&t, "report/a/outblob").unwrap();
    let aux = cat(&t, "report/a/auxblob").unwrap();
    let ops: Vec<(String, String, i64)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
                e["result"].as_i64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("mkdir", "report/a"),
        ("write", "report/a/inblob"),
        ("commit", "report/a/inblob"),
        ("read", "report/a/outblob"),
        ("read", "report/a/auxblob"),
    ];
    assert_eq!(
        ops,
        want.map(|(o, p)| (o.to_string(), p.to_string(), 0))
            .to_vec()
    );

    let dev = SevGuestDevice::new(svc.clone());
    let mem = BufferMemory::new(BASE, LEN);
    mem.write(REQ, &ext_req(&nonce, 0, CERTS, 0x4000)).unwrap();
    let r = call(&dev, SNP_GET_EXT_REPORT, &ioctl_struct(1, REQ, RESP), &mem);
    assert_eq!(r.result, 0);
    let ioctl = report_at_resp(&mem);
    assert_eq!(tsm, ioctl, "seeded: the same signed report either way");
    let mut certs = vec![0u8; aux.len()];
    mem.read(CERTS, &mut certs).unwrap();
    assert_eq!(certs, aux);
}

#[test]
fn above_vmpl0_the_svsm_attributes_show() {
    let svc = service("tsm-vmpl1", 1);
    let t = TsmReports::new(svc);
    t.mkdir("report/s", &ROOT).unwrap();
    let names = t.readdir("report/s").unwrap();
    for a in [
        "manifestblob",
        "service_provider",
        "service_guid",
        "service_manifest_version",
    ] {
        assert!(names.iter().any(|n| n == a), "{a}");
    }
    assert_eq!(text(&t, "report/s/privlevel_floor"), "1\n");
    assert_eq!(
        put(&t, "report/s/privlevel", b"0", 8),
        Err(Errno::EINVAL),
        "below the floor"
    );
    put(&t, "report/s/inblob", &[3; 64], 64).unwrap();
    // Without a service provider: the sev_guest report at privlevel 1 (the floor).
    put(&t, "report/s/privlevel", b"1", 8).unwrap();
    let out = cat(&t, "report/s/outblob").unwrap();
    assert_eq!(u32::from_le_bytes(out[0x30..0x34].try_into().unwrap()), 1);
    assert_eq!(cat(&t, "report/s/manifestblob").unwrap(), Vec::<u8>::new());
    // A GUID write counts even when it does not parse.
    let g0 = text(&t, "report/s/generation");
    assert_eq!(
        put(&t, "report/s/service_guid", b"not-a-guid", 64),
        Err(Errno::EINVAL)
    );
    let g1 = text(&t, "report/s/generation");
    assert_ne!(g0, g1);
    put(
        &t,
        "report/s/service_guid",
        b"00000000-0000-0000-0000-000000000000\n",
        64,
    )
    .unwrap();
    put(&t, "report/s/service_manifest_version", b"0", 64).unwrap();
    // softsev models no SVSM: its attestation call fails (EINVAL), as any other
    // provider name does.
    put(&t, "report/s/service_provider", b"svsm\n", 64).unwrap();
    assert_eq!(cat(&t, "report/s/outblob"), Err(Errno::EINVAL));
    put(&t, "report/s/service_provider", b"other", 64).unwrap();
    assert_eq!(cat(&t, "report/s/outblob"), Err(Errno::EINVAL));
}

#[test]
fn without_host_certificates_auxblob_is_empty() {
    eprintln!("seed: tsm-nocerts");
    let svc = std::sync::Arc::new(
        softsev_vmm::service::GuestService::boot(&softsev_vmm::service::GuestServiceConfig {
            seed: Some(b"tsm-nocerts".to_vec()),
            certs: false,
            ..Default::default()
        })
        .unwrap(),
    );
    let t = TsmReports::new(svc);
    t.mkdir("report/n", &ROOT).unwrap();
    put(&t, "report/n/inblob", &[8; 64], 64).unwrap();
    assert_eq!(cat(&t, "report/n/outblob").unwrap().len(), 1184);
    assert_eq!(cat(&t, "report/n/auxblob").unwrap(), Vec::<u8>::new());
}
