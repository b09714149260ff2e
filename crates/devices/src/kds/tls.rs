//! The KDS's TLS identity (frontends.md §4: a test CA and a server certificate for
//! `kdsintf.amd.com`, which clients trust through `SSL_CERT_FILE`): a per-run CA
//! (ECDSA P-384, self-signed, `CA:TRUE`) and a server certificate it signs with
//! subjectAltName `kdsintf.amd.com`, `kdsint.amd.com`, `localhost` and `127.0.0.1`.
//! Both keys come from the run's [`Rng`] and the CA signs with RFC 6979 nonces, so
//! equal seeds give byte-identical certificates; the certificates are built by rcgen
//! and served by rustls (ring provider).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use softsev_crypto::ecdsa::P384SigningKey;
use softsev_crypto::rng::Rng;
use std::sync::Arc;

/// The host names the server certificate covers (AMD's KDS names).
pub const KDS_HOSTS: [&str; 2] = ["kdsintf.amd.com", "kdsint.amd.com"];

/// The CA and the server certificate of one KDS run.
pub struct KdsTls {
    ca_pem: String,
    ca_der: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for KdsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsTls").finish_non_exhaustive()
    }
}

/// Why the TLS identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused a key or a certificate.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn key_pair(rng: &mut Rng) -> Result<KeyPair, rcgen::Error> {
    let key = P384SigningKey::generate(rng);
    KeyPair::from_pem(&key.to_pkcs8_pem())
}

/// The CA key as rcgen's signer: ECDSA P-384 / SHA-384 with deterministic nonces
/// (softsev-crypto), DER signatures as X.509 carries them.
struct CaSigner {
    key: P384SigningKey,
    public: Vec<u8>,
}

impl rcgen::RemoteKeyPair for CaSigner {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign_deterministic(msg).to_der())
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

fn ca_key_pair(rng: &mut Rng) -> Result<KeyPair, rcgen::Error> {
    let key = P384SigningKey::generate(rng);
    let public = key.public().to_sec1().to_vec();
    KeyPair::from_remote(Box::new(CaSigner { key, public }))
}

impl KdsTls {
    /// A new CA and server certificate drawn from `rng`.
    pub fn generate(rng: &mut Rng) -> Result<KdsTls, TlsError> {
        let ca_key = ca_key_pair(&mut rng.fork("kds tls ca"))?;
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "softsev");
        dn.push(DnType::CommonName, "softsev loopback KDS CA");
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.serial_number = Some(rng.array::<8>().to_vec().into());
        let ca_cert = ca.self_signed(&ca_key)?;

        let server_key = key_pair(&mut rng.fork("kds tls server"))?;
        let mut sp = CertificateParams::new(
            KDS_HOSTS
                .iter()
                .map(|h| h.to_string())
                .chain(["localhost".to_string()])
                .collect::<Vec<_>>(),
        )?;
        sp.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, KDS_HOSTS[0]);
        sp.distinguished_name = dn;
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        sp.serial_number = Some(rng.array::<8>().to_vec().into());
        let server_cert = sp.signed_by(&server_key, &ca_cert, &ca_key)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![
            CertificateDer::from(server_cert.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(KdsTls {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The rustls server configuration.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }
}
