"""The sweep file: a pydantic schema for sweeps/*.yaml, and the grid it spells out.

    name: quick
    grammars: [mini]                     # a path, or a bare name for grammars/NAME.cfg
    model: {pe: [abs, rot], size: {layers: 2, heads: 2, dim: 64}, context: 128}
                                         # canon: ["", ABCD] adds Canon layers as an axis
    train: {steps: 4000, batch: 16, lr: 3.0e-3}    # any TrainConfig field but the axes
    noise: {fractions: [0, 0.1], rates: [0.15]}
    seeds: [0]
    evaluate / robustness / probes / attention / patch / embedding:  # Ray tasks after each trial
    resources: {cpu: 1, gpu: 0}          # per trial (cpu is also its torch thread count)
    max_concurrent: 2
    storage: runs/sweeps                 # absolute, or relative to where cfglab runs
    smoke: {train: {steps: 20}}          # overrides for `cfglab sweep --smoke`

The grid is the product grammars × sizes × pe (× canon, decoders only: `mini-rot-cABCD-...`)
× noise (fraction, rate) × data (align_windows,
holdout_rules: `data: {align_windows: [true, false]}`) × seeds; a fraction of 0
makes the rate meaningless, so clean data appears once per (grammar, size, pe, seed). A run's
name spells its coordinates: `mini-rot-f0.1r0.15-s0`. Mistakes are refused with the field's
dotted path and its line in the file.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
)

from cfglab.errors import CfglabError
from cfglab.models.config import PE, MlmPE, canon_places
from cfglab.runs import TrainConfig
from cfglab.yamlfile import read_mapping, validate

# TrainConfig fields that the sweep sets itself (axes, model section, resources).
_SET_BY_SWEEP = {
    "grammar",
    "pe",
    "mlm_pe",
    "canon",
    "layers",
    "heads",
    "dim",
    "context",
    "noise_fraction",
    "noise_rate",
    "seed",
    "threads",
    "device",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _listify(v: Any) -> Any:
    """A single value where a list is expected means a list of one (`pe: rot`)."""
    return v if isinstance(v, list) or v is None else [v]


class ModelSize(_Strict):
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dim: int = Field(64, ge=1)

    @property
    def tag(self) -> str:
        return f"L{self.layers}H{self.heads}D{self.dim}"


def _bert_only() -> list[MlmPE]:
    return ["abs"]


class ModelSection(_Strict):
    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_default=True)

    pe: list[PE] = Field(default_factory=lambda: [PE.ROT], min_length=1)
    # position encoding of mlm encoders: abs (BERT-style) or rel (DeBERTa-style); a list is a
    # grid axis of the mlm trials only
    mlm_pe: list[MlmPE] = Field(default_factory=_bert_only, min_length=1)
    size: list[ModelSize] = Field(default_factory=lambda: [ModelSize()], min_length=1)
    context: int = Field(128, ge=2)
    # Canon layers (Part 4.1): each entry a subset of "ABCD", "" for none; a list is a grid axis
    # of the decoders (mlm trials take "" only)
    canon: list[str] = Field(default_factory=lambda: [""], min_length=1)

    coerce_lists = field_validator("pe", "size", "mlm_pe", "canon", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("canon")
    @classmethod
    def _canon_places(cls, v: list[Any]) -> list[str]:
        places = [canon_places(c) for c in v]
        if len(set(places)) != len(places):
            raise ValueError(f"canon repeats a value: {v}")
        return places

    def canon_axis(self, pe: str) -> list[str]:
        """The Canon settings of one pe's trials: the axis for decoders, none for mlm."""
        return [""] if pe == "mlm" else self.canon

    @property
    def has_canon_axis(self) -> bool:
        return self.canon != [""]

    def variants(self) -> list[tuple[str, str, str]]:
        """(name part, pe, mlm_pe) of every model variant: mlm once per encoder PE."""
        out: list[tuple[str, str, str]] = []
        for pe in self.pe:
            encoders = self.mlm_pe if pe == "mlm" else self.mlm_pe[:1]
            for mlm_pe in encoders:
                many = pe == "mlm" and len(self.mlm_pe) > 1
                out.append((f"mlm_{mlm_pe}" if many else pe, pe, mlm_pe))
        return out


