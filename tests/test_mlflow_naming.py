"""Names, descriptions and the ``mlflow ui`` command users read."""

from __future__ import annotations

from pathlib import Path

from simtune.tracking import naming
from simtune.tracking.naming import (command_line, config_diff, config_label, description, experiment_name,
                                     model_name, retrain_run_name, seed_run_name, trial_run_name, ui_command,
                                     ui_lines)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_trial_names_show_the_swept_values_then_the_trial_number() -> None:
    values = {"stage1.lambda_ci": 0.01, "stage1.bank_size": 200}
    assert trial_run_name(values, "614c1_00004") == "λ_ci=0.01 w=200 · 00004"
    assert trial_run_name({"pseudo_label.quantile": 0.31234567, "pseudo_label.spatial_prior": True}, "a_00012") \
        == "q=0.3123 prior=true · 00012"
    assert trial_run_name({"model.width": 8}, "x_00001") == "width=8 · 00001"  # unknown key: its last part


def test_seed_and_retrain_names_carry_the_configuration() -> None:
    values = {"stage1.lambda_ci": 0.001, "stage1.bank_size": 1600}
    assert seed_run_name(2, values) == "seed 2 · λ_ci=0.001 w=1600"
    assert seed_run_name(0, values, "runner_up") == "seed 0 runner-up · λ_ci=0.001 w=1600"
    assert retrain_run_name(values) == "retrain · λ_ci=0.001 w=1600"
    assert config_label({}) == "" and retrain_run_name({}) == "retrain"


def test_experiment_and_model_are_named_after_the_search_space() -> None:
    assert experiment_name("search_spaces/lambda_w.yaml") == "lambda_w"
    assert model_name("lambda_w") == "simtune-lambda_w"


def test_description_lists_the_difference_from_the_base_and_links() -> None:
    diff = config_diff({"stage1.lambda_ci": 0.1, "stage1.bank_size": 50}, {"stage1.lambda_ci": 0.01,
                                                                            "stage1.bank_size": 50})
    assert diff == ["`stage1.lambda_ci`: 0.01 → 0.1"]
    text = description("Trial 00004", diff, ["[sweep](#/experiments/1/runs/abc)"])
    assert text.startswith("**Trial 00004**\n") and "- `stage1.lambda_ci`: 0.01 → 0.1" in text
    assert "Links:\n- [sweep](#/experiments/1/runs/abc)" in text


