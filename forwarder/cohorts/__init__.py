"""Amplitude behavioral cohorts -> MoEngage custom segments (shared/spec/cohort-sync.md): the pure core."""
