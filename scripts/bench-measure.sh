#!/usr/bin/env bash
# Times `softsev measure` against sev-snp-measure as whole processes on a 4 MiB OVMF
# (the built-in image padded in front), a 16 MiB kernel and a 128 MiB initrd, at 1 and
# 256 vCPUs, next to the baseline "SHA-256 of all three files once on one core"
# (sha256sum). Uses hyperfine when installed, else a bash loop with `date +%s.%N`.
# Usage: scripts/bench-measure.sh [runs]   (env SOFTSEV_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
BIN="${SOFTSEV_BIN:-target/release/softsev}"
if [ -z "${SOFTSEV_BIN:-}" ]; then
  cargo build --release -q -p softsev-cli
fi
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
"$BIN" measure --write-builtin-ovmf "$W/builtin.fd"
BSIZE=$(stat -c %s "$W/builtin.fd")
{ head -c $((4 * 1024 * 1024 - BSIZE)) /dev/zero | tr '\0' '\377'; cat "$W/builtin.fd"; } > "$W/ovmf.fd"
head -c $((16 * 1024 * 1024)) /dev/urandom > "$W/vmlinuz"
head -c $((128 * 1024 * 1024)) /dev/urandom > "$W/initrd"
CMD="console=ttyS0 root=/dev/vda"

have_ssm=0
command -v sev-snp-measure >/dev/null 2>&1 && have_ssm=1

declare -a names cmds
add() { names+=("$1"); cmds+=("$2"); }
# Baselines: SHA-256 of the three files once, on one core. openssl uses the SHA
# extensions when the CPU has them (as softsev's sha2 does); coreutils sha256sum does not.
command -v openssl >/dev/null 2>&1 && add "openssl sha256 ovmf+kernel+initrd (baseline, 1 core)" "openssl dgst -sha256 $W/ovmf.fd $W/vmlinuz $W/initrd"
add "sha256sum ovmf+kernel+initrd (coreutils, 1 core)" "sha256sum $W/ovmf.fd $W/vmlinuz $W/initrd"
for v in 1 256; do
  common="--mode snp --vcpus $v --vcpu-type EPYC-Milan --ovmf $W/ovmf.fd --kernel $W/vmlinuz --initrd $W/initrd --append '$CMD'"
  add "softsev measure snp vcpus=$v" "$BIN measure $common"
  [ $have_ssm = 1 ] && add "sev-snp-measure snp vcpus=$v" "sev-snp-measure $common"
done
add "softsev measure seves vcpus=256" "$BIN measure --mode seves --vcpus 256 --vcpu-type EPYC-Milan --ovmf $W/ovmf.fd --kernel $W/vmlinuz --initrd $W/initrd --append '$CMD'"

# Agreement check first.
if [ $have_ssm = 1 ]; then
  a=$(eval "$BIN measure --mode snp --vcpus 256 --vcpu-type EPYC-Milan --ovmf $W/ovmf.fd --kernel $W/vmlinuz --initrd $W/initrd --append '$CMD'")
  b=$(eval "sev-snp-measure --mode snp --vcpus 256 --vcpu-type EPYC-Milan --ovmf $W/ovmf.fd --kernel $W/vmlinuz --initrd $W/initrd --append '$CMD'")
  [ "$a" = "$b" ] && echo "digests agree: $a" || { echo "DIGESTS DIFFER: $a vs $b"; exit 1; }
fi

if command -v hyperfine >/dev/null 2>&1; then
  args=()
  for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
  hyperfine -N --warmup 1 --runs "$RUNS" "${args[@]}" 2>/dev/null || hyperfine --warmup 1 --runs "$RUNS" "${args[@]}"
else
  for i in "${!cmds[@]}"; do
    eval "${cmds[$i]}" >/dev/null # warm-up (page cache)
    best=""
    for _ in $(seq "$RUNS"); do
      s=$(date +%s.%N); eval "${cmds[$i]}" >/dev/null; e=$(date +%s.%N)
      t=$(echo "$e - $s" | bc)
      if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
    done
    printf '%-55s best of %s: %.3f s\n' "${names[$i]}" "$RUNS" "$best"
  done
fi
