#!/usr/bin/env bash
# End-to-end prep benchmark (not a test: it gates nothing). Creates a SoftHSM token in a
# temporary directory with every key the reference prep profiles use, a synthetic issuer
# file of N cards (CMS AES-256-GCM) with its SE registry, then measures in one go:
#   run   the nightly job (import + prep streamed in one flow graph), and
#   prep  prep alone over the XOF that run wrote (fresh counters from the same registry),
# each with wall time, cards/s, CPU use and peak RSS.
#
#   bench/prep_bench.sh [CARDS] [PROFILE] [MODE]
#     CARDS    default 100000
#     PROFILE  a profile with <prep>, default config/profiles/emv-payment-scp03.xml; the
#              reference ones: acme-debit-scp03.xml, emv-payment-scp03.xml,
#              emv-payment-scp02.xml (a bare name is looked up in config/profiles/)
#     MODE     strict (default: the profile as it is) or host: a copy of the profile with
#              <prep key-handling="host"> (docs/profile.md "Key handling"), and the master
#              keys and host-challenge key generated with the encrypt usage as well, which
#              the host mode's batched derivation uses (docs/keys.md)
#
# Needs a release build (scripts/setup.sh release; BUILD= names another build directory)
# and /usr/bin/time. Prints one line per measure and a JSON summary on the last line.
# KEEP_WORK=1 keeps the directory. SKIP_RUN=1 measures prep alone (its XOF from import).
#
# PKCS#11 calls per card, by function: when the build has the fault-injection shim
# (build/release/tests/libpersoflow_pkcs11_fault_shim.so, docs/fault-injection.md; SHIM=
# names another), two more preps over the XOF's first 1,000 and 2,000 cards go through it
# with no fault rule, counting every call; the difference divided by 1,000 is the per-card
# sequence without the run's fixed cost (login, key lookups, self-tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD:-$root/build/release}"
bin="$build/pipeline/persoflow"
cards="${1:-100000}"
profile="${2:-emv-payment-scp03.xml}"
mode="${3:-strict}"
[[ -f "$profile" ]] || profile="$root/config/profiles/$profile"
[[ -f "$profile" ]] || { echo "no such profile: ${2:-}" >&2; exit 2; }
[[ "$mode" == "strict" || "$mode" == "host" ]] || { echo "MODE is strict or host, not $mode" >&2; exit 2; }
work="$(mktemp -d /tmp/persoflow-prep-bench-XXXXXX)"
[[ "${KEEP_WORK:-0}" == "1" ]] && echo "work: $work" || trap 'rm -rf "$work"' EXIT
enc=""  # the usage the host mode's master keys get in addition
if [[ "$mode" == "host" ]]; then
  grep -q 'key-handling="strict"' "$profile" || { echo "$profile: no key-handling=\"strict\" to switch" >&2; exit 2; }
  sed 's/key-handling="strict"/key-handling="host"/' "$profile" >"$work/$(basename "$profile")"
  profile="$work/$(basename "$profile")"
  enc=",encrypt"
fi

mkdir -p "$work/tokens"
export SOFTHSM2_CONF="$work/softhsm2.conf"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin 1234 >/dev/null
export PERSOFLOW_TOKEN=bench PERSOFLOW_PIN=1234
pf() { "$bin" "$@"; }
gen() { pf keys generate --label "$1" --type "$2" --usage "$3" >/dev/null; }
for k in dkep-pan dkep-track dkep-general; do gen $k aes256 encrypt,decrypt; done
gen dkep-secret aes256 encrypt,decrypt,wrap,unwrap
gen xof-integrity aes256 sign,verify
gen pin-tk-acme aes128 wrap,unwrap
gen host-challenge aes128 sign$enc
gen kmc-scp03 aes128 sign$enc
gen kmc-sp aes128 sign$enc   # tsm-sp-onboarding.xml: the service provider's master key (key rotation)
gen kmc-scp02 des2 derive$enc
for k in imk-ac imk-smi imk-smc; do gen $k des2 derive$enc; done
# The transport key from two components (tk and 00..01), so that gen-issuer can encrypt.
tk="$(openssl rand -hex 32)"
printf '%s\n' "$tk" >"$work/c1"
printf '%s\n' "$(printf '00%.0s' {1..31})01" >"$work/c2"
pf keys import --label tk-acme-01 --type aes256 --usage wrap,unwrap --component-file "$work/c1" \
  --component-file "$work/c2" >/dev/null 2>&1
