"""Development benchmark: steadyclf against its peers on 19 real binary tables.

The tables are those of ``/work/shared/benchmarks`` (``data/NAME.csv``: original feature
columns, categoricals as text, missing values as empty cells, label last in ``target``,
0/1; see that folder's README.md and extract.py). They are not in this repository: a clean
clone does not need them, and no test runs this script. Every table is read with
``pd.read_csv`` and split by ``StratifiedKFold(n_splits=5, shuffle=True, random_state=0)``,
the folds of the folder's ``reference.py``.

Models (``--models``, comma list; default ``steadyclf,lr,lgbm,catboost``):

- ``steadyclf``: ``BinaryClassifier(random_state=0, **params)`` fitted on the raw training
  DataFrame (it encodes text columns and missing values itself); ``--params JSON`` adds
  estimator parameters (``'{"random_state": 1}'``: another draw of the initial weights
  and of the internal folds, to see how much the scores move between seeds) and ``--label NAME`` names that variant in the results, so variants
  (ablations) run at different times can be shown side by side (``--compare``). Also kept
  per fold: ``n_iter_`` and ``validation_metrics_`` (scores on the rows the model held
  out for itself; empty when it held none out).
- ``lr``: the pipeline of reference.py: median impute + ``StandardScaler`` (numeric),
  mode impute + one-hot (other columns), ``LogisticRegression(max_iter=5000)``; one-hot
  sparse above 100,000 rows, as there.
- ``lgbm``: ``LGBMClassifier(random_state=0, verbose=-1, n_jobs=1)``, native NaN, text
  columns as pandas ``category`` (converted on the whole table, as reference.py does).
- ``catboost``: reference.py's ``CatBoostClassifier(random_seed=0, verbose=0,
  thread_count=2, cat_features=<text columns>, allow_writing_files=False)``: its
  documented defaults, text columns as strings with a missing value its own level
  (``__NA__``, on the whole table), native NaN in numeric columns. Two threads, not one:
  reference.py's setting, so that its scores and seconds compare with
  reference_scores.csv (checked: the same mean ROC AUC and accuracy to 1e-12).
- ``realmlp`` and ``lgbm_td``: pytabkit's ``RealMLP_TD_Classifier`` and
  ``LGBM_TD_Classifier`` at their defaults (``random_state=0, n_threads=1,
  verbosity=0``), text columns as pandas ``category``. pytabkit refuses NaN in numeric
  columns, so numeric columns with gaps in the training rows get the training median plus
  a 0/1 missing indicator (what steadyclf does inside); this is timed as part of the fit.
  They are slow on CPU: skipped on tables above ``--max-rows-slow`` rows (default 40,000).

Per table and model: mean over the folds of the test ROC AUC, log loss (probabilities
clipped to [1e-15, 1 - 1e-15]), accuracy (probability > 0.5), fit seconds (wall clock of
``fit`` only) and ``predict_proba`` seconds; per table, the best of the peers ``lr``, ``lgbm``
and ``catboost`` and each steadyclf variant's difference to it, and beside it the
difference to the best of ``lr`` and ``lgbm`` alone (what earlier results compared with).
The summary counts the tables where a variant is within 0.005 ROC AUC of that best and
gives the mean difference; a table gives the fit seconds per fold of every model. Peers of
that best not named in ``--models`` come from the cache only (never computed); a last
section compares every variant with the best of the three as ``reference_scores.csv``
gives them (same folds and settings), so each table has its best of three even where
CatBoost (about 43 minutes of a 2-core machine on the 19 tables) was not run here.

Everything runs in this one process, one model and fold at a time, on one thread
(``OMP_NUM_THREADS=1`` is set below before numpy and torch are imported,
``torch.set_num_threads(1)``, threadpoolctl's BLAS limit 1, ``n_jobs=1`` for LightGBM;
``LogisticRegression``'s lbfgs is single-threaded apart from BLAS), except CatBoost on
two (above).

Cache: the fold results of every model go to ``benchmarks/results/real_data_folds.json``
(by table, model label and fold, with the model's specification, the data's SHA-256,
package versions, git commit and date). Peers (``lr``, ``lgbm``, ``catboost``,
``realmlp``, ``lgbm_td``) are deterministic and expensive: their cached folds are reused when the
specification (versions included) and the data match, unless ``--rerun-peers``.
steadyclf variants are always rerun unless ``--reuse``. The report says which numbers
came from the cache and when they were computed.

Run (the bench extra: ``make .venv/.installed-bench``)::

    python benchmarks/real_data.py                              # steadyclf, lr, lgbm, catboost
    python benchmarks/real_data.py --tables titanic,biopsy --folds 0,1   # quick look
    python benchmarks/real_data.py --params '{"weight_decay": 0}' --label wd0 \\
        --out real_data_wd0 --compare steadyclf --reuse         # an ablation
    python benchmarks/real_data.py --models realmlp,lgbm_td     # slow peers (<= 40,000 rows)
    python benchmarks/real_data.py --ablate target-statistics --label no-ts \\
        --out real_data_no-ts                                   # an ingredient turned off

``--ablate`` turns off ingredients of the defaults that no estimator parameter turns off
(:data:`ABLATIONS`: cross-fitting, target statistics) by setting a module constant in
this process; robust scaling is ``--params '{"normalize": "standardize"}'``. ``--params``
and ``--ablate`` combine (both are part of the variant's cache key), and ``--compare``
shows variants computed in earlier runs beside this one, one column each::

    python benchmarks/real_data.py --models steadyclf --ablate cross-fitting \\
        --params '{"numeric_embedding": "none"}' --label no-cf-no-emb \\
        --out real_data_no-cf-no-emb --compare steadyclf,no-cross-fitting

Writes ``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default ``real_data``);
progress goes to stderr.
"""

