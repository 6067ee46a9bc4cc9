"""Local stand-ins for the remote parts: a real Apache Kafka broker and an Amplitude-compatible service."""
