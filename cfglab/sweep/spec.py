"""The sweep file: a pydantic schema for sweeps/*.yaml, and the grid it spells out.

    name: quick
    grammars: [mini]                     # a path, or a bare name for grammars/NAME.cfg
    model: {pe: [abs, rot], size: {layers: 2, heads: 2, dim: 64}, context: 128}
    train: {steps: 4000, batch: 16, lr: 3.0e-3}    # any TrainConfig field but the axes
    noise: {fractions: [0, 0.1], rates: [0.15]}
    seeds: [0]
    evaluate / robustness / probes / attention:    # the Ray tasks run after each trial
    resources: {cpu: 1, gpu: 0}          # per trial (cpu is also its torch thread count)
    max_concurrent: 2
    storage: runs/sweeps                 # absolute, or relative to where cfglab runs
    smoke: {train: {steps: 20}}          # overrides for `cfglab sweep --smoke`

The grid is the product grammars × sizes × pe × noise (fraction, rate) × seeds; a fraction of 0
makes the rate meaningless, so clean data appears once per (grammar, size, pe, seed). A run's
name spells its coordinates: `mini-rot-f0.1r0.15-s0`. Mistakes are refused with the field's
dotted path and its line in the file.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from cfglab.errors import CfglabError
from cfglab.runs import TrainConfig

PE = Literal["abs", "rel", "rot", "pos", "uni", "mlm"]

# TrainConfig fields that the sweep sets itself (axes, model section, resources).
_SET_BY_SWEEP = {
    "grammar",
    "pe",
    "mlm_pe",
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


MlmPE = Literal["abs", "rel"]


def _bert_only() -> list[MlmPE]:
    return ["abs"]


class ModelSection(_Strict):
    pe: list[PE] = Field(default_factory=lambda: ["rot"], min_length=1)
    # position encoding of mlm encoders: abs (BERT-style) or rel (DeBERTa-style); a list is a
    # grid axis of the mlm trials only
    mlm_pe: list[MlmPE] = Field(default_factory=_bert_only, min_length=1)
    size: list[ModelSize] = Field(default_factory=lambda: [ModelSize()], min_length=1)
    context: int = Field(128, ge=2)

    coerce_lists = field_validator("pe", "size", "mlm_pe", mode="before")(
        classmethod(lambda cls, v: _listify(v))
    )

    def variants(self) -> list[tuple[str, str, str]]:
        """(name part, pe, mlm_pe) of every model variant: mlm once per encoder PE."""
        out = []
        for pe in self.pe:
            encoders = self.mlm_pe if pe == "mlm" else self.mlm_pe[:1]
            for mlm_pe in encoders:
                many = pe == "mlm" and len(self.mlm_pe) > 1
                out.append((f"mlm_{mlm_pe}" if many else pe, pe, mlm_pe))
        return out


def _train_section() -> type[BaseModel]:
    """TrainConfig's own fields and checks, minus what the sweep sets: one source of truth."""
    fields = {
        name: (info.annotation, info)
        for name, info in TrainConfig.model_fields.items()
        if name not in _SET_BY_SWEEP
    }
    return create_model("TrainSection", __config__=ConfigDict(extra="forbid"), **fields)


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


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    grammars: list[str] = Field(min_length=1)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainSection = Field(default_factory=TrainSection)  # type: ignore[valid-type]
    noise: NoiseSection = Field(default_factory=NoiseSection)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    robustness: RobustnessSection = Field(default_factory=RobustnessSection)
    probes: ProbesSection = Field(default_factory=ProbesSection)
    attention: AttentionSection = Field(default_factory=AttentionSection)
    resources: Resources = Field(default_factory=Resources)
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
        sections = {
            "evaluate": self.evaluate,
            "robustness": self.robustness,
            "probes": self.probes,
            "attention": self.attention,
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
    text = _read(path)
    root, data = _parse_yaml(text, path)
    base = _validate(data, root, None, path)
    merged = base
    if base.smoke is not None:
        merged = _validate(_deep_merge(data, base.smoke), root, _smoke_node(root), path)
    if smoke and base.smoke is None:
        raise CfglabError(f"{path}: --smoke needs a `smoke:` section of overrides in the file")
    return LoadedSweep(merged if smoke else base, path.resolve(), smoke)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CfglabError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CfglabError(f"{path}: cannot read: {err}") from None


def _parse_yaml(text: str, path: Path) -> tuple[yaml.Node, dict[str, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CfglabError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or root is None:
        raise CfglabError(f"{path}: a sweep file is a mapping of fields (name, grammars, ...)")
    return root, data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _validate(
    data: dict[str, Any], root: yaml.Node, smoke: yaml.Node | None, path: Path
) -> SweepSpec:
    try:
        return SweepSpec(**data)
    except ValidationError as err:
        raise CfglabError(_format_errors(err, root, smoke, path)) from None
    except TypeError as err:  # non-string keys at the top level
        raise CfglabError(f"{path}: {err}") from None


def _format_errors(
    err: ValidationError, root: yaml.Node, smoke: yaml.Node | None, path: Path
) -> str:
    lines = [f"{path}: invalid sweep file" + (" (in its smoke section)" if smoke else "")]
    source = _source_lines(root)
    found = []
    for e in err.errors():
        loc = tuple(e["loc"])
        unknown = e["type"] == "extra_forbidden"
        prefix, node = _locate(loc, root, smoke, unknown)
        dotted = ".".join(str(p) for p in prefix + loc) or "(top level)"
        msg = "unknown field (not allowed)" if unknown else e["msg"]
        found.append((node.start_mark.line + 1, node.start_mark.column + 1, dotted, msg))
    for line, col, dotted, msg in sorted(found):
        lines.append(f"  {path}:{line}:{col}: {dotted}: {msg}")
        if 0 < line <= len(source):
            lines.append(f"      {source[line - 1].strip()}")
    return "\n".join(lines)


def _source_lines(root: yaml.Node) -> list[str]:
    buffer = root.start_mark.buffer
    return buffer.rstrip("\0").splitlines() if buffer else []


def _smoke_node(root: yaml.Node) -> yaml.Node | None:
    found, node = _descend(root, ("smoke",))
    return node if found else None


def _locate(
    loc: tuple[Any, ...], root: yaml.Node, smoke: yaml.Node | None, at_key: bool = False
) -> tuple[tuple[str, ...], yaml.Node]:
    """The YAML node an error location points at: in the smoke overrides if it came from there."""
    if smoke is not None:
        found, node = _descend(smoke, loc, at_key)
        if found:
            return ("smoke",), node
    return (), _descend(root, loc, at_key)[1]


def _descend(node: yaml.Node, loc: tuple[Any, ...], at_key: bool = False) -> tuple[bool, yaml.Node]:
    """Follow `loc` down the node tree; (whether all of it matched, the deepest node reached).
    `at_key`: end at the last key rather than its value (an unknown field is shown by name)."""
    for i, part in enumerate(loc):
        child = _child(node, part, at_key and i == len(loc) - 1)
        if child is None:
            return False, node
        node = child
    return True, node


def _child(node: yaml.Node, part: Any, key_node: bool) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key if key_node else value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


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
    for (gname, gpath), size, (tag, pe, mlm_pe), (frac, rate), seed in itertools.product(
        grammars.items(), sizes, spec.model.variants(), spec.noise.pairs(), spec.seeds
    ):
        parts = (
            [gname]
            + ([size.tag] if len(sizes) > 1 else [])
            + [tag, _noise_tag(frac, rate), f"s{seed}"]
        )
        coords = {
            "grammar": gname,
            "size": size.tag,
            "layers": size.layers,
            "heads": size.heads,
            "dim": size.dim,
            "pe": pe,
            **({"mlm_pe": mlm_pe} if pe == "mlm" else {}),
            "noise_fraction": frac,
            "noise_rate": rate,
            "seed": seed,
        }
        train = {
            **spec.train.model_dump(),
            "grammar": str(gpath),
            "pe": pe,
            "mlm_pe": mlm_pe,
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
