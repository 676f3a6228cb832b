"""Training-step throughput: textbooklm's phi model vs transformers' PhiForCausalLM (the anchor).

Both models are built from the same shape with the same weights (ours exported through
textbooklm.model.hf), trained on the same random batch, same dtype, same AdamW settings, in this
process. A step = forward, cross-entropy loss, backward, AdamW step. Prints each side's tokens/s and
the ratio last. On a GPU (bf16 autocast) it also prints the MFU of phi-1-small at seq 2048.

    .venv/bin/python benchmarks/bench_train.py [--preset tiny] [--batch 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from textbooklm.lm.config import ModelConfig  # noqa: E402
from textbooklm.model.hf import export_hf  # noqa: E402
from textbooklm.model.model import PhiConfig, PhiForCausalLM  # noqa: E402
from textbooklm.model.train_log import detect_peak_flops  # noqa: E402


def _ours_step(model, opt, x, y, vocab, amp):
    with amp():
        logits = model(x)
    loss = F.cross_entropy(logits[..., :vocab].float().flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _hf_step(model, opt, x, y, vocab, amp):
    with amp():
        logits = model(input_ids=x).logits
    loss = F.cross_entropy(logits[..., :vocab].float().flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _rate(step, model, x, y, vocab, steps, amp, device) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    for _ in range(1):  # warm-up: allocator, kernels, AdamW state
        step(model, opt, x, y, vocab, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y, vocab, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return x.numel() * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per side, split over the rounds")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    from transformers import PhiForCausalLM as HFPhi

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def amp():
        return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)

    shape = ModelConfig(preset=args.preset).resolved()
    torch.manual_seed(0)
    ours = PhiForCausalLM(PhiConfig(vocab_size=args.vocab, **shape)).to(device).train()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours.cpu(), tmp)
        hf = HFPhi.from_pretrained(tmp, attn_implementation="sdpa", dtype=torch.float32).to(device).train()
    ours.to(device)
    T = int(shape["block_size"])
    x = torch.randint(0, args.vocab, (args.batch, T), device=device)
    y = torch.randint(0, args.vocab, (args.batch, T), device=device)
    threads = torch.get_num_threads()
    label = f"{args.preset} preset, batch {args.batch}x{T}, {'bf16 ' + device.type if dtype else 'fp32 cpu'}"
    # Alternate the two sides in rounds and keep each side's best round, so a burst of load from
    # other processes on a shared machine does not decide the ratio.
    r_hf, r_ours = [], []
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        r_hf.append(_rate(_hf_step, hf, x, y, args.vocab, per_round, amp, device))
        r_ours.append(_rate(_ours_step, ours, x, y, args.vocab, per_round, amp, device))
    hf_rate, our_rate = max(r_hf), max(r_ours)
    print(f"transformers PhiForCausalLM: {hf_rate:,.0f} tokens/s")
    print(f"textbooklm phi:              {our_rate:,.0f} tokens/s")
    peak = detect_peak_flops(device)
    if device.type == "cuda" and peak:
        del ours, hf
        torch.cuda.empty_cache()
        big_shape = ModelConfig(preset="phi-1-small").resolved()
        big = PhiForCausalLM(PhiConfig(vocab_size=50295, **big_shape)).to(device).train()
        xb = torch.randint(0, 50295, (4, 2048), device=device)
        rate = _rate(_ours_step, big, xb, xb, 50295, 6, amp, device)
        mfu = rate * big.flops_per_token(2048) / peak
        print(f"phi-1-small seq 2048 bf16: {rate:,.0f} tokens/s, MFU {mfu:.1%} of {peak / 1e12:.0f} TFLOP/s")
    print(f"train: {our_rate / hf_rate:.2f}x transformers PhiForCausalLM ({label}, {threads} threads)")


if __name__ == "__main__":
    main()
