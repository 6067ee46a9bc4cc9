"""The reconciliation ledger: what became of every event read, per source range, kept in a Kafka topic."""
