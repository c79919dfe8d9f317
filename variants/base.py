"""The Variant contract: everything the trainer knows about a JEPA method.

A variant is plain PyTorch. It never imports the orchestrator or Ray, so it can be read,
tested and reused alone. The trainer owns devices, DDP, precision, optimizers, budgets,
checkpoints and evaluation; the variant owns networks, masks and the loss.

Multi-stage methods (SALT: teacher then student) list their stages; the trainer runs them
in order, charging each `stage_fraction` of the run's FLOP budget, and hands the modules
of the previous stage to `build` so a later stage can freeze and reuse them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DataSpec:
    """What a dataset yields, so a variant can size its networks and the right evaluations are chosen."""

    kind: str  # "video", later "tabular", "bev", "rl", ...
    frames: int = 1
    size: int = 1
    channels: int = 3
    input_key: str = "video"
    num_classes: dict[str, int] = field(default_factory=dict)  # class labels: batch[name] of shape [B], ints < n
    # Targets beyond class labels; each picks its evaluation (orchestrator/evaluate/):
    float_targets: dict[str, int] = field(default_factory=dict)  # name -> dims: batch[name] floats [B, dims] (R²)
    patch_labels: dict[str, int] = field(default_factory=dict)  # name -> classes: batch[name] ints [B, tokens], token order
    token_targets: dict[str, int] = field(default_factory=dict)  # name -> vocabulary size: batch[name] ints [B, length]
    # Per-sample float input shapes for data that is not a video clip, e.g. {"observation": (24,),
    # "action": (6,)}: the FLOP counter traces `step` on a shape-only batch built from them.
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Tabular data: per input column, its number of categories (0 = numeric; codes arrive as floats, NaN = missing).
    categories: tuple[int, ...] = ()
    # Batch key of the raw-input baseline's features when they are not `input_key` (tables: one-hot categoricals).
    raw_key: str = ""


Host = Literal["ssl", "rl_zero_shot", "imitation", "rllib_algorithm"]
"""Which loop trains a variant: the self-supervised loop (orchestrator/train.py), RLlib's learners
on offline data with zero-shot evaluation (orchestrator/rl/loop.py), RLlib imitation with rollouts
(issue 19, ACT-JEPA), or one of RLlib's own algorithms (orchestrator/rl/baselines.py)."""
HOSTS: tuple[str, ...] = get_args(Host)


class Variant:
    """Base class with the contract's defaults; subclasses set name, Config, host and stages.

    Every member a host calls is declared here (or in a capability mixin below): hosts never
    probe a variant with getattr. `HOST_CAPABILITIES` says which mixins each host needs.
    """

    name: ClassVar[str]
    """Registered name: `variant=<name>` and the Hydra node `variant/<name>`."""
    Config: ClassVar[type]
    """Dataclass of its hyper-parameters (the Hydra node `variant`)."""
    host: ClassVar[Host]
    """The loop that trains it (see `Host`); checked by `check_contract` when registered."""
    stages: ClassVar[tuple[str, ...]] = ("main",)
    """Stages run in order (SALT: teacher, student); an instance may narrow them in __init__."""
    # Config fields that change how a budget is spent but not what one step computes (SALT's
    # teacher_fraction): the FLOP counter reuses its trace across them.
    budget_keys: ClassVar[tuple[str, ...]] = ()
    """Config fields the FLOP counter ignores when it reuses a trace (they change the split, not a step)."""
    # lr 5e-4 and clipping at 1.0: at lr 1e-3 unclipped, a SALT teacher collapsed to predicting each patch's
    # mean within 150 steps and V-JEPA's probes fell below a random-init encoder's (docs/results/salt.md).
    optim_defaults: ClassVar[dict[str, Any]] = {"name": "adamw", "lr": 5e-4, "schedule": "cosine", "warmup_frac": 0.1,
                                                "weight_decay": 0.04, "final_weight_decay": 0.4, "grad_clip": 1.0}
    """Values of `optim.*` keys the run leaves unset (null): its method's usual optimiser and schedule."""
    # Model families (`model=` config groups: "vit", "mlp", "cnn") whose node this variant builds from cfg.model;
    # validation names the accepted `model=` choices when a run pairs it with another family.
    model_families: ClassVar[tuple[str, ...]] = ("vit",)

    # Numbers about parts this run reuses from other runs, logged with its own metrics: e.g. a
    # reused SALT teacher's cost ("teacher_flops", so reports can show costs with and without
    # it) and quality ("teacher/probe_acc").
    inherited: dict[str, float] = {}
    """Logged with every metrics row of the run (the self-supervised loop adds them)."""

    def __init__(self, cfg: Any, data_spec: DataSpec):
        """`cfg` is the whole run config (`cfg.variant` is this variant's Config).

        A variant may narrow `self.stages` here (SALT with a reused teacher has only "student").
        """
        self.cfg = cfg
        self.data_spec = data_spec
        self.generator = torch.Generator().manual_seed(int(cfg.seed))

    def reseed(self, seed: int) -> None:
        """Restart the mask stream: each data-parallel rank its own, the same again after a resume."""
        self.generator.manual_seed(seed)

    @classmethod
    def validate_config(cls, cfg: Any, fail) -> None:
        """Check cross-key constraints before any trial starts; call fail(key, problem, fix)."""

    # --- the contract -----------------------------------------------------------------
    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        """The networks of `stage`; `previous` holds the prior stage's modules (to freeze and reuse)."""
        raise NotImplementedError

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        """One forward pass; must return "loss"; other scalars are logged.

        It must also run on the meta device (the FLOP counter traces it there): no `.item()`,
        no shapes that depend on tensor values; draw randomness from `self.generator` on the CPU.
        """
        raise NotImplementedError

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """Frozen tokens [B, N, D] for probes and policies."""
        raise NotImplementedError

    def extra_features(self, modules: nn.ModuleDict) -> dict[str, Callable[[dict[str, Tensor]], Tensor]]:
        """Other frozen-token views the probes should also score, by name (V-JEPA's online encoder beside
        its EMA target): each view's probe metrics are logged as `<name>/<metric>`, without baselines."""
        return {}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        """Called after each optimizer step by every host, `step` counting from 1 to `total_steps` (EMA updates go here)."""

    def diagnostics(self, modules: nn.ModuleDict, stage: str) -> dict[str, float]:
        """Cheap scalars about the model's state (an EMA target's distance from its init, ...), logged at
        every log step beside the loss, so a run that stopped learning shows it. Not traced: may read values."""
        return {}

    def stage_fraction(self, stage: str) -> float:
        """Share of the run's FLOP/step budget this stage may spend."""
        return 1.0 / len(self.stages)

    def trainable(self, modules: nn.ModuleDict, stage: str) -> list[str]:
        """Names of the modules the optimizer updates in this stage."""
        return [name for name, m in modules.items() if any(p.requires_grad for p in m.parameters())]

    def param_groups(self, modules: nn.ModuleDict, stage: str) -> list[dict]:
        """Weight decay on matrices only (no decay on biases, norms, tokens), as in I-JEPA.

        A group may set `lr_scale` (the scheduled lr is multiplied by it) or `no_weight_decay`.
        """
        decay, no_decay = [], []
        for name in self.trainable(modules, stage):
            for p in modules[name].parameters():
                if p.requires_grad:
                    (decay if p.ndim >= 2 else no_decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "no_weight_decay": True}]


