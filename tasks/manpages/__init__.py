"""The flagship suite's builder: Linux man-pages 6.03 parsed into corpus, summarize, section,
errno-qa, ner and perplexity data (`domainbench suite build manpages`).

groff renders each page to the clean text the corpus, summaries and excerpts use; the raw roff
markup gives the structure groff throws away (ERRORS entries, SYNOPSIS headers, entity fonts).
"""
