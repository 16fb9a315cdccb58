"""``specc eval``: does a model follow the spec, per principle, before and after midtraining?

- ``suite``: compile a held-out suite from the spec (items per principle and kind, the spec's
  holdout examples, deduplicated and decontaminated against the built corpus);
- ``run``: answer it with a target model and grade the replies with the judge;
- ``results``, ``stats``: pass rates with Wilson intervals, and two-proportion comparisons;
- ``report``: the pass-rate section of the report.

The eval's stages (``stages``) are typed descriptors like the build's, run by the same engine
through the same cache.
"""
