"""The engines (`fusion.cohort.engines`): local worker processes and a real Dask cluster give the same frames as
one process; failures come back as results; bad schedulers are refused clearly."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from fusion.artifacts import load_model
from fusion.cohort.engines import DaskEngine, EngineError, LocalEngine, WorkerDiedError, make_engine
from fusion.cohort.scoring import _model, score_cohort
from fusion.cohort_table import write_cohort
from fusion.errors import ModelArtifactError
from fusion.synth import synth_cohort
from tests.fusion.model_helpers import trained_model_dir

N = 3_000
CHUNK = 400


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model_dir(tmp_path_factory.mktemp("engine-model"), bootstrap=4, n=2000)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine-cohort") / "cohort.csv"
    write_cohort(synth_cohort(N, 4_242, truth=False).table, path)
    return path


def _square(x: int) -> int:
    if x == 7:
        raise ValueError("seven is refused")
    return x * x


def _die(x: int) -> int:
    if x == 3:
        os._exit(9)  # a worker that crashes (segfault, out-of-memory kill)
    return x


def test_the_local_and_dask_engines_give_frames_identical_to_one_process(
    cohort: Path, model_dir: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one.parquet"
    score_cohort(cohort, one, model_dir=model_dir, workers=1, chunk_rows=CHUNK)
    expected = pd.read_parquet(one)
    local = tmp_path / "local.parquet"
    summary = score_cohort(cohort, local, model_dir=model_dir, engine="local", workers=2, chunk_rows=CHUNK)
    assert (summary.engine, summary.workers) == ("local", 2)
    pd.testing.assert_frame_equal(pd.read_parquet(local), expected)
    with DaskEngine(workers=2, processes=False) as engine:
        dask_out = tmp_path / "dask.parquet"
        summary = score_cohort(cohort, dask_out, model_dir=model_dir, chunk_rows=CHUNK, engine_instance=engine)
        assert summary.engine == "dask" and summary.rows == N
        pd.testing.assert_frame_equal(pd.read_parquet(dask_out), expected)
        results = sorted((c.task, c.result, type(c.error).__name__) for c in engine.run(_square, range(10)))
    assert results[7] == (7, None, "ValueError")
    assert [r[1] for r in results if r[0] != 7] == [x * x for x in range(10) if x != 7]


def test_local_workers_report_failures_and_survive_a_dead_worker() -> None:
    with LocalEngine(workers=2) as engine:
        done = {c.task: c for c in engine.run(_square, range(9), max_in_flight=3)}
        assert {k: c.result for k, c in done.items() if c.error is None} == {x: x * x for x in range(9) if x != 7}
        assert isinstance(done[7].error, ValueError)
        died = {c.task: c for c in engine.run(_die, range(8), max_in_flight=2)}
    assert sorted(died) == list(range(8))
    assert isinstance(died[3].error, WorkerDiedError) and died[3].error.reason == "WORKER_DIED"
    # the tasks that ran beside the crashing one are run again alone on a fresh pool: only task 3 fails
    assert {x: c.result for x, c in died.items() if c.error is None} == {x: x for x in range(8) if x != 3}
    with LocalEngine(workers=1) as inline:
        assert [c.result for c in inline.run(_square, [2, 3])] == [4, 9]


def test_bad_engines_and_schedulers_are_refused() -> None:
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(EngineError, match="--scheduler needs --engine dask"):
        make_engine("local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(EngineError, match="must look like tcp://host:8786") as info:
        make_engine("dask", scheduler="127.0.0.1:8786")
    assert info.value.reason == "BAD_SCHEDULER"
    with pytest.raises(EngineError, match=r"cannot connect to the Dask scheduler at tcp://127\.0\.0\.1:9"):
        DaskEngine(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)
    with pytest.raises(EngineError, match="workers must be a positive integer"):
        LocalEngine(workers=0)


def test_a_worker_with_another_model_at_the_same_path_refuses_to_score(model_dir: Path) -> None:
    model = load_model(model_dir)
    with pytest.raises(ModelArtifactError, match="differs from the client's") as info:
        _model(str(model_dir), "0" * 64)
    assert info.value.reason == "MODEL_MISMATCH"
    assert _model(str(model_dir), model.sha256).sha256 == model.sha256
