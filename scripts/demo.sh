#!/usr/bin/env bash
# The persoflow demo: installs the dependencies, builds, then runs end to end against
# a brand-new SoftHSM token:
#   1. a fresh token in build/demo/ (its own softhsm2.conf; nothing shared);
#   2. keys generated inside the HSM for every key class of docs/keys.md;
#   3. a transport key imported from two clear components, each checked by its KCV
#      (KCVs computed independently with the openssl command);
#   4. the key list, as a table and as JSON (build/demo/keys.json);
#   5. a synthetic issuer file (DEMO_CARDS cards, default 20000) encrypted with
#      `openssl cms` under the transport key;
#   6. import into the XOF intermediate (decryption and re-encryption in the HSM), with
#      a reject report and a JSON run report; `inspect` verifies and summarizes it;
#   7. the SE registry imported from the issuer's CSV;
#   8. prep: counters reserved, card keys diversified in the HSM, SCP03 scripts wrapped
#      into a script bundle; one card's script printed;
#   9. the same issuer file through `persoflow run` (import + prep streamed in one flow
#      graph), with fresh counters, into build/demo/nightly/;
#  10. a TSM onboarding of 1,000 SEs (config/profiles/tsm-sp-onboarding.xml): three secure
#      channels per SE, key rotation of the service provider's SD, into build/demo/tsm/.
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
pf keys generate --label dkep-general --type aes256 --usage encrypt,decrypt
pf keys generate --label dkep-secret  --type aes256 --usage encrypt,decrypt,wrap,unwrap
# The issuer's PIN transport key; wrap is there only because the demo plays the issuer too.
pf keys generate --label pin-tk-acme  --type aes128 --usage wrap,unwrap
pf keys generate --label kmc-scp03    --type aes128 --usage sign
# The service provider's master key of the TSM reference profile (its SD's key set, step 10).
pf keys generate --label kmc-sp       --type aes128 --usage sign
pf keys generate --label host-challenge --type aes128 --usage sign
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
# The demo also plays the issuer, who holds the transport key in clear to encrypt its
# files with openssl; a bureau never sees this value.
issuer_tk="$(xor_hex "${comp[1]}" "${comp[2]}")"
expected_kcv="$(kcv_aes "$issuer_tk")"
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

cards="${DEMO_CARDS:-20000}"
profile="$root/config/profiles/acme-debit-scp03.xml"

step "5. The issuer: $cards synthetic cards, encrypted with openssl cms under the transport key"
pf gen-issuer --profile "$profile" --cards "$cards" --out "$demo/generated.der" --kek-id A1B2C3D4 \
  --tk-hex "$issuer_tk" --plain "$demo/records.xml" --seed 2026 \
  --registry-csv "$demo/registry.csv"
openssl cms -encrypt -binary -aes-256-gcm -outform DER -secretkey "$issuer_tk" -secretkeyid A1B2C3D4 \
  -in "$demo/records.xml" -out "$demo/acme-issuer-file.der"
shred -u "$demo/records.xml" "$demo/generated.der"
issuer_tk=""
echo "   $demo/acme-issuer-file.der: $(stat -c %s "$demo/acme-issuer-file.der") bytes (CMS AuthEnvelopedData, AES-256-GCM)"

step "6. Import: decrypt in the HSM, validate, re-encrypt under the DKeps into the XOF"
pf import --profile "$profile" --in "$demo/acme-issuer-file.der" --out "$demo/acme.xof" \
  --rejects "$demo/acme-rejects.jsonl" --report "$demo/import-report.json" --max-rejects 0.1%
pf inspect "$demo/acme.xof"
echo "   one card, as an operator sees it (values masked or hidden per the profile):"
pf inspect "$demo/acme.xof" --card C00000000001 --profile "$profile" | sed -n '/card C00000000001/,$p' 

step "7. The SE registry: one SE per card (KDD, ISD, SCP03 i=70, KVN 30, next counter)"
pf registry import --db "$demo/registry.db" --csv "$demo/registry.csv"
pf registry show --db "$demo/registry.db" --se SE0000000001

