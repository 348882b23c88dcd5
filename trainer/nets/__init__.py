"""One module per model family. Every generator is called as ``G(z, label)`` (``label`` is None
for unconditional families) and returns images N×C×H×W in its documented output range; every
discriminator is called as ``D(x, label)`` and returns raw scores of shape N."""
