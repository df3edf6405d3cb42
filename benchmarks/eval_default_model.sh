#!/usr/bin/env bash
# Measure the bundled default model with the evaluation suite; reports land in benchmarks/default-model/.
#   bash benchmarks/eval_default_model.sh [N]      (N clips per split, default 200)
# MODEL_CARD.md quotes these reports.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KINEMA:-.venv/bin/kinema}
N=${1:-200}
MODEL=${MODEL:-src/kinema/weights/default}
OUT=benchmarks/default-model
mkdir -p "$OUT"
# VAE reconstructions of held-out renders (PSNR + every tracker metric)
$K eval --vae "$MODEL" --suite t2v --split heldout --n "$N" -o "$OUT/vae-heldout" | tee "$OUT/vae-heldout.txt"
# text-to-video on the in-distribution test split, the compositional held-out split and out-of-distribution
for split in test heldout ood; do
  $K eval --model "$MODEL" --suite t2v --split "$split" --n "$N" -o "$OUT/t2v-$split" | tee "$OUT/t2v-$split.txt"
done
# the generation modes (image-to-video, extend, loop, connect, edit, 20 s video)
$K eval-modes --model "$MODEL" --n "$N" --long-n 4 --modes i2v,extend,extend_backward,loop,connect,edit,long \
  -o "$OUT/modes/all-heldout" | tee "$OUT/modes/all-heldout.txt"
# the refiner (three generations per clip: about 12 s each)
$K eval-modes --model "$MODEL" --n "$N" --modes refine -o "$OUT/modes/refine-heldout" | tee "$OUT/modes/refine-heldout.txt"
rm -f "$OUT"/*/report.html.tmp
# the few-step student (--fast) against the full-step model on two seeds of the held-out split (400 clips each)
mkdir -p "$OUT/fast"
for seed in 0 1; do
  $K eval --model "$MODEL" --suite t2v --split heldout --n "$N" --seed "$seed" --fast -o "$OUT/fast/t2v-heldout-seed$seed" | tee "$OUT/fast/t2v-heldout-seed$seed.txt"
done
$K eval --model "$MODEL" --suite t2v --split heldout --n "$N" --seed 1 -o "$OUT/fast/t2v-heldout-teacher-seed1" | tee "$OUT/fast/t2v-heldout-teacher-seed1.txt"
