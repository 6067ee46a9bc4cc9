"""The HTTP door both halves receive through: credentials, Content-Type, size, Kafka's acknowledgement, refusals."""
