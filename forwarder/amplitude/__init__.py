"""The Amplitude edge: encoding batches, posting them, and reading Amplitude's answers."""
