"""How a run's epochs split into its training stages: a StableKD run's e_0..e_n (each stage a checkpoint), every
other run's all in one. Result code (the trainer runs it) with no imports, so validation and the DAG builder,
which count a run's stages, use it too."""


def stage_epochs(run) -> list[int]:
    """A kdlib.config.Run's epochs per stage: StableKD's `stage_epochs` as given, else floor(e / (n + 1)) for each
    of its n + 1 stages and the rest for the last; one stage for every other method."""
    distill = run.distill
    if distill is None or distill.method != "stablekd":
        return [run.epochs]
    if distill.stage_epochs is not None:
        return list(distill.stage_epochs)
    n = distill.recompositions
    share = run.epochs // (n + 1)
    return [share] * n + [run.epochs - share * n]
