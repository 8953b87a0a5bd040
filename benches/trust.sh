#!/bin/bash
# Signature verification cost (issue 18): `hostlet pull` of the busybox test image from a
# local docker-registry into an empty store (cold) and into a store that has it (warm:
# manifest, signature and verification only), with a policy requiring a cosign signature
# (sigstoreSigned, key signed here with openssl as cosign does: ECDSA P-256 over the
# simple-signing payload) and with no policy. Prints the medians of RUNS runs, and of the
# time the signature check itself took (fetching the .sig manifest and payload, verifying),
# from the agent's debug log line "signature check". Use a release build for the issue's
# targets (benches/trust.sh target/release/hostlet).
# Usage (root): benches/trust.sh [HOSTLET_BINARY]   (default target/debug/hostlet)
set -euo pipefail
HOSTLET=${1:-target/debug/hostlet}
RUNS=${RUNS:-21}
LAYOUT=target/tmp/test-image/layout
[ -d "$LAYOUT" ] || rootfs/build.sh target/tmp/test-image >/dev/null
W=$(mktemp -d /tmp/hostlet-bench-trust-XXXXXX)
trap 'kill $REG_PID 2>/dev/null; rm -rf "$W"' EXIT
PORT=$((20000 + RANDOM % 20000)); REG=127.0.0.1:$PORT
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$W/data" "$REG" >"$W/reg.yml"
docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 & REG_PID=$!
until curl -sf "http://$REG/v2/" >/dev/null; do sleep 0.1; done
skopeo copy -q --dest-tls-verify=false --digestfile "$W/digest" "oci:$LAYOUT:test" "docker://$REG/bench/app:v1"
DIGEST=$(cat "$W/digest")
openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem"
openssl ec -in "$W/key.pem" -pubout -out "$W/cosign.pub" 2>/dev/null
S=$W/sig; mkdir -p "$S/blobs/sha256"
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$S/blobs/sha256/$d"; echo "$d $(stat -c %s "$1")"; }
printf '{"critical":{"identity":{"docker-reference":"%s/bench/app"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' "$REG" "$DIGEST" >"$W/payload"
SIG=$(openssl dgst -sha256 -sign "$W/key.pem" "$W/payload" | base64 -w0)
read -r PD PS < <(blob "$W/payload")
printf '{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$PD" >"$W/config"
read -r CD CS < <(blob "$W/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%s,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":%s,"digest":"sha256:%s","annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' "$CS" "$CD" "$PS" "$PD" "$SIG" >"$W/manifest"
read -r MD MS < <(blob "$W/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"sig"}}]}' "$MD" "$MS" >"$S/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$S/oci-layout"
skopeo copy -q --dest-tls-verify=false --preserve-digests "oci:$S:sig" "docker://$REG/bench/app:sha256-${DIGEST#sha256:}.sig"
printf '{"default":[{"type":"sigstoreSigned","keyPath":"%s","signedIdentity":{"type":"matchRepository"}}]}' "$W/cosign.pub" >"$W/signed.json"
printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$W/none.json"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The two policies alternate within each run, so that the machine's drift (other builds on
# a shared host) falls on both alike.
for _ in $(seq "$RUNS"); do
  for policy in none signed; do
    rm -rf "$W/root"
    t=$(date +%s%N); RUST_LOG=warn,hostlet::image::verify=debug "$HOSTLET" pull --root-dir "$W/root" --insecure-registry "$REG" --signature-policy "$W/$policy.json" "$REG/bench/app:v1" >"$W/out" 2>&1; ms "$t" >>"$W/$policy.cold"
    grep -o 'elapsed_us=[0-9]*' "$W/out" | cut -d= -f2 >>"$W/$policy.check"
    t=$(date +%s%N); "$HOSTLET" pull --root-dir "$W/root" --insecure-registry "$REG" --signature-policy "$W/$policy.json" "$REG/bench/app:v1" >"$W/out" 2>&1; ms "$t" >>"$W/$policy.warm"
    grep -q "signature policy: " "$W/out" || { cat "$W/out"; exit 1; }
    grep "signature policy" "$W/out" >"$W/$policy.verdict"
  done
done
for policy in none signed; do
  echo "$policy: cold pull $(median <"$W/$policy.cold") ms, warm pull $(median <"$W/$policy.warm") ms, signature check $(median <"$W/$policy.check") µs (median of $RUNS; $(cat "$W/$policy.verdict"))"
done
