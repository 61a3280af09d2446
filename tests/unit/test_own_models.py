"""A team's own model: LightGBM / XGBoost estimators, a pipeline factory from its own package, its own
metric; and the refusals, each naming the key to fix.

Real fits, a real MLflow SQLite store and real skops artifacts; the example package is
``examples/acme_models`` (the how-to's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import yaml

from tests.support import own_models

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

own_models.use_example_package()


def _cfg(raw: dict[str, Any]) -> Any:
    from retrainer.config import parse_config

    return parse_config(raw)


@pytest.fixture(scope="module")
def history(bikeshare_weeks: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    from retrainer.ml.train import prepare

    cfg = _cfg(own_models.config("xgboost"))
    return own_models.with_busy(prepare(cfg, pd.concat([w for _, w in bikeshare_weeks[:3]])))


# -- refusals ------------------------------------------------------------------------------------------
def test_estimator_and_pipeline_together_or_neither_is_a_config_error() -> None:
    from retrainer.exceptions import ConfigError

    both = own_models.config("pipeline")
    both["model"]["estimator"] = "lightgbm.LGBMRegressor"
    neither = own_models.config("pipeline")
    del neither["model"]["pipeline"]

    for raw in (both, neither):
        with pytest.raises(ConfigError, match=r"exactly one of model\.estimator .* model\.pipeline"):
            _cfg(raw)


def test_a_factory_returning_no_estimator_is_refused_naming_the_key(history: pd.DataFrame) -> None:
    from retrainer.exceptions import ConfigError
    from retrainer.ml.train import fit

    raw = own_models.config("pipeline")
    raw["model"]["pipeline"] = "acme_models.factories:not_a_model"

    with pytest.raises(ConfigError, match=r"model\.pipeline: .*not_a_model returned 'dict'.* fit or predict"):
        fit(_cfg(raw), history)


def test_a_factory_or_metric_that_does_not_import_names_its_key(history: pd.DataFrame) -> None:
    from retrainer.exceptions import ConfigError
    from retrainer.ml import metrics
    from retrainer.ml.train import fit

    factory = own_models.config("pipeline")
    factory["model"]["pipeline"] = "acme_models.factories:no_such_factory"
    metric = own_models.config("xgboost")
    metric["validation"] = {"metric": "acme_models.nowhere:cost", "greater_is_better": False}

    with pytest.raises(ConfigError, match=r"^model\.pipeline: cannot import 'acme_models\.factories:no_such"):
        fit(_cfg(factory), history)
    with pytest.raises(ConfigError, match=r"^validation\.metric: cannot import 'acme_models\.nowhere:cost'"):
        metrics.custom(_cfg(metric))


def test_a_metric_of_your_own_needs_its_direction_and_a_name_of_its_own() -> None:
    from retrainer.exceptions import ConfigError

    undirected = own_models.config("pipeline")
    del undirected["validation"]["greater_is_better"]
    clashing = own_models.config("pipeline")
    clashing["validation"]["metric"] = "acme_models.metrics:rmse"
    directed_builtin = own_models.config("xgboost")
    directed_builtin["validation"] = {"metric": "rmse", "greater_is_better": False}

    with pytest.raises(ConfigError, match=r"declare validation\.greater_is_better"):
        _cfg(undirected)
    with pytest.raises(ConfigError, match=r"is a built-in metric's"):
        _cfg(clashing)
    with pytest.raises(ConfigError, match=r"only for a metric of your own"):
        _cfg(directed_builtin)


# -- the estimators ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "pipeline"])
def test_fits_predicts_and_scores_under_the_thread_cap(kind: str, history: pd.DataFrame) -> None:
    from retrainer.ml import metrics
    from retrainer.ml.train import fit, predict_with_proba, thread_cap

    cfg = _cfg(own_models.config(kind))
    with thread_cap(cfg, 1):
        model = fit(cfg, history)
        pred, proba = predict_with_proba(cfg, model, history)
        scores = metrics.score(cfg, model, history)

    assert len(pred) == len(history)
    if kind == "lightgbm":  # probabilities: what CBPE and the probability metrics use
        assert proba is not None and proba.shape == (len(history), 2)
        assert {"roc_auc", "log_loss", "f1"} <= set(scores)
    else:
        assert proba is None and "rmse" in scores
    if kind == "pipeline":  # the team's metric, under its function's name, is the primary metric
        assert cfg.metric == "shortage_cost" and cfg.lower_is_better
        err = history["bikers"].to_numpy() - pred
        assert scores["shortage_cost"] == pytest.approx(((err > 0) * 3 * err + (err <= 0) * -err).mean())
    final = model.steps[-1][1]
    if kind in ("lightgbm", "xgboost"):  # the library's own thread pool is capped too
        assert final.get_params()["n_jobs"] == 1


def test_an_n_jobs_in_the_params_is_kept_under_the_cap() -> None:
    from retrainer.ml.train import build_model, thread_cap

    raw = own_models.config("xgboost")
    raw["model"]["params"]["n_jobs"] = 2
    cfg = _cfg(raw)
    with thread_cap(cfg, 1):
        assert build_model(cfg).steps[-1][1].get_params()["n_jobs"] == 2
    assert build_model(_cfg(own_models.config("xgboost"))).steps[-1][1].get_params()["n_jobs"] is None


# -- trusted types -------------------------------------------------------------------------------------
def test_trusted_types_come_from_the_config() -> None:
    assert _cfg(own_models.config("lightgbm")).model.trusted == (
        "sklearn",
        "numpy",
        "scipy",
        "lightgbm",
        "collections.OrderedDict",
    )
    assert "xgboost" in _cfg(own_models.config("xgboost")).model.trusted
    assert _cfg(own_models.config("pipeline")).model.trusted[-1] == "acme_models"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, point_state: Any) -> Any:
    """One MLflow store for the module's logged models (a store costs seconds to create)."""
    with pytest.MonkeyPatch.context() as mp:
        yield point_state(mp, tmp_path_factory.mktemp("own_models"))


