#!/usr/bin/env bash
# Checks the dependency direction of docs/architecture.md:
#   engine <- {config, formats, hsm} <- pipeline
# A folder may include its own headers and those of the folders it depends on;
# siblings never include each other; only pipeline/ may include TBB's flow graph.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

declare -A allowed=(
  [engine]="engine"
  [config]="engine config"
  [formats]="engine formats"
  [hsm]="engine hsm"
  [pipeline]="engine config formats hsm pipeline"
)
status=0
for folder in "${!allowed[@]}"; do
  while IFS= read -r line; do
    file="${line%%:*}"
    inc="$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$line")"
    case " ${allowed[$folder]} " in
      *" $inc "*) ;;
      *) echo "layering: $file includes $inc/ (allowed for $folder/: ${allowed[$folder]})"; status=1 ;;
    esac
  done < <(grep -rHE '^#include "(engine|config|formats|hsm|pipeline)/' "$folder" --include='*.h' --include='*.cpp' || true)
done
if grep -rlE '#include <(oneapi/)?tbb/flow_graph' engine config formats hsm 2>/dev/null; then
  echo "layering: only pipeline/ may include the TBB flow graph"
  status=1
fi
[[ $status -eq 0 ]] && echo "layering: ok (engine <- {config, formats, hsm} <- pipeline)"
exit $status
