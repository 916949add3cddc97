"""Embedding rules: node feasibility (eqs. 1, 2, 4, 5), min-hop link paths (eqs. 3, 6), accounting
(eqs. 7, 8)."""
