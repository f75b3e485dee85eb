"""``synthetic:car`` — placeholder, replaced by the full model below in a later commit."""
LANDMARK_NAMES = []
EYE_INDICES = None


def sample_scene(rng, size):
    raise NotImplementedError
