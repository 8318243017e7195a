"""kinpath: knowledge-infused coding of cancer pathology reports for cancer registries.

One import namespace over the project's four packages, which keep their folders at the top
of the checkout: :mod:`kinpath.kg` (the knowledge graph), :mod:`kinpath.embeddings` (word
vectors), :mod:`kinpath.phenotyping` (the multitask CNN and its decoder) and
:mod:`kinpath.pipelines` (the ``kinpath`` command, registry, batch jobs, review). In a
checkout ``kinpath/<name>`` is a link to ``<name>/``; a wheel holds the files themselves.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinpath")
except PackageNotFoundError:  # a checkout on the path, not installed
    __version__ = "0+unknown"
