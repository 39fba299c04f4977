#!/usr/bin/env bash
# Measures the edit-compile loop: a debug `cargo build` of the workspace after
# touching one file (an API handler, the SSH executor, the CLI's main as the
# floor: relinking alone), here and at another commit for comparison, one tree
# after the other, each warm first. Usage: scripts/bench-incremental-build.sh REV [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: $0 REV [ROUNDS]}
rounds=${2:-5}
here=$(pwd)
other=$(mktemp -d /tmp/cronium-bench-XXXXXX)
trap 'git -C "$here" worktree remove --force "$other" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$other" "$rev"
# One target dir: dependencies are built once; each tree's crates keep their own artifacts.
export CARGO_TARGET_DIR="$here/target"

ssh_executor() { # where the SSH executor lives in tree $1
    for f in crates/exec/src/remote/executor.rs crates/server/src/remote/executor.rs; do
        [ -f "$1/$f" ] && { echo "$f"; return; }
    done
}

measure() { # tree label
    local tree=$1 label=$2
    (cd "$tree" && cargo build -q)
    for file in crates/server/src/api/events.rs "$(ssh_executor "$tree")" crates/cli/src/main.rs; do
        local times=()
        for _ in $(seq "$rounds"); do
            touch "$tree/$file"
            local start end
            start=$(date +%s.%N)
            (cd "$tree" && cargo build -q)
            end=$(date +%s.%N)
            times+=("$(echo "$end - $start" | bc)")
        done
        local median
        median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
        printf '%-8s %-42s median %5.2f s  runs: %s\n' "$label" "$file" "$median" "${times[*]}"
    done
}

measure "$here" "$(git rev-parse --short HEAD)"
measure "$other" "$(git -C "$other" rev-parse --short HEAD)"
