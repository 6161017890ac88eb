"""The config every experiment starts from, and the checks every config passes.

`base_config(model=..., task=..., data=...)` composes the sections: `model`, `task` and
`data` are the registered defaults of the named model, task and data source
(jaxdl/registry.py; a data section also holds DATA_COMMON; without `data`, the task's
own source: `default_data`), `optimizer` comes from optim.py, `train` and `sweep` are
below. An experiment changes what it needs.

`resolve(config)` is what the trainer and every tool read: a copy in which the `model`,
`task` and `data` sections name registered entries and hold exactly their keys (missing
keys get the defaults; an unknown name, an unknown key or a value of the wrong type is
one ConfigError line naming it), and `optimizer`, `train` and `sweep` hold only known
keys. `switch(config, "model", name)` replaces a section by another entry's defaults:
what `--config.model.name=<name>` on the command line does before the other overrides
apply (a data section keeps the values of the keys both sources have). A name set by
hand (`config.model.name = "mlp"` on a cnn section) is resolved as that switch, the
keys set on the section kept (`_renamed`).
"""

import copy

import ml_collections

from jaxdl import optim, registry
from jaxdl.errors import ConfigError

# The keys of every data section; each source adds its own (jaxdl/datasets/).
DATA_COMMON = dict(
    batch_size=128,  # global, over all devices and hosts
    eval_batch_size=1000,
    prefetch=2,  # batches made ahead of the step
    workers=0,  # > 0: worker processes make the training batches (decoding, resizing)
    # A decoded source of at most this many MiB (as read: resized) is read once and held
    # in memory, unless it draws random crops (bench/results/input_pipeline.md); 0: stream.
    hold_mb=512.0,
)
# Keys every data section had before sources registered (2026-12): dropped where the
# section's source has none of them (resolve_section).
_RETIRED_DATA_KEYS = ("source", "data_dir", "train_split", "eval_split")
TRAIN_DEFAULTS = dict(
    num_epochs=1.0,
    num_steps=0,  # > 0 overrides num_epochs
    max_seconds=0.0,  # wall-clock budget (0 = none): then a final eval and checkpoint
    log_every=50,
    eval_every=0,  # steps; 0 = once per epoch (and always at the end)
    checkpoint_every=1000,  # steps; 0 = only at the end (and on SIGTERM or budget)
    keep_checkpoints=3,
    plot=True,  # write workdir/metrics.png (every metric over steps) when the run stops
    profile="",  # "START:STOP": a profiler trace of steps START+1..STOP in workdir/profile/
    param_sharding="replicated",  # replicated | fsdp: parameters, optimizer state split
    compute_dtype="float32",  # float32 | bfloat16: activations and matmuls (params float32)
    microbatches=1,  # > 1: each step sums the gradients of this many parts of its batch
    # Where metrics go besides metrics.jsonl (always): tensorboard, wandb, mlflow
    # (jaxdl/train/trackers.py); W&B project and MLflow experiment; MLflow's store ("":
    # $MLFLOW_TRACKING_URI, else sqlite in the workdir, or in the sweep's directory).
    writers="jsonl,tensorboard",
    project="jaxdl",
    tracking_uri="",
    # Set by launch/sweep.py for its trials: the sweep's directory and the trial's varied
    # values (JSON); trackers group the trials by them.
    group="",
    trial="",
    # Besides the newest keep_checkpoints, the keep_best best by best_metric (an eval/
    # metric; best_mode max or min, "": by its name): best.json names the best.
    keep_best=0,
    best_metric="",
    best_mode="",
)
# launch/sweep.py: up to `vmap` trials differing only in seed and optimizer
# learning_rate / weight_decay / clip_norm train in one vmapped step (1 = one run each),
# `vmap_chunk` of them vmapped at a time (0: all on GPU/TPU, 1 on CPU, whose caches
# a K-trial step overflows; bench/results/sweep_vmap.md).
# Population-based training of a vmapped group (pbt_every > 0: train/trials.py
# PopulationTask): every pbt_every steps the worst pbt_fraction of the trials copy the best
# and multiply their optimizer numbers by one of pbt_factors.
SWEEP_DEFAULTS = dict(vmap=1, vmap_chunk=0, pbt_every=0, pbt_fraction=0.25, pbt_factors=(0.8, 1.25))


