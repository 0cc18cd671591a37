"""mfoml: the numeric core of the representation-geometry pipeline.

Plain functions and scikit-learn-style estimators over numpy arrays and torch tensors, with no
Snakemake inside, usable from a notebook. Modules:

- ``io``           atomic file writing (temp file + rename) and small readers
- ``datasets``     embedded and downloadable data sets in one normalized on-disk format
- ``folds``        seeded stratified k-fold assignment
- ``noise``        label noise (classification) and target noise (regression)
- ``models``       MLP, Conv, Conv1D and ResNet18 with named probe layers
- ``training``     training loop with checkpoints and a per-epoch metrics table
- ``activations``  ordered per-layer activation dumps as memory-mappable float16 arrays
- ``losses``       the SVSL loss (batched and non-batched)
- ``wavelets``     geometric wavelets of random forests (WaveletForestRegressor/Classifier)
- ``smoothness``   Besov smoothness estimators and the sparsity probe
- ``ncc``          nearest-class-center simplification and neural-collapse metrics
- ``metrics``      classification and regression metrics
- ``tabular``      the tabular track (CV, baselines, nested search, importances)
- ``plots``        figures
"""

__version__ = "0.1.0"
