# Warm start (mfoml.warm, docs/pipeline.md): in a local run, every rule script's job runs in a
# fork of one server that has already imported what the scripts import. Started when the jobs
# are about to run (never for a dry run, a cluster executor, a job Snakemake runs on a node, or
# rules deployed in conda environments or containers: their jobs run another interpreter),
# stopped when the workflow ends; `warm_start: false` turns it off.

from snakemake_interface_executor_plugins.settings import DeploymentMethod, ExecMode

from snakemake.logging import logger

from mfoml.warm_server import refusal, start_server

WARM = []


def start_warm_server():
    if not (
        config["warm_start"]
        and workflow.local_exec
        and workflow.exec_mode == ExecMode.DEFAULT
        and not set(workflow.deployment_settings.deployment_method)
        & {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER}
    ):
        return
    reason = refusal(config["device"])
    if reason:
        logger.info(f"warm start: off ({reason}); every job starts its own interpreter")
        return
    server = start_server(str(SCRIPTS), os.path.join("logs", "warm_start.log"))
    if server is None:
        logger.warning(
            "warm start: the server did not start; every job starts its own interpreter"
        )
    else:
        WARM.append(server)


def stop_warm_server():
    while WARM:
        WARM.pop().stop()


onstart:
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()
