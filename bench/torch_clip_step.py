"""One-off peer for bench/train.ts and bench/fullsize.ts: the same CLIP training step in PyTorch on the CPU.

Optional and not part of the project (which never needs Python): Debian's python3-torch is enough.
    python3 bench/torch_clip_step.py --threads 2 [--width 64 --heads 1 --layers 2 --patch 8 --res 32 --batch 64]
        [--mode train|infer] [--steps 30] [--warmup 3]
The model follows openai/CLIP's model.py (pre-LN residual blocks, QuickGELU, class token, causal text
transformer pooled at the end-of-text token); a train step is forward, symmetric cross-entropy, backward,
AdamW; an infer step (--mode infer) is encode_image alone in eval mode under torch.no_grad(). The first step
runs untimed, then --warmup more, then --steps timed ones.
Prints one JSON line: images/s and ms per step (the mean of the timed steps), and the first step's ms. The
impl names the BLAS library loaded: Debian's torch calls whichever libblas.so.3 is installed, and the reference
one is about ten times slower at matmuls than OpenBLAS (LD_LIBRARY_PATH can point at another).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads, mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)
        self.mask = mask

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class CLIP(nn.Module):
    def __init__(self, a):
        super().__init__()
        w, tw = a.width, a.text_width
        tokens = (a.res // a.patch) ** 2 + 1
        self.conv1 = nn.Conv2d(3, w, a.patch, a.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.vpos = nn.Parameter(torch.randn(tokens, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.visual = nn.Sequential(*[Block(w, a.heads) for _ in range(a.layers)])
        self.ln_post = nn.LayerNorm(w)
        self.vproj = nn.Parameter(torch.randn(w, a.embed) * w**-0.5)
        mask = torch.full((a.context, a.context), float("-inf")).triu_(1)
        self.token_embedding = nn.Embedding(a.vocab, tw)
        self.tpos = nn.Parameter(torch.randn(a.context, tw) * 0.01)
        self.text = nn.Sequential(*[Block(tw, a.text_heads, mask) for _ in range(a.text_layers)])
        self.ln_final = nn.LayerNorm(tw)
        self.tproj = nn.Parameter(torch.randn(tw, a.embed) * tw**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def encode_image(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.vpos).transpose(0, 1)
        return self.ln_post(self.visual(x)[0]) @ self.vproj

    def encode_text(self, ids):
        x = (self.token_embedding(ids) + self.tpos).transpose(0, 1)
        x = self.ln_final(self.text(x).transpose(0, 1))
        return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ self.tproj

    def forward(self, images, ids):
        i = F.normalize(self.encode_image(images), dim=-1)
        t = F.normalize(self.encode_text(ids), dim=-1)
        logits = self.logit_scale.exp() * i @ t.t()
        labels = torch.arange(len(images))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def blas():
    """The BLAS this process loaded, from its memory map (Linux); None where that cannot be read."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.rsplit("/", 1)[-1] or "mkl" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for mark, name in [("openblas", "OpenBLAS"), ("mkl", "MKL"), ("/blas/libblas", "reference BLAS")]:
        if any(mark in p for p in paths):
            return name
    return ", ".join(sorted(paths)) or None


def main():
    p = argparse.ArgumentParser()
    for name, default in [("threads", 2), ("batch", 64), ("res", 32), ("patch", 8), ("width", 64), ("heads", 1), ("layers", 2), ("embed", 64),
                          ("text_width", 64), ("text_heads", 2), ("text_layers", 2), ("context", 16), ("vocab", 1000), ("steps", 30), ("warmup", 3)]:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIP(a)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    images = torch.randn(a.batch, 3, a.res, a.res)
    ids = torch.randint(1, a.vocab - 1, (a.batch, a.context))
    ids[:, a.context // 2] = a.vocab - 1  # the end-of-text token, the largest id, where text features are pooled

    def train_step():
        loss = model(images, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def infer_step():
        with torch.no_grad():
            features = model.encode_image(images)
        return features.abs().max().item()

    if a.mode == "infer":
        model.eval()
    step = infer_step if a.mode == "infer" else train_step
    t0 = time.perf_counter()
    first = step()
    first_ms = (time.perf_counter() - t0) * 1000
    assert first == first and abs(first) < 100, f"{a.mode} step: {first}"
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    ms = (time.perf_counter() - t0) * 1000 / a.steps
    library = blas()
    impl = f"pytorch {torch.__version__} cpu, {a.threads} threads" + (f", {library}" if library else "")
    print(json.dumps({"impl": impl, "ms_per_step": round(ms, 2), "images_per_s": round(a.batch * 1000 / ms, 1),
                      "first_step_ms": round(first_ms, 2)}))


if __name__ == "__main__":
    main()
