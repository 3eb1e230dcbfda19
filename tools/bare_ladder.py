"""Independent check of `encgraph profile`, and the bare baseline for its wall time.

Written against torch and transformers only (no encgraph code): build the Qwen2-VL tower, Gemma 3's
SigLIP and projector, Gemma 4's vision model and embedder (one graph per budget and row width), Llama 4's
vision model and projector, Kimi-VL's MoonViT and projector (in Moonshot's
own kimi_vl form, built with transformers' Kimi-K2.5 classes) or Kimi-K2.5's (its kimi_k25 form),
Step-3.7's vision model and projector (also Step3-VL-10B's, from StepFun's own step_robotics form) or
DeepSeek-OCR 2's SAM, Qwen2 encoder and projector (these two on vLLM's two paths, each with its own
ladder), from a config, allocate every budget's inputs (vLLM's layouts) and
warm each up on the capture stream, then synchronize + empty_cache and measure the whole ladder
(largest first, one pool) by a different method from encgraph's: the caching allocator's
reserved-bytes delta and this process's NVML delta. Nothing from the warm-up stays referenced when
the baseline is taken.

    python tools/bare_ladder.py configs/qwen2-vl-7b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/gemma-3-27b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/llama-4-scout-17b-16e.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/gemma-4-31b.json 1024,2048,4096,8192 > bare.json
    python tools/bare_ladder.py configs/qwen2-vl-7b.json 1024,2048,4096,8192 varlen > bare.json
    python tools/bare_ladder.py configs/kimi-vl-a3b.json 1024,2048,4096,8192 varlen > bare.json  # kimi_vl form
    python tools/bare_ladder.py configs/kimi-k2.5.json 1024,2048,4096,8192 varlen > bare.json  # kimi_k25 form
    python tools/bare_ladder.py step3p7.json 1024,2048,4096,8192 > bare.json  # Step3p7Config().to_dict()
    python tools/bare_ladder.py step3-vl-10b.json 1024,2048,4096,8192 > bare.json  # StepFun's step_robotics form
    python tools/bare_ladder.py deepseek-ocr-2.json 1024,2048,4096,8192 > bare.json  # transformers' deepseek_ocr2 form

With ``varlen`` (Qwen2-VL, Kimi-VL, Kimi-K2.5), attention is ATen's flash kernel over the packed
images, called here directly, the segments on the device and the longest image given.
"""

import json
import math
import os
import sys
import time

started = time.perf_counter()

import pynvml  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AttentionInterface,
    DeepseekOcr2Config,
    Gemma3Config,
    Gemma4Config,
    Kimi_K25Config,
    Llama4Config,
    Qwen2VLConfig,
    SiglipVisionModel,
    Step3p7Config,
)
from transformers.masking_utils import create_causal_mask  # noqa: E402
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2VisionModel  # noqa: E402
from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector  # noqa: E402
from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel  # noqa: E402
from transformers.models.kimi_k25 import modeling_kimi_k25 as kimi  # noqa: E402
from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector, Llama4VisionModel  # noqa: E402
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel  # noqa: E402
from transformers.models.step3p7.modeling_step3p7 import Step3p7VisionModel, Step3p7VisionRotaryEmbedding  # noqa: E402
from transformers.vision_utils import (  # noqa: E402
    get_vision_cu_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)


def process_used(handle):
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == os.getpid():
            return int(proc.usedGpuMemory)
    raise SystemExit("NVML does not list this process")


def packed_flash(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling=None,
    cu_seq_lens_q=None,
    cu_seq_lens_k=None,
    max_length_q=None,
    max_length_k=None,
    **_,
):
    """ATen's flash kernel over the packed sequences: (1, heads, tokens, dim) in, (1, tokens, heads, dim) out."""
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    out = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_seq_lens_q, cu_seq_lens_k, max_length_q, max_length_k, 0.0, False, False, scale=scaling
    )[0]
    return out[None], None


