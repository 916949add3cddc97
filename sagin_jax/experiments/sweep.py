"""``sagin-jax sweep``: hyperparameter search with Optuna, a population of trials x seeds trained as
ONE compiled program per epoch.

Every trial's settings are the traced ``Hyper`` fields, so B trials x S seeds are one run axis of
the ordinary trainer (``grid_programs``): one compile for the whole sweep. Optuna's ask-and-tell
interface fills the B slots, the population trains epoch by epoch, each trial reports the mean over
its seeds of the objective O (eq. 14, unit weights, fixed ``objective_ar_scale``) at the end of
each of its epochs on the TRAINING requests of the training seeds (validation), and the pruner may
stop it. A pruned or finished trial's slot is refilled at once with a new trial (``run_study``).
The study is kept in SQLite, and the population checkpointed each epoch, so ``--resume``
continues an interrupted sweep exactly.

After the search the best setting of each algorithm is retrained on separate TEST seeds (never seen
by the search) and compared with NRMVNE and GRC (and the other searched algorithm) on the test
requests of those seeds, with paired 95% intervals of the per-seed relative differences.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from sagin_jax.training.config import ALGOS, Hyper, TrainConfig

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("successive_halving", "hyperband", "none")
TOP_KEYS = {"name", "scenario", "train", "algos", "space", "batch", "train_seeds", "test_seeds",
            "budget", "sampler", "pruner", "seed", "objective_ar_scale", "rlvne_space"}
SPACE_NAMES = set(Hyper.names())


# --- the sweep file -------------------------------------------------------------------------
def _field(path, name: str) -> str:
    return f"{path}: field {name!r}"


def _number(path, name, v, what="a number") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{_field(path, name)} must be {what}, got {v!r}")
    return float(v)


def _seed_list(path, name, v) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = list(range(v)) if name == "train_seeds" else list(range(10_000, 10_000 + v))
    if (not isinstance(v, list) or not v
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v)):
        raise ValueError(f"{_field(path, name)} must be a count or a non-empty list of seeds "
                         f">= 0, got {v!r}")
    return list(v)


def validate_space(path, name: str, space) -> dict:
    """Check a search space ``{param: {"low", "high", "log"} | {"choices": [...]}}``."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{_field(path, name)} must be a non-empty JSON object, got {space!r}")
    out = {}
    for p, spec in space.items():
        where = f"{name}.{p}"
        if p not in SPACE_NAMES:
            raise ValueError(f"{_field(path, where)}: unknown hyperparameter (known: "
                             f"{sorted(SPACE_NAMES)})")
        if not isinstance(spec, dict):
            raise ValueError(f"{_field(path, where)} must be a JSON object, got {spec!r}")
        if "choices" in spec:
            extra = set(spec) - {"choices"}
            if extra:
                raise ValueError(f"{_field(path, where)}: unknown key(s) {sorted(extra)}")
            ch = spec["choices"]
            if not isinstance(ch, list) or not ch:
                raise ValueError(f"{_field(path, where + '.choices')} must be a non-empty list, got "
                                 f"{ch!r}")
            out[p] = {"choices": [_number(path, where + ".choices", c) for c in ch]}
            continue
        extra = set(spec) - {"low", "high", "log"}
        if extra:
            raise ValueError(f"{_field(path, where)}: unknown key(s) {sorted(extra)}")
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{_field(path, where)} needs 'low' and 'high' (or 'choices')")
        low = _number(path, where + ".low", spec["low"])
        high = _number(path, where + ".high", spec["high"])
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{_field(path, where + '.log')} must be true or false, got {log!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"{_field(path, where)}: empty range low={low} high={high}")
        if log and low <= 0:
            raise ValueError(f"{_field(path, where)}: low={low} must be > 0 on a log scale")
        out[p] = {"low": low, "high": high, "log": log}
    for p, s in out.items():  # every value a trial can draw must lie in the parameter's domain
        for end, v in ([("choices", c) for c in s["choices"]] if "choices" in s
                       else [("low", s["low"]), ("high", s["high"])]):
            Hyper.check_domain(p, v, _field(path, f"{name}.{p}.{end}"))
    return out


