#!/usr/bin/env bash
# Runs Cronium's whole test suite on a fresh Debian machine: installs what the
# tests need (when missing and allowed to), then builds and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests run real interpreters and tools; install any that are missing.
missing=()
command -v bash >/dev/null || missing+=(bash)
command -v python3 >/dev/null || missing+=(python3)
command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
command -v sha256sum >/dev/null || missing+=(coreutils)
# The store's conformance suite starts its own throwaway PostgreSQL cluster
# (crates/store/src/testing.rs); Debian keeps initdb off PATH.
command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
    || missing+=(postgresql)
# The SSH tests start their own sshd with throwaway users
# (crates/ssh/src/testing.rs) and look at those users' processes.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v useradd >/dev/null || missing+=(passwd)
{ command -v pgrep && command -v pkill && command -v ps; } >/dev/null || missing+=(procps)
# Sandboxed local jobs (the executor's bubblewrap tests).
command -v bwrap >/dev/null || missing+=(bubblewrap)
# The SSRF guard's tests put private addresses on the loopback of a network
# namespace of their own (crates/exec/tests/http.rs).
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
# The fault-injection suite (crates/cli/tests/faults.rs) cuts its nodes off
# from the database with an nftables rule inside a network namespace, and
# runs nodes under libfaketime for clock jumps.
command -v nft >/dev/null || missing+=(nftables)
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(libfaketime)
# The web UI's browser tests drive Debian's headless Chromium over WebDriver
# (crates/cli/tests/ui_browser.rs); the two packages come from one source.
[ -x /usr/bin/chromedriver ] || missing+=(chromium chromium-driver)
# Email channels are tested against a real SMTP receiver (aiosmtpd, run by
# Debian's own python3) with certificates openssl makes
# (crates/exec/src/testing/smtp_sink.rs).
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
command -v openssl >/dev/null || missing+=(openssl)
# Cron fire times are checked against Debian cron's rules as evaluated by
# croniter, with Python's zoneinfo and the system's time-zone data
# (crates/core/tests/debian_cron.rs and debian_cron.py).
/usr/bin/python3 -c 'import croniter' 2>/dev/null || missing+=(python3-croniter)
[ -e /usr/share/zoneinfo/Australia/Lord_Howe ] || missing+=(tzdata)
# The API fuzz test (crates/cli/tests/api_fuzz.rs) runs schemathesis, which
# Debian does not package: it goes into a virtualenv (below), made by venv.
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "missing: ${missing[*]} (install them, or run as root on Debian)" >&2
        exit 1
    fi
fi

# schemathesis, at the version the fuzz test expects, unless `st` on PATH is
# that one already; kept under the target dir so reruns reuse it.
schemathesis=4.32.5
if ! st --version 2>/dev/null | grep -qF "$schemathesis"; then
    venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/schemathesis-$schemathesis"
    if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$schemathesis"; then
        /usr/bin/python3 -m venv --clear "$venv"
        "$venv/bin/pip" install --quiet "schemathesis==$schemathesis"
    fi
    export PATH="$venv/bin:$PATH"
fi

cargo test --workspace --no-fail-fast
# Benchmarks are run by hand (see BENCHMARKS.md); here they only have to build.
cargo bench --workspace --no-run
