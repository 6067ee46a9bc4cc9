"""What the command line runs, one module per command that does more than start a service."""
