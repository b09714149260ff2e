//! Launch measurement: what the AMD secure processor will put in GCTX.LD for a given
//! launch image, computed before launch (SNP PAGE_INFO chain; SEV/SEV-ES SHA-256).
//! Spec notes: shared/spec/snp-launch.md §2–§7.
//!
//! * [`digest`]: the PAGE_INFO chain ([`SnpDigest`]) shared with the firmware model, and
//!   the SEV SHA-256 ([`SevDigest`]).
//! * [`ovmf`]: footer GUID table and SEV metadata parsing.
//! * [`kernel_hashes`]: the `kernel-hashes=on` table.
//! * [`vmsa`]: VMSA construction per vCPU type and VMM.
//! * [`qemu`]: the QEMU CPU-model catalogue (names, versions, signatures, the CPUID
//!   features of each SNP product's model).
//! * [`launch`]: whole-launch digests (SNP, SNP+SVSM, SEV-ES, SEV).
//! * [`builtin`]: a generated firmware image with every SEV structure.

#![forbid(unsafe_code)]

pub mod builtin;
pub mod digest;
pub mod error;
pub mod id_block;
pub mod kernel_hashes;
pub mod launch;
pub mod ovmf;
pub mod qemu;
pub mod vmsa;

pub use digest::{SevDigest, SnpDigest, TraceEntry, VmplPerms};
pub use error::MeasureError;
pub use kernel_hashes::KernelHashes;
pub use ovmf::Ovmf;
pub use vmsa::{EsVmsaInit, VmmType};
