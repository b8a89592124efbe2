"""Every client the pipeline talks through, built from :class:`Settings`: Kafka's
(:mod:`.kafka`, with :mod:`.probe` saying why a broker refused and :mod:`.oauth` the
tokens of Google's managed Kafka) and Google Cloud's (:mod:`.google`). Nothing else in
the package builds a client, so none can miss a setting."""