last=$(( 16#${tk: -2} ^ 1 ))
tk="${tk:0:62}$(printf '%02x' "$last")"

t0=$(date +%s.%N)
pf gen-issuer --profile "$profile" --cards "$cards" --out "$work/in.der" --kek-id A1B2C3D4 --tk-hex "$tk" \
  --content-cipher aes-256-gcm --seed 1 --registry-csv "$work/registry.csv" >/dev/null
pf registry import --db "$work/registry.db" --csv "$work/registry.csv" >/dev/null
t1=$(date +%s.%N)

measure() {  # name, then the command; sets wall rate cpu rss_mib
  /usr/bin/time -f '%M %e %U %S' -o "$work/time" "$@" >/dev/null
  read -r rss_kb wall user sys <"$work/time"
  rate=$(awk -v c="$cards" -v w="$wall" 'BEGIN { printf "%.0f", c / w }')
  cpu=$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.0f", 100 * (u + s) / w }')
  rss_mib=$((rss_kb / 1024))
}
if [[ "${SKIP_RUN:-0}" == "1" ]]; then
  "$bin" import --profile "$profile" --in "$work/in.der" --out "$work/cards.xof" >/dev/null
  mkdir -p "$work/out" && mv "$work/cards.xof" "$work/out/cards.xof"
  run_wall=null run_rate=null run_cpu=null run_rss=null
else
  measure "$bin" run --profile "$profile" --in "$work/in.der" --registry "$work/registry.db" --out-dir "$work/out" \
    --name cards
  run_wall=$wall run_rate=$rate run_cpu=$cpu run_rss=$rss_mib
fi
measure "$bin" prep --profile "$profile" --xof "$work/out/cards.xof" --registry "$work/registry.db" \
  --out "$work/prep.bundle" --report "$work/prep-report.json"
prep_wall=$wall prep_rate=$rate prep_cpu=$cpu prep_rss=$rss_mib
apdus=$(grep -o '"apdus": [0-9]*' "$work/prep-report.json" | head -1 | awk '{print $2}')

echo "profile:        $(basename "$profile"), key-handling $mode, $cards cards (issuer file and registry made in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s)"
[[ "$run_wall" == "null" ]] || echo "run:            $run_wall s wall, $run_rate cards/s, CPU $run_cpu% (of $(nproc) cores x 100%), peak RSS $run_rss MiB"
echo "prep alone:     $prep_wall s wall, $prep_rate cards/s, CPU $prep_cpu%, peak RSS $prep_rss MiB"
echo "bundle:         $(stat -c %s "$work/prep.bundle") bytes, $apdus APDUs; XOF $(stat -c %s "$work/out/cards.xof") bytes"
calls_json="null"
shim="${SHIM:-$build/tests/libpersoflow_pkcs11_fault_shim.so}"
if [[ -f "$shim" && "$cards" -ge 2000 ]]; then
  counted_prep() {  # N: prep of the XOF's first N cards through the shim, counts in $work/calls-N.json
    PERSOFLOW_SHIM_MODULE=/usr/lib/softhsm/libsofthsm2.so PERSOFLOW_SHIM_COUNTS="$work/calls-$1.json" \
      "$bin" --module "$shim" prep --profile "$profile" --xof "$work/out/cards.xof" \
      --registry "$work/registry.db" --out "$work/calls-$1.bundle" --cards "1-$1" >/dev/null
  }
  counted_prep 1000
  counted_prep 2000
  calls_json=$(python3 - "$work/calls-1000.json" "$work/calls-2000.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
per = {k: round((b[k] - a[k]) / 1000, 4) for k in b}
per = {k: v for k, v in per.items() if v != 0}
per = dict(sorted(per.items(), key=lambda kv: -kv[1]))
print(json.dumps({"total": round(sum(per.values()), 4), "by_function": per}))
PY
)
  echo "PKCS#11 calls:  per card (prep, 2,000 minus 1,000 cards through the shim): $calls_json"
fi
printf '{"profile": "%s", "key_handling": "%s", "cards": %s, "run_seconds": %s, "run_cards_per_second": %s, "run_peak_rss_mib": %s, "prep_seconds": %s, "prep_cards_per_second": %s, "prep_peak_rss_mib": %s}\n' \
  "$(basename "$profile")" "$mode" "$cards" "$run_wall" "$run_rate" "$run_rss" "$prep_wall" "$prep_rate" "$prep_rss" \
  | sed "s/}\$/, \"pkcs11_calls_per_card\": ${calls_json//\//\\/}}/"
