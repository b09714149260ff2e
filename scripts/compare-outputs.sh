#!/usr/bin/env bash
# Byte-for-byte comparison of softsev's outputs between a reference revision and the
# working tree: `softsev run --seed` (every file it writes, stdout, stderr, exit code),
# `softsev measure`, `softsev verify`, `softsev report show`, `softsev id-block
# --deterministic`, and the error paths of each. Used to prove that a refactor changed
# no behaviour.
#
#   scripts/compare-outputs.sh [REF_REV]        (default REF_REV: ca15a62, before issue 11)
#   SOFTSEV_REF_BIN=… SOFTSEV_NEW_BIN=… scripts/compare-outputs.sh   (prebuilt binaries)
#
# The reference is built from a temporary git worktree in its own target directory
# (release profile); the current tree is built with `cargo build --release`. Timing
# fields (phases_ms, total_ms) and the phase line of the human summary are removed
# before comparing; everything else must be identical. Exits 1 on any difference and
# prints a diff of the first lines of each differing output.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REF=${1:-ca15a62}
FX=${SOFTSEV_FIXTURES:-$ROOT/../shared/fixtures}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/softsev-compare.XXXXXX")
REFTREE="$WORK/ref-tree"
trap 'git -C "$ROOT" worktree remove --force "$REFTREE" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

REF_TARGET=${SOFTSEV_REF_TARGET:-${TMPDIR:-/tmp}/softsev-ref-target}
if [ -n "${SOFTSEV_REF_BIN:-}" ]; then
  REFBIN=$SOFTSEV_REF_BIN
else
  echo "== building reference $REF"
  git -C "$ROOT" worktree add --detach -q "$REFTREE" "$REF"
  (cd "$REFTREE" && CARGO_TARGET_DIR="$REF_TARGET" cargo build -q --release --bin softsev)
  REFBIN="$REF_TARGET/release/softsev"
fi
if [ -n "${SOFTSEV_NEW_BIN:-}" ]; then
  NEWBIN=$SOFTSEV_NEW_BIN
else
  echo "== building the working tree"
  cargo build -q --release --bin softsev
  NEWBIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/softsev"
fi

# Inputs both binaries read: written once, outside both trees.
IN="$WORK/in"
mkdir -p "$IN"
python3 - "$IN" <<'EOF'
import os, sys, random
d = sys.argv[1]
r = random.Random(2026)
open(os.path.join(d, "vmlinuz"), "wb").write(bytes(r.randrange(256) for _ in range(300_000)))
open(os.path.join(d, "initrd.img"), "wb").write(bytes(r.randrange(256) for _ in range(120_000)))
EOF
"$REFBIN" measure --write-builtin-ovmf "$IN/builtin.fd" >/dev/null 2>&1 || true

