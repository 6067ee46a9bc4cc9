"""``forwarder ingest``: MoEngage Streams HTTP batches -> the source topic, acknowledged only once stored."""
