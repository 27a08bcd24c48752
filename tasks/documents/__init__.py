"""Documents to suite: a team's own files → a cleaned, de-duplicated, split corpus and label-free tasks.

The path of one file: collect (walk folders and archives) → extract (HTML main text, PDF text,
Unicode repair) → clean (length, quality and language filters, optional PII scrub) →
de-duplicate (exact, then MinHash LSH) → split by document → the tasks' examples → the suite
directory with its data card. `build.build_documents_suite` runs it; `domainbench suite new`
is the command.
"""
