"""Run configuration: Hydra structured configs, composed from groups and overrides.

`compose_run(["variant=vjepa", "budget.flops=2e12"])` is the one way a run config is made,
whether from the command line, a sweep file or a Tune trial, so every path validates alike.
Groups: `variant` (one node per registered variant), `data` (one per dataset), `model`
(one node per family: ViT sizes vit_tiny..vit_huge, mlp, cnn). Errors name the key and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hydra import compose, initialize
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import MISSING, DictConfig, OmegaConf

from orchestrator import registry
from orchestrator.entries import ConfigError  # lives in the leaf: dataset errors subclass it
from orchestrator.optim import OPTIMIZERS, SCHEDULES
from orchestrator.evaluate.registry import evaluations
from variants.nn.cnn import CNN_NORMS
from variants.nn.mlp import ACTIVATIONS, NORMS
from variants.nn.vit import PATCH_DIMS, VIT_SIZES


@dataclass
class ModelConfig:
    """`model=vit_tiny..vit_huge`: a ViT (variants/nn/vit.py); `patch_dims` 3 = video tubelets,
    2 = image patches, 1 = sequence chunks of `patch` steps."""

    name: str = "vit_tiny"
    dim: int = 192
    depth: int = 12
    heads: int = 3
    patch: int = 8
    tubelet: int = 2
    patch_dims: int = 3
    family: str = "vit"  # set by the model= choice; variants declare the families they accept


ViTConfig = ModelConfig


@dataclass
class MLPConfig:
    """`model=mlp`: variants/nn/mlp.py; its input width comes from the data."""

    name: str = "mlp"
    hidden_dim: int = 256
    depth: int = 2  # hidden layers; 0 = one linear map
    out_dim: int = 0  # 0 = hidden_dim
    activation: str = "gelu"
    norm: str = "layernorm"  # none | layernorm | batchnorm
    family: str = "mlp"


@dataclass
class CNNConfig:
    """`model=cnn`: variants/nn/cnn.py, a 2-D CNN over grids; input channels come from the data."""

    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # one conv per stage
    kernel: int = 3
    strides: list[int] = field(default_factory=lambda: [2, 2, 2])  # one per stage
    activation: str = "gelu"
    norm: str = "batchnorm"  # none | batchnorm | groupnorm
    family: str = "cnn"


MODEL_FAMILIES: dict[str, type] = {"vit": ModelConfig, "mlp": MLPConfig, "cnn": CNNConfig}


def model_nodes() -> dict[str, tuple[str, Any]]:
    """`model=` choice -> (family, config node)."""
    nodes: dict[str, tuple[str, Any]] = {
        name: ("vit", ModelConfig(name=name, dim=dim, depth=depth, heads=heads)) for name, (dim, depth, heads) in VIT_SIZES.items()
    }
    nodes["mlp"] = ("mlp", MLPConfig())
    nodes["cnn"] = ("cnn", CNNConfig())
    nodes["tab_transformer"] = ("vit", ModelConfig(name="tab_transformer", dim=32, depth=2, heads=4))  # T-JEPA: one token per column
    return nodes


@dataclass
class OptimConfig:
    """Optimiser and schedule (orchestrator/optim.py), honoured by every host. Keys left null take
    the variant's `optim_defaults` when the run is composed (AdamW + warm-up/cosine for
    self-supervised variants, constant-lr Adam for the zero-shot RL agents)."""

    name: str | None = None  # adamw | adam | sgd
    lr: float | None = None  # the variant's default: 5e-4 for the self-supervised ones (see variants/base.py)
    schedule: str | None = None  # cosine | constant | linear (after the warm-up, down to min_lr_frac·lr)
    min_lr_frac: float = 0.01  # schedule floor as a fraction of lr
    warmup_frac: float | None = None  # linear warm-up over this share of a stage's steps
    weight_decay: float | None = None
    final_weight_decay: float | None = None  # reached along the schedule (a cosine ramp, as in I-JEPA)
    betas: tuple[float, float] = (0.9, 0.999)  # adamw / adam
    momentum: float = 0.0  # sgd only
    grad_clip: float | None = None  # global-norm clip; 0 = off; the variant's default (1.0 self-supervised)


def fill_optim_defaults(cfg: DictConfig) -> None:
    """Unset `optim.*` keys from the variant's `optim_defaults` (so stored configs say what ran)."""
    defaults = registry.variant(cfg.variant.name).optim_defaults
    for key in ("name", "lr", "schedule", "warmup_frac", "weight_decay", "final_weight_decay", "grad_clip"):
        if cfg.optim[key] is None:
            cfg.optim[key] = defaults[key]


