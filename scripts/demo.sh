#!/usr/bin/env bash
# The persoflow demo: installs the dependencies, builds, then runs the key ceremony
# end to end against a brand-new SoftHSM token:
#   1. a fresh token in build/demo/ (its own softhsm2.conf; nothing shared);
#   2. keys generated inside the HSM for every key class of docs/keys.md;
#   3. a transport key imported from two clear components, each checked by its KCV
#      (KCVs computed independently with the openssl command);
#   4. the key list, as a table and as JSON (build/demo/keys.json).
# The import and prep stages join the demo as they land.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" release

demo="$root/build/demo"
bin="$root/build/release/pipeline/persoflow"
module="$(find /usr/lib -name libsofthsm2.so -path '*softhsm*' | head -n 1)"
rm -rf "$demo"
mkdir -p "$demo/tokens"
chmod 700 "$demo"

export SOFTHSM2_CONF="$demo/softhsm2.conf"
cat >"$SOFTHSM2_CONF" <<CONF
directories.tokendir = $demo/tokens
objectstore.backend = file
log.level = ERROR
CONF

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s.%N)

step "1. A new SoftHSM token 'persoflow-demo'"
so_pin="$(openssl rand -hex 8)"
user_pin="$(openssl rand -hex 8)"
softhsm2-util --init-token --free --label persoflow-demo --so-pin "$so_pin" --pin "$user_pin" | sed 's/^/   /'
# The PIN reaches persoflow through a 0600 file, never the command line.
umask 077
printf '%s\n' "$user_pin" >"$demo/user.pin"
cat >"$demo/persoflow.conf" <<CONF
# persoflow configuration for the demo (docs/configuration.md)
[hsm]
module = $module
token = persoflow-demo
pin_file = $demo/user.pin
max_sessions = 4
CONF
pf() { "$bin" --config "$demo/persoflow.conf" "$@"; }

step "2. Keys generated inside the HSM (sensitive, non-extractable, only the usages asked for)"
pf keys generate --label dkep-pan     --type aes256 --usage encrypt,decrypt
pf keys generate --label dkep-track   --type aes256 --usage encrypt,decrypt
pf keys generate --label dkep-secret  --type aes256 --usage encrypt,decrypt,wrap,unwrap
pf keys generate --label kmc-scp03    --type aes128 --usage derive
pf keys generate --label kmc-scp02    --type des2   --usage derive
pf keys generate --label imk-ac       --type des2   --usage derive
pf keys generate --label xof-integrity --type aes256 --usage sign,verify

step "3. Transport key imported from two components, each checked by its KCV"
# Two custodians' components, made here with openssl; their KCVs computed by openssl
# too (AES-ECB of 01 x 16, first 3 bytes), so the HSM's check is independent.
kcv_aes() { printf '01%.0s' {1..16} | xxd -r -p | openssl enc -aes-256-ecb -K "$1" -nopad | xxd -p -c 64 | cut -c1-6 | tr a-f A-F; }
xor_hex() {
  local a="$1" b="$2" out="" i
  for ((i = 0; i < ${#a}; i += 2)); do out+="$(printf '%02X' $((16#${a:i:2} ^ 16#${b:i:2})))"; done
  echo "$out"
}
declare -a comp
for i in 1 2; do
  c="$(openssl rand -hex 32 | tr a-f A-F)"
  comp[$i]="$c"
  printf '# component %s of tk-acme-01 (custodian %s)\n%s\nKCV: %s\n' "$i" "$i" "$c" "$(kcv_aes "$c")" >"$demo/component$i.txt"
  echo "   component $i: KCV $(kcv_aes "$c") (on the custodian's form)"
done
expected_kcv="$(kcv_aes "$(xor_hex "${comp[1]}" "${comp[2]}")")"
comp=()
pf keys import --label tk-acme-01 --type aes256 --usage unwrap,wrap \
  --component-file "$demo/component1.txt" --component-file "$demo/component2.txt" | tee "$demo/import.txt"
# Cross-check: the KCV the HSM reports for the combined key equals the one openssl
# computes from the XOR of the two components.
if ! grep -q "KCV:         $expected_kcv" "$demo/import.txt"; then
  echo "demo: the combined key's KCV differs from openssl's $expected_kcv" >&2
  exit 1
fi
echo "   cross-check: openssl computes the same KCV for the combined key ($expected_kcv)"
rm -f "$demo/import.txt"
# The clear components have done their job: destroy them.
shred -u "$demo/component1.txt" "$demo/component2.txt"

step "4. The token's keys"
pf keys list
pf keys list --json >"$demo/keys.json"

end=$(date +%s.%N)
count=$(grep -c '"label"' "$demo/keys.json")
step "Summary"
printf '   token:     persoflow-demo (%s)\n' "$demo/tokens"
printf '   keys:      %s in the HSM, none extractable (build/demo/keys.json)\n' "$count"
elapsed="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
printf '   ceremony:  %s s end to end (keygen, import with KCV checks, listing)\n' "$elapsed"
printf '   next:      import and prep of an issuer file join this demo as they land\n'
