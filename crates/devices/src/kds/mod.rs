//! A loopback AMD Key Distribution Service (frontends.md §4 and §7.1 item 4;
//! snp-attestation.md §6.3; sev-legacy.md §1.8): AMD's URL scheme answered from the
//! chip's seeded identity, over HTTP/1.1 and HTTPS with a per-run CA.
//!
//! | path | answer |
//! |---|---|
//! | `/vcek/v1/{product}/cert_chain` | PEM ASK then ARK |
//! | `/vlek/v1/{product}/cert_chain` | PEM ASVK then ARK |
//! | `/vcek/v1/{product}/crl`, `/vlek/v1/{product}/crl` | DER CRL signed by the ARK |
//! | `/vcek/v1/{product}/{hwid}?[fmcSPL=F&]blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=U` | DER VCEK for that TCB |
//! | `/vlek/v1/{product}/cert?…same TCB parameters…` | DER certificate of the loaded VLEK, if its TCB matches |
//! | `POST /vlek/v1/{product}/hash_sticks?TCB` with `{"hwids":["<GET_ID hex>", …]}` | `{"results":[{"<hwid>":"<hex of a wrapped VLEK>"}, …]}`: a `vlek_wrapped_t` (432 bytes) for this chip at that TCB, `"not found"` for another hwid (snphost `src/cert/fetch/hashsticks.rs`) |
//! | `/cek/id/{GET_ID hex}` | the ASK-signed CEK (0x824 bytes) |
//!
//! `{product}` is the KDS name (`Milan`, `Genoa`, `Turin`) of this chip's product;
//! another product, an unknown hwid or CEK id, or a TCB the chip cannot have is 404
//! as AMD answers an unknown resource; missing or malformed TCB parameters are 400.
//! The TCB a chip "can have" is one its product can encode that the running
//! firmware's installed TCB dominates (a model choice: KDS issues certificates only
//! for released TCB levels, and the model's newest release is the installed one).
//! Hex in paths is compared without regard to case (snpguest and go-sev-guest send
//! lowercase hwids, sevctl an upper-case CEK id).
//!
//! A VCEK hwid is accepted as the report's CHIP_ID (snpguest, go-sev-guest) or as the
//! GET_ID value (snphost builds `show vcek-url` / `fetch vek` from SEV_GET_ID2,
//! frontends.md §3.2): on hardware these are the same 64 bytes, in the model's chip
//! identity they differ (GET_ID is the legacy secp256k1 identity), so the KDS knows
//! the chip under both names.

mod http;
mod server;
mod tls;

pub use server::{KdsEvent, KdsObserver, KdsServer, KdsServerConfig, KdsServerError};
pub use tls::TlsError;
pub use tls::{KDS_HOSTS, KdsTls};

use softsev_abi::{Product, RawTcb, TcbVersion};
use softsev_crypto::rng::Rng;
use softsev_firmware::Firmware;
use softsev_firmware::identity::cert::to_pem;
use std::sync::Arc;

/// One KDS answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdsResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl KdsResponse {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        KdsResponse {
            status: 200,
            content_type,
            body,
        }
    }

    fn error(status: u16, why: &str) -> Self {
        KdsResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{} {}: {why}\n", status, reason(status)).into_bytes(),
        }
    }
}

/// The reason phrase of the status codes the KDS answers with.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

const PEM: &str = "application/x-pem-file";
const DER: &str = "application/x-x509-ca-cert";
const CRL: &str = "application/pkix-crl";
const BIN: &str = "application/octet-stream";

/// The KDS of one chip: what AMD would serve for it.
pub struct Kds {
    fw: Arc<Firmware>,
    /// Draws the wrapped VLEKs of `hash_sticks` (seeded: equal seeds, equal blobs).
    rng: parking_lot::Mutex<Rng>,
}

impl std::fmt::Debug for Kds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kds")
            .field("product", &self.product())
            .finish_non_exhaustive()
    }
}

/// The CSP id the model's KDS puts into VLEKs it wraps.
pub const KDS_CSP_ID: &str = "softsev-csp";