def _check_optim(cfg: DictConfig, fail) -> None:
    """Known optimiser and schedule names, and momentum only where it is read."""
    o = cfg.optim
    if o.name not in OPTIMIZERS:
        fail("optim.name", f"is {o.name!r}", f"use one of {', '.join(OPTIMIZERS)}")
    if o.schedule not in SCHEDULES:
        fail("optim.schedule", f"is {o.schedule!r}", f"use one of {', '.join(SCHEDULES)}")
    if not 0.0 <= o.momentum < 1.0:
        fail("optim.momentum", f"is {o.momentum}", "use a value in [0, 1)")
    if o.momentum and o.name != "sgd":
        fail("optim.momentum", f"is {o.momentum} but optim.name is {o.name} (momentum is SGD's)",
             "set optim.name=sgd, or drop optim.momentum (adam/adamw use optim.betas)")


@dataclass
class BudgetConfig:
    flops: float | None = None  # stop once this many training FLOPs are spent (all workers)
    steps: int | None = None  # or after this many optimizer steps, whichever comes first


@dataclass
class TrainConfig:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    batch_size: int = 16  # per worker
    loader_workers: int = 0  # DataLoader processes per worker (raise on GPUs so decoding keeps up)
    precision: str = "auto"  # auto = bf16 autocast on GPU, fp32 on CPU; or fp32 / bf16
    compile: bool = False
    checkpoint_every: int = 50
    log_every: int = 10  # steps between rows in the results store and dashboard gauges
    report_interval_s: float = 5.0  # at most one report to Ray Train / Tune per interval (plus checkpoints)
    eval_every: int = 0  # 0 = evaluate once, at the end
    inline: str = "auto"  # run a one-worker trial inside the Tune trial process (no worker group)
    max_failures: int = 0
    stages: list[str] = field(default_factory=list)  # run only these stages (empty = all)


@dataclass
class EvalConfig:
    probe: str = "attentive"  # or linear
    epochs: int = 15
    lr: float = 1e-3
    train_clips: int = 1024
    val_clips: int = 512
    # RL (zero-shot) evaluation, through RLlib env runners
    episodes: int = 10  # per task
    episode_length: int = 0  # steps per episode; 0 = the env's own limit (1000 on dm_control)
    tasks: list[str] = field(default_factory=list)  # empty = every task of the dataset
    env_runners: int = 0  # remote evaluation env runners; 0 = in the trainer's process
    kinds: list[str] = field(default_factory=list)  # evaluations to run (orchestrator/evaluate/); empty = chosen from the data
    baselines: bool = True  # also score probes on a random-init encoder and on raw inputs (cached once per config)
    # feature_stats flags collapse (and the loop warns) when the features' effective rank is below this share of their width
    collapse_rank_frac: float = 0.05


@dataclass
class RunConfig:
    defaults: list[Any] = field(default_factory=lambda: [{"variant": "vjepa"}, {"data": "moving_shapes"}, {"model": "vit_tiny"}, "_self_"])
    variant: Any = MISSING
    data: Any = MISSING
    model: Any = MISSING  # one node per family: ModelConfig (ViT), MLPConfig, CNNConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    name: str = "run"
    sweep: str = "adhoc"
    storage: str = "runs"  # results root: a path or a pyarrow filesystem URI


GROUPS = ("variant", "data", "model")


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run", node=RunConfig)
    for name, (_, node) in model_nodes().items():
        cs.store(group="model", name=name, node=node)
    for name, cls in registry.variants().items():
        cs.store(group="variant", name=name, node=with_name(cls.Config, name))
    for name, entry in registry.datasets().items():
        cs.store(group="data", name=name, node=entry.config_class)


def with_name(config: type, name: str) -> type:
    """A variant's Config with a `name` field (default: the registered name) if it lacks one,
    so a plugin's Config needs only its own hyper-parameters."""
    if "name" in {f.name for f in dataclasses.fields(config)}:
        return config
    return dataclasses.make_dataclass(config.__name__, [("name", str, field(default=name))], bases=(config,))


