"""``visiontrain stream``: score a Kafka topic with an exported model, at least once, torch-free.

``records`` turns messages into inputs (or rejects), ``scoring`` runs them through the same cleansing and
preprocessing as ``predict``, ``sinks`` stores results idempotently, ``delivery`` produces results and dead letters,
``consumer`` is the loop that ties them together and decides when an offset may be committed.
"""
