"""ACE: the Automated Communications Engine (placeholder until the library lands)."""
