"""The marketing suite's services: profile, segment, scoring and delivery."""
