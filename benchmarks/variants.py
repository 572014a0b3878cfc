"""Prototype variants of the defaults on the small development tables, against the defaults.

Each variant changes one ingredient by patching steadyclf in this process only (nothing
here is part of the library); it is fitted with the same 5 folds as ``real_data.py`` on
the tables of up to ``--max-rows`` rows, for each seed of ``--seeds``, beside the defaults
fitted the same way. Prints mean test ROC AUC per table and the variant's mean difference
per seed; writes ``benchmarks/results/variants-NAME.json`` and ``.md``.

Variants:

- ``plateau-10``: the ``'plateau'`` schedule waits 10 checks before cutting the rate
  instead of ``patience // 3`` (3): on full-batch data a check is one step, and 3 steps
  is less than one time constant of Adam's momentum.
- ``plr``: periodic embeddings of the scaled numeric inputs (Gorishniy et al. 2022, PLR):
  per column, ``relu(W [cos(2 pi f x), sin(2 pi f x)] + b)`` with 8 trainable frequencies
  ``f ~ N(0, sigma)`` and 4 outputs, appended to the inputs of the first layer.
- ``pbld``: RealMLP's variant (Holzmueller et al. 2024): ``cos(2 pi f x + phase)`` with
  16 frequencies, a linear map to 3 outputs, learning rate x 0.1 on these weights.
- ``seed-bag``: the probabilities of 3 fits (seeds s, s+100, s+200) averaged.
- ``linear-path``: each network's logit plus a linear map of its inputs, starting at 0
  (logistic regression inside the network); trained through autograd.

Since ``numeric_embedding='auto'`` became the default (PLR on the continuous columns of
small data, in the library), ``plr`` and ``pbld`` replace the library's embedding
(``numeric_embedding='none'`` plus the patch); the results files of these variants from
before that compare with the defaults of then, which had no embedding.

``--min-values N`` embeds only the numeric columns with at least N distinct values in
training (the continuous ones; others go in as they are). ``--sigma`` sets the frequencies' spread for ``plr`` and ``pbld`` (default 1.0; RealMLP
uses 0.1 on inputs scaled by the interquartile range, about 3x wider than our 5-95 %
spread). The embeddings run through autograd and the torch forward pass (the fused
training step, the NumPy and ONNX paths know no such stage).

Usage::

    python benchmarks/variants.py --variant plr --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import real_data

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("plateau-10", "plr", "pbld", "seed-bag", "linear-path")
#: The numeric inputs the embeddings take (``None``: all), set per fit from --min-values.
EMBEDDED: dict[str, list[int] | None] = {"columns": None}
MIN_VALUES = [0]


def patch_plateau(wait: int) -> None:
    """The 'plateau' schedule cuts the rate after ``wait`` checks without improvement."""
    import torch

    from steadyclf.nn import optim
    from steadyclf.train import trainer

    original = optim.make_scheduler

    def make_scheduler(name: str, optimizer: Any, **kwargs: Any) -> Any:
        if name == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=wait)
        return original(name, optimizer, **kwargs)

    trainer.make_scheduler = make_scheduler  # type: ignore[assignment]


def patch_embeddings(kind: str, sigma: float) -> None:
    """Every body starts with a periodic embedding of the numeric inputs (``plr``/``pbld``)."""
    import torch
    from torch import nn

    from steadyclf.nn import modules

    n_numeric = {"m": 0}
    frequencies, outputs, scale = (8, 4, 1.0) if kind == "plr" else (16, 3, 0.1)

    class Periodic(nn.Module):
        def __init__(self, columns: list[int], generator: torch.Generator | None) -> None:
            super().__init__()
            g = generator
            self.columns = columns
            m = len(columns)
            width = 2 * frequencies if kind == "plr" else frequencies
            self.frequency = nn.Parameter(torch.randn(m, frequencies, generator=g) * sigma / scale)
            if kind == "pbld":
                self.phase = nn.Parameter(
                    (torch.rand(m, frequencies, generator=g) * 2 - 1) * math.pi / scale
                )
            bound = 1 / math.sqrt(width) / scale
            self.weight = nn.Parameter((torch.rand(m, width, outputs, generator=g) * 2 - 1) * bound)
            self.bias = nn.Parameter(
                torch.zeros(m, outputs)
                if kind == "plr"
                else (torch.rand(m, outputs, generator=g) * 2 - 1) * bound
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = 2 * math.pi * x[:, self.columns].unsqueeze(-1) * (scale * self.frequency)
            if kind == "plr":
                p = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
            else:
                p = torch.cos(z + scale * self.phase)
            e = torch.einsum("nmk,mke->nme", p, scale * self.weight) + scale * self.bias
            e = torch.relu(e) if kind == "plr" else e
            # Appended last: the columns the library addresses by offset keep their place.
            return torch.cat([x, e.reshape(len(x), -1)], dim=1)

    original_init = modules.SteadyNet.__init__
    original_body = modules.make_body

    def init(self: Any, arch: Any, **kwargs: Any) -> None:
        n_numeric["m"] = arch.n_numeric
        original_init(self, arch, **kwargs)

    def make_body(n_inputs: int, hidden: Any, activation: str, **kwargs: Any) -> nn.Sequential:
        chosen = EMBEDDED["columns"]
        columns = list(range(n_numeric["m"])) if chosen is None else chosen
        if not columns:
            return original_body(n_inputs, hidden, activation, **kwargs)
        inner = original_body(n_inputs + len(columns) * outputs, hidden, activation, **kwargs)
        return nn.Sequential(Periodic(columns, kwargs.get("generator")), *inner)

    modules.SteadyNet.__init__ = init  # type: ignore[method-assign]
    modules.make_body = make_body
    predict_through_torch()


def predict_through_torch() -> None:
    """Predictions through the torch module (the NumPy forward knows no patched stage)."""
    import torch

    import steadyclf.estimator as estimator
    from steadyclf.nn import modules

    class TorchNetwork:
        def __init__(self, arch: Any, weights: Any) -> None:
            self.arch, self.weights = arch, weights
            self.module = modules.module_from_weights(arch, weights)

        def logits(self, x_num: np.ndarray, x_cat: np.ndarray | None) -> np.ndarray:
            with torch.no_grad():
                codes = None if x_cat is None else torch.from_numpy(np.asarray(x_cat))
                xn = torch.from_numpy(np.asarray(x_num, dtype=np.float64))
                return self.module(xn, codes).double().numpy()

    estimator.NumpyNetwork = TorchNetwork  # type: ignore[misc, assignment]


def patch_linear_path() -> None:
    """Each body's logit plus a linear map of its inputs (zero at the start): the network
    holds logistic regression as a special case it reaches without bending its units."""
    import torch
    from torch import nn

    from steadyclf.nn import modules

    class WithLinear(nn.Sequential):
        """The body's layers (a subclass: no fused step, the layers where the library
        looks for them) and the linear path."""

        def __init__(self, body: nn.Sequential, n_inputs: int) -> None:
            super().__init__(*body)
            self.linear = nn.Parameter(torch.zeros(n_inputs, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + x @ self.linear.to(x.dtype)

    original_body = modules.make_body

    def make_body(n_inputs: int, hidden: Any, activation: str, **kwargs: Any) -> nn.Module:
        return WithLinear(original_body(n_inputs, hidden, activation, **kwargs), n_inputs)

    modules.make_body = make_body
    predict_through_torch()


def fit_predict(variant: str | None, seed: int, X_train: Any, y_train: Any, X_test: Any) -> Any:
    from steadyclf import BinaryClassifier

    if MIN_VALUES[0]:  # embed only the numeric inputs with this many distinct values
        from steadyclf.schema.encoder import TabularEncoder

        names = [c.name for c in TabularEncoder.fit(X_train).numeric_infos]
        EMBEDDED["columns"] = [
            i for i, name in enumerate(names) if X_train[name].nunique() >= MIN_VALUES[0]
        ]

    seeds = [seed, seed + 100, seed + 200] if variant == "seed-bag" else [seed]
    # The patched embeddings replace the library's (the defaults embed on small data).
    params = {"numeric_embedding": "none"} if variant in ("plr", "pbld") else {}
    probas = [
        BinaryClassifier(random_state=s, **params).fit(X_train, y_train).predict_proba(X_test)[:, 1]
        for s in seeds
    ]
    return np.mean(probas, axis=0)


def run(variant: str | None, seed: int, tables: dict[str, Path], max_rows: int) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    scores: dict[str, dict[str, float]] = {}
    for name, path in sorted(tables.items()):
        frame = pd.read_csv(path)
        if len(frame) > max_rows:
            continue
        X, y = frame.drop(columns="target"), frame["target"].to_numpy()
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
        started, aucs = time.perf_counter(), []
        for train, test in folds:
            proba = fit_predict(variant, seed, X.iloc[train], y[train], X.iloc[test])
            aucs.append(roc_auc_score(y[test], proba))
        scores[name] = {"roc_auc": float(np.mean(aucs)), "seconds": time.perf_counter() - started}
        print(f"  {variant or 'defaults'} seed {seed} {name:18s} {scores[name]['roc_auc']:.4f}")
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--seeds", default="0", help="comma list of random_state values")
    parser.add_argument("--sigma", type=float, default=1.0, help="frequency spread (plr, pbld)")
    parser.add_argument("--max-rows", type=int, default=10_240, help="largest table to run")
    parser.add_argument(
        "--min-values",
        type=int,
        default=0,
        help="plr/pbld: embed only numeric columns with at least this many distinct values",
    )
    parser.add_argument("--out", help="results name (default: variants-VARIANT)")
    parser.add_argument("--data-dir", type=Path, default=peers.DEFAULT_DATA)
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    tables = real_data.table_paths(args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    defaults = {s: run(None, s, tables, args.max_rows) for s in seeds}
    if args.variant == "plateau-10":
        patch_plateau(10)
    elif args.variant in ("plr", "pbld"):
        MIN_VALUES[0] = args.min_values
        patch_embeddings(args.variant, args.sigma)
    elif args.variant == "linear-path":
        patch_linear_path()
    variant = {s: run(args.variant, s, tables, args.max_rows) for s in seeds}

    names = sorted(defaults[seeds[0]])
    head = " | ".join(f"seed {s}: defaults / variant" for s in seeds)
    lines = [
        f"# Variant {args.variant}"
        + (f" (sigma {args.sigma:g})" if args.variant in ("plr", "pbld") else "")
        + (f", columns of >= {args.min_values} values" if args.min_values else ""),
        "",
        f"`python benchmarks/variants.py {' '.join(sys.argv[1:] if argv is None else argv)}`: "
        f"mean test ROC AUC over the 5 folds of `real_data.py`, tables up to {args.max_rows:,} "
        "rows; fit seconds for all 5 folds.",
        "",
        f"| table | {head} | fit s (defaults / variant, seed {seeds[0]}) |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for name in names:
        cells = [
            f"{defaults[s][name]['roc_auc']:.4f} / {variant[s][name]['roc_auc']:.4f} "
            f"({variant[s][name]['roc_auc'] - defaults[s][name]['roc_auc']:+.4f})"
            for s in seeds
        ]
        d, v = defaults[seeds[0]][name]["seconds"], variant[seeds[0]][name]["seconds"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {d:.1f} / {v:.1f} |")
    lines.append("")
    for s in seeds:
        diffs = [variant[s][n]["roc_auc"] - defaults[s][n]["roc_auc"] for n in names]
        lines.append(
            f"- seed {s}: mean difference {np.mean(diffs):+.4f} ROC AUC over {len(names)} "
            f"tables, higher on {sum(d > 0 for d in diffs)}"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    stem = args.out or f"variants-{args.variant}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    data = {
        "variant": args.variant,
        "sigma": args.sigma,
        "defaults": defaults,
        "variant_scores": variant,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
