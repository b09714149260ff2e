//! The certificates that come with a report: from a directory named as snpguest names
//! them (`ark`, `ask`, `asvk`, `vcek`, `vlek` with `.pem` or `.der`, plus an optional
//! `crl.{der,pem}`), from PEM/DER files, or from a GHCB certificate-table blob.

use crate::cert::{AmdCert, AmdCrl, CertError, CertRole, certs_from_bytes, crl_from_bytes};
use crate::table::{CertTable, CertTableGuid, TableError};
use std::path::Path;

/// Why certificates cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertSetError {
    /// A certificate or CRL does not parse.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The certificate table does not parse.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// Two different certificates were offered for one role (say two VCEKs): which one
    /// is meant cannot be told, and the verdict must not depend on argument order.
    #[error("two different {role:?} certificates offered: {first} and {second}")]
    Conflict {
        /// The role.
        role: CertRole,
        /// Where the first came from.
        first: String,
        /// Where the second came from.
        second: String,
    },
    /// A certificate's CN names no AMD role.
    #[error("{what}: subject CN {cn:?} is not an AMD ARK/ASK/ASVK/VCEK/VLEK name")]
    UnknownRole {
        /// Which input.
        what: String,
        /// The CN.
        cn: Option<String>,
    },
}

/// The certificates offered with a report (none is trusted by being here).
#[derive(Clone, Debug, Default)]
pub struct CertSet {
    /// ARK (checked against the pinned root).
    pub ark: Option<AmdCert>,
    /// ASK.
    pub ask: Option<AmdCert>,
    /// ASVK.
    pub asvk: Option<AmdCert>,
    /// VCEK.
    pub vcek: Option<AmdCert>,
    /// VLEK.
    pub vlek: Option<AmdCert>,
    /// CRLs.
    pub crls: Vec<AmdCrl>,
}

impl CertSet {
    /// Put a certificate in the slot its subject CN names (`hint` decides when the CN
    /// names no role, e.g. snpguest file names).
    pub fn insert(&mut self, cert: AmdCert, hint: Option<CertRole>) -> Result<(), CertSetError> {
        let role = match cert.role().map(|r| r.0).or(hint) {
            Some(r) => r,
            None => {
                return Err(CertSetError::UnknownRole {
                    what: cert.name().to_string(),
                    cn: cert.subject_cn().map(str::to_string),
                });
            }
        };
        let slot = match role {
            CertRole::Ark => &mut self.ark,
            CertRole::Ask => &mut self.ask,
            CertRole::Asvk => &mut self.asvk,
            CertRole::Vcek => &mut self.vcek,
            CertRole::Vlek => &mut self.vlek,
        };
        match slot {
            Some(have) if have.der() != cert.der() => Err(CertSetError::Conflict {
                role,
                first: have.name().to_string(),
                second: cert.name().to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                *slot = Some(cert);
                Ok(())
            }
        }
    }

    /// Add every certificate in a PEM or DER file (a KDS `cert_chain` bundle works).
    /// Files whose name is a snpguest stem use it as the role hint.
    pub fn add_file(&mut self, path: &Path) -> Result<(), CertSetError> {
        let bytes = crate::input::read_bounded(
            path,
            crate::input::MAX_CERT_FILE,
            "a certificate or CRL file",
        )
        .map_err(|source| CertSetError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let what = path.display().to_string();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem.eq_ignore_ascii_case("crl") || stem.ends_with("_crl") {
            self.crls.push(crl_from_bytes(&what, &bytes)?);
            return Ok(());
        }
        let hint = match stem.to_ascii_lowercase().as_str() {
            "ark" => Some(CertRole::Ark),
            "ask" => Some(CertRole::Ask),
            "asvk" => Some(CertRole::Asvk),
            "vcek" => Some(CertRole::Vcek),
            "vlek" => Some(CertRole::Vlek),
            _ => None,
        };
        for c in certs_from_bytes(&what, &bytes)? {
            self.insert(c, hint)?;
        }
        Ok(())
    }

    /// Load a snpguest-style directory: `{ark,ask,asvk,vcek,vlek}.{pem,der}` and an
    /// optional `crl.{der,pem}`. Other files are ignored.
    pub fn from_dir(dir: &Path) -> Result<CertSet, CertSetError> {
        let mut set = CertSet::default();
        if !dir.is_dir() {
            return Err(CertSetError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        for stem in ["ark", "ask", "asvk", "vcek", "vlek", "crl"] {
            for ext in ["pem", "der"] {
                let p = dir.join(format!("{stem}.{ext}"));
                if p.is_file() {
                    set.add_file(&p)?;
                    break;
                }
            }
        }
        Ok(set)
    }

    /// Load from a GHCB certificate table (the blob next to an extended report).
    /// Entries with unknown GUIDs are ignored; the ASK GUID may carry an ASVK.
    pub fn from_table(buf: &[u8]) -> Result<CertSet, CertSetError> {
        let table = CertTable::parse(buf)?;
        let mut set = CertSet::default();
        for (guid, blob) in &table.entries {
            let what = format!("certificate table entry {guid:?}");
            let hint = match *guid {
                CertTableGuid::ARK => Some(CertRole::Ark),
                CertTableGuid::ASK => Some(CertRole::Ask),
                CertTableGuid::VCEK => Some(CertRole::Vcek),
                CertTableGuid::VLEK => Some(CertRole::Vlek),
                CertTableGuid::CRL => {
                    set.crls.push(crl_from_bytes(&what, blob)?);
                    continue;
                }
                _ => continue,
            };
            for c in certs_from_bytes(&what, blob)? {
                set.insert(c, hint)?;
            }
        }
        Ok(set)
    }

    /// Encode as a GHCB certificate table (ARK, ASK/ASVK, VCEK/VLEK, CRLs are left
    /// out so virtee tools can read it).
    pub fn to_table(&self) -> Vec<u8> {
        let mut t = CertTable::default();
        let mut push = |g: CertTableGuid, c: &Option<AmdCert>| {
            if let Some(c) = c {
                t.entries.push((g, c.der().to_vec()));
            }
        };
        push(CertTableGuid::ARK, &self.ark);
        if self.ask.is_some() {
            push(CertTableGuid::ASK, &self.ask);
        } else {
            push(CertTableGuid::ASK, &self.asvk);
        }
        push(CertTableGuid::VCEK, &self.vcek);
        push(CertTableGuid::VLEK, &self.vlek);
        t.to_bytes()
    }

    /// Merge `other` into `self`; a role both fill with different certificates is a
    /// [`CertSetError::Conflict`].
    pub fn merge(&mut self, other: CertSet) -> Result<(), CertSetError> {
        let CertSet {
            ark,
            ask,
            asvk,
            vcek,
            vlek,
            crls,
        } = other;
        for (role, dst, src) in [
            (CertRole::Ark, &mut self.ark, ark),
            (CertRole::Ask, &mut self.ask, ask),
            (CertRole::Asvk, &mut self.asvk, asvk),
            (CertRole::Vcek, &mut self.vcek, vcek),
            (CertRole::Vlek, &mut self.vlek, vlek),
        ] {
            match (dst.as_ref(), src) {
                (Some(have), Some(new)) if have.der() != new.der() => {
                    return Err(CertSetError::Conflict {
                        role,
                        first: have.name().to_string(),
                        second: new.name().to_string(),
                    });
                }
                (None, Some(new)) => *dst = Some(new),
                _ => {}
            }
        }
        self.crls.extend(crls);
        Ok(())
    }
}
