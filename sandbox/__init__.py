"""Local stand-ins for Moesif and Segment, and the synthetic data they serve.

These are test and demo tools, not production code: real HTTP servers on
loopback that speak the subset of each API this project uses (see
``moesif-api.md`` and ``segment-api.md``), with fault injection and a record of
what they received. The production package never imports them.
"""
