"""The shared core: what the server and the device must agree on, bit for bit.

Kernels (native + numpy twins), the reference pack, the payload container and its codecs.
"""
