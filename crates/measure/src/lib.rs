//! Launch measurement: what the AMD secure processor will put in GCTX.LD for a given
//! launch image, computed before launch (SNP PAGE_INFO chain; SEV/SEV-ES SHA-256).
//! Spec notes: shared/spec/snp-launch.md §2–§7.

#![forbid(unsafe_code)]
