#!/usr/bin/env bash
# Model reach on a CUDA machine, for the families added last: each by its Hugging Face id from a
# pre-filled cache with HF_HUB_OFFLINE=1, then from a local model folder holding the same files
# (two runs in a row: their pools must be identical), and `encgraph predict` of the same folder;
# the independent ladder measurement for Llama 4, Kimi-VL and Step3-VL-10B; the whole test suite on this machine's
# transformers. Reports and logs go to $OUT.
# IDS picks some of the ids below (default: all).
#   OUT=/tmp/out bash tools/gpu_families.sh
#   OUT=/tmp/out IDS="google/gemma-4-E4B-it" bash tools/gpu_families.sh
set -u
ROOT=$PWD
export PYTHONPATH=$ROOT PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
LADDER=${LADDER:-1024,2048,4096,8192}
WORK=$(mktemp -d)

python3 -c 'import huggingface_hub, transformers, torch; print("huggingface_hub", huggingface_hub.__version__, "transformers", transformers.__version__, "torch", torch.__version__, torch.cuda.get_device_name())'

# GLM-4.1V-9B-Thinking, GLM-4.5V, GLM-4.6V, Qwen3.5-27B, Qwen3-VL-30B-A3B-Instruct, Gemma 4 31B and E4B (each with its
# published processor_config.json), Kimi-K2.5 (in Moonshot's own form), ERNIE-4.5-VL-28B-A3B (in Baidu's own form),
# LFM2-VL-1.6B (with its published preprocessor_config.json), LFM2-VL-450M (its first release's form) and
# deepseek-ai/DeepSeek-OCR-2 (DeepSeek's own deepseek_vl_v2 form) are the bundled published configs. The others
# at sizes from transformers' config defaults: Step-3.7's (Step3p7Config) and Qwen3.5-MoE's (27 blocks of 1152);
# deepseek-community/DeepSeek-OCR-2 in transformers' deepseek_ocr2 form: the published DeepSeek-OCR-2 config
# as transformers saves it once read (its tower at the sizes vLLM builds).
# Step3-VL-10B in StepFun's own step_robotics form: its vision at its config class's defaults (the published
# sizes a public GGUF converter checks: 1536 wide, 47 layers, 728 px, projector stride 2) before Qwen3-8B's sizes.
python3 - "$WORK" <<'PY'
import json, sys
from transformers import DeepseekOcr2Config, Qwen3_5MoeConfig, Step3p7Config
from encgraph_profiler.models.registry import native_config
work = sys.argv[1]
# LiquidAI/LFM2-VL-450M's first-release preprocessor_config.json: no token limits (its config.json has them).
json.dump({"auto_map": {"AutoProcessor": "processing_lfm2_vl.Lfm2VlProcessor"}, "do_convert_rgb": None, "do_normalize": True,
           "do_rescale": True, "do_resize": False, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Siglip2ImageProcessor",
           "image_std": [0.5, 0.5, 0.5], "input_data_format": "channels_last", "max_num_patches": 1024, "patch_size": 16,
           "processor_class": "Lfm2VlProcessor", "resample": 2, "rescale_factor": 0.00392156862745098, "return_tensors": "pt"},
          open(f"{work}/lfm2-vl-450m.preprocessor.json", "w"))
json.dump(Step3p7Config().to_dict(), open(f"{work}/step-3.7.json", "w"))
json.dump(Qwen3_5MoeConfig().to_dict(), open(f"{work}/qwen3.5-moe.json", "w"))
json.dump({"architectures": ["StepVLForConditionalGeneration"], "model_type": "step_robotics", "understand_projector_stride": 2,
           "projector_bias": False, "image_token_id": 151679,
           "vision_config": {"width": 1536, "layers": 47, "heads": 16, "num_channels": 3, "image_size": 728, "mlp_ratio": 8960 / 1536,
                             "patch_size": 14, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "ues_cls_token": False,
                             "use_ln_pre": True, "use_ln_post": False, "use_abs_posemb": True, "use_rope2d": True, "ls_init_value": 0.1},
           "text_config": {"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
                           "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                           "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}},
          open(f"{work}/step3-vl-10b.json", "w"))
# DeepSeek-OCR-2's published config, as transformers saves it in its own deepseek_ocr2 form.
native = native_config(json.load(open("configs/deepseek-ocr-2.json")), "deepseek-ocr-2")
json.dump(DeepseekOcr2Config(**{k: v for k, v in native.items() if k != "model_type"}).to_dict(),
          open(f"{work}/deepseek-ocr-2.json", "w"))
