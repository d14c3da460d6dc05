"""Training: a cohort table in, a model directory's contents out (the engine of `osteorisk train` and of
the bundled default model).

Survival kinds (cox, forest, net) fit one competing-risks model per outcome present in the table
(`time_years`/`event` for major osteoporotic fracture, `hip_time_years`/`hip_event` for hip fracture; death
competing) and, when DXA T-scores are present, a calibrated three-class osteoporosis classifier for the
diagnosis of patients without DXA or vBMD. The `logistic` kind fits one calibrated classifier of a binary
or categorical `target` column (e.g. GLOW500's FRACTURE), with cross-validated AUC in the card.

Inputs: by default the canonical feature columns present (`fusion.cohort_table.feature_columns`), minus
empty, constant or duplicated ones. Missing values (training and scoring alike) are imputed by their
conditional mean given the patient's other inputs (`imputation="conditional"`, a linear regression learned
on the training rows; `fusion.imputation.ConditionalMeans`) or by the training median / mode
(`imputation="median"`); the fraction imputed goes into the card. Rows missing a required input are
dropped (counted in the card).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from fusion.artifacts import DiagnosisComponent, SurvivalEstimator, created_timestamp, model_files, write_model_dir
from fusion.cohort_table import feature_columns
from fusion.design import Design, expand_terms, split_terms, term_inputs
from fusion.errors import CohortError
from fusion.features import IMAGING_SUMMARY_FEATURES, LEVEL_FEATURES, encode_column, frame_features
from fusion.imputation import ConditionalMeans, InputPlan, build_specs
from fusion.models.calibration import CalibratedClassifier
from fusion.models.competing import competing_target
from fusion.models.logistic import LogisticClassifier
from fusion.rules import dxa_category
from fusion.types import FeatureSpec, ModelCard, ModelKind, Outcome

FloatArray = npt.NDArray[np.float64]
SURVIVAL_COLUMNS: dict[Outcome, tuple[str, str]] = {
    "major_osteoporotic_fracture": ("time_years", "event"),
    "hip_fracture": ("hip_time_years", "hip_event"),
}
DIAGNOSIS_EXCLUDED = ("dxa_t_score_min", "osteoporosis_diagnosis", "osteoporosis_treatment")
IMAGING_INPUTS = frozenset(IMAGING_SUMMARY_FEATURES) | frozenset(LEVEL_FEATURES)
DEFAULT_REQUIRED = ("age_years", "sex")
MIN_DIAGNOSIS_CASES = 30
DIAGNOSIS_PENALTY = 1.0
"""Ridge on standardised coefficients of the diagnosis classifier (a unit-variance normal prior): keeps
rare yes/no inputs from separating a class in a calibration fold; negligible with thousands of patients."""
REFERENCES_SURVIVAL = [
    "Putter H, Fiocco M, Geskus RB. Tutorial in biostatistics: competing risks and multi-state models. "
    "Stat Med 2007;26:2389-2430. doi:10.1002/sim.2712",
    "Breslow NE. Discussion of Cox (1972). J R Stat Soc B 1972;34:216-217.",
    "Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall, 1993.",
]
REFERENCES_LOGISTIC = [
    "Hosmer DW, Lemeshow S, Sturdivant RX. Applied Logistic Regression, 3rd ed. Wiley, 2013.",
    "Platt J. Probabilistic outputs for support vector machines. In: Advances in Large Margin Classifiers, 1999.",
]


@dataclass(frozen=True)
class TrainConfig:
    """What to train (keyword-only, checked at construction)."""

    kind: ModelKind = "cox"
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    required: tuple[str, ...] = DEFAULT_REQUIRED
    target: str | None = None
    seed: int = 0
    bootstrap: int = 50
    calibration: str = "platt"
    imputation: str = "conditional"
    cv: int = 5
    diagnosis: bool = True
    model_id: str | None = None
    version: str = "1.0"
    description: str = ""
    trained_on: str = "site cohort"
    intended_use: str = "research; validate locally before any clinical use"
    not_for_clinical_use: bool = True
    estimator_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("cox", "forest", "net", "logistic"):
            raise CohortError(f"unknown model kind {self.kind!r}; use cox, forest, net or logistic")
        if self.kind == "logistic" and not self.target:
            raise CohortError("a logistic model needs a target column (--target COL)")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise CohortError(f"bootstrap must be 0 or >= 2 replicates, got {self.bootstrap}")
        if self.calibration not in ("platt", "isotonic", "none"):
            raise CohortError(f"calibration must be platt, isotonic or none, got {self.calibration!r}")
        if self.imputation not in ("conditional", "median"):
            raise CohortError(f"imputation must be conditional or median, got {self.imputation!r}")
        if self.cv < 2:
            raise CohortError(f"cv must be >= 2 folds, got {self.cv}")


@dataclass(frozen=True)
class TrainedModel:
    """The card and file contents of a trained model, and what the trainer wants the user to know."""

    card: ModelCard
    files: dict[str, bytes]
    warnings: tuple[str, ...] = ()

    def save(self, out_dir: str | Path) -> Path:
        return write_model_dir(Path(out_dir), self.card, self.files)

    def with_metrics(self, metrics: Mapping[str, float]) -> TrainedModel:
        """The same model with `metrics` added to its card (e.g. held-out evaluation figures)."""
        card = self.card.model_copy(update={"metrics": {**self.card.metrics, **metrics}})
        return TrainedModel(card=card, files=self.files, warnings=self.warnings)


def frame_sha256(frame: pd.DataFrame) -> str:
    """A content hash of a table (column names and values), stable across runs."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _default_inputs(frame: pd.DataFrame, exclude: Sequence[str], warnings: list[str]) -> list[str]:
    names: list[str] = []
    kept: list[FloatArray] = []
    for name in feature_columns(frame):
        if name in exclude:
            continue
        column = encode_column(name, frame[name])
        observed = column[~np.isnan(column)]
        twin = next((n for n, c in zip(names, kept, strict=True) if np.array_equal(c, column, equal_nan=True)), None)
        if observed.size == 0:
            warnings.append(f"{name}: no observed values; left out of the model")
        elif np.unique(observed).size < 2:
            warnings.append(f"{name}: constant in the training data; left out of the model")
        elif twin is not None:
            warnings.append(f"{name}: identical to {twin}; left out of the model")
        else:
            names.append(name)
            kept.append(column)
    if not names:
        raise CohortError("the cohort has no usable canonical feature columns; name them with --features")
    return names


