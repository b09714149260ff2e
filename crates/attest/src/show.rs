//! Every field of a report for people (`softsev report show`) and machines (`--json`).
//! TCBs are decoded in the product's layout when the product is known.

use serde_json::{Value, json};
use softsev_abi::report::{AttestationReport, FirmwareVersion};
use softsev_abi::{Product, RawTcb, TcbVersion};

fn tcb_json(raw: RawTcb, product: Option<Product>) -> Value {
    let mut o = json!({ "raw": format!("{:#018x}", raw.to_u64()) });
    // Milan and Genoa share the legacy layout: decode with it when the product is unknown.
    {
        let p = product.unwrap_or(Product::Milan);
        match TcbVersion::decode(raw, p) {
            Ok(t) => {
                o["bootloader"] = json!(t.bootloader);
                o["tee"] = json!(t.tee);
                o["snp"] = json!(t.snp);
                o["microcode"] = json!(t.microcode);
                if p == Product::Turin {
                    o["fmc"] = json!(t.fmc);
                }
            }
            Err(e) => o["error"] = json!(e.to_string()),
        }
    }
    o
}

fn ver(v: FirmwareVersion) -> String {
    v.to_string()
}

/// The product a report names: `explicit`, else the report's CPUID, else Turin for a
/// short CHIP_ID (`None` for a v2 Milan/Genoa report, whose TCB layout is the same).
pub fn product_for_show(r: &AttestationReport, explicit: Option<Product>) -> Option<Product> {
    explicit
        .or_else(|| r.product())
        .or_else(|| r.chip_id_is_short().then_some(Product::Turin))
}

/// Every field as JSON. `product` selects the TCB layout.
pub fn report_json(r: &AttestationReport, product: Option<Product>) -> Value {
    let pol = r.guest_policy();
    let ki = r.key_info;
    let (sr, ss) = match r.signature.to_be() {
        Ok((a, b)) => (hex::encode(a), hex::encode(b)),
        Err(e) => (e.to_string(), String::new()),
    };
    json!({
        "version": r.version,
        "product": product.map(|p| p.name()),
        "tcb_layout": if product == Some(Product::Turin) { "turin" } else { "legacy" },
        "guest_svn": r.guest_svn,
        "policy": {
            "raw": format!("{:#x}", r.policy),
            "abi_major": pol.abi_major(),
            "abi_minor": pol.abi_minor(),
            "smt": pol.smt(),
            "migrate_ma": pol.migrate_ma(),
            "debug": pol.debug(),
            "single_socket": pol.single_socket(),
            "cxl_allow": pol.has(softsev_abi::GuestPolicy::CXL_ALLOW),
            "mem_aes_256_xts": pol.has(softsev_abi::GuestPolicy::MEM_AES_256_XTS),
            "rapl_dis": pol.has(softsev_abi::GuestPolicy::RAPL_DIS),
            "ciphertext_hiding": pol.has(softsev_abi::GuestPolicy::CIPHERTEXT_HIDING),
            "page_swap_disable": pol.has(softsev_abi::GuestPolicy::PAGE_SWAP_DISABLE),
        },
        "family_id": hex::encode(r.family_id),
        "image_id": hex::encode(r.image_id),
        "vmpl": r.vmpl,
        "signature_algo": r.signature_algo,
        "current_tcb": tcb_json(r.current_tcb, product),
        "platform_info": {
            "raw": format!("{:#x}", r.platform_info.0),
            "flags": r.platform_info.flag_names(),
        },
        "key_info": {
            "raw": format!("{:#x}", ki.0),
            "author_key_en": ki.author_key_en(),
            "mask_chip_key": ki.mask_chip_key(),
            "signing_key": format!("{:?}", ki.signing_key()),
        },
        "report_data": hex::encode(r.report_data),
        "measurement": hex::encode(r.measurement),
        "host_data": hex::encode(r.host_data),
        "id_key_digest": hex::encode(r.id_key_digest),
        "author_key_digest": hex::encode(r.author_key_digest),
        "report_id": hex::encode(r.report_id),
        "report_id_ma": hex::encode(r.report_id_ma),
        "reported_tcb": tcb_json(r.reported_tcb, product),
        "cpuid_fam_id": r.cpuid_fam_id,
        "cpuid_mod_id": r.cpuid_mod_id,
        "cpuid_step": r.cpuid_step,
        "chip_id": hex::encode(r.chip_id),
        "committed_tcb": tcb_json(r.committed_tcb, product),
        "current_version": ver(r.current_version()),
        "committed_version": ver(r.committed_version()),
        "launch_tcb": tcb_json(r.launch_tcb, product),
        "launch_mit_vector": format!("{:#x}", r.launch_mit_vector),
        "current_mit_vector": format!("{:#x}", r.current_mit_vector),
        "signature": { "r": sr, "s": ss },
    })
}

/// Every field as aligned `name: value` lines.
pub fn report_text(r: &AttestationReport, product: Option<Product>) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, x, out);
                }
            }
            Value::Array(a) => out.push((
                prefix.to_string(),
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Null => out.push((prefix.to_string(), "-".into())),
            x => out.push((prefix.to_string(), x.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", &report_json(r, product), &mut rows);
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}
