"""Where a float32 decode of the peers' workloads spends its time (2 threads).

    python benchmarks/profile_fp32_cells.py benchmarks/profile-DATE-fp32-cells.json

For each of the peers' decoding cells (small/base, greedy/beam 4, 32 sentences of 25
tokens, 25 tokens out): the median wall time of 5 decodes, then one decode under
torch.profiler, its operators' self time by kind, and the products' arithmetic rate
(decoder and encoder layers, cross-attention keys/values, output projection).
"""

import json
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from bench_transduce import CONFIGS, decode_case, peer_model
from torch.profiler import profile

from transduce.memory import keep_freed_memory
from transduce.models.quantize import apply_precision

keep_freed_memory()
torch.set_num_threads(2)
out = []
for name in ("small", "base"):
    model = apply_precision(peer_model(name).eval(), "fp32")
    c = CONFIGS[name]
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, c["vocab"], (32, 25), generator=g)
    src[:, -1] = 3
    mask = torch.ones_like(src, dtype=torch.bool)
    for beam in (1, 4):
        for _ in range(2):
            decode_case(model, src, mask, beam, 24)
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            decode_case(model, src, mask, beam, 24)
            ts.append(time.perf_counter() - t)
        wall = sorted(ts)[2]
        with profile() as prof:
            decode_case(model, src, mask, beam, 24)
        cats = {
            "products": 0.0,
            "attention": 0.0,
            "search (softmax, top-k, scores)": 0.0,
            "cache (cat, index_select, copy)": 0.0,
            "other operators": 0.0,
        }
        for e in prof.key_averages():
            n, t = e.key, e.self_cpu_time_total / 1e6
            if "linear" in n or n in ("aten::addmm", "aten::mm"):
                cats["products"] += t
            elif "scaled_dot_product" in n or n in ("aten::bmm", "aten::_softmax", "aten::baddbmm"):
                cats["attention"] += t
            elif n in (
                "aten::_log_softmax",
                "aten::topk",
                "aten::amax",
                "aten::argmax",
                "aten::max",
                "aten::sort",
                "aten::gather",
            ):
                cats["search (softmax, top-k, scores)"] += t
            elif n in ("aten::cat", "aten::index_select", "aten::copy_", "aten::index"):
                cats["cache (cat, index_select, copy)"] += t
            else:
                cats["other operators"] += t
        total = sum(cats.values())
        row = dict(
            config=name,
            beam=beam,
            wall_s=round(wall, 3),
            tok_s=round(32 * 25 / wall),
            profiled_ops_s=round(total, 3),
            **{k: round(v, 3) for k, v in cats.items()},
        )
        # products' arithmetic: decoder per step rows x 2 x params, encoder once
        L, d, f, V = c["layers"], c["d_model"], c["ffn"], c["vocab"]
        dec_params = L * (3 * d * d + d * d + d * d + d * d + 2 * d * f) + d * V
        enc_params = L * (4 * d * d + 2 * d * f)
        flops = (
            2 * 32 * beam * dec_params * 25 + 2 * 32 * 25 * enc_params + 2 * 32 * 25 * L * 2 * d * d
        )  # + cross K/V once
        row["product_gflop"] = round(flops / 1e9, 2)
        row["products_gflop_s"] = round(flops / 1e9 / cats["products"], 1)
        print(json.dumps(row), flush=True)
        out.append(row)
json.dump(out, open(sys.argv[1], "w"), indent=1)
