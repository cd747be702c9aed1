"""citeqa service package."""
