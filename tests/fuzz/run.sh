#!/usr/bin/env bash
# Builds the protocol fuzz target with libFuzzer + ASan + UBSan and runs it on
# a copy of the seed corpus.
#
#   tests/fuzz/run.sh [BUILD_DIR] [extra libFuzzer flags...]
#
# BUILD_DIR defaults to build-fuzz at the repository root; FUZZ_SECONDS
# (default 60) bounds the run. Exits non-zero if the target crashes, leaks,
# trips a sanitizer or fails one of its checks; the input that did it is
# written to BUILD_DIR as crash-*/leak-*/timeout-*.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/../.." && pwd)"
build_dir="${1:-$repo/build-fuzz}"
if [[ $# -gt 0 ]]; then shift; fi
fuzz_seconds="${FUZZ_SECONDS:-60}"
cxx="${CXX_FUZZ:-clang++-14}"

mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"

echo "building $build_dir/fuzz_protocol" >&2
"$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
  -I"$repo" "$script_dir/fuzz_protocol.cpp" "$repo"/protocol/*.cpp \
  -lcrypto -o "$build_dir/fuzz_protocol"

# Fuzz a copy: libFuzzer adds what it finds to the corpus directory, and the
# seeds in the repository stay as they are.
work_corpus="$build_dir/corpus"
rm -rf "$work_corpus"
mkdir -p "$work_corpus"
cp "$script_dir"/corpus/* "$work_corpus"/

# Undefined behaviour is a failure, not a warning.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

echo "fuzzing for ${fuzz_seconds}s" >&2
status=0
"$build_dir/fuzz_protocol" \
  -max_total_time="$fuzz_seconds" \
  -max_len=4096 \
  -print_final_stats=1 \
  -artifact_prefix="$build_dir/" \
  "$@" \
  "$work_corpus" || status=$?

if [[ $status -ne 0 ]]; then
  echo "fuzz_protocol FAILED (exit $status); reproducer in $build_dir/" >&2
  exit "$status"
fi
echo "fuzz_protocol: no crash in ${fuzz_seconds}s" >&2
