"""Builds the optional C part of mlarray; everything else about the package is in pyproject.toml.

``mlarray/storage/_blockcopy.c`` is the per-block loop of the read path. It is optional:
without a C compiler the install goes on without it and reads copy with NumPy instead
(``mlarray.storage.blockcopy.STATUS`` says which is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mlarray.storage._blockcopy", ["mlarray/storage/_blockcopy.c"], optional=True)])