def test_commands_end_with_simtune_ui_on_the_folder_of_sweeps() -> None:
    assert ui_command("sqlite:////data/sweeps/mlflow.db") == \
        "mlflow ui --backend-store-uri sqlite:////data/sweeps/mlflow.db --port 5000"
    lines = ui_lines("sqlite:////data/sweeps/mlflow.db", "3", "r1", sweep="demo", storage="/data/sweeps")
    assert lines[-1] == f"{naming.simtune_program()} ui --storage /data/sweeps"  # the command is the last line
    assert lines[1] == ("  configurations: http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                        "&viewStateShareKey=demo")
    assert lines[2].startswith("  every trial, charted: ") and lines[2].endswith("&compareRunsMode=CHART")
    assert lines[3] == "  this run: http://127.0.0.1:5000/#/experiments/3/runs/r1?workflowType=machine_learning"
    assert ui_lines("sqlite:////my sweeps/mlflow.db")[-1].endswith("ui --storage '/my sweeps'")
    assert ui_lines("http://tracking:5000", "3")[-1].startswith("open http://tracking:5000")


def test_the_printed_simtune_runs_without_an_activated_virtualenv(tmp_path: Path) -> None:
    import shutil
    import sys

    script = Path(sys.executable).parent / "simtune"  # the console script of this environment
    on_path = shutil.which("simtune")
    expected = "simtune" if on_path and Path(on_path).resolve() == script.resolve() else str(script.resolve())
    assert naming.simtune_program(str(script)) == expected
    assert naming.simtune_program(str(tmp_path / "bin" / "simtune")) == str(tmp_path / "bin" / "simtune")
    assert naming.simtune_program("/repo/simtune/cli.py") == f"{sys.executable} -m simtune.cli"


def test_command_line_is_recorded_as_the_user_typed_it() -> None:
    assert command_line(["/venv/bin/simtune", "sweep", "search_spaces/lambda_w.yaml"]) == \
        "simtune sweep search_spaces/lambda_w.yaml"
    assert command_line(["/repo/simtune/cli.py", "retrain", "--best", "--set", "a=b c"]) == \
        "simtune retrain --best --set 'a=b c'"


def test_miou_curve_marks_the_end_of_stage_1_and_draws_stage_2_as_a_line() -> None:
    from matplotlib.lines import Line2D

    from simtune.figures import miou_curve

    def records(steps: list[int]) -> list[dict[str, float]]:
        return [{"step": s, "val/miou": float(s), "report/miou": s + 1.0} for s in steps]

    fig = miou_curve({"stage1": records([150, 300]), "stage2": records([375, 450])}, stage1_end=300)
    lines = fig.axes[0].get_lines()
    border = [ln for ln in lines if list(ln.get_xdata()) == [300, 300]]
    assert len(border) == 1  # at the end of stage 1, not at the first stage-2 step - 0.5
    stage2 = [ln for ln in lines if "stage 2" in str(ln.get_label())]
    assert len(stage2) == 2 and all(isinstance(ln, Line2D) and ln.get_linestyle() == "-" and
                                    list(ln.get_xdata()) == [375, 450] for ln in stage2)
    # Without the config, the last stage-1 evaluation (a stage always evaluates at its end) marks it.
    fig = miou_curve({"stage1": records([150, 300]), "stage2": records([450])})
    assert [list(ln.get_xdata()) for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"] == [[300, 300]]


def test_links_open_the_training_view_and_a_sweep_link_its_saved_views() -> None:
    url = naming.ui_url("sqlite:////s/mlflow.db", "3", "r1", sweep="lambda_w-2026 12")
    assert url == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                   "&viewStateShareKey=lambda_w-2026_12")
    assert naming.experiment_tags() == {"mlflow.experimentKind": "custom_model_development"}


def test_source_is_the_command_name_and_the_whole_line_is_a_tag() -> None:
    tags = naming.source_tags("simtune sweep search_spaces/lambda_w.yaml --set stage1.iters=20")
    assert tags["mlflow.source.name"] == "simtune sweep"  # MLflow shows what follows the last "/"
    assert tags["simtune.command"] == "simtune sweep search_spaces/lambda_w.yaml --set stage1.iters=20"


def test_metric_names_say_what_they_average_over() -> None:
    assert naming.mean_key(naming.CONFIG, "val/miou") == "config/val/miou_mean"
    assert naming.std_key(naming.CONFIRM, "report/miou") == "confirm/report/miou_std"
    assert naming.seeds_key(naming.BEST_CONFIG) == "best_config/n_seeds"
    assert naming.single_key(naming.BEST_TRIAL, "report/miou") == "best_trial/report/miou"
    names = [name for name, _, _ in naming.METRICS]
    assert len(names) == len(set(names))


def test_docs_list_the_metric_names_once_as_naming_writes_them() -> None:
    text = (DOCS / "mlflow.md").read_text()
    assert text.count(naming.metrics_table()) == 1  # regenerate: print(naming.metrics_table())
    readme = (DOCS.parent / "README.md").read_text()
    assert "docs/mlflow.md#metric-names" in readme and "miou_sweep_mean" not in readme


def test_evaluations_are_also_logged_per_stage_so_charts_show_the_boundary() -> None:
    from simtune.sweep.mlflow_callback import result_metrics

    result = {"iteration": 700, "stage": 2, "val/miou": 21.5, "report/miou": 22.0, "val/iou/road": 60.0,
              "loss/seg_src": 0.3, "training_iteration": 9}
    metrics = result_metrics(result)
    assert metrics["stage2/val/miou"] == metrics["val/miou"] == 21.5 and metrics["stage2/report/miou"] == 22.0
    assert not any(k.startswith(("stage1/", "stage2/val/iou", "stage2/loss")) for k in metrics)
    assert "training_iteration" not in metrics  # Tune's bookkeeping is not a metric


def test_a_run_finished_from_its_run_directory_gets_the_per_stage_series_too(tmp_path: Path) -> None:
    """Evaluations the live results missed are back-filled from the run directory under the same names."""
    from simtune.testing import write_trial
    from simtune.tracking import trials as child_runs
    from simtune.tracking.store import connect, create_run

    client = connect(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("e")
    run_id = create_run(client, experiment_id, name="t", tags={})
    run_dir = write_trial(tmp_path / "sweep", "t", [20.0, 21.0])
    child_runs.finish(client, child_runs.ChildRun(run_id), "FINISHED", run_dir, artifacts=False)
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
               for key in ("val/miou", "stage1/val/miou", "stage1/report/miou")}
    assert history["stage1/val/miou"] == history["val/miou"] == [(10, 20.0), (20, 21.0)]
    assert history["stage1/report/miou"] == [(10, 21.0), (20, 22.0)]
    assert not client.get_metric_history(run_id, "stage1/val/iou/road")  # only the two evaluations