from __future__ import annotations

import os

# One thread for every method: set before numpy, torch and lightgbm start their pools.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import platform
import shlex
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from peers import (
    add_data_dir,
    as_catboost,
    as_category,
    git_commit,
    log,
    machine,
    make_catboost,
    parse_list,
    require,
    save_json,
    split_columns,
    table_paths,
)
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE = RESULTS / "real_data_folds.json"
N_SPLITS = 5
EPS = 1e-15
#: Within this much ROC AUC of the best of the peers counts as matching it.
TOLERANCE = 0.005
PEERS = ("lr", "lgbm", "catboost", "realmlp", "lgbm_td")
SLOW = ("realmlp", "lgbm_td")
#: The peers whose best, per table, each variant is measured against; always in the report.
BASELINE = ("lr", "lgbm", "catboost")
#: The best of these is kept beside it: the comparison of the results before CatBoost.
BASELINE_OLD = ("lr", "lgbm")
#: reference.py's thread count for CatBoost (scores and seconds compare with its file).
CATBOOST_THREADS = 2
LARGE_ROWS = 100_000  # reference.py: sparse one-hot for lr above this


class Model(Protocol):
    def fit(self, X: Any, y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


# -- data -------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- models -----------------------------------------------------------------------------------
def make_lr(num: list[str], cat: list[str], n_rows: int) -> Model:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    steps: list[tuple[str, Any, list[str]]] = [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num)
    ]
    if cat:
        one_hot = make_pipeline(
            SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
        )
        steps.append(("cat", one_hot, cat))
    sparse = n_rows > LARGE_ROWS  # a dense one-hot of thousands of levels would not fit
    prep = ColumnTransformer(steps, sparse_threshold=0.3 if sparse else 0)
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=5000))])


