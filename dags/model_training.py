"""Train every component group's model once a day and register it in MLflow.

`plan_groups` lists the components with telemetry by registered model (component
group). `train_group` is mapped over the groups, so more workers train more groups at
once: each group trains its components, registers one version and runs its own quality
gate, as `predictor train` does for every group in turn. Training uses the training parts
that ingest recorded from the sources' roles, or the rows before the `until` param (and
after `until - lookback_days`). Each MLflow run is tagged with this DAG run's data
interval and params, so clearing and re-running a group for the same interval reuses
that group's model instead of registering another version. `report_failed_groups` runs
after every group has finished, names the failed groups, and then fails the run.

Prerequisites: telemetry ingested by `telemetry_ingest`, and an MLflow tracking store
(`MLFLOW_TRACKING_URI`) reachable from every worker.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

# MLflow and the telemetry store are external systems that can fail briefly, so these
# tasks retry with exponential backoff from a 1 minute first delay.
EXTERNAL_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}


@dag(
    dag_id="model_training",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Two runs at once would train the same group and race for its champion alias.
    max_active_runs=1,
    params={
        "config_path": Param(
            None,
            type=["null", "string"],
            description="predictor.toml to use instead of PREDICTOR_CONFIG",
        ),
        "until": Param(
            None,
            type=["null", "string"],
            description="train on rows before this ISO 8601 time with a UTC offset; "
            "empty uses the training parts recorded at ingest",
        ),
        "lookback_days": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            description="train only on this many days before the cut",
        ),
    },
    doc_md=__doc__,
    tags=["predictor"],
)
def model_training():
    @task(task_id="plan_groups", **EXTERNAL_RETRIES)
    def plan_groups() -> list:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        params = get_current_context()["params"]
        try:
            return orchestration.plan_training(params["config_path"])
        except PredictorUserError as error:
            # No telemetry yet or a configuration mistake: a retry fails the same way.
            raise AirflowFailException(str(error)) from error

    @task(task_id="train_group", **EXTERNAL_RETRIES)
    def train_group(group: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        context = get_current_context()
        params = context["params"]
        interval_end = context.get("data_interval_end")
        run_key = orchestration.training_run_key(
            "model_training",
            interval_end.isoformat() if interval_end else context["run_id"],
            params["config_path"],
            params["until"],
            params["lookback_days"],
        )
        try:
            return orchestration.train_group(
                group["group"],
                group["components"],
                config_path=params["config_path"],
                until=params["until"],
                lookback_days=params["lookback_days"],
                run_key=run_key,
                index=group["index"],
            )
        except PredictorUserError as error:
            # A configuration mistake fails the same way on a retry.
            raise AirflowFailException(str(error)) from error

    @task(task_id="report_failed_groups", trigger_rule=TriggerRule.ALL_DONE)
    def report_failed_groups(groups: list, results: list) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration

        summary = orchestration.summarize_training(groups, results or [])
        if summary["failed_groups"]:
            names = "; ".join(
                f"group {group['group']} ({', '.join(group['components'])})"
                for group in summary["failed_groups"]
            )
            raise AirflowFailException(
                f"{len(summary['failed_groups'])} of {summary['groups']} training groups "
                f"failed: {names}. The other groups have registered their models; see each "
                "failed group's log for the error"
            )
        if not summary["registered"]:
            raise AirflowFailException(
                "no component had training data in any group; nothing was registered"
            )
        return summary

    groups = plan_groups()
    results = train_group.expand(group=groups)
    report_failed_groups(groups, results)


model_training()