def _train_section() -> type[BaseModel]:
    """TrainConfig's own fields and checks, minus what the sweep sets: one source of truth."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in TrainConfig.model_fields.items()
        if name not in _SET_BY_SWEEP
    }
    return create_model("TrainSection", __config__=ConfigDict(extra="forbid"), **fields)


if TYPE_CHECKING:  # a model built at import time: to the type checker, some BaseModel
    TrainSection = BaseModel
else:
    TrainSection = _train_section()


class NoiseSection(_Strict):
    fractions: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    rates: list[float] = Field(default_factory=lambda: [0.0], min_length=1)

    coerce_lists = field_validator("fractions", "rates", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("fractions", "rates")
    @classmethod
    def _probabilities(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("every value must lie in [0, 1]")
        return v

    def pairs(self) -> list[tuple[float, float]]:
        """(fraction, rate) pairs; clean data (fraction 0) once, whatever the rates."""
        out: list[tuple[float, float]] = []
        for f, r in itertools.product(self.fractions, self.rates):
            pair = (0.0, 0.0) if f == 0 or r == 0 else (f, r)
            if pair not in out:
                out.append(pair)
        return out


class DataSection(_Strict):
    """Axes of the training data. Unset: the `train` section's single value (and no name part).

    align_windows   [true, false]: windows starting at a string's BOS, or cut anywhere in the
                    packed stream as the paper does (run names gain `bos` / `any`)
    holdout_rules   [null, "A -> B C", ...]: the held-out-rule intervention (run names gain
                    `full` / `ho1`, `ho2`, ... by position in the list); or one such list per
                    grammar, `{mini: [null, "N14 -> N10 N12"], tiny: [...]}`, since rules
                    belong to a grammar
    """

    align_windows: list[bool] | None = Field(None, min_length=1)
    holdout_rules: list[str | None] | dict[str, list[str | None]] | None = None

    coerce_lists = field_validator("align_windows", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("holdout_rules", mode="before")
    @classmethod
    def _rule_syntax(cls, v: Any) -> Any:
        lists = v.values() if isinstance(v, dict) else [] if v is None else [_listify(v)]
        for rules in lists:
            rules = _listify(rules)
            if not rules:
                raise ValueError("give at least one rule (or null for none)")
            if any(r is not None and (not isinstance(r, str) or "->" not in r) for r in rules):
                raise ValueError('write each rule as "LHS -> SYM SYM ..." (or null for none)')
        if isinstance(v, dict):
            return {k: _listify(r) for k, r in v.items()}
        return None if v is None else _listify(v)

    def rules_for(self, grammar: str) -> list[str | None] | None:
        if isinstance(self.holdout_rules, dict):
            return self.holdout_rules.get(grammar)
        return self.holdout_rules

    def points(
        self, train: dict[str, Any], grammar: str
    ) -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
        """(TrainConfig overrides, coordinates of the axes set, run-name parts) per combination."""
        aligns = self.align_windows or [train["align_windows"]]
        rules = self.rules_for(grammar) or [train["holdout_rule"]]
        out = []
        for align, (i, rule) in itertools.product(aligns, enumerate(rules)):
            parts = (["bos" if align else "any"] if len(aligns) > 1 else []) + (
                [f"ho{i}" if rule else "full"] if len(rules) > 1 else []
            )
            values = {"align_windows": align, "holdout_rule": rule}
            coords = {
                k: v
                for k, v in values.items()
                if (self.align_windows if k == "align_windows" else self.holdout_rules is not None)
            }
            out.append((values, coords, parts))
        return out


def _check_options(options: dict[str, Any], target: str, reserved: set[str]) -> dict[str, Any]:
    """Pass-through options must be parameters of the evaluation function (checked at load time,
    not an hour later in a Ray task)."""
    from cfglab.sweep.tasks import accepted_options

    accepted = accepted_options(target) - reserved
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; "
            f"{target} accepts: {', '.join(sorted(accepted))}"
        )
    return options


class EvaluateSection(_Strict):
    """Generation accuracy (cut0 / cutK), diversity, KL, memorisation: cfglab.evaluate.run.
    Robustness has its own task (below), so it is not among the default sections."""

    enabled: bool = True
    n: int | None = Field(None, ge=1)  # generations per cut (scales the other counts)
    cut: int | None = Field(None, ge=1)  # K of cutK; None: 50, or less for short strings
    temperature: float = Field(1.0, ge=0)
    sections: list[str] = Field(
        default_factory=lambda: ["accuracy", "diversity", "kl", "memorisation", "masked"]
    )
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # any other EvalOptions field

    coerce_lists = field_validator("sections", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_options(v, "evaluate", {"n", "cut", "temperature", "sections", "seed"})


class RobustnessSection(_Strict):
    """Corrupted prompts, temperatures, mode switch (Results 11–13): cfglab.evaluate.robustness,
    one report per corruption rate."""

    enabled: bool = False
    rates: list[float] = Field(default_factory=lambda: [0.15], min_length=1)
    temperatures: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0], min_length=1)
    n: int | None = Field(None, ge=1)  # prompts per temperature
    cut: int | None = Field(None, ge=1)  # prompt length K; None: the module's default (50)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    coerce_lists = field_validator("rates", "temperatures", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("every corruption rate must lie in [0, 1]")
        return v

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("temperatures must be > 0")
        return v

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_options(v, "robustness", {"rate", "temperatures", "n", "cut", "seed"})


class ProbesSection(_Strict):
    """Multi-head linear probes beside their controls: cfglab.interpret.probes."""

    enabled: bool = False
    layers: list[int] | None = None  # None: every layer (0 = embeddings)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # n_strings, n_test, controls, ...

    coerce_lists = field_validator("layers", mode="before")(classmethod(lambda cls, v: _listify(v)))

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        if isinstance(v.get("settings"), dict):  # ProbeSettings fields, checked at load time
            from cfglab.errors import CfglabError
            from cfglab.interpret.probes import probe_settings

            try:
                probe_settings(dict(v["settings"]))
            except CfglabError as e:
                raise ValueError(f"settings: {e}") from None
        return _check_options(v, "probes", {"layers", "seed"})


class AttentionSection(_Strict):
    """Attention by distance and at NT boundaries: cfglab.interpret.attention."""

    enabled: bool = False
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # n_strings, max_adjacency, ...

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_options(v, "attention", {"seed"})


class PatchSection(_Strict):
    """Activation patching judged by the exact chart: cfglab.interpret.patching (decoders)."""

    enabled: bool = False
    layers: list[int] | None = None  # None: every layer (0 = embeddings)
    pairs: int | None = Field(None, ge=2)  # prefix pairs; None: the module's default (200)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # min_tv, controls, plots

    coerce_lists = field_validator("layers", mode="before")(classmethod(lambda cls, v: _listify(v)))

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_options(v, "patch", {"layers", "seed", "n_pairs"})


class EmbeddingSection(_Strict):
    """Result 10 (implicit grammars only; other runs skip it): within- vs between-bag cosine of
    the token embeddings and a held-out probe embedding → hidden terminal, beside the untrained
    twin: cfglab.interpret.embedding."""

    enabled: bool = False
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)  # step, plots

    @field_validator("options")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_options(v, "embedding", {"seed"})


class ReportSection(_Strict):
    """What the report opens with: `paper_table` — one row per paper result, claim, measured
    figure and verdict (cfglab.sweep.report.paper), for sweeps that reproduce the paper."""

    paper_table: bool = False


class Resources(_Strict):
    cpu: float = Field(1, gt=0)  # per trial; its torch thread count is max(1, int(cpu))
    gpu: float = Field(0, ge=0)  # per trial; > 0 trains on CUDA
    task_cpu: float = Field(1, gt=0)  # per evaluation task
    task_gpu: float = Field(0, ge=0)

    @property
    def threads(self) -> int:
        return max(1, int(self.cpu))

    @property
    def task_threads(self) -> int:
        return max(1, int(self.task_cpu))


class MlflowTracking(_Strict):
    """Ray's MLflowLoggerCallback: one MLflow run per trial (params: the trial's config)."""

    # a URI (http://host:5000, file:///abs/mlruns) or a directory, relative to the sweep file
    tracking_uri: str = "mlruns"
    experiment_name: str | None = None  # None: the sweep's name
    tags: dict[str, str] = Field(default_factory=dict)


class WandbTracking(_Strict):
    """Ray's WandbLoggerCallback; offline by default (`wandb sync` uploads later)."""

    project: str = Field(min_length=1)
    group: str | None = None  # None: the sweep's name
    mode: Literal["offline", "online", "disabled"] = "offline"