def _defaults(entry: registry.Entry, saved: bool = False) -> dict:
    defaults = {**entry.defaults, **entry.legacy} if saved else entry.defaults
    return {**DATA_COMMON, **defaults} if entry.kind == "data" else defaults


def section(kind: str, name: str, **changes) -> ml_collections.ConfigDict:
    """The `kind` ("model", "task" or "data") section of entry `name`: its defaults, with
    `changes` (which must be keys it has)."""
    entry = registry.lookup(kind, name)
    values = {"name": name, **copy.deepcopy(_defaults(entry))}
    for key, value in changes.items():
        if key not in values:
            raise ConfigError(_unknown_key(f"{kind}.{key}", f"{kind} {name!r}", _defaults(entry)))
        values[key] = value
    return ml_collections.ConfigDict(values)


def base_config(
    model: str = "cnn", task: str = "classify", data: str | None = None
) -> ml_collections.ConfigDict:
    """The sections of the named entries; `data` defaults to the task's own source (its
    registered `data`, else the first source by name that provides what it `needs`)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = section("data", data or default_data(task))
    config.task = section("task", task)
    config.model = section("model", model)
    config.optimizer = optim.default_config()
    config.train = dict(TRAIN_DEFAULTS)
    config.sweep = dict(SWEEP_DEFAULTS)
    return config


def default_data(task: str) -> str:
    """The data source `base_config` picks for `task`."""
    entry = registry.lookup("task", task)
    if entry.data:
        return entry.data
    fitting = [
        n for n in registry.names("data") if entry.needs in registry.lookup("data", n).provides
    ]
    if not fitting:
        raise ConfigError(f"task {task!r} needs {entry.needs}, which no data source provides")
    return fitting[0]


def switch(config: ml_collections.ConfigDict, kind: str, name: str) -> None:
    """Replaces config[kind] by entry `name`'s defaults, unless it already is a section
    of `name` (names it and holds only its keys); a data section keeps the values of the
    keys the new source has too (batch sizes, splits, a document source's limits)."""
    current = config[kind]
    own_keys = {"name", *_defaults(registry.lookup(kind, name))}
    if current.get("name") != name or not set(current.keys()) <= own_keys:
        new = section(kind, name)
        if kind == "data":
            new.update({k: v for k, v in config[kind].items() if k in new and k != "name"})
        with config.unlocked():
            config[kind] = new


def resolve(config: ml_collections.ConfigDict, saved: bool = False) -> ml_collections.ConfigDict:
    """A complete, checked copy of `config` (see the module doc). `saved`: the config of a
    run written earlier, whose missing keys take the entries' `legacy` values (what the
    run was trained with) before their defaults."""
    resolved = copy.deepcopy(config)
    resolved.unlock()
    for kind in registry.KINDS:
        if kind not in resolved:
            raise ConfigError(f"the config has no {kind} section")
        resolved[kind] = resolve_section(kind, resolved[kind], saved)
    for kind, defaults in (
        ("optimizer", optim.default_config().to_dict()),
        ("train", TRAIN_DEFAULTS),
        ("sweep", SWEEP_DEFAULTS),
    ):
        resolved[kind] = _complete(resolved.get(kind, {}), defaults, kind, f"the {kind} section")
    return resolved


def resolve_section(kind: str, values, saved: bool = False) -> ml_collections.ConfigDict:
    """One registered section (`kind`: model, task or data) resolved as `resolve` does.
    The keys every data section had before sources registered are dropped where the
    source has none of them (they were never read there)."""
    entry = registry.lookup(kind, values.get("name"))
    if kind == "data":
        retired = set(_RETIRED_DATA_KEYS) - set(entry.defaults)
        values = ml_collections.ConfigDict({k: v for k, v in values.items() if k not in retired})
    if not saved:
        values = _renamed(kind, entry, values)
    return _complete(values, _defaults(entry, saved), kind, f"{kind} {entry.name!r}")


def _renamed(kind: str, entry: registry.Entry, values) -> ml_collections.ConfigDict:
    """A section whose name was changed by hand (`config.model.name = "mlp"` on the
    section `base_config` made for "cnn") as `switch` would have made it, with the keys
    set on it kept. The entry it was made from is recognised by its keys, not recorded
    (a section is a plain ConfigDict, copied and saved as JSON): the one other entry all
    of whose keys the section holds, among them keys the named entry lacks. Its
    keys go, and so do the values of shared keys equal to its defaults (the named
    entry's defaults stand in); other values were set by hand (before or after the
    name: the same then) and stay. One of its own keys changed from its default is a
    ConfigError that says to switch first; a key of neither is an unknown key."""
    given = {k: _plain(v) for k, v in values.items() if k != "name"}
    own = _defaults(entry)
    unknown = set(given) - set(own)
    if not unknown:
        return values
    made_from = [
        (other, {k: _plain(v) for k, v in _defaults(registry.lookup(kind, other)).items()})
        for other in registry.names(kind)
        if other != entry.name
    ]
    made_from = [(n, d) for n, d in made_from if unknown & set(d) and set(d) <= set(given)]
    if len(made_from) != 1:
        return values
    other, old = made_from[0]
    foreign = sorted(unknown - set(old))
    if foreign:
        raise ConfigError(_unknown_key(f"{kind}.{foreign[0]}", f"{kind} {entry.name!r}", own))
    changed = sorted(k for k in unknown if given[k] != old[k])
    if changed:
        raise ConfigError(
            f"{kind}.name={entry.name!r} was set on the section of {kind} {other!r}, whose "
            f"{kind}.{changed[0]} was changed, a key {entry.name!r} lacks: switch the section "
            f"first (configs.switch(config, {kind!r}, {entry.name!r})), then set its keys"
        )
    kept = {k: values[k] for k in given if k in own and (k not in old or given[k] != old[k])}
    return ml_collections.ConfigDict({"name": entry.name, **kept})


def _plain(value):
    """A config value as plain Python, for comparison: dicts for sections, tuples for
    lists."""
    if isinstance(value, dict | ml_collections.ConfigDict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return tuple(_plain(v) for v in value)
    return value


def _complete(values, defaults: dict, path: str, owner: str) -> ml_collections.ConfigDict:
    given = dict(values.items())
    # A model or task section's name picked `defaults`; it is kept as it is.
    out = {"name": given.pop("name")} if "name" in given and "name" not in defaults else {}
    for key in given:
        if key not in defaults:
            raise ConfigError(_unknown_key(f"{path}.{key}", owner, defaults))
    for key, default in defaults.items():
        if key not in given:
            out[key] = copy.deepcopy(default)
        elif isinstance(default, dict | ml_collections.ConfigDict):
            if not isinstance(given[key], dict | ml_collections.ConfigDict):
                raise ConfigError(f"{path}.{key} must be a section, not {given[key]!r}")
            out[key] = _complete(given[key], dict(default), f"{path}.{key}", owner)
        else:
            if not _fits(given[key], default):
                raise ConfigError(
                    f"{path}.{key}={given[key]!r} must be a {type(default).__name__} "
                    f"(like its default {default!r})"
                )
            out[key] = given[key]
    return ml_collections.ConfigDict(out)


def _fits(value, default) -> bool:
    """Whether `value` can stand where `default` does: ints for floats, lists for tuples."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) == isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return isinstance(value, type(default))


def _unknown_key(key: str, owner: str, defaults: dict) -> str:
    return f"unknown config key {key} for {owner} (its keys: {', '.join(sorted(defaults))})"
