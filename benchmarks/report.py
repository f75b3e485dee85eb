"""Turn pytest-benchmark JSON of the kp3d_kernels suite into docs/performance.md and a plot.

    python -m benchmarks.report benchmarks/results/*.json --out docs/performance.md

writes the Markdown page (per results file: the device, library versions and date, then per op a
table of median time, speed-up over the `torch` reference and peak extra memory) and, beside it,
a PNG (time vs K per backend, log scale; `--plot` to choose its path). Only figures present in
the JSON are written; a configuration the suite skipped (over the memory limit) is simply absent.
"""

import argparse
import collections
import json
import math
import pathlib
import sys

OPS = ("edge_map", "soft_argmax", "nearest_neighbor", "repulsion_loss")
OP_TITLES = {
    "edge_map": "Edge map (all pairs)",
    "soft_argmax": "Spatial soft-argmax",
    "nearest_neighbor": "Nearest neighbour",
    "repulsion_loss": "Repulsion loss",
}
REFERENCE = "torch"
BACKEND_ORDER = ("torch", "cdist", "kornia", "keops", "cpu-unculled", "cpu", "cuda", "triton")
BACKEND_NOTES = {
    "torch": "pure-PyTorch reference (AutoLink's materialising approach)",
    "cdist": "baseline: `torch.cdist` + `min`",
    "kornia": "baseline: kornia `spatial_soft_argmax2d`",
    "keops": "baseline: a KeOps LazyTensor formula with a Max reduction (forward only)",
    "cpu-unculled": "the fused C++ kernel evaluating every edge at every pixel (KP3D_EDGE_MAP_CULL=0)",
    "cpu": "fused C++ (OpenMP)",
    "cuda": "fused CUDA",
    "triton": "fused Triton",
}
DIRECTIONS = ("fwd", "fwd+bwd")
# The acceptance shapes, per device: edge map, forward + backward, fused backends vs the reference.
# (shapes, backends, sentence)
HEADLINES = {
    "cpu": (
        [{"op": "edge_map", "falloff": "gaussian", "direction": "fwd+bwd", "B": 8, "K": 16, "H": 64, "W": 64},
         {"op": "edge_map", "falloff": "gaussian", "direction": "fwd+bwd", "B": 4, "K": 32, "H": 128, "W": 128}],
        ("cpu",),
        "the foundation issue's target: at least 10x faster and 20x less peak memory"),
    "cuda": (
        [{"op": "edge_map", "falloff": falloff, "direction": "fwd+bwd", "B": 64, "K": 32, "H": 128, "W": 128}
         for falloff in ("gaussian", "exp")],
        ("cuda", "triton"),
        "the GPU target at AutoLink's training shape: at least 50x faster and 100x less peak memory"),
}


# ------------------------------------------------------------------------------------ formats
def fmt_time(seconds):
    if seconds is None:
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(n):
    if n is None:
        return "–"
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def fmt_ratio(ratio):
    if ratio is None or not math.isfinite(ratio):
        return "–"
    return f"{ratio:.3g}x" if ratio < 1000 else f"{ratio:,.0f}x"


FALLOFF_ORDER = ("gaussian", "exp")


def shape_key(params):
    falloff = params.get("falloff")
    first = FALLOFF_ORDER.index(falloff) if falloff in FALLOFF_ORDER else len(FALLOFF_ORDER)
    keys = ("B", "H", "W", "D", "K")
    return (first,) + tuple(params[k] for k in keys if k in params)


def shape_label(params):
    parts = [f"B={params['B']}", f"K={params['K']}"]
    if "H" in params:
        parts.append(f"{params['H']}x{params['W']}")
    if "D" in params:
        parts.append(f"D={params['D']}")
    if "falloff" in params:
        parts.append(params["falloff"])
    return " ".join(parts)


def backend_rank(name):
    return BACKEND_ORDER.index(name) if name in BACKEND_ORDER else len(BACKEND_ORDER)


