#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer + ASan + UBSan and runs each on a
# copy of its seed corpus (see tests/fuzz/README.md):
#
#   fuzz_protocol      control lines, endpoints, v2 parsers, PROXY v2, token and
#                      state files, TLS 1.3 records (protocol/tls13_records); seeds in corpus/, for FUZZ_SECONDS (default 60)
#   fuzz_first_lines   the first bytes of a reverse or warm connection (peeked
#                      first line, its parsers, PROXY v2); seeds in
#                      corpus_first_lines/, for FUZZ_FIRST_LINES_SECONDS (default 30)
#
#   tests/fuzz/run.sh [BUILD_DIR] [extra libFuzzer flags for both...]
#
# BUILD_DIR defaults to build-fuzz at the repository root. A duration of 0
# skips that target (libFuzzer itself would read 0 as "no limit"). Both
# targets run even if the first fails; the script exits non-zero if either
# crashes, leaks, trips a sanitizer or fails one of its checks, and the input
# that did it is written to BUILD_DIR as <target>-crash-*/-leak-*/-timeout-*.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/../.." && pwd)"
build_dir="${1:-$repo/build-fuzz}"
if [[ $# -gt 0 ]]; then shift; fi
protocol_seconds="${FUZZ_SECONDS:-60}"
first_lines_seconds="${FUZZ_FIRST_LINES_SECONDS:-30}"
cxx="${CXX_FUZZ:-clang++-14}"

mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"

# Undefined behaviour is a failure, not a warning.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# fuzz TARGET SECONDS SEED_DIR MAX_LEN [extra flags...]: builds and runs one
# target; returns its exit status.
fuzz() {
  local target="$1" seconds="$2" seeds="$3" max_len="$4"
  shift 4
  if [[ "$seconds" == 0 ]]; then
    echo "$target: skipped (0 seconds)" >&2
    return 0
  fi
  echo "building $build_dir/$target" >&2
  "$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
    -I"$repo" "$script_dir/$target.cpp" "$repo"/protocol/*.cpp \
    -lcrypto -o "$build_dir/$target" || return $?

  # Fuzz a copy: libFuzzer adds what it finds to the corpus directory, and the
  # seeds in the repository stay as they are.
  local work_corpus="$build_dir/corpus_$target"
  rm -rf "$work_corpus" && mkdir -p "$work_corpus" && cp "$seeds"/* "$work_corpus"/ || return $?

  echo "fuzzing $target for ${seconds}s" >&2
  local status=0
  "$build_dir/$target" \
    -max_total_time="$seconds" \
    -max_len="$max_len" \
    -print_final_stats=1 \
    -artifact_prefix="$build_dir/$target-" \
    "$@" \
    "$work_corpus" || status=$?
  if [[ $status -ne 0 ]]; then
    echo "$target FAILED (exit $status); reproducer in $build_dir/" >&2
    return "$status"
  fi
  echo "$target: no crash in ${seconds}s" >&2
}

# Control lines go up to 1024 bytes, so inputs up to 4096 hold a few; a first
# line is at most 96 bytes, and 256 leave room for a PROXY header after it.
protocol_status=0
fuzz fuzz_protocol "$protocol_seconds" "$script_dir/corpus" 4096 "$@" || protocol_status=$?
first_lines_status=0
fuzz fuzz_first_lines "$first_lines_seconds" "$script_dir/corpus_first_lines" 256 "$@" ||
  first_lines_status=$?

if [[ $protocol_status -ne 0 ]]; then exit "$protocol_status"; fi
exit "$first_lines_status"
