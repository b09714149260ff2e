#!/usr/bin/env bash
# Coverage-guided fuzzing of every cargo-fuzz target (fuzz/), seeded from the corpus
# the tests replay. Two uses:
#
#   scripts/fuzz.sh                 CI rotation: each target for a fixed number of runs
#                                   with a fixed libFuzzer seed (same inputs every time,
#                                   so a pass stays a pass); new inputs go to a scratch
#                                   copy, the repository is not touched. ~2 minutes after
#                                   the build.
#   scripts/fuzz.sh --seconds 600 --merge [TARGET...]
#                                   long runs; --merge adds the inputs that increase
#                                   coverage (libFuzzer -merge=1) to the corpus directories
#                                   under crates/*/tests/corpus, where the tests replay them.
#
# A crash fails the script and leaves the crashing input under fuzz/artifacts/TARGET/
# (add it to the corpus once fixed). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`); without them it says so and exits 0 unless
# SOFTSEV_REQUIRE_FUZZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${SOFTSEV_FUZZ_RUNS:-4000}
SEED=${SOFTSEV_FUZZ_SEED:-20261202}
SECONDS_EACH=""
MERGE=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --merge) MERGE=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done

skip() {
    if [ "${SOFTSEV_REQUIRE_FUZZ:-0}" = 1 ]; then
        echo "fuzz.sh: $1 and SOFTSEV_REQUIRE_FUZZ=1" >&2
        exit 1
    fi
    echo "SKIP: fuzz rotation: $1"
    exit 0
}
rustup toolchain list 2>/dev/null | grep -q '^nightly' || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --help >/dev/null 2>&1 || skip "cargo-fuzz not installed (cargo install cargo-fuzz --locked)"

# Target -> the corpus directory its replay test reads.
corpus_of() {
    case "$1" in
        attest_cert) echo crates/attest/tests/corpus/attest_cert ;;
        attest_cert_table) echo crates/attest/tests/corpus/attest_cert_table ;;
        attest_sev_cert) echo crates/attest/tests/corpus/sev_cert ;;
        report_parse) echo crates/attest/tests/corpus/report_parse ;;
        cert_table) echo crates/firmware/tests/corpus/identity_cert_table ;;
        cpuid_page) echo crates/firmware/tests/corpus/cpuid_page ;;
        fw_commands) echo crates/firmware/tests/corpus/fw_commands ;;
        fw_sev_receive) echo crates/firmware/tests/corpus/sev_receive ;;
        guest_msg) echo crates/firmware/tests/corpus/guest_msg ;;
        guest_boot) echo crates/guest/tests/corpus/guest_boot ;;
        guest_cert_table) echo crates/guest/tests/corpus/guest_cert_table ;;
        guest_hash_table) echo crates/guest/tests/corpus/guest_hash_table ;;
        guest_secret_table) echo crates/guest/tests/corpus/guest_secret_table ;;
        ghcb_vmgexit) echo crates/host/tests/corpus/ghcb_vmgexit ;;
        id_auth_parse) echo crates/measure/tests/corpus/id_auth_parse ;;
        ovmf_parse) echo crates/measure/tests/corpus/ovmf_parse ;;
        soc_ops) echo crates/soc/tests/corpus/soc_ops ;;
        qmp_parser) echo crates/vmm/tests/corpus/qmp ;;
        vmm_config) echo crates/vmm/tests/corpus/vmm_config ;;
        vmm_migration_stream) echo crates/vmm/tests/corpus/vmm_migration_stream ;;
        *) echo "" ;;
    esac
}

if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cd fuzz && cargo +nightly fuzz list)
fi
# Safe Rust only: no sanitizer (its instrumentation finds nothing safe code can do and
# doubles the build); debug assertions on, so arithmetic overflow panics as in tests.
FLAGS=(-O -a -s none)
echo "== building ${#TARGETS[@]} fuzz targets (nightly, release + debug assertions)"
(cd fuzz && cargo +nightly fuzz build "${FLAGS[@]}" >/dev/null)

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
    c=$(corpus_of "$t")
    work="$SCRATCH/$t"
    mkdir -p "$work"
    seeds=()
    if [ -n "$c" ] && [ -d "$c" ]; then seeds=("$PWD/$c"); fi
    if [ -n "$SECONDS_EACH" ]; then
        limit=(-max_total_time="$SECONDS_EACH")
    else
        # Targets that build a whole platform per input run fewer inputs.
        case "$t" in
            ghcb_vmgexit|qmp_parser) runs=$((RUNS / 20)) ;;
            guest_boot|vmm_migration_stream|fw_sev_receive) runs=$((RUNS / 4)) ;;
            *) runs=$RUNS ;;
        esac
        limit=(-runs="$runs" -seed="$SEED")
    fi
    log="$SCRATCH/$t.log"
    if (cd fuzz && cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$work" "${seeds[@]}" -- \
            "${limit[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1); then
        stats=$(grep -E '^(#[0-9]+|Done)' "$log" | tail -1 || true)
        echo "ok   $t  (corpus ${c:-none}; $(grep -c . <(ls "$work")) new inputs; ${stats})"
        if [ "$MERGE" = 1 ] && [ -n "$c" ]; then
            mkdir -p "$c"
            (cd fuzz && cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$PWD/../$c" "$work" -- -merge=1 >>"$log" 2>&1)
            echo "     merged into $c ($(ls "$c" | wc -l) inputs)"
        fi
    else
        echo "FAIL $t: see below; the input is under fuzz/artifacts/$t/"
        tail -40 "$log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#TARGETS[@]} targets, no crash"
