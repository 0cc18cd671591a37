# Warm start (mfoml.warm, docs/pipeline.md): in a local run, every rule script's job runs in a
# fork of one server that has already imported what the scripts import. Started when the jobs
# are about to run (never for a dry run, a cluster executor, a job Snakemake runs on a node, or
# rules deployed in conda environments or containers: their jobs run another interpreter),
# stopped when the workflow ends; `warm_start: false` turns it off.

import json

from snakemake_interface_executor_plugins.settings import DeploymentMethod, ExecMode

from snakemake import benchmark as snakemake_benchmark
from snakemake.logging import logger

from mfoml.warm import ENV_SOCKET, take_benchmark_figures
from mfoml.warm_launch import refusal, start_server

WARM = []

# A socket inherited from the environment (another run, a shell that exported it) never makes
# this run's jobs warm: only the server started below sets it. Jobs that Snakemake spawns in a
# subprocess of this run (exec mode SUBPROCESS) keep this run's.
if workflow.exec_mode != ExecMode.SUBPROCESS:
    os.environ.pop(ENV_SOCKET, None)


def warm_benchmark_writer(write, socket_path):
    """Snakemake's benchmark writer, with a warm job's own CPU time and peak memory.

    Under warm start, Snakemake measures the job's thin client; the client leaves the job's
    figures (mfoml.warm), which replace the client's cpu_time and max_rss (mean_load follows;
    max_vms, max_uss, max_pss, io_in and io_out of the client are dropped: "-"). A last column
    `warm_start` says which records ran warm (1) or cold (0).
    """

    def write_benchmark_records(records, path, extended_fmt):
        warm = []
        for iteration, record in enumerate(records):
            figures = take_benchmark_figures(
                socket_path,
                str(record.rule_name),
                dict(record.wildcards.items()),
                iteration,
            )
            warm.append(figures is not None)
            if figures is not None:
                record.cpu_time = record.cpu_usage = figures["cpu_time"]
                record.max_rss = figures["max_rss_kb"] / 1024
                record.max_vms = record.max_uss = record.max_pss = None
                record.io_in = record.io_out = None
                record.data_collected = True
        write(records, path, extended_fmt)
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        if path.endswith(".jsonl"):
            lines = [
                json.dumps({**json.loads(line), "warm_start": flag})
                for line, flag in zip(lines, warm)
            ]
        else:
            lines = [lines[0] + "\twarm_start"] + [
                f"{line}\t{int(flag)}" for line, flag in zip(lines[1:], warm)
            ]
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    write_benchmark_records.original = write
    return write_benchmark_records


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
        snakemake_benchmark.write_benchmark_records = warm_benchmark_writer(
            snakemake_benchmark.write_benchmark_records, server.socket_path
        )


def stop_warm_server():
    while WARM:
        WARM.pop().stop()
    writer = snakemake_benchmark.write_benchmark_records
    snakemake_benchmark.write_benchmark_records = getattr(writer, "original", writer)


onstart:
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()
