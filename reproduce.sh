#!/usr/bin/env bash
# ssnet: one entry point for a fresh machine. Creates .venv on first use (reinstalls when the
# pinned requirements change), then runs a verb:
#   setup            only the environment
#   test             the test suite (CPU, a few minutes on 2 cores)
#   table1|2|3       a paper table end to end (default: quick profile on CPU, paper on GPU)
#   all              table1, table2 and table3
#   sunnybrook       UNet and SSNet on the real Sunnybrook patients (LV myocardium, patient-wise folds)
#   figures          PNG figures from a profile's tables and runs (results/<profile>/figures/)
# Extra arguments go to the verb, e.g. ./reproduce.sh table1 --profile paper --seeds 0,1,2,
# ./reproduce.sh table1 --launcher slurm (one job per run; rerun later to collect), ./reproduce.sh figures --profile quick.
# Without --profile, table1|2|3 use the paper profile when a CUDA device is present, else quick.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

setup() {
  local stamp="$VENV/.ssnet-install" want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "reproduce.sh: installing the environment into $VENV (first run takes a few minutes)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
}

verb=${1:-help}
shift || true
case "$verb" in
  setup) setup ;;
  test)
    setup
    # two pytest workers, one BLAS/OpenMP thread each: no oversubscription of a 2-core machine
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec "$VENV/bin/python" -m pytest -q -n 2 --durations=10 "$@" ;;
  table1|table2|table3)
    setup
    exec "$VENV/bin/ssnet" reproduce "$verb" "$@" ;;
  sunnybrook)
    setup
    exec "$VENV/bin/ssnet" reproduce sunnybrook "$@" ;;
  all)
    setup
    for t in table1 table2 table3; do "$VENV/bin/ssnet" reproduce "$t" "$@"; done ;;
  figures)
    setup
    exec "$VENV/bin/ssnet" figures "$@" ;;
  help|-h|--help)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "reproduce.sh: unknown verb '$verb' (setup, test, table1, table2, table3, sunnybrook, all, figures)" >&2; exit 2 ;;
esac
