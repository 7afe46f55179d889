"""The retraining loop: fresh data in, a challenger trained with the champion's own config, both scored on the same
held-out rows, the rule applied, the registry updated, and a report that says why.

One module per step, in the order :mod:`.loop` runs them:

- :mod:`.champion`: the registered version at the champion alias, its ONNX file, its record's overrides and
  monitor metric (a version without a record cannot be retrained: it says how to register one);
- :mod:`.holdout`: the fresh data split, stratified and seeded, into the challenger's training part and the
  held-out part (tables: ``train.csv`` / ``holdout.csv``; images: two manifests);
- :mod:`.triggers`: the drift of the fresh data against the champion's reference statistics (the comparison
  `visiontrain drift` runs), and the drift report that triggered the run, if one is given;
- :mod:`.challenger`: the champion's overrides replayed with the training part as data, as a fresh
  `visiontrain train` process (so the command line's checks apply to them as to any);
- :mod:`.compare`: both ONNX files scored by onnxruntime on exactly the same held-out rows, through the predict
  machinery, with the training side's metrics;
- :mod:`.decision`: the rule (the champion's monitor metric and mode, plus ``min_improvement``) and its verdict;
- :mod:`.report`: ``decision.json`` and ``decision.md``.

No torch here: the challenger trains in its own process, and scoring is onnxruntime's.
"""
