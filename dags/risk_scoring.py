"""Score every trained component when new telemetry lands, one task per shard.

Runs whenever `telemetry_ingest` updates the `predictor-telemetry` asset, or when
triggered by hand. `plan_shards` fixes the scoring time once for the run (the `until`
param, or the newest telemetry of the trained components, at most the run's data
interval end or creation time) and splits the components into shards of `shard_size`.
`score_shard` is mapped over the shards, so more workers score more shards at once.
Each shard publishes its scores and calls its hooks on its own, and the stored scores
do not depend on the shard size. Scores and hook calls already stored are skipped, so
clearing and re-running any task adds nothing. `report_failed_shards` runs even when
shards fail, names them, and then fails the run.

Prerequisites: a champion model from `model_training`, and the telemetry and risk
stores reachable from every worker.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, TriggerRule, dag, get_current_context, task

# The asset that telemetry_ingest updates when it writes new rows.
TELEMETRY = Asset(name="predictor-telemetry")

# MLflow, the telemetry store and the risk store can fail briefly, so these tasks
# retry with exponential backoff from a 30 s first delay.
EXTERNAL_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="risk_scoring",
    schedule=[TELEMETRY],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Two runs at once would score the same components and race for their level state.
    max_active_runs=1,
    params={
        "config_path": Param(
            None,
            type=["null", "string"],
            description="predictor.toml to use instead of PREDICTOR_CONFIG",
        ),
        "dry_run": Param(False, type="boolean", description="record hook calls, send none"),
        "shard_size": Param(50, type="integer", minimum=1, description="components per task"),
        "until": Param(
            None,
            type=["null", "string"],
            description="score up to this ISO 8601 time with a UTC offset; "
            "empty scores up to the newest telemetry",
        ),
    },
    doc_md=__doc__,
    tags=["predictor"],
)
def risk_scoring():
    @task(task_id="plan_shards", **EXTERNAL_RETRIES)
    def plan_shards() -> list:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        context = get_current_context()
        params = context["params"]
        cutoff = context.get("data_interval_end") or context["dag_run"].run_after
        try:
            return orchestration.plan_scoring(
                params["config_path"], params["shard_size"], params["until"], cutoff.isoformat()
            )
        except PredictorUserError as error:
            # No champion yet or a configuration mistake: a retry fails the same way.
            raise AirflowFailException(str(error)) from error

    @task(task_id="score_shard", **EXTERNAL_RETRIES)
    def score_shard(shard: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration
        from predictor.exceptions import PredictorUserError

        params = get_current_context()["params"]
        try:
            result = orchestration.score_shard(
                shard["components"],
                shard["until"],
                config_path=params["config_path"],
                dry_run=params["dry_run"],
                index=shard["index"],
            )
        except PredictorUserError as error:
            raise AirflowFailException(str(error)) from error
        if result["failed_components"]:
            # The other components of the shard have published. Scoring the failed
            # ones again would fail the same way, so the shard fails without a retry.
            errors = "; ".join(
                f"{name}: {text}" for name, text in result["failed_components"].items()
            )
            raise AirflowFailException(f"shard {shard['index']}: scoring failed for {errors}")
        return result

    @task(task_id="report_failed_shards", trigger_rule=TriggerRule.ALL_DONE)
    def report_failed_shards(shards: list, results: list) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from predictor import orchestration

        summary = orchestration.summarize_scoring(shards, results or [])
        if summary["failed_shards"]:
            names = "; ".join(
                f"shard {shard['index']} ({', '.join(shard['components'])})"
                for shard in summary["failed_shards"]
            )
            raise AirflowFailException(
                f"{len(summary['failed_shards'])} of {summary['shards']} scoring shards "
                f"failed: {names}. The other shards have published; see each failed "
                "shard's log for the error"
            )
        return summary

    shards = plan_shards()
    results = score_shard.expand(shard=shards)
    report_failed_shards(shards, results)


risk_scoring()
