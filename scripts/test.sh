#!/usr/bin/env bash
# Runs every check and test of Thunderhead on a fresh machine: formatting, lints, unit tests,
# store and provider contract tests, and end-to-end tests with real head node and agent
# processes on loopback. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pgrep >/dev/null || need_apt+=(procps)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v cc >/dev/null || need_apt+=(gcc)
# The dashboard's end-to-end tests drive a real headless Chromium.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Reuse a build directory outside the clone when there is one; it is created when missing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thunderhead/target}"
mkdir -p "$CARGO_TARGET_DIR"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# Real blob-store peers on loopback for the blob contract tests.
source scripts/emulators.sh
# Real OpenSSH servers on loopback for the ssh provider (as an unprivileged user of their own).
source scripts/peers/sshd.sh
# A real single-host Slurm cluster on loopback for the slurm provider.
source scripts/peers/slurm.sh

echo "==> cargo test"
cargo test --workspace --locked

# The REST API against its OpenAPI document: no request may get a 5xx or bring the head node
# down. Uses the binary the end-to-end tests built.
echo "==> API fuzzing (schemathesis)"
THUNDERHEAD_BIN="$CARGO_TARGET_DIR/debug/thunderhead" FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-25}" scripts/api-fuzz.sh
