"""mfoml: the numeric core of the representation-geometry pipeline.

Plain functions and scikit-learn-style estimators over numpy arrays and torch tensors, with no
Snakemake inside, usable from a notebook. One subpackage per concern, layered so that imports only
go down (docs/architecture.md; enforced by tests/test_layers.py):

- base       ``io`` (atomic writes, checksums), ``logs`` (rule-script logging),
             ``layer_measures`` (the registry of the per-layer measures' columns)
- core       ``data`` (normalized store, sources, downloads, folds, noise, subsampling),
             ``wavelets`` (wavelet forests, smoothness, sparsity probe),
             ``collapse`` (NCC and neural collapse, streaming; linear/k-NN probes),
             ``analysis`` (metrics, statistics, aggregated tables)
- models     ``nets`` (models, training, checkpoints, activation dumps, losses,
             self-supervised objectives, augmentations and training),
             ``tabular`` (the tabular track's CV drivers), ``plots`` (figures)
- config     ``config`` (validation, run table, parameter slices; torch-free)

Subpackage ``__init__`` files import nothing heavy; their names are loaded on first use.
"""

__version__ = "0.1.0"