# ------------------------------------------------------------------------------------ loading
class Run:
    """One results file: its machine, date and benchmarks keyed by their parameters."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        data = json.loads(self.path.read_text())
        self.datetime = data.get("datetime", "?")
        self.machine = data.get("machine_info", {})
        self.commit = data.get("commit_info", {})
        self.kp3d = self.machine.get("kp3d", {})
        self.rows = []
        for bench in data.get("benchmarks", []):
            params = bench.get("params") or {}
            if params.get("op") not in OPS or not bench.get("stats"):
                continue
            self.rows.append({"params": params, "stats": bench["stats"],
                              "extra": bench.get("extra_info", {})})
        self.index = {self._key(r["params"]): r for r in self.rows}

    @staticmethod
    def _key(params, **override):
        merged = {**params, **override}
        return tuple(sorted(merged.items()))

    def find(self, params, **override):
        return self.index.get(self._key(params, **override))

    def reference_of(self, row):
        if row["params"]["backend"] == REFERENCE:
            return None
        return self.find(row["params"], backend=REFERENCE)

    def devices(self):
        names = collections.OrderedDict()
        for r in self.rows:
            names[r["extra"].get("device", r["params"].get("device", "?"))] = None
        return list(names)

    def title(self):
        devices = ", ".join(self.devices()) or "no benchmarks"
        return f"{devices} — {self.datetime[:10]}"


# ------------------------------------------------------------------------------------ markdown
def _speedup(row, ref):
    if ref is None:
        return None
    return ref["stats"]["median"] / row["stats"]["median"]


def _mem_ratio(row, ref):
    if ref is None:
        return None
    mine, theirs = row["extra"].get("peak_mem_bytes"), ref["extra"].get("peak_mem_bytes")
    if mine is None or theirs is None:
        return None
    return theirs / mine if mine > 0 else math.inf


def headline_table(run):
    lines = []
    for device, (shapes, backends, target) in HEADLINES.items():
        rows = []
        for want in shapes:
            ref = run.find({**want, "device": device, "backend": REFERENCE})
            if ref is None:
                continue
            for backend in backends:
                row = run.find({**want, "device": device, "backend": backend})
                if row is None:
                    continue
                rows.append(
                    f"| {shape_label(want)} | `{backend}` | {fmt_time(ref['stats']['median'])} "
                    f"| {fmt_time(row['stats']['median'])} | **{fmt_ratio(_speedup(row, ref))}** "
                    f"| {fmt_bytes(ref['extra'].get('peak_mem_bytes'))} "
                    f"| {fmt_bytes(row['extra'].get('peak_mem_bytes'))} "
                    f"| **{fmt_ratio(_mem_ratio(row, ref))}** |")
        if rows:
            lines += [
                f"Edge map, forward + backward, `torch` reference vs the fused backends on {device} "
                f"({target}):",
                "",
                "| shape | backend | torch median | backend median | speed-up | torch peak mem "
                "| backend peak mem | memory ratio |",
                "|---|---|---:|---:|---:|---:|---:|---:|",
                *rows,
                "",
            ]
    return lines


def op_table(run, op):
    rows = [r for r in run.rows if r["params"]["op"] == op]
    if not rows:
        return []
    rows.sort(key=lambda r: (r["params"].get("device", ""), shape_key(r["params"]),
                             DIRECTIONS.index(r["params"]["direction"])
                             if r["params"]["direction"] in DIRECTIONS else 9,
                             backend_rank(r["params"]["backend"])))
    out = [f"### {OP_TITLES[op]} (`{op}`)", "",
           "| shape | direction | backend | median | min | IQR | rounds | speed-up vs torch "
           "| peak extra memory | memory vs torch |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, s = r["params"], r["stats"]
        ref = run.reference_of(r)
        out.append(
            f"| {shape_label(p)} | {p['direction']} | `{p['backend']}` | {fmt_time(s['median'])} "
            f"| {fmt_time(s.get('min'))} | {fmt_time(s.get('iqr'))} | {s.get('rounds', '?')} "
            f"| {fmt_ratio(_speedup(r, ref)) if ref else ('1x' if p['backend'] == REFERENCE else '–')} "
            f"| {fmt_bytes(r['extra'].get('peak_mem_bytes'))} "
            f"| {fmt_ratio(_mem_ratio(r, ref)) + ' less' if ref else ('1x' if p['backend'] == REFERENCE else '–')} |")
    out.append("")
    return out


def run_header(run):
    versions = run.kp3d.get("versions", {})
    rows = versions or {}
    cpu = run.machine.get("cpu", {})
    lines = [f"## {run.title()}", ""]
    lines.append(f"- results: `{run.path.as_posix()}` ({len(run.rows)} benchmarks, "
                 f"scale `{run.kp3d.get('scale', '?')}`)")
    lines.append(f"- date: {run.datetime}")
    lines.append(f"- device(s): {', '.join(run.devices())}")
    if cpu:
        lines.append(f"- host CPU: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} logical cores; "
                     f"torch threads: {run.kp3d.get('torch_threads', '?')}")
    load = [run.kp3d.get("loadavg_start"), run.kp3d.get("loadavg_end")]
    if any(load):
        show = lambda x: "/".join(f"{v:g}" for v in x) if x else "?"  # noqa: E731
        lines.append(f"- host load average (1/5/15 min) at start: {show(load[0])}, "
                     f"at end: {show(load[1])}")
    if rows:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in rows.items() if v))
    lines.append("")
    return lines


def backend_legend(runs):
    present = sorted({r["params"]["backend"] for run in runs for r in run.rows}, key=backend_rank)
    return ["Backends: " + "; ".join(f"`{b}` = {BACKEND_NOTES.get(b, b)}" for b in present) + ".",
            ""]


def markdown(runs, plot_name, notes):
    lines = [
        "# kp3d_kernels performance",
        "",
        "Generated by `python -m benchmarks.report` from the pytest-benchmark JSON under "
        "`benchmarks/results/`; do not edit by hand. How the figures are measured: "
        "[benchmarks.md](benchmarks.md).",
        "",
        "Median wall time of one call (forward, or forward + backward with "
        "`torch.autograd.grad`); speed-up = median of the `torch` reference / median of the "
        "backend, same device and shape. Peak extra memory: the most memory the call held "
        "above what existed before it, outputs and gradients included (CUDA: "
        "`torch.cuda.max_memory_allocated`; CPU: the profiler's allocation events).",
        "",
    ]
    for note in notes:
        lines += [f"> {note}", ""]
    lines += backend_legend(runs)
    if plot_name:
        lines += [f"![time vs K per backend]({plot_name})", ""]
    for run in runs:
        lines += run_header(run)
        lines += headline_table(run)
        for op in OPS:
            lines += op_table(run, op)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------ plot
def sweep(rows):
    """The rows of the K sweep: the fixed (non-K) shape with the most K values."""
    groups = collections.defaultdict(list)
    for r in rows:
        fixed = tuple((k, v) for k, v in sorted(r["params"].items())
                      if k not in ("K", "backend", "direction"))
        groups[fixed].append(r)
    if not groups:
        return None, []
    fixed, members = max(groups.items(), key=lambda kv: (len({r["params"]["K"] for r in kv[1]}),
                                                         -list(groups).index(kv[0])))
    return dict(fixed), members


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), len(OPS), figsize=(4.2 * len(OPS), 3.6 * len(runs)),
                             squeeze=False)
    colours = {b: f"C{i}" for i, b in enumerate(BACKEND_ORDER)}
    styles = {"fwd": "--", "fwd+bwd": "-"}
    for row_axes, run in zip(axes, runs):
        for ax, op in zip(row_axes, OPS):
            fixed, members = sweep([r for r in run.rows if r["params"]["op"] == op])
            if not members:
                ax.set_axis_off()
                continue
            series = collections.defaultdict(list)
            for r in members:
                series[(r["params"]["backend"], r["params"]["direction"])].append(
                    (r["params"]["K"], r["stats"]["median"]))
            for (backend, direction), points in sorted(
                    series.items(), key=lambda kv: (backend_rank(kv[0][0]), kv[0][1])):
                points.sort()
                ax.plot([k for k, _ in points], [t * 1e3 for _, t in points],
                        linestyle=styles.get(direction, ":"), marker="o", markersize=3,
                        color=colours.get(backend, "k"), label=f"{backend} {direction}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ks = sorted({r["params"]["K"] for r in members})
            ax.set_xticks(ks)
            ax.set_xticklabels([str(k) for k in ks])
            ax.minorticks_off()
            ax.set_yscale("log")
            size = [f"B={fixed.get('B')}"]
            if "H" in fixed:
                size.append(f"{fixed['H']}x{fixed['W']}")
            if "D" in fixed:
                size.append(f"D={fixed['D']}")
            if "falloff" in fixed:
                size.append(fixed["falloff"])
            device = members[0]["extra"].get("device", fixed.get("device", ""))
            ax.set_title(f"{op} ({', '.join(size)})\n{device}", fontsize=9)
            ax.set_xlabel("K (keypoints)")
            ax.set_ylabel("median time (ms)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("kp3d_kernels: median time vs K per backend (log scale; solid fwd+bwd, dashed fwd)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON files")
    parser.add_argument("--out", default="docs/performance.md", help="Markdown page to write")
    parser.add_argument("--plot", default=None,
                        help="PNG to write (default: the --out path with .png)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--note", action="append", default=[],
                        help="a line to print under the page's introduction (repeatable)")
    args = parser.parse_args(argv)

    runs = [Run(p) for p in args.results]
    runs = [r for r in runs if r.rows]
    if not runs:
        parser.error("no kp3d_kernels benchmarks with timings in the given files "
                     "(a --benchmark-disable run records none)")
    runs.sort(key=lambda r: r.datetime)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = None
    if not args.no_plot:
        plot_path = pathlib.Path(args.plot) if args.plot else out.with_suffix(".png")
        plot(runs, plot_path)
    try:
        plot_name = plot_path and plot_path.resolve().relative_to(out.parent.resolve()).as_posix()
    except ValueError:
        plot_name = plot_path and plot_path.resolve().as_posix()
    out.write_text(markdown(runs, plot_name, args.note))
    print(f"wrote {out}" + (f" and {plot_path}" if plot_path else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
