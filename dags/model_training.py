"""Train every component's models once a day and register them in MLflow.

`train_models` runs `predictor train`: by default on the training parts that ingest
recorded from the sources' roles, or on the rows before the `until` param (and after
`until - lookback_days`). The MLflow run is tagged with this DAG run's data interval and
params, so clearing and re-running the task for the same interval reuses that model
instead of registering another version.

Prerequisites: telemetry ingested by `telemetry_ingest`, and an MLflow tracking store
(`MLFLOW_TRACKING_URI`) reachable from the worker.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

# MLflow and the telemetry store are external systems that can fail briefly, so the
# task retries with exponential backoff from a 1 minute first delay.
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
    # Two trainings at once would race for the champion alias.
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
    @task(task_id="train_models", **EXTERNAL_RETRIES)
    def train_models() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        context = get_current_context()
        params = context["params"]
        interval_end = context.get("data_interval_end")
        run_key = "|".join(
            [
                "model_training",
                interval_end.isoformat() if interval_end else context["run_id"],
                str(params["config_path"]),
                str(params["until"]),
                str(params["lookback_days"]),
            ]
        )
        try:
            return orchestration.train_models(
                params["config_path"], params["until"], params["lookback_days"], run_key
            )
        except PredictorUserError as error:
            # A configuration mistake or missing telemetry fails the same way on a retry.
            raise AirflowFailException(str(error)) from error

    train_models()


model_training()
