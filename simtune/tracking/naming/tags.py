"""Every tag key simtune writes to MLflow: MLflow's own (``mlflow.*``), which its UI reads, and
simtune's (``simtune.*``), by which runs are found again and which say what a run is.

Part of ``simtune.tracking.naming``; import the keys from here.
"""

from __future__ import annotations

# MLflow's tags, as its UI reads them.
TAG_NOTE = "mlflow.note.content"  # the run's description (markdown) in the UI
TAG_PARENT = "mlflow.parentRunId"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_USER = "mlflow.user"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_CONTEXT = "mlflow.data.context"  # a dataset input's role: source, target, selection, report
# MLflow 3.17's UI: the experiment kind (the tag; its UI follows ``?workflowType=`` first) and
# the saved views its "Share" button writes as experiment tags and opens by ``?viewStateShareKey=``.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
TAG_VIEW_PREFIX = "mlflow.sharedViewState."

# Every run simtune writes: what it is, which sweep, where its files are, what ran it.
TAG_ROLE = "simtune.role"  # sweep | trial | configuration | retrain | retrain_seed
TAG_SWEEP = "simtune.sweep"
TAG_SWEEP_DIR = "simtune.sweep_dir"
TAG_TRIAL = "simtune.trial_id"
TAG_RUN_DIR = "simtune.run_dir"
TAG_COMMAND = "simtune.command"  # the whole command line; mlflow.source.name holds only its name
TAG_GIT_REVISION = "simtune.git_revision"
TAG_PYTHON = "simtune.python"
TAG_DEVICE = "simtune.device"
TAG_VERSION = "simtune.version."  # + a package's name: its version

# A sweep's parent run.
TAG_SPACE_FILE = "simtune.space_file"
TAG_BASE_EXPERIMENT = "simtune.base_experiment"
TAG_SEARCHED = "simtune.searched"  # the searched keys, comma-separated (on trials too)
TAG_METRIC = "simtune.metric"
TAG_MODE = "simtune.mode"
TAG_VERDICT = "simtune.verdict"  # the ranking's verdict line (a retrain's: its verdicts and confirmation)
TAG_FAILED_TRIALS = "simtune.failed_trials"
TAG_BEST_SELECTION = "simtune.best_selection"
TAG_BEST_TRIAL = "simtune.best_trial_id"
TAG_BEST_RUN = "simtune.best_run_id"

# A trial's and a configuration's runs.
TAG_REPLICATE = "simtune.replicate"  # k of a trial: it trained with seed = base seed + k
TAG_RETRIES = "simtune.retries"  # how many times Tune restarted the trial
TAG_FAILURE = "simtune.failure_reason"
TAG_STOPPED = "simtune.stopped_early"  # "true" when a scheduler (ASHA) ended the trial early
TAG_PLACEMENT = "simtune.placement."  # + node, gpu_ids, cuda_visible_devices, device, ...: where a trial ran
TAG_CHECKPOINT = "simtune.checkpoint"  # the logged final model's artifact path
TAG_CONFIG = "simtune.config"  # a configuration run's swept values, "key=value, ..."
TAG_CONFIG_RANK = "simtune.config_rank"  # a configuration run's place in the sweep's ranking
TAG_TRIAL_IDS = "simtune.trial_ids"  # a configuration run's trials

# A retrain's parent run and its seed runs.
TAG_SWEEP_PARENT = "simtune.sweep_parent_run_id"
TAG_SELECTION = "simtune.selection"  # how the retrained configuration was chosen
TAG_RUNNER_UP_TRIAL = "simtune.runner_up_trial_id"
TAG_REGISTERED_MODEL = "simtune.registered_model"  # <model>@champion (version n)
TAG_CANDIDATE = "simtune.candidate"  # a seed run's configuration: best | runner_up
TAG_SEED = "simtune.seed"

# An experiment simtune created: the mlartifacts/ folder it was created under (``store.check_artifact_root``).
TAG_ARTIFACT_ROOT = "simtune.artifact_root"
