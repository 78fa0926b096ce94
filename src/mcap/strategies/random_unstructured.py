"""``random_unstructured``: zero a seeded random fraction of encoder weights (paper §III.B.3)."""

from torch.nn.utils import prune

from mcap.strategies.base import UnstructuredStrategy, register


@register
class RandomUnstructured(UnstructuredStrategy):
    name = "random_unstructured"
    label = "3. Random magnitude pruning"
    method = prune.RandomUnstructured
