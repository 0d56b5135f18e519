#!/usr/bin/env bash
# Builds the `weir` binary with profile-guided optimization (PGO), the build the image
# ships and the benchmarks measure:
#   1. an instrumented build (`-Cprofile-generate`) in <target>/pgo-generate;
#   2. deploy/pgo-train.sh runs it on a workload that needs nothing outside this machine
#      (see that script) and each run writes the counts of every branch it took;
#   3. llvm-profdata merges them into <target>/pgo/weir.profdata;
#   4. the optimized build (`-Cprofile-use`) in <target>/pgo-use, copied to the output.
#
#   bash deploy/pgo.sh                 # → <target>/pgo/weir
#
# Environment: CARGO_TARGET_DIR (default: target), PGO_PROFILE (the cargo profile, default
# release), PGO_RECORDS (records per training run, default 100000), PGO_OUT (where the
# binary goes, default <target>/pgo/weir), LLVM_PROFDATA (default: the one of rustup's
# llvm-tools component, installed if missing; it must match rustc's LLVM version).
#
# Two full builds plus the training: about 2.2× a plain release build. Code the training
# never runs is compiled as cold (kept out of hot paths, not unrolled); the workload
# therefore covers every dataset, every operator and the jobs around the service.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
profile=${PGO_PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
records=${PGO_RECORDS:-100000}
out=${PGO_OUT:-$target/pgo/weir}
case $profile in
  dev | test) dir=debug ;;
  *) dir=$profile ;;
esac

host=$(rustc -vV | sed -n 's/^host: //p')
profdata=${LLVM_PROFDATA:-$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata}
if [ ! -x "$profdata" ]; then
  echo "pgo: no llvm-profdata at $profdata: installing rustup's llvm-tools component"
  rustup component add llvm-tools
fi

mkdir -p "$target/pgo"
raw=$target/pgo/raw
rm -rf "$raw" "$target/pgo/train"

echo "pgo: 1/4 instrumented build ($profile) in $target/pgo-generate"
generate_flags="${RUSTFLAGS:-} -Cprofile-generate=$raw"
CARGO_TARGET_DIR=$target/pgo-generate RUSTFLAGS=$generate_flags \
  cargo build --profile "$profile" --locked -p weir-pipeline --bin weir
CARGO_TARGET_DIR=$target/pgo-generate RUSTFLAGS=$generate_flags \
  cargo build --profile "$profile" --locked -p weir-schemas --example synth_archive

echo "pgo: 2/4 training"
LLVM_PROFILE_FILE="$raw/weir-%p-%m.profraw" bash "$repo/deploy/pgo-train.sh" \
  "$target/pgo-generate/$dir/weir" "$target/pgo-generate/$dir/examples/synth_archive" \
  "$target/pgo/train" "$records"

echo "pgo: 3/4 merging the profiles"
"$profdata" merge -o "$target/pgo/weir.profdata" "$raw"/weir-*.profraw
rm -rf "$raw" "$target/pgo/train"

echo "pgo: 4/4 optimized build ($profile) in $target/pgo-use"
CARGO_TARGET_DIR=$target/pgo-use \
  RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$target/pgo/weir.profdata" \
  cargo build --profile "$profile" --locked -p weir-pipeline --bin weir
mkdir -p "$(dirname "$out")"
install -m 0755 "$target/pgo-use/$dir/weir" "$out"
echo "pgo: built $out"
