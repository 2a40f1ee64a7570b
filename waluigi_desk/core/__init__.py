"""Everything below here is free of Qt and testable with no display."""
