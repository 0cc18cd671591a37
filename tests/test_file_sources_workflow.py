"""The file sources in the workflow: the file (every image of a folder) is an input of the
``data`` rule, so a changed file reruns that data set's job, and only that one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from test_file_sources import tiny_config, write_images, write_table
from workflow_utils import copy_workflow, dry_run_jobs, run_snakemake


def _touch_later(path: Path) -> None:
    later = time.time() + 5
    os.utime(path, (later, later))


def test_a_changed_file_reruns_its_data_job(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "own").mkdir()
    write_table(wd / "own" / "t.csv")
    write_images(wd / "own" / "imgs", "train", 4, "png")
    variants = {
        "tab": {"source": "table", "path": "own/t.csv", "split": "part"},
        "imgs": {"source": "imagefolder", "path": "own/imgs", "test_fraction": 0.25},
    }
    cfg = tiny_config(variants, "imgs") | {"warm_start": False}  # two small data jobs
    configfile = wd / "config" / "tests" / "files.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    targets = ("resources/data/tab", "resources/data/imgs")
    run_snakemake(wd, "--cores", "1", *targets, configfile=configfile, check=True)
    assert (wd / "resources" / "data" / "imgs" / "meta.json").is_file()
    assert dry_run_jobs(wd, *targets, configfile=configfile) == []
    # a changed table reruns its data job only
    (wd / "own" / "t.csv").write_text(
        (wd / "own" / "t.csv").read_text().replace("train", "train ", 1)
    )
    _touch_later(wd / "own" / "t.csv")
    planned = dry_run_jobs(wd, *targets, configfile=configfile)
    assert [(r, w.get("dataset")) for r, w in planned] == [("data", "tab")], planned
    # a changed image reruns the image set's data job, and the whole study depends on it
    img = wd / "own" / "imgs" / "train" / "dog" / "1_2.png"
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(img)
    _touch_later(img)
    planned = dry_run_jobs(wd, configfile=configfile)
    assert [w["dataset"] for r, w in planned if r == "data"] == ["imgs"], planned
    assert {"folds", "train", "activations", "probe", "ncc"} <= {r for r, _ in planned}