def load_sweep(path: str | os.PathLike) -> dict:
    """Read and validate a sweep file; ValueError naming the file and field on bad input."""
    path = str(path)
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read sweep file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a sweep file must be a JSON object")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    from sagin_jax.config import PAPER, ScenarioConfig
    sw: dict[str, Any] = {"name": doc.get("name", Path(path).stem)}
    if not isinstance(sw["name"], str) or not sw["name"]:
        raise ValueError(f"{_field(path, 'name')} must be a non-empty string")
    scen = doc.get("scenario")
    if scen is not None and not isinstance(scen, dict):
        raise ValueError(f"{_field(path, 'scenario')} must be a JSON object")
    try:
        sw["scenario"] = PAPER if scen is None else ScenarioConfig.from_dict(scen)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{_field(path, 'scenario')}: {e}") from None
    train = doc.get("train", {})
    if not isinstance(train, dict) or "algo" in train:
        raise ValueError(f"{_field(path, 'train')} must be a JSON object without 'algo' "
                         "(use 'algos')")
    try:
        TrainConfig.from_dict(train).validate(sw["scenario"].n_train)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{_field(path, 'train')}: {e}") from None
    sw["train"] = train
    algos = doc.get("algos", ["ddrl-nra"])
    if (not isinstance(algos, list) or not algos or any(a not in ALGOS for a in algos)
            or len(set(algos)) != len(algos)):
        raise ValueError(f"{_field(path, 'algos')} must be a list of distinct {ALGOS}, got "
                         f"{algos!r}")
    sw["algos"] = algos
    if "space" not in doc:
        raise ValueError(f"{_field(path, 'space')} is required")
    sw["space"] = validate_space(path, "space", doc["space"])
    sw["rlvne_space"] = (validate_space(path, "rlvne_space", doc["rlvne_space"])
                         if "rlvne_space" in doc else sw["space"])
    batch = doc.get("batch", 8)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"{_field(path, 'batch')} must be an integer >= 1, got {batch!r}")
    sw["batch"] = batch
    sw["train_seeds"] = _seed_list(path, "train_seeds", doc.get("train_seeds", 4))
    sw["test_seeds"] = _seed_list(path, "test_seeds", doc.get("test_seeds", 8))
    if set(sw["train_seeds"]) & set(sw["test_seeds"]):
        raise ValueError(f"{_field(path, 'test_seeds')} must not share seeds with 'train_seeds' "
                         f"(shared: {sorted(set(sw['train_seeds']) & set(sw['test_seeds']))})")
    sw["budget"] = parse_budget(doc.get("budget", 32), f"{_field(path, 'budget')}")
    sw["sampler"] = doc.get("sampler", "tpe")
    if sw["sampler"] not in SAMPLERS:
        raise ValueError(f"{_field(path, 'sampler')} must be one of {SAMPLERS}, got "
                         f"{sw['sampler']!r}")
    if sw["sampler"] == "grid" and any("choices" not in s for s in sw["space"].values()):
        raise ValueError(f"{_field(path, 'space')}: the grid sampler needs 'choices' for every "
                         "parameter")
    sw["pruner"] = doc.get("pruner", "successive_halving")
    if sw["pruner"] not in PRUNERS:
        raise ValueError(f"{_field(path, 'pruner')} must be one of {PRUNERS}, got "
                         f"{sw['pruner']!r}")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{_field(path, 'seed')} must be an integer >= 0, got {seed!r}")
    sw["seed"] = seed
    sw["objective_ar_scale"] = _number(path, "objective_ar_scale",
                                       doc.get("objective_ar_scale", 20000.0))
    if not sw["objective_ar_scale"] > 0:
        raise ValueError(f"{_field(path, 'objective_ar_scale')} must be > 0")
    return sw