def _design(frame: pd.DataFrame, spec: Sequence[str], categorical: Sequence[str]) -> Design:
    inputs = term_inputs(list(spec))
    missing = [n for n in inputs if n not in frame.columns]
    if missing:
        raise CohortError(
            f"feature columns not in the cohort: {', '.join(missing)}; "
            f"the cohort has {', '.join(map(str, frame.columns[:30]))}"
        )
    cats = set(categorical) | {t[2:-1] for t in spec if t.startswith("C(")}
    levels = {}
    for name in cats:
        if name in frame.columns:
            column = encode_column(name, frame[name])
            levels[name] = np.unique(column[~np.isnan(column)])
    terms = expand_terms(list(spec), categorical=categorical, levels=levels)
    return Design(inputs=tuple(inputs), terms=tuple(terms))


def _prepare_inputs(
    frame: pd.DataFrame,
    design: Design,
    required: Sequence[str],
    categorical: Sequence[str],
    metrics: dict[str, float],
    imputation: str,
) -> tuple[InputPlan, FloatArray, npt.NDArray[np.bool_]]:
    raw = frame_features(frame, design.inputs)
    req = [n for n in required if n in design.inputs]
    keep: npt.NDArray[np.bool_] = np.ones(len(frame), dtype=bool)
    if req:
        keep = np.asarray(~np.isnan(raw[:, [design.inputs.index(n) for n in req]]).any(axis=1), dtype=bool)
    if not keep.any():
        raise CohortError(f"every row misses a required input ({', '.join(req)})")
    dropped = int((~keep).sum())
    if dropped:
        metrics["rows_dropped_missing_required"] = float(dropped)
    kinds = {n: "categorical" for n in categorical}
    specs = build_specs(design.inputs, raw[keep], required=req, kinds=kinds)
    plan = InputPlan.from_specs(specs)
    if imputation == "conditional" and np.isnan(raw[keep]).any():
        plan = InputPlan.from_specs(specs, ConditionalMeans.fit(raw[keep], plan.impute))
    for j, name in enumerate(design.inputs):
        fraction = float(np.isnan(raw[keep, j]).mean())
        if fraction > 0:
            metrics[f"imputed_fraction.{name}"] = round(fraction, 6)
    filled, _, reasons = plan.matrix(raw[keep])
    bad = [r for r in reasons if r is not None]
    if bad:
        raise CohortError(f"{len(bad)} training rows hold implausible values (e.g. {bad[0]}); clean the cohort")
    return plan, filled, keep


def _survival_estimator(config: TrainConfig, design: Design) -> Any:
    params = dict(config.estimator_params)
    if config.kind == "cox":
        from fusion.models.cox import CauseSpecificCox

        return CauseSpecificCox(bootstrap=config.bootstrap, random_state=config.seed, **params)
    if config.kind == "forest":
        from fusion.models.forest import CauseSpecificForest

        return CauseSpecificForest(bootstrap=config.bootstrap, random_state=config.seed, **params)
    from fusion.models.net import DeepHitNet

    ct = tuple(k for k, t in enumerate(design.terms) if any(f.column in IMAGING_INPUTS for f in t.factors))
    return DeepHitNet(bootstrap=config.bootstrap, random_state=config.seed, ct_columns=ct, **params)


