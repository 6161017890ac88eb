"""A search's bookkeeping: its Optuna study (where it is stored, its sampler and pruner),
which trial each worker trains, what became of each.

    sweep_dir/study.db        the study in SQLite: one machine (the local backend's default)
    sweep_dir/study.journal   the study in Optuna's journal file (with an O_EXCL lock file,
                              fit for NFS): the SLURM backend's default, for workers on
                              several nodes sharing sweep_dir
    --storage=URL             an RDB the user runs (postgresql://..., mysql://...): the
                              study is named after sweep_dir there
    sweep_dir/claims/         <trial>.<run>: the worker number and pid of the worker of
                              run <run> of the command that trains the trial

`Study.next_unit()` is what a worker asks for: trials a killed run of the command left
RUNNING (a vmapped group's together; each to one worker of this run), or those its own
earlier life left RUNNING (a SLURM task requeued), else up to `vmap` new ones. Optuna is
used through its public API: the study, and the storage object made here (BaseStorage's
methods) for what a study does not offer (a trial's state by its id, failing a trial
another process held).
"""

import dataclasses
import logging as std_logging
import os
import time
from pathlib import Path

import numpy as np

from jaxdl.errors import UserError, check
from jaxdl.sweeps import spec
from jaxdl.train.grouping import PER_TRIAL_KEYS
from jaxdl.train.rundir import FAILED_FILE, STOPPED_FILE
from jaxdl.train.writers import read_metrics

STUDY_FILE = "study.db"
JOURNAL_FILE = "study.journal"
CLAIMS = "claims"
PRUNERS = ("median", "successive_halving", "none")
STORAGES = ("auto", "sqlite", "journal")  # or an RDB URL


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """A search's settings (launch/sweep.py's flags)."""

    num_trials: int = 10
    metric: str = "eval/loss"
    mode: str = "min"
    seed: int = 0
    pruner: str = "median"
    prune_after: float = 0.0  # share of a trial's steps before which it is never pruned
    vmap: int = 1  # trials asked at once, trained as one vmapped run
    startup_trials: int = 10  # drawn at random before TPE models the others
    storage: str = "auto"  # STORAGES or an RDB URL

    def check(self, space: dict) -> None:
        check(self.num_trials >= 1, f"--trials={self.num_trials} must be >= 1")
        check(0 <= self.prune_after < 1, f"--prune_after={self.prune_after} must be in [0, 1)")
        check(space, "a search needs a space: the experiment's search_space() or --space")
        check(self.vmap >= 1, f"config.sweep.vmap={self.vmap} must be >= 1")
        check(self.pruner in PRUNERS, f"--pruner={self.pruner!r} is not one of {list(PRUNERS)}")
        check(self.startup_trials >= 1, f"--startup_trials={self.startup_trials} must be >= 1")
        others = sorted(set(space) - set(PER_TRIAL_KEYS))
        check(
            self.vmap == 1 or not others,
            f"config.sweep.vmap={self.vmap}: vmapped trials may differ only in "
            f"{', '.join(PER_TRIAL_KEYS)}, not {', '.join(others)}",
        )
        check(
            self.storage in STORAGES or "://" in self.storage,
            f"--storage={self.storage!r} is not one of {list(STORAGES)} or an RDB URL",
        )


def optuna_module():
    import optuna  # the `search` extra; imported only where a search runs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    std_logging.getLogger("optuna").propagate = False
    return optuna


def distributions(space: dict) -> dict:
    """spec distributions ({key: ("loguniform", a, b), ...}) as Optuna's."""
    dist = optuna_module().distributions
    made = {}
    for name, (kind, *args) in space.items():
        if kind == "loguniform":
            made[name] = dist.FloatDistribution(args[0], args[1], log=True)
        elif kind == "uniform":
            made[name] = dist.FloatDistribution(args[0], args[1])
        elif kind == "int":
            made[name] = dist.IntDistribution(args[0], args[1])
        else:
            made[name] = dist.CategoricalDistribution(args[0])
    return made


def make_pruner(name: str, warmup_steps: int = 0):
    """`median` (against the trials finished, from the second on), `successive_halving`
    or `none`; neither prunes a trial before `warmup_steps`. (Optuna keeps no pruner in
    its storage: every process makes its own.)"""
    pruners = optuna_module().pruners
    check(name in PRUNERS, f"--pruner={name!r} is not one of {list(PRUNERS)}")
    if name == "median":
        return pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_steps)
    if name == "successive_halving":
        return pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_steps))
    return pruners.NopPruner()


def resolve_storage(sweep_dir: Path, setting: str, several_nodes: bool) -> str:
    """`auto`: the file sweep_dir holds (study.journal or study.db), else `journal` where
    workers may run on several nodes (SLURM), `sqlite` on one machine; others as given."""
    if setting != "auto" or (Path(sweep_dir) / STUDY_FILE).exists():
        return setting
    return "journal" if several_nodes else setting