def parse_budget(v, where: str = "--budget") -> tuple[str, float]:
    """``N`` trials or ``"300s"`` wall seconds -> ("trials", N) | ("seconds", 300)."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return ("trials", v)
    if isinstance(v, str):
        s = v.strip()
        try:
            if s.endswith("s"):
                x = float(s[:-1])
                if x > 0:
                    return ("seconds", x)
            elif int(s) >= 1:
                return ("trials", int(s))
        except ValueError:
            pass
    raise ValueError(f"{where} must be a number of trials >= 1 or wall seconds like '300s', "
                     f"got {v!r}")


# --- the study ------------------------------------------------------------------------------
def make_sampler(kind: str, seed: int, space: dict):
    import optuna
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler({p: s["choices"] for p, s in space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(kind: str, max_epochs: int):
    import optuna
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)


def suggest(trial, space: dict) -> dict:
    out = {}
    for p, s in space.items():
        if "choices" in s:
            out[p] = float(trial.suggest_categorical(p, s["choices"]))
        else:
            out[p] = trial.suggest_float(p, s["low"], s["high"], log=s["log"])
    return out


def hyper_of(tcfg: TrainConfig, params: dict, xp=np) -> Hyper:
    over = dict(params)
    if "failed_reward" in over and "failed_weight" not in over:
        over["failed_weight"] = 1.0  # searching the failed reward means failed requests count
    return Hyper.from_config(tcfg, xp=xp, **over)


class Population:
    """``n_slots`` settings x S seeds of one static training configuration, trained epoch by epoch
    as one compiled program (``grid_programs``: compiled once per shape).

    Every run of the population carries its own epoch counter and epoch keys, so the slots can be
    at different epochs: ``refill`` re-initialises chosen slots with new settings (a fresh carry
    from the same compiled ``init``, selected row by row into the old one by one compiled
    ``jnp.where``) while the others keep training. Every slot of a seed uses that seed's key, so
    a setting trained in any slot, started at any epoch of the sweep, gets the same numbers."""

    def __init__(self, cfg, tcfg: TrainConfig, seeds, n_slots: int, subs=None, train_reqs=None,
                 mesh="default"):
        from sagin_jax.scenario.types import compact_requests, compact_substrate
        from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
        from sagin_jax.devices.seed_axis import seed_keys, take_runs
        from sagin_jax.devices.sharding import default_mesh
        from sagin_jax.training.run import (grid_programs, population_epoch_program,
                                            population_runs)
        self.tcfg, self.seeds, self.n_slots = tcfg, list(seeds), n_slots
        # the run axis (seeds x slots) is sharded over every device (``--host-devices``); each
        # run is computed alone, so the trials' numbers do not depend on the device count
        self.mesh = default_mesh() if mesh == "default" else mesh
        subs = make_substrates(cfg, self.seeds) if subs is None else subs
        train_reqs = make_requests(cfg, self.seeds, "train") if train_reqs is None else train_reqs
        self.max_active = table_size(train_reqs)
        _, seed_of, self.slot_of = population_runs(len(self.seeds), n_slots, self.mesh)
        self.slot_of = np.asarray(self.slot_of)
        self.keys, self.subs, self.reqs = take_runs(
            (seed_keys(self.seeds), compact_substrate(subs), compact_requests(train_reqs)),
            seed_of, self.mesh)
        self.init, _ = grid_programs(tcfg, train_reqs.n_requests, self.max_active, None,
                                     self.mesh)
        self.epoch = population_epoch_program(tcfg, train_reqs.n_requests, self.max_active,
                                              None, self.mesh)
        self._take_runs = take_runs

    def start(self, hypers: Hyper):
        """Carry for ``hypers`` (f32[n_slots] leaves)."""
        return self.init(self.keys, self._take_runs(hypers, self.slot_of, self.mesh), self.subs)

    def refill(self, carry, slots, hypers: Hyper):
        """``carry`` with the runs of ``slots`` (slot indices) re-initialised for ``hypers``
        (f32[n_slots] leaves; only the rows of ``slots`` are used). No new compile."""
        mask = np.isin(self.slot_of, np.asarray(list(slots), np.int64))
        return _select_runs(mask, self.start(hypers), carry)

    def step(self, carry, live_slots=None):
        """One epoch of every slot in ``live_slots`` (slot indices; default all), the others
        idle at no cost on a CPU; -> (carry, metrics of the last batch {ar, acr, rc}:
        f64[S, n_slots], 0 for idle slots)."""
        live = (np.ones(len(self.slot_of), bool) if live_slots is None
                else np.isin(self.slot_of, np.asarray(list(live_slots), np.int64)))
        carry, curve = self.epoch(carry, self.subs, self.reqs,
                                  self._take_runs(live, np.arange(len(live)), self.mesh))
        n_s = len(self.seeds)
        last = {k: np.asarray(getattr(curve, k))[: n_s * self.n_slots, -1]
                .astype(np.float64).reshape(n_s, self.n_slots) for k in ("ar", "acr", "rc")}
        return carry, last

    # a checkpoint of the carry (host numpy; PRNG keys as their key data)
    def save(self, carry, path: Path, **meta) -> None:
        import jax
        leaves = jax.tree_util.tree_leaves(carry)
        arrays = {f"leaf_{i}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
                  for i, x in enumerate(leaves)}
        meta = {k: np.asarray(v) for k, v in meta.items()}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, n_slots=self.n_slots, seeds=np.asarray(self.seeds), **meta, **arrays)
        os.replace(tmp, path)  # atomic: a checkpoint is either the old one or the new one

    def load(self, path: Path):
        """-> (carry, meta dict) of a checkpoint written by ``save`` for this population."""
        import jax
        with np.load(path) as z:
            if int(z["n_slots"]) != self.n_slots or list(z["seeds"]) != self.seeds:
                raise ValueError(f"{path}: checkpoint of another population (slots "
                                 f"{int(z['n_slots'])}, seeds {list(z['seeds'])}); expected "
                                 f"{self.n_slots} slots, seeds {self.seeds}")
            data = {k: z[k] for k in z.files}
        template = self.start(Hyper.stack([Hyper.from_config(self.tcfg, xp=np)] * self.n_slots))
        leaves, treedef = jax.tree_util.tree_flatten(template)
        new = [jax.random.wrap_key_data(data[f"leaf_{i}"], impl="threefry2x32") if _is_key(x)
               else data[f"leaf_{i}"] for i, x in enumerate(leaves)]
        meta = {k: v for k, v in data.items() if not k.startswith("leaf_")}
        carry = jax.tree_util.tree_unflatten(treedef, new)
        # placed as ``start`` places a carry (on the mesh when there is one): no new compile
        return self._take_runs(carry, np.arange(len(self.slot_of)), self.mesh), meta


def _is_key(x) -> bool:
    import jax
    return jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key)


def _select_runs_impl(mask, new, old):
    import jax
    import jax.numpy as jnp

    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        if _is_key(a):
            return jax.random.wrap_key_data(
                jnp.where(m[..., None], jax.random.key_data(a), jax.random.key_data(b)),
                impl="threefry2x32")
        return jnp.where(m, a, b)
    return jax.tree_util.tree_map(pick, new, old)


_SELECT = None


def _select_runs(mask, new, old):
    """Rows of ``new`` where ``mask`` (bool[runs]), else of ``old``: one compiled program."""
    global _SELECT
    if _SELECT is None:
        import jax
        _SELECT = jax.jit(_select_runs_impl, donate_argnums=(2,))
    return _SELECT(mask, new, old)


def validation_objective(last: dict, ar_scale: float) -> np.ndarray:
    """f64[n_slots]: the seed mean of O = AR/ar_scale + R/C + ACR (eq. 14, unit weights) at the
    end of the epoch's last batch, on the training requests. Fixed weights, so a trial cannot
    raise its score by reweighting its own reward."""
    return (last["ar"] / ar_scale + last["rc"] + last["acr"]).mean(axis=0)


class _DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) back until the block ends, so the study database and the population
    checkpoint are written together (only in the main thread; elsewhere a no-op)."""

    def __enter__(self):
        import signal
        import threading
        self.got, self.old = None, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda s, f: setattr(self, "got", (s, f)))
        return self

    def __exit__(self, *exc):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if self.got is not None:
                raise KeyboardInterrupt
        return False


