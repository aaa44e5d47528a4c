"""medrepro: end-to-end CPU reproductions of medical-imaging deep-learning papers.

Every pipeline stage is a function in this package and a sub-command of ``python -m medrepro``
(see :mod:`medrepro.cli`), so each stage runs and is tested outside Snakemake too.
"""

__version__ = "0.1.0"