def make_lgbm() -> Model:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=0, verbose=-1, n_jobs=1)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1: LightGBM's C++ code prints warnings there."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Pytabkit:
    """A pytabkit model at its defaults, behind median imputation + missing indicators.

    pytabkit refuses NaN in numeric columns. Columns with gaps in the training rows get the
    training median and a 0/1 indicator ``<name>__missing``; gaps seen only at predict time
    get the median alone. Categorical columns (pandas ``category``) keep their NaN.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.medians: dict[str, float] = {}
        self.indicators: list[str] = []

    def _transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for c in self.indicators:
            X[f"{c}__missing"] = X[c].isna().astype(np.float64)
        for c, median in self.medians.items():
            X[c] = X[c].fillna(median)
        return X

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Pytabkit:
        from pytabkit import LGBM_TD_Classifier, RealMLP_TD_Classifier

        num, _ = split_columns(X)
        self.indicators = [c for c in num if X[c].isna().any()]
        medians = X[num].median()
        self.medians = {str(c): float(v) if np.isfinite(v) else 0.0 for c, v in medians.items()}
        cls = {"realmlp": RealMLP_TD_Classifier, "lgbm_td": LGBM_TD_Classifier}[self.name]
        self.model = cls(random_state=0, n_threads=1, verbosity=0)
        with quiet_stdout():
            self.model.fit(self._transform(X), y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        with quiet_stdout():
            return np.asarray(self.model.predict_proba(self._transform(X)))


def peer_definition(name: str) -> str:
    return {
        "lr": "median impute + StandardScaler / mode impute + one-hot (sparse above 100,000 "
        "rows), LogisticRegression(max_iter=5000)",
        "lgbm": "LGBMClassifier(random_state=0, verbose=-1, n_jobs=1), native NaN, pandas category",
        "catboost": f"CatBoostClassifier(random_seed=0, verbose=0, thread_count={CATBOOST_THREADS}, "
        "allow_writing_files=False), text columns as cat_features (missing: its own level "
        "'__NA__'), native NaN",
        "realmlp": "pytabkit RealMLP_TD_Classifier(random_state=0, n_threads=1, verbosity=0), "
        "pandas category, numeric NaN -> training median + missing indicator",
        "lgbm_td": "pytabkit LGBM_TD_Classifier(random_state=0, n_threads=1, verbosity=0), "
        "pandas category, numeric NaN -> training median + missing indicator",
    }[name]


def steadyclf_definition(params: dict[str, Any] | None, ablate: list[str] | None = None) -> str:
    if params is None:
        return "no results"
    args = ", ".join(f"{k}={v!r}" for k, v in {"random_state": 0, **params}.items())
    text = f"steadyclf BinaryClassifier({args}) on the raw DataFrame"
    for name in ablate or []:
        text += f"; without {name}: {ABLATIONS[name][3]}"
    return text


def versions() -> dict[str, str]:
    import sklearn
    import torch

    import steadyclf

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "steadyclf": steadyclf.__version__,
    }
    for package in ("lightgbm", "catboost", "pytabkit"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


#: Ingredients of the defaults that no estimator parameter turns off, for ablations
#: (``--ablate``): the module constant set, its value, and what the defaults then do.
#:
#: To add one (an ablation row per new ingredient): give the ingredient a module-level
#: switch that the library reads *at fit time* through its module (``policy.X`` or a bare
#: ``X`` inside the module that defines it; not ``from .policy import X`` into another
#: module, which copies the value at import and would not see the change), then add
#: ``"name": ("steadyclf.module", "CONSTANT", value_that_turns_it_off, "what the defaults
#: then do")`` here. Run it with ``--ablate name --label no-name --out real_data_no-name``,
#: and show it beside the defaults with ``--compare no-name`` in a later run. An
#: ingredient that an estimator parameter turns off needs no entry: ``--params``.
ABLATIONS = {
    "cross-fitting": (
        "steadyclf.policy",
        "SMALL_DATA_FOLDS",
        1,
        "small data trains one network on every row, weight decay 1e-2, no estimate "
        "(the defaults before cross-fitting)",
    ),
    "target-statistics": (
        "steadyclf.schema.roles",
        "MAX_TARGET_LEVELS",
        0,
        "categoricals keep the one-hot of their 64 most frequent levels only",
    ),
    "packed-members": (
        "steadyclf.choice",
        "PACKED_MEMBERS",
        False,
        "members and candidates trained one network after another (same choices and "
        "scores within float32 rounding; other fit seconds)",
    ),
    "decay-for-embeddings": (
        "steadyclf.choice",
        "EMBEDDINGS_AT_CHOSEN_DECAY",
        False,
        "small data trains the members with periodic embeddings with every weight decay "
        "(15 members) instead of the one the network without them chose (5 members)",
    ),
    "raced-embeddings": (
        "steadyclf.policy",
        "RACE_EMBEDDINGS_MAX_ROWS",
        0,
        "held-out data keeps the plain network (no race of the networks with and without "
        "periodic embeddings up to 2**18 training rows)",
    ),
    "large-data-members": (
        "steadyclf.policy",
        "LARGE_DATA_MEMBERS",
        1,
        "held-out data trains one network (no ensemble of 4 members up to 2**17 training rows)",
    ),
}


def apply_ablations(names: list[str]) -> None:
    """Turn the named ingredients off in this process."""
    import importlib

    for name in names:
        if name not in ABLATIONS:
            raise SystemExit(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)}")
        module, constant, value, _ = ABLATIONS[name]
        setattr(importlib.import_module(module), constant, value)


def best_of(ok: dict[str, Any], peers: tuple[str, ...]) -> dict[str, Any] | None:
    """The best mean ROC AUC and the best mean log loss of ``peers`` (None if one is missing)."""
    if not all(b in ok for b in peers):
        return None
    best_auc = max(peers, key=lambda b: ok[b]["mean"]["roc_auc"])
    best_loss = min(peers, key=lambda b: ok[b]["mean"]["log_loss"])
    return {
        "of": list(peers),
        "roc_auc": ok[best_auc]["mean"]["roc_auc"],
        "roc_auc_model": best_auc,
        "log_loss": ok[best_loss]["mean"]["log_loss"],
        "log_loss_model": best_loss,
    }


def summarise_diffs(tables: list[dict[str, Any]], variant: str, suffix: str) -> dict[str, Any]:
    """Counts and means of a variant's differences to a best of peers (``suffix`` picks which)."""
    d = [
        t["diff"][variant]
        for t in tables
        if "roc_auc" + suffix in t.get("diff", {}).get(variant, {})
    ]
    if not d:
        return {}
    auc = [x["roc_auc" + suffix] for x in d]
    return {
        "n_tables": len(d),
        "within_tolerance": sum(a >= -TOLERANCE for a in auc),
        "at_least_best": sum(a >= 0 for a in auc),
        "mean_d_roc_auc": float(np.mean(auc)),
        "median_d_roc_auc": float(np.median(auc)),
        "min_d_roc_auc": float(np.min(auc)),
        "mean_d_log_loss": float(np.mean([x["log_loss" + suffix] for x in d])),
    }


def spec_of(model: str, label: str, params: dict[str, Any], vers: dict[str, str]) -> dict:
    """What a cached result must match to be reused (versions included for the peers)."""
    if model == "steadyclf":
        return {"model": "steadyclf", "params": params}
    needs = {
        "lr": ("scikit-learn",),
        "lgbm": ("lightgbm", "scikit-learn"),
        "catboost": ("catboost",),
        "realmlp": ("pytabkit", "torch"),
        "lgbm_td": ("pytabkit", "lightgbm"),
    }[model]
    return {
        "model": model,
        "definition": peer_definition(model),
        "versions": {k: vers[k] for k in needs},
    }


# -- one fold ---------------------------------------------------------------------------------
def scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "log_loss": float(loss),
        "accuracy": float(np.mean((p > 0.5) == (y == 1))),
    }


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def steadyclf_extra(model: Any) -> dict[str, Any]:
    return json_safe(
        {
            "n_iter_": getattr(model, "n_iter_", None),
            "best_epoch_": getattr(model, "best_epoch_", None),
            "validation_metrics_": getattr(model, "validation_metrics_", None),
            "validation_fraction_": getattr(model, "validation_fraction_", None),
            "weight_decay_": getattr(model, "weight_decay_", None),
            "batch_size_": getattr(model, "batch_size_", None),
            "lr_": getattr(model, "lr_", None),
            "stall_warnings": [w.get("kind") for w in getattr(model, "warnings_", [])],
        }
    )