def run_study(sw: dict, algo: str, out: Path, budget: tuple[str, float], resume: bool,
              progress: bool = True, population: Population | None = None) -> "Any":
    """Run (or continue) the Optuna study of ``algo``; returns the study.

    The population of ``sw["batch"]`` slots is kept full. It trains one epoch at a time (a
    *tick*); after each tick every live trial reports its validation objective for ITS OWN epoch
    (step e = its e-th epoch), and a trial that the pruner stops or that has finished all its
    epochs is told at once and frees its slot. Then every free slot, in slot order, gets a new
    trial (``study.ask``) while the budget allows, re-initialised in place (``Population.refill``,
    no recompile); the other slots go on. When the budget is spent, free slots idle (masked)
    until the last live trial ends.

    Determinism: the sampler is re-created before every ask, seeded from (sweep seed, trial
    number), and trials are reported, told and asked in slot order at each tick, so the same
    sweep file + seed give the same trials. After each tick the live slots (trial numbers,
    epochs, the training carry) are checkpointed to ``<algo>_population.npz`` next to
    ``study.db``, with Ctrl-C held back while the database and the checkpoint are written; a
    sweep interrupted and continued with ``--resume`` therefore asks and scores the same trials
    as an uninterrupted one. (After a hard kill inside that short write window, trials already
    told are kept and not told again, and trials asked but not yet checkpointed are reused in
    order; only a kill between one trial's report and its tell can change that trial's pruning
    decision, as the pruner records its rung when asked.) Raising the
    budget of a FINISHED study asks new trials after the old ones, which is not the same as one
    sweep with the larger budget (there the slots would have been refilled earlier).
    """
    import optuna
    from optuna.trial import TrialState

    from sagin_jax.experiments.study_storage import MirroredStorage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tcfg = TrainConfig.from_dict({**sw["train"], "algo": algo})
    space = sw["rlvne_space"] if algo == "rlvne" else sw["space"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / 'study.db'}"
    name = f"{sw['name']}-{algo}"
    exists = name in optuna.study.get_all_study_names(storage) if (out / "study.db").exists() \
        else False
    if exists and not resume:
        raise ValueError(f"{out / 'study.db'} already holds study {name!r}: pass --resume to "
                         "continue it or choose another --out")
    # the database holds the study; its trials are read from an in-memory mirror (this process
    # is the study's only writer): Optuna's own SQLite cache re-reads every running trial
    study = optuna.create_study(study_name=name, storage=MirroredStorage(storage),
                                direction="maximize",
                                pruner=make_pruner(sw["pruner"], tcfg.epochs),
                                load_if_exists=True)
    pop = population or Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"])
    n_slots = pop.n_slots
    ckpt = out / f"{algo}_population.npz"
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    slot_trial: list = [None] * n_slots  # optuna Trial per slot, None = free
    slot_epoch = [0] * n_slots  # epochs the slot's trial has trained
    carry = None
    if exists and ckpt.exists():
        carry, meta = pop.load(ckpt)
        for i, (num, ep) in enumerate(zip(meta["trial"].tolist(), meta["epoch"].tolist())):
            if num >= 0:
                slot_trial[i] = optuna.trial.Trial(study, by_number[num]._trial_id)
                slot_epoch[i] = ep
    held = {t.number for t in slot_trial if t is not None}
    # the database as the checkpoint's slots left it (a replayed tick after a hard kill skips
    # what was already written); kept on the host so a tick reads the database only to ask
    told = {n for n in held if by_number[n].state != TrialState.RUNNING}
    reported = {(n, e) for n in held for e in by_number[n].intermediate_values}
    # asked after the last checkpoint (a hard kill in the write window): reused as the next asks
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.number not in held]
    kind, amount = budget
    n_grid = (math.prod(len(s["choices"]) for s in space.values())
              if sw["sampler"] == "grid" else math.inf)
    t_start = time.perf_counter()

    n_trials = len(by_number)  # every trial ever asked (the next trial's number)
    n_used = sum(t.state != TrialState.FAIL for t in by_number.values())  # counts to the budget

    def may_ask() -> bool:
        if orphans:
            return True
        if n_used >= n_grid:
            return False
        if kind == "trials":
            return n_used < int(amount)
        return time.perf_counter() - t_start < amount

    def ask():
        nonlocal n_trials, n_used
        number = orphans[0].number if orphans else n_trials
        study.sampler = make_sampler(sw["sampler"], sw["seed"] * 1_000_003 + number, space)
        if orphans:
            return optuna.trial.Trial(study, orphans.pop(0)._trial_id)
        n_trials, n_used = n_trials + 1, n_used + 1
        return study.ask()

    bar = None
    if progress:
        from tqdm.auto import tqdm
        n0 = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)))
        bar = tqdm(total=int(amount) if kind == "trials" else None, initial=n0,
                   desc=f"sweep {algo}", unit="trial")
    slot_hyper = [hyper_of(tcfg, {})] * n_slots

    def fill() -> None:
        nonlocal carry
        new = []
        for i in range(n_slots):
            if slot_trial[i] is None and may_ask():
                t = ask()
                slot_trial[i], slot_epoch[i] = t, 0
                slot_hyper[i] = hyper_of(tcfg, suggest(t, space))
                new.append(i)
        if new:
            hypers = Hyper.stack(slot_hyper)
            carry = pop.start(hypers) if carry is None else pop.refill(carry, new, hypers)

    def finish(i: int, state, value=None) -> None:
        study.tell(slot_trial[i], value, state=state)
        slot_trial[i] = None
        if bar is not None:
            bar.update(1)

    with _DeferInterrupt():
        fill()
        if carry is not None:
            pop.save(carry, ckpt, trial=[-1 if t is None else t.number for t in slot_trial],
                     epoch=slot_epoch)
    while any(t is not None for t in slot_trial):
        carry, last = pop.step(carry, [i for i, t in enumerate(slot_trial) if t is not None])
        obj = validation_objective(last, sw["objective_ar_scale"])
        with _DeferInterrupt():
            for i, t in enumerate(slot_trial):
                if t is None:
                    continue
                e = slot_epoch[i]
                slot_epoch[i] = e + 1
                v = float(obj[i])
                if t.number in told:  # told before a hard kill: a replayed tick
                    slot_trial[i] = None
                    continue
                if (t.number, e) not in reported:
                    t.report(v, e)
                if e + 1 >= tcfg.epochs:
                    finish(i, *((TrialState.COMPLETE, v) if math.isfinite(v)
                                else (TrialState.FAIL, None)))
                elif t.should_prune():
                    finish(i, TrialState.PRUNED)
            fill()
            pop.save(carry, ckpt, trial=[-1 if t is None else t.number for t in slot_trial],
                     epoch=slot_epoch)
        if bar is not None:
            try:
                bar.set_postfix(best=f"{study.best_value:.4f}")
            except ValueError:
                pass
    if bar is not None:
        bar.close()
    ckpt.unlink(missing_ok=True)
    return study