def _train_diagnosis(
    frame: pd.DataFrame, inputs: Sequence[str], config: TrainConfig, warnings: list[str], metrics: dict[str, float]
) -> tuple[DiagnosisComponent, list[FeatureSpec]] | None:
    if "dxa_t_score_min" not in frame.columns:
        return None
    t = encode_column("dxa_t_score_min", frame["dxa_t_score_min"])
    labelled = ~np.isnan(t)
    names = [n for n in inputs if n not in DIAGNOSIS_EXCLUDED]
    if not names:
        return None
    labels = np.array([dxa_category(v) for v in t[labelled]], dtype=object)
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2 or counts.min() < MIN_DIAGNOSIS_CASES:
        warnings.append(
            f"too few DXA-labelled rows per class ({dict(zip(classes.tolist(), counts.tolist(), strict=True))}) "
            "for the osteoporosis classifier; none trained"
        )
        return None
    sub = frame.loc[labelled]
    design = Design.identity(names)
    dmetrics: dict[str, float] = {}
    plan, x, keep = _prepare_inputs(sub, design, config.required, (), dmetrics, config.imputation)
    y = labels[keep]
    try:
        clf = CalibratedClassifier(
            estimator=LogisticClassifier(penalty=DIAGNOSIS_PENALTY),
            method=config.calibration,
            cv=config.cv,
            random_state=config.seed,
        ).fit(x, y)
    except CohortError as exc:
        warnings.append(f"osteoporosis classifier not trained: {exc}")
        return None
    metrics["diagnosis_n"] = float(y.size)
    for c, n in zip(*np.unique(y, return_counts=True), strict=True):
        metrics[f"diagnosis_n_{c}"] = float(n)
    if "osteoporosis" in clf.classes_:
        # held-out discrimination of osteoporosis vs the rest (stratified folds, refitted, seeded)
        oof = np.zeros(y.size)
        k = list(clf.classes_).index("osteoporosis")
        folds = StratifiedKFold(n_splits=config.cv, shuffle=True, random_state=config.seed)
        for train, test in folds.split(x, y):
            fold = LogisticClassifier(penalty=DIAGNOSIS_PENALTY).fit(x[train], y[train])
            oof[test] = fold.predict_proba(x[test])[:, k]
        metrics["diagnosis_cv_auc_osteoporosis"] = round(float(roc_auc_score(y == "osteoporosis", oof)), 6)
    component = DiagnosisComponent(plan=plan, design=design, classifier=clf)
    return component, list(plan.specs)


def _classifier_metrics(
    x: FloatArray, y: npt.NDArray[Any], clf: CalibratedClassifier, config: TrainConfig, metrics: dict[str, float]
) -> None:
    classes = clf.classes_
    metrics["n"] = float(y.size)
    metrics["log_likelihood"] = round(float(clf.base_.log_likelihood_), 6)
    if classes.size == 2:
        metrics["events"] = float((y == classes[1]).sum())
        metrics["apparent_auc"] = round(float(roc_auc_score(y == classes[1], clf.base_.predict_proba(x)[:, 1])), 6)
    folds = StratifiedKFold(n_splits=config.cv, shuffle=True, random_state=config.seed)
    oof = np.zeros((y.size, classes.size))
    fold_aucs = []
    for train, test in folds.split(x, y):
        model = LogisticClassifier().fit(x[train], y[train])
        oof[test] = model.predict_proba(x[test])
        if classes.size == 2:
            fold_aucs.append(roc_auc_score(y[test] == classes[1], oof[test, 1]))
    if classes.size == 2:
        metrics["cv_auc"] = round(float(roc_auc_score(y == classes[1], oof[:, 1])), 6)
        metrics["cv_auc_fold_mean"] = round(float(np.mean(fold_aucs)), 6)
        metrics["cv_auc_fold_sd"] = round(float(np.std(fold_aucs, ddof=1)), 6)
    else:
        metrics["cv_auc_ovr_macro"] = round(float(roc_auc_score(y, oof, multi_class="ovr", labels=classes)), 6)
    metrics["cv_folds"] = float(config.cv)


