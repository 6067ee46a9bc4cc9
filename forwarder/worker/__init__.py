"""The long-running worker: Kafka in, Amplitude out, offsets committed only after final outcomes."""