def _compose(overrides: list[str]) -> DictConfig:
    _register()
    GlobalHydra.instance().clear()
    try:
        with initialize(version_base=None, config_path=None):
            return compose(config_name="run", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def compose_run(overrides: list[str] | tuple[str, ...] = (), source: str = "command line") -> DictConfig:
    """Compose and validate a run config; `source` names where the overrides came from."""
    try:
        cfg = _compose(list(overrides))
    except (ConfigCompositionException, HydraException) as err:
        raise ConfigError(_explain_hydra_error(err, source, overrides)) from None
    absolute_paths(cfg)
    fill_optim_defaults(cfg)
    validate_run(cfg, source)
    return cfg


# Config keys that name files: a relative one means "relative to where the user ran `jepa`". Tune trials
# and Ray Train workers run in directories of their own, so these are made absolute on the driver.
PATH_KEYS = ("data.path", "data.root", "data.train_csv", "data.val_csv", "variant.teacher_checkpoint")


def absolute_path(value: Any) -> Any:
    """A relative file name made absolute against this process's working directory; anything else as is."""
    relative = isinstance(value, str) and value not in ("", "???") and "://" not in value and not os.path.isabs(os.path.expanduser(value))
    return os.path.abspath(os.path.expanduser(value)) if relative else value


def absolute_paths(cfg: DictConfig) -> None:
    """Relative file keys -> absolute, on the driver (where the user's relative names mean something)."""
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if absolute_path(value) != value:
            OmegaConf.update(cfg, key, absolute_path(value), merge=False)


def absolute_path_overrides(overrides: list[str]) -> list[str]:
    """The same for override strings (sweep files), so trials compose the driver's paths."""
    out = []
    for override in overrides:
        key, _, value = override.partition("=")
        value = value.strip("'\"")
        is_path = key.lstrip("+~") in PATH_KEYS and absolute_path(value) != value
        out.append(format_override(key, absolute_path(value)) if is_path else override)
    return out


def _explain_hydra_error(err: Exception, source: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    msg = str(err)
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause) not in msg:
        msg = f"{msg}: {cause}"
    msg = msg.split("Config search path")[0]
    msg = " ".join(line.strip() for line in msg.splitlines() if line.strip() and not line.strip().startswith(("full_key", "object_type")))
    msg = re.sub(r"\s*To append to your config use \+\S+?[:.]?(?=\s|$)", "", msg)  # `+key` would pass unread
    msg = re.sub(r"\s*reference_type=\S+", "", msg)
    if "Could not find" in msg or "Available options" in msg:
        hint = "Fix: pick one of the available options (`jepa variants`, `jepa data list` list them)"
    else:
        bad = re.search(r"Could not override '([^']+)'", msg)
        hint = _did_you_mean(bad.group(1), overrides) if bad else None
        hint = hint or "Fix: check the key's spelling; `jepa run --cfg budget.steps=1` prints every key"
    return f"{source}: {msg.rstrip('. ')}. {hint}."


def _did_you_mean(key: str, overrides: list[str] | tuple[str, ...] = ()) -> str | None:
    """`Fix: did you mean <closest existing key>?`, from the config the same group choices compose."""
    groups = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    try:
        base = _compose(groups)
    except (ConfigCompositionException, HydraException):
        base = _compose([])
    close = difflib.get_close_matches(key, dotted_keys(base), n=1, cutoff=0.6)
    return f"Fix: did you mean {close[0]}? (`jepa run --cfg budget.steps=1` prints every key)" if close else None


def dotted_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every leaf key of a config as `a.b.c` (the names overrides use)."""
    keys = []
    for key in cfg.keys():
        if key == "defaults" and not prefix:
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            keys += dotted_keys(node, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def validate_run(cfg: DictConfig, source: str = "command line") -> None:
    """Checks Hydra cannot express: every key set and read, numbers finite and in range, budgets,
    sizes that must divide, known choices; all on the driver, before a trial could fail on them."""
    def fail(key: str, problem: str, fix: str) -> None:
        raise ConfigError(f"{source}: `{key}` {problem}. Fix: {fix}{'' if fix.endswith('?') else '.'}")

    _check_complete(cfg, fail)
    _check_numbers(cfg, fail)
    _check_optim(cfg, fail)
    b = cfg.budget
    if b.flops is None and b.steps is None:
        fail("budget", "sets neither flops nor steps", "add budget.flops=<number> or budget.steps=<int>")
    if b.flops is not None and not (math.isfinite(b.flops) and b.flops > 0):
        fail("budget.flops", f"is {b.flops}", "use a positive number such as 2e12")
    if b.steps is not None and b.steps < 1:
        fail("budget.steps", f"is {b.steps}", "use a positive integer")
    if cfg.train.num_workers < 1:
        fail("train.num_workers", f"is {cfg.train.num_workers}", "use 1 or more")
    for key in ("log_every", "checkpoint_every"):
        if cfg.train[key] < 1:
            fail(f"train.{key}", f"is {cfg.train[key]}", "use a positive number of steps")
    if cfg.train.batch_size < 2:
        fail("train.batch_size", f"is {cfg.train.batch_size}", "use at least 2 clips per worker")
    if cfg.train.precision not in ("auto", "fp32", "bf16"):
        fail("train.precision", f"is {cfg.train.precision!r}", "use auto, fp32 or bf16")
    if cfg.train.inline not in ("auto", "always", "never"):
        fail("train.inline", f"is {cfg.train.inline!r}", "use auto, always or never")
    if cfg.eval.probe not in ("attentive", "linear"):
        fail("eval.probe", f"is {cfg.eval.probe!r}", "use attentive or linear")
    if not 0.0 <= cfg.eval.collapse_rank_frac < 1.0:
        fail("eval.collapse_rank_frac", f"is {cfg.eval.collapse_rank_frac}", "use a share of the feature width in [0, 1), e.g. 0.05")
    known = evaluations()
    for kind in cfg.eval.kinds:
        if kind not in known:
            fail("eval.kinds", f"names {kind!r}, no known evaluation", f"use some of {', '.join(sorted(known))}, or [] to choose from the data")
    _check_model(cfg, fail)
    registry.variant(cfg.variant.name).validate_config(cfg, fail)


def _check_model(cfg: DictConfig, fail) -> None:
    """The model's family is one the variant accepts, and its keys fit the family and the data."""
    m, variant = cfg.model, cfg.variant.name
    family = m.family
    node_type = OmegaConf.get_type(m)
    expected = next((f for f, kind in MODEL_FAMILIES.items() if kind is node_type), family)
    if family != expected:
        fail("model.family", f"is {family!r} on a {expected} node", f"drop that override: the family follows the model= choice ({', '.join(model_nodes())})")
    accepted = registry.variant(variant).model_families
    if family not in accepted:
        choices = [name for name, (f, _) in model_nodes().items() if f in accepted]
        fail("model", f"is {m.name!r} ({family} family), which variant {variant!r} does not accept (it takes {', '.join(accepted)})",
             f"pick model= one of {', '.join(choices)}")
    {"vit": _check_vit, "mlp": _check_mlp, "cnn": _check_cnn}[family](m, cfg.data, fail)


def _check_positive(m, keys: tuple[str, ...], fail, low: int = 1) -> None:
    for key in keys:
        if m[key] < low:
            fail(f"model.{key}", f"is {m[key]}", f"use an integer >= {low}")


def _check_vit(m, data, fail) -> None:
    _check_positive(m, ("dim", "depth", "heads", "patch", "tubelet"), fail)
    if m.patch_dims not in PATCH_DIMS:
        fail("model.patch_dims", f"is {m.patch_dims}", "use 3 (video tubelets), 2 (image patches) or 1 (sequence chunks)")
    if m.dim % m.heads:
        fail("model.heads", f"({m.heads}) does not divide model.dim ({m.dim})", "pick heads that divide dim")
    frames, size = data.get("frames"), data.get("size")
    if m.patch_dims == 3 and frames is not None and frames % m.tubelet:
        fail("model.tubelet", f"({m.tubelet}) does not divide data.frames ({frames})", "change one of them")
    if m.patch_dims >= 2 and size is not None and size % m.patch:
        fail("model.patch", f"({m.patch}) does not divide data.size ({size})", "change one of them")
    length = data.get("length")
    if m.patch_dims == 1 and length is not None and length % m.patch:
        fail("model.patch", f"({m.patch}) does not divide data.length ({length})", "change one of them")


def _check_mlp(m, data, fail) -> None:
    _check_positive(m, ("hidden_dim",), fail)
    _check_positive(m, ("depth", "out_dim"), fail, low=0)
    if m.activation not in ACTIVATIONS:
        fail("model.activation", f"is {m.activation!r}", f"use one of {', '.join(ACTIVATIONS)}")
    if m.norm not in NORMS:
        fail("model.norm", f"is {m.norm!r}", f"use one of {', '.join(NORMS)}")


def _check_cnn(m, data, fail) -> None:
    _check_positive(m, ("kernel",), fail)
    if not m.channels or min(m.channels) < 1:
        fail("model.channels", f"is {list(m.channels)}", "list one positive channel count per stage, e.g. [32,64]")
    if len(m.strides) != len(m.channels) or min(m.strides) < 1:
        fail("model.strides", f"is {list(m.strides)} for {len(m.channels)} stages", "give one positive stride per entry of model.channels")
    if m.activation not in ACTIVATIONS:
        fail("model.activation", f"is {m.activation!r}", f"use one of {', '.join(ACTIVATIONS)}")
    if m.norm not in CNN_NORMS:
        fail("model.norm", f"is {m.norm!r}", f"use one of {', '.join(CNN_NORMS)}")


def _check_complete(cfg: DictConfig, fail) -> None:
    """No `???` left, and no key that no code reads (added with Hydra's `+key=`)."""
    for key in sorted(OmegaConf.missing_keys(cfg)):
        what = "<a CSV of `path label` lines>" if key.endswith("_csv") else "<value>"
        fail(key, "is not set", f"add {key}={what}")
    schema_keys = set(dotted_keys(_schema(cfg)))
    for key in dotted_keys(cfg):
        if key not in schema_keys and not _under_open_node(cfg, key):
            close = difflib.get_close_matches(key, schema_keys, n=1, cutoff=0.6)
            fail(key, "is not a key of this config, so nothing would read it",
                 f"did you mean {close[0]}?" if close else "drop it; `jepa run --cfg budget.steps=1` prints every key")


def _schema(cfg: DictConfig) -> DictConfig:
    """The config's own dataclasses, without keys that overrides added."""
    out = {}
    for key in cfg.keys():
        if key not in RunConfig.__dataclass_fields__:
            continue
        node = cfg._get_node(key)
        kind = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if kind is not None and dataclasses.is_dataclass(kind):
            out[key] = OmegaConf.structured(kind)
        else:
            out[key] = node
    return OmegaConf.create(out)


def _under_open_node(cfg: DictConfig, key: str) -> bool:
    """Keys inside a plain dict field (not a dataclass) are free-form."""
    if "." not in key:
        return False
    node = OmegaConf.select(cfg, key.rsplit(".", 1)[0])
    kind = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    return kind is None or not dataclasses.is_dataclass(kind)


# Values a trial needs finite and above a floor: (key, lowest allowed, whether the floor itself is allowed).
_BOUNDS = (
    ("optim.lr", 0.0, False), ("optim.min_lr_frac", 0.0, True), ("optim.warmup_frac", 0.0, True),
    ("optim.weight_decay", 0.0, True), ("optim.final_weight_decay", 0.0, True), ("optim.grad_clip", 0.0, True),
    ("eval.lr", 0.0, False), ("eval.epochs", 0, True), ("eval.train_clips", 1, True), ("eval.val_clips", 1, True),
    ("eval.episodes", 1, True), ("eval.episode_length", 0, True), ("eval.env_runners", 0, True),
    ("train.report_interval_s", 0.0, True), ("train.eval_every", 0, True), ("train.cpus_per_worker", 1, True),
    ("train.loader_workers", 0, True), ("train.max_failures", 0, True),
)


def _check_numbers(cfg: DictConfig, fail) -> None:
    """Every float finite (NaN slips through `<` checks) and the trial's numbers in range."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key, value in _leaves(plain):
        if isinstance(value, float) and not math.isfinite(value):
            fail(key, f"is {value}", "use a finite number")
    for key, low, inclusive in _BOUNDS:
        value = OmegaConf.select(cfg, key)
        if value is not None and (value < low or (value == low and not inclusive)):
            fail(key, f"is {value}", f"use a number {'>=' if inclusive else '>'} {low}")
    for i, beta in enumerate(cfg.optim.betas):
        if not 0.0 <= beta < 1.0:
            fail(f"optim.betas[{i}]", f"is {beta}", "use a value in [0, 1)")
    for key in ("min_lr_frac", "warmup_frac"):
        if cfg.optim[key] > 1.0:
            fail(f"optim.{key}", f"is {cfg.optim[key]}", "use a fraction in [0, 1]")


def _leaves(value: Any, prefix: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def to_plain(cfg: DictConfig) -> dict:
    """A JSON-able dict (what travels to Ray workers and into the results store)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("defaults", None)
    return plain


def from_plain(plain: dict) -> DictConfig:
    return OmegaConf.create(plain)


def format_override(key: str, value: Any) -> str:
    """key=value in Hydra's override grammar (strings quoted when they need it)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(format_override("x", v)[2:] for v in value) + "]"
    elif isinstance(value, str) and not value.replace("_", "").replace("-", "").replace(".", "").replace("/", "").isalnum():
        text = "'" + value.replace("'", "\\'") + "'"
    else:
        text = str(value)
    return f"{key}={text}"
