"""Rule `embedding`: UMAP pictures of one run's layers (mfoml.similarity.embedding,
mfoml.plots.lenses.plot_embedding): the seeded stratified subsample (``embedding.max_samples``,
``seed``; mfoml.data.subsample) of the ``embedding.split`` dump, every layer of
``embedding.layers`` (columns) at the checkpoints of ``embedding.epochs`` (rows), coloured by
class. UMAP is seeded (single-threaded), so the picture is reproducible on a CPU."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.plots.lenses import plot_embedding  # noqa: E402
from mfoml.similarity.embedding import umap_embedding  # noqa: E402

log = setup_logging(snakemake.log[0], "embedding")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
have = dump_epochs(act_dir)
if cfg["epochs"] == "all":
    epochs = have
elif cfg["epochs"] == "last":
    epochs = have[-1:]
else:
    epochs = [int(e) for e in cfg["epochs"]]
    missing = [e for e in epochs if e not in have]
    if missing:
        raise ValueError(
            f"config key 'embedding.epochs': {missing} not dumped in {act_dir} (epochs: {have})"
        )
embeddings, labels, names = {}, None, None
for epoch in epochs:
    dump = open_activations(act_dir / str(epoch) / cfg["split"])
    layers = dump.layers if cfg["layers"] == "all" else cfg["layers"]
    missing = [la for la in layers if la not in dump.layers]
    if missing:
        raise KeyError(
            f"config key 'embedding.layers': {missing} not in the dump {dump.path} "
            f"(layers: {dump.layers})"
        )
    y = np.asarray(dump.true_labels)
    idx = stratified_subsample(y, cfg["max_samples"], seed=int(cfg["seed"]))
    labels = y[idx]
    names = dump.manifest.get("class_names")
    for name in layers:
        x = dump.layer(name)
        start = time.process_time()
        embeddings[(epoch, name)] = umap_embedding(
            x if len(idx) == len(x) else x[idx],
            n_neighbors=int(cfg["n_neighbors"]),
            min_dist=float(cfg["min_dist"]),
            seed=int(cfg["seed"]),
        )
        log.info(
            "epoch %d %-10s UMAP of %d points: %.1f CPU-s",
            epoch,
            name,
            len(idx),
            time.process_time() - start,
        )
plot_embedding(
    embeddings,
    labels,
    snakemake.output[0],
    int(cfg["figures"]["dpi"]),
    title=f"UMAP of each layer: {snakemake.wildcards.run} ({cfg['split']})",
    class_names=names,
)
