# Settings, targets and input functions of the layer lenses (rules in similarity.smk; issue 25):
# which runs each rule covers, the checks that can be made before any job, and the targets.

SIMILARITY = config["similarity"]
INTRINSIC_DIM = config["intrinsic_dim"]
EMBEDDING = config["embedding"]
CKA_TABLES = ["cka_layers", "cka_checkpoints", "cka_runs"]


def _check_lens_config():
    """Settings that can be checked before any job: the splits and the embedding's epochs."""
    splits = config["activations"]["splits"]
    for key, cfg in (
        ("similarity", SIMILARITY),
        ("intrinsic_dim", INTRINSIC_DIM),
        ("embedding", EMBEDDING),
    ):
        if cfg["enabled"] and RUN_IDS and cfg["split"] not in splits:
            raise WorkflowError(
                f"config key '{key}.split': {cfg['split']!r} is not dumped "
                f"(activations.splits: {splits})"
            )
    epochs = EMBEDDING["epochs"]
    if EMBEDDING["enabled"] and isinstance(epochs, list):
        for rid in EMBEDDING_RUNS:
            have = RUNS[rid].train.get("checkpoints") or []
            missing = [e for e in epochs if e not in have]
            if missing:
                raise WorkflowError(
                    f"config key 'embedding.epochs': {missing} are not checkpoints of run "
                    f"{rid} (checkpoints: {have})"
                )


def _fold_order(fold):
    """Folds in numeric order (``full``, the whole training split, after them)."""
    return (0, fold, "") if isinstance(fold, int) else (1, 0, str(fold))


def _variant_first_runs():
    """One run per variant (the run with its first fold): the runs the UMAP figures show."""
    chosen = {}
    for rid in RUN_IDS:
        run = RUNS[rid]
        key = (
            run.sweep,
            run.dataset,
            run.model,
            run.activation,
            run.loss,
            run.noise,
            run.seed,
        )
        if key not in chosen or _fold_order(run.fold) < _fold_order(
            RUNS[chosen[key]].fold
        ):
            chosen[key] = rid
    return sorted(chosen.values())


def cross_run_groups():
    """Runs compared pairwise by CKA: same sweep, data sets, fold and seed (the same samples)."""
    groups = {}
    for rid in RUN_IDS:
        run = RUNS[rid]
        key = (run.sweep, run.dataset, run.analysis_dataset, str(run.fold), run.seed)
        groups.setdefault(key, []).append(rid)
    return [g for g in groups.values() if len(g) > 1]


EMBEDDING_RUNS = _variant_first_runs() if EMBEDDING["enabled"] else []
EMBEDDING_RUN_REGEX = "|".join(re.escape(rid) for rid in EMBEDDING_RUNS) or "(?!)"
_check_lens_config()


def intrinsic_dim_files():
    """Per-run intrinsic-dimension tables that the aggregate rule merges into layers.csv."""
    if not INTRINSIC_DIM["enabled"]:
        return []
    return expand("results/runs/{run}/intrinsic_dim.csv", run=RUN_IDS)


def lens_figures():
    """``{name: path}`` of the figures of rule lenses_figures (by the enabled measures)."""
    names = []
    if SIMILARITY["enabled"]:
        names += CKA_TABLES
    if INTRINSIC_DIM["enabled"]:
        names.append("intrinsic_dim")
    return {n: f"results/figures/{n}.{FIG_EXT}" for n in names}


def similarity_targets():
    """Tables and figures of the enabled lenses (none without supervised runs)."""
    if not RUN_IDS:
        return []
    out = list(lens_figures().values())
    if SIMILARITY["enabled"]:
        out += [
            f"results/tables/{t}{s}.csv" for t in CKA_TABLES for s in ("", "_summary")
        ]
    out += [f"results/figures/embedding/{rid}.{FIG_EXT}" for rid in EMBEDDING_RUNS]
    return out


def lens_figure_inputs(wildcards):
    inputs = {}
    if SIMILARITY["enabled"]:
        inputs.update({t: f"results/tables/{t}_summary.csv" for t in CKA_TABLES})
    if INTRINSIC_DIM["enabled"]:
        inputs["layers_summary"] = "results/tables/layers_summary.csv"
    return inputs
