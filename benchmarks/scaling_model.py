#!/usr/bin/env python3
"""Scaling model of cladmop's data-parallel step: alpha-beta collective costs fitted to `cladmop bench --collectives`
over emulated links, combined with the per-sample compute that `cladmop bench` measures on one rank, projected to
W = 2 ... 512 ranks (weak and strong scaling), and checked against step times measured across emulated nodes.

    python3 benchmarks/scaling_model.py --cores 2 --out docs/figures/scaling \\
        --compute paper=runs/scaling/compute-paper.json --compute main=runs/scaling/compute-main.json \\
        --collectives 1=runs/scaling/coll-w2-1g.json ... --measured 1:paper=runs/scaling/step-paper-w2-1g.json ...

--compute NAME=FILE     `cladmop bench --config ... --json` at W = 1 (ms_forward, ms_backward, ms_allgather_loss,
                        ms_optimizer, global_batch, parameters)
--collectives GBIT=FILE `cladmop bench --collectives --json` over links shaped to GBIT Gbit/s (any W >= 2)
--measured GBIT:NAME=FILE  `cladmop bench --json` across emulated nodes (one rank per node) over GBIT Gbit/s links

The step at W ranks, global batch B, b = B / W rows per rank, E = encoder width:
    T(W) = s(W) * c * b + l * B^2 + o + AG(W, 2 B E floats) + AR(W, P floats)
c = (forward + backward ms) / B1 and l = loss ms / B1^2 from the W = 1 run at batch B1 (l from --loss, a run at a
large batch, when given: at small B the loss time is mostly overhead) (every rank computes the
whole B x B logits, so that term does not shrink with W), o = optimizer ms, P = parameters; s(W) = max(1, W /
cores) is the sharing of this machine's cores by the emulated nodes (1 in projections). Collectives, with OpenMPI's
choices between a latency-bound and a bandwidth-bound algorithm taken as the cheaper of the two:
    all-reduce:  min(ceil(log2 W) (alpha + n beta), 2 (W - 1) alpha + 2 (W - 1) / W n beta)     (recursive doubling, ring)
    all-gather:  min(ceil(log2 W) alpha + (W - 1) / W n beta, (W - 1) alpha + (W - 1) / W n beta)  (Bruck / recursive doubling, ring)
with n in bytes; alpha and beta are fitted (least squares, relative error) to every measured size and W of one link
rate; a projection at another rate R scales beta by rate / R and keeps alpha. The all-reduce is exposed after
backward (blocking, as now); "overlapped" is the bound where it hides behind backward entirely but for what exceeds it.
Each measured step is also modelled with the collective times read off the measured curves of its own W and link
(piecewise linear in the message size), which checks the sum of the parts without the alpha-beta fit's error.
"""
import argparse
import json
import math
import os
import sys


def fail(message):
    """A bad argument or input file: the message, exit status 2 (no traceback)."""
    print(f"scaling_model: {message}", file=sys.stderr)
    sys.exit(2)


