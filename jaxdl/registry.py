"""Models, tasks and data sources by name. Each registers itself beside its code, with
its config defaults and a builder; `configs.base_config()` composes the defaults:

    @registry.model("mlp", family="classifier", hidden=(256, 256), dropout=0.0)
    def build(cfg, info) -> nn.Module: ...        # cfg: config.model; info: the data's

    @registry.task("classify", model_family="classifier", needs="class_names", flip=False)
    def build(cfg, model, context) -> Task: ...   # cfg: config.task; context: BuildContext

    @registry.source("image_folder", yields=("image", "label"),
                     provides=("class_names", "image_shape"), path="", image_size=64)
    def build(cfg, seed, process_index, process_count) -> data.Input: ...  # cfg: config.data

A builder checks its own section (one-line `errors.check`s) and returns the object.
`family` says what a model is (the call signature its tasks rely on, written in each
task's docstring); a task trains models of one family and reads the `needs` key of the
data's `info`; a source says which fields its examples hold (`yields`) and which keys of
`info` it writes (`provides`), so a task is matched to it before any data is read.

Every module in jaxdl/models/, jaxdl/tasks/ and jaxdl/datasets/ is imported on the first
lookup, so a new file there registers with no other edit; one kept elsewhere registers
when its module is imported (for example by the experiment file that uses it; a run
records each entry's `module_of`, and tools import it again: train/run_info.py). A module
that fails to import is one warning line naming its file; it breaks only the lookups of
names it would have registered: the error of such a lookup names it and why.
"""

import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

from absl import logging

from jaxdl.errors import ConfigError

KINDS = ("model", "task", "data")
_PACKAGES = {"model": "jaxdl.models", "task": "jaxdl.tasks", "data": "jaxdl.datasets"}


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str  # "model", "task" or "data"
    name: str
    build: Callable
    defaults: dict  # the section's keys (besides `name`) and their default values
    family: str  # model: what it is; task: the family of models it trains; data: ""
    needs: str | None  # task: the key of the data's info it reads
    # Values for keys missing from a saved run's config (written before the key existed),
    # where they differ from `defaults`: such a run keeps loading as it was trained.
    legacy: dict
    yields: tuple = ()  # data: the fields of its examples (batches hold them)
    provides: tuple = ()  # data: the keys of the info it writes (what tasks `need`)
    data: str | None = None  # task: the data source base_config picks for it


_ENTRIES: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_discovered = False
# Modules that failed to import, per kind: {what (a file, or a module and its folder): why}.
_FAILED: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}


def _register(kind: str, name: str, family: str, needs, legacy: dict, defaults: dict, **more):
    def wrap(build: Callable) -> Callable:
        where = lambda fn: f"{fn.__module__}.{fn.__qualname__}"
        existing = _ENTRIES[kind].get(name)
        if existing is not None and where(existing.build) != where(build):  # not a re-import
            raise ValueError(
                f"{kind} {name!r} is registered twice ({where(existing.build)} and {where(build)})"
            )
        unknown_legacy = set(legacy) - set(defaults)
        if unknown_legacy:
            raise ValueError(f"{kind} {name!r}: legacy keys {unknown_legacy} have no default")
        _ENTRIES[kind][name] = Entry(kind, name, build, defaults, family, needs, legacy, **more)
        return build

    return wrap


def unregister(kind: str, name: str) -> None:
    """Forgets entry `name` (a test's own model, after the test)."""
    _ENTRIES[kind].pop(name, None)


def model(name: str, *, family: str, legacy: dict | None = None, **defaults):
    """Registers `build(cfg, info) -> flax module` as model `name` (see the module doc)."""
    return _register("model", name, family, None, legacy or {}, defaults)


def task(
    name: str,
    *,
    model_family: str,
    needs: str,
    data: str | None = None,
    legacy: dict | None = None,
    **defaults,
):
    """Registers `build(cfg, model, context) -> Task` as task `name`; `data`: the source
    `configs.base_config` picks for it (default: the first, by name, that provides
    `needs`)."""
    return _register("task", name, model_family, needs, legacy or {}, defaults, data=data)


def source(
    name: str,
    *,
    yields: tuple[str, ...],
    provides: tuple[str, ...],
    legacy: dict | None = None,
    **defaults,
):
    """Registers `build(cfg, seed, process_index, process_count) -> data.Input` as data
    source `name`; `defaults` are its own keys of config.data (the keys every source
    shares are configs.DATA_COMMON)."""
    return _register(
        "data", name, "", None, legacy or {}, defaults, yields=yields, provides=provides
    )


def _discover() -> None:
    """Imports every module of jaxdl.models, jaxdl.tasks and jaxdl.datasets once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    root = Path(__file__).resolve().parent.parent
    for kind, package_name in _PACKAGES.items():
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            file = Path(module.module_finder.path) / (
                f"{module.name}/__init__.py" if module.ispkg else f"{module.name}.py"
            )
            shown = file.relative_to(root) if file.is_relative_to(root) else file
            import_module(kind, f"{package_name}.{module.name}", shown=str(shown))


def import_module(
    kind: str, module: str, path: str | None = None, shown: str = "", warn: bool = True
) -> bool:
    """Imports `module` (with folder `path` on sys.path, after what is there) for its
    `kind` entries; one that fails is a warning line (`warn`), and the error of a
    lookup of a `kind` name that is not registered names it (`shown`, else the module).
    True if it imported."""
    if path and path not in sys.path:
        sys.path.append(path)
    shown = shown or (f"{module} (from {path})" if path else module)
    try:
        importlib.import_module(module)
    except Exception as e:  # anything its code raises: the run that uses it says so
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _FAILED[kind][shown] = reason
        if warn:
            logging.warning("%s failed to import (%s): its %ss are missing", shown, reason, kind)
        return False
    _FAILED[kind].pop(shown, None)
    return True


def module_of(kind: str, name: str) -> tuple[str, str | None]:
    """The module that registered `name` (its builder's), and the folder to put on
    sys.path to import it again where it is outside jaxdl (None inside jaxdl, or where
    no folder is known: `__main__`). A file loaded under another name (an experiment
    file that registers a model itself: ml_collections loads it as `config_config`) is
    recorded by its own name."""
    module = lookup(kind, name).build.__module__
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None)
    if module.partition(".")[0] == "jaxdl" or module == "__main__" or not file:
        return module, None
    file = Path(file).resolve()
    if file.stem not in (module.rpartition(".")[2], "__init__"):
        return file.stem, str(file.parent)
    levels = module.count(".") + (file.name == "__init__.py")
    return module, str(file.parents[levels])


def names(kind: str) -> list[str]:
    _discover()
    return sorted(_ENTRIES[kind])


def lookup(kind: str, name) -> Entry:
    """The entry registered as `name`, or a ConfigError listing those there are."""
    _discover()
    if name not in _ENTRIES[kind]:
        failed = "".join(
            f"; {what} failed to import ({why})" for what, why in _FAILED[kind].items()
        )
        raise ConfigError(f"{kind}.name={name!r} is not one of {names(kind)}{failed}")
    return _ENTRIES[kind][name]
