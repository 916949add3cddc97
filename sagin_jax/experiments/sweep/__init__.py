"""``sagin-jax sweep``: hyperparameter search with Optuna, a population of trials x seeds trained as
ONE compiled program per epoch.

Every trial's settings are the traced ``Hyper`` fields, so B trials x S seeds are one run axis of
the ordinary trainer (``grid_programs``): one compile for the whole sweep. Optuna's ask-and-tell
interface fills the B slots, the population trains epoch by epoch, each trial reports the mean over
its seeds of the objective O (eq. 14, unit weights, fixed ``objective_ar_scale``) at the end of
each of its epochs on the TRAINING requests of the training seeds (validation), and the pruner may
stop it. A pruned or finished trial's slot is refilled at once with a new trial. The studies live
in Optuna's journal file (or PostgreSQL / MySQL across machines), and each worker's population is
checkpointed each epoch, so ``--resume`` continues an interrupted sweep exactly and several
workers can search one study.

After the search the best setting of each algorithm is retrained on separate TEST seeds (never seen
by the search) and compared with NRMVNE and GRC (and the other searched algorithm) on the test
requests of those seeds, with paired 95% intervals of the per-seed relative differences.

Modules, in order: ``spec`` (the sweep file), ``samplers`` (sampler, pruner, a trial's
settings), ``population`` (the compiled population of slots), ``storage`` (where the studies live;
the locks on the output folder), ``study`` (the ask-and-tell loop), ``compare`` (the test-seed
comparison), ``report`` (the outputs), ``run`` (the whole command), ``command`` (its parser; light
to import), ``bench``.
"""