# --- outputs --------------------------------------------------------------------------------
def write_trials_csv(studies: dict, path: Path, spaces: dict) -> None:
    """Every trial of every algorithm's study, one CSV: algo, number, state, the searched
    hyperparameters (blank where that algorithm does not search one), final value and the
    intermediate value of each epoch (blank after a trial was pruned)."""
    rows = {a: st.get_trials(deepcopy=False) for a, st in studies.items()}
    n_steps = max((max(t.intermediate_values, default=-1) + 1
                   for ts in rows.values() for t in ts), default=0)
    names = sorted(set().union(*(spaces[a] for a in studies)))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "number", "state", *names, "value",
                    *[f"epoch_{e}" for e in range(n_steps)]])
        for algo, trials in rows.items():
            for t in trials:
                w.writerow([algo, t.number, t.state.name, *[t.params.get(p, "") for p in names],
                            "" if t.value is None else repr(t.value),
                            *[repr(t.intermediate_values[e]) if e in t.intermediate_values
                              else "" for e in range(n_steps)]])


def plot_study(study, out: Path, algo: str, space: dict) -> list[Path]:
    """optimisation history and objective vs each hyperparameter (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values]
    val = lambda t: t.value if t.value is not None else t.intermediate_values[  # noqa: E731
        max(t.intermediate_values)]
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [t.number for t in done]
    ys = [val(t) for t in done]
    pruned = [t.state == TrialState.PRUNED for t in done]
    ax.scatter([x for x, p in zip(xs, pruned) if not p], [y for y, p in zip(ys, pruned) if not p],
               s=10, label="complete")
    ax.scatter([x for x, p in zip(xs, pruned) if p], [y for y, p in zip(ys, pruned) if p], s=10,
               marker="x", alpha=0.5, label="pruned (last reported)")
    comp = sorted((t.number, t.value) for t in done if t.state == TrialState.COMPLETE)
    if comp:
        ax.step([c[0] for c in comp], np.maximum.accumulate([c[1] for c in comp]), where="post",
                color="k", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation objective O")
    ax.set_title(f"{algo}: optimisation history")
    ax.legend(fontsize=8)
    p = out / f"{algo}_history.png"
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    names = sorted(space)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, n in zip(axes[0], names):
        ax.scatter([t.params.get(n, np.nan) for t in done], ys, s=8,
                   c=["tab:red" if p else "tab:blue" for p in pruned])
        if space[n].get("log"):
            ax.set_xscale("log")
        ax.set_xlabel(n)
    axes[0][0].set_ylabel("validation objective O")
    p = out / f"{algo}_params.png"
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def best_train_config(sw: dict, algo: str, best_params: dict) -> TrainConfig:
    """The static config of the sweep with the best trial's values as the traced defaults."""
    over = {k: v for k, v in best_params.items() if k != "failed_weight"}
    if "failed_reward" in best_params:
        over["failed_reward"] = best_params["failed_reward"]
    if best_params.get("failed_weight", 1.0) == 0.0:
        over["failed_reward"] = None
    return TrainConfig.from_dict({**sw["train"], **over, "algo": algo})