def make_storage(sweep_dir: Path, setting: str = "auto"):
    """(Optuna storage, study name) for `setting`: an RDB URL; `journal`; `sqlite`; `auto`:
    the file sweep_dir already holds, else SQLite."""
    optuna = optuna_module()
    sweep_dir = Path(sweep_dir).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)  # (its trials' workdirs and claims)
    if "://" in setting:  # one database for many sweeps: a study each
        return optuna.storages.RDBStorage(setting), f"jaxdl:{sweep_dir}"
    journal = sweep_dir / JOURNAL_FILE
    if setting == "journal" or (setting == "auto" and journal.exists()):
        lock = optuna.storages.journal.JournalFileOpenLock(str(journal))
        backend = optuna.storages.journal.JournalFileBackend(str(journal), lock_obj=lock)
        return optuna.storages.JournalStorage(backend), "jaxdl"
    return optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / STUDY_FILE}"), "jaxdl"


def open_study(
    sweep_dir: Path,
    base_args: list[str],
    mode: str,
    seed: int,
    pruner: str,
    startup_trials: int = 10,
    worker: int = 0,
    storage=None,
):
    """The study of sweep_dir (created on the first call), in `storage` (an Optuna storage;
    default: make_storage's `auto`). Its sampler is TPE seeded with `seed` and the
    `worker`'s number (workers sharing a study draw apart) and, in a study that holds
    trials already, their count (a worker of a resumed search, or a requeued one, does
    not draw again what its namesake drew), random for the first `startup_trials`, and
    taking the trials still running as the worst so far (constant liar: trials asked
    together differ); its pruner `median` (after 2 finished trials) or
    `successive_halving`."""
    optuna = optuna_module()
    check(startup_trials >= 1, f"--startup_trials={startup_trials} must be >= 1")
    storage, name = storage or make_storage(sweep_dir)
    sampler = lambda *entropy: optuna.samplers.TPESampler(
        seed=int(np.random.SeedSequence([seed, worker, *entropy]).generate_state(1)[0]),
        n_startup_trials=startup_trials,
        constant_liar=True,
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="minimize" if mode == "min" else "maximize",
        sampler=sampler(),
        pruner=make_pruner(pruner),
    )
    held = len(study.get_trials(deepcopy=False))
    if held:
        study.sampler = sampler(held)
    saved = study.user_attrs.get("base_args")
    if saved is None:
        study.set_user_attr("base_args", base_args)
    elif saved != base_args:
        raise UserError(
            f"{sweep_dir} holds a search of another command ({' '.join(saved)}); use another "
            "--sweep_dir"
        )
    return study


