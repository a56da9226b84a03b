#!/usr/bin/env bash
# Fuzzes the REST API of a throw-away head node with schemathesis, driven by the OpenAPI
# document (crates/server/src/openapi.json, served at /api/v1/openapi.json). The one check is
# that no request gets a 5xx answer or brings the head node down. Exits non-zero on a failure.
#
#   cargo build -p thunderhead && scripts/api-fuzz.sh [SCHEMATHESIS_RUN_OPTIONS...]
#
# Options given are passed on to `schemathesis run`, e.g. `--report har --report-dir DIR` to
# keep every request and answer, or `--include-path-regex '^/api/v1/jobs'`.
#
# Environment: THUNDERHEAD_BIN (default $CARGO_TARGET_DIR/debug/thunderhead), FUZZ_EXAMPLES
# (test cases per operation, default 25), FUZZ_SEED (default 1: the same run every time),
# FUZZ_TIMEOUT (seconds the whole run may take, default 1800), THUNDERHEAD_CACHE (where the
# schemathesis venv lives, default ~/.cache/thunderhead).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cache="${THUNDERHEAD_CACHE:-$HOME/.cache/thunderhead}"
target="${CARGO_TARGET_DIR:-$cache/target}"
bin="${THUNDERHEAD_BIN:-$target/debug/thunderhead}"
examples="${FUZZ_EXAMPLES:-25}"
seed="${FUZZ_SEED:-1}"
run_timeout="${FUZZ_TIMEOUT:-1800}"

if [ ! -x "$bin" ]; then
    echo "api-fuzz: no head node binary at $bin (build it: cargo build -p thunderhead, or set THUNDERHEAD_BIN)" >&2
    exit 2
fi

venv="$cache/venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q 'version 4\.'; then
    echo "==> installing schemathesis 4 into $venv (PyPI)"
    mkdir -p "$cache"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis>=4,<5"
fi
echo "==> $("$venv/bin/schemathesis" --version)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/thunderhead-fuzz.XXXXXX")
server_pgid=""
fuzz_pid=""
cleanup() {
    local status=$?
    set +e
    [ -n "$fuzz_pid" ] && kill -TERM "$fuzz_pid" 2>/dev/null && wait "$fuzz_pid" 2>/dev/null
    # The head node and what it runs in its process group, then what it deployed in groups of
    # their own (local agents and proxies): every one of them names $tmp in its command line.
    [ -n "$server_pgid" ] && kill -TERM -- "-$server_pgid" 2>/dev/null
    pgrep -f -- "$tmp" | grep -vx "$$" | xargs -r kill -TERM 2>/dev/null
    for _ in $(seq 50); do
        if ! { [ -n "$server_pgid" ] && kill -0 -- "-$server_pgid" 2>/dev/null; } && ! pgrep -f -- "$tmp" | grep -vqx "$$"; then
            break
        fi
        sleep 0.1
    done
    [ -n "$server_pgid" ] && kill -KILL -- "-$server_pgid" 2>/dev/null
    pgrep -f -- "$tmp" | grep -vx "$$" | xargs -r kill -KILL 2>/dev/null
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Requests that name directories of this machine are pointed into the sandbox, so that a
# template the fuzzer creates cannot deploy local nodes, or keep packages, anywhere else; a
# template's core quota and proxies are kept small, so that a set the fuzzer starts is a few
# processes, not thousands; and the fuzzer does not replace its own token (the rest of the run
# would be refused).
mkdir -p "$tmp/hooks" "$tmp/sandbox" "$tmp/run"
cat >"$tmp/hooks/api_fuzz_hooks.py" <<'PY'
import os
import schemathesis

SANDBOX = os.environ["API_FUZZ_SANDBOX"]
USER = os.environ.get("API_FUZZ_USER", "")
# At most 6 cores of nodes and proxies, 2 proxies, per template.
CAPS = {"quota_cores": 6, "proxies": 2}


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if USER and case.operation.path == "/api/v1/users/{name}/token" and params and params.get("name") == USER:
        params["name"] = USER + "-not"
    body = case.body
    if not isinstance(body, dict):
        return
    if case.operation.path.startswith("/api/v1/templates"):
        for key, cap in CAPS.items():
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                body[key] = cap
            elif value is None and case.method.upper() == "POST":
                body[key] = cap
    settings = body.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("work_root"), str) and settings["work_root"]:
        settings["work_root"] = os.path.join(SANDBOX, "work_root")
    store = body.get("blob_store")
    if isinstance(store, str) and store.startswith("file:"):
        body["blob_store"] = "file://" + os.path.join(SANDBOX, "blob_store")
