//! Model of the AMD secure processor (ASP) firmware for SEV-SNP.
//!
//! * [`identity`]: the chip (product personality, CHIP_ID, secrets), the AMD key
//!   hierarchy (ARK/ASK/ASVK, VCEK per TCB, VLEK), certificates and CRLs in AMD's
//!   exact shape, the GHCB certificate table and MSG_KEY_REQ derived keys.

#![forbid(unsafe_code)]

pub mod identity;
