//! Launcher costs: parsing a full SNP command line, and building a launch plan
//! (firmware copy, metadata ranges, kernel hashes, VMSAs, expected digest) for the
//! default run and for a 3.5 MiB distribution OVMF with 64 vCPUs.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use softsev_measure::Ovmf;
use softsev_vmm::plan::{BootBlobs, LaunchPlan};
use softsev_vmm::{Blob, Config, bootgen, parse_args};
use std::hint::black_box;
use std::path::PathBuf;

const CMDLINE: &str = "-enable-kvm -machine q35,confidential-guest-support=sev0,memory-backend=ram1 \
    -object memory-backend-memfd,id=ram1,size=4G,share=true,reserve=false \
    -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on \
    -smp 32,maxcpus=255 -cpu EPYC-Milan-v2 -bios OVMF.fd -kernel vmlinuz -initrd initrd.img -m 4G";

fn bench(c: &mut Criterion) {
    let args: Vec<&str> = CMDLINE.split_whitespace().collect();
    c.bench_function("parse_args (issue command line)", |b| {
        b.iter(|| parse_args(black_box(&args)).unwrap())
    });

    let cfg = Config::default_run();
    let ovmf = Ovmf::parse(softsev_measure::builtin::image()).unwrap();
    let boot = BootBlobs {
        kernel: bootgen::kernel(),
        initrd: Some(bootgen::initrd()),
        cmdline: Some(bootgen::CMDLINE.to_string()),
    };
    c.bench_function("plan default run (built-in 256 KiB, 4 vCPUs)", |b| {
        b.iter(|| LaunchPlan::from_parts(&cfg, &ovmf, Some(boot.clone()), None).unwrap())
    });

    let fw = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/ovmf/debian-trixie-2025.02-8+deb13u1/OVMF_CODE_4M.fd"
    ));
    if let Ok(real) = Ovmf::read(&fw) {
        let mut cfg = Config::default_run();
        cfg.firmware = Blob::File(fw);
        cfg.kernel = None;
        cfg.initrd = None;
        cfg.append = None;
        cfg.snp_mut().unwrap().kernel_hashes = false;
        cfg.smp.cpus = 64;
        cfg.smp.maxcpus = 64;
        c.bench_function("plan Debian OVMF (3.5 MiB, 64 vCPUs)", |b| {
            b.iter(|| LaunchPlan::from_parts(&cfg, &real, None, None).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