PY

echo "==> starting a head node in $tmp"
# Its own session and process group (pgid = its pid); relative paths it is given land in $tmp.
(cd "$tmp/run" && exec setsid "$bin" server --state-dir "$tmp/state" --listen 127.0.0.1:0) >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    [ -s "$tmp/state/access.json" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "api-fuzz: the head node did not start:" >&2
        cat "$tmp/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$tmp/state/access.json" ]; then
    echo "api-fuzz: the head node wrote no access.json within 30 s" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi
server_pgid=$(ps -o pgid= -p "$server_pid" | tr -d ' ')

# url, and token and ca if the head node writes them (ca: PEM text, or the path of a PEM file).
field() {
    python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print(v if isinstance(v, str) else "")' \
        "$tmp/state/access.json" "$1"
}
url=$(field url)
token=$(field token)
user=$(field user)
ca=$(field ca)
# A request the head node refuses without reading its body (405, 401) ends its keep-alive
# connection without `Connection: close`; a request already sent on that connection then fails
# on the network, which over TLS schemathesis does not resend by itself. Such requests are sent
# again; a head node that crashed or panicked is caught below, from its process and its log.
request_args=(--request-timeout 60 --request-retries 2)
curl_args=(-sS -o /dev/null -w '%{http_code}')
# The token goes in files and the environment, never on a command line others can read.
: >"$tmp/schemathesis.toml"
if [ -n "$token" ]; then
    (umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$tmp/auth-header")
    printf '[headers]\nAuthorization = "Bearer ${API_FUZZ_TOKEN}"\n' >"$tmp/schemathesis.toml"
    curl_args+=(-H "@$tmp/auth-header")
fi
if [ -n "$ca" ]; then
    if [ -f "$ca" ]; then
        ca_file=$ca
    else
        ca_file="$tmp/ca.pem"
        printf '%s\n' "$ca" >"$ca_file"
    fi
    request_args+=(--tls-verify "$ca_file")
    curl_args+=(--cacert "$ca_file")
fi
echo "==> head node at $url (pid $server_pid, token: $([ -n "$token" ] && echo yes || echo no), ca: $([ -n "$ca" ] && echo yes || echo no))"

schema_url="$url/api/v1/openapi.json"
if [ "$(curl "${curl_args[@]}" "$schema_url" || true)" = 200 ]; then
    location=("$schema_url")
else
    # A head node that does not serve its document yet: the same document from the source tree.
    echo "==> $schema_url is not served; using $repo/crates/server/src/openapi.json"
    location=("$repo/crates/server/src/openapi.json" --url "$url")
fi

echo "==> schemathesis: $examples examples per operation, seed $seed, 1 worker"
started=$(date +%s)
(
    cd "$tmp/run"
    export PYTHONPATH="$tmp/hooks" SCHEMATHESIS_HOOKS=api_fuzz_hooks API_FUZZ_SANDBOX="$tmp/sandbox" \
        API_FUZZ_USER="$user" API_FUZZ_TOKEN="$token"
    exec timeout --foreground --kill-after=10 "$run_timeout" \
        "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" run "${location[@]}" \
        --checks not_a_server_error \
        --max-examples "$examples" \
        --seed "$seed" \
        --workers 1 \
        --exclude-path /api/v1/events \
        --generation-database none \
        --no-color \
        "${request_args[@]}" "$@"
) &
fuzz_pid=$!
# Waited for in the background, so that a signal to this script ends the run at once; a head
# node that dies ends it too (the requests that follow would only be refused).
server_died=""
while kill -0 "$fuzz_pid" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        server_died=1
        kill -TERM "$fuzz_pid" 2>/dev/null
        break
    fi
    sleep 0.2
done
status=0
wait "$fuzz_pid" || status=$?
fuzz_pid=""
elapsed=$(($(date +%s) - started))
echo "==> schemathesis took ${elapsed}s and exited with $status"
[ "$status" = 124 ] && echo "api-fuzz: the run took longer than FUZZ_TIMEOUT=${run_timeout}s" >&2

# A crash is a failure even if every answer the fuzzer saw was fine.
if [ -n "$server_died" ] || ! kill -0 "$server_pid" 2>/dev/null; then
    echo "api-fuzz: the head node is gone; the end of its log:" >&2
    tail -n 40 "$tmp/server.log" >&2
    status=1
elif grep -q 'panicked at' "$tmp/server.log"; then
    echo "api-fuzz: the head node panicked while handling a request:" >&2
    grep -A3 'panicked at' "$tmp/server.log" >&2
    [ "$status" = 0 ] && status=1
fi
exit "$status"