impl Kds {
    /// The KDS for the chip behind `fw`; `seed` makes the wrapped VLEKs reproducible
    /// (`None`: OS randomness).
    pub fn new(fw: Arc<Firmware>, seed: Option<&[u8]>) -> Self {
        let rng = match seed {
            Some(s) => Rng::seeded(s, "softsev kds"),
            None => Rng::os(),
        };
        Kds {
            fw,
            rng: parking_lot::Mutex::new(rng),
        }
    }

    /// The chip's product.
    pub fn product(&self) -> Product {
        self.fw.chip().product()
    }

    /// Answer `GET target` (`target` = path and query as in the request line).
    pub fn get(&self, target: &str) -> KdsResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match parts.as_slice() {
            ["cek", "id", id] => self.cek(id),
            [tree @ ("vcek" | "vlek"), "v1", product, rest @ ..] => {
                if *product != self.product().name() {
                    return KdsResponse::error(404, "no such product");
                }
                match (*tree, rest) {
                    (_, ["cert_chain"]) => self.cert_chain(tree == &"vlek"),
                    (_, ["crl"]) => self.crl(tree == &"vlek"),
                    ("vlek", ["cert"]) => self.vlek_cert(query),
                    ("vlek", ["hash_sticks"]) => KdsResponse::error(405, "hash_sticks is POST"),
                    ("vcek", [hwid]) => self.vcek(hwid, query),
                    _ => KdsResponse::error(404, "no such resource"),
                }
            }
            _ => KdsResponse::error(404, "no such resource"),
        }
    }

    /// Answer `POST target` with `body`.
    pub fn post(&self, target: &str, body: &[u8]) -> KdsResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match parts.as_slice() {
            ["vlek", "v1", product, "hash_sticks"] if *product == self.product().name() => {
                self.hash_sticks(query, body)
            }
            // A resource that exists for GET refuses other methods.
            _ if self.get(target).status != 404 => {
                KdsResponse::error(405, "this resource is GET only")
            }
            _ => KdsResponse::error(404, "no such resource"),
        }
    }

    fn cert_chain(&self, vlek: bool) -> KdsResponse {
        let root = self.fw.chip().root();
        let pem = if vlek {
            root.kds_vlek_cert_chain_pem()
        } else {
            root.kds_cert_chain_pem()
        };
        match pem {
            Ok(p) => KdsResponse::ok(PEM, p.into_bytes()),
            Err(e) => KdsResponse::error(404, &e.to_string()),
        }
    }

    fn crl(&self, vlek: bool) -> KdsResponse {
        let root = self.fw.chip().root();
        let der = if vlek {
            root.vlek_crl_der().map(<[u8]>::to_vec)
        } else {
            Ok(root.vcek_crl_der().to_vec())
        };
        match der {
            Ok(d) => KdsResponse::ok(CRL, d),
            Err(e) => KdsResponse::error(404, &e.to_string()),
        }
    }

    fn vcek(&self, hwid: &str, query: &str) -> KdsResponse {
        let chip = self.fw.chip();
        if !self.is_this_chip(hwid) {
            return KdsResponse::error(404, "unknown hwid");
        }
        let tcb = match self.query_tcb(query) {
            Ok(Some(t)) => t,
            Ok(None) => return KdsResponse::error(400, "missing TCB parameters"),
            Err(r) => return r,
        };
        if let Err(r) = self.released(&tcb) {
            return r;
        }
        match chip.vcek_cert_der(&tcb) {
            Ok(d) => KdsResponse::ok(DER, d),
            Err(e) => KdsResponse::error(404, &e.to_string()),
        }
    }

    fn vlek_cert(&self, query: &str) -> KdsResponse {
        let tcb = match self.query_tcb(query) {
            Ok(Some(t)) => t,
            Ok(None) => return KdsResponse::error(400, "missing TCB parameters"),
            Err(r) => return r,
        };
        match self.fw.chip().vlek() {
            Some(v) if v.tcb() == &tcb => KdsResponse::ok(DER, v.cert_der().to_vec()),
            _ => KdsResponse::error(404, "no VLEK for this TCB"),
        }
    }

    /// Whether `hwid` names this chip: its CHIP_ID or its GET_ID value (the
    /// product's significant bytes), in either case.
    fn is_this_chip(&self, hwid: &str) -> bool {
        let chip = self.fw.chip();
        let n = self.product().chip_id_len();
        let get_id = chip.sev_get_id();
        hwid.eq_ignore_ascii_case(&chip.kds_hwid())
            || hwid.eq_ignore_ascii_case(&hex::encode(&get_id[..n.min(64)]))
            || hwid.eq_ignore_ascii_case(&hex::encode(get_id))
    }

    fn hash_sticks(&self, query: &str, body: &[u8]) -> KdsResponse {
        #[derive(serde::Deserialize)]
        struct Req {
            hwids: Vec<String>,
        }
        let req: Req = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return KdsResponse::error(400, &format!("request body: {e}")),
        };
        let tcb = match self.query_tcb(query) {
            Ok(Some(t)) => t,
            Ok(None) => return KdsResponse::error(400, "missing TCB parameters"),
            Err(r) => return r,
        };
        if let Err(r) = self.released(&tcb) {
            return r;
        }
        let mut results = serde_json::Map::new();
        for hwid in req.hwids {
            let v = if self.is_this_chip(&hwid) {
                let mut rng = self.rng.lock();
                match self
                    .fw
                    .chip()
                    .provision_vlek_blob(&mut rng, &tcb, KDS_CSP_ID)
                {
                    Ok((blob, _cert)) => {
                        use zerocopy::IntoBytes;
                        hex::encode(blob.as_bytes())
                    }
                    Err(e) => return KdsResponse::error(404, &e.to_string()),
                }
            } else {
                "not found".to_string()
            };
            results.insert(hwid, serde_json::Value::String(v));
        }
        let out = serde_json::json!({ "results": [results] });
        KdsResponse::ok("application/json", out.to_string().into_bytes())
    }

    fn cek(&self, id: &str) -> KdsResponse {
        let want = hex::encode(self.fw.chip().sev_get_id());
        if !id.eq_ignore_ascii_case(&want) {
            return KdsResponse::error(404, "unknown CEK id");
        }
        use zerocopy::IntoBytes;
        KdsResponse::ok(BIN, self.fw.sev_kds_cek().as_bytes().to_vec())
    }

    /// The TCB named by the `…SPL` parameters (`None` when none is given); a partial
    /// or malformed set is a 400.
    fn query_tcb(&self, query: &str) -> Result<Option<TcbVersion>, KdsResponse> {
        let mut v: [Option<u8>; 5] = [None; 5];
        let names = ["fmcSPL", "blSPL", "teeSPL", "snpSPL", "ucodeSPL"];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(i) = names.iter().position(|n| *n == k) {
                let n: u8 = val
                    .parse()
                    .map_err(|_| KdsResponse::error(400, &format!("{k}={val} is not 0..=255")))?;
                v[i] = Some(n);
            }
        }
        let turin = self.product() == Product::Turin;
        if v[1..].iter().all(Option::is_none) && v[0].is_none() {
            return Ok(None);
        }
        let get = |i: usize| {
            v[i].ok_or_else(|| KdsResponse::error(400, &format!("{} missing", names[i])))
        };
        let fmc = if turin {
            get(0)?
        } else if v[0].is_some() {
            return Err(KdsResponse::error(400, "fmcSPL is for Turin only"));
        } else {
            0
        };
        Ok(Some(TcbVersion {
            fmc,
            bootloader: get(1)?,
            tee: get(2)?,
            snp: get(3)?,
            microcode: get(4)?,
        }))
    }

    /// 404 unless the chip can have `tcb` (see the module docs).
    fn released(&self, tcb: &TcbVersion) -> Result<RawTcb, KdsResponse> {
        let raw = tcb
            .encode(self.product())
            .map_err(|e| KdsResponse::error(404, &e.to_string()))?;
        if !self.fw.current_image().tcb.dominates(tcb) {
            return Err(KdsResponse::error(404, "no such TCB for this chip"));
        }
        Ok(raw)
    }

    /// The ARK and ASK as PEM (what a relying party adds to its trust store).
    pub fn cert_chain_pem(&self) -> String {
        self.fw
            .chip()
            .root()
            .kds_cert_chain_pem()
            .unwrap_or_else(|e| format!("# {e}\n"))
    }

    /// The ARK certificate as PEM.
    pub fn ark_pem(&self) -> Option<String> {
        to_pem("CERTIFICATE", self.fw.chip().root().ark_der()).ok()
    }
}
