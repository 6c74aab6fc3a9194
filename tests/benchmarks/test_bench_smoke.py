"""Smoke test of benchmarks/bench_ops.py: it runs in-process and fills its tables.

Only shapes of the output are checked, never timings (the machine is shared and noisy).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ops.py"
MINIMAL = ["--quick", "--repeats", "1", "--settle", "0"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ops"] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_ops", None)


@pytest.fixture(autouse=True)
def no_warm_up(bench, monkeypatch):
    monkeypatch.setattr(bench, "warm_up_threads", lambda limit: 0.0)


def test_tiny_case_gives_rows_for_every_framework(bench, capsys, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    results = bench.main(MINIMAL + ["--cases", "add", "--json", str(out)])

    rows = results["sections"]["tiny"]
    assert [r["case"] for r in rows] == ["add forward", "add fwd+bwd"]
    for r in rows:
        assert all(r[k] > 0 for k in ("tensorgrad_us", "torch_us", "numpy_us"))
        assert r["tg_torch"] == pytest.approx(r["tensorgrad_us"] / r["torch_us"])
    assert results["sections"]["medium"] == []
    assert results["warnings"] == []
    assert out.read_text().startswith("{")
    assert "add fwd+bwd" in capsys.readouterr().out


def test_without_torch_prints_why_and_keeps_numpy(bench, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    results = bench.main(MINIMAL + ["--cases", "gather", "--dtype", "float64"])

    assert "PyTorch not installed" in capsys.readouterr().out
    (row,) = results["sections"]["medium"]
    assert row["torch_us"] is None and row["tg_torch"] is None
    assert row["numpy_us"] > 0 and row["tg_numpy"] > 0
    assert results["warnings"] == []  # tensorgrad's scatter-add agrees with NumPy's


def test_gradient_mismatch_is_reported(bench):
    spec = bench.Spec("wrong", bench._arrays((3,)), lambda x: x.exp(), lambda x: x.exp(),
                      bench.np.exp, lambda g, y, x: (2 * g * y,))
    case = bench.build_case(spec, True, bench.np.float64, bench.np.random.default_rng(0))
    case.grads.pop("torch", None)
    (warning,) = bench.check_gradients(case, bench.np.float64)
    assert "wrong" in warning and "numpy" in warning