# Each case: a name and the arguments. Run in a fresh directory per binary so relative
# output paths (softsev-run-N, --out DIR) are the same for both.
CASES=()
add() { CASES+=("$*"); }
QEMU="-machine q35,confidential-guest-support=sev0,memory-backend=ram1 -object memory-backend-memfd,id=ram1,size=2G,share=true,reserve=false -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on -smp 3 -cpu EPYC-Genoa -kernel $IN/vmlinuz -initrd $IN/initrd.img -append console=ttyS0"
add run-default      run --seed demo --out out
add run-json         run --seed demo --out out --json
add run-lazy         run --seed lazy --accept lazy --out out
add run-trace        run --seed trace --trace --out out
add run-tamper       run --seed tamper --tamper-gpa 0x100000 --out out
add run-nonce        run --seed n --nonce 00112233445566778899aabbccddeeff --out out
add run-qemu         run --seed q --out out -- $QEMU
add run-bad-sev      run --seed b --out out -- -machine q35,confidential-guest-support=sev0 -object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1 -m 1G
add run-bad-policy   run --seed b --out out -- -machine q35,confidential-guest-support=sev0 -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1 -m 1G
add run-bad-mem      run --seed b --out out -- -m 7
add measure-snp      measure --mode snp --vcpus 4 --vcpu-type EPYC-Milan --ovmf $IN/builtin.fd --kernel $IN/vmlinuz --initrd $IN/initrd.img --append console=ttyS0
add measure-seves    measure --mode seves --vcpus 2 --vcpu-type EPYC-Rome --ovmf $IN/builtin.fd --kernel $IN/vmlinuz
add measure-sev      measure --mode sev --ovmf $IN/builtin.fd --kernel $IN/vmlinuz --output-format base64
add measure-trace    measure --vcpus 2 --vcpu-type EPYC-Genoa --trace
add measure-json     measure --vcpus 2 --vcpu-sig 0xA10F11 --vmm-type ec2 --json
add measure-vmsa     measure --mode seves --vcpus 2 --vcpu-family 25 --vcpu-model 1 --vcpu-stepping 1 --dump-vmsa
add measure-bad      measure --mode snp --vcpus 2 --vcpu-type EPYC-Nope
if [ -d "$FX/snp" ]; then
  for r in milan-virtee-sev/report_milan.bin turin-v5-yaxi/report.bin genoa-v3-yaxi/report.bin; do
    [ -f "$FX/snp/$r" ] || continue
    n=$(dirname "$r")
    add "show-$n"    report show "$FX/snp/$r" --json
    add "verify-$n"  verify "$FX/snp/$r" --certs "$FX/snp/$n" --at 2026-01-01T00:00:00Z --json
  done
fi
add verify-missing   verify /nonexistent/report.bin
if [ -d "$FX/measurement" ]; then
  :
fi
openssl ecparam -name secp384r1 -genkey -noout -out "$IN/id.pem" 2>/dev/null &&
  openssl pkcs8 -topk8 -nocrypt -in "$IN/id.pem" -out "$IN/id8.pem" 2>/dev/null &&
  add id-block id-block --measurement "$(printf '%096d' 0 | xxd -r -p | base64 -w0)" --idkey "$IN/id8.pem" --deterministic --json

normalize() { # strip timing fields from JSON and the human phase line
  python3 - "$1" <<'EOF'
import json, re, sys
p = sys.argv[1]
s = open(p, "rb").read()
try:
    t = s.decode()
except UnicodeDecodeError:
    sys.exit(0)
def scrub(o):
    if isinstance(o, dict):
        return {k: scrub(v) for k, v in o.items() if k not in ("phases_ms", "total_ms")}
    if isinstance(o, list):
        return [scrub(v) for v in o]
    return o
try:
    j = json.loads(t)
    t = json.dumps(scrub(j), indent=1, sort_keys=True) + "\n"
except ValueError:
    # A JSON document embedded in other output (stdout of --json) or the human summary.
    t = re.sub(r'"(phases_ms|total_ms)":\s*(\[[^\]]*(\][^\]]*)*?\]|[0-9.e+-]+),?', '', t, flags=re.S)
    t = re.sub(r'(?m)^.*\b(phases|took|total)\b.*\bms\b.*$', '<timing line>', t)
open(p, "w").write(t)
EOF
}

fail=0
i=0
for c in "${CASES[@]}"; do
  i=$((i + 1))
  read -r name args <<<"$c"
  for side in ref new; do
    bin=$REFBIN; [ $side = new ] && bin=$NEWBIN
    d="$WORK/$side/$name"
    mkdir -p "$d"
    # shellcheck disable=SC2086
    (cd "$d" && { "$bin" $args >stdout 2>stderr; echo $? >exit_code; }) || true
    find "$d" -type f -name '*.json' -o -type f -name stdout | while read -r f; do normalize "$f"; done
  done
  if diff -r -q "$WORK/ref/$name" "$WORK/new/$name" >/dev/null; then
    echo "same  $name"
  else
    echo "DIFF  $name"
    diff -r "$WORK/ref/$name" "$WORK/new/$name" | head -20 || true
    fail=1
  fi
done
echo "== $i cases compared against $REF: $([ $fail = 0 ] && echo 'all identical' || echo 'differences above')"
exit $fail
