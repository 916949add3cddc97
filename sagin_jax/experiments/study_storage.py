"""The Optuna storage of a sweep: the study lives in SQLite, its trials are read from memory.

A sweep is the only writer of its study while it runs, so nothing another process writes has to
be read back. Optuna's default SQLite storage (``_CachedStorage`` over ``RDBStorage``) caches
only *finished* trials: every read of the study (each ``suggest_*`` of the TPE sampler, each
pruner decision, each ``ask``) fetched every running trial again through SQLAlchemy, about 50 ms
for the 32 running trials of a population. In the 256-trial paper sweep that bookkeeping took
longer than the training it scheduled.

``MirroredStorage`` writes every change to the database first (same transactions, same
durability: an interrupted sweep resumes from what SQLite holds) and then to an in-memory copy
of the study's trials, loaded from the database once, from which every read is served. A trial
that finishes is read back from the database, so the copy holds exactly what SQLite holds.
"""
from __future__ import annotations

import copy
from typing import Any, Container, Sequence

from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState


class MirroredStorage(BaseStorage):
    """An ``RDBStorage`` (``url``, e.g. ``sqlite:///study.db``) with its trials mirrored in
    memory. Only for a study that no other process writes while this one runs."""

    def __init__(self, url: str) -> None:
        self._db = RDBStorage(url)
        if self._db.engine.dialect.name == "sqlite":
            # hand each commit to the OS without waiting for the disk: as safe against a crash or
            # a kill of the sweep as before (what SQLite was handed is written), not against a
            # power cut of the machine; the population checkpoint beside it is no safer
            from sqlalchemy import event
            event.listen(self._db.engine, "connect",
                         lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
            self._db.engine.dispose()  # connections opened from now on get the pragma
        self._trials: dict[int, dict[int, FrozenTrial]] = {}  # study id -> number -> trial
        self._where: dict[int, tuple[int, int]] = {}  # trial id -> (study id, number)

    # --- the mirror ---------------------------------------------------------------------------
    def _study_trials(self, study_id: int) -> dict[int, FrozenTrial]:
        if study_id not in self._trials:  # loaded once: everything the database holds
            self._trials[study_id] = {}
            for t in self._db.get_all_trials(study_id, deepcopy=False):
                self._put(study_id, t)
        return self._trials[study_id]

    def _put(self, study_id: int, trial: FrozenTrial) -> None:
        self._trials.setdefault(study_id, {})[trial.number] = trial
        self._where[trial._trial_id] = (study_id, trial.number)

    def _cached(self, trial_id: int) -> FrozenTrial | None:
        if trial_id not in self._where:
            return None
        study_id, number = self._where[trial_id]
        return self._trials[study_id][number]

    def _replace(self, trial_id: int, **fields) -> None:
        """Swap the mirrored trial for an updated copy (never mutate one a caller may hold)."""
        old = self._cached(trial_id)
        if old is None:
            return
        new = copy.copy(old)
        for name, value in fields.items():
            setattr(new, name, value)
        self._put(self._where[trial_id][0], new)

    def _reread(self, trial_id: int) -> None:
        if trial_id in self._where:
            self._put(self._where[trial_id][0], self._db.get_trial(trial_id))

    # --- studies: the database's -------------------------------------------------------------
    def create_new_study(self, directions, study_name: str | None = None) -> int:
        return self._db.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._db.delete_study(study_id)
        for t in self._trials.pop(study_id, {}).values():
            self._where.pop(t._trial_id, None)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._db.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._db.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._db.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._db.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int):
        return self._db.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._db.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._db.get_study_system_attrs(study_id)

    def get_all_studies(self):
        return self._db.get_all_studies()

    # --- trials: written to the database, then to the mirror --------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._study_trials(study_id)
        trial_id = self._db.create_new_trial(study_id, template_trial)
        self._put(study_id, self._db.get_trial(trial_id))
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution) -> None:
        self._db.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        old = self._cached(trial_id)
        if old is not None:
            self._replace(trial_id,
                          params={**old.params,
                                  param_name: distribution.to_external_repr(param_value_internal)},
                          distributions={**old.distributions, param_name: distribution})

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        ok = self._db.set_trial_state_values(trial_id, state, values)
        if ok:
            self._reread(trial_id)  # state, values and timestamps exactly as stored
        return ok

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._db.set_trial_intermediate_value(trial_id, step, intermediate_value)
        old = self._cached(trial_id)
        if old is not None:
            self._replace(trial_id, intermediate_values={**old.intermediate_values,
                                                         step: intermediate_value})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._db.set_trial_user_attr(trial_id, key, value)
        old = self._cached(trial_id)
        if old is not None:
            self._replace(trial_id, user_attrs={**old.user_attrs, key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._db.set_trial_system_attr(trial_id, key, value)
        old = self._cached(trial_id)
        if old is not None:
            self._replace(trial_id, system_attrs={**old.system_attrs, key: value})

    # --- trials: read from the mirror -------------------------------------------------------
    def get_trial(self, trial_id: int) -> FrozenTrial:
        t = self._cached(trial_id)
        return self._db.get_trial(trial_id) if t is None else t  # not mirrored: a study not read

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = [t for _, t in sorted(self._study_trials(study_id).items())
                  if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        t = self._study_trials(study_id).get(trial_number)
        if t is None:
            return self._db.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        return t._trial_id

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self.get_trial(self._db.get_best_trial(study_id)._trial_id)

    def remove_session(self) -> None:
        self._db.remove_session()