def run_fold(
    model_name: str,
    params: dict[str, Any],
    X: pd.DataFrame,
    X_cat: pd.DataFrame,
    X_cb: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> dict[str, Any]:
    """Fit one model on one fold; return its test scores, times and what else it reports."""
    num, cat = split_columns(X)
    model: Model
    if model_name == "steadyclf":
        from steadyclf import BinaryClassifier

        model = BinaryClassifier(**{"random_state": 0, **params})  # --params may set the seed
        frame = X
    elif model_name == "lr":
        model, frame = make_lr(num, cat, len(X)), X
    elif model_name == "lgbm":
        model, frame = make_lgbm(), X_cat
    elif model_name == "catboost":
        model, frame = make_catboost(cat, thread_count=CATBOOST_THREADS), X_cb
    else:
        model, frame = Pytabkit(model_name), X_cat
    X_train, X_test = frame.iloc[train], frame.iloc[test]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # pytorch-lightning noise
        started = time.perf_counter()
        model.fit(X_train, y[train])
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        proba = np.asarray(model.predict_proba(X_test))[:, 1]
        predict_s = time.perf_counter() - started
    record: dict[str, Any] = {
        "n_train": len(train),
        "n_test": len(test),
        **scores(y[test], proba),
        "fit_s": fit_s,
        "predict_s": predict_s,
    }
    counts = Counter(w.category.__name__ for w in caught)
    extra: dict[str, Any] = {"python_warnings": dict(counts)} if counts else {}
    if model_name == "steadyclf":
        extra.update(steadyclf_extra(model))
    elif model_name == "lr":
        pipeline: Any = model
        extra["n_iter_"] = int(np.max(pipeline.named_steps["clf"].n_iter_))
    if extra:
        record["extra"] = extra
    return record


# -- cache ------------------------------------------------------------------------------------
def load_cache() -> dict[str, Any]:
    if CACHE.exists():
        return json.loads(CACHE.read_text())
    return {}


# -- report -----------------------------------------------------------------------------------
def mean_of(folds: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([f[key] for f in folds]))


def summarise(entry: dict[str, Any]) -> dict[str, Any]:
    folds = entry["folds"]
    out: dict[str, Any] = {k: mean_of(folds, k) for k in ("roc_auc", "log_loss", "accuracy")}
    out["fit_s"] = mean_of(folds, "fit_s")
    out["predict_s"] = mean_of(folds, "predict_s")
    out["roc_auc_sd"] = float(np.std([f["roc_auc"] for f in folds]))
    if entry["model"] == "steadyclf":
        extras = [f.get("extra", {}) for f in folds]
        out["n_iter_"] = float(np.mean([e.get("n_iter_") or 0 for e in extras]))
        valid = [(e.get("validation_metrics_") or {}).get("roc_auc") for e in extras]
        valid_known = [v for v in valid if v is not None]
        out["validation_roc_auc"] = float(np.mean(valid_known)) if valid_known else None
        out["validation_folds"] = len(valid_known)
    return out


def fmt(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def reference_check(
    data_dir: Path, tables: list[dict[str, Any]], full_folds: bool
) -> dict[str, Any] | None:
    """Our lr / lgbm / catboost means against the folder's reference_scores.csv (same folds)."""
    path = data_dir / "reference_scores.csv"
    if not path.exists() or not full_folds:
        return None
    ref = pd.read_csv(path).drop_duplicates(["dataset", "model"]).set_index(["dataset", "model"])
    rows = []
    for t in tables:
        for model in BASELINE:
            entry = t["models"].get(model)
            if not entry or entry["status"] != "ok" or (t["name"], model) not in ref.index:
                continue
            mean = entry["mean"]
            r = ref.loc[(t["name"], model)]
            rows.append(
                {
                    "table": t["name"],
                    "model": model,
                    "roc_auc": mean["roc_auc"],
                    "reference_roc_auc": float(r["auc"]),
                    "accuracy": mean["accuracy"],
                    "reference_accuracy": float(r["acc"]),
                }
            )
    if not rows:
        return None
    for r in rows:
        r["d_roc_auc"] = r["roc_auc"] - r["reference_roc_auc"]
        r["d_accuracy"] = r["accuracy"] - r["reference_accuracy"]
    return {
        "file": str(path),
        "rows": rows,
        "max_abs_d_roc_auc": max(abs(r["d_roc_auc"]) for r in rows),
        "max_abs_d_accuracy": max(abs(r["d_accuracy"]) for r in rows),
        "over_1e-3": [r for r in rows if abs(r["d_roc_auc"]) > 1e-3 or abs(r["d_accuracy"]) > 1e-3],
    }


def reference_best(
    data_dir: Path, tables: list[dict[str, Any]], variants: list[str], full_folds: bool
) -> dict[str, Any] | None:
    """Each variant's mean ROC AUC against the best of lr, lgbm and catboost as
    reference_scores.csv gives them (same folds, same settings: checked above where this
    run has the peer), so that every table has its best of three even where a peer was not
    run here (CatBoost takes 43 min of this machine on the 19 tables)."""
    path = data_dir / "reference_scores.csv"
    if not path.exists() or not full_folds:
        return None
    ref = pd.read_csv(path).drop_duplicates(["dataset", "model"]).set_index(["dataset", "model"])
    out: dict[str, Any] = {"file": str(path), "of": list(BASELINE), "variants": {}}
    for v in variants:
        rows = []
        for t in tables:
            entry = t["models"].get(v)
            peers = {
                m: ref.loc[(t["name"], m), "auc"] for m in BASELINE if (t["name"], m) in ref.index
            }
            if not entry or entry["status"] != "ok" or len(peers) < len(BASELINE):
                continue
            best = max(peers, key=lambda m: peers[m])
            auc = entry["mean"]["roc_auc"]
            rows.append(
                {
                    "table": t["name"],
                    "roc_auc": auc,
                    "best_model": best,
                    "best_roc_auc": float(peers[best]),
                    "diff": auc - float(peers[best]),
                    "fit_s": entry["mean"]["fit_s"],
                }
            )
        if rows:
            diffs = [r["diff"] for r in rows]
            out["variants"][v] = {
                "rows": rows,
                "within": sum(d >= -TOLERANCE for d in diffs),
                "mean_diff": float(np.mean(diffs)),
            }
    return out if out["variants"] else None


def load(info: dict[str, Any], when: str) -> str:
    values = info.get(f"load_average_{when}")
    return "?" if values is None else " / ".join(f"{v:.1f}" for v in values)


def best_name(peers: tuple[str, ...]) -> str:
    return f"best({', '.join(peers)})"


def fit_seconds_table(tables: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """Mean fit seconds per fold of every model on every table, and the totals."""
    lines = [
        "",
        "## Fit seconds per table",
        "",
        "Mean wall-clock seconds of one `fit` (one fold); last row: the sum over the tables "
        "(of the tables where the model ran).",
        "",
        "| table | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    totals = dict.fromkeys(labels, 0.0)
    for t in tables:
        cells = [t["name"]]
        for m in labels:
            entry = t["models"].get(m)
            if entry is None or entry["status"] != "ok":
                cells.append("-")
                continue
            totals[m] += entry["mean"]["fit_s"]
            cells.append(f"{entry['mean']['fit_s']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **sum** | " + " | ".join(f"{totals[m]:.2f}" for m in labels) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    labels: list[str] = report["labels"]
    variants: list[str] = report["variants"]
    tables = report["tables"]
    lines = [
        "# Real tables: steadyclf against its peers",
        "",
        f"{len(tables)} of {report['n_tables_available']} tables of `{report['data_dir']}`, "
        f"`StratifiedKFold(5, shuffle=True, random_state=0)`, folds "
        f"{', '.join(map(str, report['folds']))}."
        + (" **Partial run** (not every table or fold)." if report["partial"] else ""),
        "Cells: mean test ROC AUC / log loss over the folds (fit seconds: below). "
        f"A variant's difference to the best of {best_name(BASELINE)} by ROC AUC (and, as "
        f"earlier results compared, of {best_name(BASELINE_OLD)}); within {TOLERANCE} "
        "counts as matching it.",
        "",
    ]
    head = ["table", "rows", "features", *labels]
    for v in variants:
        head += [f"{v} - {best_name(BASELINE)}", f"{v} - {best_name(BASELINE_OLD)}"]
    lines += ["| " + " | ".join(head) + " |", "|---|---:|---:|" + "---|" * (len(head) - 3)]
    for t in tables:
        cells = [t["name"], f"{t['rows']:,}", str(t["features"])]
        best_auc = max(
            (
                t["models"][m]["mean"]["roc_auc"]
                for m in labels
                if m in t["models"] and t["models"][m]["status"] == "ok"
            ),
            default=None,
        )
        for m in labels:
            entry = t["models"].get(m)
            if entry is None:
                cells.append("-")
            elif entry["status"] != "ok":
                cells.append(f"skipped ({entry['reason']})")
            else:
                mean = entry["mean"]
                auc = fmt(mean["roc_auc"])
                if best_auc is not None and mean["roc_auc"] == best_auc:
                    auc = f"**{auc}**"
                cells.append(f"{auc} / {mean['log_loss']:.4f}")
        for v in variants:
            d = t.get("diff", {}).get(v, {})
            cells += [fmt(d.get("roc_auc"), sign=True), fmt(d.get("roc_auc_lr_lgbm"), sign=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for v in variants:
        for suffix, peers in (("", BASELINE), ("_lr_lgbm", BASELINE_OLD)):
            s = report["summary"].get(v, {}).get("vs_best" + suffix)
            if not s:
                continue
            lines.append(
                f"- **{v}** against {best_name(peers)}: ROC AUC within {TOLERANCE} of it on "
                f"{s['within_tolerance']} of {s['n_tables']} tables ({s['at_least_best']} at or "
                f"above it); mean difference {s['mean_d_roc_auc']:+.4f} ROC AUC (median "
                f"{s['median_d_roc_auc']:+.4f}, worst {s['min_d_roc_auc']:+.4f}), "
                f"{s['mean_d_log_loss']:+.4f} log loss against the best log loss of "
                f"{', '.join(peers)}."
            )
    lines += fit_seconds_table(tables, labels)
    lines += ["", "## Models", ""]
    lines += [f"- {m}: {report['definitions'][m]}" for m in labels]
    lines += ["", "## Time per model", ""]
    lines += [
        "| model | tables | folds | fit s (total) | predict s (total) | computed |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in labels:
        t_ = report["time"][m]
        lines.append(
            f"| {m} | {t_['tables']} | {t_['folds']} | {t_['fit_s']:.1f} | "
            f"{t_['predict_s']:.1f} | {t_['source']} |"
        )
    skipped = [
        f"{t['name']} ({m})"
        for t in tables
        for m in labels
        if m in t["models"] and t["models"][m]["status"] != "ok"
    ]
    if skipped:
        lines += [
            "",
            f"Skipped (above --max-rows-slow {report['max_rows_slow']:,} rows): "
            + ", ".join(skipped)
            + ".",
        ]
    details = [v for v in variants if any(v in t["models"] for t in tables)]
    for v in details:
        lines += [
            "",
            f"## {v}: epochs and the model's own validation score",
            "",
            "`n_iter_` (all members together) and `validation_metrics_['roc_auc']` (the "
            "model's own estimate: on the rows it held out for itself, or out of fold on small "
            "data, each row scored by the cross-fitted member that did not train on it; '-' "
            "when it has none) against the test ROC AUC, fold means.",
            "",
            "| table | epochs | validation ROC AUC | test ROC AUC | difference |",
            "|---|---:|---:|---:|---:|",
        ]
        gaps = []
        for t in tables:
            entry = t["models"].get(v)
            if not entry or entry["status"] != "ok":
                continue
            mean = entry["mean"]
            valid = mean.get("validation_roc_auc")
            note = (
                ""
                if mean.get("validation_folds") in (0, len(entry["folds"]))
                else (f" ({mean['validation_folds']} folds)")
            )
            gap = None if valid is None else valid - mean["roc_auc"]
            if gap is not None:
                gaps.append(abs(gap))
            lines.append(
                f"| {t['name']} | {mean['n_iter_']:.0f} | {fmt(valid)}{note} | "
                f"{fmt(mean['roc_auc'])} | {'-' if gap is None else f'{gap:+.4f}'} |"
            )
        if gaps:
            lines += [
                "",
                f"The estimate is within 0.02 of the test ROC AUC on {sum(g <= 0.02 for g in gaps)}"
                f" of {len(gaps)} tables (largest difference {max(gaps):.4f}).",
            ]
    check = report.get("reference_check")
    lines += ["", "## Check against reference_scores.csv", ""]
    if check is None:
        lines.append("Not made (partial folds, or no reference_scores.csv, or no peers).")
    else:
        lines.append(
            f"{', '.join(BASELINE)} here against `{check['file']}` (same folds): largest difference "
            f"{check['max_abs_d_roc_auc']:.2g} in mean ROC AUC, "
            f"{check['max_abs_d_accuracy']:.2g} in mean accuracy."
        )
        if check["over_1e-3"]:
            lines += ["", "Differences above 1e-3:", ""]
            lines += [
                "| table | model | ROC AUC (reference) | accuracy (reference) |",
                "|---|---|---|---|",
            ]
            for r in check["over_1e-3"]:
                lines.append(
                    f"| {r['table']} | {r['model']} | {r['roc_auc']:.4f} "
                    f"({r['reference_roc_auc']:.4f}) | {r['accuracy']:.4f} "
                    f"({r['reference_accuracy']:.4f}) |"
                )
    best3 = report.get("reference_best")
    if best3 is not None:
        lines += ["", "## Against the best of lr, lgbm and catboost in reference_scores.csv", ""]
        lines.append(
            f"Per table the best mean ROC AUC of {', '.join(best3['of'])} as `{best3['file']}` "
            "gives it (same folds and settings as the peers above), and each variant's "
            "difference to it."
        )
        for v, r in best3["variants"].items():
            lines += [
                "",
                f"**{v}**: within {TOLERANCE} of that best on {r['within']} of {len(r['rows'])} "
                f"tables; mean difference {r['mean_diff']:+.4f}.",
                "",
                "| table | best of three | its ROC AUC | " + v + " | difference | fit s |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for row in r["rows"]:
                lines.append(
                    f"| {row['table']} | {row['best_model']} | {row['best_roc_auc']:.4f} | "
                    f"{row['roc_auc']:.4f} | {row['diff']:+.4f} | {row['fit_s']:.2f} |"
                )
    lines += ["", "## Where the numbers come from", ""]
    for m in labels:
        lines.append(f"- {m}: {report['provenance'][m]}")
    vers = report["versions"]
    wall_s = report["wall_s"]
    wall = f"{wall_s / 60:.1f} min" if wall_s >= 60 else f"{wall_s:.0f} s"
    lines += [
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['logical_cpus']} logical "
        f"CPUs (shared), {report['machine'].get('memory_gb', '?')} GB, load average (1, 5, 15 "
        f"min) {load(report['machine'], 'start')} at the start, "
        f"{load(report['machine'], 'end')} at the end; "
        + ", ".join(f"{k} {v}" for k, v in vers.items())
        + f"; git {report['git_commit']}.",
        "Threads: one per method (OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1, "
        "torch.set_num_threads(1), BLAS limited to 1 by threadpoolctl, LightGBM n_jobs=1 / "
        f"pytabkit n_threads=1) except CatBoost (thread_count={CATBOOST_THREADS}, as "
        "reference.py), models run one after the other in one process.",
        f"Command: `{report['command']}` ({wall}, {report['date']}).",
        "",
    ]
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument(
        "--models",
        default="steadyclf,lr,lgbm,catboost",
        help="comma list of steadyclf, lr, lgbm, catboost, realmlp, lgbm_td",
    )
    parser.add_argument(
        "--params", default="{}", help="JSON object of extra BinaryClassifier parameters"
    )
    parser.add_argument("--label", help="name of this steadyclf variant (default: steadyclf)")
    parser.add_argument(
        "--ablate",
        default="",
        help=f"comma list of default ingredients to turn off: {', '.join(ABLATIONS)}",
    )
    parser.add_argument(
        "--compare", default="", help="other steadyclf variants (labels) to show, from the cache"
    )
    parser.add_argument("--tables", help="comma list of tables (default: all)")
    parser.add_argument("--folds", help="comma list of folds 0-4 (default: all)")
    parser.add_argument(
        "--max-rows-slow",
        type=int,
        default=40_000,
        help="skip realmlp and lgbm_td on tables with more rows",
    )
    parser.add_argument(
        "--rerun-peers",
        action="store_true",
        help="recompute the peers (lr, lgbm, catboost, ...) instead of using the cache",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse cached steadyclf folds (same params, same data)"
    )
    parser.add_argument("--out", default="real_data", help="results name (NAME.md, NAME.json)")
    args = parser.parse_args(argv)
    command = "python benchmarks/real_data.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)

    params = json.loads(args.params)
    if not isinstance(params, dict):
        raise SystemExit("--params must be a JSON object")
    ablate = parse_list(args.ablate)
    apply_ablations(ablate)
    if ablate and not args.label:
        raise SystemExit("--ablate needs a --label for the variant")
    models = parse_list(args.models)
    unknown = [m for m in models if m not in ("steadyclf", *PEERS)]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from steadyclf, {', '.join(PEERS)}")
    label = args.label or ("steadyclf" if not params else "steadyclf " + json.dumps(params))
    if label in PEERS:
        raise SystemExit(f"--label {label!r} is the name of a peer")
    # The report always holds the baseline (lr, lgbm, catboost) for the difference columns.
    labels = [label if m == "steadyclf" else m for m in models]
    compare = [c for c in parse_list(args.compare) if c not in labels]
    labels = compare + labels
    # Baseline peers not named in --models come from the cache only (never computed here):
    # where they are missing, the section against reference_scores.csv still compares.
    cache_only = [m for m in BASELINE if m not in labels]
    labels += cache_only
    order = {"lr": 1, "lgbm": 2, "catboost": 3, "lgbm_td": 4, "realmlp": 5}
    labels.sort(key=lambda m: order.get(m, 6))  # peers first, then steadyclf variants
    variants = [m for m in labels if m not in PEERS]
    run_variant = "steadyclf" in models
    needs = {
        "lgbm": "lightgbm",
        "catboost": "catboost",
        "realmlp": "pytabkit",
        "lgbm_td": "pytabkit",
    }
    for m in labels:
        if m in needs:
            require(needs[m])

    paths = table_paths(args.data_dir)
    names = parse_list(args.tables) or list(paths)
    missing = [n for n in names if n not in paths]
    if missing:
        raise SystemExit(f"no table(s) {missing} in {args.data_dir}; have {', '.join(paths)}")
    folds = [int(f) for f in parse_list(args.folds)] or list(range(N_SPLITS))
    if any(f not in range(N_SPLITS) for f in folds):
        raise SystemExit(f"--folds must be in 0..{N_SPLITS - 1}")

    vers = versions()
    commit = git_commit()
    cache = load_cache()
    started_run = time.perf_counter()
    load_start = os.getloadavg()
    today = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    tables: list[dict[str, Any]] = []
    variant_params: dict[str, dict[str, Any]] = {}
    variant_ablations: dict[str, list[str]] = {}
    for i, name in enumerate(names, 1):
        path = paths[name]
        df = pd.read_csv(path)
        y = df.pop("target").to_numpy()
        _, cat = split_columns(df)
        X_cat = as_category(df, cat)
        X_cb = as_catboost(df, cat)
        digest = sha256(path)
        splits = list(StratifiedKFold(N_SPLITS, shuffle=True, random_state=0).split(df, y))
        table: dict[str, Any] = {
            "name": name,
            "rows": len(df),
            "features": df.shape[1],
            "positive_rate": float(y.mean()),
            "sha256": digest,
            "models": {},
        }
        log(f"[{i}/{len(names)}] {name}: {len(df):,} rows x {df.shape[1]} features")
        for m in labels:
            model = "steadyclf" if m in variants else m
            if m in SLOW and len(df) > args.max_rows_slow:
                log(f"  {m}: skipped, {len(df):,} rows > --max-rows-slow {args.max_rows_slow:,}")
                table["models"][m] = {
                    "model": model,
                    "status": "skipped",
                    "reason": f"> {args.max_rows_slow:,} rows",
                }
                continue
            cached = cache.get(name, {}).get(m)
            is_compare = m in compare
            if is_compare:
                if not cached or cached.get("sha256") != digest:
                    log(f"  {m}: not in the cache for this data, left out")
                    continue
                spec = cached["spec"]
            else:
                spec = spec_of(model, m, params if m == label else {}, vers)
                if model == "steadyclf" and m == label and ablate:
                    spec["ablate"] = ablate
            if model == "steadyclf":
                variant_params[m] = spec.get("params", {})
                variant_ablations[m] = spec.get("ablate", [])
            reusable = (
                cached is not None
                and cached.get("spec") == spec
                and cached.get("sha256") == digest
                and (
                    is_compare
                    or m in cache_only  # never computed here, so --rerun-peers keeps it
                    or (args.reuse if model == "steadyclf" else not args.rerun_peers)
                )
            )
            if m in cache_only and not reusable:
                log(f"  {m}: not in --models and not cached for this data, left out")
                continue
            if cached is not None and not reusable and not is_compare:
                why = (
                    "spec or data changed"
                    if cached.get("spec") != spec or cached.get("sha256") != digest
                    else "--rerun-peers"
                    if model != "steadyclf"
                    else "steadyclf variants rerun unless --reuse"
                )
                log(f"  {m}: cached folds not used ({why})")
            if not reusable:
                cached = {"model": model, "spec": spec, "sha256": digest, "folds": {}}
            assert cached is not None
            results = []
            for k in folds:
                record = cached["folds"].get(str(k)) if reusable else None
                if record is not None:
                    results.append({"fold": k, **record, "source": "cache"})
                    continue
                if is_compare or m in cache_only or (model == "steadyclf" and not run_variant):
                    continue
                train, test = splits[k]
                record = run_fold(model, spec.get("params", {}), df, X_cat, X_cb, y, train, test)
                record.update(computed_at=today, versions=vers, commit=commit)
                cached["folds"][str(k)] = record
                cache.setdefault(name, {})[m] = cached
                save_json(CACHE, cache)  # an interrupted run keeps what it computed
                log(
                    f"  {m} fold {k}: AUC {record['roc_auc']:.4f}, log loss "
                    f"{record['log_loss']:.4f}, fit {record['fit_s']:.2f} s, "
                    f"predict {record['predict_s']:.2f} s"
                )
                results.append({"fold": k, **record, "source": "this run"})
            if len(results) < len(folds):
                if results:
                    log(f"  {m}: only {len(results)} of the folds cached, left out")
                continue
            entry: dict[str, Any] = {"model": model, "status": "ok", "folds": results}
            entry["mean"] = summarise(entry)
            table["models"][m] = entry
            srcs = Counter(r["source"] for r in results)
            log(
                f"  {m}: AUC {entry['mean']['roc_auc']:.4f} "
                f"({', '.join(f'{s}: {n} folds' for s, n in srcs.items())})"
            )
        ok = {m: e for m, e in table["models"].items() if e["status"] == "ok"}
        for key, peers in (("best", BASELINE), ("best_lr_lgbm", BASELINE_OLD)):
            best = best_of(ok, peers)
            if best is None:
                continue
            table[key] = best
            table.setdefault("diff", {})
            for v in variants:
                if v in ok:
                    d = table["diff"].setdefault(v, {})
                    suffix = "" if key == "best" else "_lr_lgbm"
                    d["roc_auc" + suffix] = ok[v]["mean"]["roc_auc"] - best["roc_auc"]
                    d["log_loss" + suffix] = ok[v]["mean"]["log_loss"] - best["log_loss"]
        tables.append(table)

    summary: dict[str, Any] = {}
    for v in variants:
        for suffix in ("", "_lr_lgbm"):
            s = summarise_diffs(tables, v, suffix)
            if s:
                summary.setdefault(v, {})["vs_best" + suffix] = s
    timing: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for m in labels:
        recs = [r for t in tables for r in t["models"].get(m, {}).get("folds", [])]
        sources = Counter(r["source"] for r in recs)
        timing[m] = {
            "tables": sum(m in t["models"] and t["models"][m]["status"] == "ok" for t in tables),
            "folds": len(recs),
            "fit_s": float(sum(r["fit_s"] for r in recs)),
            "predict_s": float(sum(r["predict_s"] for r in recs)),
            "source": ", ".join(f"{s}: {n} folds" for s, n in sorted(sources.items())) or "-",
        }
        cached_recs = [r for r in recs if r["source"] == "cache"]
        if not recs:
            provenance[m] = "no results"
        elif not cached_recs:
            provenance[m] = f"computed in this run ({len(recs)} folds)"
        else:
            dates = sorted(r["computed_at"][:10] for r in cached_recs)
            commits = sorted({r["commit"] for r in cached_recs})
            vs = {json.dumps(r["versions"], sort_keys=True) for r in cached_recs}
            same = (
                "the versions of this run"
                if vs == {json.dumps(vers, sort_keys=True)}
                else (
                    "versions: "
                    + "; ".join(
                        ", ".join(f"{k} {v}" for k, v in json.loads(s).items()) for s in sorted(vs)
                    )
                )
            )
            when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
            provenance[m] = (
                f"{len(cached_recs)} of {len(recs)} folds from the cache "
                f"({CACHE.relative_to(ROOT)}), computed {when} at git {', '.join(commits)} "
                f"with {same}"
            )
    for t in tables:  # versions per fold stay in the cache; here only where they differ
        for e in t["models"].values():
            for r in e.get("folds", []):
                if r.get("versions") == vers:
                    del r["versions"]
    full_folds = folds == list(range(N_SPLITS))
    report: dict[str, Any] = {
        "command": command,
        "date": today,
        "wall_s": time.perf_counter() - started_run,
        "data_dir": str(args.data_dir),
        "n_tables_available": len(paths),
        "folds": folds,
        "partial": not full_folds or len(names) < len(paths),
        "labels": labels,
        "variants": variants,
        "params": variant_params,
        "max_rows_slow": args.max_rows_slow,
        "tolerance": TOLERANCE,
        "best_of": {"best": list(BASELINE), "best_lr_lgbm": list(BASELINE_OLD)},
        "machine": {
            **machine(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "versions": vers,
        "git_commit": commit,
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": "1"},
        "definitions": {
            m: peer_definition(m)
            if m in PEERS
            else steadyclf_definition(variant_params.get(m), variant_ablations.get(m))
            for m in labels
        },
        "summary": summary,
        "time": timing,
        "provenance": provenance,
        "tables": tables,
    }
    report["reference_check"] = reference_check(args.data_dir, tables, full_folds)
    report["reference_best"] = reference_best(args.data_dir, tables, variants, full_folds)
    RESULTS.mkdir(exist_ok=True)
    text = markdown(report)
    (RESULTS / f"{args.out}.md").write_text(text)
    save_json(RESULTS / f"{args.out}.json", report)
    print(text)


if __name__ == "__main__":
    main()
