"""Packaged data: the MNIST digits and the MNIST classifier weights."""