def qwen2_vl(data, budgets, items, gen, attn="sdpa"):
    """Qwen2-VL: k images of grid [1, m, ceil(B / k) * m] per budget."""
    vision = Qwen2VLConfig(**data).vision_config
    m = vision.spatial_merge_size
    with torch.device("cuda"):
        tower = Qwen2VisionTransformerPretrainedModel._from_config(
            vision, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    features = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    runs = []
    for budget in budgets:
        per_item = math.ceil(budget / items)
        grid = torch.tensor([[1, m, per_item * m]] * items)
        run = {
            "hidden_states": torch.randn(items * m * m * per_item, features, generator=gen).to("cuda", torch.bfloat16),
            "grid_thw": grid.cuda(),
            "position_ids": get_vision_position_ids(grid, m).cuda(),
            "cu_seqlens": get_vision_cu_seqlens(grid).to(torch.int32),
        }
        if attn == "varlen":
            run["cu_seqlens"], run["max_seqlen"] = run["cu_seqlens"].cuda(), m * m * per_item
        runs.append(run)
    return (lambda **kwargs: tower(**kwargs).pooler_output), runs, items


def gemma3(data, budgets, items, gen):
    """Gemma 3: min(B // mm_tokens_per_image, k) images of 896 x 896 through SigLIP and the projector."""
    config = Gemma3Config(**data)
    with torch.device("cuda"):
        vision = SiglipVisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = Gemma3MultiModalProjector(config).to(torch.bfloat16).eval()
    size = config.vision_config.image_size
    runs = [
        {
            "pixel_values": torch.randn(min(b // config.mm_tokens_per_image, items), 3, size, size, generator=gen).to(
                "cuda", torch.bfloat16
            )
        }
        for b in budgets
    ]
    return (lambda pixel_values: projector(vision(pixel_values=pixel_values).last_hidden_state)), runs, items


def gemma4(data, budgets, items, gen):
    """Gemma 4 as vLLM 0.33.0 captures it: budget after budget (largest first), one graph per row width
    t of 70, 140, 280, 560, 1120 up to default_output_length, each of min(k, max(1, B // t)) rows of
    t x pool^2 patches (k = min(largest // 70, smallest)); the rows pooled, B soft tokens gathered, embedded."""
    config = Gemma4Config(**data)
    v = config.vision_config
    with torch.device("cuda"):
        vision = Gemma4VisionModel._from_config(v, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        embedder = Gemma4MultimodalEmbedder(v, config.text_config).to(torch.bfloat16).eval()
    pool, patch = v.pooling_kernel_size, v.patch_size
    items = max(1, min(budgets[0] // 70, budgets[-1]))
    runs = []
    for budget in budgets:
        for width in (t for t in (70, 140, 280, 560, 1120) if t <= v.default_output_length):
            rows = min(items, max(1, budget // width))
            side = max(r for r in range(1, math.isqrt(width) + 1) if width % r == 0)  # soft-token rows of one image
            high, wide = max(side - 1, 1), width // side  # less its last row: the rest is padding
            y, x = torch.meshgrid(torch.arange(high * pool), torch.arange(wide * pool), indexing="ij")
            positions = torch.full((rows, width * pool * pool, 2), -1, dtype=torch.long)
            positions[:, : high * wide * pool * pool] = torch.stack([x.flatten(), y.flatten()], dim=-1)
            pixels = torch.rand(rows, width * pool * pool, 3 * patch * patch, generator=gen)
            runs.append(
                {
                    "pixel_values": pixels.to("cuda", torch.bfloat16),
                    "pixel_position_ids": positions.cuda(),
                    "gather_indices": torch.zeros(budget, dtype=torch.long, device="cuda"),
                }
            )

    def forward(pixel_values, pixel_position_ids, gather_indices):
        padding = (pixel_position_ids == -1).all(dim=-1)
        embeds = vision.patch_embedder(pixel_values, pixel_position_ids, padding)
        hidden = vision.encoder(
            inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=pixel_position_ids
        ).last_hidden_state
        pooled, _ = vision.pooler(
            hidden_states=hidden,
            pixel_position_ids=pixel_position_ids,
            padding_positions=padding,
            output_length=pixel_values.shape[1] // pool**2,
        )
        if v.standardize:
            pooled = (pooled - vision.std_bias.float()) * vision.std_scale.float()
        return embedder(pooled.reshape(-1, pooled.shape[-1])[gather_indices].to(embeds.dtype))

    return forward, runs, items


def llama4(data, budgets, items, gen):
    """Llama 4: max(1, ceil(B / 144)) chunks of 336 x 336 through the vision model and the projector."""
    data["text_config"]["attn_temperature_tuning"] = bool(data["text_config"].get("attn_temperature_tuning", True))
    config = Llama4Config(**data)
    with torch.device("cuda"):
        vision = Llama4VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = Llama4MultiModalProjector(config).to(torch.bfloat16).eval()
    v = config.vision_config
    per_chunk = int((v.image_size // v.patch_size) ** 2 * v.pixel_shuffle_ratio**2)
    runs = [
        {
            "pixel_values": torch.randn(
                max(1, math.ceil(b / per_chunk)), 3, v.image_size, v.image_size, generator=gen
            ).to("cuda", torch.bfloat16)
        }
        for b in budgets
    ]

    def forward(pixel_values):
        features = vision(pixel_values).last_hidden_state
        return projector(features.view(-1, features.size(-1)))

    return forward, runs, None  # k does not apply


def kimi_moonvit(data, budgets, items, gen, attn="sdpa"):
    """Kimi-VL (Moonshot's kimi_vl form) or Kimi-K2.5 (Moonshot's kimi_k25 form, MoonViT sized by vt_*
    keys) through transformers' Kimi-K2.5 MoonViT and projector, laid out as vLLM 0.33.0's
    prepare_encoder_cudagraph_capture_inputs (kimi_vl.py, kimi_k25.py): k items of ceil(B / k) tokens
    in rows of at most 512 // kw windows (its RoPE table is 512 x 512 patches), grid [1, rows * kh,
    row * kw]; the longest image given to varlen attention."""
    v, text = data["vision_config"], data["text_config"]
    sizes = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    if "vt_hidden_size" in v:
        vision = {key: v["vt_" + key] for key in sizes} | {"pos_emb_time": v["init_pos_emb_time"]}
        projection = {"projection_hidden_size": v["mm_hidden_size"], "projection_layer_norm_eps": v["projector_ln_eps"]}
    else:
        vision = {key: v[key] for key in sizes}
        projection = {"projection_hidden_size": v["hidden_size"]}
    vision |= {
        "patch_size": v["patch_size"],
        "pos_emb_height": v["init_pos_emb_height"],
        "pos_emb_width": v["init_pos_emb_width"],
        "merge_kernel_size": v["merge_kernel_size"],
    }
    config = Kimi_K25Config(vision_config=vision, text_config={"hidden_size": text["hidden_size"]}, **projection)
    with torch.device("cuda"):
        tower = kimi.Kimi_K25VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = kimi.Kimi_K25MultimodalProjection(config).to(torch.bfloat16).eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    kh, kw = config.vision_config.merge_kernel_size
    p, side = config.vision_config.patch_size, config.vision_config.pos_emb_height
    runs = []
    for budget in budgets:
        per_item = -(-budget // items)
        row = min(per_item, 512 // kw)
        rows = -(-per_item // row)
        grid = torch.tensor([[1, rows * kh, row * kw]] * items)
        indices, weights = get_vision_interpolation_indices_and_weights(grid, side, mode="bicubic", align_corners=False)
        merge = kimi.get_vision_temporal_merge_index(grid, kh, kw)
        cu_seqlens = get_vision_cu_seqlens(grid, merge_temporal=True).to(torch.int32)
        runs.append(
            {
                "pixel_values": torch.randn(int(grid.prod(-1).sum()), 3, p, p, generator=gen).to(
                    "cuda", torch.bfloat16
                ),
                "grid_thw": grid.cuda(),
                "position_ids": get_vision_position_ids(grid, spatial_merge_size=1).cuda(),
                **(
                    {"cu_seqlens": cu_seqlens.cuda(), "max_seqlen": rows * kh * row * kw}
                    if attn == "varlen"
                    else {"cu_seqlens": cu_seqlens}
                ),
                "interp_indices": indices.cuda(),
                "interp_weights": weights.cuda(),
                "frame_index": kimi.get_vision_frame_index(grid).cuda(),
                "temporal_merge_index": tuple(t.cuda() if torch.is_tensor(t) else t for t in merge)
                if isinstance(merge, tuple)
                else merge.cuda(),
            }
        )
    return (lambda **kwargs: projector(tower(**kwargs).pooler_output)), runs, items


def path_ladder(smallest, largest):
    """One path's budgets as vLLM's encoder graph manager captures them: from one item of the path,
    doubling, up to the largest budget, plus the largest; largest first."""
    steps = [smallest * 2**i for i in range(64) if smallest * 2**i <= largest]
    return sorted(set(steps) | {largest}, reverse=True)


def step3p7(data, budgets, items, gen):
    """Step-3.7 (and Step3-VL-10B, whose vision model and projector are Step-3.7's) as vLLM's encoder
    graph manager captures it: a global path of min(B // 169, k) images of 728 px and a local path of
    B // 81 crops of 504 px, each path's budgets running from one of its items, doubling, up to the
    largest budget, plus the largest; global first, largest first."""
    v = Step3p7Config(vision_config=data["vision_config"]).vision_config
    with torch.device("cuda"):
        vision = Step3p7VisionModel._from_config(v, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        projector = torch.nn.Linear(
            v.hidden_size * 4,
            data["text_config"]["hidden_size"],
            bias=data.get("projector_bias", False),
            dtype=torch.bfloat16,
        ).eval()
    rotary = Step3p7VisionRotaryEmbedding(v)

    def side_after_downsampling(size):
        side = size // v.patch_size
        return (((side - 1) // 2 + 1) - 1) // 2 + 1  # two convolutions of kernel 3, stride 2, padding 1

    per_image, per_crop = side_after_downsampling(v.image_size) ** 2, side_after_downsampling(504) ** 2
    images_cap = min(budgets[0] // per_image, budgets[-1])  # vLLM's default items per batch for this family
    runs = []
    for size, counts in (
        (v.image_size, [min(b // per_image, images_cap) for b in path_ladder(per_image, budgets[0])]),
        (504, [b // per_crop for b in path_ladder(per_crop, budgets[0])]),
    ):
        side = size // v.patch_size
        pixels = torch.randn(1, 3, size, size, generator=gen)
        cos, sin = rotary(pixels, get_vision_position_ids(torch.tensor([[1, side, side]]), spatial_merge_size=1))
        for count in counts:
            runs.append(
                {
                    "pixel_values": torch.randn(count, 3, size, size, generator=gen).to("cuda", torch.bfloat16),
                    "cos": cos.cuda(),
                    "sin": sin.cuda(),
                }
            )

    def forward(pixel_values, cos, sin):
        batch, _, height, width = pixel_values.shape
        hidden = vision.pre_layernorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
        for layer in vision.layers:
            hidden = layer(hidden, position_embeddings=(cos, sin))
        grid = hidden.permute(0, 2, 1).reshape(batch, -1, height // v.patch_size, width // v.patch_size)
        grid = vision.downsampler2(vision.downsampler1(grid))
        return projector(grid.flatten(2).permute(0, 2, 1))

    return forward, runs, images_cap


def deepseek_ocr2(data, budgets, items, gen):
    """DeepSeek-OCR 2 as vLLM's encoder graph manager captures it: a global path of min(B // 256, k)
    views of 1024 px and a local path of B // 144 crops of 768 px, each path's budgets running from one
    of its items, doubling, up to the largest budget, plus the largest; global first, largest first.
    SAM's position embedding at the view's grid, its blocks' relative-position tables (made once in
    the warm-up, as transformers indexes them with a host tensor), the encoder's mask (bidirectional
    over the SAM tokens, causal over the queries) and its rotary embedding are made before capture."""
    config = DeepseekOcr2Config(**data)
    width = config.vision_config.encoder_config.hidden_size
    with torch.device("cuda"):
        vision = DeepseekOcr2VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = torch.nn.Linear(width, config.text_config.hidden_size, dtype=torch.bfloat16).eval()
    sam, encoder = vision.sam_encoder, vision.vision_encoder
    tables = {}
    for block in sam.layers:

        def get_rel_pos(q_size, k_size, rel_pos, make=block.attn.get_rel_pos):
            key = (q_size, k_size, rel_pos.data_ptr())
            if key not in tables:
                tables[key] = make(q_size, k_size, rel_pos)
            return tables[key]

        block.attn.get_rel_pos = get_rel_pos

    views_cap = min(budgets[0] // 256, budgets[-1])  # vLLM's default items per batch for this family
    runs = []
    for size, tokens, counts in (
        (1024, 256, [min(b // 256, views_cap) for b in path_ladder(256, budgets[0])]),
        (768, 144, [b // 144 for b in path_ladder(144, budgets[0])]),
    ):
        side = size // config.vision_config.sam_config.patch_size
        with torch.inference_mode():
            pos_embed = sam.interpolate_pos_encoding(side, side)
            cos, sin = encoder.rotary_emb(
                torch.empty(1, dtype=torch.bfloat16, device="cuda"), torch.arange(2 * tokens, device="cuda")[None]
            )
        for count in counts:
            embeds = torch.empty(count, 2 * tokens, width, dtype=torch.bfloat16, device="cuda")
            blocks = torch.full((count, 2 * tokens), -1, dtype=torch.long, device="cuda")
            blocks[:, :tokens] = 0
            with torch.inference_mode():
                mask = create_causal_mask(encoder.config, embeds, None, None, block_sequence_ids=blocks)
            runs.append(
                {
                    "pixel_values": torch.randn(count, 3, size, size, generator=gen).to("cuda", torch.bfloat16),
                    "pos_embed": pos_embed,
                    "mask": mask,
                    "cos": cos,
                    "sin": sin,
                }
            )

    def forward(pixel_values, pos_embed, mask, cos, sin):
        hidden = sam.patch_embed(pixel_values) + pos_embed
        for block in sam.layers:
            hidden = block(hidden)
        hidden = sam.proj(sam.neck(hidden)).flatten(2).transpose(1, 2)
        count, tokens, _ = hidden.shape
        queries = (vision.query_768_resolution if tokens == 144 else vision.query_1024_resolution).weight
        hidden = torch.cat([hidden, queries.expand(count, -1, -1)], dim=1)
        for layer in encoder.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin))
        return projector(encoder.norm(hidden)[:, tokens:])

    return forward, runs, views_cap


def main(config_path, budget_text, attn="sdpa", warmup=2):
    budgets = sorted((int(b) for b in budget_text.split(",")), reverse=True)
    items = max(1, min(budgets[0] // 64, budgets[-1]))
    with open(config_path) as file:
        data = json.load(file)
    build = {
        "qwen2_vl": qwen2_vl,
        "gemma3": gemma3,
        "gemma4": gemma4,
        "llama4": llama4,
        "kimi_vl": kimi_moonvit,
        "kimi_k25": kimi_moonvit,
        "step3p7": step3p7,
        "step_robotics": step3p7,
        "deepseek_ocr2": deepseek_ocr2,
    }[data.pop("model_type")]
    extra = {"attn": attn} if attn != "sdpa" else {}
    forward, runs, items = build(data, budgets, items, torch.Generator().manual_seed(0), **extra)
    stream = torch.cuda.Stream()
    for kwargs in runs:
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmup):
                forward(**kwargs)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    reserved0 = torch.cuda.memory_stats()["reserved_bytes.all.current"]
    used0 = process_used(handle)
    pool = torch.cuda.graph_pool_handle()
    graphs = []
    for kwargs in runs:
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=pool, stream=stream):
            out = forward(**kwargs)
        graphs.append((graph, out))
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    reserved1 = torch.cuda.memory_stats()["reserved_bytes.all.current"]
    used1 = process_used(handle)
    json.dump(
        {
            "budgets": budgets,
            "graphs": len(runs),
            "items": items,
            "reserved_delta_bytes": reserved1 - reserved0,
            "nvml_process_delta_bytes": used1 - used0,
            "wall_s": time.perf_counter() - started,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main(*sys.argv[1:4])