class TrackingSection(_Strict):
    """Where trial configs, training metrics and evaluation summaries go, besides the report."""

    tensorboard: bool = True  # Tune's TBX logger: event files + hparams in each trial's dir
    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    grammars: list[str] = Field(min_length=1)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainSection = Field(default_factory=TrainSection)
    noise: NoiseSection = Field(default_factory=NoiseSection)
    data: DataSection = Field(default_factory=DataSection)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    robustness: RobustnessSection = Field(default_factory=RobustnessSection)
    probes: ProbesSection = Field(default_factory=ProbesSection)
    attention: AttentionSection = Field(default_factory=AttentionSection)
    patch: PatchSection = Field(default_factory=PatchSection)
    embedding: EmbeddingSection = Field(default_factory=EmbeddingSection)
    resources: Resources = Field(default_factory=Resources)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    report: ReportSection = Field(default_factory=ReportSection)
    max_concurrent: int | None = Field(None, ge=1)  # None: as many as resources allow
    max_failures: int = Field(2, ge=0)  # retries of a crashed trial, from its last checkpoint
    storage: str = "runs/sweeps"  # the sweep lives in STORAGE/NAME
    smoke: dict[str, Any] | None = None  # overrides applied by --smoke

    coerce_lists = field_validator("grammars", "seeds", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    def task_kinds(self) -> list[str]:
        """The Ray tasks each finished trial gets, in submission order."""
        sections: dict[
            str,
            EvaluateSection
            | RobustnessSection
            | ProbesSection
            | AttentionSection
            | PatchSection
            | EmbeddingSection,
        ]
        sections = {
            "evaluate": self.evaluate,
            "robustness": self.robustness,
            "probes": self.probes,
            "attention": self.attention,
            "patch": self.patch,
            "embedding": self.embedding,
        }
        return [kind for kind, s in sections.items() if s.enabled]


# --- loading, with file lines in the errors ----------------------------------------------------


@dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep file, smoke overrides applied when asked for."""

    spec: SweepSpec
    path: Path  # the sweep file, absolute
    smoke: bool

    @property
    def name(self) -> str:
        return f"{self.spec.name}-smoke" if self.smoke else self.spec.name


def load_sweep(path: str | Path, smoke: bool = False) -> LoadedSweep:
    """Read and validate a sweep file (its smoke section too, whether or not it is used)."""
    path = Path(path)
    if not path.exists():
        raise CfglabError(f"{path}: no such sweep file")
    file = read_mapping(path, "a sweep file is a mapping of fields (name, grammars, ...)")
    base = validate(SweepSpec, file.data, file, "invalid sweep file")
    merged = base
    if base.smoke is not None:
        smoke_node = file.node(("smoke",))[1]
        merged = validate(
            SweepSpec,
            _deep_merge(file.data, base.smoke),
            file,
            "invalid sweep file (in its smoke section)",
            overlay=("smoke", smoke_node),
        )
    if smoke and base.smoke is None:
        raise CfglabError(f"{path}: --smoke needs a `smoke:` section of overrides in the file")
    return LoadedSweep(merged if smoke else base, path.resolve(), smoke)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- the grid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialPlan:
    """One point of the grid: its name, coordinates and the full training config."""

    name: str
    coordinates: dict[str, Any]
    train: dict[str, Any]  # TrainConfig fields (grammar absolute)

    def config(self) -> TrainConfig:
        return TrainConfig(**self.train)


@dataclass(frozen=True)
class SweepPlan:
    sweep: LoadedSweep
    grammars: dict[str, Path]  # grammar name (file stem) -> source file
    trials: list[TrialPlan] = field(default_factory=list)

    @property
    def spec(self) -> SweepSpec:
        return self.sweep.spec

    def trial(self, name: str) -> TrialPlan:
        for t in self.trials:
            if t.name == name:
                return t
        raise KeyError(name)


def resolve_grammar(entry: str, sweep_file: Path) -> Path:
    """A grammar entry: a path (cwd, then beside the sweep file, then its parent), or a bare name
    for grammars/NAME.cfg."""
    candidates = (
        [entry] if ("/" in entry or entry.endswith(".cfg")) else [f"grammars/{entry}.cfg", entry]
    )
    bases = [Path.cwd(), sweep_file.parent, sweep_file.parent.parent]
    tried = []
    for cand in candidates:
        p = Path(cand).expanduser()
        for base in [Path("/")] if p.is_absolute() else bases:
            full = (base / p).resolve()
            tried.append(str(full))
            if full.is_file():
                return full
    raise CfglabError(
        f"{sweep_file}: grammar {entry!r} not found (looked for: "
        + ", ".join(dict.fromkeys(tried))
        + ")"
    )


def _noise_tag(fraction: float, rate: float) -> str:
    return "clean" if fraction == 0 else f"f{fraction:g}r{rate:g}"


def expand(sweep: LoadedSweep) -> SweepPlan:
    """The grid, in a stable order (the same file always gives the same trials and names)."""
    spec = sweep.spec
    grammars: dict[str, Path] = {}
    for entry in spec.grammars:
        p = resolve_grammar(entry, sweep.path)
        if p.stem in grammars and grammars[p.stem] != p:
            raise CfglabError(
                f"{sweep.path}: two grammars named {p.stem!r} ({grammars[p.stem]} "
                f"and {p}); run names need distinct file names"
            )
        grammars[p.stem] = p
    sizes = spec.model.size
    trials = []
    base = spec.train.model_dump()
    variants = [
        (tag + (f"-c{canon}" if canon else ""), pe, mlm_pe, canon)
        for tag, pe, mlm_pe in spec.model.variants()
        for canon in spec.model.canon_axis(pe)
    ]
    combos = [
        (g, size, variant, noise, point, seed)
        for g in grammars.items()
        for size, variant, noise, point, seed in itertools.product(
            sizes,
            variants,
            spec.noise.pairs(),
            spec.data.points(base, g[0]),
            spec.seeds,
        )
    ]
    for (gname, gpath), size, variant, (frac, rate), (data, axes, parts_), seed in combos:
        tag, pe, mlm_pe, canon = variant
        parts = (
            [gname]
            + ([size.tag] if len(sizes) > 1 else [])
            + [tag, _noise_tag(frac, rate), *parts_, f"s{seed}"]
        )
        coords = {
            "grammar": gname,
            "size": size.tag,
            "layers": size.layers,
            "heads": size.heads,
            "dim": size.dim,
            "pe": pe,
            **({"mlm_pe": mlm_pe} if pe == "mlm" else {}),
            **({"canon": canon} if spec.model.has_canon_axis else {}),
            "noise_fraction": frac,
            "noise_rate": rate,
            **axes,
            "seed": seed,
        }
        train = {
            **base,
            **data,
            "grammar": str(gpath),
            "pe": pe,
            "mlm_pe": mlm_pe,
            "canon": canon,
            "layers": size.layers,
            "heads": size.heads,
            "dim": size.dim,
            "context": spec.model.context,
            "noise_fraction": frac,
            "noise_rate": rate,
            "seed": seed,
            "threads": spec.resources.threads,
            "device": "cuda" if spec.resources.gpu > 0 else "cpu",
        }
        trials.append(TrialPlan("-".join(parts), coords, train))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise CfglabError(f"{sweep.path}: the grid repeats a point (check for duplicate values)")
    return SweepPlan(sweep, grammars, trials)
