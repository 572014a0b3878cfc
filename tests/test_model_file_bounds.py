"""A model.json edited to hold huge numbers is refused or works, quickly and in little
memory (issue 22, item 4; SECURITY.md): every count, size and string width in it is
checked against the weights file before anything is allocated from it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadyclf import BinaryClassifier
from steadyclf.cli import main
from steadyclf.persistence import refresh_checksum

#: Every numeric leaf of model.json is set to each of these in turn: integers too where the
#: leaf is an integer (counts must stay integers to get past the type checks).
HUGE_INTS = (10**6, 10**12, -(10**12), 10**300)
HUGE_FLOATS = (1e12, -1e12, 1e300)
ROWS = 2000  # the prediction: 2,000 rows

#: Runs in a fresh interpreter, every edit of one model in turn. Memory: tracemalloc sees
#: Python objects and NumPy's buffers (NumPy reports its allocations to it), measured per
#: edit as the peak above the start; ru_maxrss (the process's peak resident memory, which
#: also sees safetensors' and BLAS's native allocations) is checked once at the end
#: against the peak after a first clean load and predict, so one edit beyond the limit
#: anywhere shows there too. Time: a SIGALRM stops an edit that runs past 5 s (a loop over
#: 10**12 members would never end), and each edit's wall time must stay under 1 s. The
#: history's records are all read alike: the leaves of the first one stand for the rest.
_SCRIPT = r"""
import copy, json, resource, shutil, signal, sys, time, tracemalloc
from pathlib import Path
import numpy as np, pandas as pd
import steadyclf
from steadyclf import ModelFileError
from steadyclf.persistence import refresh_checksum

source, tmp, rows = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
huge_ints, huge_floats = json.loads(sys.argv[4]), json.loads(sys.argv[5])
index = json.loads((source / "model.json").read_text())
rng = np.random.default_rng(0)
frame = pd.DataFrame({"x": rng.normal(50, 10, rows), "z": rng.normal(size=rows),
                      "city": rng.choice(["Oslo", "Rome", "Pisa"], rows)})
frame.loc[::7, "x"] = np.nan

def leaves(node, path=()):
    if path == ("history",):
        node = node[:1]
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for k, value in enumerate(node):
            yield from leaves(value, (*path, k))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node

def load_and_predict(directory):
    clf = steadyclf.load(directory)
    proba = clf.predict_proba(frame)
    labels = clf.predict(frame)
    assert proba.shape == (rows, 2) and np.isfinite(proba).all(), "non-finite probability"
    assert labels.shape == (rows,)

class Timeout(Exception):
    pass

def alarm(signum, stack):
    raise Timeout()

signal.signal(signal.SIGALRM, alarm)
directory = tmp / "edited"  # one copy, its model.json rewritten for each edit
shutil.copytree(source, directory)
load_and_predict(source)  # imports, caches: what every edit below may reuse
baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
worst = {"seconds": 0.0, "bytes": 0}
outcomes = {"refused": 0, "ran": 0}
for n, (path, original) in enumerate(leaves(index)):
    values = huge_ints + huge_floats if isinstance(original, int) else huge_floats
    for value in values:
        edited = copy.deepcopy(index)
        node = edited
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (directory / "model.json").write_text(json.dumps(edited))
        refresh_checksum(directory, files=False)  # the point is the bounds, not the checksum
        where = "/".join(map(str, path)) + f" = {value!r}"
        tracemalloc.reset_peak()
        start_bytes = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        signal.alarm(5)
        try:
            load_and_predict(directory)
            outcome = "ran"
        except ModelFileError as exc:
            text = str(exc)
            assert "\n" not in text, f"{where}: a refusal of several lines: {text!r}"
            outcome = "refused"
        except Timeout:
            sys.exit(f"{where}: still running after 5 s")
        except Exception as exc:
            sys.exit(f"{where}: {type(exc).__name__}: {exc}")
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        grown = tracemalloc.get_traced_memory()[1] - start_bytes
        outcomes[outcome] += 1
        if seconds > 1.0 or grown > 300e6:
            sys.exit(f"{where}: {outcome} after {seconds:.2f} s, {grown / 1e6:.0f} MB")
        worst["seconds"] = max(worst["seconds"], seconds)
        worst["bytes"] = max(worst["bytes"], grown)
tracemalloc.stop()
grown_rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) * 1024  # KiB
print(json.dumps({**outcomes, **worst, "rss_growth": grown_rss}))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model with every kind of field: numeric and categorical columns, missing
    values, string classes, cross-fitted members."""
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "x": rng.normal(50, 10, n),
            "z": rng.normal(size=n),
            "city": rng.choice(["Oslo", "Rome", "Pisa"], n),
        }
    )
    frame.loc[::9, "x"] = np.nan
    y = np.where(frame["z"] + rng.normal(size=n) > 0, "yes", "no")
    clf = BinaryClassifier(hidden=(8, 4), max_epochs=3, random_state=0).fit(frame, y)
    out = tmp_path_factory.mktemp("bounds") / "model"
    clf.save(out)
    return out


def test_any_numeric_field_set_huge_is_refused_or_works_quickly_in_little_memory(
    model_dir: Path, tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable, "-c", _SCRIPT, str(model_dir), str(tmp_path), str(ROWS),
            json.dumps(HUGE_INTS), json.dumps(HUGE_FLOATS),
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # Both outcomes happen (a test that could not tell them apart would prove nothing).
    assert result["refused"] > 20 and result["ran"] > 20, result
    assert result["rss_growth"] < 300e6, result


def _edited(model_dir: Path, tmp_path: Path, path: tuple[Any, ...], value: Any) -> Path:
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(model_dir, copy)
    index = json.loads((copy / "model.json").read_text())
    node = index
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy, files=False)  # re-signed: the bounds checks must refuse it
    return copy


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("architecture", "n_members"), 10**6, "n_members"),
        (("architecture", "n_members"), 10**12, "n_members"),
        (("classes", "dtype"), "<U1000000", "classes dtype"),
    ],
)
def test_the_cli_refuses_a_resource_bomb_at_once_naming_the_field(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: tuple[str, ...],
    value: Any,
    field: str,
) -> None:
    model = _edited(model_dir, tmp_path, path, value)
    data = tmp_path / "new.csv"
    pd.DataFrame({"x": [50.0] * ROWS, "z": 0.0, "city": "Oslo"}).to_csv(data, index=False)
    start = time.perf_counter()
    code = main(["predict", str(model), str(data), "--out", str(tmp_path / "p.csv")])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and field in err, err
    assert seconds < 1.0
    assert not (tmp_path / "p.csv").exists()
