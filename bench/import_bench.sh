#!/usr/bin/env bash
# End-to-end import benchmark (not a test: it gates nothing). Creates a SoftHSM token
# in a temporary directory, the profile's keys, a synthetic issuer file of N cards
# (CMS AES-256-GCM), imports it and reports cards/s and the import's peak RSS.
#
#   bench/import_bench.sh [CARDS] [PROFILE]
#     CARDS    default 1000000
#     PROFILE  default config/profiles/acme-import-xml.xml; "nopin" = the same profile
#              without its field-encrypted PIN block (no per-card HSM translation)
#
# Needs a release build (scripts/setup.sh release). Prints one line per measure and a
# JSON summary on the last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/build/release/pipeline/persoflow"
cards="${1:-1000000}"
profile="${2:-$root/config/profiles/acme-import-xml.xml}"
work="$(mktemp -d /tmp/persoflow-bench-XXXXXX)"
[[ "${KEEP_WORK:-0}" == "1" ]] && echo "work: $work" || trap 'rm -rf "$work"' EXIT
if [[ "$profile" == "nopin" ]]; then
  # Drop the <attribute name="pin_block" .../> element (it spans three lines).
  awk '/<attribute name="pin_block"/ {skip=1} skip && /\/>/ {skip=0; next} !skip' \
    "$root/config/profiles/acme-import-xml.xml" | grep -v 'key-class name="secret"' >"$work/profile.xml"
  profile="$work/profile.xml"
fi

mkdir -p "$work/tokens"
export SOFTHSM2_CONF="$work/softhsm2.conf"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin 1234 >/dev/null
export PERSOFLOW_TOKEN=bench PERSOFLOW_PIN=1234
pf() { "$bin" "$@"; }
for k in dkep-pan dkep-track dkep-general; do pf keys generate --label $k --type aes256 --usage encrypt,decrypt >/dev/null; done
pf keys generate --label dkep-secret --type aes256 --usage encrypt,decrypt,wrap,unwrap >/dev/null
pf keys generate --label xof-integrity --type aes256 --usage sign,verify >/dev/null
pf keys generate --label pin-tk-acme --type aes128 --usage wrap,unwrap >/dev/null
tk="$(openssl rand -hex 32)"
printf '%s\n' "$tk" >"$work/c1"
# Two components whose XOR is tk: tk itself and 00..01 (then tk xor 01 in the last byte).
printf '%s\n' "$(printf '00%.0s' {1..31})01" >"$work/c2"
pf keys import --label tk-acme-01 --type aes256 --usage unwrap --component-file "$work/c1" \
  --component-file "$work/c2" >/dev/null 2>&1
last=$(( 16#${tk: -2} ^ 1 ))
tk="${tk:0:62}$(printf '%02x' "$last")"

t0=$(date +%s.%N)
pf gen-issuer --profile "$profile" --cards "$cards" --out "$work/in.der" --kek-id A1B2C3D4 --tk-hex "$tk" \
  --content-cipher aes-256-gcm --seed 1 >/dev/null
t1=$(date +%s.%N)
/usr/bin/time -f '%M %e %U %S' -o "$work/time" \
  "$bin" import --profile "$profile" --in "$work/in.der" --out "$work/out.xof" --report "$work/report.json" >/dev/null
read -r rss_kb wall user sys <"$work/time"
in_bytes=$(stat -c %s "$work/in.der")
out_bytes=$(stat -c %s "$work/out.xof")
rate=$(awk -v c="$cards" -v w="$wall" 'BEGIN { printf "%.0f", c / w }')
cpu=$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.0f", 100 * (u + s) / w }')
echo "cards:          $cards ($(basename "${2:-acme-import-xml.xml}"))"
echo "issuer file:    $in_bytes bytes (generated in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s)"
echo "import:         $wall s wall, $rate cards/s, CPU $cpu% (of $(nproc) cores x 100%)"
echo "peak RSS:       $((rss_kb / 1024)) MiB"
echo "XOF:            $out_bytes bytes"
printf '{"cards": %s, "import_seconds": %s, "cards_per_second": %s, "peak_rss_kib": %s, "cpu_percent": %s, "xof_bytes": %s}\n' \
  "$cards" "$wall" "$rate" "$rss_kb" "$cpu" "$out_bytes"