def load(path, keys):
    """The JSON object a `cladmop bench ... --json` run printed (the file may hold mpirun's lines before it), with `keys`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror or e}")
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    except ValueError:
        fail(f"{path}: expected the JSON object of `cladmop bench --json` (after any lines of mpirun's)")
    missing = [k for k in keys if k not in value] if isinstance(value, dict) else keys
    if missing:
        fail(f"{path}: the JSON object lacks {', '.join(missing)}: not the output of the `cladmop bench` run this option takes")
    rows = value["collectives"] if "collectives" in keys else []
    if "collectives" in keys and (not isinstance(rows, list) or not rows):
        fail(f"{path}: \"collectives\" holds no measured rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                                                for k in ("floats", "allreduce_ms", "allgather_ms")):
            fail(f"{path}: collectives[{i}]: expected numbers floats, allreduce_ms and allgather_ms")
    for k in keys:
        if k != "collectives" and (isinstance(value[k], bool) or not isinstance(value[k], (int, float))):
            fail(f"{path}: {k} = {json.dumps(value[k])}: expected a number")
    return value


def pairs(values, option, sep="="):
    """KEY=FILE arguments of `option` as (KEY, FILE)."""
    out = []
    for v in values or []:
        key, found, path = v.partition(sep)
        if not found or not key or not path:
            fail(f"{option} {v}: expected KEY{sep}FILE")
        out.append((key, path))
    return out


def rate_of(text, option):
    """A link rate in Gbit/s: a number > 0."""
    try:
        r = float(text)
    except ValueError:
        r = float("nan")
    if not (r > 0 and math.isfinite(r)):
        fail(f"{option} {text}: expected a link rate in Gbit/s, a number > 0")
    return r


def positive(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a positive integer")
    return n


def allreduce(n, w, alpha, beta):
    if w <= 1:
        return 0.0
    doubling = math.ceil(math.log2(w)) * (alpha + n * beta)
    ring = 2 * (w - 1) * alpha + 2 * (w - 1) / w * n * beta
    return min(doubling, ring)


def allgather(n, w, alpha, beta):
    if w <= 1:
        return 0.0
    return min(math.ceil(math.log2(w)) * alpha, (w - 1) * alpha) + (w - 1) / w * n * beta


def fit(points):
    """alpha, beta (seconds, seconds per byte) minimising the squared relative error over points (kind, n_bytes, w, t)."""
    def cost(a, b):
        return sum(((allreduce(n, w, a, b) if k == "ar" else allgather(n, w, a, b)) / t - 1) ** 2 for k, n, w, t in points)
    # Coarse log grid, then coordinate refinement (two parameters, a smooth convex-ish surface).
    best = min(((cost(10 ** la, 10 ** lb), 10 ** la, 10 ** lb) for la in [x / 4 for x in range(-28, -8)]
                for lb in [x / 4 for x in range(-52, -28)]))
    _, a, b = best
    step = 0.5
    for _ in range(60):
        improved = False
        for da, db in ((step, 0), (-step, 0), (0, step), (0, -step)):
            na, nb = a * 10 ** da, b * 10 ** db
            if cost(na, nb) < cost(a, b):
                a, b, improved = na, nb, True
        if not improved:
            step /= 2
    return a, b, math.sqrt(cost(a, b) / len(points))


def measured_time(points, kind, n):
    """Seconds of collective `kind` ("ar" or "ag") for n bytes, read off the measured curve (kind, n_bytes, w, t) of
    one link rate and W: linear between the two measured sizes around n, along the last two beyond the ends."""
    curve = sorted((m, t) for k, m, _, t in points if k == kind)
    if n <= curve[0][0]:
        return curve[0][1] * n / curve[0][0] if n < curve[0][0] else curve[0][1]
    for (m0, t0), (m1, t1) in zip(curve, curve[1:]):
        if n <= m1:
            return t0 + (t1 - t0) * (n - m0) / (m1 - m0)
    (m0, t0), (m1, t1) = curve[-2], curve[-1]
    return t1 + (t1 - t0) * (n - m1) / (m1 - m0)


class Compute:
    def __init__(self, bench):
        b1 = bench["global_batch"]
        self.c = (bench["ms_forward"] + bench["ms_backward"]) / 1e3 / b1
        self.l = bench["ms_allgather_loss"] / 1e3 / b1 ** 2
        self.o = bench["ms_optimizer"] / 1e3
        self.backward_per_sample = bench["ms_backward"] / 1e3 / b1
        self.params = bench["parameters"]
        self.batch = b1

    def step(self, w, batch, alpha, beta, encoder_dim, share=1.0, overlapped=False, measured=None):
        """Step seconds and its parts; with `measured` (the collective points of this link rate and W) the all-reduce
        and all-gather are read off the measured curves instead of the alpha-beta costs."""
        b = batch / w
        ar_bytes, ag_bytes = 4 * self.params, 4 * 2 * batch * encoder_dim
        if measured is not None:
            ar, ag = measured_time(measured, "ar", ar_bytes), measured_time(measured, "ag", ag_bytes)
        else:
            ar, ag = allreduce(ar_bytes, w, alpha, beta), allgather(ag_bytes, w, alpha, beta)
        exposed = max(0.0, ar - share * self.backward_per_sample * b) if overlapped else ar
        parts = {"compute": share * self.c * b, "loss": self.l * batch ** 2, "optimizer": self.o,
                 "allgather": ag, "allreduce": exposed}
        return sum(parts.values()), parts


def svg_plot(path, title, series, ylabel):
    """Efficiency against W (log2 axis), one polyline per (label, [(w, y)])."""
    width, height, left, right, top, bottom = 640, 380, 60, 190, 36, 46
    ws = sorted({w for _, pts in series for w, _ in pts})
    x0, x1 = math.log2(ws[0]), math.log2(ws[-1])
    px = lambda w: left + (math.log2(w) - x0) / (x1 - x0) * (width - left - right)
    py = lambda y: height - bottom - y * (height - top - bottom)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{(width - right + left) / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for k in range(6):
        y = k / 5
        s.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    for w in ws:
        s.append(f'<text x="{px(w):.1f}" y="{height - bottom + 16}" text-anchor="middle">{w}</text>')
    s.append(f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">ranks W (log scale)</text>')
    s.append(f'<text x="14" y="{(height - bottom + top) / 2}" text-anchor="middle" transform="rotate(-90 14 {(height - bottom + top) / 2})">{ylabel}</text>')
    s.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="black"/>')
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
    for i, (label, pts) in enumerate(series):
        c = colors[i % len(colors)]
        dash = ' stroke-dasharray="5 3"' if "100" in label else ""
        s.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="' +
                 " ".join(f"{px(w):.1f},{py(min(max(y, 0), 1)):.1f}" for w, y in pts) + '"/>')
        s.append(f'<text x="{width - right + 8}" y="{top + 14 + 16 * i}" fill="{c}">{label}</text>')
    s.append("</svg>")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(s) + "\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compute", action="append", required=True, help="NAME=FILE")
    p.add_argument("--collectives", action="append", required=True, help="GBIT=FILE")
    p.add_argument("--measured", action="append", default=[], help="GBIT:NAME=FILE")
    p.add_argument("--loss", help="`cladmop bench --json` at W = 1 and a large global batch: its loss ms / B^2 is the loss "
                   "coefficient of every model (the loss depends only on B and E); default: each --compute run's own")
    p.add_argument("--cores", type=positive, default=2, help="cores the emulated nodes share (for the measured points)")
    p.add_argument("--encoder-dim", type=positive, default=384)
    p.add_argument("--weak-rows", type=positive, default=64, help="rows per rank in weak scaling")
    p.add_argument("--strong-batch", type=positive, default=8192, help="global batch in strong scaling")
    p.add_argument("--rates", default="10,100", help="projected link rates, Gbit/s")
    p.add_argument("--out", required=True, help="folder for scaling.md (tables) and the SVG plots")
    a = p.parse_args()
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        fail(f"--out {a.out}: a file, not a folder")
    rates = [rate_of(x, "--rates") for x in a.rates.split(",")]
    computes = {name: Compute(load(path, ["global_batch", "ms_forward", "ms_backward", "ms_allgather_loss", "ms_optimizer", "parameters"])) for name, path in pairs(a.compute, "--compute")}
    if a.loss:
        big = load(a.loss, ["ms_allgather_loss", "global_batch"])
        for comp in computes.values():
            comp.l = big["ms_allgather_loss"] / 1e3 / big["global_batch"] ** 2
    # One fit per (link rate, W): the emulated nodes share this machine's cores, so a rank waiting in a collective
    # competes with the others' compute and latency grows with W; W = 2 (2 ranks on 2 cores) is the clean one.
    by_key = {}
    for rate, path in pairs(a.collectives, "--collectives"):
        rate = rate_of(rate, "--collectives")
        r = load(path, ["collectives", "world_size"])
        for row in r["collectives"]:
            n = 4 * row["floats"]
            by_key.setdefault((float(rate), r["world_size"]), []).extend([("ar", n, r["world_size"], row["allreduce_ms"] / 1e3),
                                                                         ("ag", n, r["world_size"], row["allgather_ms"] / 1e3)])
    fits = {key: fit(points) for key, points in by_key.items()}
    lines = ["## Fitted collective costs (one rank per emulated node)", "",
             "| emulated link | W | points | alpha (us) | beta (ns/byte) | effective Gbit/s | rms relative error |", "|---|---|---|---|---|---|---|"]
    for (rate, w), (alpha, beta, rms) in sorted(fits.items()):
        lines.append(f"| {rate:g} Gbit/s | {w} | {len(by_key[(rate, w)])} | {alpha * 1e6:.1f} | {beta * 1e9:.3f} | {8 / beta / 1e9:.2f} | {rms:.1%} |")
    lines += ["", "## Measured against modelled step time (one rank per emulated node)", "",
              "Modelled twice: with the fitted alpha-beta collective costs (what the projections use), and with the collective "
              "times read off the measured curves of the same W and link (the composition of compute, loss and collectives "
              "on its own, without the fit's error).", "",
              "| model | link | W | measured ms | modelled ms, alpha-beta fit | difference | compute / loss / all-gather / all-reduce ms "
              "| modelled ms, measured collectives | difference | all-gather / all-reduce ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, path in pairs(a.measured, "--measured"):
        rate, found, name = key.partition(":")
        if not found or name not in computes:
            fail(f"--measured {key}={path}: expected GBIT:NAME=FILE with NAME one of --compute's ({', '.join(computes)})")
        m = load(path, ["world_size", "global_batch", "ms_step"])
        w = m["world_size"]
        if (rate_of(rate, "--measured"), w) not in fits:
            fail(f"--measured {key}={path}: no --collectives file measured {rate} Gbit/s at W = {w}")
        alpha, beta, _ = fits[(float(rate), w)]
        t, parts = computes[name].step(w, m["global_batch"], alpha, beta, a.encoder_dim, share=max(1.0, w / a.cores))
        tm, pm = computes[name].step(w, m["global_batch"], alpha, beta, a.encoder_dim, share=max(1.0, w / a.cores),
                                     measured=by_key[(float(rate), w)])
        diff, diffm = t * 1e3 / m["ms_step"] - 1, tm * 1e3 / m["ms_step"] - 1
        lines.append(f"| {name} | {rate} Gbit/s | {w} | {m['ms_step']:.1f} | {t * 1e3:.1f} | {diff:+.1%} | "
                     f"{parts['compute'] * 1e3:.0f} / {parts['loss'] * 1e3:.1f} / {parts['allgather'] * 1e3:.1f} / {parts['allreduce'] * 1e3:.1f} | "
                     f"{tm * 1e3:.1f} | {diffm:+.1%} | {pm['allgather'] * 1e3:.1f} / {pm['allreduce'] * 1e3:.1f} |")
    if not fits:
        fail("no --collectives measurement: the model needs at least one")
    os.makedirs(a.out, exist_ok=True)      # once every input has been read
    ref_rate, ref_w = min(fits, key=lambda k: (k[1], -k[0]))      # the fastest link's W = 2 fit: no shared cores
    alpha, beta0, _ = fits[(ref_rate, ref_w)]
    ws = [2 ** k for k in range(0, 10)]
    for mode in ("weak", "strong"):
        series = []
        lines += ["", f"## Projection, {mode} scaling " + (f"({a.weak_rows} rows per rank)" if mode == "weak" else f"(global batch {a.strong_batch})"), "",
                  "| model | link | " + " | ".join(f"W={w}" for w in ws[1:]) + " |", "|---|---|" + "---|" * (len(ws) - 1)]
        for name, comp in computes.items():
            for rate in rates:
                beta = beta0 * ref_rate / rate
                for overlapped in (False, True):
                    cells, pts = [], []
                    for w in ws:
                        batch = a.weak_rows * w if mode == "weak" else a.strong_batch
                        t, _ = comp.step(w, batch, alpha, beta, a.encoder_dim, overlapped=overlapped)
                        t1, _ = comp.step(1, batch if mode == "strong" else a.weak_rows, alpha, beta, a.encoder_dim)
                        eff = (t1 / t) if mode == "weak" else (t1 / t / w)
                        pts.append((w, eff))
                        if w > 1:
                            cells.append(f"{batch / t:,.0f}/s {eff:.0%}")
                    label = f"{name} {rate:g} Gbit/s{' overlapped' if overlapped else ''}"
                    lines.append(f"| {name}{' (overlapped)' if overlapped else ''} | {rate:g} Gbit/s | " + " | ".join(cells) + " |")
                    series.append((label, pts))
        svg_plot(os.path.join(a.out, f"scaling-{mode}.svg"), f"{mode} scaling: parallel efficiency (model)", series, "parallel efficiency")
    lines += ["", "Cells: samples/s and parallel efficiency. Assumptions: alpha and the fitted efficiency of the "
              f"{ref_rate:g} Gbit/s emulated link at W = {ref_w} (the one fit without shared cores) carried to the projected rates; one NIC per node, the ring crossing it once "
              "per node; the per-sample compute of one core of this machine."]
    tmp = os.path.join(a.out, "scaling.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(a.out, "scaling.md"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