@pytest.fixture(scope="module")
def logged(store: Path, history: pd.DataFrame) -> Any:
    """``log(kind)``: (run id, cfg) of a fitted model of ``kind`` logged once to the module's store."""
    import functools

    import mlflow

    from retrainer.ml.train import fit
    from retrainer.tracking import runs as tracking
    from retrainer.tracking.artifacts import log_model

    @functools.cache
    def log(kind: str) -> tuple[str, Any]:
        cfg = _cfg(own_models.config(kind))
        model = fit(cfg, history)
        tracking.client()
        with mlflow.start_run(experiment_id=tracking.experiment_id(cfg.name, "train")) as run:
            log_model(model, history[cfg.data.feature_names], cfg)
        return run.info.run_id, cfg

    return log


def test_the_team_pipeline_loads_back_without_pickle_and_predicts_the_same(
    logged: Any, history: pd.DataFrame
) -> None:
    """(LightGBM and XGBoost models load back in the DAG tests, tests/integration/test_own_models_dags.py.)"""
    import numpy as np

    from retrainer.ml.train import fit, predict
    from retrainer.tracking.artifacts import load_run_model

    run_id, cfg = logged("pipeline")
    loaded = load_run_model(run_id, cfg)

    assert np.array_equal(predict(cfg, loaded, history), predict(cfg, fit(cfg, history), history))


def test_a_type_outside_the_trusted_set_is_refused_naming_the_type_and_the_key(logged: Any) -> None:
    from retrainer.exceptions import RetrainerError
    from retrainer.tracking.artifacts import load_run_model

    run_id, cfg = logged("pipeline")
    untrusting = cfg.model_copy(update={"model": cfg.model.model_copy(update={"trusted_modules": []})})

    with pytest.raises(
        RetrainerError,
        match=r"outside the trusted set .*\['acme_models\.features\.CyclicalFeatures'\].*model\.trusted_modules",
    ):
        load_run_model(run_id, untrusting)
    # the library of another estimator is not trusted either: a LightGBM artifact under an XGBoost config
    lgbm_run, _ = logged("lightgbm")
    with pytest.raises(RetrainerError, match=r"'lightgbm\.basic\.Booster'"):
        load_run_model(lgbm_run, _cfg(own_models.config("xgboost")))


def test_a_model_its_config_does_not_trust_is_refused_before_it_is_logged(
    store: Path, history: pd.DataFrame
) -> None:
    import mlflow

    from retrainer.exceptions import ConfigError
    from retrainer.ml.train import fit
    from retrainer.tracking import runs as tracking
    from retrainer.tracking.artifacts import log_model

    raw = own_models.config("pipeline")
    raw["model"]["trusted_modules"] = []
    cfg = _cfg(raw)
    tracking.client()
    with (
        mlflow.start_run(experiment_id=tracking.experiment_id(cfg.name, "train")),
        pytest.raises(ConfigError, match=r"CyclicalFeatures.*model\.trusted_modules"),
    ):
        log_model(fit(cfg, history), history[cfg.data.feature_names], cfg)


# -- the backtest ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "pipeline"])
def test_backtest_runs_with_each(
    kind: str, tmp_path: Path, bikeshare_weeks: list[tuple[str, pd.DataFrame]]
) -> None:
    import json

    from retrainer import cli

    raw = own_models.config(kind)
    raw["training"] = {"window": "3W", "holdout": "1W", "min_rows": 100}
    raw["backtest"] = {"max_k": 2}
    cfg_path = tmp_path / f"{raw['name']}.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    data = tmp_path / "bikes.parquet"
    own_models.with_busy(pd.concat([w for _, w in bikeshare_weeks[:9]])).to_parquet(data)
    out = tmp_path / "report.json"

    code = cli.main(
        ["backtest", str(cfg_path), "--data", str(data), "--batch-freq", "7D", "--no-progress", "--no-oracle",
         "--json", str(out)]
    )  # fmt: skip

    assert code == 0
    report = json.loads(out.read_text())
    metric = {"lightgbm": "f1", "xgboost": "rmse", "pipeline": "shortage_cost"}[kind]
    assert report["metric"] == metric
    assert report["lower_is_better"] is (kind != "lightgbm")
    every = report["policies"]["every_batch"]
    assert every["retrains"] > 0 and every["mean"] == every["mean"]  # a number, not NaN
    assert report["policies"]["never"]["mean"] != every["mean"]
