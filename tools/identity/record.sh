#!/bin/sh
# tools/identity/record.sh - `make identity-fixtures`: install the pinned @azure/identity
# (package-lock.json) into a temp dir, and record its requests against a loopback server
# (capture.mjs) into tools/identity/fixtures/sdk-requests.json. Loopback only: a private CA in
# NODE_EXTRA_CA_CERTS, disableInstanceDiscovery, AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS, and
# HTTPS_PROXY/HTTP_PROXY at a dead loopback port with NO_PROXY=127.0.0.1,localhost, so that a
# request to anywhere else fails. The 410 schedule waits as the SDK does (about 10 s).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/fixtures/sdk-requests.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cp "$here/package.json" "$here/package-lock.json" "$here/capture.mjs" "$tmp/"
(cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# the private CA and a certificate for 127.0.0.1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=acscall identity capture CA" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tmp/key.pem" -out "$tmp/req.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/req.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 2 \
  -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>/dev/null

# a fake az on PATH: records its arguments, prints a token
mkdir -p "$tmp/bin"
cat >"$tmp/bin/az" <<EOF
#!/bin/sh
echo "\$*" >> "$tmp/bin/calls"
printf '{"accessToken":"tok","expiresOn":"2030-01-01 00:00:00.000000","expires_on":1893456000,"tokenType":"Bearer"}\n'
EOF
chmod +x "$tmp/bin/az"

mkdir -p "$(dirname "$out")"
cd "$tmp"
env -i PATH="$tmp/bin:/usr/local/bin:/usr/bin:/bin" HOME="$tmp" NODE_EXTRA_CA_CERTS="$tmp/ca.pem" \
  HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  http_proxy=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
  node capture.mjs "$tmp/cert.pem" "$tmp/key.pem" "$tmp/bin" "$out"
echo "identity-fixtures: wrote $out"