def train_model(frame: pd.DataFrame, config: TrainConfig, *, data_sha256: str | None = None) -> TrainedModel:
    """Fit the model `config` describes on a (validated) cohort frame (BLAS limited to one thread: the
    matrices are narrow, and threaded BLAS under a loaded machine spins more than it computes)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_model(frame, config, data_sha256)


def _train_model(frame: pd.DataFrame, config: TrainConfig, data_sha256: str | None) -> TrainedModel:
    warnings: list[str] = []
    metrics: dict[str, float] = {}
    if config.features is not None:
        spec = split_terms(list(config.features))
    else:
        exclude = [config.target] if config.target else []
        spec = _default_inputs(frame, exclude, warnings)
    design = _design(frame, spec, config.categorical)
    plan, x_raw, keep = _prepare_inputs(frame, design, config.required, config.categorical, metrics, config.imputation)
    specs = list(plan.specs)
    terms = design.transform(x_raw)
    rows = frame.loc[keep]
    survival: dict[Outcome, SurvivalEstimator] = {}
    classifier = None
    diagnosis = None
    diagnosis_specs: list[FeatureSpec] = []
    target = None
    if config.kind == "logistic":
        target = cast(str, config.target)
        if target not in frame.columns:
            raise CohortError(f"target column {target!r} is not in the cohort")
        y_all = rows[target].to_numpy()
        labelled = ~pd.isna(y_all)
        y = y_all[labelled]
        if np.issubdtype(np.asarray(y).dtype, np.floating) and np.all(np.asarray(y) == np.round(np.asarray(y))):
            y = np.asarray(y).astype(np.int64)
        x = terms[labelled]
        classifier = CalibratedClassifier(
            estimator=LogisticClassifier(**dict(config.estimator_params)),
            method=config.calibration,
            cv=config.cv,
            random_state=config.seed,
        ).fit(x, y)
        _classifier_metrics(x, y, classifier, config, metrics)
        for label, coef in zip(
            design.labels, classifier.base_.coef_[0] if classifier.classes_.size == 2 else [], strict=False
        ):
            metrics[f"coef.{label}"] = round(float(coef), 8)
        if classifier.classes_.size == 2:
            metrics["coef.(intercept)"] = round(float(classifier.base_.intercept_[0]), 8)
    else:
        present = [o for o, (tc, ec) in SURVIVAL_COLUMNS.items() if tc in rows.columns and ec in rows.columns]
        if not present:
            raise CohortError("the cohort has no outcome columns (time_years/event or hip_time_years/hip_event)")
        for outcome in present:
            tc, ec = SURVIVAL_COLUMNS[outcome]
            y = competing_target(rows[ec].to_numpy(dtype=np.float64), rows[tc].to_numpy(dtype=np.float64))
            est = _survival_estimator(config, design).fit(terms, y)
            survival[outcome] = est
            prefix = "mof" if outcome == "major_osteoporotic_fracture" else "hip"
            metrics[f"events_{prefix}"] = float((y["event"] == 1).sum())
            metrics[f"deaths_{prefix}_model"] = float((y["event"] == 2).sum())
        metrics["n"] = float(terms.shape[0])
        if config.diagnosis:
            trained = _train_diagnosis(frame.loc[keep], design.inputs, config, warnings, metrics)
            if trained is not None:
                diagnosis, diagnosis_specs = trained
    files = model_files(
        kind=config.kind,
        plan=plan,
        design=design,
        survival=survival,
        classifier=classifier,
        diagnosis=diagnosis,
        target=target,
    )
    card = ModelCard(
        id=config.model_id or f"osteorisk-{config.kind}",
        version=config.version,
        created=created_timestamp(),
        kind=config.kind,
        description=config.description or _describe(config, design),
        trained_on=config.trained_on,
        intended_use=config.intended_use,
        not_for_clinical_use=config.not_for_clinical_use,
        features=specs,
        outcomes=list(survival),
        target=target,
        diagnosis_features=diagnosis_specs,
        metrics=metrics,
        training_data_sha256=data_sha256 or frame_sha256(frame),
        references=REFERENCES_LOGISTIC if config.kind == "logistic" else REFERENCES_SURVIVAL,
    )
    return TrainedModel(card=card, files=files, warnings=tuple(warnings))


def _describe(config: TrainConfig, design: Design) -> str:
    terms = ", ".join(design.labels)
    if config.kind == "logistic":
        return (
            f"Logistic regression of {config.target} (maximum likelihood, {config.calibration} calibration on "
            f"{config.cv} held-out folds) on {terms}."
        )
    what = {
        "cox": "Cause-specific Cox models (fracture and competing death, Breslow baselines)",
        "forest": "Cause-specific random survival forests",
        "net": "Discrete-time competing-risks network (DeepHit likelihood) with CT and clinical branches",
    }[config.kind]
    interval = f"{config.bootstrap} bootstrap refits, logit-scale bootstrap SE" if config.bootstrap else "none"
    missing = (
        "conditional means given the other inputs" if config.imputation == "conditional" else "training median/mode"
    )
    return (
        f"{what} combined into cumulative incidence; 95% intervals: {interval}. Inputs: {terms}. "
        f"Missing inputs are imputed with {missing} and named in every report."
    )