step "8. Prep: counters reserved, card keys diversified in the HSM, SCP03 scripts wrapped offline"
pf prep --profile "$profile" --xof "$demo/acme.xof" --registry "$demo/registry.db" --out "$demo/acme.bundle" \
  --rejects "$demo/prep-rejects.jsonl" --report "$demo/prep-report.json" --max-rejects 0.1%
pf inspect "$demo/acme.bundle"
echo "   card C00000000001's script, as the perso station replays it:"
pf inspect "$demo/acme.bundle" --card C00000000001 --format apdu | sed 's/^/   /'

step "9. The nightly job in one command: persoflow run (import and prep streamed, fresh counters)"
rm -rf "$demo/nightly"
pf run --profile "$profile" --in "$demo/acme-issuer-file.der" --registry "$demo/registry.db" \
  --out-dir "$demo/nightly" --max-rejects 0.1%
if cmp -s "$demo/nightly/acme-issuer-file.xof" "$demo/acme.xof"; then
  echo "   nightly/acme-issuer-file.xof is byte for byte build/demo/acme.xof (same issuer file)"
else
  echo "   error: run's XOF differs from import's" >&2
  exit 1
fi
pf registry reservations --db "$demo/registry.db"

step "10. A TSM onboarding (config/profiles/tsm-sp-onboarding.xml): 1,000 embedded SEs, three secure channels each"
# The ISD creates the service provider's SD, instantiates the applet and extradites it; the
# SP SD, still with the ISD's keys, gets the SP's own key set by PUT KEY (keys wrapped under
# the session's K-DEK in the HSM); a third channel with the new keys personalizes it.
tsm="$root/config/profiles/tsm-sp-onboarding.xml"
rm -rf "$demo/tsm"
mkdir -p "$demo/tsm"
pf gen-issuer --profile "$tsm" --cards 1000 --out "$demo/tsm/onboarding.der" --kek-id A1B2C3D4 \
  --tk pkcs11:object=tk-acme-01 --seed 7 --registry-csv "$demo/tsm/registry.csv"
pf registry import --db "$demo/tsm/registry.db" --csv "$demo/tsm/registry.csv"
pf run --profile "$tsm" --in "$demo/tsm/onboarding.der" --registry "$demo/tsm/registry.db" --out-dir "$demo/tsm"
echo "   card C00000000001's three sessions (labels only):"
pf inspect "$demo/tsm/onboarding.bundle" --card C00000000001 --format apdu | grep -E '^# (session|sequence counter|SELECT|PUT KEY|INSTALL|SET STATUS)' \
  | sed 's/^/   /'

end=$(date +%s.%N)
count=$(grep -c '"label"' "$demo/keys.json")
import_rate="$(grep -o '"cards_per_second": [0-9.]*' "$demo/import-report.json" | awk '{printf "%.0f", $2}')"
prep_rate="$(grep -o '"cards_per_second": [0-9.]*' "$demo/prep-report.json" | awk '{printf "%.0f", $2}')"
run_rate="$(grep -o '"cards_per_second": [0-9.]*' "$demo/nightly/acme-issuer-file.report.json" | awk '{printf "%.0f", $2}')"
step "Summary"
printf '   token:     persoflow-demo (%s)\n' "$demo/tokens"
printf '   keys:      %s in the HSM, none extractable (build/demo/keys.json)\n' "$count"
printf '   import:    %s cards -> build/demo/acme.xof at %s cards/s (build/demo/import-report.json)\n' "$cards" "$import_rate"
elapsed="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
printf '   prep:      %s cards -> build/demo/acme.bundle at %s cards/s (build/demo/prep-report.json)\n' "$cards" "$prep_rate"
printf '   run:       %s cards -> build/demo/nightly/ (XOF + bundle in one pass) at %s cards/s\n' "$cards" "$run_rate"
tsm_rate="$(grep -o '"cards_per_second": [0-9.]*' "$demo/tsm/onboarding.report.json" | awk '{printf "%.0f", $2}')"
printf '   tsm:       1000 SEs onboarded (3 secure channels, key rotation) -> build/demo/tsm/ at %s cards/s\n' "$tsm_rate"
printf '   total:     %s s end to end (ceremony, issuer file, import, prep, run, inspection)\n' "$elapsed"
