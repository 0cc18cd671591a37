"""Rule `data`: write one data set in the normalized format (mfoml.data.catalog.prepare_dataset),
corrupted by mfoml.data.variants.corrupt_dataset when its variant sets ``corrupt``."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from mfoml.data.catalog import prepare_dataset  # noqa: E402
from mfoml.data.files import FILE_KEYS, FILE_SOURCES  # noqa: E402
from mfoml.data.variants import corrupt_dataset  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0], "data")
opts = json.loads(snakemake.params.options)
source = opts.pop("source")
out = snakemake.output[0]
log.info(
    "preparing data set %s (source %s, options %s) in %s",
    snakemake.wildcards.dataset,
    source,
    opts,
    out,
)
text = dict(opts.get("text") or {})  # text sets only (mfoml.data.textsets.prepare_text)
if text.get("tokenizer_from"):
    text["tokenizer"] = str(Path(snakemake.input.tokenizer_source) / "tokenizer.json")
text.pop("tokenizer_from", None)
# the file sources (imagefolder, table, textfile, arrays) take their keys as one dict
files = {k: opts[k] for k in FILE_KEYS if k in opts}
meta = prepare_dataset(
    source,
    out,
    download_dir=snakemake.config["data"]["download_dir"],
    mirror=snakemake.config["data"]["mirror"],
    grayscale=opts["grayscale"],
    per_class_cap=opts["per_class_cap"],
    seed=opts["seed"],
    **({"files": files} if source in FILE_SOURCES else {}),
    **text,
)
if opts.get("corrupt"):
    meta = corrupt_dataset(out, opts["corrupt"], seed=int(opts["seed"]))
    log.info("corrupted with %s (seed %d)", opts["corrupt"], opts["seed"])
log.info(
    "done: %s, %s train / %s test samples, task %s",
    meta.get("name"),
    meta.get("n_train"),
    meta.get("n_test"),
    meta.get("task"),
)
