"""The Kafka edge: clients' security options, admin questions, topics, dead-letter and retry records."""