def paired_gain(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-seed relative difference a/b - 1 on the same seeds: mean and 95% half-width."""
    from sagin_jax.experiments.stats import mean_ci, relative_gain
    d = relative_gain(a, b)
    m, h = mean_ci(d)
    return {"mean": float(m), "ci95": float(h), "n_seeds": int(d.size)}


def test_comparison(sw: dict, tcfgs: dict, progress: bool = False) -> dict:
    """Retrain each algorithm's best config on the TEST seeds and evaluate it, with NRMVNE and
    GRC, on those seeds' test requests; -> {"final": {algo: {AR, ACR, RC: per-seed list}},
    "gain_vs": {algo: {base: {metric: paired_gain}}}}."""
    from sagin_jax.policies.baselines import BASELINES
    from sagin_jax.simulation.batch import (make_requests, make_substrates, simulate_seeds,
                                            table_size)
    from sagin_jax.devices.sharding import default_mesh
    from sagin_jax.training.run import evaluate_grid, train_population
    cfg, seeds = sw["scenario"], sw["test_seeds"]
    mesh = default_mesh()
    subs = make_substrates(cfg, seeds)
    train_reqs, test_reqs = make_requests(cfg, seeds, "train"), make_requests(cfg, seeds, "test")
    table = table_size(train_reqs, test_reqs)
    final = {}
    for algo, tcfg in tcfgs.items():
        res = train_population(cfg, tcfg, seeds, Hyper.stack([Hyper.from_config(tcfg, xp=np)]),
                               progress=progress, subs=subs, train_reqs=train_reqs,
                               max_active=table, mesh=mesh)
        o = evaluate_grid(tcfg, res.params, subs, test_reqs, seeds, max_active=table, mesh=mesh)
        m = o.metrics
        final[algo] = {"AR": np.asarray(m.ar)[:, 0, -1], "ACR": np.asarray(m.acr)[:, 0, -1],
                       "RC": np.asarray(m.rc)[:, 0, -1]}
    for base in ("nrmvne", "grc"):
        _, o = simulate_seeds(BASELINES[base], None, seeds, subs, test_reqs, max_active=table,
                              mesh=mesh)
        m = o.metrics
        final[base] = {"AR": np.asarray(m.ar)[:, -1], "ACR": np.asarray(m.acr)[:, -1],
                       "RC": np.asarray(m.rc)[:, -1]}
    gains = {a: {b: {k: paired_gain(final[a][k], final[b][k]) for k in ("AR", "ACR", "RC")}
                 for b in final if b != a} for a in tcfgs}
    return {"seeds": seeds,
            "final": {a: {k: [float(x) for x in v] for k, v in d.items()} for a, d in final.items()},
            "gain_vs": gains}


def claims_row(summary: dict) -> str:
    """The claims-table row "DDRL-NRA, best found configuration vs NRMVNE" (paper: +18.15% AR,
    +8.35% ACR) for results/README.md, with the paired 95% intervals on the test seeds and the
    reproduction's verdict rule (``report.gain_verdict``: an interval wider than the paper's
    effect is "inconclusive", never "agrees")."""
    g = summary["comparison"]["gain_vs"]["ddrl-nra"]["nrmvne"]
    n = g["AR"]["n_seeds"]
    fmt = lambda d: f"{100 * d['mean']:+.2f}% ± {100 * d['ci95']:.2f}%"  # noqa: E731
    from sagin_jax.experiments.report import PAPER_GAINS, gain_verdict
    verdict = "; ".join(f"{k}: " + gain_verdict({"mean": g[k]["mean"], "ci": g[k]["ci95"]}, claim)
                        for k, claim in PAPER_GAINS.items())
    paper = ", ".join(f"+{100 * c:.2f}% {k}" for k, c in PAPER_GAINS.items())
    return (f"| DDRL-NRA, best found configuration vs NRMVNE | {paper} | "
            f"AR {fmt(g['AR'])}, ACR {fmt(g['ACR'])} ({n} test seeds, paired 95% CI; "
            f"{summary['n_trials']['ddrl-nra']} trials) | {verdict} |")


def readme_section(summary: dict) -> str:
    """The sweep's README section (markdown), from ``summary`` (``run_sweep``)."""
    n_seeds = len(summary["train_seeds"])
    lines = [f"## Hyperparameter sweep `{summary['name']}`", "",
             f"Search on {n_seeds} training seeds (validation objective O = AR/ar_scale + R/C + "
             f"ACR with unit weights, on the training requests, seed mean at the end of each "
             f"epoch), {summary['slots']} trials trained at once as one compiled program, a "
             f"pruned or finished trial's slot refilled at once; best configuration retrained "
             f"and evaluated on {len(summary['test_seeds'])} separate test seeds "
             f"{_seed_range(summary['test_seeds'])}. Files: `trials.csv` (every trial), "
             f"`best.json` (`sagin-jax train --config best.json`), `study.db` (the Optuna "
             f"study), `summary.json`.", ""]
    for algo, b in summary["best"].items():
        st = summary["states"][algo]
        lines.append(f"- **{algo}**: {summary['n_trials'][algo]} trials ("
                     + ", ".join(f"{n} {k.lower()}" for k, n in sorted(st.items()))
                     + f"), search {summary['search_wall_s'][algo]:.0f} s wall; best "
                     f"validation O = {b['value']:.4f} (trial {b['number']}) with "
                     + ", ".join(f"{k}={v:.4g}" for k, v in b["params"].items()))
    if "comparison" in summary:
        lines += ["", "Test seeds, paired 95% intervals of the per-seed relative difference "
                  "(final running values after the test requests):", "",
                  "| agent (best config) | vs | AR | ACR | R/C |", "|---|---|---|---|---|"]
        for a, per in summary["comparison"]["gain_vs"].items():
            for b, g in per.items():
                cells = [f"{100 * g[k]['mean']:+.2f}% ± {100 * g[k]['ci95']:.2f}%"
                         for k in ("AR", "ACR", "RC")]
                lines.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
        lines += ["", "Claims-table row:", "", claims_row(summary) if "ddrl-nra" in
                  summary["comparison"]["gain_vs"] else "(DDRL-NRA not searched)"]
    else:
        lines += ["", "(no test-seed comparison: run without --no-compare)"]
    if "wall_s" in summary:
        lines += ["", f"Whole sweep (every search and the comparison): "
                      f"{summary['wall_s']:.0f} s wall."]
    lines.append("")
    for algo in summary["best"]:
        lines.append(f"![{algo} history]({algo}_history.png) ![{algo} params]({algo}_params.png)")
    return "\n".join(lines) + "\n"


