#!/usr/bin/env bash
# Coverage-guided fuzzing of the wire codec and block checks, the state
# machines and the schema decoder with atheris (the "fuzz" extra).
#
#   bash scripts/fuzz.sh                      # every harness, 60 s each
#   bash scripts/fuzz.sh --time 120 wire      # one harness, 120 s
#   bash scripts/fuzz.sh --time 600 -- -jobs=2  # extra libFuzzer options
#   bash scripts/fuzz.sh --save-seeds         # copy the kept corpus into
#                                             # tests/adversarial/fuzz_seeds.json
#
# Harnesses: wire, states, schema, rings, names (fuzz/fuzz_<name>.py). A corpus grows in
# fuzz/corpus/<name>/ (not committed); a crash leaves its input in
# fuzz/crashes/<name>-crash-*: add it to REGRESSIONS in
# tests/adversarial/test_adv_fuzz.py and fix the bug. CI runs the same
# harness bodies under hypothesis, so this script is for longer runs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
save_seeds=0
names=()
extra=()
while (($#)); do
    case "$1" in
        --time) seconds="$2"; shift 2 ;;
        --time=*) seconds="${1#--time=}"; shift ;;
        --save-seeds) save_seeds=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done
((${#names[@]})) || names=(wire states schema rings names)

if ((save_seeds)); then
    # The corpus the runs kept (inputs that reached new coverage) replays in
    # CI: tests/adversarial/test_adv_fuzz.py::test_fuzz_corpus_and_regressions.
    .venv/bin/python - <<'PY'
import json, pathlib
root = pathlib.Path("fuzz/corpus")
out = {d.name: sorted(f.read_bytes().hex() for f in d.iterdir() if f.is_file())
       for d in sorted(root.iterdir()) if d.is_dir()}
pathlib.Path("tests/adversarial/fuzz_seeds.json").write_text(json.dumps(out, indent=1, sort_keys=True))
print({k: len(v) for k, v in out.items()})
PY
    exit 0
fi

if ! .venv/bin/python -c 'import atheris' >/dev/null 2>&1; then
    bash scripts/install.sh test,fuzz
fi

status=0
for name in "${names[@]}"; do
    harness="fuzz/fuzz_${name}.py"  # run through fuzz/run.py
    [ -f "$harness" ] || { echo "fuzz.sh: no harness $harness" >&2; exit 2; }
    mkdir -p "fuzz/corpus/$name" fuzz/crashes
    echo "== $name: ${seconds} s"
    if ! .venv/bin/python fuzz/run.py "$name" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -artifact_prefix="fuzz/crashes/${name}-" \
            -print_final_stats=1 "${extra[@]}" "fuzz/corpus/$name"; then
        echo "== $name: FAILED (input saved under fuzz/crashes/)" >&2
        status=1
    fi
done
exit $status