# --- capability mixins: what only some hosts call -----------------------------------------
class ZeroShot:
    """What the RLlib zero-shot host calls (orchestrator/rl/module.py): a task vector z inferred
    from rewards or a goal, and a policy conditioned on it."""

    @property
    def task_dim(self) -> int:
        """Size of the task vector z (the RLModule keeps the current one as a buffer)."""
        raise NotImplementedError

    def infer_task(self, modules: nn.ModuleDict, next_observations: Tensor, rewards: Tensor) -> Tensor:
        """The task vector z [task_dim] whose reward best fits `rewards` on these states."""
        raise NotImplementedError

    def infer_goal(self, modules: nn.ModuleDict, goal_observation: Tensor) -> Tensor:
        """Task vectors [B, task_dim] that reach the goal states [B, obs_dim]."""
        raise NotImplementedError

    def act(self, modules: nn.ModuleDict, observation: Tensor, z: Tensor, noise: float = 0.0) -> Tensor:
        """Actions in [-1, 1] for observations [B, obs_dim] under task z."""
        raise NotImplementedError


class Policy:
    """What the imitation host calls (ACT-JEPA, issue 19): actions from observations, for rollouts."""

    def act(self, modules: nn.ModuleDict, observation: Tensor) -> Tensor:
        """Actions for a batch of observations."""
        raise NotImplementedError


class RLlibAlgorithm:
    """A variant trained by one of RLlib's own algorithms (orchestrator/rl/baselines.py): the host
    builds that algorithm from the config; the variant has no networks or step of its own."""

    algorithm: ClassVar[str] = ""
    """RLlib's algorithm class name, e.g. "CQL"."""


HOST_CAPABILITIES: dict[str, tuple[type, ...]] = {
    "ssl": (),
    "rl_zero_shot": (ZeroShot,),
    "imitation": (Policy,),
    "rllib_algorithm": (RLlibAlgorithm,),
}
"""The mixins a variant of each host must subclass (and whose members it must implement)."""


class ContractError(TypeError):
    pass


def capability_members(mixin: type) -> list[str]:
    """The members a mixin declares (what its host calls)."""
    return [k for k, v in vars(mixin).items() if not k.startswith("_") and (callable(v) or isinstance(v, property))]


def check_contract(cls: type) -> None:
    """Registration check: a Variant subclass with a known host and every member that host calls."""
    where = f"variant class {cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise ContractError(f"{where} is not a variants.base.Variant subclass. Fix: subclass Variant")
    host = getattr(cls, "host", None)  # the one place a variant's declared fields are probed: to explain them
    if host not in HOSTS:
        raise ContractError(f"{where} declares host={host!r}. Fix: set `host = ` one of {', '.join(map(repr, HOSTS))}")
    for mixin in HOST_CAPABILITIES[host]:
        if not issubclass(cls, mixin):
            raise ContractError(f"{where} has host {host!r}, which calls {mixin.__name__}'s members. "
                                f"Fix: subclass variants.base.{mixin.__name__} and implement them")
        missing = [m for m in capability_members(mixin) if getattr(cls, m) is getattr(mixin, m)]
        if missing:
            raise ContractError(f"{where} has host {host!r} but does not implement {missing}. "
                                f"Fix: define them (see variants.base.{mixin.__name__})")
    if host == "rllib_algorithm" and not cls.algorithm:
        raise ContractError(f"{where} names no RLlib algorithm. Fix: set `algorithm = \"CQL\"` (or another)")
