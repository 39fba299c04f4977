#!/usr/bin/env bash
# Builds the cronium-runner that is copied to hosts: statically linked, so it
# runs whatever the host's glibc, and starts without dynamic-loader work.
# Usage: scripts/build-runner.sh [TARGET...]   (default: this machine's target)
# Prints the path of each artifact: target/<TARGET>/release/cronium-runner.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
    set -- "$(rustc -vV | sed -n 's/^host: //p')"
fi
for target in "$@"; do
    # With --target, RUSTFLAGS reach only the target's crates, not build
    # scripts or proc macros (which cannot be linked statically).
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --quiet -p cronium-runner --target "$target"
    echo "target/$target/release/cronium-runner"
done
