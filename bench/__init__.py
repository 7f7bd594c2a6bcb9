"""`make bench`: throughput, memory and end-to-end figures of the sync, against the stand-ins.

``python -m bench.run --users N`` (see ``bench/README.md``). Nothing in the
production package imports this; it imports the package and the sandbox.
"""
