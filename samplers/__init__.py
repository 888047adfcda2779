"""Frame samplers. Importing this package registers the built-in ones."""
from samplers import aks, bolt, focus, frag, maxinfo, mdp3, qframe, replay, shots, topk, tspo, uniform  # noqa: F401  (registration side effect)
