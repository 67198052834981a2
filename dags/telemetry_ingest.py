"""Ingest every configured telemetry source every 5 minutes and announce new rows.

`ingest_telemetry` runs `predictor ingest` on the sources of `predictor.toml` (or the
file in the `config_path` param). Ingest skips rows already stored, so a re-run of any
interval adds no telemetry rows. When the run wrote new rows, `publish_telemetry`
updates the `predictor-telemetry` asset, which starts the `risk_scoring` DAG. A run
that found nothing new skips that task, so scoring is not started for nothing.
`compact_telemetry` then merges the files of each completed UTC day, and of each
completed hour of the current day, into one. It does work once an hour, after the first
ingest of an hour; otherwise it reads the commit markers (one per past day and a few
for the current day) and stops.

Prerequisites: the sources' files are readable from the worker, and `PREDICTOR_HOME`
(or the object store it is mounted from) is shared by all workers.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

# Scheduling on this asset starts risk_scoring; the name is the asset's identity.
TELEMETRY = Asset(name="predictor-telemetry")

# Reading the sources and writing the store touch shared storage that can fail
# briefly, so these tasks retry with exponential backoff from a 30 s first delay.
EXTERNAL_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="telemetry_ingest",
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Two ingests at once would both rewrite the recorded training windows.
    max_active_runs=1,
    params={
        "config_path": Param(
            None,
            type=["null", "string"],
            description="predictor.toml to use instead of PREDICTOR_CONFIG",
        ),
    },
    doc_md=__doc__,
    tags=["predictor"],
)
def telemetry_ingest():
    @task(task_id="ingest_telemetry", **EXTERNAL_RETRIES)
    def ingest_telemetry() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        params = get_current_context()["params"]
        try:
            return orchestration.ingest_sources(params["config_path"])
        except PredictorUserError as error:
            # A configuration or input mistake fails the same way on every retry.
            raise AirflowFailException(str(error)) from error

    @task(task_id="publish_telemetry", outlets=[TELEMETRY])
    def publish_telemetry(summary: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if summary["rows_written"] == 0:
            raise AirflowSkipException("no new telemetry rows, so scoring is not started")
        event = {
            "rows_written": summary["rows_written"],
            "components": len(summary["components"]),
        }
        get_current_context()["outlet_events"][TELEMETRY].extra = event
        return event

    @task(task_id="compact_telemetry", **EXTERNAL_RETRIES)
    def compact_telemetry() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError
        from predictor.telemetry.store_compact import CompactionError

        try:
            return orchestration.compact_telemetry(
                get_current_context()["params"]["config_path"]
            )
        except (PredictorUserError, CompactionError) as error:
            # A configuration mistake, or files that repeat a key, fail the same way on
            # every retry. The files stay as they were.
            raise AirflowFailException(str(error)) from error

    summary = ingest_telemetry()
    publish_telemetry(summary)
    summary >> compact_telemetry()


telemetry_ingest()
