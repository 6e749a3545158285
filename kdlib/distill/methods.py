"""The table of knowledge-distillation methods: one row per `distill.method`, the only place a method is named.

The config validates `distill.method` and its keys against it, the Distiller imports the row's module, and the
reports and benchmarks read its labels and flags. A new method is a row here plus its module (a class `Method`,
see kdlib.distill.method). This file imports nothing and `METHODS` is made of plain literals only: DVC reads it
with `ast.literal_eval` and tracks its values (e.g. METHODS.dkd.defaults.beta) as parameters.

Fields of a row:
  module               the Python module that defines the method's class `Method` (imported by name, so a run
                       depends only on its own method's file)
  label                how the report tables name the method
  keys                 the `distill` keys the method reads, beyond `method` itself; any other key given is an error
  defaults             values for keys that default by method (given as null or left out: this value)
  uses_alpha           the loss is (1 - alpha) CE + alpha KD, alpha following `distill.schedule`; otherwise the
                       method adds its terms to the full cross-entropy (alpha is 1)
  pairs_stages         the method pairs the student's stages with the teacher's (both need as many stages)
  needs_class_indices  the loss reads each image's class index, so the labels cannot be mixed (Mixup / CutMix)
  teacher_logits_only  the loss reads nothing of the teacher but its logits on the batch, so they can be computed
                       once per training stream and replayed (kdlib.distill.teacher_outputs)
"""

METHODS = {
    # Hinton's KL at temperature T (times T^2).
    "logits": {"module": "kdlib.distill.kd", "label": "KD",
               "keys": ["alpha", "schedule", "alpha_end", "temperature"], "defaults": {"temperature": 4.0},
               "uses_alpha": True, "pairs_stages": False, "needs_class_indices": False, "teacher_logits_only": True},
    # MSE between the logits (Ba & Caruana).
    "logits_mse": {"module": "kdlib.distill.logits_mse", "label": "KD (logit MSE)",
                   "keys": ["alpha", "schedule", "alpha_end"], "defaults": {},
                   "uses_alpha": True, "pairs_stages": False, "needs_class_indices": False,
                   "teacher_logits_only": True},
    # L2 between the last conv feature maps, through a learned 1x1 projector if the shapes differ.
    "feature": {"module": "kdlib.distill.feature", "label": "feature KD",
                "keys": ["alpha", "schedule", "alpha_end"], "defaults": {},
                "uses_alpha": True, "pairs_stages": False, "needs_class_indices": False, "teacher_logits_only": False},
    # Attention transfer at every stage (Zagoruyko & Komodakis); beta: AT's CIFAR weight.
    "at": {"module": "kdlib.distill.at", "label": "AT",
           "keys": ["beta"], "defaults": {"beta": 1000.0},
           "uses_alpha": False, "pairs_stages": True, "needs_class_indices": False, "teacher_logits_only": False},
    # Decoupled KD (Zhao et al. 2022); beta: DKD's CIFAR weight of the non-target term.
    "dkd": {"module": "kdlib.distill.dkd", "label": "DKD",
            "keys": ["beta", "temperature"], "defaults": {"beta": 8.0, "temperature": 4.0},
            "uses_alpha": False, "pairs_stages": False, "needs_class_indices": True, "teacher_logits_only": True},
    # Sobolev training (Czarnecki et al.): KD plus the input-gradients of the outputs matched along a random
    # direction; beta weighs the gradient term (per input element: at 10 it starts near the KD term's size on
    # the demo's images).
    "st": {"module": "kdlib.distill.st", "label": "ST",
           "keys": ["alpha", "schedule", "alpha_end", "temperature", "beta"],
           "defaults": {"temperature": 4.0, "beta": 10.0},
           "uses_alpha": True, "pairs_stages": False, "needs_class_indices": False, "teacher_logits_only": False},
    # Neuron selectivity transfer (Huang & Wang): MMD between the channels' activation patterns at every stage;
    # beta: NST's lambda with the polynomial kernel on CIFAR.
    "nst": {"module": "kdlib.distill.nst", "label": "NST",
            "keys": ["beta"], "defaults": {"beta": 50.0},
            "uses_alpha": False, "pairs_stages": True, "needs_class_indices": False, "teacher_logits_only": False},
    # Knowledge review (Chen et al.): fused student stages against every teacher stage, hierarchical context loss.
    "reviewkd": {"module": "kdlib.distill.reviewkd", "label": "ReviewKD",
                 "keys": ["beta"], "defaults": {"beta": 1.0},
                 "uses_alpha": False, "pairs_stages": True, "needs_class_indices": False, "teacher_logits_only": False},
    # CE + kl_weight * KL + MSE at every stage output, end to end (seed 003's ablation; T = 1 throughout).
    "kd_mse": {"module": "kdlib.distill.kd_mse", "label": "KD + MSE",
               "keys": ["kl_weight", "temperature"], "defaults": {"temperature": 1.0},
               "uses_alpha": False, "pairs_stages": True, "needs_class_indices": False, "teacher_logits_only": False},
    # The same terms with the networks decomposed into blocks that learn from the teacher's block inputs,
    # recomposed pairwise stage by stage (seed 003).
    "stablekd": {"module": "kdlib.distill.stablekd", "label": "StableKD",
                 "keys": ["kl_weight", "temperature", "blocks", "recompositions", "stage_epochs"],
                 "defaults": {"temperature": 1.0},
                 "uses_alpha": False, "pairs_stages": True, "needs_class_indices": False, "teacher_logits_only": False},
}


def with_flag(flag: str) -> tuple[str, ...]:
    """The methods whose row sets `flag` (uses_alpha, pairs_stages, needs_class_indices or teacher_logits_only)."""
    return tuple(name for name, row in METHODS.items() if row[flag])


def labels() -> dict[str, str]:
    """Method -> its label in the report tables."""
    return {name: row["label"] for name, row in METHODS.items()}
