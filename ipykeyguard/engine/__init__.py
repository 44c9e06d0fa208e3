"""The detection engine: rules as data, validators, the multi-pattern matcher, the allowlist,
findings and the scanner that ties them together.

Pure Python plus native matchers; it imports no host framework and does no I/O beyond reading
rule and config files. Everything else in ipykeyguard asks this package one question, "is this a
key?", so there is exactly one answer.
"""
