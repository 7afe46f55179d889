"""Model versions with names: a registry a team shares (a folder or an fsspec URL), torch-free.

:mod:`.store` keeps each registered version (its ONNX file, sha256 and training record) and the aliases
(``production``, ``candidate``) that point at versions, with a history of every alias move; :mod:`.records`
turns a finished training run into the record a version keeps. ``visiontrain models`` is the command over it,
``visiontrain serve registry=...`` follows its aliases, ``visiontrain retrain`` writes to it.
"""
