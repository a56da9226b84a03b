#!/usr/bin/env bash
# Installs (once, under ~/.cache/thunderhead) and starts the real blob-store peers the tests use,
# on free loopback ports: Azurite for Azure Blob Storage and moto_server for S3. Source it: it
# exports THUNDERHEAD_TEST_AZURE and THUNDERHEAD_TEST_S3 and stops both emulators when the
# sourcing shell exits.
set -euo pipefail

cache="${THUNDERHEAD_CACHE:-$HOME/.cache/thunderhead}"
mkdir -p "$cache"

if ! command -v npm >/dev/null; then
    echo "==> installing nodejs and npm"
    apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if [ ! -x "$cache/npm/node_modules/.bin/azurite-blob" ]; then
    echo "==> installing Azurite (npm)"
    npm install --prefix "$cache/npm" azurite@3 --no-audit --no-fund --silent
fi
if [ ! -x "$cache/venv/bin/moto_server" ] || ! "$cache/venv/bin/python" -c 'import azure.storage.blob, boto3' 2>/dev/null; then
    echo "==> installing moto_server, boto3 and azure-storage-blob (PyPI)"
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install -q 'moto[server]' boto3 azure-storage-blob
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

emulators_dir=$(mktemp -d)
azure_port=$(free_port)
s3_port=$(free_port)
"$cache/npm/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$azure_port" \
    --inMemoryPersistence --disableTelemetry --skipApiVersionCheck >"$emulators_dir/azurite.log" 2>&1 &
azurite_pid=$!
"$cache/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$emulators_dir/moto.log" 2>&1 &
moto_pid=$!
stop_emulators() {
    kill "$azurite_pid" "$moto_pid" 2>/dev/null || true
    wait "$azurite_pid" "$moto_pid" 2>/dev/null || true
    rm -rf "$emulators_dir"
}
trap stop_emulators EXIT

# The well-known development account of the Azure storage emulator (public, not a secret).
dev_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
"$cache/venv/bin/python" - "$azure_port" "$s3_port" "$dev_key" <<'PY'
import sys, time
azure_port, s3_port, key = sys.argv[1], sys.argv[2], sys.argv[3]
from azure.storage.blob import BlobServiceClient
import boto3
conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{azure_port}/devstoreaccount1;")
deadline = time.time() + 60
while True:
    try:
        BlobServiceClient.from_connection_string(conn).create_container("thunderhead")
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="thunderhead")
        break
    except Exception as e:
        if time.time() > deadline:
            sys.exit(f"the blob emulators did not come up: {e}")
        time.sleep(0.5)
PY
echo "==> Azurite on 127.0.0.1:$azure_port, moto_server on 127.0.0.1:$s3_port"

export THUNDERHEAD_TEST_AZURE="az://devstoreaccount1/thunderhead?endpoint=http://127.0.0.1:$azure_port/devstoreaccount1"
export THUNDERHEAD_TEST_S3="s3://thunderhead?endpoint=http://127.0.0.1:$s3_port"
# moto accepts any key; these are its test values, not secrets.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