def _seed_range(seeds) -> str:
    s = list(seeds)
    if s and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}..{s[-1]}"
    return str(s)


def run_sweep(config: str, out: str | None = None, budget: str | None = None,
              resume: bool = False, progress: bool = True, compare: bool = True) -> dict:
    """The whole ``sagin-jax sweep``: one study per algorithm, then the test-seed comparison."""
    sw = load_sweep(config)
    bud = parse_budget(budget) if budget is not None else sw["budget"]
    out_dir = Path(out) if out else Path("results/sweeps") / sw["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    best, tcfgs, n_trials, walls, studies, states = {}, {}, {}, {}, {}, {}
    spaces = {a: sw["rlvne_space"] if a == "rlvne" else sw["space"] for a in sw["algos"]}
    for algo in sw["algos"]:
        ta = time.perf_counter()
        study = run_study(sw, algo, out_dir, bud, resume, progress)
        walls[algo] = time.perf_counter() - ta
        studies[algo] = study
        plot_study(study, out_dir, algo, spaces[algo])
        n_trials[algo] = len(study.trials)
        states[algo] = {}
        for t in study.trials:
            states[algo][t.state.name] = states[algo].get(t.state.name, 0) + 1
        bt = study.best_trial
        best[algo] = {"number": bt.number, "value": bt.value, "params": dict(bt.params)}
        tcfgs[algo] = best_train_config(sw, algo, bt.params)
    write_trials_csv(studies, out_dir / "trials.csv", spaces)
    # best.json: loadable by `sagin-jax train --config` (scenario + train sections)
    main = "ddrl-nra" if "ddrl-nra" in tcfgs else sw["algos"][0]
    with open(out_dir / "best.json", "w") as f:
        json.dump({"scenario": sw["scenario"].to_dict(), "train": tcfgs[main].to_dict(),
                   "best_by_algo": {a: t.to_dict() for a, t in tcfgs.items()}}, f, indent=2)
    summary = {"name": sw["name"], "train_seeds": sw["train_seeds"],
               "test_seeds": sw["test_seeds"], "slots": sw["batch"], "best": best,
               "n_trials": n_trials, "states": states, "search_wall_s": walls}
    if compare:
        tc = time.perf_counter()
        summary["comparison"] = test_comparison(sw, tcfgs, progress)
        summary["compare_wall_s"] = time.perf_counter() - tc
    summary["wall_s"] = time.perf_counter() - t0
    (out_dir / "README.md").write_text(readme_section(summary))
    with open(out_dir / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def train_section(path: str, tcfg: TrainConfig) -> TrainConfig:
    """The ``train`` section of a JSON file (a sweep's best.json), or ``tcfg`` if it has none;
    its algo must match ``tcfg.algo`` (the one asked for on the command line)."""
    from sagin_jax.files import read_json
    doc = read_json(path)
    sec = doc.get("train") if isinstance(doc, dict) else None
    if sec is None:
        return tcfg
    if not isinstance(sec, dict):
        raise ValueError(f"{path}: field 'train' must be a JSON object")
    if isinstance(doc.get("best_by_algo"), dict) and tcfg.algo in doc["best_by_algo"]:
        sec = doc["best_by_algo"][tcfg.algo]
    try:
        out = TrainConfig.from_dict({**sec, "algo": sec.get("algo", tcfg.algo)})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: field 'train': {e}") from None
    if out.algo != tcfg.algo:
        raise ValueError(f"{path}: field 'train' is for algo {out.algo!r}, not --algo {tcfg.algo}")
    return out


def cmd_sweep(args) -> int:
    s = run_sweep(args.config, out=args.out, budget=args.budget, resume=args.resume,
                  progress=not args.quiet, compare=not args.no_compare)
    for algo, b in s["best"].items():
        print(f"{algo}: {s['n_trials'][algo]} trials, best validation O={b['value']:.4f} "
              f"{b['params']}")
    if "comparison" in s and "ddrl-nra" in s["comparison"]["gain_vs"]:
        print(claims_row(s))
    return 0


def add_sweep_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="hyperparameter search (Optuna) of DDRL-NRA / RLVNE, a batch of trials "
                      "trained as one compiled program",
        description="Search the traced hyperparameters (lr, init_scale, ar_scale, w_ar, w_rc, "
                    "w_acr, failed_reward, failed_weight, central_strength, baseline_weight, "
                    "baseline_decay, reward_norm, entropy_coef, max_grad_norm) given in the "
                    "sweep file; the static ones (algo, epochs, batch_size, "
                    "central_server_every, reward, batch_reduce) are fixed per sweep in its "
                    "'train' section. Validation on the training seeds; the best configuration "
                    "is retrained and compared on separate test seeds.")
    p.add_argument("--config", required=True, metavar="SWEEP_JSON",
                   help="sweep file (e.g. experiments/sweeps/ddrl_paper.json)")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/sweeps/NAME)")
    p.add_argument("--budget", help="trials (N) or wall seconds ('300s') per algorithm; "
                                    "default: the file's 'budget'")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in DIR/study.db (finished trials are kept)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the test-seed retraining and comparison")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_sweep)


