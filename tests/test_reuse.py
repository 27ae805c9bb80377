"""No retrain twice: a row whose retrain equals a finished one takes its result instead of training it."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import pytest

from fmpbench import protocol
from fmpbench.data import get_dataset
from fmpbench.grid import build_tasks, run_grid
from fmpbench.protocol import RETRAIN_FIELDS, ExperimentConfig, RetrainLedger
from fmpbench.results import iter_records, predictions_path
from fmpbench.training import TrainConfig

CONFIG = ExperimentConfig(
    dataset="synthetic",
    n_rows=2000,
    backbone_params={"embed_dim": 4, "hidden": (16,)},
    train_config=TrainConfig(max_epochs=1, batch_size=256),
)
DATA = get_dataset("synthetic", n_rows=CONFIG.n_rows)
ALL = (DATA.num_fields,)  # at k = F every method keeps every field: the retrain of `none`


def _grid(results: Path, methods: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    with open(os.devnull, "w") as quiet:
        run_grid(build_tasks(methods, [0], ALL), CONFIG, DATA, results, stream=quiet, **kwargs)
    return sorted(iter_records(results), key=lambda r: r["method"])


@pytest.fixture
def trainings(monkeypatch) -> list[str]:
    """The run ids whose model this process trains."""
    calls: list[str] = []
    train = protocol._train_and_test

    def counted(selector, row, *args, **kwargs):
        calls.append(row.run_id)
        return train(selector, row, *args, **kwargs)

    monkeypatch.setattr(protocol, "_train_and_test", counted)
    return calls


def _check_reused(records: list[dict[str, Any]], source: dict[str, Any], results: Path) -> None:
    for record in records:
        assert record["status"] == "ok" and record["reused_from"] == source["run_id"]
        assert record["retrain_seconds"] == 0.0 and record["retrain_key"] == source["retrain_key"]
        assert record["total_seconds"] == pytest.approx(record["search_seconds"] + record["selection_seconds"])
        for name in set(RETRAIN_FIELDS) - {"retrain_seconds"}:
            assert record[name] == source[name], name
        assert (predictions_path(results, record["run_id"]).read_bytes()
                == predictions_path(results, source["run_id"]).read_bytes())


def test_a_duplicated_retrain_is_trained_once_and_reused(tmp_path, trainings):
    lasso, none, random = _grid(tmp_path, ["none", "random", "lasso"])
    assert trainings == [lasso["run_id"]]  # the costliest task runs first; the other two reuse its retrain
    assert lasso["reused_from"] is None
    _check_reused([none, random], lasso, tmp_path)


def test_a_reused_result_equals_training_it(tmp_path):
    reused = {r["method"]: r for r in _grid(tmp_path / "both", ["none", "random"])}["random"]
    trained = _grid(tmp_path / "alone", ["random"])[0]
    assert reused["reused_from"] and trained["reused_from"] is None
    for name in ("test_auc", "test_logloss", "valid_auc"):
        assert math.isclose(reused[name], trained[name], rel_tol=1e-6), name
    assert reused["run_id"] == trained["run_id"] and reused["selected_fields"] == trained["selected_fields"]


def test_resume_reuses_the_retrains_of_earlier_runs(tmp_path, trainings):
    (none,) = _grid(tmp_path, ["none"])
    assert trainings == [none["run_id"]]
    records = {r["method"]: r for r in _grid(tmp_path, ["none", "random", "lasso"], resume=True)}
    assert trainings == [none["run_id"]]  # nothing trained again
    _check_reused([records["random"], records["lasso"]], none, tmp_path)
    _grid(tmp_path, ["none", "random", "lasso"], resume=True)
    assert len(trainings) == 1


def test_jobs_2_trains_a_shared_retrain_once(tmp_path):
    records = _grid(tmp_path, ["none", "random", "lasso"], jobs=2)
    trained = [r for r in records if not r.get("reused_from")]
    assert len(trained) == 1
    _check_reused([r for r in records if r.get("reused_from")], trained[0], tmp_path)


def test_the_ledger_waits_for_a_live_claim_and_takes_over_a_dead_one():
    ledger = RetrainLedger()
    assert ledger.acquire("k") is None  # claimed by this process
    other = RetrainLedger(ledger.store)
    assert other.acquire("k") == protocol.BUSY  # this process is alive
    ledger.finish("k", "run1", {"test_auc": 0.7})
    assert other.acquire("k")["run_id"] == "run1"
    ledger.store["dead"] = f"claim {ledger.host} {2**22 + 12345} abcd"  # no such pid
    assert other.acquire("dead") is None and ledger.store["dead"].split()[2] == str(os.getpid())
    ledger.store["remote"] = "claim some-other-host 1 abcd"
    assert other.acquire("remote") is None  # cannot tell: trained here too


def test_ray_workers_share_one_ledger(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = _grid(tmp_path, ["none", "random", "lasso"], executor="ray", jobs=2)
    finally:
        ray.shutdown()
    trained = [r for r in records if not r.get("reused_from")]
    assert len(trained) == 1
    _check_reused([r for r in records if r.get("reused_from")], trained[0], tmp_path)


def test_retrains_trained_twice_at_once_are_counted(tmp_path, monkeypatch, trainings):
    """Claims of another host cannot be waited on: both train, and the grid says so."""
    monkeypatch.setattr(RetrainLedger, "acquire", lambda self, key: None)
    stream = io.StringIO()
    run_grid(build_tasks(["none", "random", "lasso"], [0], ALL), CONFIG, DATA, tmp_path, stream=stream)
    assert len(trainings) == 3
    assert "2 retrains were trained twice, by workers on different hosts at once" in stream.getvalue()


def test_a_reused_row_takes_every_field_its_retrain_determines(tmp_path, monkeypatch):
    """RETRAIN_FIELDS is what the ledger copies: it must be exactly what a retrain produces."""
    produced: list[set[str]] = []
    train = protocol._train_and_test

    def spy(*args, **kwargs):
        result, predictions = train(*args, **kwargs)
        produced.append(set(result))
        return result, predictions

    monkeypatch.setattr(protocol, "_train_and_test", spy)
    _grid(tmp_path, ["none"])
    assert produced == [set(RETRAIN_FIELDS)]
