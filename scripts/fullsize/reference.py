"""References for the full-size check (scripts/fullsize/check.sh): ViT-B/32 and RN50 at their published
sizes, randomly initialised by openai/CLIP's own model code, run by PyTorch in float32 and in float64.

python3 scripts/fullsize/reference.py path/to/openai-CLIP/clip/model.py OUT_DIR [ViT-B/32,RN50]
Writes OUT_DIR/<name>/weights.pt (the float32 state dict) and OUT_DIR/<name>/io.pt: the inputs (images,
tokens), the float64 outputs (image_features and text_features before normalisation, logits_per_image,
logits_per_text in eval mode; train_loss and every parameter's gradient grad.<key> in train mode, stored as
float32), and reference_error.<group>: how far PyTorch's own float32 run is from its float64 run, measured as
clip/parity.ts measures ours (max|a − b| / max|b|; gradients per parameter against at least 1e-5 of the
largest gradient: reference_error.grad.<key> for each, reference_error.grads the worst).
"""
import importlib.util
import json
import os
import sys
import torch

spec = importlib.util.spec_from_file_location('clip_model', sys.argv[1])
clip_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_model)
# openai/CLIP's LayerNorm computes in float32 whatever its input (for fp16 weights); for the float64 reference it
# must compute in the input's dtype, which for float32 inputs is the same thing.
clip_model.LayerNorm.forward = torch.nn.LayerNorm.forward
OUT = sys.argv[2]
NAMES = sys.argv[3].split(',') if len(sys.argv) > 3 else ['ViT-B/32', 'RN50']

TEXT = dict(context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
CONFIGS = {  # the arguments build_model derives from OpenAI's released files
    'ViT-B/32': dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32, **TEXT),
    'RN50': dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64, vision_patch_size=None, **TEXT),
}
BATCH = 4


def run(model, images, tokens):
    """Eval-mode outputs, then the train-mode contrastive loss and its gradients."""
    model.eval()
    with torch.no_grad():
        out = dict(image_features=model.encode_image(images), text_features=model.encode_text(tokens))
        out['logits_per_image'], out['logits_per_text'] = model(images, tokens)
    model.train()
    model.zero_grad()
    logits_per_image, logits_per_text = model(images, tokens)
    labels = torch.arange(len(images))
    loss = (torch.nn.functional.cross_entropy(logits_per_image, labels) + torch.nn.functional.cross_entropy(logits_per_text, labels)) / 2
    loss.backward()
    out['train_loss'] = loss.detach().reshape(1)
    # copies: model.double() later converts parameters and their gradients in place
    grads = {f'grad.{k}': p.grad.detach().clone() for k, p in model.named_parameters()}
    return out, grads


def rel(a, b, floor=0.0):
    return ((a.double() - b.double()).abs().max() / max(b.double().abs().max().item(), floor)).item()


for name in NAMES:
    torch.manual_seed(0)
    model = clip_model.CLIP(**CONFIGS[name]).float()
    # OpenAI's init leaves biases at 0, norms at 1 and, in ResNets, each block's last batch norm at 0, which makes
    # the gradients of everything inside those blocks exactly zero: perturb every parameter so all are exercised.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    images = torch.randn(BATCH, 3, 224, 224)
    tokens = torch.zeros(BATCH, 77, dtype=torch.long)
    for i in range(BATCH):
        n = 5 + 7 * i
        tokens[i, 0], tokens[i, 1:n - 1], tokens[i, n - 1] = 49406, torch.randint(1, 49406, (n - 2,)), 49407
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out32, grads32 = run(model, images, tokens)
    model.load_state_dict(state)  # the train pass moved batch norm's running statistics
    model.double()
    out64, grads64 = run(model, images.double(), tokens)
    floor = 1e-5 * max(g.abs().max().item() for g in grads64.values())
    per_grad = {k: rel(grads32[k], grads64[k], floor) for k in grads64}
    errors = {
        'features': max(rel(out32[k], out64[k]) for k in ['image_features', 'text_features']),
        'logits': max(rel(out32[k], out64[k]) for k in ['logits_per_image', 'logits_per_text']),
        'loss': rel(out32['train_loss'], out64['train_loss']),
        'grads': max(per_grad.values()),
        **per_grad,  # keys grad.<key>: reference_error.grad.<key>, each parameter's
    }
    folder = os.path.join(OUT, name.replace('/', '-'))
    os.makedirs(folder, exist_ok=True)
    torch.save(state, os.path.join(folder, 'weights.pt'))
    io = dict(images=images, tokens=tokens, **{k: v.float() for k, v in {**out64, **grads64}.items()},
              **{f'reference_error.{k}': torch.tensor([v]) for k, v in errors.items()})
    torch.save(io, os.path.join(folder, 'io.pt'))
    print(name, json.dumps({k: v for k, v in errors.items() if not k.startswith('grad.')}), flush=True)
