"""Pure transforms built on the engine: the notebook walk, ``clean`` (notebook -> notebook plus
report), ``rewrite`` (code cell -> ``os.environ`` lookups) and ``redact`` (kernel output).

They take text or a notebook plus a frozen config and return values; storing moved keys is the
caller's job (:mod:`ipykeyguard.storage`).
"""
