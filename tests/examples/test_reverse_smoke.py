"""examples/reverse.py end to end at a tiny size: it runs, prints, and writes every output file.

Whether the full-size example reaches 99 % belongs to the example itself (it prints it), not to
a test; here it trains for 30 steps, so only the plumbing is checked.
"""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "reverse.py"
ARGS = ["--steps", "30", "--length", "5", "--vocab", "6", "--d-model", "16", "--no-progress"]


def load_example():
    spec = importlib.util.spec_from_file_location("reverse_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed(name):
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run shared by the checks below: (output folder, result, printed text)."""
    out = tmp_path_factory.mktemp("reverse")
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        result = load_example().main(ARGS + ["--out", str(out)])
    finally:
        capture.undo()
    return out, result, "\n".join(lines)


def test_writes_checkpoint_metrics_and_csvs(run):
    out, result, _ = run
    for name in ("checkpoint.npz", "metrics.json", "loss.csv", "attention.csv"):
        assert (out / name).is_file(), f"{name} was not written"

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("token_accuracy", "exact_match", "steps", "seconds", "parameters"):
        assert key in metrics
    assert metrics["steps"] == result.steps == 30
    assert metrics["exact_match"] == result.metrics.exact_match
    assert 0 <= metrics["exact_match"] <= metrics["token_accuracy"] <= 1
    assert metrics["parameters"] == result.model.num_parameters()


def test_loss_csv_has_one_row_per_step(run):
    out, _, _ = run
    with open(out / "loss.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "loss", "lr"]
    assert [int(row[0]) for row in rows[1:]] == list(range(30))
    assert all(np.isfinite(float(row[1])) for row in rows[1:])


def test_attention_csv_is_a_row_stochastic_length_by_length_map(run):
    out, _, _ = run
    attention = np.loadtxt(out / "attention.csv", delimiter=",")
    assert attention.shape == (5, 5)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-3)


def test_prints_metrics_samples_and_parameter_counts(run):
    _, _, text = run
    assert "exact match" in text
    assert text.count("input [") == 4
    assert "parameters, dendritic model" in text and "parameters, dense model" in text


@pytest.mark.skipif(not installed("graphviz"), reason="the graphviz package is not installed")
def test_writes_graph_sources(run):
    out, _, _ = run
    for name in ("graph_model", "graph_block"):
        source = (out / f"{name}.dot").read_text()
        assert source.lstrip().startswith(("digraph", "strict digraph"))
        if shutil.which("dot"):
            assert (out / f"{name}.svg").is_file()


@pytest.mark.skipif(not installed("matplotlib"), reason="matplotlib is not installed")
def test_writes_figures(run):
    out, _, _ = run
    for name in ("loss.png", "attention.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_small_sequence_space_still_trains():
    example = load_example()
    config = example.config_from(example.parse_args(["--length", "4", "--vocab", "6",
                                                     "--d-model", "16", "--steps", "2"]))

    result = example.train(config, progress=False)

    assert result.steps == 2
    assert 0 <= result.metrics.exact_match <= 1


@pytest.mark.parametrize("flags, message", [
    (["--steps", "-5"], "steps must be a positive integer"),
    (["--vocab", "2"], "vocab must be"),
    (["--vocab", "1000000", "--length", "3"], "beyond this example"),
    (["--seed", "-1"], "seed must be >= 0"),
])
def test_bad_flags_end_with_a_one_line_error(flags, message, tmp_path, capsys):
    assert load_example().cli(flags + ["--no-progress", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reverse.py: error:") and message in err and "\n" not in err


def test_out_that_is_a_file_and_resume_without_checkpoint_are_errors(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    example = load_example()
    assert example.cli(["--out", str(a_file), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert example.cli(["--resume", "--out", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
