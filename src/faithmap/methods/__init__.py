"""Attribution methods; importing this package registers every built-in method."""

from faithmap.methods.base import Attribution, Method
from faithmap.methods.integrated_gradients import IntegratedGradients
from faithmap.methods.occlusion import Occlusion
from faithmap.methods.rise import Rise
from faithmap.methods.saliency import Saliency

__all__ = ["Attribution", "IntegratedGradients", "Method", "Occlusion", "Rise", "Saliency"]
