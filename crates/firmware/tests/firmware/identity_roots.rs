//! The embedded default AMD root keys are exactly what the default seed generates.

use softsev_abi::Product;
use softsev_crypto::rsa_sign::RsaPrivateKey;
use softsev_firmware::identity::AmdKeyRole;
use softsev_firmware::identity::amd::{
    AMD_RSA_BITS, DEFAULT_ROOT_SEED, embedded_default_key_der, generate_role_key,
};

#[test]
fn embedded_keys_parse_as_rsa_4096() {
    for product in Product::ALL {
        for role in [AmdKeyRole::Ark, AmdKeyRole::Ask, AmdKeyRole::Asvk] {
            let k = RsaPrivateKey::from_pkcs1_der(embedded_default_key_der(product, role)).unwrap();
            assert_eq!(k.bits(), AMD_RSA_BITS, "{product} {role:?}");
        }
    }
}

/// One key is re-generated from the seed on every run (about 9 s in the test profile);
/// `regenerate_embedded_keys` checks (and writes) all nine.
#[test]
fn embedded_milan_ark_matches_the_default_seed() {
    let k = generate_role_key(DEFAULT_ROOT_SEED, Product::Milan, AmdKeyRole::Ark).unwrap();
    assert_eq!(
        &k.to_pkcs1_der().unwrap()[..],
        embedded_default_key_der(Product::Milan, AmdKeyRole::Ark)
    );
}

/// `cargo test --release -p softsev-firmware --test identity_roots -- --ignored`:
/// regenerates all nine keys; with SOFTSEV_WRITE_ROOTS=1 writes them into
/// src/identity/roots/, otherwise asserts the embedded copies match.
#[test]
#[ignore = "generates nine RSA-4096 keys (minutes in debug builds)"]
fn regenerate_embedded_keys() {
    let write = std::env::var("SOFTSEV_WRITE_ROOTS").as_deref() == Ok("1");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/identity/roots");
    for product in Product::ALL {
        for (role, name) in [
            (AmdKeyRole::Ark, "ark"),
            (AmdKeyRole::Ask, "ask"),
            (AmdKeyRole::Asvk, "asvk"),
        ] {
            let t = std::time::Instant::now();
            let k = generate_role_key(DEFAULT_ROOT_SEED, product, role).unwrap();
            println!("{product} {name}: generated in {:?}", t.elapsed());
            let der = k.to_pkcs1_der().unwrap();
            if write {
                let path = dir.join(format!("{}-{name}.der", product.name().to_lowercase()));
                std::fs::write(path, &der[..]).unwrap();
            } else {
                assert_eq!(
                    &der[..],
                    embedded_default_key_der(product, role),
                    "{product} {name}"
                );
            }
        }
    }
}
