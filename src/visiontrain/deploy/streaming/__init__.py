"""``visiontrain stream``: score a Kafka topic with an exported model, at least once, torch-free.

Messages become records (or rejects) in :mod:`visiontrain.core.kafka_records`, which training's topic
snapshots share; ``scoring`` runs them through the same cleansing and
preprocessing as ``predict``, ``sinks`` stores results idempotently, ``delivery`` produces results and dead letters,
``consumer`` is the loop that ties them together and decides when an offset may be committed.
"""
