//! Assembling a platform's secure side in one step: a SoC, the chip identity and the
//! firmware on top, from a product, a seed and a memory size ([`Firmware::builder`]).
//! Tests, benches and fuzz targets use it instead of wiring the three by hand; the
//! host's platform builder sits on top of it. Two builds are independent values, so
//! two platforms can live side by side in one process.

use crate::fw::{Firmware, FirmwareConfig};
use crate::identity::{Chip, IdentityError};
use softsev_abi::Product;
use softsev_soc::{Soc, SocConfig};
use std::sync::Arc;

/// Default SoC memory of a built platform: 64 MiB (sparse: untouched memory costs
/// nothing).
pub const DEFAULT_SOC_BYTES: u64 = 64 << 20;

/// Builds a [`Firmware`] on a fresh [`Soc`], with a chip of the product.
///
/// ```
/// use softsev_abi::Product;
/// use softsev_firmware::Firmware;
///
/// let fw = Firmware::builder(Product::Milan)
///     .seed(b"doc")
///     .soc_bytes(16 << 20)
///     .asid_count(8)
///     .build()
///     .unwrap();
/// assert_eq!(fw.soc().mem_size(), 16 << 20);
/// assert_eq!(fw.chip().product(), Product::Milan);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until build()"]
pub struct FirmwareBuilder {
    product: Product,
    seed: Option<Vec<u8>>,
    soc_bytes: u64,
    asid_count: Option<u32>,
    chip: Option<Arc<Chip>>,
    config: FirmwareConfig,
}

impl Firmware {
    /// A builder for a platform of `product`: [`FirmwareConfig::for_product`], a
    /// [`DEFAULT_SOC_BYTES`] SoC with its default ASID count, randomness from the OS.
    pub fn builder(product: Product) -> FirmwareBuilder {
        FirmwareBuilder {
            product,
            seed: None,
            soc_bytes: DEFAULT_SOC_BYTES,
            asid_count: None,
            chip: None,
            config: FirmwareConfig::for_product(product),
        }
    }
}

impl FirmwareBuilder {
    /// Make the platform deterministic: `seed` seeds the SoC (memory-encryption keys),
    /// the firmware's random numbers ([`FirmwareConfig::seed`]) and, unless
    /// [`FirmwareBuilder::chip`] gives one, the chip ([`Chip::from_seed`]).
    pub fn seed(mut self, seed: &[u8]) -> Self {
        self.seed = Some(seed.to_vec());
        self.config.seed = Some(seed.to_vec());
        self
    }

    /// Size of the SoC's physical memory in bytes.
    pub fn soc_bytes(mut self, bytes: u64) -> Self {
        self.soc_bytes = bytes;
        self
    }

    /// Number of ASIDs of the SoC (0 is the host's; guests get 1..count).
    pub fn asid_count(mut self, count: u32) -> Self {
        self.asid_count = Some(count);
        self
    }

    /// Use `chip` as the platform's identity (e.g. one shared by many test platforms,
    /// since deriving a chip costs time). Its product should be the builder's.
    pub fn chip(mut self, chip: Arc<Chip>) -> Self {
        self.chip = Some(chip);
        self
    }

    /// Adjust the firmware configuration (versions, SMT, sockets, report version...).
    /// A seed set with [`FirmwareBuilder::seed`] before stays unless `f` changes it.
    pub fn configure(mut self, f: impl FnOnce(&mut FirmwareConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Build the SoC, the chip (unless given) and the firmware, in the UNINIT state.
    pub fn build(self) -> Result<Arc<Firmware>, IdentityError> {
        let mut soc_config = SocConfig::new(self.soc_bytes);
        soc_config.seed = self.seed.clone();
        if let Some(n) = self.asid_count {
            soc_config.asid_count = n;
        }
        let soc = Arc::new(Soc::new(soc_config));
        let chip = match self.chip {
            Some(c) => c,
            None => match &self.seed {
                Some(s) => Arc::new(Chip::from_seed(self.product, s)?),
                None => Arc::new(Chip::random(self.product)?),
            },
        };
        Ok(Arc::new(Firmware::new(soc, chip, self.config)))
    }
}
