#!/usr/bin/env bash
# Installs the independent tools softsev's interop tests compare against, from the
# public registries only. Safe to re-run.
set -euo pipefail
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
# One build directory for the three tool installs below, so what they share (the `sev`
# crate, OpenSSL built from source, libcurl) is compiled once per run, not three times;
# removed at the end (nothing is kept between runs).
TOOL_BUILD=$(mktemp -d)
trap 'rm -rf "$TOOL_BUILD"' EXIT

# sev-snp-measure (PyPI): launch digests and ID blocks.
if ! command -v sev-snp-measure >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "sev-snp-measure==0.0.13"
fi
sev-snp-measure --version || true
# Python `cryptography`: an independent ECDSA verifier for our ID auth signatures.
python3 -c "import cryptography" 2>/dev/null || \
  python3 -m pip install --quiet --disable-pip-version-check cryptography

# snpguest (crates.io): `snpguest verify certs` on softsev's simulated ARK/ASK/VCEK
# (crates/firmware/tests/identity_chain.rs). Builds from source; takes minutes.
if ! command -v snpguest >/dev/null 2>&1; then
  cargo install --locked --target-dir "$TOOL_BUILD" snpguest --version 0.11.0
fi
snpguest --version || true

# sevctl (crates.io): the legacy SEV guest owner's tool — `session`, `measurement build`,
# `secret build`, `validate`, `verify --sev --ca` on softsev's chains and files
# (crates/attest/tests/attest/interop_sevctl.rs, spec sev-legacy.md §9). Builds from
# source (with a vendored OpenSSL); takes minutes.
if ! command -v sevctl >/dev/null 2>&1; then
  cargo install --locked --target-dir "$TOOL_BUILD" sevctl --version 0.6.2
fi
sevctl --version || true

# snphost (crates.io): the SNP host tool `softsev exec --host` serves (show, config,
# commit, ok, fetch; scripts/frontends-acceptance.sh, frontends.md §7.4). Builds from
# source (static libcurl and OpenSSL); takes minutes.
if ! command -v snphost >/dev/null 2>&1; then
  cargo install --locked --target-dir "$TOOL_BUILD" snphost --version 0.9.0
fi
snphost --version || true

# Python qemu.qmp (PyPI): an independent QMP client for the VMM's QMP server tests.
python3 -c "import qemu.qmp" 2>/dev/null || \
  python3 -m pip install --quiet --disable-pip-version-check qemu.qmp

# Debian tools the front-end acceptance script (scripts/frontends-acceptance.sh) uses.
pkgs=()
command -v jq >/dev/null 2>&1 || pkgs+=(jq)
command -v xxd >/dev/null 2>&1 || pkgs+=(xxd)
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
command -v setpriv >/dev/null 2>&1 || pkgs+=(util-linux)
if [ ${#pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -q >/dev/null && apt-get install -y -q "${pkgs[@]}" >/dev/null
fi

# hyperfine (optional; scripts/bench-measure.sh falls back to a bash timing loop).
if ! command -v hyperfine >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q hyperfine >/dev/null 2>&1 || echo "hyperfine not installed (optional)"
fi
