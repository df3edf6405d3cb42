#!/usr/bin/env bash
# Reproduce the bundled default model (kinema-world) from nothing, on a CPU, with Kinema's own commands.
# Every stage resumes: run it again after an interruption and it continues where it stopped.
#   bash scripts/train_default_model.sh            # or: make default-model
# Stages and their wall time on the 2-core development machine are in MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KINEMA:-.venv/bin/kinema}
OUT=${OUT:-src/kinema/weights/default}

# 1) data: 4,800 Kinema World clips in five buckets (1, 2, 4 s at 64x64; 2 s at 96x64 and 64x96)
if [ ! -f data/wd/manifest.jsonl ]; then
  make_part() { [ -f "data/wd/$1/manifest.jsonl" ] || $K world dataset --split train --n "$2" --start "$3" --size "$4" --frames "$5" --out "data/wd/$1"; }
  make_part a33 2400 0 64x64 33
  make_part a65 600 6000 64x64 65
  make_part a17 600 7500 64x64 17
  make_part w33 600 9000 96x64 33
  make_part t33 600 10500 64x96 33
  .venv/bin/python - <<'PY'
import json
with open("data/wd/manifest.jsonl.tmp", "w") as out:
    for part in ["a33", "a65", "a17", "w33", "t33"]:
        for line in open(f"data/wd/{part}/manifest.jsonl"):
            row = json.loads(line)
            row["path"], row["spec"] = f"{part}/{row['path']}", f"{part}/{row['spec']}"
            out.write(json.dumps(row) + "\n")
PY
  mv data/wd/manifest.jsonl.tmp data/wd/manifest.jsonl
fi

# 2) the VAE, on 9-frame clips rendered on the fly (one thread keeps it steady on a shared CPU)
[ -d runs/vae-default/final ] || OMP_NUM_THREADS=${VAE_THREADS:-1} $K train vae --preset world \
  --config configs/vae_default.yaml --data world:train --out runs/vae-default --resume latest

# 2b) the VAE's decoder alone, fine-tuned on 1-4 s clips (the encoder, so the latents, stay as in step 2)
[ -d runs/vae-decoder/final ] || $K train vae --preset world --config configs/vae_default_decoder.yaml \
  --data world:train --out runs/vae-decoder --resume latest

# 2c) stage 3 of the decoder, the shipped one: configs/vae_default_decoder_gpu.yaml, trained on one H200
#     beside a DiT trial (scripts/train_default_gpu.sh); it shipped as the EMA at step 5,500 of its
#     6,522-step schedule (the run hit its time limit). On a CPU it would take about 9 hours: set
#     VAE_STAGE3=0 to ship the stage-2 decoder instead.
VAE_FINAL=runs/vae-decoder/final/vae
if [ "${VAE_STAGE3:-1}" = 1 ]; then
  [ -d runs/vae-decoder-gpu/final ] || $K train vae --preset world --config configs/vae_default_decoder_gpu.yaml \
    --data world:train --out runs/vae-decoder-gpu --resume latest
  VAE_FINAL=runs/vae-decoder-gpu/final/vae
fi

# 2d) stage 4 of the decoder (shipped), on the CPU: nine rounds of 1,500 steps with a temporal loss of
#     weight 1, 3, 6, 10, 15, 20, 30, 40 and 50 against the jumps at latent-group boundaries, each from the
#     previous round (12-19 min each on 2 idle threads; 30-33 min at half speed)
prev=$VAE_FINAL
for round in 1:1.0 2:3.0 3:6.0 4:10.0 5:15.0 6:20.0 7:30.0 8:40.0 9:50.0; do
  out=runs/vae-decoder-temporal${round%%:*}
  [ -d "$out/final" ] || $K train vae --preset world --config configs/vae_default_decoder_temporal.yaml \
    --data world:train --out "$out" --resume latest --init="$prev" --loss.temporal_weight="${round#*:}"
  prev=$out/final/vae
done
VAE_FINAL=$prev

# 3) latent and text caches, then the DiT
[ -f caches/default/latents/index.json ] || $K cache latents --preset world --config configs/dit_default.yaml --data data/wd/manifest.jsonl --out caches/default
[ -f caches/default/text/index.json ] || $K cache text --preset world --config configs/dit_default.yaml --data data/wd/manifest.jsonl --out caches/default
[ -d runs/dit-default/final ] || $K train dit --preset world --config configs/dit_default.yaml \
  --data caches/default --cache caches/default --out runs/dit-default --resume latest
# stage 2 (session 19, shipped): 12,000 more steps from stage 1's weights, a fresh cosine schedule at half the lr
[ -d runs/dit-default-stage2/final ] || $K train dit --preset world --config configs/dit_default_stage2.yaml \
  --data caches/default --cache caches/default --out runs/dit-default-stage2 --resume latest

# 4) the pipeline folder (fp16) with the stage-2 DiT and the world-vocabulary prompt normaliser on:
#    the teacher of the student (step 5)
$K export runs/dit-default-stage2/final --out "$OUT" --name kinema-world \
  --description "Kinema World default model: text/image/video to 1-4 s video at 64x64, 96x64, 64x96 (CPU-trained)" \
  --sizes 64x64,96x64,64x96 --max-frames 65 --world-prompts --vae "$VAE_FINAL"

# 5) the few-step student: reflow distillation of the pipeline above (2,944 teacher pairs, then
#    3,000 steps of batch 16; about 50 + 42 min on the 2-core CPU at half its usual speed)
[ -d runs/reflow/final/dit ] || $K train reflow --model "$OUT" --data data/wd/manifest.jsonl \
  --config configs/reflow_default.yaml --out runs/reflow

# 6) the 2x refiner on the VAE of step 2 (the shipped one was trained on one GPU in 7 minutes; on the
#    2-core CPU a step takes 15-19 s, so set REFINER=0 there to skip it, or expect about a day)
if [ "${REFINER:-1}" = 1 ]; then
  [ -f caches/refiner/text/index.json ] || $K cache text --for refiner --dtype float16 --preset world \
    --config configs/refiner_default.yaml --data world:train --out caches/refiner
  [ -d runs/refiner-default/final ] || $K train refiner --preset world --config configs/refiner_default.yaml \
    --data world:train --cache caches/refiner --out runs/refiner-default --resume latest
fi

# 7) the folder again, with the student as dit_fast/ and the refiner as refiner/
REFINE_ARGS=()
[ -d runs/refiner-default/final ] && REFINE_ARGS=(--refiner runs/refiner-default/final)
$K export runs/dit-default-stage2/final --out "$OUT" --name kinema-world \
  --description "Kinema World default model: text/image/video to 1-4 s video at 64x64, 96x64, 64x96 (CPU-trained)" \
  --sizes 64x64,96x64,64x96 --max-frames 65 --world-prompts --vae "$VAE_FINAL" \
  --fast-dit runs/reflow/final/dit "${REFINE_ARGS[@]}"
echo "default model written to $OUT"
