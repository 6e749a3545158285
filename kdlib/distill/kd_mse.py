"""KD + MSE (seed 003's ablation): CE + kl_weight KL + the MSE at every stage output, the student end to end."""
from kdlib.distill.blockwise import Blockwise


class Method(Blockwise):
    def blocks_at(self, num_stages, stage):
        return [[i] for i in range(num_stages + 1)]  # every atomic block its own term, chained end to end
