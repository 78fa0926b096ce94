"""``l1_unstructured``: zero the globally smallest-magnitude encoder weights (paper §III.B.2)."""

from torch.nn.utils import prune

from mcap.strategies.base import UnstructuredStrategy, register


@register
class L1Unstructured(UnstructuredStrategy):
    name = "l1_unstructured"
    label = "2. L1 unstructured pruning"
    seeded = False  # deterministic: it draws nothing
    method = prune.L1Unstructured
