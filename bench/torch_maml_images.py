#!/usr/bin/python3
"""The conv MAML of `bench_learner --images`, written in PyTorch, for scale.

Same work per task as libmnas's bench: 5-way 1-shot with 5 queries per
class on 28 x 28 grey images (--paper: 84 x 84 RGB, 15 queries), the
4-block conv net (3 x 3 convolution with bias, 32 filters, batch-norm with
batch statistics and affine parameters, ReLU, 2 x 2 max-pool; a linear
head), 5 inner SGD steps at rate 0.01 differentiated to second order
(create_graph), meta-batch 4, Adam on the mean query loss. The images are
random: the speed of these ops does not depend on the values.

Written as a careful user would, with PyTorch's own fused ops
(F.batch_norm, F.cross_entropy) and its default CPU convolutions
(oneDNN); --channels-last tries the other memory layout. Prints tasks/s
like bench_learner. Runs with Debian's python3-torch:

    /usr/bin/python3 bench/torch_maml_images.py --threads 1 --seconds 8
"""
import argparse
import resource
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_maml_images: python3-torch is not installed", file=sys.stderr)
    sys.exit(77)


def make_weights(in_ch, filters, classes, head_in, gen):
    ws = []
    c = in_ch
    for _ in range(4):
        bound = 1.0 / (c * 9) ** 0.5
        ws.append((torch.rand(filters, c, 3, 3, generator=gen) * 2 - 1) * bound)
        ws.append((torch.rand(filters, generator=gen) * 2 - 1) * bound)
        ws.append(torch.ones(filters))
        ws.append(torch.zeros(filters))
        c = filters
    bound = 1.0 / head_in ** 0.5
    ws.append((torch.rand(classes, head_in, generator=gen) * 2 - 1) * bound)
    ws.append((torch.rand(classes, generator=gen) * 2 - 1) * bound)
    for w in ws:
        w.requires_grad_(True)
    return ws


def forward(x, w):
    h = x
    for l in range(4):
        h = F.conv2d(h, w[4 * l], w[4 * l + 1], padding=1)
        h = F.batch_norm(h, None, None, w[4 * l + 2], w[4 * l + 3], training=True, eps=1e-5)
        h = F.max_pool2d(F.relu(h), 2)
    h = h.reshape(h.shape[0], -1)
    return F.linear(h, w[16], w[17])


def task_loss(w, task, steps, lr):
    xs, ys, xq, yq = task
    fast = list(w)
    for _ in range(steps):
        loss = F.cross_entropy(forward(xs, fast), ys)
        grads = torch.autograd.grad(loss, fast, create_graph=True)
        fast = [p - lr * g for p, g in zip(fast, grads)]
    return F.cross_entropy(forward(xq, fast), yq)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--seconds", type=float, default=8.0, help="timed length (default 8)")
    ap.add_argument("--paper", action="store_true", help="84 x 84 RGB, 15 queries per class")
    ap.add_argument("--channels-last", action="store_true", help="NHWC tensors (torch.channels_last)")
    a = ap.parse_args()
    if a.threads < 1 or a.threads > 256 or not (a.seconds > 0):
        ap.error("--threads must be 1..256 and --seconds positive")
    torch.set_num_threads(a.threads)
    ways, shots, steps, lr, batch, filters = 5, 1, 5, 0.01, 4, 32
    size, ch, queries = (84, 3, 15) if a.paper else (28, 1, 5)
    s = size
    for _ in range(4):
        s //= 2
    gen = torch.Generator().manual_seed(1)
    w = make_weights(ch, filters, ways, filters * s * s, gen)
    opt = torch.optim.Adam(w, lr=0.001)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format

    def draw():
        xs = torch.rand(ways * shots, ch, size, size, generator=gen).contiguous(memory_format=fmt)
        xq = torch.rand(ways * queries, ch, size, size, generator=gen).contiguous(memory_format=fmt)
        ys = torch.arange(ways).repeat_interleave(shots)
        yq = torch.arange(ways).repeat_interleave(queries)
        return xs, ys, xq, yq

    def meta_update():
        opt.zero_grad()
        loss = sum(task_loss(w, draw(), steps, lr) for _ in range(batch)) / batch
        loss.backward()
        opt.step()

    meta_update()  # warm-up
    n, t0 = 0, time.perf_counter()
    c0 = time.process_time()
    while True:
        meta_update()
        n += 1
        t = time.perf_counter() - t0
        if t >= a.seconds:
            break
    cpu = time.process_time() - c0
    layout = "channels-last" if a.channels_last else "NCHW"
    print(f"PyTorch {torch.__version__} MAML, {steps} steps, second order, {'84x84 RGB' if a.paper else '28x28 grey'}, "
          f"{layout}, {a.threads} thread{'s' if a.threads > 1 else ''}: {n * batch / t:8.2f} tasks/s  "
          f"{t / n:6.3f} s/meta-update  ({n} meta-updates in {t:.2f} s; {n * batch / cpu:.2f} tasks per CPU-second)  "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