# --- bench ----------------------------------------------------------------------------------
def bench_sweep(cfg, n_configs: int, seeds, epochs: int, batch_size: int | None = None,
                slots: int = 8, seed: int = 0) -> dict:
    """Wall time of ``n_configs`` random-search trials x ``seeds`` trained (a) as a population of
    ``slots`` slots (one compiled program, successive-halving pruning, a pruned or finished
    trial's slot refilled at once: ``run_study``) and (b) one trial at a time through the
    ordinary single-run trainer, the way a user drives Optuna by hand: a fresh ``train_grid``
    call per trial with that trial's learning rate, every epoch, no pruning. Both include their
    compile (each starts from a cold in-process cache of its programs; the XLA persistent cache
    is not used). Same learning rates in both (the population's trials, log-uniform in
    [1e-3, 1]).

    -> population_s, one_at_a_time_s, ratio (= one_at_a_time_s / population_s), the trial-epochs
    the population trained vs the n_configs x epochs of the baseline (``epochs_saved``: the
    fraction pruning saved), the slot-epochs it computed (ticks x slots, idle slots included)
    and the wall time of its epoch calls (``population_epochs_s``, the first one's compile
    included; the rest of ``population_s`` is the other compiles, Optuna and its SQLite study,
    and the checkpoints). The baseline pays no Optuna cost at all."""
    import tempfile

    from sagin_jax.simulation.batch import make_requests, make_substrates
    from sagin_jax.training.run import _grid_programs, train_grid
    seeds = list(seeds)
    bs = batch_size or max(d for d in range(1, min(cfg.n_train, 100) + 1) if cfg.n_train % d == 0)
    train = {"epochs": epochs, "batch_size": bs}
    sw = {"name": "bench", "scenario": cfg, "train": train, "algos": ["ddrl-nra"],
          "space": {"lr": {"low": 1e-3, "high": 1.0, "log": True}}, "batch": slots,
          "train_seeds": seeds, "test_seeds": [], "sampler": "random",
          "pruner": "successive_halving", "seed": seed, "objective_ar_scale": 20000.0}
    sw["rlvne_space"] = sw["space"]
    tcfg = TrainConfig.from_dict({**train, "algo": "ddrl-nra"})
    subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "train")
    ticks, tick_s = [0], [0.0]

    class Counted(Population):
        def step(self, carry, live_slots=None):
            t = time.perf_counter()
            out = super().step(carry, live_slots)  # (host arrays: the epoch has finished)
            ticks[0] += 1
            tick_s[0] += time.perf_counter() - t
            return out

    _grid_programs.cache_clear()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        pop = Counted(cfg, tcfg, seeds, slots, subs, reqs)
        study = run_study(sw, "ddrl-nra", Path(d), ("trials", n_configs), False, False, pop)
        pop_s = time.perf_counter() - t0
        lrs = [t.params["lr"] for t in study.trials]
        n_pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        trial_epochs = sum(len(t.intermediate_values) for t in study.trials)
    _grid_programs.cache_clear()  # the baseline compiles its own program, as a user's would
    t0 = time.perf_counter()
    for lr in lrs:
        train_grid(cfg, tcfg, seeds, [lr], progress=False, subs=subs, train_reqs=reqs,
                   mesh=pop.mesh)
    one_s = time.perf_counter() - t0
    return {"n_configs": n_configs, "n_seeds": len(seeds), "epochs": epochs,
            "n_train": cfg.n_train, "slots": slots, "population_s": pop_s,
            "one_at_a_time_s": one_s, "ratio": one_s / pop_s, "pruned": n_pruned,
            "trial_epochs": trial_epochs, "baseline_trial_epochs": n_configs * epochs,
            "epochs_saved": 1.0 - trial_epochs / (n_configs * epochs),
            "slot_epochs": ticks[0] * slots, "population_epochs_s": tick_s[0]}


def main_bench(argv=None) -> int:
    """``python -m sagin_jax.experiments.sweep [N_CONFIGS] [SLOTS]``: the scaled-down bench
    (N_CONFIGS=32 configurations x 2 seeds x 3 epochs x 200 requests, SLOTS=8, a small
    scenario)."""
    import sys

    from sagin_jax.config import ScenarioConfig
    argv = sys.argv[1:] if argv is None else argv
    n_cfg = int(argv[0]) if len(argv) > 0 else 32
    slots = int(argv[1]) if len(argv) > 1 else 8
    cfg = ScenarioConfig(n_space=4, n_air=6, n_ground=10, n_train=200, n_test=100)
    r = bench_sweep(cfg, n_cfg, [0, 1], 3, batch_size=20, slots=slots)
    print(json.dumps(r, indent=2))
    print(f"population ({r['slots']} slots, pruning, refill): {r['population_s']:.2f} s; "
          f"one at a time (train_grid per trial, no pruning): {r['one_at_a_time_s']:.2f} s; "
          f"ratio {r['ratio']:.2f}x; trial-epochs {r['trial_epochs']} of "
          f"{r['baseline_trial_epochs']} ({100 * r['epochs_saved']:.0f}% saved by pruning); "
          f"population epoch calls {r['population_epochs_s']:.2f} s of its wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
