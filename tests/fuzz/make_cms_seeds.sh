#!/bin/sh
# Writes the cms_envelope seeds (into DIR, default tests/fuzz/corpus/cms_envelope/; CTest
# runs it into the build tree before fuzz.cms_envelope) with `openssl cms`:
# EnvelopedData (AES-CBC) and AuthEnvelopedData (AES-GCM) under the published test KEK
# 000102..0F, DER and BER (-stream), plus truncated and tampered copies (bad-*).
set -eu
out="${1:-$(dirname "$0")/corpus/cms_envelope}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '<cards><card id="C1"/></cards>\n' > "$tmp/p1"
printf 'x' > "$tmp/p2"
: > "$tmp/p0"
kek="-secretkey 000102030405060708090A0B0C0D0E0F -secretkeyid 01"
for cipher in aes-128-cbc aes-128-gcm; do
  for p in p0 p1 p2; do
    # shellcheck disable=SC2086
    openssl cms -encrypt -binary -outform DER $kek -"$cipher" -in "$tmp/$p" \
      -out "$out/ok-$cipher-$p.der"
  done
  # shellcheck disable=SC2086
  openssl cms -encrypt -binary -stream -outform DER $kek -"$cipher" -in "$tmp/p1" \
    -out "$out/ok-$cipher-stream.ber"
  f="$out/ok-$cipher-p1.der"
  n=$(wc -c < "$f")
  head -c $((n - 5)) "$f" > "$out/bad-$cipher-truncated-end.der"
  head -c $((n / 2)) "$f" > "$out/bad-$cipher-truncated-half.der"
  { cat "$f"; printf '\000\000'; } > "$out/bad-$cipher-trailing.der"
done
