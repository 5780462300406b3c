"""The report's figures (report.py writes them beside the tables that carry the same numbers):
a search grid's accuracy against generated tokens, RL's training curves, and accuracy against
total compute for the train-time against test-time exchange. matplotlib is
optional: without it every function returns False and the report has tables only."""


def panels(n, width, height):
    """A figure with a row of n plot panels: (figure, axes), or None without matplotlib (the
    plots are optional; the tables carry the numbers)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def save(fig, path, dpi):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return True


def plot_grid(rows, max_train_d, path):
    """Accuracy against log generated tokens, one panel per difficulty group. False without matplotlib."""
    groups = difficulty_groups(sorted({r["difficulty"] for r in rows}), max_train_d)
    if (plot := panels(len(groups), 4.5, 4)) is None:
        return False
    from matplotlib.ticker import NullFormatter
    fig, axes = plot
    for ax, (title, group) in zip(axes, groups):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = []
            for budget in sorted({r["budget"] for r in rows if r["method"] == method}):
                sel = [r for r in rows if r["method"] == method and r["budget"] == budget and r["difficulty"] in group]
                weight = sum(r["problems"] for r in sel)
                points.append((sum(r["generated_tokens"] * r["problems"] for r in sel) / weight,
                               sum(r["accuracy"] * r["problems"] for r in sel) / weight))
            xs, ys = zip(*points)
            ax.plot(xs, ys, "--" if method == "pass@n" else "-", marker="o", label=method)
        ax.set(xscale="log", title=title, xlabel="generated tokens per problem", ylabel="accuracy")
        ax.xaxis.set_minor_formatter(NullFormatter())  # one label per decade
    axes[-1].legend(fontsize=8)
    return save(fig, path, dpi=120)


def difficulty_groups(bins, max_train_d):
    """Panels of the plot: the in-range bins split into up to three groups, and the bins beyond."""
    inside, beyond = [d for d in bins if d <= max_train_d], [d for d in bins if d > max_train_d]
    k = min(3, len(inside))
    groups = [inside[i * len(inside) // k:(i + 1) * len(inside) // k] for i in range(k)]
    return [(f"d={g[0]}" + (f"-{g[-1]}" if len(g) > 1 else ""), g) for g in groups] + ([(f"d={beyond[0]}-{beyond[-1]} (beyond training)", beyond)] if beyond else [])


def plot_rl(rl, path):
    """Reward, KL to the reference, entropy, length and sampled accuracy per iteration. False
    without matplotlib."""
    keys = [("reward", "reward"), ("kl", "KL to SFT (nats per solution)"), ("entropy", "entropy (nats per token)"),
            ("length", "length (tokens)"), ("accuracy", "sampled accuracy")]
    if (plot := panels(len(keys), 3.2, 2.8)) is None:
        return False
    fig, axes = plot
    log = [h for h in rl["training_log"] if h["phase"] == "policy"]
    for ax, (key, label) in zip(axes, keys):
        ax.plot([h["iteration"] for h in log], [h[key] for h in log])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
    val = [v for v in rl["val_log"] if v["iteration"] > 0]  # counted after the critic's warm-up
    warmup = rl.get("critic_warmup", 0)
    axes[-1].plot([v["iteration"] + warmup for v in val], [v["accuracy"] for v in val], "o", label="validation, greedy")
    axes[-1].legend(fontsize=7)
    return save(fig, path, dpi=100)


def frontier(points):
    """(FLOPs, accuracy) of the points no cheaper point beats: the best accuracy at each compute."""
    best, out = -1.0, []
    for p in sorted(points, key=lambda p: p["flops"]):
        if p["accuracy"] > best:
            best = p["accuracy"]
            out.append((p["flops"], best))
    return out


def plot_compute(sizes, sweep_flops, points, path):
    """Greedy accuracy per bin against training FLOPs (sweep_flops: each size's; the sweep); then, per bin, each size's best
    accuracy at a given total compute over all methods and budgets, its greedy point circled
    (the exchange rate). False without matplotlib."""
    bins = sorted({int(b) for _, m in sizes for b in m["accuracy_by_difficulty"]})
    if (plot := panels(1 + len(bins), 3.6, 3.4)) is None:
        return False
    fig, axes = plot
    sweep_ax, per_bin = axes[0], axes[1:]
    for b in bins:
        sweep_ax.plot(sweep_flops, [m["accuracy_by_difficulty"].get(str(b)) for _, m in sizes],
                      marker="o", label=f"d={b}")
    sweep_ax.set(xscale="log", xlabel="SFT training FLOPs", ylabel="greedy accuracy", title="size sweep")
    sweep_ax.legend(fontsize=7)
    for ax, b in zip(per_bin, bins):
        for name, m in sizes:
            mine = [p for p in points if p["size"] == name and p["difficulty"] == b]
            if not mine:
                continue
            xs, ys = zip(*frontier(mine))
            line, = ax.step(xs, ys, where="post", marker=".", label=f"width {m.get('width', name)}")
            greedy = [p for p in mine if p["method"] == "greedy"]
            ax.scatter([p["flops"] for p in greedy], [p["accuracy"] for p in greedy], s=60, facecolors="none",
                       edgecolors=line.get_color())
        ax.set(xscale="log", xlabel="total FLOPs (train + test set)", title=f"d={b}: best at a compute")
    per_bin[0].set_ylabel("accuracy")
    per_bin[-1].legend(fontsize=7)
    return save(fig, path, dpi=110)