class Study:
    """The bookkeeping of a search (see the module doc). `run_id` names one run of the
    command (its runner's start time, given to its workers): trials started before it and
    left RUNNING are a killed run's, to resume. `worker`: this worker's number in the run
    (its sampler's seed depends on it; a SLURM task keeps it when requeued)."""

    def __init__(self, sweep_dir, base_args, space, options, run_id=None, worker=0):
        options.check(space)
        self.sweep_dir = Path(sweep_dir)
        self.space = space
        self.options = options
        self.run_id = run_id or f"{time.time():.6f}"
        self.worker = worker
        self.states = optuna_module().trial.TrialState
        self.storage, name = make_storage(self.sweep_dir, options.storage)
        self.optuna = open_study(
            self.sweep_dir,
            base_args,
            options.mode,
            options.seed,
            options.pruner,
            options.startup_trials,
            worker,
            (self.storage, name),
        )
        self.study_id = self.storage.get_study_id_from_name(name)

    # ---- who trains what ----------------------------------------------------------------
    def claim_file(self, number: int) -> Path:
        """Where a worker of this run says it took trial `number`."""
        return self.sweep_dir / CLAIMS / f"{number}.{self.run_id}"

    def _claimed_by(self, number: int) -> tuple[int, int] | None:
        """(worker number, pid) of this run's worker that took trial `number`, if any."""
        claim = self.claim_file(number)
        if not claim.exists():
            return None
        worker, pid = claim.read_text().split()
        return int(worker), int(pid)

    def claim(self, number: int, again: bool = False) -> bool:
        """Whether this process took trial `number` for this run (a file created once:
        of several workers resuming a killed run's trial, one gets it); `again`: a trial
        this worker's earlier life held, taken back."""
        claim = self.claim_file(number)
        claim.parent.mkdir(exist_ok=True)
        flags = os.O_CREAT | os.O_WRONLY | (os.O_TRUNC if again else os.O_EXCL)
        try:
            handle = os.open(claim, flags)
        except FileExistsError:
            return False
        os.write(handle, f"{self.worker} {os.getpid()}".encode())
        os.close(handle)
        return True

    def _left_running(self, trials) -> list:
        """Those of `trials` (frozen) a killed run of the command left RUNNING (started
        before this run), and those this worker's earlier life left (a requeued task)."""
        since = float(self.run_id)
        return [
            t
            for t in trials
            if t.state == self.states.RUNNING
            and (t.datetime_start.timestamp() < since or self._mine_before(t.number))
        ]

    def _mine_before(self, number: int) -> bool:
        """Whether this worker's earlier life (another pid) took trial `number`."""
        holder = self._claimed_by(number)
        return holder is not None and holder[0] == self.worker and holder[1] != os.getpid()

    def _record(self, trial) -> dict:
        overrides = {k: trial.params[k] for k in self.space}
        name = spec.trial_name(trial.number, overrides)
        trial.set_user_attr("name", name)
        return {"name": name, "overrides": overrides, "trial": trial}

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _resumable(self, trials) -> list[dict] | None:
        """A unit of trials left RUNNING (a group's together) that this worker takes."""
        left: dict[str, list] = {}  # group -> its trials left RUNNING, in trial order
        for frozen in self._left_running(trials):
            group = frozen.user_attrs.get("group", frozen.user_attrs.get("name"))
            left.setdefault(group, []).append(frozen)
        for unit in left.values():  # every worker claims in trial order: the first decides
            again = self._mine_before(unit[0].number)
            if all(self.claim(frozen.number, again) for frozen in unit):
                trial = lambda n: optuna_module().trial.Trial(self.optuna, self.trial_id(n))
                return [self._record(trial(frozen.number)) for frozen in unit]
        return None

    def next_unit(self) -> list[dict] | None:
        """Trials to train as one unit ({name, overrides, trial} each): those left
        RUNNING (_resumable), else up to `vmap` new ones; None when the study is full."""
        trials = self.optuna.get_trials(deepcopy=False)
        resumed = self._resumable(trials)
        if resumed:
            return resumed
        asked = sum(t.state != self.states.WAITING for t in trials)  # (waiting: enqueued)
        room = self.options.num_trials - asked
        if room <= 0:
            return None
        space = distributions(self.space)
        unit = [self._record(self.optuna.ask(space)) for _ in range(min(room, self.options.vmap))]
        for record in unit:
            self.claim(record["trial"].number)
            record["trial"].set_user_attr("group", unit[0]["name"])
        return unit

    def work_left(self) -> bool:
        """Whether a worker would find a trial: room in the study, or a killed run's trial
        no worker of this run has taken."""
        asked = tuple(set(self.states) - {self.states.WAITING})
        trials = self.optuna.get_trials(deepcopy=False, states=asked)
        if len(trials) < self.options.num_trials:
            return True
        return any(not self.claim_file(t.number).exists() for t in self._left_running(trials))

    def fail_trials_of(self, pid: int, error: str) -> list[int]:
        """The trials a dead worker (`pid`) held and left RUNNING, now FAIL with `error`."""
        held = []
        for frozen in self.optuna.get_trials(deepcopy=False, states=(self.states.RUNNING,)):
            holder = self._claimed_by(frozen.number)
            if holder and holder[1] == pid:
                trial_id = self.trial_id(frozen.number)
                self.storage.set_trial_user_attr(trial_id, "error", error)
                self.storage.set_trial_state_values(trial_id, self.states.FAIL)
                held.append(frozen.number)
        return held

    # ---- what became of a trial ---------------------------------------------------------
    def settle(self, record: dict, error: str | None, wall_s: float) -> str:
        """Tells the study what became of a trained trial; returns its status: pruned (its
        trainer told the study), failed, interrupted (stays RUNNING: the next run of the
        command resumes it) or done (its last `metric`)."""
        trial, workdir = record["trial"], self.sweep_dir / record["name"]
        failure = workdir / FAILED_FILE
        if self.storage.get_trial(self.trial_id(trial.number)).state == self.states.PRUNED:
            return "pruned"
        trial.set_user_attr("wall_s", round(wall_s, 2))
        metric = self.options.metric
        values = [float(r[metric]) for r in read_metrics(workdir) if metric in r]
        if failure.exists() or error is not None:
            message = failure.read_text().strip() if failure.exists() else error
        elif (workdir / STOPPED_FILE).exists():
            return "interrupted"
        elif values:
            self.optuna.tell(trial, values[-1])
            return "done"
        else:
            message = f"no {metric} in its metrics.jsonl"
        trial.set_user_attr("error", message)
        self.optuna.tell(trial, state=self.states.FAIL)
        return "failed"

    def status(self, frozen) -> str:
        named = {
            self.states.COMPLETE: "done",
            self.states.PRUNED: "pruned",
            self.states.FAIL: "failed",
            self.states.RUNNING: "running",
            self.states.WAITING: "pending",
        }
        return named.get(frozen.state, str(frozen.state))

    def name(self, frozen) -> str:
        return frozen.user_attrs.get("name") or spec.trial_name(frozen.number, frozen.params)