PY
# A Hugging Face cache as huggingface_hub lays it out, and a local model folder, per model.
python3 - "$WORK" <<'PY'
import hashlib, os, sys
from pathlib import Path
work = Path(sys.argv[1])
models = {  # id: {file in the repository: its source here}
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": {"config.json": "configs/llama-4-scout-17b-16e.json"},
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": {"config.json": "configs/smolvlm2-500m.json"},
    "zai-org/GLM-4.1V-9B-Thinking": {"config.json": "configs/glm-4.1v-9b.json"},
    "zai-org/GLM-4.5V": {"config.json": "configs/glm-4.5v.json"},
    "zai-org/GLM-4.6V": {"config.json": "configs/glm-4.6v.json"},
    "OpenGVLab/InternVL3-1B": {"config.json": "configs/internvl3-1b.json"},
    "baidu/ERNIE-4.5-VL-28B-A3B-PT": {"config.json": "configs/ernie-4.5-vl-28b-a3b.json"},
    "moonshotai/Kimi-K2.5": {"config.json": "configs/kimi-k2.5.json"},
    "moonshotai/Kimi-VL-A3B-Instruct": {"config.json": "configs/kimi-vl-a3b.json"},
    "LiquidAI/LFM2-VL-1.6B": {"config.json": "configs/lfm2-vl-1.6b.json",
                              "preprocessor_config.json": "tests/data/published/lfm2-vl-1.6b.preprocessor_config.json"},
    "LiquidAI/LFM2-VL-450M": {"config.json": "configs/lfm2-vl-450m.json", "preprocessor_config.json": work / "lfm2-vl-450m.preprocessor.json"},
    "google/gemma-4-E4B-it": {"config.json": "configs/gemma-4-e4b.json", "processor_config.json": "tests/data/published/gemma-4-it.processor_config.json"},
    "google/gemma-4-31B-it": {"config.json": "configs/gemma-4-31b.json", "processor_config.json": "tests/data/published/gemma-4-it.processor_config.json"},
    "stepfun-ai/Step-3.7-Flash": {"config.json": work / "step-3.7.json"},
    "stepfun-ai/Step3-VL-10B": {"config.json": work / "step3-vl-10b.json"},
    "deepseek-community/DeepSeek-OCR-2": {"config.json": work / "deepseek-ocr-2.json"},
    "deepseek-ai/DeepSeek-OCR-2": {"config.json": "configs/deepseek-ocr-2.json"},
    "Qwen/Qwen3.5-27B": {"config.json": "configs/qwen3.5-27b.json"},
    "Qwen/Qwen3.5-35B-A3B": {"config.json": work / "qwen3.5-moe.json"},
    "Qwen/Qwen3-VL-30B-A3B-Instruct": {"config.json": "configs/qwen3-vl-30b-a3b.json"},
}
for repo_id, files in models.items():
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = work / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True); (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit; snap.mkdir(parents=True)
    local = work / "local" / repo_id.replace("/", "--"); local.mkdir(parents=True)
    for name, source in files.items():
        data = Path(source).read_bytes()
        blob = repo / "blobs" / hashlib.sha1(data).hexdigest()
        blob.parent.mkdir(exist_ok=True); blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
        (local / name).write_bytes(data)
PY

ALL="meta-llama/Llama-4-Scout-17B-16E-Instruct HuggingFaceTB/SmolVLM2-500M-Video-Instruct zai-org/GLM-4.1V-9B-Thinking zai-org/GLM-4.5V zai-org/GLM-4.6V OpenGVLab/InternVL3-1B baidu/ERNIE-4.5-VL-28B-A3B-PT moonshotai/Kimi-K2.5 moonshotai/Kimi-VL-A3B-Instruct LiquidAI/LFM2-VL-1.6B LiquidAI/LFM2-VL-450M google/gemma-4-E4B-it google/gemma-4-31B-it stepfun-ai/Step-3.7-Flash stepfun-ai/Step3-VL-10B deepseek-community/DeepSeek-OCR-2 deepseek-ai/DeepSeek-OCR-2 Qwen/Qwen3.5-27B Qwen/Qwen3.5-35B-A3B Qwen/Qwen3-VL-30B-A3B-Instruct"
for id in ${IDS:-$ALL}; do
  name=${id//\//--}
  HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 python3 cli.py profile --model "$id" --budgets $LADDER --json "$OUT/$name.hf-id.json" >"$OUT/$name.hf-id.log" 2>&1
  echo "$id by id (offline cache) rc=$?"
  python3 cli.py profile --model "$WORK/local/$name" --budgets $LADDER --json "$OUT/$name.local.json" >"$OUT/$name.local.log" 2>&1
  echo "$id from a local folder rc=$?"
  python3 cli.py predict --model "$WORK/local/$name" --budgets $LADDER --json "$OUT/$name.predicted.json" >"$OUT/$name.predicted.log" 2>&1
  echo "$id predicted rc=$?"
done
case " ${IDS:-$ALL} " in *" meta-llama/"*) python3 tools/bare_ladder.py configs/llama-4-scout-17b-16e.json $LADDER | tee "$OUT/llama4-bare.txt";; esac
case " ${IDS:-$ALL} " in *" stepfun-ai/Step3-VL-10B "*) python3 tools/bare_ladder.py "$WORK/step3-vl-10b.json" $LADDER | tee "$OUT/step3-vl-bare.txt";; esac
case " ${IDS:-$ALL} " in *" moonshotai/Kimi-VL-A3B-Instruct "*) python3 tools/bare_ladder.py configs/kimi-vl-a3b.json $LADDER varlen | tee "$OUT/kimi-vl-bare.txt";; esac

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    pool = next(p for p in r["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
    s = r["settings"]
    print(f"{path.name}: model {s['model']} revision {s.get('revision')} commit {s.get('commit')} complete {r.get('complete')} "
          f"replay {[b['replay_matches_eager'] for b in r['budgets']]} pool {pool:,} B "
          f"per graph {[(b.get('path') or '') + str(b['budget']) + ' ' + str(b['pool_growth_bytes']) for b in r['budgets']]}")
    print("   ", s.get("layout"))
PY
python3 -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-tests} 2>&1 | tail -6
