"""Operations on a Kafka cluster and on the pipeline's resources: describe a cluster,
provision topics, buckets and datasets."""
