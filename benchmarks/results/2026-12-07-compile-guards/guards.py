"""How many guards ``torch.compile`` checks on every call of lsr's loss and of
``F.cross_entropy(label_smoothing=0.1)`` (256 x 10 float32 logits, integer labels, the
loss alone): the guard tree that ``TORCH_LOGS=guards`` prints, counted by its lines (each
a guard or a node of the tree), and by the modules whose globals they read. Not a timing:
a lead for the compiled rows at 256 x 10, where lsr took 1.39-1.48 times the rival's time
for the loss alone and 1.21-1.24 forward + backward (``benchmarks/results/2026-12-07-full/``).

guards.txt: on e3d5027 (the code of the full run's PyTorch part). A first run on 5f6d1f3
counted 624 lines for lsr: four more, the guards of an exp rule reverted since.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-compile-guards/guards.py``
"""

import collections
import os
import re
import subprocess
import sys

CHILD = """
import torch, torch.nn.functional as F
import lsr.torch
x = torch.randn(256, 10)
y = torch.randint(0, 10, (256,))
if {lsr!r}:
    def loss(a, b):
        return lsr.torch.smooth_ce(a, b, smoothing=0.1)
else:
    def loss(a, b):
        return F.cross_entropy(a, b, label_smoothing=0.1)
compiled = torch.compile(loss, dynamic=False)
with torch.no_grad():
    compiled(x, y)
"""


def guard_lines(lsr: bool) -> list[str]:
    environment = dict(os.environ, TORCH_LOGS="guards")
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(lsr=lsr)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return [line for line in result.stderr.splitlines() if "[__guards] |" in line]


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import torch

    print("commit", revision, "torch", torch.__version__)
    for name, lsr in (("F.cross_entropy", False), ("lsr.torch.smooth_ce", True)):
        lines = guard_lines(lsr)
        modules = collections.Counter(
            match.group(1)
            for line in lines
            for match in [re.search(r"source=G\['([^']*)'\]", line)]
            if match
        )
        print(f"{name}: {len(lines)} lines of guards")
        for module, count in modules.most_common(8):
            print(f"  {count:4d} under the global {module}")


if __name__ == "__main__":
    main()
