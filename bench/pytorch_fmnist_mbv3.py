"""PyTorch CPU training throughput of the fmnist-mbv3 space's largest subnet (docs/space-28x28.md),
the same network `chanasc` trains (train/src/supernet/mod.rs, `Space::forward` with every block at
kernel 7, expand 6, depth 4): SGD with Nesterov momentum, weight decay and label smoothing, as
`chanasc supernet train` uses.

    python bench/pytorch_fmnist_mbv3.py BATCH THREADS STEPS

Prints `images_per_s=` (median step) and the parameter count, which must match chanasc's.
"""

import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v, divisor=8):
    """OFA's make_divisible."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def act(hs):
    return nn.Hardswish() if hs else nn.ReLU()


def conv_bn(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-5))


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = make_divisible(c // 4)
        self.reduce = nn.Conv2d(c, h, 1)
        self.expand = nn.Conv2d(h, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class Block(nn.Module):
    def __init__(self, cin, cout, stride, hs, se, k=7, e=6):
        super().__init__()
        mid = make_divisible(cin * e)
        layers = [conv_bn(cin, mid, 1), act(hs), conv_bn(mid, mid, k, stride, groups=mid), act(hs)]
        if se:
            layers.append(SE(mid))
        layers.append(conv_bn(mid, cout, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class Largest(nn.Module):
    # (width, stride, h_swish, squeeze-excite) of the four stages, four blocks each.
    STAGES = [(16, 2, False, False), (24, 2, False, True), (32, 1, True, True), (48, 2, True, True)]

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, 3), nn.Hardswish())
        self.first = nn.Sequential(conv_bn(16, 16, 3, groups=16), nn.ReLU(), conv_bn(16, 16, 1))
        blocks, cin = [], 16
        for width, stride, hs, se in self.STAGES:
            for pos in range(4):
                blocks.append(Block(cin, width, stride if pos == 0 else 1, hs, se))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(conv_bn(cin, 192, 1), nn.Hardswish())
        self.classifier = nn.Linear(192, classes)

    def forward(self, x):
        h = self.stem(x)
        h = h + self.first(h)
        h = self.final(self.blocks(h))
        return self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))


def main():
    batch, threads, steps = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Largest()
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.arange(batch) % 10
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        if step >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    print(f"pytorch {torch.__version__}: {params} parameters, batch {batch}, {threads} threads, step {step:.3f} s (median of {steps})")
    print(f"images_per_s={batch / step:.1f}")


if __name__ == "__main__":
    main()
